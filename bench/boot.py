#!/usr/bin/env python3
"""Power-on to "Linux version" for N simultaneous UEFI PCs: pxetui against dnsmasq + nginx.

Run as root from the repository: `sudo .venv/bin/python bench/boot.py [--vms 1 4] [--rounds 3]`.
Each PC is QEMU + OVMF (firmware PXE) under TCG on a tap in a lab namespace (198.18.0.0/15).
Rounds alternate which stack goes first (and the files are read once before the first), so
neither pays for a cold page cache or a machine still busy with the other's teardown; the
figures are medians over every PC of every round.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classic import DI, ClassicStack

from pxetui.lab.netns import Lab, pxetui_command
from pxetui.lab.qemu import Vm, VmSpec


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
    # Events go to a file, as an operator's `> log` would: a pipe nobody reads would fill
    # and block pxetui's printing (and with it its services) part way through the boot.
    events = work / "events.jsonl"
    with open(events, "w") as out, open(work / "pxetui.stderr", "w") as err:
        command = pxetui_command(lab.bridge, work / "state", "--mode", "full", "--plan", str(plan))
        proc = lab.popen(lab.server_ns, *command, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while '"service.ready"' not in events.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pxetui did not start: {(work / 'pxetui.stderr').read_text()[-2000:]}")
            time.sleep(0.1)
        times = boot_vms(lab, work, count, timeout)
    finally:
        proc.terminate()
        proc.wait(20)
    print(f"    pxetui steps after each PC's first DISCOVER (median s): {step_times(events)}", flush=True)
    return times


def step_times(events: Path) -> str:
    """Where the time of a pxetui boot went, from its own JSON events."""
    first: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = {}  # step -> MAC -> seconds; the last one counts
    for line in events.read_text().splitlines():
        e = json.loads(line)
        mac, name = e.get("mac"), e.get("event")
        if not mac:
            continue
        first.setdefault(mac, e["ts"])
        step = {
            "dhcp.ack": "ack",
            "tftp.done": "ipxe.efi",
            "http.done": Path(str(e.get("path", ""))).name,
        }.get(name)
        if step:
            steps.setdefault(step, {})[mac] = e["ts"] - first[mac]
    return ", ".join(f"{k} {statistics.median(v.values()):.1f}" for k, v in steps.items())


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


def warm_page_cache() -> None:
    """Read what every boot reads, so the first stack measured is not the one that waits on disk."""
    for path in (Path("/usr/share/qemu/OVMF.fd"), Path("/usr/lib/ipxe/ipxe.efi"), DI / "linux", DI / "initrd.gz"):
        if path.exists():
            path.read_bytes()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vms", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=1, help="rounds per row; odd rounds measure the classic stack first")
    p.add_argument("--timeout", type=float, default=420)
    p.add_argument("--json", action="store_true", help="print one JSON object per row")
    args = p.parse_args()
    warm_page_cache()
    rows = []
    lab_number = 0
    for count in args.vms:
        times: dict[str, list[float | None]] = {"pxetui": [], "classic": []}
        for r in range(args.rounds):
            order = ("pxetui", "classic") if r % 2 == 0 else ("classic", "pxetui")
            got: dict[str, list[float | None]] = {}
            for stack in order:
                got[stack] = measure(stack, count, args.timeout, lab_number % 40)
                lab_number += 1
                times[stack] += got[stack]
            print(
                f"  round {r + 1} ({order[0]} first): pxetui {summary(got['pxetui'])}"
                f" | dnsmasq+nginx {summary(got['classic'])}",
                flush=True,
            )
        pxetui, classic = times["pxetui"], times["classic"]
        rows.append({"row": f"power-on to Linux, {count} UEFI PC(s)", "pxetui": pxetui, "classic": classic})
        print(f"{count} UEFI PC(s): pxetui {summary(pxetui)} | dnsmasq+nginx {summary(classic)}", flush=True)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
