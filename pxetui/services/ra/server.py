"""Router Advertisements that end iPXE's IPv6 wait, for the PCs pxetui is booting, and no one else.

iPXE configures every interface with DHCPv4 *and* IPv6 router discovery, and goes on only when
both are done. On a lab segment without an IPv6 router the second one times out: ~15 s of every
boot spent waiting (seen on the serial console as `Configuring (net0 ...)..................`).
An RA with router lifetime 0 and no M/O flags and no prefixes finishes it at once and tells the
PC nothing: no address, no route, no DNS. pxetui sends one:

- only as a unicast answer to a Router Solicitation,
- only to a PC that pxetui's own DHCP is network-booting right now (registry stage DHCP, iPXE
  loader or menu),
- never once another router has advertised on the segment (pxetui solicits at start to find
  out): there, that router's answer is the one the PC should get.

The socket is an ICMPv6 raw socket bound to the interface; a kernel without IPv6 on it leaves
the service off (reported in `describe`), never failing the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import time

from pxetui.model.events import Error, RouterAdvertSent, RouterSeen
from pxetui.services.context import ServiceContext
from pxetui.services.receive import waiting_datagrams

ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
OPT_SOURCE_LINK_LAYER = 1
ALL_ROUTERS = "ff02::2"
ICMP6_FILTER = 1  # <netinet/icmp6.h>, IPPROTO_ICMPV6 level
# Type 134, code 0, checksum (the kernel fills it in), hop limit 0 (unspecified), no M/O
# flags, router lifetime 0 (not a default router), reachable time 0, retrans timer 0.
ADVERTISEMENT = struct.pack("!BBHBBHII", ROUTER_ADVERTISEMENT, 0, 0, 0, 0, 0, 0, 0)
SOLICITATION = struct.pack("!BBHI", ROUTER_SOLICITATION, 0, 0, 0)
PER_PC_INTERVAL = 1.0  # seconds: at most one answer a second to one PC


class RouterAdvertService:
    name = "ra"

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self._sock: socket.socket | None = None
        self.state = "off"
        self.answered = 0
        self.ignored = 0
        self.router: str | None = None  # another router seen on the segment: pxetui stays quiet
        self._last_answer: dict[str, float] = {}

    async def start(self) -> None:
        interface = self.context.interface
        try:
            self._sock = _open_socket(interface.name)
        except OSError as exc:
            self.state = f"off: no IPv6 on {interface.name} ({exc.strerror})"
            self._close()
            return
        self.state = "on"
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._drain)
        # Ask once, so that a router on this segment makes itself known before any PC boots.
        with contextlib.suppress(OSError):
            scope = socket.if_nametoindex(interface.name)
            self._sock.sendto(SOLICITATION, (ALL_ROUTERS, 0, 0, scope))

    async def stop(self) -> None:
        self._close()

    def describe(self) -> dict[str, object]:
        return {
            "state": self.state,
            "answered": self.answered,
            "ignored": self.ignored,
            "router": self.router,
        }

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _drain(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for data, address in waiting_datagrams(sock, 2048):
            self._on_message(data, address[0], address[3])

    def _on_message(self, data: bytes, source: str, scope: int) -> None:
        if len(data) < 8:
            self.ignored += 1
            return
        if data[0] == ROUTER_ADVERTISEMENT:
            if self.router is None:
                self.router = source.split("%")[0]
                self.state = f"quiet: router {self.router} advertises here"
                self.context.emit(RouterSeen(router=self.router))
            return
        if data[0] != ROUTER_SOLICITATION:
            return
        mac = solicitation_mac(data, source)
        address = source.split("%")[0]
        if (
            self.router is not None
            or mac is None
            or address == "::"
            or not self.context.booter.is_booting(mac)
        ):
            self.ignored += 1
            return
        now = time.monotonic()
        if now - self._last_answer.get(mac, -PER_PC_INTERVAL) < PER_PC_INTERVAL:
            return
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(ADVERTISEMENT, (address, 0, 0, scope))
        except OSError as exc:
            self.context.emit(Error(mac=mac, service="ra", reason=f"cannot answer {address}: {exc.strerror}"))
            return
        self._last_answer[mac] = now
        self.answered += 1
        self.context.emit(RouterAdvertSent(mac=mac, to=address))


def solicitation_mac(data: bytes, source: str) -> str | None:
    """The PC's MAC: its source link-layer option, else its EUI-64 link-local address."""
    offset = 8
    while offset + 2 <= len(data):
        kind, blocks = data[offset], data[offset + 1]
        if blocks == 0:
            return None  # malformed: a zero-length option would loop forever
        if kind == OPT_SOURCE_LINK_LAYER and blocks == 1 and offset + 8 <= len(data):
            return data[offset + 2 : offset + 8].hex(":")
        offset += blocks * 8
    try:
        packed = ipaddress.IPv6Address(source.split("%")[0]).packed
    except ValueError:
        return None
    if packed[:8] != bytes.fromhex("fe80000000000000") or packed[11:13] != b"\xff\xfe":
        return None
    eui = bytearray(packed[8:11] + packed[13:16])
    eui[0] ^= 0x02
    return bytes(eui).hex(":")


def _open_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        blocked = [0xFFFFFFFF] * 8  # a set bit blocks that ICMPv6 type
        for kind in (ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT):
            blocked[kind >> 5] &= ~(1 << (kind & 31))
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *blocked))
        index = struct.pack("@I", socket.if_nametoindex(ifname))
        group = socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + index
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
        # Hop limit 255: receivers drop neighbour discovery that may have crossed a router.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
