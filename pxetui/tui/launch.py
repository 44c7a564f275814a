"""Start the TUI for a session configuration."""

from __future__ import annotations

import sys

from pxetui.session import Session, SessionConfig
from pxetui.session_loop import SessionLoop

SWITCH_INTERVAL = 0.0005  # seconds


def run_tui(config: SessionConfig) -> int:
    """Run the app until the operator quits; the session is always stopped and saved.

    The services run on a SessionLoop thread, so drawing the table never delays a packet.
    """
    from pxetui.tui.app import PxetuiApp

    session = Session(config)
    session.open()  # a bad state dir, profile or plan CSV is reported before the screen opens
    # A thread that wakes for a packet waits up to one switch interval for the GIL while the
    # TUI draws, and an answer takes several wake-ups: 5 ms (Python's default) cost tens of ms.
    sys.setswitchinterval(SWITCH_INTERVAL)
    with SessionLoop() as services:
        app = PxetuiApp(session, session_loop=services)
        try:
            code = app.run()
        finally:
            # Whatever ended the app (a crash included), leave nothing running or unsaved behind.
            services.run_sync(session.stop())
    if app.start_error is not None:
        raise app.start_error
    return code if code is not None else (app.return_code or 0)
