"""Snapshot tests: each TUI screen rendered at 120x36 (some at 80x24 or 200x50) with fixed data,
clock and time zone, compared with the SVG stored in screens/ (the README shows those same files).

Regenerate after an intended change, then look at the pictures before committing:

    PXETUI_UPDATE_SCREENS=1 .venv/bin/pytest tests/test_tui_screens.py

Rich names the SVG's CSS classes after a hash of the content (`terminal-1234-r5`); it is
replaced by a fixed name so the files only change when the picture does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import tui_scenario as sc
from textual.widgets import DataTable, Input

from pxetui.session import Session
from pxetui.tui.app import PxetuiApp

SCREENS = Path(__file__).resolve().parent.parent / "screens"
UPDATE = os.environ.get("PXETUI_UPDATE_SCREENS") == "1"
_RICH_ID = re.compile(r"terminal-\d+")

Steps = Callable[[Any, PxetuiApp, Session], Awaitable[None]]


pytestmark = pytest.mark.usefixtures("utc")  # times on screen are UTC, whatever the host says


def normalise(svg: str) -> str:
    return _RICH_ID.sub("terminal-pxetui", svg)


async def nothing(pilot: Any, app: PxetuiApp, session: Session) -> None:
    return None


def keys(*pressed: str, values: dict[str, str] | None = None, submit: bool = False) -> Steps:
    async def steps(pilot: Any, app: PxetuiApp, session: Session) -> None:
        for key in pressed:
            await pilot.press(key)
            await pilot.pause()
        for field, value in (values or {}).items():
            app.screen.query_one(f"#field-{field}", Input).value = value
        if submit:
            await pilot.press("enter")
        await pilot.pause()

    return steps


def on_row(mac: str, then: Steps) -> Steps:
    async def steps(pilot: Any, app: PxetuiApp, session: Session) -> None:
        table = app.screen.query_one("#machines", DataTable)
        table.move_cursor(row=table.get_row_index(mac))
        await pilot.pause()
        await then(pilot, app, session)

    return steps


BAD_CSV = "mac,profile,hostname\n52:54:00:aa:00:01,debian-12,ok\n52:54:00:zz:00:02,debian-12,x\n"


async def stuck_at_dhcp(pilot: Any, app: PxetuiApp, session: Session) -> None:
    """The HTTP Boot PC keeps asking and never takes an address; then the morning goes on."""
    for n in range(3):
        sc.publish(session, 74 + 8 * n, "dhcp.discover", sc.PC_HTTPBOOT, arch=16, vendor_class="HTTPClient:Arch:00016")
    app.flush_updates()
    await pilot.pause()

def proxy_running(uplink: bool, then: Steps = nothing) -> Steps:
    """Issue 14: the package proxy runs; its figures come, with or without a route out."""

    async def steps(pilot: Any, app: PxetuiApp, session: Session) -> None:
        facts: dict[str, object] = {"state": "running", "uplink": uplink, "url": "http://198.18.0.1:3142"}
        if not uplink:
            facts["warning"] = sc.NO_UPLINK
        sc.proxy_ready(session, facts)
        sc.publish(session, 90, sc.proxy_stats(uplink=uplink))
        app.flush_updates()
        await pilot.pause()
        await then(pilot, app, session)

    return steps


async def profiles_screen(pilot: Any, app: PxetuiApp, session: Session) -> None:
    """Issue 16: the OS profiles (o): one downloading, upstream asked (debian-12-local: installed)."""
    from pxetui.tui.downloads import Download

    session.config.cache_dir = Path("lab-cache")  # relative to the test's directory: the same in every run
    app.downloads["debian-12"] = Download("debian-12", "debian-12 initrd", 21_000_000, 42_000_000)
    app.upstream.update({"ubuntu-24.04": "24.04.4", "debian-13": "13.2", "fedora-server": "45"})
    await pilot.press("o")
    await pilot.pause()
    await pilot.pause(0.2)


# name -> (session interface, rival DHCP seen, steps after the scenario's events)
CASES: dict[str, tuple[str, bool, Steps]] = {
    "picker": ("", False, nothing),
    "main": ("enx00e04c680001", False, nothing),
    "main-rival-dhcp": ("enx00e04c680001", True, nothing),
    "detail": ("enx00e04c680001", False, on_row(sc.PC_UEFI, keys("enter"))),
    "help": ("enx00e04c680001", False, keys("question_mark")),
    "assign": ("enx00e04c680001", False, on_row(sc.PC_HTTPBOOT, keys("a"))),
    "add-machine-bad-mac": (
        "enx00e04c680001",
        False,
        keys("n", values={"mac": "52:54:00:zz:34:99", "hostname": "lab-pc-07"}, submit=True),
    ),
    # Relative path: the test runs in a temporary directory holding lab.csv.
    "import-malformed-csv": ("enx00e04c680001", False, keys("i", values={"path": "lab.csv"}, submit=True)),
    # The default is the state directory; shown as root would see it, not pytest's tmp path.
    "export-report": ("enx00e04c680001", False, keys("e", values={"directory": "/var/lib/pxetui"})),
    "unknown-policy": ("enx00e04c680001", False, keys("p", values={"profile": "debian-12", "count": "10"})),
    "quit-confirm": ("enx00e04c680001", False, keys("q")),
    # Issue 17: the same morning on an 80x24 terminal and on a 200x50 one, an empty first
    # screen, and the summary bar four minutes later, when three PCs have stopped moving.
    "main-80x24": ("enx00e04c680001", False, nothing),
    "main-200x50": ("enx00e04c680001", False, nothing),
    "import-malformed-csv-80x24": ("enx00e04c680001", False, keys("i", values={"path": "many.csv"}, submit=True)),
    "empty": ("enx00e04c680001", False, nothing),
    "main-stalled-summary": ("enx00e04c680001", False, stuck_at_dhcp),
    "profiles": ("enx00e04c680001", False, profiles_screen),
    # Issue 14: the package proxy's figures at 80x24 and wide, and a laptop with no uplink.
    "main-proxy-80x24": ("enx00e04c680001", False, proxy_running(uplink=True)),
    "main-proxy-200x50": ("enx00e04c680001", False, proxy_running(uplink=True)),
    "main-no-uplink-80x24": ("enx00e04c680001", False, proxy_running(uplink=False)),
    "detail-proxy": ("enx00e04c680001", False, proxy_running(uplink=True, then=on_row(sc.PC_BIOS, keys("enter")))),
}
# name -> (terminal size, seconds after the scenario's NOW that the clock says)
SIZES = {"main-80x24": (80, 24), "import-malformed-csv-80x24": (80, 24), "main-200x50": (200, 50), "empty": (80, 24),
         "main-proxy-80x24": (80, 24), "main-proxy-200x50": (200, 50), "main-no-uplink-80x24": (80, 24)}  # fmt: skip
LATER = {"main-stalled-summary": 240.0}
MANY_BAD = "mac,profile,hostname\n" + "".join(f"52:54:00:zz:00:{i:02},debian-12,pc-{i}\n" for i in range(12))
# Issue 17: the picker at 80x24 on a laptop whose lab NIC is a bridge's port: the port and a
# bond's member are marked, last, with why; the key bar names Enter.
CASES["picker-ports-80x24"] = ("", False, keys("down", "down"))  # the cursor on the port: why, in full
SIZES["picker-ports-80x24"] = (80, 24)
INTERFACES = {"picker-ports-80x24": sc.bridged_interfaces}


async def render(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    interface, rival, steps = CASES[name]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "lab.csv").write_text(BAD_CSV)
    (tmp_path / "many.csv").write_text(MANY_BAD)
    monkeypatch.chdir(tmp_path)
    session = sc.open_session(tmp_path / "state", interface=interface)
    empty = name == "empty"
    if interface and not empty:
        sc.plan_lab(session)  # before the app subscribes: plan events (real time) stay out of the log
    now = sc.NOW + LATER.get(name, 0.0)
    app = sc.make_app(session, clock=lambda: now, list_interfaces=INTERFACES.get(name, sc.fake_interfaces))
    async with app.run_test(size=SIZES.get(name, sc.SIZE)) as pilot:
        if interface and not empty:
            sc.boot_events(session, rival=rival)
            app.flush_updates()
            await pilot.pause()
        await steps(pilot, app, session)
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.1)
        return normalise(app.export_screenshot(title="pxetui"))


@pytest.mark.parametrize("name", sorted(CASES))
async def test_screen_matches_stored_svg(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = await render(name, tmp_path, monkeypatch)
    stored_path = SCREENS / f"{name}.svg"
    if UPDATE:
        SCREENS.mkdir(exist_ok=True)
        stored_path.write_text(live, encoding="utf-8")
    assert stored_path.is_file(), f"no {stored_path}: run PXETUI_UPDATE_SCREENS=1 pytest {__file__}"
    stored = stored_path.read_text(encoding="utf-8")
    if live != stored:
        (tmp_path / f"{name}.live.svg").write_text(live, encoding="utf-8")
    assert live == stored, (
        f"{name}: the screen changed; compare {tmp_path / (name + '.live.svg')} with {stored_path},"
        " and if the change is intended regenerate with PXETUI_UPDATE_SCREENS=1"
    )


async def test_rendering_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = await render("main", tmp_path / "a", monkeypatch)
    second = await render("main", tmp_path / "b", monkeypatch)
    assert first == second
    assert "52:54:00:12:34:01" in first
