"""The DHCP codec, leases and answer policy without a network: every firmware, bad input, fuzz."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from dhcp_client import ZERO_UUID, pxe_vendor_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from pxetui.boot.bootfiles import find_boot_files
from pxetui.services.dhcp import codec
from pxetui.services.dhcp.answer import ServerFacts, answer, delivery_for
from pxetui.services.dhcp.leases import LeasePool, default_range
from pxetui.services.dhcp.server import ErrorCounter, client_fields

SERVER = ipaddress.IPv4Interface("198.18.7.1/24")
HTTP = "http://198.18.7.1:8080"


def boot_dir(tmp_path: Path, *names: str) -> Path:
    for name in names:
        path = tmp_path / "loaders" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"MZ not a real loader")
    return tmp_path / "loaders"


def facts_for(root: Path, mode: str = "full", snponly: bool = False) -> ServerFacts:
    files = find_boot_files(root, snponly=snponly)
    return ServerFacts(
        mode=mode,
        server_ip=SERVER.ip,
        network=SERVER.network,
        http_base=HTTP,
        loader_for_arch=files.loader_for_arch,
        expected_loader=files.expected_loader,
        planned_hostname=lambda mac: "lab-01" if mac == "52:54:00:00:00:01" else None,
        boot_dir=str(root),
    )


@pytest.fixture
def facts(tmp_path: Path) -> ServerFacts:
    return facts_for(boot_dir(tmp_path, "undionly.kpxe", "ipxe.efi", "snponly.efi"))


def pool() -> LeasePool:
    return LeasePool(
        ipaddress.IPv4Address("198.18.7.100"), ipaddress.IPv4Address("198.18.7.250"), exclude=[SERVER.ip]
    )


def request_bytes(
    mac: str = "52:54:00:00:00:01",
    message: str = "discover",
    *,
    xid: int = 7,
    flags: int = 0x8000,
    options: list[Any] | None = None,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
) -> bytes:
    opts: list[Any] = [("message-type", message), *(options or []), "end"]
    chaddr = bytes.fromhex(mac.replace(":", ""))
    return bytes(
        BOOTP(chaddr=chaddr, xid=xid, flags=flags, ciaddr=ciaddr, giaddr=giaddr) / DHCP(options=opts)
    )


def reply_of(result: Any) -> tuple[codec.Packet, dict[int, bytes]]:
    assert result.reply, f"no reply: {result}"
    packet = codec.decode(result.reply)
    return packet, packet.options


def pxe(arch: int, vendor: bytes | None = None) -> list[Any]:
    return [(93, arch.to_bytes(2, "big")), (60, vendor or pxe_vendor_class(arch)), (97, ZERO_UUID)]


# -- per-firmware answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "loader"),
    [(0, "undionly.kpxe"), (7, "ipxe.efi"), (9, "ipxe.efi")],
)
def test_each_pxe_arch_gets_its_loader_with_next_server_and_uuid_echoed(
    facts: ServerFacts, arch: int, loader: str
) -> None:
    result = answer(codec.decode(request_bytes(options=pxe(arch))), 67, facts, pool())
    reply, options = reply_of(result)
    assert result.kind == "offer" and result.file == loader
    assert options[codec.OPT_BOOTFILE] == loader.encode()
    assert reply.file.rstrip(b"\0") == loader.encode()
    assert reply.siaddr == SERVER.ip.packed and options[codec.OPT_TFTP_SERVER] == b"198.18.7.1"
    assert options[codec.OPT_VENDOR_CLASS] == b"PXEClient"
    assert options[codec.OPT_UUID] == ZERO_UUID
    assert options[codec.OPT_SERVER_ID] == SERVER.ip.packed
    assert options[codec.OPT_SUBNET_MASK] == SERVER.network.netmask.packed
    assert ipaddress.IPv4Address(reply.yiaddr) in SERVER.network
    assert result.delivery is not None and result.delivery.ether == bytes.fromhex("525400000001")
    assert result.delivery.ip == "255.255.255.255"  # the broadcast flag was set


def test_snponly_is_selectable_for_uefi(tmp_path: Path) -> None:
    facts = facts_for(boot_dir(tmp_path, "ipxe.efi", "snponly.efi"), snponly=True)
    result = answer(codec.decode(request_bytes(options=pxe(7))), 67, facts, pool())
    assert result.file == "snponly.efi"


def test_arm64_gets_the_arm64_loader_when_present(tmp_path: Path) -> None:
    facts = facts_for(boot_dir(tmp_path, "ipxe.efi", "arm64-efi/ipxe.efi"))
    assert (
        answer(codec.decode(request_bytes(options=pxe(11))), 67, facts, pool()).file == "arm64-efi/ipxe.efi"
    )


def test_an_arch_without_a_loader_gets_no_offer_and_an_error_naming_the_file(facts: ServerFacts) -> None:
    leases = pool()
    result = answer(codec.decode(request_bytes(options=pxe(11))), 67, facts, leases)
    assert result.kind is None and not result.reply
    assert result.error is not None and "arm64-efi/ipxe.efi is missing" in result.error
    assert not leases.by_mac  # nothing reserved for a PC we cannot boot


def test_uefi_http_boot_gets_a_url_and_httpclient(facts: ServerFacts) -> None:
    options = pxe(16, b"HTTPClient:Arch:00016:UNDI:003001")
    result = answer(codec.decode(request_bytes(options=options)), 67, facts, pool())
    _, opts = reply_of(result)
    assert result.file == f"{HTTP}/loaders/ipxe.efi"
    assert opts[codec.OPT_VENDOR_CLASS] == b"HTTPClient"
    assert codec.OPT_VENDOR not in opts  # PXE vendor options are for PXE, not HTTP boot


@pytest.mark.parametrize(
    "marker", [[(77, b"iPXE")], [(175, b"\xb1\x05\x01\x80\x86\x10\x0e")]], ids=["user-class", "option-175"]
)
def test_ipxe_gets_the_http_script(facts: ServerFacts, marker: list[Any]) -> None:
    request = codec.decode(request_bytes(options=pxe(7) + marker))
    result = answer(request, 67, facts, pool())
    assert result.file == f"{HTTP}/boot.ipxe"
    assert client_fields(request)["ipxe"] is True


def test_a_plain_client_gets_an_address_and_no_boot_file(facts: ServerFacts) -> None:
    result = answer(codec.decode(request_bytes(options=[(60, b"udhcp 1.35.0")])), 67, facts, pool())
    reply, options = reply_of(result)
    assert result.kind == "offer" and result.file is None
    assert codec.OPT_BOOTFILE not in options and reply.siaddr == codec.ZERO_IP


def test_the_planned_hostname_is_handed_out(facts: ServerFacts) -> None:
    _, options = reply_of(answer(codec.decode(request_bytes()), 67, facts, pool()))
    assert options[codec.OPT_HOSTNAME] == b"lab-01"


def test_without_broadcast_flag_the_reply_goes_to_yiaddr_at_chaddr(facts: ServerFacts) -> None:
    result = answer(codec.decode(request_bytes(flags=0)), 67, facts, pool())
    assert result.delivery is not None
    assert result.delivery.ip == result.ip and result.delivery.ether == bytes.fromhex("525400000001")


def test_a_reply_for_a_relay_would_go_to_the_relay() -> None:
    # answer() drops relayed requests (tests/test_dhcp_rivals.py); the delivery rule stands.
    packet = codec.decode(request_bytes(giaddr="198.18.7.254"))
    delivery = delivery_for(packet, SERVER.ip.packed, 67)
    assert delivery.ether is None
    assert (delivery.ip, delivery.port) == ("198.18.7.254", 67)


# -- the request/lease dance -------------------------------------------------------------------


def dora(facts: ServerFacts, leases: LeasePool, mac: str, xid: int = 99) -> str:
    offer = answer(codec.decode(request_bytes(mac, xid=xid, options=pxe(7))), 67, facts, leases)
    assert offer.ip is not None
    req = request_bytes(
        mac,
        "request",
        xid=xid,
        options=[*pxe(7), ("requested_addr", offer.ip), ("server_id", str(SERVER.ip))],
    )
    ack = answer(codec.decode(req), 67, facts, leases)
    assert ack.kind == "ack" and ack.ip == offer.ip, ack
    return offer.ip


def test_100_macs_with_one_uuid_and_one_xid_get_100_distinct_addresses_and_keep_them(
    facts: ServerFacts,
) -> None:
    leases = pool()
    macs = [f"52:54:00:12:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(100)]
    # All DISCOVERs first (a room powering on), then all REQUESTs.
    offers = [answer(codec.decode(request_bytes(m, xid=1, options=pxe(7))), 67, facts, leases) for m in macs]
    assert len({o.ip for o in offers}) == 100
    acks = [
        answer(
            codec.decode(
                request_bytes(
                    m,
                    "request",
                    xid=1,
                    options=[*pxe(7), ("requested_addr", o.ip), ("server_id", "198.18.7.1")],
                )
            ),
            67,
            facts,
            leases,
        )
        for m, o in zip(macs, offers, strict=True)
    ]
    assert [a.kind for a in acks] == ["ack"] * 100
    assert [a.ip for a in acks] == [o.ip for o in offers]
    assert dora(facts, leases, macs[42]) == offers[42].ip


def test_a_request_for_another_macs_address_is_naked_and_for_another_server_is_ignored(
    facts: ServerFacts,
) -> None:
    leases = pool()
    taken = dora(facts, leases, "52:54:00:00:00:0a")
    thief = request_bytes("52:54:00:00:00:0b", "request", options=[("requested_addr", taken)])
    result = answer(codec.decode(thief), 67, facts, leases)
    assert result.kind == "nak" and result.note is not None and "leased to 52:54:00:00:00:0a" in result.note
    other = request_bytes(
        "52:54:00:00:00:0c", "request", options=[("requested_addr", taken), ("server_id", "198.18.7.9")]
    )
    assert answer(codec.decode(other), 67, facts, leases).kind is None


def test_init_reboot_for_an_address_we_never_gave_is_left_alone(facts: ServerFacts) -> None:
    req = request_bytes("52:54:00:00:00:0d", "request", options=[("requested_addr", "198.18.7.20")])
    assert answer(codec.decode(req), 67, facts, pool()).kind is None
    wrong_net = request_bytes("52:54:00:00:00:0d", "request", options=[("requested_addr", "10.1.2.3")])
    assert answer(codec.decode(wrong_net), 67, facts, pool()).kind == "nak"


def test_an_expired_offer_frees_its_address_for_others() -> None:
    now = [1000.0]
    leases = LeasePool(
        ipaddress.IPv4Address("198.18.7.10"),
        ipaddress.IPv4Address("198.18.7.10"),
        offer_seconds=60,
        clock=lambda: now[0],
    )
    assert leases.offer("52:54:00:00:00:01") is not None
    assert leases.offer("52:54:00:00:00:02") is None  # reserved for the first MAC
    now[0] += 61
    assert leases.offer("52:54:00:00:00:02") == int(ipaddress.IPv4Address("198.18.7.10"))


def test_leases_survive_a_restart(facts: ServerFacts) -> None:
    leases = pool()
    ip = dora(facts, leases, "52:54:00:00:00:31")
    again = pool()
    assert again.load_document(leases.to_document()) == 1
    assert dora(facts, again, "52:54:00:00:00:31") == ip


def test_default_range_avoids_the_low_addresses() -> None:
    first, last = default_range(SERVER.network, SERVER.ip)
    assert (str(first), str(last)) == ("198.18.7.100", "198.18.7.254")


# -- proxy mode --------------------------------------------------------------------------------


def test_proxy_mode_answers_pxe_with_no_address_and_ignores_others(tmp_path: Path) -> None:
    facts = facts_for(boot_dir(tmp_path, "ipxe.efi", "undionly.kpxe"), mode="proxy")
    result = answer(codec.decode(request_bytes(options=pxe(7))), 67, facts, None)
    reply, options = reply_of(result)
    assert result.kind == "offer" and reply.yiaddr == codec.ZERO_IP and result.file == "ipxe.efi"
    assert (
        options[codec.OPT_VENDOR_CLASS] == b"PXEClient" and options[codec.OPT_VENDOR] == b"\x06\x01\x08\xff"
    )
    assert codec.OPT_LEASE_TIME not in options
    plain = answer(codec.decode(request_bytes(options=[(60, b"udhcp 1.35.0")])), 67, facts, None)
    assert plain.kind is None and not plain.reply
    on_4011 = request_bytes(message="request", options=pxe(7), ciaddr="198.18.7.77")
    ack = answer(codec.decode(on_4011), 4011, facts, None)
    assert ack.kind == "ack" and ack.file == "ipxe.efi"
    assert ack.delivery is not None and ack.delivery.port == 0  # back to where it came from
    to_rival = request_bytes(message="request", options=[*pxe(7), ("server_id", "198.18.7.2")])
    assert answer(codec.decode(to_rival), 67, facts, None).kind is None


# -- bad input ---------------------------------------------------------------------------------

GOOD = request_bytes(options=pxe(7))
OPTIONS_AT = codec.HEADER_LEN + 4


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (GOOD[:100], "truncated packet"),
        (GOOD[:OPTIONS_AT], "truncated packet"),
        (GOOD[: codec.HEADER_LEN] + b"\x63\x82\x53\x64" + GOOD[OPTIONS_AT:], "bad magic cookie"),
        (GOOD[:OPTIONS_AT] + b"\x35\x01\x01\x3c\x40abc", "option runs past the end"),
        (GOOD[:OPTIONS_AT] + b"\x35\x01\x01\x35\x01\x01\xff", "duplicate option"),
        (GOOD[:OPTIONS_AT] + b"\x35\x01\x01\x34\x01\x03\xff", "option overload"),
        (GOOD[:OPTIONS_AT] + b"\x35\x01\x01", "no end option"),
        (GOOD[:OPTIONS_AT] + b"\x35\x01\x63\xff", "bad message type"),
        (GOOD[:2] + b"\x11" + GOOD[3:], "bad hlen"),
        (GOOD[:1] + b"\x06" + GOOD[2:], "not ethernet"),
        (GOOD + b"\x00" * 5000, "packet too large"),
    ],
)
def test_malformed_packets_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(codec.DecodeError) as caught:
        codec.decode(data)
    assert caught.value.reason == reason


def test_errors_are_counted_and_rate_limited() -> None:
    counter = ErrorCounter(interval=60)
    due = [counter.count("bad magic cookie") for _ in range(1000)]
    assert due[0] == 1 and due[1:] == [None] * 999
    assert counter.counts == {"bad magic cookie": 1000} and counter.total == 1000


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[: max(cut, 0)] if cut < len(out) else out)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=700),
        st.builds(
            mutate,
            st.just(GOOD),
            st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=12),
            st.integers(200, 600),
        ),
        st.builds(lambda opts: GOOD[:OPTIONS_AT] + opts, st.binary(max_size=400)),
    )
)
def test_fuzzed_packets_never_crash_the_codec_or_the_policy(data: bytes) -> None:
    facts = FUZZ_FACTS
    try:
        packet = codec.decode(data)
    except codec.DecodeError as exc:
        assert exc.reason
        return
    client_fields(packet)
    result = answer(packet, 67, facts, FUZZ_POOL)
    if result.reply:
        codec.decode(result.reply)


FUZZ_FACTS: ServerFacts
FUZZ_POOL = pool()


@pytest.fixture(autouse=True, scope="module")
def _fuzz_facts(tmp_path_factory: pytest.TempPathFactory) -> None:
    global FUZZ_FACTS
    FUZZ_FACTS = facts_for(boot_dir(tmp_path_factory.mktemp("fuzz"), "undionly.kpxe", "ipxe.efi"))


def test_after_the_fuzz_a_valid_discover_is_still_answered(facts: ServerFacts) -> None:
    result = answer(codec.decode(GOOD), 67, facts, FUZZ_POOL)
    assert result.kind == "offer" and result.file == "ipxe.efi"


def test_a_declined_address_is_never_offered_again(facts: ServerFacts) -> None:
    leases = pool()
    mac = "52:54:00:00:00:51"
    ip = dora(facts, leases, mac)
    decline = request_bytes(mac, "decline", options=[("requested_addr", ip), ("server_id", "198.18.7.1")])
    assert answer(codec.decode(decline), 67, facts, leases).kind is None
    again = answer(codec.decode(request_bytes(mac, options=pxe(7))), 67, facts, leases)
    assert again.ip is not None and again.ip != ip
    assert all(
        answer(codec.decode(request_bytes(f"52:54:00:00:01:{i:02x}")), 67, facts, leases).ip != ip
        for i in range(160)
    )


def test_proxy_offers_to_ipxe_say_pxeclient_without_pxe_menus(tmp_path: Path) -> None:
    # iPXE ignores an address-less offer without option 60 PXEClient (seen with a real iPXE ROM).
    facts = facts_for(boot_dir(tmp_path, "undionly.kpxe"), mode="proxy")
    result = answer(codec.decode(request_bytes(options=[*pxe(0), (77, b"iPXE")])), 67, facts, None)
    _, options = reply_of(result)
    assert result.file == f"{HTTP}/boot.ipxe"
    assert options[codec.OPT_VENDOR_CLASS] == b"PXEClient" and codec.OPT_VENDOR not in options
