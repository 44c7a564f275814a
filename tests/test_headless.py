"""`pxetui IFACE --headless --json` in a lab namespace: ready, clean stop, state that survives."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lab import Lab

pytestmark = pytest.mark.lab


def pxetui(lab: Lab, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return lab.exec(lab.server_ns, sys.executable, "-m", "pxetui", *args, timeout=timeout)


def addresses(lab: Lab, iface: str) -> list[str]:
    out = lab.exec(lab.server_ns, "ip", "-j", "addr", "show", "dev", iface).stdout
    return [a["local"] for item in json.loads(out) for a in item["addr_info"] if a["family"] == "inet"]


def test_ready_then_clean_exit_on_sigint_with_the_plan_on_disk(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    plan = tmp_path / "lab.csv"
    plan.write_text("mac,profile,hostname\n52:54:00:12:34:01,debian-12-local,lab-01\n")
    proc = run_pxetui("--plan", str(plan))
    ready = proc.wait_event("service.ready")
    assert ready["address"] == lab.server_ip
    assert ready["interface"] == "br0"
    assert ready["mode"] in ("auto", "full", "proxy")
    assert isinstance(ready["ts"], float) and ready["mac"] is None
    assert proc.stop(signal.SIGINT) == 0
    saved = json.loads((tmp_path / "state" / "plan.json").read_text())
    assert saved["machines"][0]["mac"] == "52:54:00:12:34:01"
    assert saved["machines"][0]["hostname"] == "lab-01"
    machines = json.loads((tmp_path / "state" / "machines.json").read_text())
    assert [m["stage"] for m in machines["machines"]] == ["waiting"]


def test_sigterm_is_a_clean_stop_too(run_pxetui: Any) -> None:
    proc = run_pxetui()
    proc.wait_event("service.ready")
    assert proc.stop(signal.SIGTERM) == 0


def test_kill_9_loses_no_assignment(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    plan = tmp_path / "lab.csv"
    rows = "".join(f"52:54:00:00:01:{i:02x},local-disk,pc-{i}\n" for i in range(40))
    plan.write_text("mac,profile,hostname\n" + rows)
    proc = run_pxetui("--plan", str(plan))
    proc.wait_event("service.ready")
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
    # The next session starts from what the killed one had.
    again = run_pxetui()
    again.wait_event("service.ready")
    assert again.stop() == 0
    saved = json.loads((tmp_path / "state" / "plan.json").read_text())
    assert len(saved["machines"]) == 40
    assert {m["profile"] for m in saved["machines"]} == {"local-disk"}


def test_a_bad_plan_row_names_its_line_and_exits_2(lab: Lab, tmp_path: Path) -> None:
    plan = tmp_path / "lab.csv"
    plan.write_text("mac,profile,hostname\n52:54:00:12:34:01,local-disk,a\n52:54:00:12:34:zz,local-disk,b\n")
    done = pxetui(lab, "br0", "--headless", "--state", str(tmp_path / "s"), "--plan", str(plan))
    assert done.returncode == 2
    assert f"{plan}:3: '52:54:00:12:34:zz' is not a MAC address" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_json_mode_reports_a_fatal_error_as_an_event(lab: Lab, tmp_path: Path) -> None:
    done = pxetui(lab, "nosuch0", "--headless", "--json", "--state", str(tmp_path))
    assert done.returncode == 2
    event = json.loads(done.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["fatal"] is True
    assert "no interface named 'nosuch0'" in event["reason"]
