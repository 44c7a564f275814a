"""Secure Boot in proxy mode: a signed GRUB that will ask the router for its config is named (issue 15).

Debian's and Ubuntu's signed GRUB take their TFTP server from the router's DHCP ACK, never
from pxetui's proxy offer (boot/grub_proxy.py; the packet trace is in the e2e test). Here: the
pure parts on real wire bytes (the codec builds the router's reply as dnsmasq and Kea send it),
and the registry, stall and log line fed with events built by the services' own constructors.
tests/test_dhcp_rivals.py and tests/e2e/test_secure_boot.py check it with real dnsmasq, Kea
and OVMF.
"""

from __future__ import annotations

from socket import inet_aton

import pytest
from test_secure_boot_refusals import CLIENT, MAC, discover, done, fetched, start

from pxetui.boot.grub_proxy import grub_tftp_server, proxy_grub_advice
from pxetui.model.events import DhcpRival, Event
from pxetui.model.registry import GRUB_ELSEWHERE, Machine, Registry
from pxetui.model.sentences import sentence
from pxetui.services.dhcp import codec
from pxetui.services.dhcp.probe import rival_from_reply
from pxetui.tui.stalls import GRUB_QUIET, stall

OURS = "198.18.9.1"
ROUTER = "198.18.9.2"
SHIM = "debian-installer/amd64/bootnetx64.efi"
GRUB = "debian-installer/amd64/grubx64.efi"


def router_ack(*, siaddr: str = "0.0.0.0", option_66: str | None = None, sname: bytes = b"") -> bytes:
    options: dict[int, bytes] = {
        codec.OPT_MESSAGE_TYPE: bytes([codec.ACK]),
        codec.OPT_SERVER_ID: inet_aton(ROUTER),
        codec.OPT_SUBNET_MASK: inet_aton("255.255.255.0"),
        codec.OPT_ROUTER: inet_aton(ROUTER),
    }
    if option_66 is not None:
        options[codec.OPT_TFTP_SERVER] = option_66.encode()
    packet = codec.Packet(
        op=codec.BOOTREPLY, htype=1, hlen=6, hops=0, xid=7, secs=0, flags=0x8000,
        ciaddr=codec.ZERO_IP, yiaddr=inet_aton("198.18.9.70"), siaddr=inet_aton(siaddr),
        giaddr=codec.ZERO_IP, chaddr=bytes.fromhex("525400") + bytes(13), sname=sname.ljust(64, b"\0"),
        file=bytes(128), options=options,
    )  # fmt: skip
    return codec.encode(packet)


ROUTER_MAC = bytes.fromhex("525400d00002")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"siaddr": ROUTER}, ROUTER),  # dnsmasq: its own address, always
        ({"siaddr": ROUTER, "option_66": OURS}, ROUTER),  # siaddr first: option 66 does not help then
        ({"option_66": OURS}, OURS),  # Windows DHCP, Kea with tftp-server-name: siaddr empty
        ({"sname": b"198.18.9.1"}, OURS),
        ({}, None),  # nothing: GRUB has no server at all
        ({"siaddr": OURS}, OURS),  # Kea/ISC next-server set to pxetui
    ],
)
def test_the_router_reply_names_the_server_upstream_grub_asks(
    fields: dict[str, object], expected: str | None
) -> None:
    rival = rival_from_reply(router_ack(**fields), ROUTER_MAC, inet_aton(OURS))  # type: ignore[arg-type]
    assert rival is not None and rival.offers_address
    assert rival.grub_server == expected
    assert rival.event("proxy").grub_server == expected


def test_the_advice_names_what_to_set_where_and_nothing_when_it_names_pxetui() -> None:
    assert grub_tftp_server("0.0.0.0", "", None) is None
    assert proxy_grub_advice(OURS, OURS, ROUTER) is None
    advice = proxy_grub_advice(ROUTER, OURS, ROUTER)
    assert advice is not None
    assert f"asks {ROUTER} for grub.cfg" in advice and f"set next-server to {OURS} on {ROUTER}" in advice
    assert "--mode full" in advice
    nothing = proxy_grub_advice(None, OURS, ROUTER)
    assert nothing is not None and "has no server to ask" in nothing


def rival(advice: str | None) -> DhcpRival:
    return DhcpRival(
        mode="proxy", server_id=ROUTER, server_mac="52:54:00:d0:00:02", message="ack",
        offers_address=True, next_server=ROUTER, grub_server=ROUTER, grub_advice=advice,
    )  # fmt: skip


ADVICE = proxy_grub_advice(ROUTER, OURS, ROUTER)


def grub_fetched(registry: Registry, *before: Event) -> Machine:
    events = [*before, discover(1.0), *fetched(2.0, SHIM), start(3.0, GRUB), done(4.0, GRUB)]
    for event in events:
        registry.apply(event)
    machine = registry.get(MAC)
    assert machine is not None
    return machine


def test_a_pc_whose_grub_will_ask_the_router_says_what_to_change_on_the_router() -> None:
    registry = Registry()
    machine = grub_fetched(registry, rival(ADVICE))
    assert machine.last_error == f"{GRUB_ELSEWHERE}: {ADVICE}"
    assert machine.grub_elsewhere == machine.last_error
    assert machine.to_dict()["grub_elsewhere"] == machine.last_error  # in machines.json
    assert Machine.from_dict(machine.to_dict()).grub_elsewhere == machine.last_error
    assert stall(machine, 4.0 + GRUB_QUIET - 1) is None  # GRUB may still be starting
    stalled = stall(machine, 4.0 + GRUB_QUIET + 1)
    assert stalled is not None and stalled.step == "loader"
    assert "never asked pxetui for grub.cfg" in stalled.observed
    assert f"set next-server to {OURS} on {ROUTER}" in stalled.hint


def test_a_grub_that_reads_the_proxy_offer_asks_pxetui_and_the_warning_goes() -> None:
    registry = Registry()
    machine = grub_fetched(registry, rival(ADVICE))
    registry.apply(start(4.2, "debian-installer/amd64/grub/x86_64-efi/command.lst"))  # Red Hat's GRUB
    assert machine.grub_elsewhere is None and machine.last_error is None
    assert stall(machine, 4.2 + GRUB_QUIET + 1) is None


@pytest.mark.parametrize(
    "before",
    [
        [],  # no rival: pxetui gives the addresses (full mode), GRUB reads our ACK
        [rival(ADVICE), rival(None)],  # the operator set next-server: the router's next answer says so
    ],
)
def test_no_warning_where_the_dhcp_answer_names_pxetui(before: list[Event]) -> None:
    registry = Registry()
    machine = grub_fetched(registry, *before)
    assert machine.grub_elsewhere is None and machine.last_error is None
    assert not registry.grub_advice


def test_a_size_probe_or_a_broken_grub_transfer_is_not_grub_fetched() -> None:
    registry = Registry()
    for event in (rival(ADVICE), discover(1.0), *fetched(2.0, SHIM), start(3.0, GRUB)):
        registry.apply(event)
    registry.apply(done(3.1, GRUB, probe=True))
    registry.apply(done(3.5, GRUB, sent=4, ok=False))
    machine = registry.get(MAC)
    assert machine is not None and machine.grub_elsewhere is None
    assert CLIENT  # the PC's address, as the services name it


def test_a_new_boot_starts_without_the_warning() -> None:
    registry = Registry()
    machine = grub_fetched(registry, rival(ADVICE))
    registry.apply(discover(100.0))
    assert machine.grub_elsewhere is None


def test_the_log_line_of_such_a_router_carries_the_advice() -> None:
    line = sentence(rival(ADVICE))
    assert "Secure Boot PCs:" in line and f"set next-server to {OURS}" in line
    assert "Secure Boot PCs" not in sentence(rival(None))
