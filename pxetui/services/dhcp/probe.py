"""Find other DHCP servers: DISCOVER like a real client, and describe each server that answers.

A second DHCP server on a shared network breaks everyone's network, so pxetui asks before it
serves: any answer means proxy mode (or a refusal in --mode full). The same decoding serves
the watch that keeps listening while pxetui runs.

The probe behaves like a client (RFC 2131 4.1: retransmit a DISCOVER that got no answer),
because servers are not all quick: dnsmasq pings an address before offering it and answers
about 3 s after the first DISCOVER, Kea and ISC dhcpd can do the same. One DISCOVER and 2 s
missed it. The DISCOVER goes out at PROBE_SENDS (0, 2 and 4 s) and the probe waits
PROBE_SECONDS (7 s) in all, 3 s past the last one: long enough for a ping-checking server to
answer the retransmission. The first answer ends it: one rival settles the mode, and the
watch reports any other later. It is a coroutine; cancelling it (Ctrl-C at start) stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pxetui.boot.grub_proxy import grub_tftp_server
from pxetui.host.mac import mac_from_bytes
from pxetui.model.events import DhcpRival
from pxetui.services.dhcp import codec, rawnet

PROBE_VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"  # so proxyDHCP servers answer too
PROBE_SENDS = (0.0, 2.0, 4.0)  # seconds after the start: the DISCOVER and its retransmissions
PROBE_SECONDS = 7.0  # the whole wait with no answer: the last DISCOVER plus a ping check's 3 s


@dataclass(frozen=True, slots=True)
class Rival:
    server_id: str
    server_mac: str
    message: str  # "offer" / "ack"
    offers_address: bool
    subnet: str | None
    router: str | None
    next_server: str | None
    boot_file: str | None
    grub_server: str | None = None  # the TFTP server upstream GRUB takes from this reply

    def event(
        self,
        mode: str,
        *,
        switched_to: str | None = None,
        reason: str | None = None,
        grub_advice: str | None = None,
    ) -> DhcpRival:
        """The `dhcp.rival` event for this server, seen while pxetui is in `mode`."""
        return DhcpRival(
            mode=mode,
            switched_to=switched_to,
            reason=reason,
            server_id=self.server_id,
            server_mac=self.server_mac,
            message=self.message,
            offers_address=self.offers_address,
            subnet=self.subnet,
            router=self.router,
            next_server=self.next_server,
            boot_file=self.boot_file,
            grub_server=self.grub_server,
            grub_advice=grub_advice,
        )


def rival_from_reply(payload: bytes, source_mac: bytes, ours: bytes | None) -> Rival | None:
    """The server behind an OFFER/ACK, or None when it is ours or not a server reply at all."""
    try:
        packet = codec.decode(payload)
    except codec.DecodeError:
        return None
    if packet.op != codec.BOOTREPLY or packet.message_type not in (codec.OFFER, codec.ACK):
        return None
    server_id = packet.ip_option(codec.OPT_SERVER_ID)
    if server_id is None or server_id == ours:
        return None
    mask = packet.ip_option(codec.OPT_SUBNET_MASK)
    subnet = None
    if packet.yiaddr != codec.ZERO_IP and mask is not None:
        with contextlib.suppress(ValueError):
            net = ipaddress.IPv4Network(f"{codec.ip_text(packet.yiaddr)}/{codec.ip_text(mask)}", strict=False)
            subnet = str(net)
    router = packet.options.get(codec.OPT_ROUTER)
    option_66 = codec.text(packet.options.get(codec.OPT_TFTP_SERVER))
    siaddr = codec.ip_text(packet.siaddr) if packet.siaddr != codec.ZERO_IP else None
    next_server = option_66 or siaddr
    sname = codec.text(packet.sname.split(b"\x00", 1)[0]) if packet.sname.strip(b"\x00") else None
    boot_file = codec.text(packet.options.get(codec.OPT_BOOTFILE))
    if boot_file is None and packet.file.strip(b"\x00"):
        boot_file = codec.text(packet.file.split(b"\x00", 1)[0])
    return Rival(
        server_id=codec.ip_text(server_id),
        server_mac=mac_from_bytes(source_mac),
        message=codec.MESSAGE_NAMES[packet.message_type],
        offers_address=packet.yiaddr != codec.ZERO_IP,
        subnet=subnet,
        router=codec.ip_text(router[:4]) if router and len(router) >= 4 else None,
        next_server=next_server,
        boot_file=boot_file,
        grub_server=grub_tftp_server(siaddr, option_66, sname),
    )


def probe_discover(mac: bytes, xid: int) -> bytes:
    packet = codec.Packet(
        op=codec.BOOTREQUEST,
        htype=codec.HTYPE_ETHERNET,
        hlen=6,
        hops=0,
        xid=xid,
        secs=0,
        flags=codec.BROADCAST_FLAG,
        ciaddr=codec.ZERO_IP,
        yiaddr=codec.ZERO_IP,
        siaddr=codec.ZERO_IP,
        giaddr=codec.ZERO_IP,
        chaddr=mac.ljust(16, b"\x00"),
        sname=b"",
        file=b"",
    )
    options = [
        (codec.OPT_MESSAGE_TYPE, bytes((codec.DISCOVER,))),
        (codec.OPT_PARAMS, bytes((1, 3, 6, 43, 54, 60, 66, 67))),
        (codec.OPT_VENDOR_CLASS, PROBE_VENDOR_CLASS),
        (codec.OPT_ARCH, b"\x00\x00"),
    ]
    return codec.encode(packet, options)


def probe_datagram(mac: bytes, xid: int) -> bytes:
    """The probe's DISCOVER as an IP datagram, broadcast from no address, as a client sends it."""
    return rawnet.ip_udp(codec.ZERO_IP, b"\xff" * 4, 68, 67, probe_discover(mac, xid))


async def ask_servers(
    sender: socket.socket,
    ifname: str,
    mac: bytes,
    answered: Callable[[], bool],
    sends: tuple[float, ...] = PROBE_SENDS,
) -> None:
    """Send the probe's DISCOVER at each of `sends` until `answered()`; the caller's own
    watch hears the answers (proxy mode: what the router tells PCs, see the DHCP service)."""
    loop = asyncio.get_running_loop()
    datagram = probe_datagram(mac, int.from_bytes(os.urandom(4), "big"))
    start = loop.time()
    for offset in sorted(sends):
        await asyncio.sleep(max(0.0, start + offset - loop.time()))
        if answered():
            return
        rawnet.send_frame(sender, ifname, rawnet.BROADCAST_MAC, datagram)


async def probe(
    tap: socket.socket,
    sender: socket.socket,
    ifname: str,
    mac: bytes,
    seconds: float = PROBE_SECONDS,
    ours: bytes | None = None,
    sends: tuple[float, ...] = PROBE_SENDS,
) -> Rival | None:
    """Broadcast a DISCOVER from `mac` at each of `sends` (seconds after the start, those
    before `seconds`) and return the first server that answers within `seconds`, or None."""
    loop = asyncio.get_running_loop()
    xid = int.from_bytes(os.urandom(4), "big")
    datagram = probe_datagram(mac, xid)
    start = loop.time()
    deadline = start + seconds
    due = [start + offset for offset in sorted(sends) if offset < seconds]
    while True:
        now = loop.time()
        if now >= deadline:
            return None
        while due and due[0] <= now:
            rawnet.send_frame(sender, ifname, rawnet.BROADCAST_MAC, datagram)
            due.pop(0)
        wake = min(deadline, due[0]) if due else deadline
        try:
            data, address = await asyncio.wait_for(loop.sock_recvfrom(tap, 4096), timeout=wake - now)
        except TimeoutError:
            continue
        rival = _answer_to(data, address, xid, ours)
        if rival is not None:
            return rival


def _answer_to(data: bytes, address: tuple[object, ...], xid: int, ours: bytes | None) -> Rival | None:
    """The server behind a tapped frame if it answers our DISCOVER `xid`."""
    parts = rawnet.udp_payload(data)
    if parts is None or parts[3] != 68:
        return None
    payload = parts[4]
    if len(payload) < codec.HEADER_LEN or int.from_bytes(payload[4:8], "big") != xid:
        return None
    source_mac = address[4]
    assert isinstance(source_mac, bytes)
    return rival_from_reply(payload, source_mac, ours)
