"""The real TUI in tmux, inside a lab namespace: a real DHCP DISCOVER puts the PC in the table."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tools
from lab import Lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
PC_MAC = "52:54:00:7e:57:01"


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "pxetui").stdout

    def wait_screen(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if needle in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{needle!r} not on screen after {timeout}s:\n{screen}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    need_tools("tmux")
    t = Tmux(f"pxetui-test-{tmp_path.name}")
    yield t
    t("kill-server")


def test_a_real_discover_shows_up_in_the_tui(lab: Lab, tmux: Tmux, tmp_path: Path) -> None:
    tools = need_tools("udhcpc")
    state = tmp_path / "state"
    command = (
        f"ip netns exec {lab.server_ns} {sys.executable} -m pxetui {lab.bridge} --mode full"
        f" --state {state}; echo pxetui-exit=$?; sleep 30"
    )
    # The size is also given in COLUMNS/LINES: with no client attached, the pane's terminal
    # size could not always be read here, and 80 columns leave the IP column out by design.
    size = ("-x", "160", "-y", "45", "-e", "COLUMNS=160", "-e", "LINES=45")
    tmux("new-session", "-d", "-s", "pxetui", *size, "-c", str(REPO), command)
    tmux.wait_screen("full", timeout=40)  # the header shows the mode once the services run
    pc = lab.add_client(mac=PC_MAC)
    hook = tmp_path / "udhcpc.sh"
    hook.write_text(f'#!/bin/sh\necho "$1 $ip" >> {tmp_path / "lease"}\n')
    hook.chmod(0o755)
    # Patient as a PC is: full mode first asks the network for 7 s whether another server answers.
    # As a PXE PC asks (a plain client is no PC pxetui boots, and is not listed).
    vendor = ("-V", "PXEClient:Arch:00007:UNDI:003016")
    pc.run(tools["udhcpc"], *vendor, "-f", "-q", "-n", "-t", "10", "-T", "2", "-i", "eth0", "-s", str(hook), timeout=40)
    assert "bound" in (tmp_path / "lease").read_text()
    leased_ip = (tmp_path / "lease").read_text().split()[-1]
    # The row may be drawn between the DISCOVER and the ACK (and the log names the address
    # too): wait for the PC's own row to carry it.
    deadline = time.monotonic() + 10
    row = ""
    while time.monotonic() < deadline:
        row = next((line for line in tmux.screen().splitlines() if PC_MAC in line and "got" not in line), "")
        if leased_ip in row:
            break
        time.sleep(0.3)
    assert leased_ip in row, tmux.screen()
    tmux("send-keys", "-t", "pxetui", "q")
    tmux.wait_screen("pxetui-exit=0", timeout=30)
    assert PC_MAC in (state / "machines.json").read_text()
