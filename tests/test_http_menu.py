"""The PC-side menu served to an unassigned PC, driven by curl from a lab namespace.

curl stands in for iPXE here: it fetches what the menu would chain to (its poll URL, its
/select URLs). tests/e2e/test_http_ipxe.py runs the same scripts in a real iPXE.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tools
from http_lab import HttpLab, start_http_lab
from lab import Lab, NetnsLoop

from pxetui.boot.cache import sha256_file, write_marker
from pxetui.boot.profiles import load_profiles
from pxetui.model.sentences import sentence

pytestmark = pytest.mark.lab

PC = "52:54:00:00:0c:01"
POLL = 12  # seconds; the session's --menu-timeout is 30, so the last poll is 6 s after the 2nd
POLL_URL = re.compile(r"^prompt --timeout (\d+) .* \|\| chain --replace (\S+) \|\| goto menu$", re.M)


@pytest.fixture
def http(lab: Lab, tmp_path: Path) -> Iterator[HttpLab]:
    need_tools("curl")
    with NetnsLoop(lab.server_ns) as loop:
        hl = start_http_lab(lab, tmp_path, loop, menu_poll_interval=POLL)
        try:
            yield hl
        finally:
            loop.run(hl.service.stop())


def choices(menu: str) -> list[str]:
    return re.findall(r"^item (?!--gap)(\S+)", menu, re.M)


def first_menu(http: HttpLab) -> str:
    http.lease(PC)
    code, menu = http.get(f"/boot.ipxe?mac={PC}&arch=x86_64&platform=efi&lm=0")
    assert code == 200 and menu.startswith("#!ipxe"), menu
    return menu


def poll_of(http: HttpLab, menu: str) -> tuple[int, str]:
    """(interval in ms, path) of the menu's next question to the server."""
    found = POLL_URL.search(menu)
    assert found, menu
    assert found.group(2).startswith(http.base + "/boot.ipxe?")
    return int(found.group(1)), found.group(2)[len(http.base) :]


def test_the_menu_offers_only_profiles_that_can_boot_now(http: HttpLab) -> None:
    menu = first_menu(http)
    offered = choices(menu)
    assert "tiny" in offered and "debian-12-local" in offered
    # `cached`'s kernel is in the cache but unverified (a planted symlink); `debian-12` was
    # never fetched: neither can boot, so neither is offered, and a choice of one is refused.
    assert "cached" not in offered and "debian-12" not in offered
    code, _ = http.get(f"/select?mac={PC}&profile=cached")
    assert code == 404
    assert not http.named("menu.select")
    # Once fetched and verified, it is offered.
    folder = http.tmp / "fetched-profiles"
    folder.mkdir()
    (folder / "fetched.yaml").write_text(
        "name: fetched\ntitle: Fetched OS\narch: [x86_64]\nkernel: {url: https://files.invalid/vmlinuz}\n"
    )
    http.session.profiles.update(load_profiles([folder]))
    assert "fetched" not in choices(first_menu(http))
    cached = http.session.config.cache_dir / "fetched" / "vmlinuz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a kernel")
    write_marker(cached, sha256_file(cached), "https://files.invalid/vmlinuz")
    assert "fetched" in choices(first_menu(http))


def test_an_unattended_install_says_it_erases_the_disk_and_asks_at_the_pc(http: HttpLab) -> None:
    menu = first_menu(http)
    lines = menu.splitlines()
    # tiny and debian-12-local install with a preseed: they erase the disk, and ask first.
    for name in ("tiny", "debian-12-local"):
        item = next(line for line in lines if line.startswith(f"item {name} "))
        assert item.endswith(" - ERASES THE DISK"), item
        assert f"iseq {name} ${{choice}} && goto erase-{name} ||" in lines
        question = lines[lines.index(f":erase-{name}") :]
        assert question[1].startswith("menu Erase the disk of this PC and install ")
        assert next(line for line in question if line.startswith("choose ")).startswith(
            "choose --timeout 30000 --default back confirm || goto menu"
        )
    # Actions go straight to /select: no question for the local disk, the shell or a reboot.
    for name in ("local-disk", "ipxe-shell", "reboot"):
        assert f"erase-{name}" not in menu
    assert "choose --timeout 30000 --default local-disk choice || goto menu" in lines


def test_a_waiting_pc_picks_up_an_assignment_made_meanwhile(http: HttpLab) -> None:
    interval, poll = poll_of(http, first_menu(http))
    assert interval == POLL * 1000 and poll.endswith(f"&waited={POLL}")
    # The URL keeps what iPXE said about the PC, so the next answer fits it as the first did.
    assert "&arch=x86_64&platform=efi&" in poll and "&lm=0&" in poll
    code, again = http.get(poll)
    assert code == 200 and "menu pxetui" in again
    http.assign(PC, "tiny", "pc-late")
    code, script = http.get(poll_of(http, again)[1])
    assert code == 200 and "kernel --name kernel" in script and "hostname=pc-late" in script
    answers = [e.fields["answer"] for e in http.named("http.request", PC) if e.fields["kind"] == "script"]
    assert answers == ["menu", "menu", "tiny"]


def test_a_pc_nobody_assigns_boots_its_disk_after_the_menu_timeout_across_polls(http: HttpLab) -> None:
    menu = first_menu(http)
    seen = []
    for _ in range(5):
        interval, poll = poll_of(http, menu)
        seen.append(interval // 1000)
        code, menu = http.get(poll)
        assert code == 200
        if "sanboot" in menu:
            break
    # 12 + 12 + 6 = --menu-timeout 30: the last wait is what is left, then the local disk.
    assert seen == [POLL, POLL, 30 - 2 * POLL]
    assert "sanboot --no-describe --drive 0x80" in menu and "kernel" not in menu
    last = http.named("http.request", PC)[-1]
    assert last.fields["answer"] == "menu-timeout"
    # Nobody chose: the menu's default, and the operator sees it as the default, not a key press.
    selects = http.named("menu.select", PC)
    assert [(e.fields["choice"], e.fields["timed_out"]) for e in selects] == [("local-disk", True)]
    assert "nobody chose from the menu in time" in sentence(selects[0])


@pytest.mark.parametrize("waited", ["abc", "-5", "1e9", "12345678", "%C2%B2"])
def test_a_bad_wait_is_refused_and_counted(http: HttpLab, waited: str) -> None:
    http.lease(PC)
    before = http.service.rejected
    code, body = http.get(f"/boot.ipxe?mac={PC}&arch=x86_64&platform=efi&waited={waited}")
    assert code == 400 and "waited=" in body
    assert http.service.rejected == before + 1
    # A wait far beyond the timeout is just over: the local disk.
    code, local = http.get(f"/boot.ipxe?mac={PC}&arch=x86_64&platform=efi&waited=9999999")
    assert code == 200 and "sanboot" in local
