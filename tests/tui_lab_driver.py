"""Drives the real TUI inside a lab namespace (run with `ip netns exec NS python THIS ...`).

A whole process in the namespace, because psutil reads /proc/self/net, which follows the
process's namespace rather than a thread's: NetnsLoop is not enough for the picker.
Prints one JSON object with what the test checks.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from pxetui.host import netif
from pxetui.session import Session, SessionConfig
from pxetui.session_loop import SessionLoop
from pxetui.tui.app import PxetuiApp
from pxetui.tui.screens.main import MainScreen
from pxetui.tui.screens.picker import PickerScreen


async def drawn_main_screen(app: PxetuiApp, pilot: Pilot[None]) -> MainScreen:
    """The main screen, once the events that came meanwhile are drawn."""
    app.flush_updates()
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, MainScreen), screen
    return screen


def how_it_ended(app: PxetuiApp, session: Session) -> dict[str, object]:
    """After the app has quit: what it returned and how many services it left running."""
    return {"return_code": app.return_code, "services_after_quit": len(session.services)}


async def drive(bridge: str, target: str, state: Path, http_port: int) -> dict[str, object]:
    session = Session(SessionConfig(interface="", state_dir=state, http_port=http_port))
    session.open()
    with SessionLoop() as services:  # the services on their own loop, as `pxetui` runs them
        app = PxetuiApp(session, list_interfaces=netif.list_interfaces, session_loop=services)
        return await drive_app(app, session, bridge, target)


async def drive_app(app: PxetuiApp, session: Session, bridge: str, target: str) -> dict[str, object]:
    result: dict[str, object] = {}
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, PickerScreen), picker
        result["interfaces"] = sorted(picker.interfaces)
        table = picker.query_one("#interfaces", DataTable)
        table.move_cursor(row=table.get_row_index(bridge))
        await pilot.press("enter")
        for _ in range(150):
            await pilot.pause(0.1)
            if app.started or (not app.starting and not isinstance(app.screen, MainScreen)):
                break
        result["started"] = app.started
        result["notes"] = [n.message for n in app._notifications]
        result["address"] = str(session.address.ip) if session.address else None
        if not app.started:
            return result
        await pilot.press("n")
        app.screen.query_one("#field-mac", Input).value = target
        await pilot.press("enter")
        await pilot.pause()
        screen = await drawn_main_screen(app, pilot)
        machines = screen.query_one("#machines", DataTable)
        machines.move_cursor(row=machines.get_row_index(target))
        await pilot.press("w")
        await pilot.pause(0.3)
        app.flush_updates()
        result["log"] = list(screen.log_lines)
        await pilot.press("q")
        await pilot.pause(0.5)
    result.update(how_it_ended(app, session))
    return result


def main() -> None:
    bridge, target, state, port = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(drive(bridge, target, state, port))), flush=True)


if __name__ == "__main__":
    main()
