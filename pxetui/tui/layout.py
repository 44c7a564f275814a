"""What fits on the operator's screen: table columns, header parts and footer keys by width.

Pure functions of the terminal width, so the choice is tested without a screen. At 80x24 the
table keeps the columns that answer "how far is this PC" (MAC, OS, stage, progress) and the
others give way in a fixed order; on a wide terminal the extra width goes to the columns
whose text is long (OS, stage, progress, hostname), never left empty at the right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int  # the least that is still readable
    grow: int = 0  # how many more cells it may take on a wide terminal


# In display order. Every cell starts with one space instead of cell padding.
COLUMNS: tuple[Column, ...] = (
    Column("mac", "MAC", 20),
    Column("vendor", "Vendor", 9, grow=14),
    Column("hostname", "Hostname", 10, grow=10),
    Column("firmware", "Firmware", 10),
    Column("ip", "IP", 16),
    Column("os", "OS", 13, grow=17),
    Column("stage", "Stage", 12, grow=24),
    Column("progress", "Progress", 21, grow=24),
    Column("elapsed", "Elapsed", 8),
)
# Which columns stay when the terminal is narrow, most important first.
PRIORITY = ("mac", "os", "stage", "progress", "hostname", "ip", "elapsed", "firmware", "vendor")
SCROLLBAR = 1  # the table's vertical scrollbar (app.tcss sets it to one cell)


def fit_columns(width: int, columns: Sequence[Column] = COLUMNS) -> list[tuple[Column, int]]:
    """The columns that fit `width` terminal cells, in display order, with their widths."""
    room = width - SCROLLBAR
    by_key = {c.key: c for c in columns}
    chosen: set[str] = set()
    used = 0
    for key in PRIORITY:
        column = by_key[key]
        if used + column.width <= room or not chosen:
            chosen.add(key)
            used += column.width
    shown = [c for c in columns if c.key in chosen]
    widths = {c.key: c.width for c in shown}
    spare = room - used
    # Hand the spare cells out one round at a time, so every growing column gets its share.
    growing = [c for c in shown if c.grow]
    while spare > 0 and growing:
        for column in list(growing):
            if spare <= 0:
                break
            if widths[column.key] - column.width >= column.grow:
                growing.remove(column)
                continue
            widths[column.key] += 1
            spare -= 1
    return [(c, widths[c.key]) for c in shown]


def fit_parts(parts: Sequence[tuple[str, int]], width: int, separator: str = "  ") -> list[int]:
    """Indexes of the (text, priority) parts that fit `width` together; lower priority goes first.

    The text's length is what counts (markup-free text is expected). Order is kept.
    """
    keep = list(range(len(parts)))

    def length(indexes: list[int]) -> int:
        return sum(len(parts[i][0]) for i in indexes) + len(separator) * max(0, len(indexes) - 1)

    while len(keep) > 1 and length(keep) > width:
        drop = min(keep, key=lambda i: (parts[i][1], -i))
        keep.remove(drop)
    return keep


LOG_SIZES = ("short", "medium", "normal", "tall")  # app.tcss: 3, 6, 8 and 10 lines


def log_size(height: int) -> str:
    """The event log's size class for a terminal `height` rows high: a small one keeps its table."""
    if height >= 45:
        return "tall"
    if height >= 36:
        return "normal"
    if height >= 30:
        return "medium"
    return "short"
