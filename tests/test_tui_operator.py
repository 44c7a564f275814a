"""Issue 17, the operator's screen: usable at 80x24, readable at a glance, no surprises.

Pilot tests at 80x24, 120x36 and 200x50 on the recorded-style scenario (tests/tui_scenario.py):
what fits, the event log as sentences, the stalled state, the summary bar, the empty first
screen, the forms. Pure parts (sentences, stalls, layout) are tested without a screen.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import tui_scenario as sc
from textual import events
from textual.widgets import Button, DataTable, Input, OptionList, RichLog, Static

from pxetui.host.netif import InterfaceInfo, Member
from pxetui.model import sentences
from pxetui.model.events import (
    EVENT_TYPES,
    DhcpAck,
    DhcpDiscover,
    HttpRequest,
    ServiceReady,
    TftpDone,
    TftpProgress,
    TftpStart,
)
from pxetui.model.registry import Machine, Stage, TransferProgress
from pxetui.session import Session
from pxetui.tui import launch, layout, stalls
from pxetui.tui.app import PxetuiApp
from pxetui.tui.format import stage_text as format_stage
from pxetui.tui.screens.detail import DetailScreen
from pxetui.tui.screens.forms import FormScreen
from pxetui.tui.screens.main import POLICY_ALL
from pxetui.tui.screens.picker import PickerScreen
from pxetui.tui.widgets import KeyBar

SIZES = [(80, 24), (120, 36), (200, 50)]


pytestmark = pytest.mark.usefixtures("utc")  # times on screen are UTC, whatever the host says


def form(app: PxetuiApp) -> FormScreen:
    assert isinstance(app.screen, FormScreen), app.screen
    return app.screen


async def settle(pilot: Any, app: PxetuiApp) -> None:
    app.flush_updates()
    await pilot.pause()


def status_lines(app: PxetuiApp) -> list[str]:
    return str(sc.main_screen(app).query_one("#status", Static).render()).splitlines()


def row_text(app: PxetuiApp, mac: str) -> str:
    table = sc.main_screen(app).query_one("#machines", DataTable)
    return " | ".join(str(cell).strip() for cell in table.get_row(mac))


# -- 1. what fits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_header_table_and_keys_fit_the_terminal(session: Session, size: tuple[int, int]) -> None:
    width, _ = size
    app = sc.make_app(session)
    async with app.run_test(size=size) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        lines = status_lines(app)
        assert len(lines) == 2 and all(len(line) <= width - 2 for line in lines), lines  # no wrap
        assert "mode full" in lines[0] and "HTTP" in lines[0] and "1 done" in lines[1]
        table = sc.main_screen(app).query_one("#machines", DataTable)
        keys = [str(key.value) for key in table.columns]
        assert {"mac", "os", "stage", "progress"} <= set(keys)
        assert sum(c.width for c in table.columns.values()) <= width - layout.SCROLLBAR
        uefi = row_text(app, sc.PC_UEFI)
        assert "kernel" in uefi and "45%" in uefi  # stage and progress, whatever the width
        bar = str(sc.main_screen(app).query_one(KeyBar).render())
        assert len(bar) <= width - 2 and "? Help" in bar and "q Quit" in bar and "a Assign" in bar
        if width >= 200:
            assert len(keys) == len(layout.COLUMNS)  # every column, and the OS has room
            assert "debian-12-local" in uefi and "debian-12-l…" not in uefi
            assert table.columns["os"].width >= len(" → disk: debian-12-local")  # type: ignore[index]
        if width == 80:
            assert "vendor" not in keys and "firmware" not in keys  # the least important went first


async def test_columns_follow_a_resize(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(80, 24)) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        table = sc.main_screen(app).query_one("#machines", DataTable)
        table.move_cursor(row=table.get_row_index(sc.PC_LOADER))
        assert "vendor" not in [str(k.value) for k in table.columns]
        await pilot.resize_terminal(200, 50)
        await settle(pilot, app)
        assert [str(k.value) for k in table.columns] == [c.key for c in layout.COLUMNS]
        assert sc.main_screen(app).cursor_mac() == sc.PC_LOADER  # the cursor stayed on its PC
        assert "QEMU/KVM" in row_text(app, sc.PC_LOADER)


def test_fit_columns_gives_way_in_priority_order() -> None:
    narrow = [c.key for c, _ in layout.fit_columns(80)]
    assert narrow == ["mac", "hostname", "os", "stage", "progress"]
    assert sum(w for _, w in layout.fit_columns(80)) == 80 - layout.SCROLLBAR
    wide = dict((c.key, w) for c, w in layout.fit_columns(200))
    assert len(wide) == 9 and wide["os"] > 20 and sum(wide.values()) <= 200


async def test_a_long_error_list_keeps_ok_and_its_end_on_an_80x24_screen(
    session: Session, tmp_path: Path
) -> None:
    bad = tmp_path / "many.csv"
    bad.write_text("mac,profile,hostname\n" + "".join(f"52:54:00:zz:00:{i:02},debian-12,x{i}\n" for i in range(12)))
    app = sc.make_app(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("i")
        form(app).query_one("#field-path", Input).value = str(bad)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert "Nothing was imported" in form(app).error_text
        ok = form(app).query_one("#ok", Button)
        assert ok.region.bottom <= 24 and ok.region.height > 0  # the button is on screen
        error = form(app).query_one("#form-error", Static)
        body = error.parent
        assert body is not None
        visible = body.region  # type: ignore[attr-defined]
        assert error.region.bottom <= visible.bottom and error.region.bottom > visible.y  # its end shows


# -- 2. the event log reads as sentences -----------------------------------------------------------


def test_every_event_class_has_a_sentence() -> None:
    missing = [
        name
        for name, cls in EVENT_TYPES.items()
        if not any(c in sentences._SENTENCES for c in cls.__mro__[:-2])  # not Event's fallback
    ]
    assert missing == []


def test_sentences_say_what_happened() -> None:
    ack = DhcpAck(mac=sc.PC_UEFI, ip="198.18.0.100", file="ipxe.efi", arch=7, params=[1, 3, 6])
    assert sentences.sentence(ack) == "52:54:00:12:34:01 got 198.18.0.100 (x64 UEFI), boot file ipxe.efi"
    progress = TftpProgress(mac=sc.PC_UEFI, file="ipxe.efi", client="198.18.0.100", bytes=450, total=1000, rate=12e6)
    assert sentences.sentence(progress) == "52:54:00:12:34:01 loading ipxe.efi 45 % 12.0MB/s"
    ready = ServiceReady(mode="full", interface="eth1", address="198.18.0.1", http_port=8080,
                         services={"tftp": {"port": 69, "blksize": 1468}}, state_dir="/var/lib/pxetui")  # fmt: skip
    assert "{" not in sentences.sentence(ready) and "TFTP" in sentences.sentence(ready)
    config = HttpRequest(mac=sc.PC_BIOS, path="/config/x/preseed.cfg", kind="config", file="preseed.cfg",
                         total=10, client="198.18.0.101")  # fmt: skip
    assert "installer fetched its answers" in sentences.sentence(config)
    discover = DhcpDiscover(mac=sc.PC_BIOS, arch=0, params=[1, 3, 6, 43])
    assert sentences.log_line(dataclasses.replace(discover, ts=sc.BASE_TS)) == (
        "08:00:00 52:54:00:12:34:02 asks for an address (x86 BIOS)"
    )


async def test_the_log_shows_sentences_and_the_raw_events_one_key_away(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        screen = sc.main_screen(app)
        assert "08:00:30 52:54:00:12:34:01 got 198.18.0.100 (x64 UEFI), boot file ipxe.efi" in screen.log_sentences
        assert not any(marker in line for line in screen.log_sentences for marker in ("=", "None", "{", "["))
        log = screen.query_one("#log", RichLog)
        drawn = "\n".join(strip.text for strip in log.lines)
        assert "got 198.18.0.100" in drawn and "params=" not in drawn
        await pilot.press("r")
        await pilot.pause()
        drawn = "\n".join(strip.text for strip in log.lines)
        assert "dhcp.ack 52:54:00:12:34:01" in drawn and "params=" in drawn
        await pilot.press("r")
        await pilot.pause()
        assert "params=" not in "\n".join(strip.text for strip in log.lines)


# -- 3. stalled --------------------------------------------------------------------------------------

T0 = sc.BASE_TS


def at_dhcp(ip: str | None = None) -> Machine:
    return Machine(mac=sc.PC_UEFI, stage=Stage.DHCP, ip=ip, firmware="UEFI", first_seen=T0, last_seen=T0 + 40,
                   stage_times={"dhcp": T0})  # fmt: skip


def test_a_pc_that_never_takes_an_address_is_stalled_with_a_likely_cause() -> None:
    assert stalls.stall(at_dhcp(), T0 + 20, asks=2) is None  # firmware is still retrying
    stuck = stalls.stall(at_dhcp(), T0 + 60, asks=3)
    assert stuck is not None and stuck.step == "DHCP"
    assert stuck.cause == "asked for an address 3 times, never took it: another DHCP server?"
    assert stuck.describe() == f"stalled at DHCP for 1m00s: {stuck.cause}"
    took = stalls.stall(at_dhcp("198.18.0.100"), T0 + 60)
    assert took is not None and "got 198.18.0.100, never asked for its boot file" in took.cause


def test_a_loader_that_never_comes_back_suggests_secure_boot() -> None:
    m = Machine(mac=sc.PC_UEFI, stage=Stage.LOADER, firmware="UEFI", last_seen=T0 + 33,
                transfer=TransferProgress(file="ipxe.efi", bytes=10, total=10, finished=True))  # fmt: skip
    assert stalls.stall(m, T0 + 60) is None
    stuck = stalls.stall(m, T0 + 120)
    assert stuck is not None and stuck.cause == "loaded ipxe.efi, never came back: Secure Boot?"


def test_a_pc_that_refuses_every_loader_says_so_and_what_to_change_not_a_network_fault() -> None:
    shim = "debian-installer/amd64/bootnetx64.efi"
    loaded = Machine(mac=sc.PC_UEFI, stage=Stage.LOADER, firmware="UEFI", last_seen=T0 + 33, shim_loaded=True,
                     transfer=TransferProgress(file=shim, bytes=10, total=10, finished=True))  # fmt: skip
    assert stalls.stall(loaded, T0 + 60) is None
    quiet = stalls.stall(loaded, T0 + 120)  # fetched the shim whole and went quiet
    assert quiet is not None and quiet.cause == (
        "loaded bootnetx64.efi (the Microsoft-signed shim), never asked for its GRUB: its Secure Boot"
        " refused it? allow the Microsoft 3rd-party UEFI CA in its firmware setup, or Secure Boot off"
    )
    # Back at DHCP after it (the registry's mark): stalled at once, saying what it tried.
    marked = dataclasses.replace(loaded, shim_loaded=False, secure_boot="all-refused",
                                 timeline=[(T0 + 5, "secure-boot", "iPXE refused")])  # fmt: skip
    refused = stalls.stall(marked, T0 + 34)
    assert refused is not None and refused.describe() == (
        "stalled at loader for 1s: refused iPXE and the Microsoft-signed shim: its Secure Boot trusts"
        " neither: allow the Microsoft 3rd-party UEFI CA in its firmware setup, or Secure Boot off"
    )
    # A shim that stopped midway is the network's fault, whatever the mark says.
    cut = dataclasses.replace(marked, transfer=TransferProgress(file=shim, bytes=4, total=10))
    assert stalls.stall(cut, T0 + 60) is None
    stopped = stalls.stall(cut, T0 + 120)
    assert stopped is not None and stopped.cause == "bootnetx64.efi stopped at 40 %: cable, switch, or the PC switched off?"


async def test_the_row_and_details_of_a_pc_that_refuses_every_loader_at_80x24(session: Session) -> None:
    mac, ip, shim = sc.PC_LOADER, "198.18.0.106", "debian-installer/amd64/bootnetx64.efi"
    app = sc.make_app(session, clock=lambda: sc.NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        pxe = DhcpDiscover(mac=mac, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003000")
        for offset, loader in ((10, "ipxe.efi"), (30, shim)):
            sc.publish(session, offset, pxe)
            sc.publish(session, offset + 1, DhcpAck(mac=mac, arch=7, ip=ip, file=loader))
            sc.publish(session, offset + 2, TftpStart(mac=mac, file=loader, client=ip, total=10, blksize=1468,
                                                      windowsize=4))  # fmt: skip
            sc.publish(session, offset + 3, TftpDone(mac=mac, file=loader, client=ip, bytes=10, total=10, rate=1.0,
                                                     ok=True, reason=""))  # fmt: skip
        sc.publish(session, 50, pxe)  # back again: refused the shim too
        await settle(pilot, app)
        assert "stalled: allow the Microsoft" in row_text(app, mac)
        app.push_screen(DetailScreen(session, mac, lambda: sc.NOW))
        await pilot.pause()
        info = " ".join(str(app.screen.query_one("#detail-info", Static).render()).split())
        assert "refused iPXE and the Microsoft-signed shim: its Secure Boot trusts neither" in info, info
        assert "'Allow Microsoft 3rd Party UEFI CA'" in info and "Surface: Secured-core off" in info, info


def test_a_silent_installer_and_a_stopped_transfer() -> None:
    m = Machine(mac=sc.PC_BIOS, stage=Stage.INSTALLING, last_seen=T0)
    assert stalls.stall(m, T0 + 300) is None  # installers run for minutes without a word
    stuck = stalls.stall(m, T0 + 960)
    assert stuck is not None
    assert stuck.cause == "installer fetched its answers 16m00s ago and is silent: look at its screen"
    k = Machine(mac=sc.PC_UEFI, stage=Stage.KERNEL, last_seen=T0,
                transfer=TransferProgress(file="linux", bytes=45, total=100))  # fmt: skip
    assert stalls.stall(k, T0 + 30) is None
    stopped = stalls.stall(k, T0 + 90)
    assert stopped is not None and "linux stopped at 45 %" in stopped.cause
    initrd = Machine(mac=sc.PC_UEFI, stage=Stage.INITRD, last_seen=T0,
                     transfer=TransferProgress(file="initrd.gz", bytes=9, total=9, finished=True))  # fmt: skip
    after = stalls.stall(initrd, T0 + 600)
    assert after is not None and "loaded initrd.gz, the installer never fetched its answers" in after.cause


def test_a_machine_restored_after_a_restart_is_stalled_not_booting() -> None:
    saved = at_dhcp().to_dict()
    restored = Machine.from_dict(saved)
    assert stalls.group(restored, T0 + 16 * 60) == "stalled"
    for done in (Stage.DONE, Stage.FAILED, Stage.WAITING):
        assert stalls.stall(dataclasses.replace(restored, stage=done), T0 + 16 * 60) is None


def test_a_pc_sent_to_its_disk_is_on_its_disk_not_loading_or_stalled() -> None:
    # The menu timed out (or local was chosen): the PC left the network on purpose.
    menu = Machine(mac=sc.PC_UEFI, stage=Stage.MENU, menu_choice="local-disk", last_seen=T0)
    assert stalls.group(menu, T0 + 5) == "loading"
    assert stalls.group(menu, T0 + 600) == "stalled"  # chose, then never asked for a kernel
    local = dataclasses.replace(menu, booted_local=True)
    assert stalls.stall(local, T0 + 600) is None
    assert stalls.group(local, T0 + 600) == "on disk"
    assert format_stage(local) == "local disk" and format_stage(menu) == "menu"
    installed = dataclasses.replace(local, stage=Stage.DONE)  # an installed PC booting its disk
    assert stalls.group(installed, T0 + 600) == "done" and format_stage(installed) == "done"


def test_summary_counts_and_bar() -> None:
    machines = [
        Machine(mac="02:00:00:00:00:01"),
        Machine(mac="02:00:00:00:00:02", stage=Stage.DONE),
        Machine(mac="02:00:00:00:00:03", stage=Stage.DONE),
        at_dhcp(),
    ]
    counts = stalls.summary(machines, T0 + 10)
    assert counts == {
        "waiting": 1, "at DHCP": 1, "loading": 0, "installing": 0, "done": 2, "on disk": 0, "failed": 0, "stalled": 0
    }  # fmt: skip
    assert stalls.summary(machines, T0 + 100)["stalled"] == 1
    bar = stalls.segments(counts, 20)
    assert sum(cells for _, cells in bar) == 20 and dict(bar)["done"] == 10
    one_failed = stalls.segments({"done": 299, "failed": 1}, 10)
    assert dict(one_failed)["failed"] == 1  # one failed PC among 300 still shows


async def test_stalled_pcs_show_in_the_table_the_summary_and_the_details(session: Session) -> None:
    later = sc.NOW + 240
    app = sc.make_app(session, clock=lambda: later)
    async with app.run_test(size=(120, 36)) as pilot:
        sc.boot_events(session)
        for n in range(3):
            sc.publish(session, 74 + 8 * n, "dhcp.discover", sc.PC_HTTPBOOT, arch=16, vendor_class="HTTPClient:Arch:00016")
        await settle(pilot, app)
        assert "stalled: another DHCP server?" in row_text(app, sc.PC_HTTPBOOT)
        assert "stalled at 45%" in row_text(app, sc.PC_UEFI) and "kernel" in row_text(app, sc.PC_UEFI)
        assert "3 stalled" in status_lines(app)[1] and "1 done" in status_lines(app)[1]
        table = sc.main_screen(app).query_one("#machines", DataTable)
        table.move_cursor(row=table.get_row_index(sc.PC_HTTPBOOT))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        info = str(app.screen.query_one("#detail-info", Static).render())
        assert "stalled at DHCP for 4m25s: asked for an address 4 times, never took it: another DHCP server?" in info


# -- 4. summary bar and the exit summary ----------------------------------------------------------


async def test_the_summary_bar_answers_how_the_room_is_doing(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        summary = status_lines(app)[1]
        for part in ("6 PCs", "1 waiting", "1 at DHCP", "2 loading", "0 installing", "1 done", "1 failed", "0 stalled"):
            assert part in summary, summary
        assert summary.startswith("█")  # the bar itself, before the numbers


def test_exit_summary_names_the_counts_and_the_report(session: Session) -> None:
    sc.boot_events(session)  # the scenario's morning, delivered without an app
    text = launch.finish(session, now=sc.NOW)
    report = session.state.path / "pxetui-report.csv"
    assert report.is_file()
    assert text.splitlines()[0] == "pxetui stopped: 1 done, 1 failed, 3 not finished, 1 never booted of 6 PCs."
    assert f"Report: {report} (and .json)" in text


def test_run_tui_prints_the_exit_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(PxetuiApp, "run", lambda self: 0)  # the operator quit at once
    config = sc.open_session(tmp_path / "state").config
    out = io.StringIO()
    assert launch.run_tui(config, out=out) == 0
    assert out.getvalue().startswith("pxetui stopped: no PC booted.")


# -- 5. the empty first screen ---------------------------------------------------------------------


async def test_the_empty_first_screen_says_what_to_do(tmp_path: Path) -> None:
    session = sc.open_session(tmp_path / "state")
    app = sc.make_app(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        hint = sc.main_screen(app).query_one("#empty-hint", Static)
        assert hint.display and hint.region.height > 0
        text = str(hint.render())
        assert "Switch a PC on" in text and "n  add a PC" in text and "i  import a plan" in text
        assert "p  give PCs" in text
        sc.publish(session, 1, "dhcp.discover", "52:54:00:12:34:01", arch=7, vendor_class=sc.UEFI_VENDOR_CLASS)
        await settle(pilot, app)
        assert not hint.display


# -- 6. forms ----------------------------------------------------------------------------------------


async def test_keys_typed_right_after_tab_land_in_the_next_field(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        # A barcode scanner: the whole burst arrives before any of it is handled.
        for ch in [*"525400123499", "tab", *"lab-pc-09"]:
            app.post_message(events.Key(ch, "\t" if ch == "tab" else ch))
        await pilot.pause(0.2)
        assert form(app).values() == {"mac": "525400123499", "hostname": "lab-pc-09", "profile": ""}


async def test_assign_starts_in_the_list_and_marks_downloaded_profiles(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(80, 24)) as pilot:
        sc.boot_events(session)
        await settle(pilot, app)
        table = sc.main_screen(app).query_one("#machines", DataTable)
        table.move_cursor(row=table.get_row_index(sc.PC_HTTPBOOT))
        await pilot.press("a")
        await pilot.pause()
        choices = form(app).query_one("#choices", OptionList)
        assert app.focused is choices and choices.highlighted == 0
        await pilot.press("down")
        assert choices.highlighted == 1
        prompts = {str(choices.get_option_at_index(i).id): str(choices.get_option_at_index(i).prompt)
                   for i in range(choices.option_count)}  # fmt: skip
        assert "✓" in prompts["debian-12-local"] and "↓" in prompts["debian-12"]  # empty cache: not fetched


async def test_add_with_a_refused_profile_adds_nothing(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("n")
        for key, value in {"mac": "52:54:00:12:34:77", "profile": "debian-12"}.items():
            form(app).query_one(f"#field-{key}", Input).value = value
        await pilot.press("enter")
        await pilot.pause()
        assert "cannot boot yet" in form(app).error_text
    assert session.plan.get("52:54:00:12:34:77") is None
    assert "52:54:00:12:34:77" not in session.registry.machines


@pytest.mark.parametrize(
    ("mac", "message"),
    [
        ("ff:ff:ff:ff:ff:ff", "broadcast"),
        ("00:00:00:00:00:00", "all zeros"),
        ("01:00:5e:00:00:fb", "multicast"),
        ("33-33-00-00-00-01", "multicast"),
    ],
)
async def test_macs_no_pc_has_are_refused(session: Session, mac: str, message: str) -> None:
    before = session.plan.to_document()
    app = sc.make_app(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        form(app).query_one("#field-mac", Input).value = mac
        await pilot.press("enter")
        await pilot.pause()
        assert message in form(app).error_text
    assert session.plan.to_document() == before


async def test_a_hostname_another_pc_has_is_refused(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("n")
        for key, value in {"mac": "52:54:00:12:34:78", "hostname": "LAB-PC-01"}.items():
            form(app).query_one(f"#field-{key}", Input).value = value
        await pilot.press("enter")
        await pilot.pause()
        assert "already 52:54:00:12:34:01's" in form(app).error_text
        await pilot.press("escape")
        await pilot.pause()
        table = sc.main_screen(app).query_one("#machines", DataTable)
        table.move_cursor(row=table.get_row_index(sc.PC_BIOS))
        await pilot.press("a")
        await pilot.pause()
        form(app).query_one("#field-hostname", Input).value = "lab-pc-03"
        form(app).query_one("#field-hostname", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert "already 52:54:00:12:34:03's" in form(app).error_text
    assert session.plan.get("52:54:00:12:34:78") is None
    entry = session.plan.get(sc.PC_BIOS)
    assert entry is not None and entry.hostname == "lab-pc-02"


async def test_policy_count_has_a_maximum_and_all(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("p")
        for key, value in {"profile": "debian-12-local", "count": "5000"}.items():
            form(app).query_one(f"#field-{key}", Input).value = value
        form(app).query_one("#field-count", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert "at most 1000" in form(app).error_text and session.plan.unknown.profile is None
        form(app).query_one("#field-count", Input).value = "all"
        await pilot.press("enter")
        await pilot.pause()
        sc.main_screen(app)
        assert session.plan.unknown.profile == "debian-12-local" and session.plan.unknown.remaining == POLICY_ALL
        await settle(pilot, app)
        assert "unknown PCs: debian-12-local for all" in status_lines(app)[0]


async def test_export_does_not_replace_the_last_report_silently(session: Session, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        for attempt in range(2):
            await pilot.press("e")
            form(app).query_one("#field-directory", Input).value = str(out)
            await pilot.press("enter")
            await pilot.pause()
            if attempt == 0:
                sc.main_screen(app)  # created and written
        (out / "pxetui-report.csv").write_text("the operator's copy")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("e")
        form(app).query_one("#field-directory", Input).value = str(out)
        await pilot.press("enter")
        await pilot.pause()
        assert f"{out / 'pxetui-report.csv'} exists" in form(app).error_text
        assert (out / "pxetui-report.csv").read_text() == "the operator's copy"
        await pilot.press("enter")  # again: replace it
        await pilot.pause()
        sc.main_screen(app)
    assert (out / "pxetui-report.csv").read_text().startswith("mac,")


async def test_details_wording(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        sc.boot_events(session)
        select = HttpRequest(mac=sc.PC_HTTPBOOT, path="/select", kind="script", file="select", total=0,
                             client="198.18.0.104", answer="debian-12-local")  # fmt: skip
        sc.publish(session, 90, select)
        sc.publish(session, 90.1, "http.done", sc.PC_HTTPBOOT, path="/select", kind="script", file="select",
                   client="198.18.0.104", bytes=0, total=0, rate=0.0, ok=True)  # fmt: skip
        await settle(pilot, app)
        for mac, firmware, transfer in (
            (sc.PC_UEFI, "x64 UEFI (option 93 = 7)", "linux: 3.6MB of 8.0MB, 12.3MB/s"),
            (sc.PC_HTTPBOOT, "x64 UEFI HTTP (option 93 = 16)", "select: 0 B, done"),
        ):
            app.push_screen(DetailScreen(session, mac, lambda: sc.NOW))
            await pilot.pause()
            info = str(app.screen.query_one("#detail-info", Static).render())
            assert firmware in info and transfer in info, info
            assert "(arch " not in info and "0kB of 0kB" not in info
            app.pop_screen()
            await pilot.pause()
        assert any("chose debian-12-local from the menu" in line for line in sc.main_screen(app).log_sentences)


async def test_the_picker_marks_bridge_ports_and_shows_enter(tmp_path: Path) -> None:
    def interfaces() -> list[InterfaceInfo]:  # as host/netif.py lists them: the port knows its bridge
        return [
            dataclasses.replace(i, member_of=Member("br-lab", "bridge")) if i.name == "enx00e04c680001" else i
            for i in sc.fake_interfaces()
        ]

    session = sc.open_session(tmp_path / "state", interface="")
    app = sc.make_app(session, list_interfaces=interfaces)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        assert "enter serve on it" in str(picker.query_one(KeyBar).render())
        table = app.screen.query_one("#interfaces", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names[-1] == "enx00e04c680001"  # a bridge's port: last, and the note says why
        assert "serve on br-lab instead" in str(table.get_row("enx00e04c680001")[5])
