"""The real TUI, its services on their own loop as `pxetui IFACE` runs them, with a busy TUI thread.

Run inside the lab's server namespace: `ip netns exec NS python THIS BRIDGE STATE BUSY_S PORT`.
Once the services run it holds the TUI's thread for BUSY_S seconds in pure Python, as a long
table redraw does, and prints `busy TS` before and `idle TS` after; then it quits with `q` and
prints one JSON object with the table rows and how the app ended.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from pathlib import Path

from textual.widgets import DataTable
from tui_lab_driver import drawn_main_screen, how_it_ended

from pxetui.session import Session, SessionConfig
from pxetui.session_loop import SessionLoop
from pxetui.tui.app import PxetuiApp


def hold_the_thread(seconds: float) -> int:
    """Bytecode that never waits: the GIL is all the services' thread can get from us."""
    spins = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        spins += 1
    return spins


async def drive(bridge: str, state: Path, busy: float, http_port: int) -> dict[str, object]:
    session = Session(SessionConfig(interface=bridge, mode="full", state_dir=state, http_port=http_port))
    session.open()
    result: dict[str, object] = {}
    with SessionLoop() as services:
        app = PxetuiApp(session, session_loop=services)
        async with app.run_test(size=(120, 36)) as pilot:
            for _ in range(300):
                await pilot.pause(0.1)
                if app.started or app.return_code is not None:
                    break
            result["started"] = app.started
            result["frozen_objects"] = gc.get_freeze_count()
            if app.started:
                print(f"busy {time.time()}", flush=True)
                hold_the_thread(busy)
                print(f"idle {time.time()}", flush=True)
                screen = await drawn_main_screen(app, pilot)
                table = screen.query_one("#machines", DataTable)
                result["rows"] = [
                    " ".join(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)
                ]
                await pilot.press("q")
                await pilot.pause(0.5)
        result.update(how_it_ended(app, session))
    return result


def main() -> None:
    bridge, state, busy, port = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(drive(bridge, state, busy, port))), flush=True)


if __name__ == "__main__":
    main()
