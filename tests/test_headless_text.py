"""`pxetui IFACE --headless` without --json prints the TUI log's sentences (issue 17), not field dumps.

The JSON lines (`--headless --json`) are the scripts' contract and stay `Event.to_json`, byte for
byte; the text lines are for a person, and say what the TUI's event log says.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import need_tools
from lab import Lab

from pxetui.headless import EventPrinter
from pxetui.lab.netns import pxetui_command
from pxetui.model.events import DhcpAck, ServiceReady, TftpProgress
from pxetui.model.sentences import log_line

ACK = DhcpAck(ts=1_767_340_830.0, mac="52:54:00:12:34:01", xid=7, arch=7, ip="198.18.0.100", file="ipxe.efi")
PROGRESS = TftpProgress(
    mac="52:54:00:12:34:01", file="ipxe.efi", client="198.18.0.100", bytes=450, total=1000, rate=12e6
)
READY = ServiceReady(
    mode="full", interface="br0", address="198.18.0.1", http_port=8080,
    services={"tftp": {"root": "/usr/lib/ipxe"}, "http": {"port": 8080}}, state_dir="/var/lib/pxetui",
)  # fmt: skip


def printed(json_lines: bool, *events: object) -> list[str]:
    out = io.StringIO()
    printer = EventPrinter(json_lines, out)
    for event in events:
        printer(event)  # type: ignore[arg-type]
    printer.close()
    return out.getvalue().splitlines()


def test_text_lines_are_the_logs_sentences() -> None:
    lines = printed(False, ACK, PROGRESS, READY)
    assert lines == [log_line(ACK), log_line(PROGRESS), log_line(READY)]
    assert lines[0].endswith(" 52:54:00:12:34:01 got 198.18.0.100 (x64 UEFI), boot file ipxe.efi")
    assert lines[1].endswith(" 52:54:00:12:34:01 loading ipxe.efi 45 % 12.0MB/s")
    assert lines[2].endswith(
        " serving TFTP, HTTP on br0 198.18.0.1 in full mode (HTTP port 8080); state in /var/lib/pxetui"
    )
    for line in lines:  # no field dump: `ip=`, `services={...`, `file=None`
        assert not any(marker in line for marker in ("=", "{", "None", "dhcp.ack", "tftp.progress")), line


def test_json_lines_stay_the_events_json() -> None:
    assert printed(True, ACK, PROGRESS, READY) == [ACK.to_json(), PROGRESS.to_json(), READY.to_json()]
    assert list(json.loads(printed(True, ACK)[0]))[:3] == ["ts", "event", "mac"]


@pytest.mark.lab
def test_the_real_headless_process_prints_sentences(lab: Lab, tmp_path: Path) -> None:
    tools = need_tools("udhcpc")
    pc = lab.add_client(mac="52:54:00:0f:22:01")
    net = str(lab.subnet.network_address)[:-1]
    command = pxetui_command(
        lab.bridge, tmp_path / "state", "--mode", "full", "--range", f"{net}100-{net}120", headless=False
    )
    proc = lab.popen(lab.server_ns, *command, "--headless", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert " serving " in first and f" on {lab.bridge} {lab.server_ip} in full mode" in first, first
        pc.run(
            tools["udhcpc"],
            "-f",
            "-q",
            "-n",
            "-t",
            "4",
            "-T",
            "2",
            "-i",
            "eth0",
            "-s",
            "/bin/true",
            timeout=30,
        )
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rest, errors = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, errors
    assert f"{pc.mac} got {net}1" in rest, rest  # "52:54:00:0f:22:01 got 198.18.N.1xx"
    assert "dhcp.ack" not in rest and "xid=" not in rest


def test_a_control_character_in_any_field_never_reaches_the_terminal() -> None:
    """Fields a PC sends are cleaned when decoded; the printed line is kept safe for the rest."""
    from pxetui.model.events import Error
    from pxetui.model.sentences import log_line

    line = log_line(Error(mac=None, reason="bad file \x1b]0;owned\x07 name\x9b2J"))
    assert "owned" in line and line.isprintable()
