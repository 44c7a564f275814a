"""Whole PCs for the demo and the end-to-end tests: QEMU guests that network-boot on a lab tap.

UEFI PCs run OVMF with the firmware's own PXE client (`romfile=` empty, like a real PC's NIC
without an option ROM); BIOS PCs run SeaBIOS, whose NIC option ROM is iPXE itself. KVM fails
with OVMF on these machines, so guests use TCG (docs/architecture.md, "The lab harness").
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pxetui.errors import UsageError

OVMF_CODE = Path("/usr/share/qemu/OVMF.fd")
QEMU = "qemu-system-x86_64"
INSTALL_HINT = "sudo apt-get install qemu-system-x86 ovmf ipxe-qemu"


def check_qemu(firmwares: set[str]) -> str:
    """The QEMU binary, or a UsageError naming the packages to install."""
    binary = shutil.which(QEMU)
    if binary is None:
        raise UsageError(f"{QEMU} is missing: install it with `{INSTALL_HINT}`")
    if "uefi" in firmwares and not OVMF_CODE.is_file():
        raise UsageError(f"UEFI firmware {OVMF_CODE} is missing: install it with `{INSTALL_HINT}`")
    return binary


@dataclass(frozen=True, slots=True)
class VmSpec:
    name: str
    mac: str
    tap: str
    firmware: str = "uefi"  # uefi | bios
    memory_mb: int = 1024
    disk: Path | None = None  # a blank disk makes "boot local" visible; None: no disk


def qemu_command(spec: VmSpec, serial_log: Path) -> list[str]:
    nic = f"virtio-net-pci,netdev=n0,mac={spec.mac}"
    cmd = [
        QEMU,
        "-accel",
        "tcg",
        "-m",
        str(spec.memory_mb),
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-name",
        spec.name,
    ]
    if spec.firmware == "uefi":
        cmd += ["-machine", "q35", "-bios", str(OVMF_CODE)]
        nic += ",romfile="
    else:
        cmd += ["-machine", "pc"]
    cmd += [
        "-netdev",
        f"tap,id=n0,ifname={spec.tap},script=no,downscript=no",
        "-device",
        nic,
        "-boot",
        "n",
        "-serial",
        f"file:{serial_log}",
    ]
    if spec.disk is not None:
        cmd += ["-drive", f"file={spec.disk},format=raw,if=virtio"]
    return cmd


class Vm:
    """One running guest inside a namespace; its serial console is written to a file."""

    def __init__(self, spec: VmSpec, netns: str, workdir: Path) -> None:
        self.spec = spec
        self.netns = netns
        self.serial_log = workdir / f"{spec.name}.serial.log"
        self.serial_log.write_bytes(b"")
        self.started = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *qemu_command(self.spec, self.serial_log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in the terminal is for pxetui, not for the guests
        )

    def serial(self) -> str:
        return self.serial_log.read_bytes().decode("utf-8", errors="replace")

    def wait_serial(self, pattern: str, timeout: float) -> float | None:
        """Seconds from power-on until `pattern` appears on the serial console, or None."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if regex.search(self.serial()):
                return time.monotonic() - self.started
            if self.proc is not None and self.proc.poll() is not None:
                return time.monotonic() - self.started if regex.search(self.serial()) else None
            time.sleep(0.5)
        return None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
