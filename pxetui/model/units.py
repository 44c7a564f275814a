"""Sizes and rates as a person reads them (`12.0MB/s`, `45kB`, `512 B`).

The TUI's cells and the event sentences (the log, the headless text lines) say them alike, so
they live below both.
"""

from __future__ import annotations


def rate(bytes_per_second: float) -> str:
    mb = bytes_per_second / 1e6
    if mb >= 100:
        return f"{mb:.0f}MB/s"
    if mb >= 0.1:
        return f"{mb:.1f}MB/s"
    return f"{bytes_per_second / 1e3:.0f}kB/s"


def size(n: int) -> str:
    if n < 1_000:
        return f"{n} B"  # a boot script: "0kB" read as "nothing came"
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}MB"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}MB"
    return f"{n / 1e3:.0f}kB"
