"""Headless printing never holds the services: a reader that stops reading costs lines, not DHCP."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import need_tools
from dhcp_client import RawClient, dhcp_packet, pxe_vendor_class, random_macs
from lab import Lab

from pxetui.headless import PRINT_BACKLOG, EventPrinter
from pxetui.lab.netns import pxetui_command
from pxetui.model.events import DhcpAck, HttpProgress


def http_progress(n: int) -> HttpProgress:
    return HttpProgress(
        mac="52:54:00:00:00:01", path="/files/x/initrd", kind="initrd", file="initrd.gz",
        client="198.18.0.100", bytes=n, total=10**9, rate=1e8,
    )  # fmt: skip


def test_a_full_pipe_drops_progress_first_and_says_how_many() -> None:
    read_fd, write_fd = os.pipe()
    out = io.TextIOWrapper(io.FileIO(write_fd, "w"), encoding="utf-8")
    printer = EventPrinter(True, out)
    started = time.monotonic()
    for n in range(3 * PRINT_BACKLOG):  # nobody reads: the pipe fills after a few hundred lines
        printer(http_progress(n))
        if n % 100 == 0:
            printer(DhcpAck(mac="52:54:00:00:00:01", xid=n, ip="198.18.0.100"))
    assert time.monotonic() - started < 10  # the emitting side never waited for the reader
    assert printer.dropped > PRINT_BACKLOG
    lines: list[str] = []

    def read_all() -> None:
        with open(read_fd, encoding="utf-8") as pipe:
            lines.extend(pipe)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    printer.close()
    out.close()
    reader.join(10)
    events = [json.loads(line) for line in lines]
    acks = [e["xid"] for e in events if e["event"] == "dhcp.ack"]
    assert acks == list(range(0, 3 * PRINT_BACKLOG, 100))  # every step kept, in order
    dropped = sum(e["count"] for e in events if e["event"] == "events.dropped")
    progress = sum(e["event"] == "http.progress" for e in events)
    assert dropped == printer.dropped and progress + dropped == 3 * PRINT_BACKLOG


def test_a_reader_that_leaves_is_not_an_error() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    out = io.TextIOWrapper(io.FileIO(write_fd, "w"), encoding="utf-8")
    printer = EventPrinter(False, out)
    for n in range(100):
        printer(DhcpAck(mac="52:54:00:00:00:01", xid=n, ip="198.18.0.100"))
    started = time.monotonic()
    printer.close()
    assert time.monotonic() - started < 2  # no wait for a reader that is gone


@pytest.mark.lab
def test_dhcp_answers_while_nobody_reads_the_json_lines(lab: Lab, tmp_path: Path) -> None:
    tools = need_tools("udhcpc")
    net = str(lab.subnet.network_address)[:-1]
    flood, pc = lab.add_client(), lab.add_client(mac="52:54:00:0f:11:01")
    with open(tmp_path / "stderr", "w") as stderr:
        command = pxetui_command(lab.bridge, tmp_path / "state", "--mode", "full", "--range", f"{net}10-{net}250")
        proc = lab.popen(lab.server_ns, *command, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # then never again until the end
        deadline = time.monotonic() + 40
        while '"service.ready"' not in first and time.monotonic() < deadline:
            first = proc.stdout.readline()
        assert '"service.ready"' in first, (tmp_path / "stderr").read_text()
        client = RawClient(flood.netns)
        try:  # ~200 PCs' DISCOVERs: far more event lines than a 64 KiB pipe holds
            for mac in random_macs(200):
                client.send(dhcp_packet(mac, "discover", arch=7, vendor_class=pxe_vendor_class(7)))
                time.sleep(0.002)
        finally:
            client.close()
        time.sleep(1)
        hook = tmp_path / "udhcpc.sh"
        hook.write_text(f'#!/bin/sh\necho "$1 $ip" >> {tmp_path / "lease"}\n')
        hook.chmod(0o755)
        pc.run(tools["udhcpc"], "-f", "-q", "-n", "-t", "4", "-T", "2", "-i", "eth0", "-s", str(hook), timeout=30)
        lease = (tmp_path / "lease").read_text() if (tmp_path / "lease").exists() else ""
        assert "bound" in lease, "no lease while stdout was unread"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)  # now read: every line was kept, in order
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    events = [json.loads(line) for line in rest.splitlines()]
    assert sum(e["event"] == "dhcp.discover" for e in events) >= 200
    assert any(e["event"] == "dhcp.ack" and e["mac"] == pc.mac for e in events)
