"""Pilot tests: every operator action of the TUI, good input and bad.

The session is opened on a temporary state directory but never started (no network): fake
events are fed through the bus, exactly as services would. Bad input must leave a message in
the form and the plan unchanged.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import tui_scenario as sc
from textual.widgets import Collapsible, DataTable, Input, OptionList

from pxetui.errors import UsageError
from pxetui.model.events import ServiceReady
from pxetui.session import Session
from pxetui.tui.app import PxetuiApp
from pxetui.tui.screens.confirm import ConfirmScreen
from pxetui.tui.screens.detail import DetailScreen
from pxetui.tui.screens.forms import FormScreen
from pxetui.tui.screens.help import HelpScreen
from pxetui.tui.screens.picker import PickerScreen

# What the TFTP service sends besides the file and its size.
TFTP_START: dict[str, Any] = {"client": "198.18.0.100", "blksize": 1468, "windowsize": 4}
TFTP_PROGRESS: dict[str, Any] = {"client": "198.18.0.100", "total": 1_000_000}


pytestmark = pytest.mark.usefixtures("utc")  # times on screen are UTC, whatever the host says


class RecordingApp(PxetuiApp):
    """The real app, plus a record of the notifications it showed."""

    def __init__(self, session: Session, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.notes.append((kwargs.get("severity", "information"), str(message)))
        super().notify(message, *args, **kwargs)


def make(session: Session, **kwargs: Any) -> RecordingApp:
    kwargs.setdefault("start_session", False)
    kwargs.setdefault("list_interfaces", sc.fake_interfaces)
    kwargs.setdefault("clock", lambda: sc.NOW)
    return RecordingApp(session, **kwargs)


def form(app: PxetuiApp) -> FormScreen:
    screen = app.screen
    assert isinstance(screen, FormScreen), f"expected a form, got {screen!r}"
    return screen


async def put_cursor_on(app: PxetuiApp, mac: str) -> None:
    table = sc.main_screen(app).query_one("#machines", DataTable)
    table.move_cursor(row=table.get_row_index(mac))


async def fill(pilot: Any, app: PxetuiApp, **values: str) -> None:
    for key, value in values.items():
        app.screen.query_one(f"#field-{key}", Input).value = value
    await pilot.pause()


def row_text(app: PxetuiApp, mac: str) -> str:
    table = sc.main_screen(app).query_one("#machines", DataTable)
    return " | ".join(str(cell).strip() for cell in table.get_row(mac))


async def settle(pilot: Any, app: PxetuiApp) -> None:
    app.flush_updates()
    await pilot.pause()


# -- the table ------------------------------------------------------------------------------------


async def test_rows_show_stage_progress_firmware_and_plan(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        uefi = row_text(app, sc.PC_UEFI)
        assert "lab-pc-01" in uefi and "UEFI" in uefi and "198.18.0.100" in uefi
        assert "kernel" in uefi and "45%" in uefi and "12.3MB/s" in uefi and "1m05s" in uefi
        assert "done" in row_text(app, sc.PC_BIOS) and "BIOS" in row_text(app, sc.PC_BIOS)
        assert "waiting" in row_text(app, sc.PC_WAITING)
        assert "UEFI-HTTP" in row_text(app, sc.PC_HTTPBOOT) and "menu" in row_text(app, sc.PC_HTTPBOOT)
        assert "failed: no disk found" in row_text(app, sc.PC_FAILED)
        assert "loader" in row_text(app, sc.PC_LOADER) and "40%" in row_text(app, sc.PC_LOADER)
        status = str(sc.main_screen(app).query_one("#status").render())
        # Issue 17's summary reads "N done / N failed" (was "done 1").
        assert "DHCP" in status and ":8080" in status and "1 failed" in status and "1 done" in status
        assert any("install.failed" in line for line in sc.main_screen(app).log_lines)


async def test_rival_dhcp_server_shows_a_warning_bar(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        bar = sc.main_screen(app).query_one("#rival")
        assert not bar.has_class("shown")
        sc.boot_events(session, rival=True)
        await settle(pilot, app)
        assert bar.has_class("shown") and bar.display
        assert "198.18.0.254" in str(bar.render()) and "proxy" in str(bar.render())


async def test_updates_are_coalesced_not_one_redraw_per_event(session: Session) -> None:
    """300 machines x 20 progress events: a handful of table refreshes, final values shown."""
    app = make(session, refresh_seconds=0.1)
    async with app.run_test(size=sc.SIZE) as pilot:
        await settle(pilot, app)
        before = app.refreshes
        macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(300)]
        for mac in macs:
            sc.publish(session, 1, "dhcp.discover", mac, arch=7)
            sc.publish(session, 2, "tftp.start", mac, file="ipxe.efi", total=1_000_000, **TFTP_START)
        for step in range(1, 21):
            for mac in macs:
                sc.publish(
                    session, 2 + step, "tftp.progress", mac, file="ipxe.efi", bytes=step * 40_000, rate=1e6, **TFTP_PROGRESS
                )
        events = 300 * 22
        await pilot.pause(0.35)
        await settle(pilot, app)
        refreshes = app.refreshes - before
        assert 1 <= refreshes <= 10, f"{refreshes} refreshes for {events} events"
        table = sc.main_screen(app).query_one("#machines", DataTable)
        assert table.row_count == len(session.registry.machines) >= 300
        assert "80%" in row_text(app, macs[0]) and "80%" in row_text(app, macs[-1])
        # One more round for every machine: visible rows are current after one refresh,
        # off-screen rows catch up a bounded number per refresh.
        for mac in macs:
            sc.publish(session, 30, "tftp.progress", mac, file="ipxe.efi", bytes=840_000, rate=1e6, **TFTP_PROGRESS)
        app.flush_updates()
        assert "84%" in row_text(app, macs[0]) and "80%" in row_text(app, macs[-1])
        # The rows just below the screen catch up first, in table order, on every run (a set's
        # order changes with the hash seed: CI once drew the last row first).
        below = int(table.scroll_y) + table.size.height + 1
        moved = set(macs)
        next_down = [str(r.key.value) for r in table.ordered_rows[below:] if str(r.key.value) in moved]
        assert "84%" in row_text(app, next_down[0]) and "84%" in row_text(app, next_down[19])
        assert "80%" in row_text(app, next_down[20])
        assert 0 < sc.main_screen(app).stale_rows < 300
        for _ in range(20):
            if not sc.main_screen(app).stale_rows:
                break
            await settle(pilot, app)
        assert sc.main_screen(app).stale_rows == 0
        assert "84%" in row_text(app, macs[-1])
        # Progress events are in the table, not in the log (they would flood it).
        assert not any(".progress" in line for line in sc.main_screen(app).log_lines)
        assert sum("tftp.start" in line for line in sc.main_screen(app).log_lines) == 300


async def test_a_refresh_while_the_app_closes_is_skipped(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refresh timer can fire while quitting has removed the table but the screen is not
    unmounted yet (CI saw NoMatches there): that refresh is skipped, the exit goes on."""
    from pxetui.tui.screens.main import MainScreen

    app = make(session, refresh_seconds=60)
    refreshed: list[bool] = []
    unmount = MainScreen.on_unmount

    def flush_then_unmount(screen: MainScreen) -> None:
        refreshed.append(screen.ready and not screen.query("#machines"))  # the moment CI hit
        sc.publish(session, 1, "dhcp.discover", "02:00:00:00:00:01", arch=7)
        app.flush_updates()  # what the timer does when it fires now
        unmount(screen)

    monkeypatch.setattr(MainScreen, "on_unmount", flush_then_unmount)
    async with app.run_test(size=sc.SIZE) as pilot:
        await settle(pilot, app)
    assert refreshed == [True]


async def test_render_caches_stay_small_while_every_row_changes(session: Session) -> None:
    """Stale render-cache entries are objects every full GC scans with the services waiting."""
    from textual.widgets import RichLog

    from pxetui.tui.screens.main import RENDER_CACHE_SIZES

    app = make(session, refresh_seconds=0.05)
    async with app.run_test(size=sc.SIZE) as pilot:
        macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(300)]
        for mac in macs:
            sc.publish(session, 1, "dhcp.discover", mac, arch=7)
            sc.publish(session, 2, "tftp.start", mac, file="ipxe.efi", total=1_000_000, **TFTP_START)
        table = sc.main_screen(app).query_one("#machines", DataTable)
        for step in range(1, 41):
            for mac in macs:
                sc.publish(session, 2 + step, "tftp.progress", mac, file="ipxe.efi", bytes=step * 20_000, rate=1e6, **TFTP_PROGRESS)
            await settle(pilot, app)
            table.scroll_down(animate=False)  # new rows on screen, old ones' entries go stale
        log = sc.main_screen(app).query_one("#log", RichLog)
        for widget in (table, log):
            for name, size in RENDER_CACHE_SIZES.items():
                cache = getattr(widget, name, None)
                if cache is not None:
                    assert cache.maxsize == size and len(cache) <= size, (widget, name, len(cache))
        cells = getattr(table, "_cell_render_cache")  # noqa: B009 - textual's, renamed would fail here
        assert len(cells) > 0
        assert len(log.lines) <= 300


# -- add a machine ----------------------------------------------------------------------------------


async def test_add_machine_in_cisco_notation_with_profile(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("n")
        await fill(pilot, app, mac="0011.2233.44AA", hostname="lab-pc-09", profile="debian-12-local")
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)  # the form closed
        entry = session.plan.get("00:11:22:33:44:aa")
        assert entry is not None and entry.profile == "debian-12-local" and entry.hostname == "lab-pc-09"
        await settle(pilot, app)
        assert "waiting" in row_text(app, "00:11:22:33:44:aa")
        saved = json.loads((session.state.path / "plan.json").read_text())
        assert "00:11:22:33:44:aa" in {m["mac"] for m in saved["machines"]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mac": "52:54:00:zz:34:99"}, "is not a MAC address"),
        ({"mac": "52:54:00:12:34"}, "is not a MAC address"),
        ({"mac": ""}, "is not a MAC address"),
        ({"mac": "52:54:00:12:34:99", "hostname": "-bad-"}, "is not valid"),
        ({"mac": "52:54:00:12:34:99", "profile": "windows-95"}, "unknown profile 'windows-95'"),
    ],
)
async def test_add_machine_bad_input_keeps_form_open_and_plan_unchanged(
    session: Session, values: dict[str, str], message: str
) -> None:
    before = session.plan.to_document()
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("n")
        await fill(pilot, app, **values)
        await pilot.press("enter")
        await pilot.pause()
        assert message in form(app).error_text
        assert form(app).query_one("#form-error").display
        assert session.plan.to_document() == before
        await pilot.press("escape")
        await pilot.pause()
        sc.main_screen(app)
    assert session.plan.to_document() == before


# -- assign / unassign / boot local ----------------------------------------------------------------


async def test_assign_lists_only_fitting_profiles_and_refuses_others(session: Session) -> None:
    arm = "02:00:00:00:00:0b"
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.publish(session, 1, "dhcp.discover", arm, arch=11)
        await settle(pilot, app)
        await put_cursor_on(app, arm)
        await pilot.press("a")
        choices = form(app).query_one("#choices", OptionList)
        offered = {choices.get_option_at_index(i).id for i in range(choices.option_count)}
        arm_uefi = {p.name for p in session.profiles.values() if "arm64" in p.arch and "uefi" in p.firmware}
        assert offered == arm_uefi and {"ipxe-shell", "local-disk"} <= offered
        assert "debian-12-local" not in offered  # an x86_64-only installer
        form(app).query_one("#field-profile", Input).focus()  # the list has focus first (issue 17)
        await fill(pilot, app, profile="debian-12-local")
        await pilot.press("enter")
        await pilot.pause()
        assert "does not fit" in form(app).error_text
        await fill(pilot, app, profile="no-such-os")
        await pilot.press("enter")
        await pilot.pause()
        assert "unknown profile 'no-such-os'" in form(app).error_text
        assert session.plan.get(arm) is None
        await fill(pilot, app, profile="local-disk", hostname="arm-01")
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)
        entry = session.plan.get(arm)
        assert entry is not None and entry.profile == "local-disk" and entry.hostname == "arm-01"


async def test_assign_to_marked_machines_from_the_list(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        await put_cursor_on(app, sc.PC_HTTPBOOT)
        await pilot.press("space")  # marks and moves down to PC_LOADER
        await pilot.press("space")
        assert sc.main_screen(app).marked == {sc.PC_HTTPBOOT, sc.PC_LOADER}
        await pilot.press("a")
        assert not form(app).query("#field-hostname")  # one hostname cannot fit two PCs
        choices = form(app).query_one("#choices", OptionList)
        ids = [choices.get_option_at_index(i).id for i in range(choices.option_count)]
        choices.focus()
        choices.highlighted = ids.index("debian-12-local")
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)
        for mac in (sc.PC_HTTPBOOT, sc.PC_LOADER):
            entry = session.plan.get(mac)
            assert entry is not None and entry.profile == "debian-12-local"
        await settle(pilot, app)
        assert "debian-12-local" in row_text(app, sc.PC_LOADER)
        await pilot.press("asterisk")  # clears the marks
        assert sc.main_screen(app).marked == set()


async def test_a_finished_pc_shows_disk_next_and_l_re_arms_it(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        entry = session.plan.get(sc.PC_BIOS)  # its installer reported done in the scenario
        assert entry is not None and entry.boot_local and entry.installed is not None
        assert "→ disk: debian-12-local" in row_text(app, sc.PC_BIOS)
        await put_cursor_on(app, sc.PC_BIOS)
        await pilot.press("l")  # install again
        assert not entry.boot_local and entry.installed is None
        await settle(pilot, app)
        assert "→ disk" not in row_text(app, sc.PC_BIOS) and "debian-12-local" in row_text(app, sc.PC_BIOS)


async def test_d_removes_a_machine_from_the_plan_after_asking(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await settle(pilot, app)
        await put_cursor_on(app, sc.PC_WAITING)
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("n")  # kept
        await pilot.pause()
        assert session.plan.get(sc.PC_WAITING) is not None
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot, app)
        assert session.plan.get(sc.PC_WAITING) is None
        assert sc.PC_WAITING not in session.registry.machines  # it never booted
        assert sc.PC_WAITING not in json.loads((session.state.path / "plan.json").read_text())["machines"].__repr__()


async def test_unassign_and_boot_local(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await settle(pilot, app)
        await put_cursor_on(app, sc.PC_UEFI)
        await pilot.press("l")
        entry = session.plan.get(sc.PC_UEFI)
        assert entry is not None and entry.boot_local
        await settle(pilot, app)
        assert "→ disk: debian-12-local" in row_text(app, sc.PC_UEFI)  # issue 17: was "local disk"
        await pilot.press("l")
        assert not entry.boot_local
        await pilot.press("u")
        assert entry.profile is None
        await settle(pilot, app)
        assert "menu" in row_text(app, sc.PC_UEFI)
        saved = json.loads((session.state.path / "plan.json").read_text())
        assert {m["mac"]: m["profile"] for m in saved["machines"]}[sc.PC_UEFI] is None


async def test_actions_on_an_empty_table_say_so(tmp_path: Path) -> None:
    session = sc.open_session(tmp_path / "state")
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("a")
        sc.main_screen(app)
        assert any(sev == "warning" and "No machine selected" in msg for sev, msg in app.notes)


# -- import / export -------------------------------------------------------------------------------


async def test_import_plan_csv(session: Session, tmp_path: Path) -> None:
    good = tmp_path / "lab.csv"
    # debian-12-local boots from Debian's installer package; a profile still to fetch is refused.
    good.write_text("mac,profile,hostname\n52-54-00-AA-00-01,debian-12-local,room-1\n5254.00aa.0002,,room-2\n")
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("i")
        await fill(pilot, app, path=str(good))
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)
        first = session.plan.get("52:54:00:aa:00:01")
        assert first is not None and first.profile == "debian-12-local" and first.hostname == "room-1"
        assert session.plan.get("52:54:00:aa:00:02") is not None
        await settle(pilot, app)
        assert "room-2" in row_text(app, "52:54:00:aa:00:02")
        assert any("imported 2" in msg for _, msg in app.notes)


@pytest.mark.parametrize(
    ("content", "messages"),
    [
        (
            "mac,profile,hostname\n52:54:00:aa:00:01,debian-12,ok-1\nnot-a-mac,debian-12,x\n"
            "52:54:00:aa:00:03,windows-95,y\n",
            [
                ":3: 'not-a-mac' is not a MAC address",
                ":4: unknown profile 'windows-95'",
                "Nothing was imported",
            ],
        ),
        (
            "mac;profile;hostname\n52:54:00:aa:00:01;debian-12;x\n",
            ["the header must be 'mac,profile,hostname'"],
        ),
        ("", ["empty; expected the header"]),
        (b"\xff\xfe\x00garbage".decode("latin-1"), ["header must be"]),
    ],
)
async def test_import_malformed_csv_changes_nothing(
    session: Session, tmp_path: Path, content: str, messages: list[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    before = session.plan.to_document()
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("i")
        await fill(pilot, app, path=str(bad))
        await pilot.press("enter")
        await pilot.pause()
        for message in messages:
            assert message in form(app).error_text
    assert session.plan.to_document() == before
    assert session.plan.get("52:54:00:aa:00:01") is None


async def test_import_missing_file_says_cannot_read(session: Session, tmp_path: Path) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("i")
        await fill(pilot, app, path=str(tmp_path / "nope.csv"))
        await pilot.press("enter")
        await pilot.pause()
        assert "cannot read" in form(app).error_text


async def test_export_report_writes_csv_and_json(session: Session, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "monday"  # missing: the dialog creates it (issue 17)
    (tmp_path / "a-file").write_text("not a folder")
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.boot_events(session)
        await pilot.press("e")
        assert form(app).values()["directory"] == str(session.state.path)
        await fill(pilot, app, directory=str(tmp_path / "a-file"))
        await pilot.press("enter")
        await pilot.pause()
        assert "is not a directory" in form(app).error_text
        assert str(tmp_path / "a-file") in form(app).error_text  # the path is named
        await fill(pilot, app, directory=str(out))
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)
    rows = {r["mac"]: r for r in csv.DictReader((out / "pxetui-report.csv").open())}
    assert rows[sc.PC_BIOS]["result"] == "done" and rows[sc.PC_BIOS]["profile"] == "debian-12-local"
    assert rows[sc.PC_BIOS]["t_done"] == "2027-01-15T08:01:00Z"
    assert rows[sc.PC_FAILED]["result"] == "failed" and rows[sc.PC_FAILED]["error"] == "no disk found"
    assert rows[sc.PC_WAITING]["result"] == "not booted"
    doc = json.loads((out / "pxetui-report.json").read_text())
    assert {m["mac"] for m in doc["machines"]} == set(rows)


# -- unknown machines, wake-on-LAN --------------------------------------------------------------------


async def test_unknown_policy_gives_the_next_n_unknown_machines_a_profile(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("p")
        await fill(pilot, app, profile="debian-12-local", count="two")
        await pilot.press("enter")
        await pilot.pause()
        assert "not a whole number" in form(app).error_text
        await fill(pilot, app, profile="windows-95", count="2")
        await pilot.press("enter")
        await pilot.pause()
        assert "unknown profile" in form(app).error_text
        await fill(pilot, app, profile="debian-12-local", count="0")
        await pilot.press("enter")
        await pilot.pause()
        assert "1 or more" in form(app).error_text
        assert session.plan.unknown.profile is None
        await fill(pilot, app, profile="debian-12-local", count="2")
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)
        for i in range(3):
            sc.publish(session, 100 + i, "dhcp.discover", f"02:00:00:00:01:0{i}", arch=7, vendor_class=sc.UEFI_VENDOR_CLASS)
        await settle(pilot, app)
        profiles = [(session.plan.get(f"02:00:00:00:01:0{i}") or sc.NO_ENTRY).profile for i in range(3)]
        assert profiles == ["debian-12-local", "debian-12-local", None]
        assert "debian-12-local" in row_text(app, "02:00:00:00:01:01")
        await pilot.press("p")
        await fill(pilot, app, profile="", count="")
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)
        assert session.plan.unknown.profile is None


async def test_wake_without_a_running_session_explains(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("w")
        assert any(sev == "error" and "needs a running session" in msg for sev, msg in app.notes)


# -- detail, help, log, palette ---------------------------------------------------------------------


async def test_detail_screen_shows_fingerprint_and_timeline(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        await put_cursor_on(app, sc.PC_UEFI)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        fp = app.screen.query_one("#fingerprint", DataTable)
        fingerprint = {str(fp.get_row_at(i)[0]): str(fp.get_row_at(i)[2]) for i in range(fp.row_count)}
        assert fingerprint["93"] == "7 (x64 UEFI)"
        assert fingerprint["60"] == sc.UEFI_VENDOR_CLASS
        assert fingerprint["77"] == "iPXE"
        assert fingerprint["97"].startswith("00000000-")
        timeline = app.screen.query_one("#timeline", DataTable)
        steps = [str(timeline.get_row_at(i)[2]) for i in range(timeline.row_count)]
        assert steps == ["dhcp", "loader", "menu", "kernel"]
        await pilot.press("escape")
        await pilot.pause()
        sc.main_screen(app)


async def test_help_log_toggle_and_command_palette(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        screen = sc.main_screen(app)
        pane = screen.query_one("#log-pane", Collapsible)
        assert not pane.collapsed
        await pilot.press("g")
        assert pane.collapsed
        titles = {c.title for c in app.get_system_commands(screen)}
        assert {"Assign", "Unassign", "Add", "Import", "Report", "Local", "Policy", "Wake", "Help"} <= titles
        command = next(c for c in app.get_system_commands(screen) if c.title == "Add")
        await command.callback()  # type: ignore[misc]
        await pilot.pause()
        assert form(app).id == "add-form"


# -- quit -------------------------------------------------------------------------------------------


async def test_quit_with_transfers_running_asks_first_and_saves(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        assert app.transfers_running() == 2
        await pilot.press("ctrl+c")  # operators' habit: same as q
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "2 transfers still running" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        sc.main_screen(app)
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert app.return_code == 0
    saved = json.loads((session.state.path / "machines.json").read_text())
    assert sc.PC_LOADER in {m["mac"] for m in saved["machines"]}


async def test_quit_without_transfers_exits_at_once(session: Session) -> None:
    app = make(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running  # no question asked: nothing was transferring
    assert app.return_code == 0
    assert (session.state.path / "plan.json").is_file()


# -- interface picker and start ----------------------------------------------------------------------


class FakeStart:
    """Stands in for Session.start in unit tests (the real one is in test_tui_lab.py)."""

    def __init__(self, session: Session, error: Exception | None = None) -> None:
        self.session = session
        self.error = error
        self.interfaces: list[str] = []

    async def __call__(self) -> None:
        self.interfaces.append(self.session.config.interface)
        if self.error is not None:
            raise self.error
        ready = ServiceReady(
            mode="full", interface=self.session.config.interface, address="198.18.0.1", http_port=8080,
            services={"dhcp": {"port": 67}}, state_dir=str(self.session.state.path),
        )  # fmt: skip
        self.session.emit(ready)


async def test_picker_lists_interfaces_warns_on_default_route_and_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = sc.open_session(tmp_path / "state", interface="")
    start = FakeStart(session)
    monkeypatch.setattr(session, "start", start)
    app = make(session, start_session=True)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen)
        table = app.screen.query_one("#interfaces", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names == ["enx00e04c680001", "eth1", "eth0"]  # lab NICs first, uplink last, no lo
        assert "default route" in str(table.get_row("eth0")[5])
        table.move_cursor(row=2)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)  # serving on the uplink needs a yes
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen) and start.interfaces == []
        table.move_cursor(row=0)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert start.interfaces == ["enx00e04c680001"]
        assert "DHCP" in str(sc.main_screen(app).query_one("#status").render())
        assert app.started


async def test_picker_start_failure_returns_to_picker_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = sc.open_session(tmp_path / "state", interface="")
    start = FakeStart(session, UsageError("interface eth1 is down: plug in the cable"))
    monkeypatch.setattr(session, "start", start)
    app = make(session, start_session=True)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#interfaces", DataTable)
        table.move_cursor(row=1)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert start.interfaces == ["eth1"]
        assert isinstance(app.screen, PickerScreen)
        assert ("error", "interface eth1 is down: plug in the cable") in app.notes
        assert not app.started


async def test_start_failure_with_interface_given_exits_with_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = sc.open_session(tmp_path / "state", interface="eth9")
    monkeypatch.setattr(session, "start", FakeStart(session, UsageError("no interface named 'eth9'")))
    app = make(session, start_session=True)
    async with app.run_test(size=sc.SIZE) as pilot:
        await pilot.pause(0.3)
    assert app.return_code == 2
    assert isinstance(app.start_error, UsageError)
