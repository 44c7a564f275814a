"""Start the TUI for a session configuration."""

from __future__ import annotations

from pxetui.errors import UsageError
from pxetui.session import SessionConfig


def run_tui(config: SessionConfig) -> int:
    raise UsageError("the TUI is not in this build yet: run with --headless (or --headless --json)")
