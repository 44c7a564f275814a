"""An address has one holder in the registry: the newest, found by an index, never by a scan."""

from __future__ import annotations

import dataclasses
from typing import Any

from pxetui.model.events import Event, make_event
from pxetui.model.registry import Machine, Registry

A = "52:54:00:00:0a:01"
B = "52:54:00:00:0b:01"
IP = "198.18.0.150"
OTHER_IP = "198.18.0.151"
PXE = "PXEClient:Arch:00007:UNDI:003016"


def feed(reg: Registry, name: str, mac: str, ts: float, **fields: Any) -> None:
    event: Event = dataclasses.replace(make_event(name, mac, **fields), ts=ts)
    reg.apply(event)


def test_an_address_given_to_another_mac_leaves_its_previous_holder() -> None:
    reg = Registry()
    feed(reg, "dhcp.ack", A, 1.0, ip=IP, vendor_class=PXE)
    feed(reg, "dhcp.ack", B, 2.0, ip=IP, vendor_class=PXE)  # A's lease expired, B got it
    assert reg.mac_for_ip(IP) == B
    assert reg.machines[A].ip is None and reg.machines[B].ip == IP
    feed(reg, "dhcp.ack", B, 3.0, ip=OTHER_IP, vendor_class=PXE)  # B moved on: IP is nobody's
    assert reg.mac_for_ip(IP) is None and reg.mac_for_ip(OTHER_IP) == B


def test_proxy_mode_a_request_taking_an_offer_moves_the_address() -> None:
    """In proxy mode only the PC's REQUEST (with the router's server id) tells the address."""
    reg = Registry()
    feed(reg, "dhcp.request", A, 1.0, requested=IP, server_id="198.18.0.1", vendor_class=PXE)
    feed(reg, "dhcp.request", B, 2.0, requested=OTHER_IP, server_id="198.18.0.1", vendor_class=PXE)
    # The router reuses A's address for B; B's earlier address does not hold it back.
    feed(reg, "dhcp.request", B, 3.0, requested=IP, server_id="198.18.0.1", vendor_class=PXE)
    assert reg.mac_for_ip(IP) == B and reg.machines[A].ip is None
    # The installer's own DHCP (not a network boot) moves it too: its files come from there.
    feed(reg, "dhcp.request", B, 4.0, requested=OTHER_IP, server_id="198.18.0.1", vendor_class="udhcp 1.36.1")
    assert reg.mac_for_ip(OTHER_IP) == B and reg.mac_for_ip(IP) is None


def test_a_request_asking_back_an_old_address_takes_none_another_holds() -> None:
    reg = Registry()
    feed(reg, "dhcp.ack", A, 1.0, ip=IP, vendor_class=PXE)
    # B asks back yesterday's address (INIT-REBOOT, no server id): the server will NAK it.
    feed(reg, "dhcp.request", B, 2.0, requested=IP, vendor_class=PXE)
    feed(reg, "dhcp.nak", B, 2.1, vendor_class=PXE)
    assert reg.mac_for_ip(IP) == A and reg.machines[A].ip == IP and reg.machines[B].ip is None


def test_a_nak_leaves_the_client_without_an_address() -> None:
    reg = Registry()
    feed(reg, "dhcp.ack", A, 1.0, ip=IP, vendor_class=PXE)
    feed(reg, "dhcp.nak", A, 2.0, vendor_class=PXE)
    assert reg.machines[A].ip is None and reg.mac_for_ip(IP) is None


def test_saved_state_naming_one_address_twice_gives_it_to_the_last_seen() -> None:
    doc = {
        "version": 1,
        "machines": [
            Machine(mac=B, ip=IP, last_seen=20.0).to_dict(),
            Machine(mac=A, ip=IP, last_seen=10.0).to_dict(),
        ],
    }
    reg = Registry()
    reg.load_document(doc)
    assert reg.mac_for_ip(IP) == B and reg.machines[A].ip is None


def test_set_ip_keeps_the_index_in_step_and_a_removed_machine_is_not_named() -> None:
    reg = Registry()
    reg.set_ip(A, IP)
    reg.set_ip(B, IP)
    assert reg.mac_for_ip(IP) == B and reg.machines[A].ip is None
    reg.set_ip(B, None)
    assert reg.mac_for_ip(IP) is None
    reg.set_ip(A, OTHER_IP)
    del reg.machines[A]  # what removing a never-booted machine from the plan does
    assert reg.mac_for_ip(OTHER_IP) is None


class _NoScan(dict):  # type: ignore[type-arg]
    """The machines table, refusing to be walked: a lookup by address must use the index."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("mac_for_ip walked the machines")

    def values(self):  # type: ignore[no-untyped-def]
        raise AssertionError("mac_for_ip walked the machines")

    def items(self):  # type: ignore[no-untyped-def]
        raise AssertionError("mac_for_ip walked the machines")


def test_mac_for_ip_does_not_scan_the_machines() -> None:
    reg = Registry()
    for i in range(300):
        ip = f"198.18.{i // 256}.{i % 256}"
        feed(reg, "dhcp.ack", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", 1.0, ip=ip, vendor_class=PXE)
    reg.machines = _NoScan(reg.machines)
    assert reg.mac_for_ip("198.18.9.9") is None  # the worst case of a scan: no holder
    assert reg.mac_for_ip("198.18.1.7") == "02:00:00:00:01:07"
