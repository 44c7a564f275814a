"""Where the built-in profiles and assets live: in a checkout, or inside an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # pxetui/


def data_dir(name: str) -> Path:
    """`profiles` or `assets`: the wheel copies them to pxetui/_data/, a checkout has them at top."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
