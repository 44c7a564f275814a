"""The DHCP policy as a pure function: one decoded request in, at most one reply out.

No sockets and no events here: `answer()` returns what to send (and how), which event to
report and any error, so every firmware case can be unit-tested and fuzzed directly.

Which loader a UEFI PC gets (`--secure-boot`, `chain_kind`): `ipxe` always iPXE; `signed`
the Secure Boot chain (shim, then GRUB, then a signed kernel) wherever one exists for the
PC's CPU; `auto` iPXE first, and the signed chain for a PC whose firmware fetched iPXE and
came back without iPXE ever speaking (it refused the unsigned loader: Secure Boot), asked of
the Booter per request. Where no iPXE exists for a CPU (Debian ships no arm64 iPXE) the
signed chain is the only way, in every mode but `ipxe`. The chain is the assigned profile's
own shim + GRUB (`secure_boot: {vendor, shim, grub}`), else the one of the vendor it names
(`secure_boot: VENDOR`), else the default one (`BootFiles.chain_for`, asked through
`signed_loader`).

UEFI HTTP Boot clients (vendor class `HTTPClient`, arch 16/19) get `HTTPClient` back in
option 60 and a whole `http://` URL as the boot file, in full and proxy mode: what EDK II's
HttpBootDxe needs to count an offer (checked with OVMF, tests/e2e/test_http_boot.py). One
that gets the signed chain, and whose GRUB reads TFTP only, gets the chain as a disk image
(`/ramdisk/SHIM.img`, boot/ramdisk.py): in `auto` a PC whose PXE refused iPXE thus boots
the signed chain on its firmware's next option, HTTPv4, in the same power-on.

When the operator gave iPXE 2.x's own signed build (`ipxe-shimx64.efi` + its signed
`ipxe.efi`, `bootfiles.IpxeShim`), a PXE client that gets the signed chain gets that shim
instead of shim + GRUB: the same iPXE path as every other PC (HTTP, menu, progress), the
profile's kernel verified by its distribution's shim (`shim` in the boot script). Not for
UEFI HTTP Boot: there the signed iPXE finds no `autoexec.ipxe` (it reads it through the PXE
firmware's TFTP), so it could not say it runs signed and the shim line would be missing.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pxetui.boot import ramdisk
from pxetui.boot.firmware import IPXE, SIGNED, firmware_label, is_http_boot
from pxetui.services.dhcp import codec
from pxetui.services.dhcp.codec import Packet
from pxetui.services.dhcp.leases import LeasePool

SERVER_PORT = 67
CLIENT_PORT = 68
PROXY_PORT = 4011
IPXE_SCRIPT = "/boot.ipxe"
HTTP_LOADERS = "/loaders/"
# PXE vendor options (option 43): PXE_DISCOVERY_CONTROL = 8 tells the firmware to take the boot
# file from this packet instead of doing boot-server discovery; 255 ends the sub-options.
PXE_VENDOR_OPTIONS = b"\x06\x01\x08\xff"
NOT_PXE = "not a PXE client"
# A relay (giaddr set) forwards from another subnet: the pool, mask and boot addresses here are
# for this segment only, so such a request gets no answer at all (dropped and counted). The one
# subnet pxetui is configured for is its interface's: a relay whose giaddr lies on it (a relay
# agent on this very segment; perfdhcp always sends as one) is answered from the pool in full
# mode, through the relay, as Kea and dnsmasq pick the subnet by giaddr.
RELAYED = "relayed request (giaddr from another subnet): pxetui serves only the segment of its own interface"
RELAYED_NOTE = "relayed"


@dataclass(frozen=True)
class ServerFacts:
    mode: str  # "full" or "proxy"
    server_ip: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    http_base: str
    loader_for_arch: Callable[[int], str | None]
    expected_loader: Callable[[int], str]  # the file that would serve `arch`, to name it in errors
    planned_hostname: Callable[[str], str | None] = lambda mac: None
    boot_dir: str = ""
    secure_boot: str = IPXE  # auto | signed | ipxe (see the module docstring)
    # The signed chain's shim for (mac, arch), and whether its GRUB reads HTTP; None: no chain.
    signed_loader: Callable[[str, int], tuple[str, bool] | None] = lambda mac, arch: None
    needs_signed: Callable[[str], bool] = lambda mac: False  # the PC's firmware refused iPXE
    # iPXE's signed shim for an arch (the operator's --boot-files), preferred as the signed chain.
    ipxe_shim: Callable[[int], str | None] = lambda arch: None
    # Full mode: options 3 and 6, only when the operator names them (--router, --dns). Without
    # a router no default route is handed out: the laptop does not forward, and the installers
    # are told to go on without one.
    router: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()

    @functools.cached_property
    def network_options(self) -> list[tuple[int, bytes]]:
        options: list[tuple[int, bytes]] = []
        if self.router is not None:
            options.append((codec.OPT_ROUTER, self.router.packed))
        if self.dns:
            options.append((codec.OPT_DNS, b"".join(a.packed for a in self.dns)))
        return options

    # Derived once: the hot path builds thousands of replies a second from these.
    @functools.cached_property
    def server_packed(self) -> bytes:
        return self.server_ip.packed

    @functools.cached_property
    def server_text(self) -> bytes:
        return str(self.server_ip).encode()

    @functools.cached_property
    def netmask_packed(self) -> bytes:
        return self.network.netmask.packed


@dataclass(frozen=True, slots=True)
class BootChoice:
    file: str | None  # a TFTP name or an http:// URL; None for a client that is not booting
    vendor_class: bytes | None  # option 60 in the reply (PXEClient / HTTPClient)
    error: str | None = None  # no loader for this client's architecture
    pxe_vendor_options: bool = True  # option 43 for PXE firmware (not for iPXE or HTTP boot)


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the reply goes: `ether` set means a raw frame to that MAC, else UDP to ip:port."""

    ip: str
    port: int
    ether: bytes | None


@dataclass(frozen=True, slots=True)
class Decline:
    ip: str | None  # the address the client declined (option 50)
    accepted: bool  # taken out of the pool for this session
    reason: str  # what pxetui did, or why it ignored the decline


@dataclass(slots=True)
class Answer:
    kind: str | None = None  # "offer" / "ack" / "nak"; None: say nothing
    reply: bytes = b""
    delivery: Delivery | None = None
    ip: str | None = None
    file: str | None = None
    error: str | None = None  # reported as an `error` event (with the client's MAC)
    note: str | None = None  # why nothing was sent, for the request's event
    decline: Decline | None = None  # what became of a DHCPDECLINE (a `dhcp.decline` event)


def chain_kind(mode: str, refused_ipxe: bool, has_ipxe: bool, has_signed: bool) -> str | None:
    """`ipxe` or `signed`: which chain a UEFI PC gets (None: nothing serves it)."""
    if mode == IPXE:
        return IPXE if has_ipxe else None
    wants_signed = mode == SIGNED or refused_ipxe or not has_ipxe
    if wants_signed and has_signed:
        return SIGNED
    return IPXE if has_ipxe else None


def _loader_choice(packet: Packet, arch: int, http_boot: bool, facts: ServerFacts) -> BootChoice:
    """The loader file for a PXE / HTTP boot firmware: iPXE, or the signed chain's shim."""
    ipxe = facts.loader_for_arch(arch)
    signed = facts.signed_loader(packet.mac, arch) if facts.secure_boot != IPXE else None
    ipxe_shim = facts.ipxe_shim(arch) if facts.secure_boot != IPXE and not http_boot else None
    has_signed = signed is not None or ipxe_shim is not None
    refused = facts.secure_boot == "auto" and has_signed and facts.needs_signed(packet.mac)
    kind = chain_kind(facts.secure_boot, refused, ipxe is not None, has_signed)
    if kind == SIGNED and ipxe_shim is not None:
        return BootChoice(ipxe_shim, b"PXEClient")  # iPXE's signed build before shim + GRUB
    if kind == SIGNED and signed is not None and http_boot and not signed[1]:
        # Shim served by URL would load that GRUB by HTTP, and it reads TFTP only. The chain
        # goes as a disk image instead: the firmware boots shim from it as a RAM disk, shim its
        # GRUB beside it, and that GRUB reads TFTP (boot/ramdisk.py).
        return BootChoice(facts.http_base + ramdisk.url_path(signed[0]), b"HTTPClient")
    if kind is None:
        missing = facts.expected_loader(arch)
        where = f" in {facts.boot_dir}" if facts.boot_dir else ""
        return BootChoice(
            None,
            None,
            error=f"no boot loader for arch {arch} ({firmware_label(arch)}): {missing} is missing{where}",
        )
    loader = signed[0] if kind == SIGNED and signed is not None else ipxe
    assert loader is not None
    if http_boot:
        return BootChoice(facts.http_base + HTTP_LOADERS + loader, b"HTTPClient")
    return BootChoice(loader, b"PXEClient")


def boot_choice(packet: Packet, facts: ServerFacts) -> BootChoice:
    vendor = packet.options.get(codec.OPT_VENDOR_CLASS, b"")
    arch = codec.client_arch(packet)
    if codec.is_ipxe(packet):
        # iPXE only takes an address-less (proxyDHCP) offer that says PXEClient.
        return BootChoice(
            facts.http_base + IPXE_SCRIPT,
            b"PXEClient" if vendor.startswith(b"PXEClient") else None,
            pxe_vendor_options=False,
        )
    http_boot = vendor.startswith(b"HTTPClient")
    if not http_boot and not vendor.startswith(b"PXEClient") and arch is None:
        return BootChoice(None, None)  # an ordinary DHCP client: an address, no boot file
    if arch is None:
        arch = 0
    return _loader_choice(packet, arch, http_boot or is_http_boot(arch), facts)


def answer(packet: Packet, port: int, facts: ServerFacts, pool: LeasePool | None) -> Answer:
    """Decide the reply to `packet`, which arrived on UDP `port` (67, or 4011 in proxy mode)."""
    mtype = packet.message_type
    if packet.giaddr != codec.ZERO_IP and not _relayed_from_here(packet, facts):
        return Answer(error=RELAYED, note=RELAYED_NOTE)
    if facts.mode == "proxy":
        if pool is not None and _renews_a_lease(packet, mtype, pool):
            return _answer_request(packet, facts, pool)
        return _answer_proxy(packet, port, mtype, facts)
    assert pool is not None, "full mode needs a lease pool"
    if mtype == codec.DISCOVER:
        return _answer_discover(packet, facts, pool)
    if mtype == codec.REQUEST:
        return _answer_request(packet, facts, pool)
    if mtype == codec.RELEASE:
        pool.release(packet.mac, int.from_bytes(packet.ciaddr, "big"))
        return Answer(note="release")
    if mtype == codec.DECLINE:
        return _answer_decline(packet, facts, pool)
    return Answer(note="ignored message type")


def _relayed_from_here(packet: Packet, facts: ServerFacts) -> bool:
    """A relay agent on this segment (giaddr in the interface's subnet), in full mode."""
    if facts.mode != "full":
        return False
    return ipaddress.IPv4Address(packet.giaddr) in facts.network


def _renews_a_lease(packet: Packet, mtype: int, pool: LeasePool) -> bool:
    """A RENEWING / REBINDING client (ciaddr set, unicast or broadcast) whose lease pxetui gave.

    After a switch to proxyDHCP (a rival appeared), the pool kept the leases given in full
    mode: those clients are still answered from it while their lease runs (the address is
    theirs; a NAK or silence would take it from a PC in the middle of an install). New
    clients, and anyone asking for an address without holding it, get none.
    """
    if mtype != codec.REQUEST or packet.ciaddr == codec.ZERO_IP:
        return False
    return pool.holds(packet.mac, int.from_bytes(packet.ciaddr, "big"))


def _requested(packet: Packet) -> bytes | None:
    return packet.ip_option(codec.OPT_REQUESTED_IP)


def _answer_decline(packet: Packet, facts: ServerFacts, pool: LeasePool) -> Answer:
    """RFC 2131 4.3.3: the client found `requested` in use; take it out of the pool, if it may.

    Like Kea and dnsmasq, only a decline naming this server (when it names one) for the
    address bound to that client counts; the pool says which.
    """
    declined = _requested(packet)
    if declined is None:
        return Answer(note="decline", decline=Decline(None, False, "DECLINE names no address"))
    ip = codec.ip_text(declined)
    server_id = packet.ip_option(codec.OPT_SERVER_ID)
    if server_id is not None and server_id != facts.server_packed:
        return Answer(note="decline", decline=Decline(ip, False, "for another server"))
    refused = pool.decline(packet.mac, int.from_bytes(declined, "big"))
    if refused is not None:
        return Answer(note="decline", decline=Decline(ip, False, refused))
    return Answer(note="decline", decline=Decline(ip, True, "address in use: not offered again"))


def _answer_discover(packet: Packet, facts: ServerFacts, pool: LeasePool) -> Answer:
    boot = boot_choice(packet, facts)
    if boot.error is not None:
        return Answer(error=boot.error, note="no boot loader")
    ip = pool.offer(packet.mac)
    if ip is None:
        return Answer(error=f"address pool full ({pool.size} addresses): widen --range", note="pool full")
    return _reply(packet, codec.OFFER, ip.to_bytes(4, "big"), boot, facts, pool, SERVER_PORT)


def _answer_request(packet: Packet, facts: ServerFacts, pool: LeasePool) -> Answer:
    server_id = packet.ip_option(codec.OPT_SERVER_ID)
    if server_id is not None and server_id != facts.server_packed:
        pool.forget_offer(packet.mac)
        return Answer(note="for another server")
    wanted = _requested(packet) or (packet.ciaddr if packet.ciaddr != codec.ZERO_IP else None)
    if wanted is None:
        return Answer(error="REQUEST names no address", note="no address")
    wanted_ip = ipaddress.IPv4Address(wanted)
    boot = boot_choice(packet, facts)
    if wanted_ip not in facts.network:
        return _nak(packet, f"{wanted_ip} is not on {facts.network}", facts)
    lease = pool.lease_for(packet.mac)
    ours_to_give = pool.in_pool(int(wanted_ip)) or (lease is not None and lease.ip == int(wanted_ip))
    if server_id is None and not ours_to_give:
        # INIT-REBOOT for an address we never gave out: RFC 2131 says stay silent.
        return Answer(note="not our address")
    verdict = pool.request(packet.mac, int(wanted_ip))
    if not verdict.ack:
        return _nak(packet, verdict.reason, facts)
    result = _reply(packet, codec.ACK, wanted, boot, facts, pool, SERVER_PORT)
    result.error = boot.error
    return result


def _answer_proxy(packet: Packet, port: int, mtype: int, facts: ServerFacts) -> Answer:
    vendor = packet.options.get(codec.OPT_VENDOR_CLASS, b"")
    if not vendor.startswith((b"PXEClient", b"HTTPClient")):
        return Answer(note=NOT_PXE)
    if mtype == codec.DISCOVER and port == SERVER_PORT:
        kind = codec.OFFER
    elif mtype == codec.REQUEST:
        server_id = packet.ip_option(codec.OPT_SERVER_ID)
        if port != PROXY_PORT and server_id != facts.server_packed:
            return Answer(note="for another server")
        kind = codec.ACK
    else:
        return Answer(note="ignored message type")
    boot = boot_choice(packet, facts)
    if boot.error is not None or boot.file is None:
        return Answer(error=boot.error, note="no boot loader")
    return _reply(packet, kind, codec.ZERO_IP, boot, facts, None, port)


def _reply(
    packet: Packet,
    kind: int,
    yiaddr: bytes,
    boot: BootChoice,
    facts: ServerFacts,
    pool: LeasePool | None,
    port: int,
) -> Answer:
    server = facts.server_packed
    options: list[tuple[int, bytes]] = [
        (codec.OPT_MESSAGE_TYPE, bytes((kind,))),
        (codec.OPT_SERVER_ID, server),
    ]
    if pool is not None:
        options += _lease_options(pool.lease_seconds, facts.netmask_packed)
        options += facts.network_options
        hostname = facts.planned_hostname(packet.mac)
        if hostname:
            options.append((codec.OPT_HOSTNAME, hostname.encode("ascii", "replace")))
    file_field = b""
    if boot.file is not None:
        if boot.vendor_class is not None:
            options.append((codec.OPT_VENDOR_CLASS, boot.vendor_class))
        options.append((codec.OPT_TFTP_SERVER, facts.server_text))
        options.append((codec.OPT_BOOTFILE, boot.file.encode()))
        if boot.vendor_class == b"PXEClient" and boot.pxe_vendor_options:
            options.append((codec.OPT_VENDOR, PXE_VENDOR_OPTIONS))
        encoded = boot.file.encode()
        file_field = encoded if len(encoded) < 128 else b""
    for echoed in (codec.OPT_UUID, codec.OPT_CLIENT_ID):
        value = packet.options.get(echoed)
        if value is not None:
            options.append((echoed, value))
    reply = _bootreply(
        packet,
        ciaddr=packet.ciaddr if kind == codec.ACK else codec.ZERO_IP,
        yiaddr=yiaddr,
        siaddr=server if boot.file is not None else codec.ZERO_IP,
        file=file_field,
    )
    name = codec.MESSAGE_NAMES[kind]
    ip_text = codec.ip_text(yiaddr) if yiaddr != codec.ZERO_IP else None
    return Answer(
        kind=name,
        reply=codec.encode(reply, options),
        delivery=delivery_for(packet, yiaddr, port),
        ip=ip_text,
        file=boot.file,
    )


@functools.lru_cache(maxsize=8)
def _lease_options(lease: int, netmask: bytes) -> list[tuple[int, bytes]]:
    return [
        (codec.OPT_LEASE_TIME, struct.pack("!I", lease)),
        (codec.OPT_T1, struct.pack("!I", lease // 2)),
        (codec.OPT_T2, struct.pack("!I", lease * 7 // 8)),
        (codec.OPT_SUBNET_MASK, netmask),
    ]


def _bootreply(packet: Packet, *, ciaddr: bytes, yiaddr: bytes, siaddr: bytes, file: bytes) -> Packet:
    """The BOOTREPLY header answering `packet`: same xid, giaddr and chaddr, our addresses."""
    return Packet(
        op=codec.BOOTREPLY,
        htype=codec.HTYPE_ETHERNET,
        hlen=6,
        hops=0,
        xid=packet.xid,
        secs=0,
        flags=packet.flags & codec.BROADCAST_FLAG,
        ciaddr=ciaddr,
        yiaddr=yiaddr,
        siaddr=siaddr,
        giaddr=packet.giaddr,
        chaddr=packet.chaddr,
        sname=b"",
        file=file,
    )


def _nak(packet: Packet, reason: str, facts: ServerFacts) -> Answer:
    reply = _bootreply(packet, ciaddr=codec.ZERO_IP, yiaddr=codec.ZERO_IP, siaddr=codec.ZERO_IP, file=b"")
    options = [
        (codec.OPT_MESSAGE_TYPE, bytes((codec.NAK,))),
        (codec.OPT_SERVER_ID, facts.server_packed),
        (codec.OPT_MESSAGE, reason.encode("ascii", "replace")[:200]),
    ]
    if packet.giaddr != codec.ZERO_IP:
        delivery = Delivery(codec.ip_text(packet.giaddr), SERVER_PORT, None)
    else:  # RFC 2131 4.3.2: a NAK is an IP broadcast (the frame still goes to chaddr only)
        delivery = Delivery("255.255.255.255", CLIENT_PORT, packet.mac_bytes)
    return Answer(kind="nak", reply=codec.encode(reply, options), delivery=delivery, note=reason)


def delivery_for(packet: Packet, yiaddr: bytes, port: int) -> Delivery:
    """RFC 2131 4.1, with the Ethernet destination always the client's own MAC.

    Replies to a relay go to the relay; to a client that has an address (ciaddr, or anything
    that reached us on 4011) by plain UDP; to a client without one as a frame to chaddr, IP
    broadcast if it asked for that, else to yiaddr. A frame to chaddr never reaches a
    different PC, even one that reused the same transaction id.
    """
    if packet.giaddr != codec.ZERO_IP:
        return Delivery(codec.ip_text(packet.giaddr), SERVER_PORT, None)
    if port == PROXY_PORT:
        return Delivery("", 0, None)  # back to the request's source address and port
    if packet.ciaddr != codec.ZERO_IP:
        return Delivery(codec.ip_text(packet.ciaddr), CLIENT_PORT, None)
    if packet.broadcast or yiaddr == codec.ZERO_IP:
        return Delivery("255.255.255.255", CLIENT_PORT, packet.mac_bytes)
    return Delivery(codec.ip_text(yiaddr), CLIENT_PORT, packet.mac_bytes)
