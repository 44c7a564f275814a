"""Link-level sockets for DHCP: frames to a client's MAC, and a filtered tap for server replies.

A client without an address cannot receive an ordinary unicast UDP datagram, and an IP
broadcast goes to every PC on the switch (where PCs sharing a transaction id take each
other's offers). Like dnsmasq, replies are therefore sent as Ethernet frames addressed to the
client's own MAC through an AF_PACKET socket; the kernel adds the Ethernet header.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: do not show our own sent frames to this socket
SO_ATTACH_FILTER = 26
BROADCAST_MAC = b"\xff" * 6

# Classic BPF, run on the IP header (SOCK_DGRAM packet sockets start there):
# accept unfragmented UDP whose source port is 67, i.e. what DHCP servers send.
_UDP_SPORT_67 = [
    (0x30, 0, 0, 9),  # ldb [9]            protocol
    (0x15, 0, 6, 17),  # jeq #17            UDP, else drop
    (0x28, 0, 0, 6),  # ldh [6]            flags + fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset #0x1fff   a fragment: drop
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)   IP header length
    (0x48, 0, 0, 0),  # ldh [x+0]          UDP source port
    (0x15, 0, 1, 67),  # jeq #67
    (0x06, 0, 0, 0xFFFF),  # ret #65535     accept
    (0x06, 0, 0, 0),  # ret #0             drop
]


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 + UDP datagram around `payload`, both checksums filled in."""
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp_header = struct.pack("!HHHH", sport, dport, udp_len, 0)
    udp_sum = checksum(pseudo + udp_header + payload) or 0xFFFF
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + struct.pack("!HHHH", sport, dport, udp_len, udp_sum) + payload


def udp_payload(datagram: bytes) -> tuple[bytes, bytes, int, int, bytes] | None:
    """(src ip, dst ip, sport, dport, payload) of an IPv4/UDP datagram, or None."""
    if len(datagram) < 28 or datagram[0] >> 4 != 4 or datagram[9] != socket.IPPROTO_UDP:
        return None
    ihl = (datagram[0] & 0x0F) * 4
    if len(datagram) < ihl + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", datagram, ihl)
    end = min(len(datagram), ihl + length)
    return datagram[12:16], datagram[16:20], sport, dport, datagram[ihl + 8 : end]


def frame_sender(ifname: str) -> socket.socket:
    """A packet socket that sends IPv4 datagrams in frames to a given MAC on `ifname`."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)  # protocol 0: receives nothing
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def send_frame(sock: socket.socket, ifname: str, dst_mac: bytes, datagram: bytes) -> None:
    sock.sendto(datagram, (ifname, ETH_P_IP, 0, 0, dst_mac))


def server_reply_tap(ifname: str) -> socket.socket:
    """A packet socket that sees what DHCP servers send on `ifname` (UDP source port 67),
    except our own frames. Used by the rival probe and the rival watch."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    program = b"".join(struct.pack("=HBBI", *insn) for insn in _UDP_SPORT_67)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(_UDP_SPORT_67), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    # Older kernels lack this option: our own replies carry our server id and are skipped anyway.
    with contextlib.suppress(OSError):
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    # Bound to the protocol only after the filter is in place, so nothing unfiltered queues up.
    sock.bind((ifname, ETH_P_IP))
    sock.setblocking(False)
    return sock
