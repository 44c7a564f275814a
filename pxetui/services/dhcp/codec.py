"""A small `struct` codec for BOOTP/DHCP packets (RFC 2131/2132), strict on what it accepts.

Scapy is far too slow for the server's hot path (thousands of packets a second), so requests
are parsed and replies built here. Parsing rejects anything malformed with a DecodeError whose
`reason` is a short fixed string: the service counts drops per reason.
"""

from __future__ import annotations

import socket
import struct
import uuid
from dataclasses import dataclass, field

BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHERNET = 1
MAGIC = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
MESSAGE_NAMES = {
    DISCOVER: "discover",
    OFFER: "offer",
    REQUEST: "request",
    DECLINE: "decline",
    ACK: "ack",
    NAK: "nak",
    RELEASE: "release",
    INFORM: "inform",
}

OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_VENDOR = 43
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMS = 55
OPT_MESSAGE = 56
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61
OPT_TFTP_SERVER = 66
OPT_BOOTFILE = 67
OPT_USER_CLASS = 77
OPT_ARCH = 93
OPT_NDI = 94
OPT_UUID = 97
OPT_IPXE_ENCAP = 175
OPT_END = 255

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_LEN = _HEADER.size  # 236
MIN_LEN = HEADER_LEN + 4 + 1  # header + magic cookie + at least the end option
MAX_LEN = 4096  # larger than any sane DHCP message (jumbo frames included)
ZERO_IP = b"\x00\x00\x00\x00"


class DecodeError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Packet:
    op: int
    htype: int
    hlen: int
    hops: int
    xid: int
    secs: int
    flags: int
    ciaddr: bytes
    yiaddr: bytes
    siaddr: bytes
    giaddr: bytes
    chaddr: bytes  # the full 16-byte field; `mac_bytes` is the hardware address
    sname: bytes
    file: bytes
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def mac_bytes(self) -> bytes:
        return self.chaddr[: self.hlen]

    @property
    def mac(self) -> str:
        return self.chaddr[: self.hlen].hex(":")

    @property
    def message_type(self) -> int:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value else 0

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    def ip_option(self, code: int) -> bytes | None:
        value = self.options.get(code)
        return value if value is not None and len(value) == 4 else None


def decode(data: bytes) -> Packet:
    """Parse one DHCP message; DecodeError(reason) for anything we will not answer."""
    size = len(data)
    if size < MIN_LEN:
        raise DecodeError("truncated packet")
    if size > MAX_LEN:
        raise DecodeError("packet too large")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file) = (
        _HEADER.unpack_from(data)
    )
    if data[HEADER_LEN : HEADER_LEN + 4] != MAGIC:
        raise DecodeError("bad magic cookie")
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise DecodeError("bad op")
    if htype != HTYPE_ETHERNET:
        raise DecodeError("not ethernet")
    if hlen != 6:
        raise DecodeError("bad hlen")
    options: dict[int, bytes] = {}
    pos = HEADER_LEN + 4
    ended = False
    while pos < size:
        code = data[pos]
        if code == OPT_PAD:
            pos += 1
            continue
        if code == OPT_END:
            ended = True
            break
        if pos + 1 >= size:
            raise DecodeError("option runs past the end")
        length = data[pos + 1]
        end = pos + 2 + length
        if end > size:
            raise DecodeError("option runs past the end")
        if code in options:
            raise DecodeError("duplicate option")
        options[code] = data[pos + 2 : end]
        pos = end
    if not ended:
        raise DecodeError("no end option")
    if OPT_OVERLOAD in options:
        # Options continued in sname/file: legal, but no PXE firmware does it and it is a
        # classic parser trap; we decline such packets rather than half-read them.
        raise DecodeError("option overload")
    mtype = options.get(OPT_MESSAGE_TYPE)
    if mtype is not None and (len(mtype) != 1 or mtype[0] not in MESSAGE_NAMES):
        raise DecodeError("bad message type")
    return Packet(
        op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file, options
    )


def encode(packet: Packet, option_order: list[tuple[int, bytes]] | None = None) -> bytes:
    """Serialise `packet` (options in insertion order, or `option_order`), padded to 300 bytes."""
    parts = [
        _HEADER.pack(
            packet.op,
            packet.htype,
            packet.hlen,
            packet.hops,
            packet.xid,
            packet.secs,
            packet.flags,
            packet.ciaddr,
            packet.yiaddr,
            packet.siaddr,
            packet.giaddr,
            packet.chaddr,
            packet.sname,
            packet.file,
        ),
        MAGIC,
    ]
    for code, value in option_order if option_order is not None else packet.options.items():
        # Values longer than 255 bytes are split into consecutive instances (RFC 3396).
        for start in range(0, max(len(value), 1), 255):
            chunk = value[start : start + 255]
            parts.append(bytes((code, len(chunk))) + chunk)
    parts.append(b"\xff")
    out = b"".join(parts)
    if len(out) < 300:  # some BOOTP-era firmware ignores shorter replies
        out += b"\x00" * (300 - len(out))
    return out


# -- client facts, as reported in events -------------------------------------------------------


def client_arch(packet: Packet) -> int | None:
    """Option 93, else the `Arch:NNNNN` in a PXEClient vendor class, else None (not PXE)."""
    raw = packet.options.get(OPT_ARCH)
    if raw is not None and len(raw) >= 2:
        return int.from_bytes(raw[:2], "big")
    vendor = packet.options.get(OPT_VENDOR_CLASS, b"")
    if vendor.startswith((b"PXEClient:Arch:", b"HTTPClient:Arch:")):
        digits = vendor.split(b":")[2][:5]
        if digits.isdigit():
            return int(digits)
    return None


# C0, DEL and C1 controls: a client's option 60 of "\x1b]0;owned\x07\x1b[2J" retitled and cleared
# the operator's terminal in headless text mode. NUL is padding some firmware adds: dropped.
_CONTROLS = {code: "\ufffd" for code in (*range(0x20), *range(0x7F, 0xA0))} | {0: None}


def text(raw: bytes | None) -> str | None:
    """A client's text option as shown to the operator: ASCII, every control character replaced.

    Each control becomes U+FFFD (as non-ASCII bytes already do), so the field stays readable
    and one bad byte does not hide the rest of it.
    """
    if raw is None:
        return None
    decoded = raw.decode("ascii", "replace")
    return decoded if decoded.isprintable() else decoded.translate(_CONTROLS)


def client_uuid(packet: Packet) -> str | None:
    raw = packet.options.get(OPT_UUID)
    if raw is None or len(raw) != 17 or raw[0] != 0:
        return None
    # PXE sends the SMBIOS UUID with its first three fields little-endian.
    return str(uuid.UUID(bytes_le=raw[1:]))


def user_class(packet: Packet) -> str | None:
    return text(packet.options.get(OPT_USER_CLASS))


def is_ipxe(packet: Packet) -> bool:
    return OPT_IPXE_ENCAP in packet.options or b"iPXE" in packet.options.get(OPT_USER_CLASS, b"")


def ip_text(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def is_netboot(packet: Packet) -> bool:
    """A network-boot client (PXE / HTTP-boot firmware, or iPXE), not an OS's own DHCP.

    The same rule as the registry's (an architecture, option 93, counts: only boot firmware
    sends it), so whatever DHCP lets through as a new machine is one the registry lists.
    """
    if is_ipxe(packet) or OPT_ARCH in packet.options:
        return True
    return packet.options.get(OPT_VENDOR_CLASS, b"").startswith((b"PXEClient", b"HTTPClient"))
