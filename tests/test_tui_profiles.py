"""Pilot tests of the profiles screen (o on the main screen) and fetch on first use in the assign form.

The session is opened, never started. Where a fetch runs, the upstream is test_fetch's fake
Mirror in the lab's server namespace, and the whole app runs on a NetnsLoop thread there: its
fetch worker threads inherit that namespace, so nothing reaches a real interface.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tui_scenario as sc
from debian_signing import KEYRING_ENV, signed_samples, signing_key
from lab import Lab, NetnsLoop
from test_fetch import KERNEL, Mirror, sha
from test_fetch_on_first_use import KERNEL_PATH, GatedMirror
from test_isoimport import build_iso
from test_releases import samples
from textual.widgets import DataTable, Input

from pxetui.boot.cache import FileState, file_status, is_verified, write_marker
from pxetui.boot.upstream.mirror import Mirrors
from pxetui.session import Session, SessionConfig
from pxetui.tui.app import PxetuiApp
from pxetui.tui.downloads import Download
from pxetui.tui.screens.forms import FormScreen
from pxetui.tui.screens.main import MainScreen
from pxetui.tui.screens.profiles import ProfilesScreen
from pxetui.tui.widgets import KeyBar

SIZES = [(80, 24), (120, 36)]
PC = sc.PC_HTTPBOOT


pytestmark = pytest.mark.usefixtures("utc")  # times on screen are UTC, whatever the host says


def open_session(tmp_path: Path, profiles: Path | None = None) -> Session:
    config = SessionConfig(
        interface="enx00e04c680001",
        state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache",
        profile_dirs=[profiles] if profiles else [],
    )
    session = Session(config)
    session.open()
    return session


def fetched_profile(tmp_path: Path, url: str) -> Path:
    """A profile whose one kernel comes from `url` (checked against its sha256)."""
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "fetched.yaml").write_text(
        f"name: fetched\ntitle: Fetched OS\narch: [x86_64]\nkernel: {{url: '{url}', sha256: {sha(KERNEL)}}}\n"
    )
    return profiles


def make(session: Session, **kwargs: Any) -> PxetuiApp:
    return sc.make_app(session, **kwargs)


def profiles_screen(app: PxetuiApp) -> ProfilesScreen:
    screen = app.screen
    assert isinstance(screen, ProfilesScreen), f"expected the profiles screen, got {screen!r}"
    return screen


def row(app: PxetuiApp, name: str) -> dict[str, str]:
    table = profiles_screen(app).query_one("#profile-table", DataTable)
    keys = [str(c.value) for c in table.columns]
    return {k: str(v).strip() for k, v in zip(keys, table.get_row(name), strict=True)}


async def until(pilot: Any, done: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


async def put_cursor(app: PxetuiApp, pilot: Any, name: str) -> None:
    table = profiles_screen(app).query_one("#profile-table", DataTable)
    table.move_cursor(row=table.get_row_index(name))
    await pilot.pause()


def in_namespace(nl: NetnsLoop, scenario: Callable[[], Awaitable[None]]) -> None:
    nl.run(scenario(), timeout=120)


# -- what it shows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_every_profile_with_its_state_at_both_sizes(tmp_path: Path, size: tuple[int, int]) -> None:
    profiles = fetched_profile(tmp_path, "https://files.invalid/linux")
    session = open_session(tmp_path, profiles)
    kernel = session.config.cache_dir / "fetched" / "linux"
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(KERNEL)
    write_marker(kernel, sha(KERNEL), "https://files.invalid/linux")
    app = make(session)
    async with app.run_test(size=size) as pilot:
        await pilot.press("o")
        await pilot.pause()
        screen = profiles_screen(app)
        table = screen.query_one("#profile-table", DataTable)
        assert table.row_count == len(session.profiles)
        assert row(app, "fetched")["state"] == "verified" and row(app, "fetched")["size"] == "0.3 MB"
        assert row(app, "fetched")["cached"] == "yes" and row(app, "fetched")["upstream"] == "fixed files"
        assert row(app, "debian-12")["state"].startswith("missing") and row(app, "debian-12")["cached"] == "-"
        assert row(app, "ubuntu-24.04")["upstream"] == "not asked (c)"
        assert row(app, "local-disk")["state"] == "boots no files"
        # At 80 columns the title gives way; the columns always fit the terminal.
        assert ("title" in row(app, "fetched")) == (size[0] >= 100)
        assert sum(c.width for c in table.columns.values()) <= size[0]
        keys = screen.query_one(KeyBar).render().plain
        assert "f Fetch" in keys and "v Verify" in keys and len(keys) <= size[0]
        assert str(session.config.cache_dir) in str(screen.query_one("#profiles-title").render())
        # A download of a profile whose name holds dots: its row and its own bar.
        app.downloads["ubuntu-24.04"] = Download("ubuntu-24.04", "ubuntu-24.04 iso", 1_000_000, 4_000_000)
        screen.refresh_profiles()
        await pilot.pause()
        await pilot.pause()
        assert row(app, "ubuntu-24.04")["state"] == "fetching 25%"
        bar = screen.download_bar("ubuntu-24.04")
        assert bar is not None and bar.progress == 1_000_000 and bar.total == 4_000_000
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


async def test_verify_finds_a_changed_file_and_remove_deletes_it(tmp_path: Path) -> None:
    session = open_session(tmp_path, fetched_profile(tmp_path, "https://files.invalid/linux"))
    profile = session.profiles["fetched"]
    kernel = session.config.cache_dir / "fetched" / "linux"
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(KERNEL)
    write_marker(kernel, sha(KERNEL), "https://files.invalid/linux")
    # Changed in place, size and mtime kept: the marker still says verified until hashed again.
    stat = kernel.stat()
    kernel.write_bytes(b"X" + KERNEL[1:])
    os.utime(kernel, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert is_verified(kernel)
    app = make(session)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("o")
        await put_cursor(app, pilot, "fetched")
        assert row(app, "fetched")["state"] == "verified"
        await pilot.press("v")
        await until(pilot, lambda: row(app, "fetched")["state"] == "unverified kernel")
        assert not is_verified(kernel)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await until(pilot, lambda: row(app, "fetched")["state"] == "missing kernel")
        assert not kernel.exists()
        assert file_status(profile, "kernel", session.config.cache_dir).state is FileState.MISSING


async def test_import_an_iso_from_a_path(tmp_path: Path) -> None:
    iso = build_iso(
        tmp_path / "lab-os.iso", {"install.amd/vmlinuz": KERNEL, "install.amd/initrd.gz": b"i" * 5000}
    )
    session = open_session(tmp_path)
    app = make(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("o")
        await pilot.press("o")
        form = app.screen
        assert isinstance(form, FormScreen)
        form.query_one("#field-path", Input).value = str(tmp_path / "missing.iso")
        await pilot.press("enter")
        await pilot.pause()
        assert "no such file" in form.error_text
        form.query_one("#field-path", Input).value = str(iso)
        await pilot.press("enter")
        await until(pilot, lambda: "lab-os" in session.profiles)
        await until(
            pilot, lambda: "lab-os" in profiles_screen(app).query_one("#profile-table", DataTable).rows
        )
        assert row(app, "lab-os")["state"] == "verified"
        assert (session.config.cache_dir / "profiles" / "lab-os.yaml").is_file()
        session.assign(PC, "lab-os")  # servable at once: the Session knows it
        # In name order among the others (it was added at the bottom), the cursor where it was.
        table = profiles_screen(app).query_one("#profile-table", DataTable)
        names = [str(key.value) for key in table.rows]
        assert names == sorted(names) and "lab-os" in names
        assert profiles_screen(app).cursor_profile() is session.profiles["almalinux-10"]
        # Again under a name the form says is taken, in its own words (no --name, no --force here).
        await pilot.press("o")
        form = app.screen
        assert isinstance(form, FormScreen)
        form.query_one("#field-path", Input).value = str(iso)
        form.query_one("#field-name", Input).value = "debian-12"
        await pilot.press("enter")
        await pilot.pause()
        assert f"debian-12 is already a profile ({session.profiles['debian-12'].source})" in form.error_text
        assert "--" not in form.error_text
        form.query_one("#field-name", Input).value = ""  # lab-os again: offered, then replaced
        await pilot.press("enter")
        await pilot.pause()
        assert "lab-os was imported before" in form.error_text and "Press Enter again to replace it" in form.error_text
        before = (session.config.cache_dir / "profiles" / "lab-os.yaml").stat().st_mtime_ns
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProfilesScreen))
        profile_file = session.config.cache_dir / "profiles" / "lab-os.yaml"
        await until(pilot, lambda: profile_file.stat().st_mtime_ns != before)
    # The next session (no --profiles) has it: CACHE/profiles is read at every start.
    again = Session(session.config)
    again.open()
    assert again.profiles["lab-os"].source == session.config.cache_dir / "profiles" / "lab-os.yaml"


# -- fetching from a fake upstream in a namespace --------------------------------------------------


@pytest.fixture
def gated(lab: Lab) -> Iterator[tuple[NetnsLoop, GatedMirror]]:
    with NetnsLoop(lab.server_ns) as nl:
        mirror = GatedMirror(lab.server_ip)

        async def start() -> None:
            mirror.gate = asyncio.Event()
            await mirror.start()

        nl.run(start())
        mirror.files[KERNEL_PATH] = KERNEL
        try:
            yield nl, mirror
        finally:
            nl.call(mirror.gate.set)
            nl.run(mirror.stop())


@pytest.mark.lab
@pytest.mark.parametrize("size", SIZES)
def test_fetch_shows_a_progress_bar_and_never_holds_the_screen(
    gated: tuple[NetnsLoop, GatedMirror], tmp_path: Path, size: tuple[int, int]
) -> None:
    nl, mirror = gated
    session = open_session(tmp_path, fetched_profile(tmp_path, mirror.url(KERNEL_PATH)))

    async def scenario() -> None:
        app = make(session)
        async with app.run_test(size=size) as pilot:
            await pilot.press("o")
            await put_cursor(app, pilot, "fetched")
            await pilot.press("f")
            await until(pilot, lambda: "fetched" in session.fetching)
            await until(pilot, lambda: row(app, "fetched")["state"] == "fetching")
            # The kernel is held upstream: the screen still answers keys and redraws.
            await pilot.press("down")
            await pilot.press("up")
            assert profiles_screen(app).cursor_profile() is session.profiles["fetched"]
            await pilot.press("f")  # a second fetch of the same profile is refused, not doubled
            await pilot.pause()
            mirror.gate.set()
            await until(pilot, lambda: app.downloads["fetched"].finished)
            await until(pilot, lambda: row(app, "fetched")["state"] == "verified")
            bar = profiles_screen(app).download_bar("fetched")
            assert bar is not None and bar.total == len(KERNEL) and bar.progress == len(KERNEL)
            assert app.downloads["fetched"].error is None and "fetched" not in session.fetching

    in_namespace(nl, scenario)
    assert is_verified(session.config.cache_dir / "fetched" / "linux")
    assert [path for path, _ in mirror.requests].count(KERNEL_PATH) == 1


@pytest.mark.lab
def test_assign_offers_to_fetch_a_missing_profile_and_the_pc_waits_for_it(
    gated: tuple[NetnsLoop, GatedMirror], tmp_path: Path
) -> None:
    nl, mirror = gated
    session = open_session(tmp_path, fetched_profile(tmp_path, mirror.url(KERNEL_PATH)))
    session.add_machine(PC, "lab-pc-04")

    async def scenario() -> None:
        app = make(session)
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one("#machines", DataTable)
            table.move_cursor(row=table.get_row_index(PC))
            await pilot.press("a")
            await pilot.pause()
            form = app.screen
            assert isinstance(form, FormScreen)
            form.query_one("#field-profile", Input).value = "fetched"
            form.query_one("#field-profile", Input).focus()
            await pilot.press("enter")
            await pilot.pause()
            assert "Press Enter again to fetch it" in form.error_text
            entry = session.plan.get(PC)
            assert entry is not None and entry.profile is None and not session.fetching  # only offered
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MainScreen))
            entry = session.plan.get(PC)
            assert entry is not None and entry.profile == "fetched"
            assert session.boot_plan(PC).fetching  # the HTTP service sends it the wait script
            mirror.gate.set()
            await until(pilot, lambda: not session.fetching)
            assert not session.boot_plan(PC).fetching

    in_namespace(nl, scenario)
    assert is_verified(session.config.cache_dir / "fetched" / "linux")


@pytest.mark.lab
def test_add_machine_offers_to_fetch_a_missing_profile_as_assign_does(
    gated: tuple[NetnsLoop, GatedMirror], tmp_path: Path
) -> None:
    """The add form used to stop at the refusal ("cannot boot yet"): now it offers the fetch too."""
    nl, mirror = gated
    session = open_session(tmp_path, fetched_profile(tmp_path, mirror.url(KERNEL_PATH)))
    new_pc = "52:54:00:00:00:41"

    async def scenario() -> None:
        app = make(session)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("n")
            await pilot.pause()
            form = app.screen
            assert isinstance(form, FormScreen)
            for key, value in {"mac": new_pc, "hostname": "lab-pc-41", "profile": "fetched"}.items():
                form.query_one(f"#field-{key}", Input).value = value
            form.query_one("#field-profile", Input).focus()
            await pilot.press("enter")
            await pilot.pause()
            assert "Press Enter again to fetch it now and add the machine" in form.error_text
            assert new_pc in form.error_text  # who will wait
            assert session.plan.get(new_pc) is None and not session.fetching  # only offered
            # The offer is on screen at 80x24, above the buttons that stay put.
            error = form.query_one("#form-error")
            assert error.region.height > 0 and error.region.bottom <= form.query_one("#ok").region.y
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MainScreen))
            entry = session.plan.get(new_pc)
            assert entry is not None and entry.profile == "fetched" and entry.hostname == "lab-pc-41"
            assert session.boot_plan(new_pc).fetching  # the HTTP service sends it the wait script
            mirror.gate.set()
            await until(pilot, lambda: not session.fetching)
            assert not session.boot_plan(new_pc).fetching

    in_namespace(nl, scenario)
    assert is_verified(session.config.cache_dir / "fetched" / "linux")
    assert [path for path, _ in mirror.requests].count(KERNEL_PATH) == 1


@pytest.mark.lab
def test_upstream_check_says_when_a_newer_release_exists(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEYRING_ENV, str(signing_key().keyring))  # the fake upstream's InRelease key
    session = open_session(tmp_path)
    with NetnsLoop(lab.server_ns) as nl:
        mirror = Mirror(lab.server_ip)
        mirror.files.update(signed_samples(samples()))
        nl.run(mirror.start())

        async def scenario() -> None:
            app = make(session, mirrors=Mirrors(root=mirror.base + "/"))
            async with app.run_test(size=(120, 36)) as pilot:
                await pilot.press("o")
                await pilot.press("c")
                await until(pilot, lambda: bool(app.upstream), seconds=60)
                assert row(app, "debian-13")["upstream"] == "13.2 newer"  # nothing cached yet
                assert row(app, "fedora-server")["upstream"] == "45 newer"

        try:
            in_namespace(nl, scenario)
        finally:
            nl.run(mirror.stop())


@pytest.mark.lab
def test_quitting_during_a_download_asks_then_stops_it_without_waiting(
    gated: tuple[NetnsLoop, GatedMirror], tmp_path: Path
) -> None:
    nl, mirror = gated
    session = open_session(tmp_path, fetched_profile(tmp_path, mirror.url(KERNEL_PATH)))
    app = make(session)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("o")
            await put_cursor(app, pilot, "fetched")
            await pilot.press("f")
            await until(pilot, lambda: "fetched" in session.fetching)
            await pilot.pause(0.5)  # the request is at the upstream, which holds the kernel back
            await pilot.press("escape")
            await pilot.press("q")
            await pilot.pause()
            assert "1 download still running" in app.screen.query_one("#question").render().plain  # type: ignore[attr-defined]
            await pilot.press("y")
            await pilot.pause(0.5)

    started = time.monotonic()
    in_namespace(nl, scenario)  # the upstream never sends the kernel: quitting must not wait for it
    assert time.monotonic() - started < 15
    # Upstream sends the kernel now: a download still running would write it; a stopped one is gone.
    nl.call(mirror.gate.set)
    time.sleep(1.5)
    assert not (session.config.cache_dir / "fetched" / "linux").exists()


# -- the forms ask the Session, and show its refusal -----------------------------------------------


async def test_assign_form_shows_the_sessions_refusal_and_assigns_none_of_the_marked(tmp_path: Path) -> None:
    arm = "02:00:00:00:00:0b"
    session = open_session(tmp_path)
    session.add_machine(PC)
    app = make(session)
    async with app.run_test(size=(120, 36)) as pilot:
        sc.publish(session, 1, "dhcp.discover", arm, arch=11)
        app.flush_updates()
        await pilot.pause()
        await pilot.press("asterisk")  # both marked: the x86 PC planned before power-on, the ARM one
        await pilot.press("a")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormScreen)
        form.query_one("#field-profile", Input).value = "debian-12-local"
        form.query_one("#field-profile", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        # The Session's own sentence (the form used to word its own check).
        assert (
            f"debian-12-local does not fit {arm}: that PC is ARM64 UEFI (option 93 = 11)" in form.error_text
        )
    for mac in (PC, arm):
        entry = session.plan.get(mac)
        assert entry is None or entry.profile is None, mac
