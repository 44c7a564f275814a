"""The TFTP service inside `pxetui br0 --headless --json`: wired into the session, events on stdout."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from lab import Lab
from tftp_lab import make_boot_dir

pytestmark = pytest.mark.lab


def test_headless_session_serves_tftp_and_prints_events(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    need_tools("curl")
    files = make_boot_dir(tmp_path / "boot", tmp_path / "outside")
    proc = run_pxetui("--boot-files", str(tmp_path / "boot"))
    ready = proc.wait_event("service.ready")
    tftp = ready["services"]["tftp"]
    assert tftp["address"] == lab.server_ip and tftp["port"] == 69 and tftp["files"] == len(files)
    client = lab.add_client(address=f"{lab.subnet.network_address + 40}/24")
    out = tmp_path / "got.efi"
    done = client.run(
        "curl", "-sS", "--tftp-blksize", "1468", "-o", str(out), f"tftp://{lab.server_ip}/ipxe.efi"
    )
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(files["ipxe.efi"]).digest()
    start = proc.wait_event("tftp.start", file="ipxe.efi")
    assert start["total"] == len(files["ipxe.efi"]) and start["blksize"] == 1468
    finished = proc.wait_event("tftp.done", file="ipxe.efi")
    assert finished["ok"] is True and finished["bytes"] == finished["total"] == len(files["ipxe.efi"])
    assert finished["rate"] > 0 and finished["client"] == str(lab.subnet.network_address + 40)
    missing = client.run("curl", "-sS", "-o", "/dev/null", f"tftp://{lab.server_ip}/pxelinux.0")
    assert missing.returncode != 0
    refused = proc.wait_event("tftp.done", file="pxelinux.0")
    assert refused["ok"] is False and "not a boot file" in refused["reason"]
    assert proc.stop(signal.SIGINT) == 0
