"""`pxetui demo`: a private lab with QEMU PCs booting from pxetui, removed again on exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import need, need_tools

from pxetui.lab.netns import lab_available, leftover_namespaces

pytestmark = [pytest.mark.lab, pytest.mark.e2e]
REPO = Path(__file__).resolve().parent.parent.parent


def qemu_processes() -> list[str]:
    out = subprocess.run(
        ["pgrep", "-af", "qemu-system-x86_64.*pc1-uefi"], capture_output=True, text=True
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_demo_boots_a_pc_and_leaves_nothing_behind_on_ctrl_c() -> None:
    need(lab_available())
    need_tools("qemu-system-x86_64")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pxetui", "demo", "--vms", "1", "--headless", "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            seen.append(event)
            # The demo PC (UEFI) reached pxetui and was served its iPXE loader.
            if (
                event["event"] == "tftp.done"
                and event.get("mac") == "52:54:00:de:00:01"
                and not event.get("probe")
            ):
                break
            assert time.monotonic() < deadline, [e["event"] for e in seen]
        assert any(e["event"] == "service.ready" and e.get("mode") == "full" for e in seen)
        assert leftover_namespaces("pxdemo"), "the demo's namespace exists while it runs"
        assert qemu_processes(), "the demo PC runs"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert leftover_namespaces("pxdemo") == []
    assert qemu_processes() == []


def test_demo_refuses_nonsense_with_the_reason() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pxetui", "demo", "--vms", "99"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--vms must be between 1 and 16" in done.stderr
