"""Start the TUI for a session configuration; say how the room did when it stops.

When the screen closes the operator is back at a shell prompt with nothing to show for the
session: the exit summary printed there says how many PCs finished, failed or are still
under way, and where the report (written into the state directory as pxetui stops) is.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from pxetui.errors import PxetuiError
from pxetui.model.report import write_report
from pxetui.session import Session, SessionConfig
from pxetui.session_loop import SessionLoop
from pxetui.tui import stalls

SWITCH_INTERVAL = 0.0005  # seconds


def run_tui(config: SessionConfig, out: TextIO = sys.stdout) -> int:
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
    print(finish(session), file=out, flush=True)
    return code if code is not None else (app.return_code or 0)


def finish(session: Session, now: float | None = None) -> str:
    """Write the report into the state directory and return the exit summary that names it."""
    report: Path | str
    try:
        report, _ = write_report(session.state.path, session.registry, session.plan)
    except PxetuiError as exc:
        report = f"not written ({exc})"
    return exit_summary(session, time.time() if now is None else now, report)


def exit_summary(session: Session, now: float, report: Path | str) -> str:
    """`pxetui stopped: 3 done, 1 failed, 2 not finished (1 stalled), 1 never booted.` and the report."""
    machines = session.registry.snapshot()
    state = session.state.path
    if not machines:
        return f"pxetui stopped: no PC booted. State kept in {state}."
    counts = stalls.summary(machines, now)
    under_way = sum(counts[g] for g in ("at DHCP", "loading", "installing", "stalled"))
    parts = [f"{counts['done']} done", f"{counts['failed']} failed"]
    if under_way:
        stalled = f" ({counts['stalled']} stalled)" if counts["stalled"] else ""
        parts.append(f"{under_way} not finished{stalled}")
    if counts["waiting"]:
        parts.append(f"{counts['waiting']} never booted")
    where = f"{report} (and .json)" if isinstance(report, Path) else report
    done = f"pxetui stopped: {', '.join(parts)} of {len(machines)} PCs."
    return f"{done}\nReport: {where}. State kept in {state}."
