"""Fetch on first use: a PC assigned a profile whose files are still downloading waits at a small
iPXE script and asks again, and boots once the files are verified; it is never sent to a file
that is not there.

The HTTP service and a fake upstream (test_fetch's Mirror, its kernel held back until the test
lets it go) run in the lab's server namespace; the PC's side is curl in a client namespace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import need_tools
from http_lab import HttpLab, start_http_lab
from lab import Lab, NetnsLoop
from test_fetch import KERNEL, Mirror, RecordingProgress, sha
from test_http_scripts import check_ipxe

from pxetui.boot.cache import NotServable
from pxetui.boot.profiles import load_profiles
from pxetui.commands.fetch import fetch_all
from pxetui.errors import UsageError
from pxetui.model.events import Error
from pxetui.session import Session, SessionConfig

pytestmark = pytest.mark.lab

PC = "52:54:00:00:00:31"
KERNEL_PATH = "dists/firstuse/linux"


class GatedMirror(Mirror):
    """The Mirror, but the kernel's bytes wait until `gate` is set: a download in progress."""

    gate: asyncio.Event

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["path"] == KERNEL_PATH:
            await self.gate.wait()
        return await super().handle(request)


@pytest.fixture
def http(lab: Lab, tmp_path: Path) -> Iterator[tuple[HttpLab, GatedMirror]]:
    need_tools("curl")
    with NetnsLoop(lab.server_ns) as loop:
        hl = start_http_lab(lab, tmp_path, loop)
        mirror = GatedMirror(lab.server_ip)

        async def start() -> None:
            mirror.gate = asyncio.Event()
            await mirror.start()

        loop.run(start())
        mirror.files[KERNEL_PATH] = KERNEL
        profiles = tmp_path / "upstream-profiles"
        profiles.mkdir()
        (profiles / "firstuse.yaml").write_text(
            "name: firstuse\ntitle: First Use OS\narch: [x86_64]\n"
            f"kernel: {{url: '{mirror.url(KERNEL_PATH)}', sha256: {sha(KERNEL)}}}\n"
        )
        hl.session.profiles.update(load_profiles([profiles], hl.session.config.cache_dir))
        try:
            yield hl, mirror
        finally:
            loop.call(mirror.gate.set)
            loop.run(mirror.stop())
            loop.run(hl.service.stop())


def test_a_pc_waits_while_its_profile_downloads_then_boots_it(http: tuple[HttpLab, GatedMirror]) -> None:
    hl, mirror = http
    session = hl.session
    with pytest.raises(NotServable, match="firstuse' cannot boot yet"):
        hl.assign(PC, "firstuse")  # nothing is fetching it: refused, as before
    session.fetch_started("firstuse")
    hl.assign(PC, "firstuse")
    hl.lease(PC)
    profile = session.profiles["firstuse"]
    download = asyncio.run_coroutine_threadsafe(
        fetch_all([profile], session.config.cache_dir, RecordingProgress()), hl.loop.loop
    )

    # While the kernel is on its way: a script that waits and asks again, and no file URL.
    for _ in range(2):
        code, script = hl.get(f"/boot.ipxe?mac={PC}&arch=x86_64&platform=efi")
        assert code == 200 and script.startswith("#!ipxe")
        assert "sleep 5" in script.splitlines()
        assert f"chain --replace {hl.base}/boot.ipxe || goto failed" in script
        assert "/files/" not in script and "kernel " not in script
        check_ipxe(script)
    assert hl.get("/files/firstuse/kernel")[0] == 404
    assert not download.done()
    waits = [e for e in hl.named("http.request", PC) if e.fields.get("answer") == "wait-fetch"]
    assert len(waits) == 2

    hl.loop.call(mirror.gate.set)
    outcome = download.result(30)[0]
    assert outcome.error is None, outcome.error
    # Verified now: the next ask gets the kernel script, and the kernel is served.
    code, script = hl.get(f"/boot.ipxe?mac={PC}&arch=x86_64&platform=efi")
    assert code == 200 and f"{hl.base}/files/firstuse/kernel?mac=" in script and "sleep" not in script
    out = hl.tmp / "kernel.out"
    done = hl.curl("-o", str(out), "-w", "%{http_code}", f"{hl.base}/files/firstuse/kernel?mac={PC}")
    assert done.stdout == "200" and out.read_bytes() == KERNEL
    session.fetch_finished("firstuse")
    assert "firstuse" not in session.fetching


def test_files_removed_after_the_fetch_are_never_offered_as_waiting(
    http: tuple[HttpLab, GatedMirror],
) -> None:
    """Being fetched is a state with an end: afterwards a missing file is the old refusal."""
    hl, _mirror = http
    hl.session.fetch_started("firstuse")
    hl.assign(PC, "firstuse")
    hl.lease(PC)
    hl.session.fetch_finished("firstuse", "no route to the mirror")
    code, script = hl.get(f"/boot.ipxe?mac={PC}&arch=x86_64&platform=efi")
    assert code == 200 and "sleep 5" not in script  # not waiting for a fetch that ended
    assert hl.get("/files/firstuse/kernel")[0] == 404  # and still never a file not verified
    failed = [e for e in hl.events if isinstance(e, Error) and "fetching firstuse failed" in e.reason]
    assert failed and PC in failed[0].reason and "assign another profile" in failed[0].reason
    with pytest.raises(UsageError, match="cannot boot yet"):
        hl.assign("52:54:00:00:00:32", "firstuse")


def test_the_session_allows_a_profile_being_fetched_and_says_so_in_the_boot_plan(tmp_path: Path) -> None:
    config = SessionConfig(interface="lab0", state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    session = Session(config)
    session.open()
    with pytest.raises(NotServable) as refused:
        session.add_machine(PC, "pc-31", profile="debian-12")
    assert refused.value.fetchable and session.plan.get(PC) is None  # nothing half-added
    with pytest.raises(UsageError, match="unknown profile"):
        session.fetch_started("no-such-os")
    session.fetch_started("debian-12")
    session.add_machine(PC, "pc-31", profile="debian-12")
    plan = session.boot_plan(PC)
    assert plan.profile is not None and plan.profile.name == "debian-12" and plan.fetching
    session.set_unknown_policy("debian-12", 2)  # the policy may name it too
    session.fetch_finished("debian-12")
    assert not session.boot_plan(PC).fetching
    with pytest.raises(NotServable):
        session.assign("52:54:00:00:00:33", "debian-12")
