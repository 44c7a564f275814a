"""Whole PCs (QEMU) network-boot through pxetui to the Debian installer kernel."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from lab import Lab

from e2e.chain import in_order
from pxetui.lab.qemu import Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

# Stages a PC walks, as pxetui's events show them (UEFI loads iPXE over TFTP first).
UEFI_CHAIN = [
    "dhcp.discover",
    "dhcp.ack",
    "tftp.done",
    "http.request:script",
    "http.request:kernel",
    "http.request:initrd",
]
BIOS_CHAIN = [
    "dhcp.discover",
    "dhcp.ack",
    "http.request:script",
    "http.request:kernel",
    "http.request:initrd",
]


def chain_of(events: list[dict[str, Any]], mac: str) -> list[str]:
    seen: list[str] = []
    for e in events:
        if e.get("mac") != mac:
            continue
        name = e["event"]
        if name == "http.request":
            name = f"http.request:{e.get('kind')}"
        if name == "tftp.done" and not e.get("ok", True):
            continue
        if not seen or seen[-1] != name:
            seen.append(name)
    return seen


@pytest.mark.parametrize("firmware", ["uefi", "bios"])
def test_pc_boots_the_assigned_installer(lab: Lab, run_pxetui: Any, tmp_path: Path, firmware: str) -> None:
    need_tools("qemu-system-x86_64")
    mac = "52:54:00:e2:e0:01" if firmware == "uefi" else "52:54:00:e2:e0:02"
    plan = tmp_path / "plan.csv"
    plan.write_text(f"mac,profile,hostname\n{mac},debian-12-local,pc-{firmware}\n")
    pxetui = run_pxetui("--mode", "full", "--plan", str(plan))
    pxetui.wait_event("service.ready", timeout=30)
    vm = Vm(
        VmSpec(name=firmware, mac=mac, tap=lab.add_tap("tap0"), firmware=firmware), lab.server_ns, tmp_path
    )
    vm.start()
    try:
        seconds = vm.wait_serial("Linux version", timeout=300)
        assert seconds is not None, vm.serial()[-3000:]
        pxetui.wait_event("http.done", mac=mac, kind="initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    chain = chain_of(pxetui.events, mac)
    wanted = UEFI_CHAIN if firmware == "uefi" else BIOS_CHAIN
    assert in_order(wanted, chain), chain
    ack = next(e for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac)
    assert ipaddress.IPv4Address(ack["ip"]) in lab.subnet
    # iPXE's router solicitation got pxetui's empty advertisement, so it stopped waiting for
    # IPv6: without one it prints a dot a second for ~15 s (18 dots) before it goes on.
    assert any(e["event"] == "ra.answer" and e["mac"] == mac for e in pxetui.events), chain
    if firmware == "uefi":  # OVMF copies iPXE's console to serial; SeaBIOS does not
        configuring = next(line for line in vm.serial().splitlines() if "Configuring (net0" in line)
        assert configuring.count(".") < 12, configuring
