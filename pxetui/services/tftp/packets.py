"""Wire format: tftpy's packet classes, wrapped so callers get typed results and clear errors."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import (
    TftpPacketACK,
    TftpPacketDAT,
    TftpPacketERR,
    TftpPacketOACK,
    TftpPacketRRQ,
    TftpPacketWRQ,
)

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6

# RFC 1350 / 2347 error codes.
ERR_UNDEFINED = 0
ERR_NOT_FOUND = 1
ERR_ACCESS = 2
ERR_ILLEGAL = 4
ERR_UNKNOWN_TID = 5
ERR_OPTIONS = 8  # also what firmware sends to end its tsize probe ("User aborted")

_factory = TftpPacketFactory()


class MalformedPacket(ValueError):
    """A datagram that is not a TFTP packet we can decode."""


@dataclass(frozen=True, slots=True)
class Request:
    write: bool
    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ack:
    block: int


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    message: str


Packet = Request | Ack | Error


def parse(datagram: bytes) -> Packet | None:
    """Decode a datagram with tftpy. None for packet types a server ignores (DATA, OACK).

    tftpy signals bad input with several exception types (its own, struct, unicode, key
    errors); all of them become MalformedPacket so the caller can count and drop.
    """
    if len(datagram) < 4:
        raise MalformedPacket(f"{len(datagram)}-byte datagram is too short for TFTP")
    opcode = int.from_bytes(datagram[:2], "big")
    if opcode == OP_ERROR:
        # tftpy's ERR decoder logs every error packet at ERROR level; a firmware's routine
        # "User aborted" after a size probe is not worth a log line, so decode it here.
        code = int.from_bytes(datagram[2:4], "big")
        message = datagram[4:].split(b"\0", 1)[0].decode("ascii", "replace")
        return Error(code, message)
    if opcode not in (OP_RRQ, OP_WRQ, OP_ACK):
        if opcode in (OP_DATA, OP_OACK):
            return None
        raise MalformedPacket(f"unknown opcode {opcode}")
    try:
        packet = _factory.parse(datagram)
    except Exception as exc:  # tftpy raises TftpException, struct.error, UnicodeDecodeError, ...
        raise MalformedPacket(f"cannot decode opcode {opcode}: {exc}") from exc
    if isinstance(packet, TftpPacketACK):
        return Ack(int(packet.blocknumber))
    if isinstance(packet, TftpPacketRRQ | TftpPacketWRQ):
        options = {str(k).lower(): str(v) for k, v in packet.options.items()}
        return Request(
            write=isinstance(packet, TftpPacketWRQ),
            filename=str(packet.filename),
            mode=str(packet.mode).lower(),
            options=options,
        )
    raise MalformedPacket(f"unexpected packet {type(packet).__name__}")


_HEADER = struct.Struct("!HH")
_ACK = OP_ACK.to_bytes(2, "big")


def data(block: int, payload: bytes) -> bytes:
    """A DATA packet. This is the hot path (hundreds per transfer, thousands per second), so
    it packs the 4-byte header itself instead of going through tftpy's TftpPacketDAT, which
    rebuilds a struct format per call; tests check both give the same bytes."""
    return _HEADER.pack(OP_DATA, block & 0xFFFF) + payload


def data_via_tftpy(block: int, payload: bytes) -> bytes:
    packet = TftpPacketDAT()
    packet.blocknumber = block & 0xFFFF
    packet.data = payload
    return bytes(packet.encode().buffer)


def plain_ack(datagram: bytes) -> int | None:
    """The block of a plain 4-byte ACK (the other hot path), or None for anything else."""
    if len(datagram) == 4 and datagram[:2] == _ACK:
        return int.from_bytes(datagram[2:], "big")
    return None


def oack(options: dict[str, int]) -> bytes:
    packet = TftpPacketOACK()
    packet.options = {name: str(value) for name, value in options.items()}
    return bytes(packet.encode().buffer)


def ack(block: int) -> bytes:
    packet = TftpPacketACK()
    packet.blocknumber = block & 0xFFFF
    return bytes(packet.encode().buffer)


def error(code: int, message: str) -> bytes:
    """An ERROR packet with our own message (tftpy's encoder only knows its fixed texts)."""
    packet = TftpPacketERR()
    packet.errorcode = code
    packet.errmsgs = {code: message.encode("ascii", "replace")[:200]}
    return bytes(packet.encode().buffer)
