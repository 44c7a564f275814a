#!/usr/bin/env python3
"""Power-on to "Linux version" for N simultaneous PCs: pxetui against dnsmasq + nginx.

Run as root from the repository: `sudo .venv/bin/python bench/boot.py [--vms 1 4] [--rounds 3]`.
Each PC is QEMU + OVMF (firmware PXE) under TCG on a tap in a lab namespace (198.18.0.0/15).
`--firmware mixed` alternates UEFI (OVMF) and BIOS (SeaBIOS + iPXE ROM) PCs and `--same-uuid`
gives them all one SMBIOS UUID, as PCs cloned from one image have: `--vms 8 --firmware mixed
--same-uuid --timeout 900` is the room case (8 TCG guests on 2 cores take minutes).
`--secure-boot` makes every PC OVMF's Secure Boot build with Microsoft's keys (Debian `ovmf`,
as tests/e2e/test_secure_boot.py) and both stacks serve Debian's signed chain, all over TFTP:
pxetui (`--secure-boot signed`, PCs assigned by plan) with its per-MAC grub.cfg, and dnsmasq
with the d-i netboot shim, its GRUB, one grub.cfg and the signed kernel (bench/classic.py).
Rounds alternate which stack goes first (and the files are read once before the first), so
neither pays for a cold page cache or a machine still busy with the other's teardown; the
figures are medians over every PC of every round.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classic import DI, ClassicStack

from pxetui.lab.netns import Lab, pxetui_command
from pxetui.lab.qemu import OVMF_SB_CODE, OVMF_SB_VARS, Vm, VmSpec, qemu_command

CLONED_UUID = "4c4c4544-004a-3310-805a-c4c04f4b3232"


class ClonedVm(Vm):
    """A PC with a given SMBIOS UUID (QEMU `-uuid`): PCs cloned from one image share it."""

    def __init__(self, spec: VmSpec, netns: str, workdir: Path, uuid: str | None) -> None:
        super().__init__(spec, netns, workdir)
        self.uuid = uuid

    def start(self) -> None:
        if self.uuid is None:
            super().start()
            return
        self.started = time.monotonic()
        command = [*qemu_command(self.spec, self.serial_log, self.variables), "-uuid", self.uuid]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def firmwares(kind: str, count: int) -> list[str]:
    """uefi, bios, or mixed: UEFI and BIOS in turn, starting with UEFI."""
    if kind == "mixed":
        return ["uefi" if i % 2 == 0 else "bios" for i in range(count)]
    return [kind] * count


def boot_vms(lab: Lab, work: Path, count: int, timeout: float, options: argparse.Namespace) -> list[float | None]:
    vms = []
    uuid = CLONED_UUID if options.same_uuid else None
    for i, firmware in enumerate(firmwares(options.firmware, count)):
        tap = lab.add_tap(f"tap{i}")
        spec = VmSpec(
            name=f"pc{i}",
            mac=f"52:54:00:be:00:{i + 1:02x}",
            tap=tap,
            memory_mb=768,
            firmware=firmware,
            secure_boot=options.secure_boot,
        )
        vms.append(ClonedVm(spec, lab.server_ns, work, uuid))
    for vm in vms:
        vm.start()
    results: list[float | None] = [None] * count
    # Under Secure Boot the kernel is booted only once it says so: the figure is power-on to a
    # kernel the firmware verified, not to one that merely started.
    booted = r"Linux version[\s\S]*secureboot: Secure boot enabled" if options.secure_boot else "Linux version"
    try:
        # Poll every PC each round, so each gets its own time (not the time the slowest one took).
        deadline = time.monotonic() + timeout
        while None in results and time.monotonic() < deadline:
            for i, vm in enumerate(vms):
                if results[i] is None and re.search(booted, vm.serial()):
                    results[i] = time.monotonic() - vm.started
            time.sleep(0.5)
    finally:
        for vm in vms:
            vm.stop()
    return results


def run_pxetui_stack(lab: Lab, work: Path, count: int, timeout: float, options: argparse.Namespace) -> list[float | None]:
    plan = work / "plan.csv"
    plan.write_text(
        "mac,profile,hostname\n"
        + "".join(f"52:54:00:be:00:{i + 1:02x},debian-12-local,pc{i}\n" for i in range(count))
    )
    # Events go to a file, as an operator's `> log` would: a pipe nobody reads would fill
    # and block pxetui's printing (and with it its services) part way through the boot.
    events = work / "events.jsonl"
    with open(events, "w") as out, open(work / "pxetui.stderr", "w") as err:
        chain = ("--secure-boot", "signed") if options.secure_boot else ()
        command = pxetui_command(lab.bridge, work / "state", "--mode", "full", "--plan", str(plan), *chain)
        proc = lab.popen(lab.server_ns, *command, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while '"service.ready"' not in events.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pxetui did not start: {(work / 'pxetui.stderr').read_text()[-2000:]}")
            time.sleep(0.1)
        times = boot_vms(lab, work, count, timeout, options)
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
            "tftp.done": Path(str(e.get("file", "ipxe.efi"))).name,
            "http.done": Path(str(e.get("path", ""))).name,
        }.get(name)
        if name == "tftp.done" and (e.get("probe") or not e.get("ok", True)):
            step = None  # the firmware's size probes and the files shim and GRUB do without
        if step:
            steps.setdefault(step, {})[mac] = e["ts"] - first[mac]
    return ", ".join(f"{k} {statistics.median(v.values()):.1f}" for k, v in steps.items())


def run_classic_stack(lab: Lab, work: Path, count: int, timeout: float, options: argparse.Namespace) -> list[float | None]:
    with ClassicStack(lab, work, signed=options.secure_boot):
        return boot_vms(lab, work, count, timeout, options)


def summary(times: list[float | None]) -> str:
    ok = [t for t in times if t is not None]
    if not ok:
        return f"0/{len(times)} booted"
    return f"{len(ok)}/{len(times)} booted, median {statistics.median(ok):.1f} s, max {max(ok):.1f} s"


def measure(stack: str, count: int, timeout: float, n: int, options: argparse.Namespace) -> list[float | None]:
    lab = Lab(subnet=ipaddress.IPv4Network(f"198.18.{210 + n}.0/24")).build()
    try:
        runner = run_pxetui_stack if stack == "pxetui" else run_classic_stack
        if options.keep is not None:
            work = options.keep / f"{n:02d}-{stack}-{count}"
            work.mkdir(parents=True, exist_ok=False)
            return runner(lab, work, count, timeout, options)
        with tempfile.TemporaryDirectory(prefix="pxetui-bench-boot-") as tmp:
            return runner(lab, Path(tmp), count, timeout, options)
    finally:
        lab.teardown()


def warm_page_cache() -> None:
    """Read what every boot reads, so the first stack measured is not the one that waits on disk."""
    boot = (Path("/usr/share/qemu/OVMF.fd"), Path("/usr/lib/ipxe/ipxe.efi"), OVMF_SB_CODE, OVMF_SB_VARS)
    for path in (*boot, DI / "bootnetx64.efi", DI / "grubx64.efi", DI / "linux", DI / "initrd.gz"):
        if path.exists():
            path.read_bytes()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vms", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=1, help="rounds per row; odd rounds measure the classic stack first")
    p.add_argument("--timeout", type=float, default=420)
    p.add_argument("--json", action="store_true", help="print one JSON object per row")
    p.add_argument("--firmware", choices=("uefi", "bios", "mixed"), default="uefi")
    p.add_argument("--same-uuid", action="store_true", help="one SMBIOS UUID for every PC, as clones have")
    p.add_argument("--secure-boot", action="store_true", help="Secure Boot OVMF PCs, Debian's signed chain")
    p.add_argument("--keep", type=Path, help="keep each run's events, logs and serial consoles under this directory")
    args = p.parse_args()
    if args.secure_boot and args.firmware != "uefi":
        p.error("--secure-boot needs --firmware uefi")
    if args.secure_boot:
        missing = VmSpec(name="pc", mac="52:54:00:be:00:01", tap="tap0", secure_boot=True).missing()
        if missing or not (DI / "bootnetx64.efi").is_file():
            p.error(f"--secure-boot needs ovmf and debian-installer-12-netboot-amd64: {missing or DI}")
    warm_page_cache()
    rows = []
    lab_number = 0
    peer = "dnsmasq (shim/GRUB/TFTP)" if args.secure_boot else "dnsmasq+nginx"
    for count in args.vms:
        times: dict[str, list[float | None]] = {"pxetui": [], "classic": []}
        for r in range(args.rounds):
            order = ("pxetui", "classic") if r % 2 == 0 else ("classic", "pxetui")
            got: dict[str, list[float | None]] = {}
            for stack in order:
                got[stack] = measure(stack, count, args.timeout, lab_number % 40, args)
                lab_number += 1
                times[stack] += got[stack]
            print(
                f"  round {r + 1} ({order[0]} first): pxetui {summary(got['pxetui'])}"
                f" | {peer} {summary(got['classic'])}",
                flush=True,
            )
        pxetui, classic = times["pxetui"], times["classic"]
        kind = {"uefi": "UEFI", "bios": "BIOS", "mixed": "UEFI/BIOS"}[args.firmware]
        kind += ", one UUID" if args.same_uuid else ""
        kind = "Secure Boot UEFI" if args.secure_boot else kind
        rows.append({"row": f"power-on to Linux, {count} {kind} PC(s)", "pxetui": pxetui, "classic": classic})
        print(f"{count} {kind} PC(s): pxetui {summary(pxetui)} | {peer} {summary(classic)}", flush=True)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
