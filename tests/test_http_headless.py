"""The HTTP service inside the real `pxetui IFACE --headless --json` process, fetched with curl."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from lab import Lab

pytestmark = pytest.mark.lab

MAC = "52:54:00:12:34:01"
KERNEL = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/linux")


def test_headless_session_serves_the_assigned_machine(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    need_tools("curl")
    if not KERNEL.is_file():
        pytest.fail(f"{KERNEL} is missing: install debian-installer-12-netboot-amd64 (`make test` does)")
    plan = tmp_path / "lab.csv"
    plan.write_text(f"mac,profile,hostname\n{MAC},debian-12-local,lab-01\n")
    proc = run_pxetui("--plan", str(plan), "--http-port", "8081")
    ready = proc.wait_event("service.ready")
    assert ready["http_port"] == 8081
    assert ready["services"]["http"]["address"] == lab.server_ip
    base = f"http://{lab.server_ip}:8081"
    prefix = lab.server_ip.rsplit(".", 1)[0]
    client = lab.add_client(address=f"{prefix}.20/24")

    script = client.run("curl", "-sS", f"{base}/boot.ipxe?mac={MAC}&arch=x86_64&platform=efi").stdout
    assert re.search(
        rf"^kernel --name kernel {re.escape(base)}/files/debian-12-local/kernel\?mac=\S+ ", script, re.M
    )
    assert "hostname=lab-01" in script
    kernel_url = re.search(r"^kernel --name kernel (\S+)", script, re.M)
    assert kernel_url
    size = client.run("curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", kernel_url.group(1)).stdout
    assert int(size) == KERNEL.stat().st_size
    done = proc.wait_event("http.done", mac=MAC, kind="kernel")
    assert done["ok"] is True and done["bytes"] == KERNEL.stat().st_size
    assert proc.stop() == 0


def test_a_taken_http_port_exits_2_naming_the_option(lab: Lab, tmp_path: Path) -> None:
    # Something else holds the HTTP port. (Not a second pxetui: that one would already fail on
    # TFTP's port 69, which starts first.)
    holder = lab.popen(
        lab.server_ns,
        sys.executable,
        "-c",
        "import socket, time; s = socket.socket(); "
        f"s.bind(({lab.server_ip!r}, 8082)); s.listen(); print('held', flush=True); time.sleep(60)",
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = lab.exec(
            lab.server_ns,
            sys.executable,
            "-m",
            "pxetui",
            lab.bridge,
            "--headless",
            "--state",
            str(tmp_path / "other"),
            "--http-port",
            "8082",
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait(10)
    assert second.returncode == 2
    assert "HTTP port 8082" in second.stderr and "--http-port N" in second.stderr
