"""DHCP keeps answering while the TUI's thread is busy drawing: the services have their own loop.

A real udhcpc asks for an address while the real TUI (in the lab namespace, services started
as `pxetui IFACE` starts them) holds its thread for seconds. The lease must come back before
the TUI is idle again; with the services on the TUI's loop it could not come before.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import need_tools
from lab import Lab
from test_wol import wait_bridge_up

pytestmark = pytest.mark.lab

PC_MAC = "52:54:00:b5:1e:01"
BUSY_SECONDS = 8.0


def test_a_lease_comes_while_the_tui_thread_is_busy(lab: Lab, tmp_path: Path) -> None:
    tools = need_tools("udhcpc")
    pc = lab.add_client(mac=PC_MAC)  # the bridge is up only with a port on it
    wait_bridge_up(lab)
    driver = lab.popen(
        lab.server_ns,
        sys.executable,
        str(Path(__file__).with_name("tui_busy_driver.py")),
        lab.bridge,
        str(tmp_path / "state"),
        str(BUSY_SECONDS),
        "18083",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = driver.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=60)
        assert first.startswith("busy "), first
        busy_at = float(first.split()[1])
        hook = tmp_path / "udhcpc.sh"
        hook.write_text(f'#!/bin/sh\necho "$1 $ip" >> {tmp_path / "lease"}\n')
        hook.chmod(0o755)
        vendor = ("-V", "PXEClient:Arch:00007:UNDI:003016")  # a PXE PC; a plain client is not listed
        pc.run(tools["udhcpc"], *vendor, "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", str(hook), timeout=20)
        leased_at = time.time()
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.stderr is not None
    reader.join(5)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert driver.returncode == 0, driver.stderr.read()[-3000:]
    idle = next(line for line in rest if line.startswith("idle "))
    idle_at = float(idle.split()[1])
    lease = (tmp_path / "lease").read_text() if (tmp_path / "lease").exists() else ""
    assert "bound" in lease, f"no lease while the TUI was busy: {lease!r}"
    assert busy_at < leased_at < idle_at, (busy_at, leased_at, idle_at)
    result = json.loads(rest[-1])
    leased_ip = lease.split()[-1]
    row = next((r for r in result["rows"] if PC_MAC in r), "")
    assert leased_ip in row, result["rows"]  # and the table caught up once the TUI was free
    assert result["return_code"] == 0 and result["services_after_quit"] == 0
    assert result["frozen_objects"] > 10_000  # start-up objects are out of every later collection
