"""Small widgets of pxetui's own: the key bar that fits any width.

Textual's Footer lays every binding out and cuts what does not fit (`p Pol▏^p paletteg` at
80 columns), and it lists only the bindings of the focused widget's chain (the picker's Enter
was hidden behind the table's). The key bar is given its keys, most important first, and
shows those that fit, always ending with help and quit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widget import Widget

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
