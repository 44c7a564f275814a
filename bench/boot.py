#!/usr/bin/env python3
"""Power-on to "Linux version" for N simultaneous UEFI PCs: pxetui against dnsmasq + nginx.

Run as root from the repository: `sudo .venv/bin/python bench/boot.py [--vms 1 4]`.
Each PC is QEMU + OVMF (firmware PXE) under TCG on a tap in a lab namespace (198.18.0.0/15).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classic import ClassicStack

from pxetui.labnet import Lab
from pxetui.qemu import Vm, VmSpec


def boot_vms(lab: Lab, work: Path, count: int, timeout: float) -> list[float | None]:
    vms = []
    for i in range(count):
        tap = lab.add_tap(f"tap{i}")
        vms.append(
            Vm(
                VmSpec(name=f"pc{i}", mac=f"52:54:00:be:00:{i + 1:02x}", tap=tap, memory_mb=768),
                lab.server_ns,
                work,
            )
        )
    for vm in vms:
        vm.start()
    results: list[float | None] = [None] * count
    try:
        # Poll every PC each round, so each gets its own time (not the time the slowest one took).
        deadline = time.monotonic() + timeout
        while None in results and time.monotonic() < deadline:
            for i, vm in enumerate(vms):
                if results[i] is None and "Linux version" in vm.serial():
                    results[i] = time.monotonic() - vm.started
            time.sleep(0.5)
    finally:
        for vm in vms:
            vm.stop()
    return results


def run_pxetui_stack(lab: Lab, work: Path, count: int, timeout: float) -> list[float | None]:
    plan = work / "plan.csv"
    plan.write_text(
        "mac,profile,hostname\n"
        + "".join(f"52:54:00:be:00:{i + 1:02x},debian-12-local,pc{i}\n" for i in range(count))
    )
    proc = lab.popen(
        lab.server_ns,
        sys.executable,
        "-m",
        "pxetui",
        lab.bridge,
        "--headless",
        "--json",
        "--mode",
        "full",
        "--state",
        str(work / "state"),
        "--plan",
        str(plan),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("event") == "service.ready":
            break
    else:
        raise SystemExit(f"pxetui did not start: {proc.stderr.read() if proc.stderr else ''}")
    try:
        return boot_vms(lab, work, count, timeout)
    finally:
        proc.terminate()
        proc.wait(20)


def run_classic_stack(lab: Lab, work: Path, count: int, timeout: float) -> list[float | None]:
    with ClassicStack(lab, work):
        return boot_vms(lab, work, count, timeout)


def summary(times: list[float | None]) -> str:
    ok = [t for t in times if t is not None]
    if not ok:
        return f"0/{len(times)} booted"
    return f"{len(ok)}/{len(times)} booted, median {statistics.median(ok):.1f} s, max {max(ok):.1f} s"


def measure(stack: str, count: int, timeout: float, n: int) -> list[float | None]:
    lab = Lab(subnet=ipaddress.IPv4Network(f"198.18.{210 + n}.0/24")).build()
    try:
        with tempfile.TemporaryDirectory(prefix="pxetui-bench-boot-") as tmp:
            runner = run_pxetui_stack if stack == "pxetui" else run_classic_stack
            return runner(lab, Path(tmp), count, timeout)
    finally:
        lab.teardown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vms", type=int, nargs="+", default=[1, 4])
    p.add_argument("--timeout", type=float, default=420)
    p.add_argument("--json", action="store_true", help="print one JSON object per row")
    args = p.parse_args()
    rows = []
    for i, count in enumerate(args.vms):
        pxetui = measure("pxetui", count, args.timeout, 2 * i)
        classic = measure("classic", count, args.timeout, 2 * i + 1)
        rows.append({"row": f"power-on to Linux, {count} UEFI PC(s)", "pxetui": pxetui, "classic": classic})
        print(f"{count} UEFI PC(s): pxetui {summary(pxetui)} | dnsmasq+nginx {summary(classic)}", flush=True)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
