"""Pure parts of the TFTP service: wire format against tftpy, names, option negotiation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxetui.services.tftp import packets
from pxetui.services.tftp.requests import Refused, catalog_name, negotiate, to_netascii
from pxetui.services.tftp.transfer import (
    INITIAL_RTO,
    MAX_FLOOR,
    MAX_QUICK_RTO,
    MIN_RTO,
    NEEDLESS_FLOOR_FACTOR,
    RetransmitTimeout,
)

CATALOG = {"ipxe.efi": Path("/x/ipxe.efi"), "arm64-efi/ipxe.efi": Path("/x/a")}


@given(st.integers(min_value=0, max_value=200_000), st.binary(max_size=1500))
def test_fast_data_encoder_matches_tftpy(block: int, payload: bytes) -> None:
    assert packets.data(block, payload) == packets.data_via_tftpy(block, payload)


@given(st.sampled_from([b"", b"\x00\x01", b"\x00\x02", b"\x00\x04", b"\x00\x05"]), st.binary(max_size=700))
def test_parse_raises_nothing_but_malformed(prefix: bytes, rest: bytes) -> None:
    try:
        result = packets.parse(prefix + rest)
    except packets.MalformedPacket:
        return
    assert result is None or isinstance(result, packets.Request | packets.Ack | packets.Error)


def test_plain_ack_and_parsed_ack_agree() -> None:
    wire = packets.ack(65535)
    assert packets.plain_ack(wire) == 65535
    assert packets.parse(wire) == packets.Ack(65535)
    assert packets.plain_ack(b"\x00\x04\x00\x01extra") is None  # tftpy's parser handles those


def test_rrq_roundtrip_lowercases_options_and_mode() -> None:
    parsed = packets.parse(b"\x00\x01ipxe.efi\x00OCTET\x00BLKSIZE\x001468\x00tsize\x000\x00")
    assert parsed == packets.Request(False, "ipxe.efi", "octet", {"blksize": "1468", "tsize": "0"})


def test_error_packet_carries_our_message() -> None:
    wire = packets.error(2, "write refused")
    assert wire == b"\x00\x05\x00\x02write refused\x00"
    assert packets.parse(wire) == packets.Error(2, "write refused")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../ipxe.efi", 2),
        ("arm64-efi/../ipxe.efi", 2),
        ("a\\b", 2),
        ("ipxe.efi\x00", 2),
        ("ipxe\x1b.efi", 2),
        ("", 4),
        ("nothere", 1),
        ("/etc/passwd", 1),
    ],
)
def test_refused_names(name: str, code: int) -> None:
    with pytest.raises(Refused) as info:
        catalog_name(name, CATALOG)
    assert info.value.code == code


def test_leading_slashes_are_stripped() -> None:
    assert catalog_name("/ipxe.efi", CATALOG) == "ipxe.efi"
    assert catalog_name("//arm64-efi/ipxe.efi", CATALOG) == "arm64-efi/ipxe.efi"


def test_negotiation() -> None:
    got = negotiate({"tsize": "0", "blksize": "1468", "windowsize": "4", "timeout": "1"}, 850_528, 1500)
    assert (got.blksize, got.windowsize) == (1468, 4)
    assert got.oack == {"blksize": 1468, "tsize": 850_528, "windowsize": 4}
    assert negotiate({"blksize": "65464"}, 10, 9000).oack == {"blksize": 8968}
    assert negotiate({"windowsize": "65535"}, 10, 1500).windowsize == 64
    bad = negotiate({"blksize": "4", "windowsize": "0", "tsize": "-1", "x": "y"}, 10, 1500)
    assert bad.oack == {} and (bad.blksize, bad.windowsize) == (512, 1)


def test_netascii_conversion() -> None:
    assert to_netascii(b"a\nb\rc\r\n") == b"a\r\nb\r\0c\r\0\r\n"


def test_retransmit_timeout_starts_long_then_follows_the_rtt() -> None:
    timeout = RetransmitTimeout()
    assert timeout.rto == INITIAL_RTO  # nothing measured yet: a client's first answer is slow
    timeout.sample(0.0002)
    assert timeout.rto == MIN_RTO  # a LAN round trip: the floor
    timeout.sample(0.030)  # the client was held up once
    assert timeout.rto > 0.030  # the variance term widens the timer beyond that delay


def test_retransmit_timeout_backs_off_until_a_clean_sample() -> None:
    timeout = RetransmitTimeout()
    timeout.sample(0.0002)
    timeout.timed_out()
    timeout.timed_out()
    assert timeout.rto == pytest.approx(4 * MIN_RTO)
    for _ in range(20):
        timeout.timed_out()
    assert timeout.rto == MAX_QUICK_RTO  # the quick timer stays bounded
    timeout.sample(0.0002)
    assert timeout.rto == MIN_RTO


@given(st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=50))
def test_retransmit_timeout_stays_between_floor_and_cap(samples: list[float]) -> None:
    timeout = RetransmitTimeout()
    for rtt in samples:
        timeout.sample(rtt)
        assert MIN_RTO <= timeout.rto <= MAX_QUICK_RTO


def test_a_needless_resend_raises_the_floor_to_the_clients_real_delay() -> None:
    timeout = RetransmitTimeout()
    for _ in range(50):
        timeout.sample(0.0002)
    timeout.resend_was_needless(0.060)  # the ACK came after 60 ms: slow, not lost
    for _ in range(200):
        timeout.sample(0.0002)  # fast again: the variance term forgets, the floor does not
    assert timeout.needless == 1
    assert timeout.rto == pytest.approx(NEEDLESS_FLOOR_FACTOR * 0.060)
    timeout.resend_was_needless(10.0)
    assert timeout.floor == MAX_FLOOR
