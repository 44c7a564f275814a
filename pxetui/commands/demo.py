"""`pxetui demo`: a private lab with QEMU PCs, to try profiles and menus before walking to the lab.

The demo builds a namespace with a bridge and one tap per PC (198.18.0.0/24), runs pxetui on
that bridge in the namespace, and powers on the PCs (UEFI and BIOS alternating) once the
services listen. Quitting pxetui, Ctrl-C, SIGTERM or a crash of a PC all end in the same
clean-up: PCs stopped, namespace deleted, temporary state removed. A demo killed with -9 is
cleaned up by the next one.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from pxetui.commands.options import add_profiles_option
from pxetui.errors import UsageError
from pxetui.lab.netns import Lab, ip, lab_available, pxetui_command
from pxetui.lab.qemu import Vm, VmSpec, check_qemu

TAG = "pxdemo"
SUBNET = ipaddress.IPv4Network("198.18.0.0/24")
HTTP_PORT = 8080


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxetui demo",
        description="Try pxetui on this machine: a private network with QEMU PCs that network-boot"
        " from it. Everything is removed on exit.",
    )
    p.add_argument("--vms", type=int, default=2, metavar="N", help="PCs to power on (default 2)")
    p.add_argument("--memory", type=int, default=1024, metavar="MB", help="memory per PC (default 1024)")
    p.add_argument("--headless", action="store_true", help="no TUI: print events (for scripts)")
    p.add_argument("--json", action="store_true", help="with --headless: JSON lines")
    add_profiles_option(p)
    p.add_argument("--plan", type=Path, metavar="FILE.csv", help="assign the demo PCs' MACs")
    return p


def demo_macs(count: int) -> list[str]:
    return [f"52:54:00:de:00:{i:02x}" for i in range(1, count + 1)]


def remove_stale_demos() -> list[str]:
    """Namespaces of demos whose process is gone (killed with -9): remove them."""
    removed = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(TAG):
            continue
        pid = name[len(TAG) :].rstrip("s")
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        for inner in ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(inner), signal.SIGKILL)
        ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


def wait_listening(lab: Lab, port: int, child: subprocess.Popen[str], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        out = lab.exec(lab.server_ns, "ss", "-Hltn", f"sport = :{port}").stdout
        if out.strip():
            return True
        time.sleep(0.2)
    return False


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.vms <= 16:
        raise UsageError("--vms must be between 1 and 16 (each PC is a full QEMU guest)")
    if args.json and not args.headless:
        raise UsageError("--json goes with --headless")
    # Root first, before anything is made: the fix for this command, not the tests' `sudo make test`.
    if os.geteuid() != 0:
        raise UsageError(
            "needs root to build its private network (a namespace, a bridge, one tap per PC):"
            f" run `{shlex.join(['sudo', 'pxetui', 'demo', *argv])}`"
        )
    reason = lab_available()
    if reason:
        raise UsageError(f"pxetui demo {reason}")
    firmwares = ["uefi" if i % 2 == 0 else "bios" for i in range(args.vms)]
    check_qemu(set(firmwares))
    for name in remove_stale_demos():
        print(f"pxetui demo: removed {name} left by a demo that was killed", file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="pxetui-demo-"))
    lab = Lab(subnet=SUBNET, tag=f"{TAG}{os.getpid()}")
    vms: list[Vm] = []
    child: subprocess.Popen[str] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        lab.build()
        cmd = pxetui_command(
            lab.bridge, work / "state", "--mode", "full", "--http-port", str(HTTP_PORT), headless=False
        )
        for directory in args.profiles:
            cmd += ["--profiles", str(directory.resolve())]
        if args.plan:
            cmd += ["--plan", str(args.plan.resolve())]
        if args.headless:
            cmd.append("--headless")
        if args.json:
            cmd.append("--json")
        child = lab.popen(lab.server_ns, *cmd)
        if not wait_listening(lab, HTTP_PORT, child):
            return child.wait() if child.poll() is not None else 1
        for i, (firmware, mac) in enumerate(zip(firmwares, demo_macs(args.vms), strict=True)):
            tap = lab.add_tap(f"tap{i}")
            vm = Vm(
                VmSpec(
                    name=f"pc{i + 1}-{firmware}", mac=mac, tap=tap, firmware=firmware, memory_mb=args.memory
                ),
                lab.server_ns,
                work,
            )
            vm.start()
            vms.append(vm)
        return child.wait()
    finally:
        for vm in vms:
            vm.stop()
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        lab.teardown()
        shutil.rmtree(work, ignore_errors=True)
        for s, handler in old.items():
            signal.signal(s, handler)
