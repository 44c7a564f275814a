"""Secure Boot PCs that boot by UEFI HTTP Boot get the signed chain as a RAM disk image.

Debian 12's signed GRUB reads TFTP only, so a shim named by URL would stop at GRUB. pxetui
answers such a PC (arch 16, vendor class HTTPClient) with `/ramdisk/SHIM.img` instead: OVMF's
HttpBootDxe boots it as a RAM disk (`application/vnd.efi-img`), shim on it loads its GRUB from
the disk, and that GRUB asks for an address and reads pxetui's per-MAC grub.cfg, kernel and
initrd over TFTP (pxetui/boot/ramdisk.py). Two ways a PC gets there:
  - its setup screen puts HTTP Boot first (here: OVMF with PXE off), assigned by plan;
  - `--secure-boot auto`, PXE first: the firmware refuses iPXE, pxetui notes the refusal, and
    the firmware's next option, HTTPv4, boots the signed chain in the same power-on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lab import Lab

from e2e.chain import in_order, machine_state, planned, steps
from e2e.test_secure_boot import boot
from pxetui.boot import ramdisk
from pxetui.lab.qemu import VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

SHIM = "debian-installer/amd64/bootnetx64.efi"
IMAGE_PATH = ramdisk.url_path(SHIM)
# From the disk image on, the same TFTP chain as over PXE, without the shim and GRUB transfers.
AFTER_IMAGE = ["tftp.start:script", "tftp.start:kernel", "tftp.start:initrd"]
# The kernel, or the end of the road: back in the firmware's menu (no need to wait for the timeout).
BOOTED_OR_NOT = r"secureboot: Secure boot enabled|Boot0000 \"UiApp\"|No bootable option"


def pc(mac: str, network_boot: str) -> VmSpec:
    spec = VmSpec(
        name=f"pc{mac[-2:]}", mac=mac, tap=f"tap{mac[-1]}", secure_boot=True, network_boot=network_boot
    )
    missing = spec.missing()
    if missing:
        pytest.skip(f"needs Debian's qemu-system-x86 and ovmf packages: {', '.join(missing)}")
    if not Path(f"/usr/lib/debian-installer/images/12/amd64/text/{SHIM}").is_file():
        pytest.skip("needs debian-installer-12-netboot-amd64 (make deps-test)")
    if ramdisk.missing_tools():
        pytest.skip(f"needs {ramdisk.INSTALL_HINT}")
    return spec


def image_served(events: list[dict[str, Any]], mac: str) -> dict[str, Any]:
    done = [e for e in events if e["event"] == "http.done" and e.get("path") == IMAGE_PATH and e["ok"]]
    assert done, [e for e in events if e["event"].startswith("http.")]
    assert done[-1]["mac"] == mac
    return done[-1]


def test_secure_boot_http_boot_pc_boots_the_signed_chain_from_a_ram_disk(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    mac = "52:54:00:5b:e1:01"
    spec = pc(mac, "http")
    args = [
        "--mode",
        "full",
        "--secure-boot",
        "signed",
        "--package-proxy",
        "off",
        "--plan",
        planned(tmp_path, mac),
    ]
    pxetui = run_pxetui(*args)
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, spec)
    try:
        seconds = vm.wait_serial(BOOTED_OR_NOT, timeout=400)
        assert seconds is not None and "secureboot: Secure boot enabled" in vm.serial(), vm.serial()[-3000:]
        assert "Linux version" in vm.serial()
        assert "signed GRUB from the HTTP Boot RAM disk" in vm.serial()
        pxetui.wait_event("tftp.done", mac=mac, file="files/debian-12-local/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    ack = next(e for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac)
    assert ack["file"].endswith(IMAGE_PATH), ack
    image_served(pxetui.events, mac)
    chain = steps(pxetui.events, mac)
    assert in_order(["dhcp.ack", "http.request:loader", *AFTER_IMAGE], chain), chain
    answer = next(
        e for e in pxetui.events if e["event"] == "tftp.start" and e.get("answer") == "debian-12-local"
    )
    assert answer["file"] == f"debian-installer/amd64/grub/grub.cfg-{mac}"  # its own MAC, from GRUB
    print(f"Secure Boot HTTP Boot PC: power-on to the signed kernel in {seconds:.0f} s")


def test_auto_boots_the_signed_chain_in_the_same_power_on_after_pxe_refused_ipxe(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    mac = "52:54:00:5b:e1:02"
    spec = pc(mac, "pxe")
    pxetui = run_pxetui("--mode", "full", "--package-proxy", "off", "--plan", planned(tmp_path, mac))  # auto
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, spec)
    try:
        seconds = vm.wait_serial(BOOTED_OR_NOT, timeout=400)
        assert seconds is not None and "secureboot: Secure boot enabled" in vm.serial(), vm.serial()[-3000:]
        serial = vm.serial()
        # PXEv4 first: iPXE refused; then HTTPv4, with no reset in between.
        refused, http_boot = serial.find("Access Denied"), serial.find('"UEFI HTTPv4')
        assert 0 <= refused < http_boot < serial.find("Linux version"), serial[-3000:]
        pxetui.wait_event("tftp.done", mac=mac, file="files/debian-12-local/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    # GRUB's own DHCP (net_bootp, from the disk) is an ordinary client's: an address, no file.
    acks = [e.get("file") for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac]
    assert acks[0] == "ipxe.efi" and str(acks[1]).endswith(IMAGE_PATH), acks
    image_served(pxetui.events, mac)
    assert machine_state(tmp_path, mac)["secure_boot"] == "ipxe-refused"
    assert in_order(["tftp.start:loader", "http.request:loader", *AFTER_IMAGE], steps(pxetui.events, mac))
    print(
        f"auto, Secure Boot: iPXE refused over PXE, signed kernel over HTTPv4 in the same power-on in {seconds:.0f} s"
    )
