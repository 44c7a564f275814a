"""An arm64 UEFI PC with Secure Boot on (QEMU `virt` + AAVMF with Microsoft's keys, arch 11)
PXE-boots through pxetui to Debian's signed arm64 installer kernel.

Debian ships no arm64 iPXE, so the signed chain is the only way there, found without options
where `debian-installer-12-netboot-arm64` puts it: shim `bootnetaa64.efi`, which loads
`grubaa64.efi` beside itself, whose grub.cfg pxetui renders per MAC; kernel and initrd come
over TFTP. aarch64 under TCG on two shared cores is slow, so the profile's initrd is a tiny
empty one (the 40 MB installer initrd would only add transfer time): the test ends when the
arm64 kernel is running.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from lab import Lab

from e2e.chain import SIGNED_CHAIN, in_order, steps
from pxetui.lab.qemu import Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]
MAC = "52:54:00:a6:40:01"
DI_ARM64 = Path("/usr/lib/debian-installer/images/12/arm64/text/debian-installer/arm64")
SHIM = "debian-installer/arm64/bootnetaa64.efi"
PROFILE = "debian-12-arm64-kernel"


def arm64_profile(directory: Path, work: Path) -> None:
    """Debian's arm64 installer kernel with an empty initramfs, on the serial port (ttyAMA0)."""
    initrd = work / "empty-initrd.cpio"
    initrd.write_bytes(
        subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"], input=b"", capture_output=True, check=True
        ).stdout
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{PROFILE}.yaml").write_text(
        f"name: {PROFILE}\n"
        "title: Debian 12 arm64 installer kernel (from debian-installer-12-netboot-arm64)\n"
        "arch: [arm64]\nfirmware: [uefi]\n"
        f"kernel: {{path: {DI_ARM64 / 'linux'}}}\n"
        f"initrd: {{path: {initrd}}}\n"
        'cmdline: "console=ttyAMA0 earlycon panic=-1"\n'
        "secure_boot: debian\n"
    )


def test_arm64_secure_boot_pc_boots_the_arm64_installer_kernel_through_the_signed_chain(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    spec = VmSpec(name="arm64", mac=MAC, tap="tap0", cpu="arm64", secure_boot=True)
    if spec.missing() or not (DI_ARM64 / "bootnetaa64.efi").is_file():
        pytest.skip(
            "needs qemu-system-arm, qemu-efi-aarch64, debian-installer-12-netboot-arm64 (make deps-test)"
        )
    profiles = tmp_path / "profiles"
    arm64_profile(profiles, tmp_path)
    plan = tmp_path / "plan.csv"
    plan.write_text(f"mac,profile,hostname\n{MAC},{PROFILE},pc-arm64\n")
    pxetui = run_pxetui(
        "--mode", "full", "--package-proxy", "off", "--profiles", str(profiles), "--plan", str(plan)
    )  # fmt: skip  # --secure-boot auto: no arm64 iPXE, so the chain is the way
    ready = pxetui.wait_event("service.ready", timeout=30)
    assert SHIM in [c["shim"] for c in ready["services"]["tftp"]["signed_chains"]]
    lab.add_tap(spec.tap)
    vm = Vm(spec, lab.server_ns, tmp_path)
    vm.start()
    try:
        seconds = vm.wait_serial(r"Linux version \S+-arm64", timeout=600)
        assert seconds is not None, vm.serial()[-3000:]
        assert vm.wait_serial("secureboot: Secure boot enabled", timeout=30) is not None, vm.serial()[-3000:]
        pxetui.wait_event("tftp.done", mac=MAC, file=f"files/{PROFILE}/kernel", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    discover = next(e for e in pxetui.events if e["event"] == "dhcp.discover" and e.get("mac") == MAC)
    assert discover["arch"] == 11, discover
    ack = next(e for e in pxetui.events if e["event"] == "dhcp.ack" and e.get("mac") == MAC)
    assert ack["file"] == SHIM
    chain = steps(pxetui.events, MAC)
    assert in_order(SIGNED_CHAIN, chain), chain
    loaders = [e["file"] for e in pxetui.events if e["event"] == "tftp.done" and e.get("mac") == MAC]
    assert "debian-installer/arm64/grubaa64.efi" in loaders, loaders
    print(f"arm64 Secure Boot PC: power-on to the arm64 installer kernel in {seconds:.0f} s")
