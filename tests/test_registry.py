"""The registry's stage machine: forward-only within a boot, a new boot after the menu or done."""

import dataclasses
from typing import Any

from pxetui.model.events import Event, make_event
from pxetui.model.registry import Machine, Registry, Stage

MAC = "52:54:00:12:34:01"
CLIENT = "198.18.0.100"
# What the services send besides what a test is about; `make_event` refuses any other field.
SENT_TOO: dict[str, dict[str, Any]] = {
    "tftp.start": {"client": CLIENT, "total": None, "blksize": 1468, "windowsize": 4},
    "tftp.progress": {"client": CLIENT, "total": None, "rate": 0.0},
    "tftp.done": {"client": CLIENT, "total": None, "rate": 0.0, "ok": True, "reason": ""},
    "http.request": {"client": CLIENT, "path": "/", "file": "", "total": 0},
    "install.done": {"client": CLIENT},
    "install.failed": {"client": CLIENT},
}


def event(name: str, mac: str | None, ts: float, **fields: Any) -> Event:
    built = make_event(name, mac, **{**SENT_TOO.get(name, {}), **fields})
    return dataclasses.replace(built, ts=ts)


def feed(reg: Registry, name: str, ts: float, **fields: Any) -> None:
    reg.apply(event(name, MAC, ts, **fields))


def test_uefi_boot_walks_every_stage_with_timestamps() -> None:
    reg = Registry()
    feed(reg, "dhcp.discover", 1.0, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003010")
    feed(reg, "dhcp.ack", 1.5, arch=7, ip="198.18.0.100")
    feed(reg, "tftp.start", 2.0, file="ipxe.efi", total=1000)
    feed(reg, "tftp.progress", 2.1, file="ipxe.efi", bytes=500, total=1000, rate=5000.0)
    m = reg.get(MAC)
    assert m is not None and m.transfer is not None
    assert m.transfer.percent == 50.0
    feed(reg, "tftp.done", 2.2, file="ipxe.efi", bytes=1000, total=1000, ok=True)
    feed(reg, "dhcp.discover", 3.0, arch=7, ipxe=True)  # iPXE asks again: not a new boot
    feed(reg, "http.request", 4.0, kind="script", path="/boot.ipxe")
    feed(reg, "http.request", 5.0, kind="kernel", file="linux", total=100)
    feed(reg, "http.request", 6.0, kind="initrd", file="initrd.gz", total=100)
    feed(reg, "http.request", 7.0, kind="config", file="preseed.cfg")
    feed(reg, "install.done", 9.0)
    assert m.stage is Stage.DONE
    assert m.firmware == "UEFI"
    assert m.ip == "198.18.0.100"
    assert m.boots == 1
    assert m.stage_times == {
        "dhcp": 1.0,
        "loader": 2.0,
        "menu": 4.0,
        "kernel": 5.0,
        "initrd": 6.0,
        "installing": 7.0,
        "done": 9.0,
    }
    assert m.elapsed == 8.0
    assert m.fingerprint["vendor_class"].startswith("PXEClient:Arch:00007")


def test_stages_never_go_back_within_a_boot() -> None:
    reg = Registry()
    feed(reg, "dhcp.discover", 1.0, arch=0)
    feed(reg, "http.request", 2.0, kind="kernel", file="linux")
    feed(reg, "http.request", 3.0, kind="script", path="/boot.ipxe")
    feed(reg, "tftp.start", 4.0, file="undionly.kpxe")
    m = reg.get(MAC)
    assert m is not None
    assert m.stage is Stage.KERNEL
    assert m.firmware == "BIOS"


def test_discover_after_done_starts_a_new_boot() -> None:
    reg = Registry()
    feed(reg, "dhcp.discover", 1.0, arch=16, vendor_class="HTTPClient:Arch:00016:UNDI:003001")
    feed(reg, "http.request", 2.0, kind="script")
    feed(reg, "install.failed", 3.0, reason="no disk")
    m = reg.get(MAC)
    assert m is not None
    assert (m.stage, m.last_error, m.firmware) == (Stage.FAILED, "no disk", "UEFI-HTTP")
    feed(reg, "dhcp.discover", 10.0, arch=16, vendor_class="HTTPClient:Arch:00016:UNDI:003001")
    assert m.stage is Stage.DHCP
    assert m.boots == 2
    assert m.stage_times == {"dhcp": 10.0}
    assert m.last_error is None


def test_stage_change_is_reported_but_progress_is_not() -> None:
    reg = Registry()
    first = reg.apply(event("dhcp.discover", MAC, 1.0, arch=7))
    assert first is not None and first.new and first.stage_changed
    again = reg.apply(event("dhcp.request", MAC, 1.1, arch=7))
    assert again is not None and not again.stage_changed
    start = reg.apply(event("tftp.start", MAC, 2.0, file="ipxe.efi"))
    assert start is not None and start.stage_changed
    progress = reg.apply(event("tftp.progress", MAC, 2.1, file="ipxe.efi", bytes=10))
    assert progress is not None and not progress.stage_changed
    assert reg.apply(event("service.ready", None, 0.0, mode="full", interface="eth1", address=None, http_port=8080, services={}, state_dir="/x")) is None


def test_registry_round_trips_through_its_document() -> None:
    reg = Registry()
    feed(reg, "dhcp.ack", 1.0, arch=0, ip="198.18.0.7")
    feed(reg, "tftp.start", 2.0, file="undionly.kpxe", total=5)
    copy = Registry()
    copy.load_document(reg.to_document())
    m = copy.get(MAC)
    assert m is not None
    assert (m.stage, m.ip, m.arch, m.transfer and m.transfer.file) == (
        Stage.LOADER,
        "198.18.0.7",
        0,
        "undionly.kpxe",
    )
    assert copy.mac_for_ip("198.18.0.7") == MAC


def test_vendor_comes_from_the_mac_prefix() -> None:
    reg = Registry()
    assert reg.ensure("52:54:00:00:00:01").vendor == "QEMU/KVM"
    assert reg.ensure("06:00:00:00:00:01").vendor == "(locally administered)"


def test_the_installers_own_dhcp_does_not_restart_the_boot() -> None:
    reg = Registry()
    feed(reg, "dhcp.discover", 1.0, arch=0, vendor_class="PXEClient:Arch:00000:UNDI:002001", ipxe=True)
    feed(reg, "http.request", 2.0, kind="script")
    feed(reg, "http.request", 3.0, kind="kernel", file="linux")
    feed(reg, "dhcp.discover", 20.0, vendor_class="udhcp 1.36.1")
    feed(reg, "dhcp.ack", 20.1, ip="198.18.0.150", vendor_class="udhcp 1.36.1")
    m = reg.get(MAC)
    assert m is not None
    assert (m.stage, m.boots, m.ip) == (Stage.KERNEL, 1, "198.18.0.150")
    feed(reg, "dhcp.discover", 30.0, arch=0, ipxe=True)  # the PC network-boots again
    assert (m.stage, m.boots) == (Stage.DHCP, 2)


def test_proxy_mode_learns_the_address_from_the_pcs_request() -> None:
    reg = Registry()
    feed(reg, "dhcp.discover", 1.0, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003010")
    feed(
        reg,
        "dhcp.request",
        1.2,
        arch=7,
        vendor_class="PXEClient:Arch:00007:UNDI:003010",
        requested="198.18.0.55",
    )
    m = reg.get(MAC)
    assert m is not None and m.ip == "198.18.0.55"
    feed(reg, "dhcp.ack", 1.3, arch=7, ip="198.18.0.60")
    assert m.ip == "198.18.0.60"


def test_saved_machine_has_every_field_and_shares_nothing_mutable() -> None:
    from dataclasses import fields

    from pxetui.model.registry import Machine

    reg = Registry()
    feed(reg, "dhcp.discover", 1.0, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003010", params=[1, 3])
    feed(reg, "tftp.start", 2.0, file="ipxe.efi", total=1000)
    m = reg.get(MAC)
    assert m is not None
    doc = m.to_dict()
    assert set(doc) == {f.name for f in fields(Machine)}  # a new field cannot be left unsaved
    assert doc["transfer"]["file"] == "ipxe.efi" and doc["stage"] == "loader"
    feed(reg, "tftp.done", 2.5, file="ipxe.efi", bytes=1000, total=1000, ok=True)
    feed(reg, "dhcp.ack", 3.0, arch=7, ip="198.18.0.100")
    # The document is a snapshot a writer thread encodes later: later events do not reach it.
    assert "dhcp" not in [step for _, step, _ in map(tuple, doc["timeline"])][1:]
    assert doc["transfer"]["bytes"] == 0 and len(doc["stage_times"]) == 2
    assert Machine.from_dict(doc).transfer == m.transfer.__class__(**doc["transfer"])


def test_a_pc_sent_to_its_disk_is_marked_until_its_next_network_boot() -> None:
    reg = Registry()
    feed(reg, "dhcp.discover", 1.0, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003010")
    feed(reg, "http.request", 2.0, kind="script", path="/boot.ipxe", answer="menu")
    m = reg.get(MAC)
    assert m is not None and not m.booted_local  # at its menu: still the network's
    feed(reg, "http.request", 40.0, kind="script", path="/boot.ipxe", answer="menu-timeout")
    assert m.booted_local and m.stage is Stage.MENU
    assert Machine.from_dict(m.to_dict()).booted_local  # restored after a restart as it was
    feed(reg, "dhcp.discover", 90.0, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003010")
    assert not m.booted_local and m.boots == 2
    # The signed chain's rendered grub.cfg that hands back to the firmware says the same.
    feed(reg, "tftp.start", 91.0, file="grub/grub.cfg-52:54:00:12:34:01", kind="script", answer="local")
    assert m.booted_local
