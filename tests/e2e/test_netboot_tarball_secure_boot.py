"""A Secure Boot PC boots an "Ubuntu-like" profile whose loaders come out of a netboot tarball.

Ubuntu publishes its network shim and GRUB only inside `ubuntu-VERSION-netboot-amd64.tar.gz`
(`amd64/bootx64.efi`, `amd64/grubx64.efi`; the ISO's GRUB is a CD build, which a probe here saw
never reach the kernel from the network). Here a real tarball holds Debian's signed shim and
network GRUB (grubnetx64, prefix /grub) under Ubuntu's names: the only signed pair a Debian
machine has, and one that trusts Debian's d-i kernel. `pxetui fetch` reads them out into the
cache, and OVMF's Secure Boot build, assigned that profile by plan, must get that profile's own
shim from DHCP, its GRUB, and reach the signed kernel.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from efiboot import GRUB_NET, build_tarball, ubuntu_netboot_loaders
from lab import Lab
from test_fetch import RecordingProgress

from e2e.chain import SIGNED_CHAIN, in_order, planned, steps
from e2e.test_secure_boot import boot, pc
from pxetui.boot.bootfiles import profile_chain
from pxetui.boot.profiles import builtin_profiles_dir, load_profile
from pxetui.commands.fetch import fetch_profiles

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

NAME = "ubuntu-like-netboot"


def netboot_profile(tmp_path: Path) -> Path:
    tarball = build_tarball(tmp_path / "ubuntu-netboot-amd64.tar.gz", ubuntu_netboot_loaders())
    doc = yaml.safe_load((builtin_profiles_dir() / "debian-12-local.yaml").read_text())
    doc.update(
        name=NAME,
        title="A profile whose loaders are in a netboot tarball",
        secure_boot={
            "vendor": "ubuntu",
            "archive": {"path": str(tarball)},
            "shim": {"from_archive": "amd64/bootx64.efi"},
            "grub": {"from_archive": "amd64/grubx64.efi"},
        },
    )
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / f"{NAME}.yaml").write_text(yaml.safe_dump(doc))
    return directory


def test_secure_boot_pc_boots_loaders_read_out_of_a_netboot_tarball(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    mac = "52:54:00:5b:e0:1a"
    spec = pc(mac)
    profiles = netboot_profile(tmp_path)
    cache = tmp_path / "cache"
    profile = load_profile(profiles / f"{NAME}.yaml")
    results = asyncio.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert {r.role: r.status for r in results if r.role in ("shim", "grub")} == {
        "shim": "extracted",
        "grub": "extracted",
    }
    chain_of = profile_chain(profile, cache)
    assert chain_of is not None and chain_of.grub_prefix == "grub"  # the network GRUB's prefix
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
    grub_size = GRUB_NET.stat().st_size
    assert grub_size in (served.get("grubx64.efi"), served.get(f"profiles/{NAME}/grubx64.efi")), served
    print(
        f"Secure Boot PC (loaders from a netboot tarball): power-on to the signed kernel in {seconds:.0f} s"
    )
