"""The state directory keeps its promises when the disk does not: a real pxetui on a full one.

The state directory is a 256 KiB tmpfs of the test's own (mounted under pytest's tmp_path and
unmounted again); the "PC" is a raw DHCP client in a lab namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dhcp_client import RawClient, dhcp_packet, pxe_vendor_class
from lab import Lab
from test_interfaces import inet

pytestmark = pytest.mark.lab


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "state"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "pxetui-test", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; the file returned frees it again."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    return filler


def test_a_failed_save_is_retried_and_a_full_disk_at_stop_still_removes_the_address(
    lab: Lab, run_pxetui: Any, small_disk: Path
) -> None:
    # A second address on the lab bridge, for this session only: pxetui adds it and must remove it.
    cidr = str(lab.subnet.network_address + 200) + "/24"
    proc = run_pxetui("--mode", "full", "--address", cidr, state=small_disk)
    proc.wait_event("service.ready")
    assert cidr in inet(lab, lab.bridge)

    filler = fill(small_disk)
    # A PC boots while the disk is full: its machine state cannot be written...
    pc = "52:54:00:5a:00:01"
    client = lab.add_client(mac=pc)
    sender = RawClient(client.netns)
    try:
        sender.send(dhcp_packet(pc, "discover", xid=5, arch=7, vendor_class=pxe_vendor_class(7)))
    finally:
        sender.close()
    failed = proc.wait_event("error", timeout=10)
    assert "cannot save machine state" in failed["reason"] and "trying again" in failed["reason"]
    # ...and once there is room again, the retry writes it without any new event.
    filler.unlink()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        saved = (small_disk / "machines.json").read_text() if (small_disk / "machines.json").exists() else ""
        if pc in saved:
            break
        time.sleep(0.2)
    assert pc in json.dumps(json.loads(saved)), "the failed save was never retried"

    # Full again at stop: the state cannot be written, but the address goes and the error is one line.
    fill(small_disk)
    code = proc.stop(signal.SIGINT)
    stderr = proc.proc.stderr.read() if proc.proc.stderr else ""
    assert cidr not in inet(lab, lab.bridge), "a full state directory must not keep the temporary address"
    assert code == 1, stderr
    lines = [line for line in stderr.strip().splitlines() if line]
    assert any("could not save the state" in line and "at stop" in line for line in lines), stderr
    assert "Traceback" not in stderr
