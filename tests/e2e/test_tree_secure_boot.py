"""A Secure Boot PC boots a "Fedora-like" profile whose loaders come out of its efiboot.img.

Fedora, Rocky and AlmaLinux publish their shim and GRUB only inside `images/efiboot.img`, a
FAT image (the built-in profiles take them out with `from_image`). Here a real FAT image holds
Debian's d-i shim and GRUB under the Red Hat names (`EFI/BOOT/BOOTX64.EFI`, `grubx64.efi`:
the only signed pair a Debian machine has, and one that trusts Debian's d-i kernel); `pxetui
fetch` takes them out into the cache, and OVMF's Secure Boot build, assigned that profile by
plan, must get that profile's own shim from DHCP and reach the signed kernel.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from efiboot import DI_AMD64, build_efiboot
from lab import Lab
from test_fetch import RecordingProgress

from e2e.chain import SIGNED_CHAIN, in_order, planned, steps
from e2e.test_secure_boot import boot, pc
from pxetui.boot.profiles import builtin_profiles_dir, load_profile
from pxetui.commands.fetch import fetch_profiles

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

NAME = "fedora-like-tree"


def tree_profile(tmp_path: Path) -> Path:
    image = build_efiboot(
        tmp_path / "tree" / "images" / "efiboot.img",
        {
            "EFI/BOOT/BOOTX64.EFI": (DI_AMD64 / "bootnetx64.efi").read_bytes(),
            "EFI/BOOT/grubx64.efi": (DI_AMD64 / "grubx64.efi").read_bytes(),
        },
    )
    doc = yaml.safe_load((builtin_profiles_dir() / "debian-12-local.yaml").read_text())
    doc.update(
        name=NAME,
        title="A tree whose loaders are in its efiboot.img",
        secure_boot={
            "vendor": "fedora",
            "image": {"path": str(image)},
            "shim": {"from_image": "EFI/BOOT/BOOTX64.EFI"},
            "grub": {"from_image": "EFI/BOOT/grubx64.efi"},
        },
    )
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / f"{NAME}.yaml").write_text(yaml.safe_dump(doc))
    return directory


def test_secure_boot_pc_boots_loaders_taken_out_of_an_efiboot_img(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    mac = "52:54:00:5b:e0:0f"
    spec = pc(mac)
    profiles = tree_profile(tmp_path)
    cache = tmp_path / "cache"
    profile = load_profile(profiles / f"{NAME}.yaml")
    results = asyncio.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert {r.role: r.status for r in results if r.role in ("shim", "grub")} == {
        "shim": "extracted",
        "grub": "extracted",
    }
    args = ["--mode", "full", "--secure-boot", "signed", "--package-proxy", "off", "--cache", str(cache)]
    args += ["--plan", planned(tmp_path, mac, NAME), "--profiles", str(profiles)]
    pxetui = run_pxetui(*args)
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, spec)
    try:
        seconds = vm.wait_serial(r"secureboot: Secure boot enabled", timeout=400)
        assert seconds is not None, vm.serial()[-3000:]
        assert "Linux version" in vm.serial()
        pxetui.wait_event("tftp.done", mac=mac, file=f"files/{NAME}/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    chain = steps(pxetui.events, mac)
    assert in_order(SIGNED_CHAIN, chain), chain
    ack = next(e for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac)
    assert ack["file"] == f"profiles/{NAME}/shimx64.efi"  # the profile's own shim, not Debian's default
    served = {e["file"]: e["bytes"] for e in pxetui.events if e["event"] == "tftp.done" and e["ok"]}
    grub_size = (DI_AMD64 / "grubx64.efi").stat().st_size
    assert grub_size in (served.get("grubx64.efi"), served.get(f"profiles/{NAME}/grubx64.efi")), served
    print(f"Secure Boot PC (loaders from efiboot.img): power-on to the signed kernel in {seconds:.0f} s")
