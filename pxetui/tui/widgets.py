"""Small widgets of pxetui's own: the key bar that fits any width, the machine table.

Textual's Footer lays every binding out and cuts what does not fit (`p Pol▏^p paletteg` at
80 columns), and it lists only the bindings of the focused widget's chain (the picker's Enter
was hidden behind the table's). The key bar is given its keys, most important first, and
shows those that fit, always ending with help and quit.

Textual's DataTable forgets every rendered cell of every row when one cell changes (one
update counter keys all its caches), so a room of 100 moving progress bars had every visible
cell drawn again through Rich at every refresh: 60 % of the process's GIL time, which the DHCP
thread waited for (issue 18). The machine table forgets only the changed cells and repaints
only their rows' lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey

from pxetui.tui.layout import fit_parts

KEY_STYLE = "bold #ffa62b"  # the colour of Textual's own footer keys


def key_name(binding: Binding) -> str:
    return binding.key_display or binding.key.split(",")[0]


class KeyBar(Widget):
    """One line of `key label` pairs; `keys` in display order with their priority (higher stays)."""

    DEFAULT_CSS: ClassVar[str] = """
    KeyBar {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    """

    def __init__(self, keys: Sequence[tuple[str, str, int]], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keys = list(keys)

    def render(self) -> Text:
        width = max(1, self.size.width - 2)
        parts = [(f"{key} {label}", priority) for key, label, priority in self.keys]
        text = Text(no_wrap=True, overflow="ellipsis")
        for n, index in enumerate(fit_parts(parts, width)):
            key, label, _ = self.keys[index]
            if n:
                text.append("  ")
            text.append(key, style=KEY_STYLE)
            text.append(f" {label}")
        return text


def bar_keys(bindings: Iterable[BindingType], priority: Sequence[str]) -> list[tuple[str, str, int]]:
    """The shown bindings as key bar entries; `priority` lists actions, most important first."""
    rank = {action: len(priority) - i for i, action in enumerate(priority)}
    keys = []
    for binding in bindings:
        if isinstance(binding, Binding) and binding.show:
            keys.append((key_name(binding), binding.description, rank.get(binding.action, 0)))
    return keys


K = TypeVar("K")
V = TypeVar("V")

# DataTable's caches that hold rendered rows; the machine table drops a changed row's entries.
_ROW_CACHES = ("_cell_render_cache", "_row_renderable_cache", "_row_render_cache", "_line_cache")


class MachineTable(DataTable[Text]):
    """A DataTable whose `update_cell` costs the changed cell, not the whole visible table.

    The cell's value is stored as DataTable stores it, its row's lines are marked for repaint
    (nothing, for a row scrolled out of view), and before the next render the cache entries of
    the changed cells, and of the lines of their rows, are dropped; everything else stays
    cached. Structural changes (rows and columns added or removed, sorting, clearing) go
    through DataTable and invalidate everything as before.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._changed: set[tuple[RowKey, ColumnKey]] = set()
        # A Textual that renamed the caches gets DataTable's own (slower, correct) update.
        self.cell_caching = all(hasattr(self, name) for name in (*_ROW_CACHES, "_data", "_row_locations"))

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: Text,
        *,
        update_width: bool = False,
    ) -> None:
        if update_width or not self.cell_caching:
            super().update_cell(row_key, column_key, value, update_width=update_width)
            return
        self.update_cells(row_key, [(column_key, value)])

    def update_cells(self, row_key: RowKey | str, cells: Iterable[tuple[ColumnKey | str, Text]]) -> None:
        """Several cells of one row, (column, value): its lines are marked for repaint once."""
        if not self.cell_caching:
            for column_key, value in cells:
                super().update_cell(row_key, column_key, value)
            return
        row = RowKey(row_key) if isinstance(row_key, str) else row_key
        if row not in self._row_locations:
            raise CellDoesNotExist(f"No row exists for row_key={row!r}.")
        for column_key, value in cells:
            column = ColumnKey(column_key) if isinstance(column_key, str) else column_key
            if column not in self._column_locations:
                raise CellDoesNotExist(f"No cell exists for row_key={row!r}, column_key={column!r}.")
            self._data[row][column] = value
            self._changed.add((row, column))
        index = self._row_locations.get(row)
        if index is not None:
            self.refresh_row(index)

    def render_lines(self, crop: Region) -> list[Strip]:
        self.forget_changed()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        self.forget_changed()
        return super().render_line(y)

    def forget_changed(self) -> None:
        """Drop the rendered forms of the cells changed since the last render (and their lines)."""
        if not self._changed:
            return
        cells, self._changed = self._changed, set()
        rows = {row for row, _ in cells}
        indexes = {self._row_locations.get(row) for row in rows}
        first = self.header_height if self.show_header else 0
        lines = {first + y for y, (row, _) in enumerate(self._y_offsets) if row in rows}
        _discard(self._cell_render_cache, lambda key: (key[0], key[1]) in cells)  # (row, column, ...)
        _discard(self._row_renderable_cache, lambda key: key[1] in indexes)  # (update count, row index)
        _discard(self._row_render_cache, lambda key: key[0] in rows)  # (row, line in row, ...)
        _discard(self._line_cache, lambda key: key[0] in lines)  # (line in table, ...)


def _discard(cache: LRUCache[K, V], changed: Callable[[K], bool]) -> None:
    for key in [key for key in cache.keys() if changed(key)]:  # noqa: SIM118 (an LRUCache, not a dict)
        cache.discard(key)
