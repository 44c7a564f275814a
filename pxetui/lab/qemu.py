"""Whole PCs for the demo and the end-to-end tests: QEMU guests that network-boot on a lab tap.

UEFI PCs run OVMF with the firmware's own PXE client (`romfile=` empty, like a real PC's NIC
without an option ROM); BIOS PCs run SeaBIOS, whose NIC option ROM is iPXE itself. KVM fails
with OVMF on these machines, so guests use TCG (docs/architecture.md, "The lab harness").

Three more kinds of PC, each one field of `VmSpec`, so every test builds its guest here:
  - `secure_boot`: OVMF's Secure Boot build with Microsoft's keys enrolled (Debian `ovmf`,
    `OVMF_CODE_4M.ms.fd` + a copy of `OVMF_VARS_4M.ms.fd`); the variable store is writable
    only from SMM, so nothing the guest runs can turn Secure Boot off. With
    `secure_boot_keys="snakeoil"` the store is `OVMF_VARS_4M.snakeoil.fd` instead (with its
    `OVMF_CODE_4M.snakeoil.fd`): Secure Boot on with only Debian's test key enrolled, so it
    refuses iPXE and the Microsoft-signed shim alike, like a PC with the third-party CA off.
  - `cpu="arm64"`: QEMU's `virt` machine with AAVMF (Debian `qemu-efi-aarch64`), the arm64
    UEFI firmware, whose PXE client says arch 11. A Cortex-A57 model, not `max`: `max`'s
    pointer authentication is costly under TCG and nothing here needs it.
  - `network_boot="http"`: OVMF's PXE turned off through its fw_cfg knobs
    (`opt/org.tianocore/IPv4PXESupport`, `IPv6PXESupport`, edk2 OvmfPkg/RUNTIME_CONFIG.md),
    so the first network option the firmware tries is its own UEFI HTTPv4 boot (DHCP vendor
    class `HTTPClient`, arch 16): the way to test HTTP Boot without a PC whose setup screen
    puts it first.
Flash-based firmware gets its own copy of the variable store per guest (in the work directory).
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
OVMF_SB_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
OVMF_SB_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
OVMF_SNAKEOIL_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd")
OVMF_SNAKEOIL_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd")  # no Microsoft key at all
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
AAVMF_SB_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.ms.fd")  # Microsoft's keys, Secure Boot on
QEMU = "qemu-system-x86_64"
QEMU_ARM64 = "qemu-system-aarch64"
INSTALL_HINT = "sudo apt-get install qemu-system-x86 ovmf ipxe-qemu"
ARM64_INSTALL_HINT = "sudo apt-get install qemu-system-arm qemu-efi-aarch64"
CPUS = ("x86_64", "arm64")
NETWORK_BOOTS = ("pxe", "http")
SECURE_BOOT_KEYS = ("microsoft", "snakeoil")  # which keys the Secure Boot variable store enrolls
# OVMF's fw_cfg switches for its PXE client (values are parsed as booleans).
PXE_OFF = (
    "name=opt/org.tianocore/IPv4PXESupport,string=no",
    "name=opt/org.tianocore/IPv6PXESupport,string=no",
)


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
    cpu: str = "x86_64"  # x86_64 | arm64 (AAVMF on QEMU's virt machine)
    secure_boot: bool = False  # OVMF/AAVMF with Microsoft's keys enrolled, Secure Boot on
    network_boot: str = "pxe"  # pxe | http: the firmware's UEFI HTTPv4 boot option first
    secure_boot_keys: str = "microsoft"  # microsoft | snakeoil (x86_64 only): trusts no shim

    def __post_init__(self) -> None:
        if self.cpu not in CPUS:
            raise UsageError(f"VM {self.name}: cpu {self.cpu!r} is not one of {', '.join(CPUS)}")
        if self.network_boot not in NETWORK_BOOTS:
            raise UsageError(f"VM {self.name}: network_boot {self.network_boot!r}: use pxe or http")
        uefi_only = self.cpu == "arm64" or self.secure_boot or self.network_boot == "http"
        if self.firmware != "uefi" and uefi_only:
            raise UsageError(f"VM {self.name}: arm64, Secure Boot and HTTP boot need firmware='uefi'")
        if self.cpu == "arm64" and self.network_boot == "http":
            raise UsageError(f"VM {self.name}: HTTP boot is set up for x86_64 OVMF only")
        if self.secure_boot_keys not in SECURE_BOOT_KEYS:
            raise UsageError(
                f"VM {self.name}: secure_boot_keys {self.secure_boot_keys!r}: use microsoft or snakeoil"
            )
        if self.secure_boot_keys == "snakeoil" and (not self.secure_boot or self.cpu != "x86_64"):
            raise UsageError(f"VM {self.name}: snakeoil keys are for x86_64 OVMF with secure_boot=True")

    @property
    def binary(self) -> str:
        return QEMU_ARM64 if self.cpu == "arm64" else QEMU

    @property
    def flash(self) -> tuple[Path, Path] | None:
        """(code, variables template) of split-flash firmware; None: OVMF as one `-bios` image."""
        if self.cpu == "arm64":
            return AAVMF_CODE, AAVMF_SB_VARS if self.secure_boot else AAVMF_VARS
        if self.secure_boot and self.secure_boot_keys == "snakeoil":
            return OVMF_SNAKEOIL_CODE, OVMF_SNAKEOIL_VARS
        if self.secure_boot:
            return OVMF_SB_CODE, OVMF_SB_VARS
        return None

    def missing(self) -> list[str]:
        """What this machine needs that is not installed (QEMU binary, firmware files)."""
        needed = [p for p in self.flash or () if not p.is_file()]
        if self.firmware == "uefi" and self.flash is None and not OVMF_CODE.is_file():
            needed.append(OVMF_CODE)
        found = [] if shutil.which(self.binary) else [self.binary]
        return found + [str(p) for p in needed]


def qemu_command(spec: VmSpec, serial_log: Path, variables: Path | None = None) -> list[str]:
    """The guest's command line; `variables` is its own copy of a split firmware's store."""
    nic = f"virtio-net-pci,netdev=n0,mac={spec.mac}"
    cmd = [spec.binary, "-accel", "tcg", "-m", str(spec.memory_mb), "-display", "none", "-monitor", "none"]
    cmd += ["-no-reboot", "-name", spec.name]
    flash = spec.flash
    if flash is not None and variables is None:
        raise UsageError(f"VM {spec.name}: its firmware needs its own copy of {flash[1]}")
    if spec.cpu == "arm64":
        cmd += ["-machine", "virt", "-cpu", "cortex-a57"]
    elif spec.secure_boot:
        # The variable store is writable only from SMM: the guest cannot turn Secure Boot off.
        cmd += ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]
    elif spec.firmware == "uefi":
        cmd += ["-machine", "q35", "-bios", str(OVMF_CODE)]
    else:
        cmd += ["-machine", "pc"]
    if flash is not None:
        cmd += ["-drive", f"if=pflash,format=raw,unit=0,file={flash[0]},readonly=on"]
        cmd += ["-drive", f"if=pflash,format=raw,unit=1,file={variables}"]
    if spec.firmware == "uefi":
        nic += ",romfile="
    if spec.network_boot == "http":
        for knob in PXE_OFF:
            cmd += ["-fw_cfg", knob]
    cmd += ["-netdev", f"tap,id=n0,ifname={spec.tap},script=no,downscript=no"]
    if spec.cpu == "arm64":
        cmd += ["-device", f"{nic},bootindex=1"]  # `-boot n` is the PC machines' legacy order
    else:
        cmd += ["-device", nic, "-boot", "n"]
    # Appended to, so a power cycle (`Vm.reset`) keeps what the first boot said.
    cmd += ["-chardev", f"file,id=serial0,path={serial_log},append=on", "-serial", "chardev:serial0"]
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
        self.variables: Path | None = None
        if spec.flash is not None:
            self.variables = workdir / f"{spec.name}.vars.fd"
            shutil.copy(spec.flash[1], self.variables)
        self.started = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return qemu_command(self.spec, self.serial_log, self.variables)

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *self.command()],
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

    def reset(self) -> None:
        """The power button, off and on: the PC starts over from its firmware with the same
        variable store; the serial log goes on, `started` is the new power-on. (Not QEMU's
        system_reset: under `-no-reboot` that ends QEMU.)"""
        self.stop()
        self.start()

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
