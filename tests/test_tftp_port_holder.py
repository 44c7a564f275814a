"""A TFTP server already on the address is named in the one-line error (issue 17: it was a guess,
"another TFTP server (tftpd-hpa, dnsmasq, in.tftpd?)"). Real second listeners in a lab
namespace: dnsmasq with its TFTP server, and a second pxetui on the same interface."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from lab import Lab
from test_interfaces import one_line_error, pxetui

pytestmark = pytest.mark.lab


def listening_on_69(lab: Lab) -> bool:
    return bool(lab.exec(lab.server_ns, "ss", "-Hlun", "sport = :69").stdout.strip())


def test_dnsmasq_holding_udp_69_is_named_with_its_pid(lab: Lab, tmp_path: Path) -> None:
    tools = need_tools("dnsmasq")
    root = tmp_path / "tftproot"
    root.mkdir()
    rival = lab.popen(
        lab.server_ns, tools["dnsmasq"], "-d", "-C", "/dev/null", "--port=0", "--enable-tftp",
        f"--tftp-root={root}", f"--listen-address={lab.server_ip}", "--bind-interfaces",
        f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--user=root",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not listening_on_69(lab) and time.monotonic() < deadline and rival.poll() is None:
            time.sleep(0.1)
        assert listening_on_69(lab), rival.stderr.read() if rival.stderr and rival.poll() is not None else ""
        done = pxetui(lab, "br0", "--headless", "--state", str(tmp_path / "state"))
        one_line_error(
            done,
            f"cannot serve TFTP on {lab.server_ip}:69: dnsmasq (pid {rival.pid}) holds UDP 69 on {lab.server_ip}",
            "turn its TFTP off (enable-tftp)",
        )
        assert "?" not in done.stderr  # no guessing list
    finally:
        rival.terminate()
        rival.wait(10)


def test_a_second_pxetui_on_the_same_address_is_named(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    first = run_pxetui()
    first.wait_event("service.ready")
    done = pxetui(lab, "br0", "--headless", "--state", str(tmp_path / "second"))
    one_line_error(
        done, f"another pxetui (pid {first.proc.pid}) already serves TFTP on {lab.server_ip}", "quit it first"
    )
    assert first.stop() == 0  # the first one was not disturbed


def test_holders_are_looked_up_on_the_address_and_the_wildcard(lab: Lab) -> None:
    """The lookup itself, in the namespace: a socket on another address does not collide."""
    code = (
        "import socket, sys\n"
        "from pxetui.host.sockets import udp_port_holders\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 69))\n"
        f"mine = udp_port_holders(69, {lab.server_ip!r}); lo = udp_port_holders(69, '127.0.0.1')\n"
        "print(len(mine), [h.describe() for h in lo])\n"
    )
    done = lab.exec(lab.server_ns, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    count, described = done.stdout.split(" ", 1)
    assert count == "0" and "(pid " in described and "python" in described, done.stdout
