"""A Secure Boot PC boots a profile whose shim and GRUB come out of a verified container file.

Fedora, Rocky and AlmaLinux publish their shim and GRUB only inside `images/efiboot.img`, a FAT
image (the built-ins take them out with `from_image`); Ubuntu publishes its network pair only
inside `ubuntu-VERSION-netboot-amd64.tar.gz` (`from_archive`: the ISO's GRUB is a CD build,
which a probe here saw never reach the kernel from the network). Here a real FAT image and a
real tarball hold Debian's signed loaders under those vendors' names: the only signed pairs a
Debian machine has, and ones that trust Debian's d-i kernel. `pxetui fetch` takes them out into
the cache, and OVMF's Secure Boot build, assigned the profile by plan, must get that profile's
own shim from DHCP, its GRUB, and reach the signed kernel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from efiboot import DI_AMD64, GRUB_NET, build_efiboot, build_tarball, ubuntu_netboot_loaders
from lab import Lab
from test_fetch import RecordingProgress

from e2e.chain import SIGNED_CHAIN, in_order, planned, steps
from e2e.test_secure_boot import boot, pc
from pxetui.boot.bootfiles import profile_chain
from pxetui.boot.profiles import builtin_profiles_dir, load_profile
from pxetui.commands.fetch import fetch_profiles

pytestmark = [pytest.mark.lab, pytest.mark.e2e]


@dataclass(frozen=True)
class Container:
    """Where a vendor keeps its loaders, built for the test: `secure_boot` of the profile."""

    name: str
    mac: str
    vendor: str
    grub: Path  # the GRUB put into the container, to know it when it is served
    secure_boot: Callable[[Path], dict[str, Any]]


def efiboot_img(tmp_path: Path) -> dict[str, Any]:
    image = build_efiboot(
        tmp_path / "tree" / "images" / "efiboot.img",
        {
            "EFI/BOOT/BOOTX64.EFI": (DI_AMD64 / "bootnetx64.efi").read_bytes(),
            "EFI/BOOT/grubx64.efi": (DI_AMD64 / "grubx64.efi").read_bytes(),
        },
    )
    return {
        "image": {"path": str(image)},
        "shim": {"from_image": "EFI/BOOT/BOOTX64.EFI"},
        "grub": {"from_image": "EFI/BOOT/grubx64.efi"},
    }


def netboot_tarball(tmp_path: Path) -> dict[str, Any]:
    tarball = build_tarball(tmp_path / "ubuntu-netboot-amd64.tar.gz", ubuntu_netboot_loaders())
    return {
        "archive": {"path": str(tarball)},
        "shim": {"from_archive": "amd64/bootx64.efi"},
        "grub": {"from_archive": "amd64/grubx64.efi"},
    }


CONTAINERS = [
    Container("fedora-like-tree", "52:54:00:5b:e0:0f", "fedora", DI_AMD64 / "grubx64.efi", efiboot_img),
    Container("ubuntu-like-netboot", "52:54:00:5b:e0:1a", "ubuntu", GRUB_NET, netboot_tarball),
]


def container_profile(tmp_path: Path, container: Container) -> Path:
    doc = yaml.safe_load((builtin_profiles_dir() / "debian-12-local.yaml").read_text())
    doc.update(
        name=container.name,
        title=f"A profile whose loaders are in a container file ({container.vendor}'s way)",
        secure_boot={"vendor": container.vendor, **container.secure_boot(tmp_path)},
    )
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / f"{container.name}.yaml").write_text(yaml.safe_dump(doc))
    return directory


@pytest.mark.parametrize("container", CONTAINERS, ids=lambda c: c.name)
def test_secure_boot_pc_boots_loaders_taken_out_of_a_container(
    lab: Lab, run_pxetui: Any, tmp_path: Path, container: Container
) -> None:
    name, mac = container.name, container.mac
    spec = pc(mac)
    profiles = container_profile(tmp_path, container)
    cache = tmp_path / "cache"
    profile = load_profile(profiles / f"{name}.yaml")
    results = asyncio.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert {r.role: r.status for r in results if r.role in ("shim", "grub")} == {
        "shim": "extracted",
        "grub": "extracted",
    }
    assert profile_chain(profile, cache) is not None
    args = ["--mode", "full", "--secure-boot", "signed", "--package-proxy", "off", "--cache", str(cache)]
    args += ["--plan", planned(tmp_path, mac, name), "--profiles", str(profiles)]
    pxetui = run_pxetui(*args)
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, spec)
    try:
        seconds = vm.wait_serial(r"secureboot: Secure boot enabled", timeout=400)
        assert seconds is not None, vm.serial()[-3000:]
        assert "Linux version" in vm.serial()
        pxetui.wait_event("tftp.done", mac=mac, file=f"files/{name}/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    chain = steps(pxetui.events, mac)
    assert in_order(SIGNED_CHAIN, chain), chain
    ack = next(e for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac)
    assert ack["file"] == f"profiles/{name}/shimx64.efi"  # the profile's own shim, not Debian's default
    served = {e["file"]: e["bytes"] for e in pxetui.events if e["event"] == "tftp.done" and e["ok"]}
    grub_size = container.grub.stat().st_size
    assert grub_size in (served.get("grubx64.efi"), served.get(f"profiles/{name}/grubx64.efi")), served
    print(f"Secure Boot PC ({name}): power-on to the signed kernel in {seconds:.0f} s")
