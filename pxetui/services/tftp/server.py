"""The TFTP service: serves the boot-files catalog read-only on the interface's address, port 69.

Requests arrive on one listening socket; each accepted read gets its own socket and an
asyncio TftpTransfer (transfer.py beside it) with blksize, tsize and windowsize negotiated.
Bad datagrams are dropped and counted; refused requests get a TFTP error and a tftp.done
event with ok=false, so the operator sees a PC asking for a file that is not there.

Beyond the catalog (the loaders, the signed chains' shim and GRUB), names under a chain's
GRUB prefix and /files/PROFILE/ROLE are the Secure Boot chain's: grub.cfg rendered per MAC,
the menu's choices and the verified profile files, resolved by signed_chain.py beside this.
`autoexec.ipxe` beside iPXE's signed shim (when --boot-files holds it) is rendered here: the
signed iPXE reads it through the PXE firmware's TFTP, as its embedded script.

A flood must not lock PCs out: one client address runs at most MAX_PER_CLIENT transfers at
once, and a transfer whose client never sends its first ACK gives its slot back after
FIRST_ACK_GIVE_UP seconds (transfer.py), not the 30 s a real client that stalls gets. Requests
refused for being over a cap get a TFTP error and are counted (`busy`), without an event each:
a flood would otherwise be thousands of lines for the operator.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from pxetui.boot.ipxe_scripts import ScriptRenderer
from pxetui.boot.unattended import Renderer
from pxetui.errors import UsageError
from pxetui.host.sockets import WILDCARD, udp_port_holders
from pxetui.model.events import TftpDone, TftpProgress, TftpStart
from pxetui.model.tokens import Tokens
from pxetui.services.context import ServiceContext
from pxetui.services.tftp import packets
from pxetui.services.tftp.requests import MODES, Refused, clean_name, negotiate
from pxetui.services.tftp.signed_chain import Quiet, Served, SignedChainFiles
from pxetui.services.tftp.transfer import (
    FIRST_ACK_GIVE_UP,
    GIVE_UP,
    BytesSource,
    FileSource,
    NetasciiSource,
    Outcome,
    Source,
    TftpTransfer,
)

_log = logging.getLogger(__name__)

TFTP_PORT = 69
MAX_TRANSFERS = 256  # a room of PCs is tens; more at once is a loop or a flood
# Transfers at once from one address. A PC fetches one file at a time; the room left is for
# test rigs and benches that run 20 clients from one address. A flood from one address gets
# this many slots, each back after FIRST_ACK_GIVE_UP if it never ACKs.
MAX_PER_CLIENT = 32


class Busy(Refused):
    """Refused for being over a cap: counted, answered with a TFTP error, no event each."""


@dataclass(slots=True)
class TftpStats:
    served: int = 0
    probes: int = 0
    failed: int = 0
    refused: int = 0
    busy: int = 0  # requests over MAX_TRANSFERS or MAX_PER_CLIENT (a flood, or a loop)
    malformed: int = 0
    ignored: int = 0  # stray packets on port 69, repeated requests of a running transfer
    optional_absent: int = 0  # files a signed boot asks for and does without (refused, no event)
    rendered: int = 0  # grub.cfg answers rendered for the signed chain
    segmented_sends: int = 0  # windows that left in one send (UDP segmentation offload)
    unsegmented: int = 0  # transfers whose interface refused it and went block by block


@dataclass(slots=True)
class _Active:
    client: tuple[str, int]
    file: str
    mac: str | None
    transfer: TftpTransfer


class TftpService:
    name = "tftp"

    def __init__(
        self,
        context: ServiceContext,
        port: int = TFTP_PORT,
        give_up: float = GIVE_UP,
        first_give_up: float = FIRST_ACK_GIVE_UP,
        *,
        unattended: Renderer | None = None,
        tokens: Tokens | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise UsageError(f"TFTP port {port} is not a port: give 1-65535")
        self.context = context
        self.port = port
        self.give_up = give_up  # seconds a transfer waits for a silent client
        self.first_give_up = first_give_up  # ... for one that never sent its first ACK
        self.stats = TftpStats()
        self._listener: asyncio.DatagramTransport | None = None
        self._active: dict[tuple[str, int], _Active] = {}
        self._per_address: Counter[str] = Counter()  # running transfers per client address
        self._address = str(context.address.ip)
        self._mtu = context.interface.mtu
        self.signed = SignedChainFiles(context, unattended, tokens)
        self._scripts = ScriptRenderer(context.settings.template_dirs)

    # -- Service protocol -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Listener(self), local_addr=(self._address, self.port)
            )
        except OSError as exc:
            raise UsageError(_bind_advice(self._address, self.port, exc)) from exc
        self._listener = transport

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for active in list(self._active.values()):
            active.transfer.abort("pxetui stopped")
        self._active.clear()
        self._per_address.clear()

    def describe(self) -> dict[str, object]:
        boot_files = self.context.boot_files
        return {
            "address": self._address,
            "port": self.port,
            # The loader directory's files; the signed chains' shim and GRUB are listed apart.
            "files": sum(1 for name in boot_files.catalog if boot_files.chain_of(name) is None),
            "signed_chains": [chain.describe() for chain in boot_files.chains],
            "ipxe_shims": [shim.describe() for shim in boot_files.ipxe_shims],
            "active": len(self._active),
            **asdict(self.stats),
        }

    # -- requests ---------------------------------------------------------------------------

    def handle_datagram(self, data: bytes, client: tuple[str, int]) -> None:
        try:
            packet = packets.parse(data)
        except packets.MalformedPacket as exc:
            self.stats.malformed += 1
            _log.debug("dropped TFTP datagram from %s: %s", client, exc)
            if data[:2] in (b"\0\1", b"\0\2"):
                self._reply_error(client, packets.ERR_ILLEGAL, "malformed request")
            return
        if not isinstance(packet, packets.Request):
            self.stats.ignored += 1
            return
        if client in self._active:
            self.stats.ignored += 1  # the client repeated its request; the transfer answers
            return
        try:
            self._check_room(client[0])
        except Busy as busy:
            self.stats.busy += 1
            self._reply_error(client, busy.code, busy.message)
            return
        mac = self.context.booter.mac_for_ip(client[0])
        try:
            self._accept(packet, client, mac)
        except Quiet as quiet:
            self.stats.optional_absent += 1
            self._reply_error(client, quiet.code, quiet.message)
        except Refused as refusal:
            self.stats.refused += 1
            self._reply_error(client, refusal.code, refusal.message)
            self.context.emit(
                TftpDone(
                    mac=mac,
                    file=packet.filename[:200],
                    client=client[0],
                    bytes=0,
                    total=None,
                    rate=0.0,
                    ok=False,
                    reason=f"refused: {refusal.message}",
                )
            )

    def _check_room(self, address: str) -> None:
        if self._per_address[address] >= MAX_PER_CLIENT:
            raise Busy(packets.ERR_UNDEFINED, f"{MAX_PER_CLIENT} transfers from {address} running already")
        if len(self._active) >= MAX_TRANSFERS:
            raise Busy(packets.ERR_UNDEFINED, "server busy, try again")

    def _accept(self, request: packets.Request, client: tuple[str, int], mac: str | None) -> None:
        if request.write:
            raise Refused(packets.ERR_ACCESS, "write refused: pxetui serves boot files read-only")
        if request.mode not in MODES:
            raise Refused(packets.ERR_ILLEGAL, f"mode {request.mode[:20]!r} not supported; use octet")
        name = clean_name(request.filename)
        served = self._lookup(name, client[0], mac, netascii=request.mode == "netascii")
        source = served.source
        try:
            sock = self._transfer_socket(client)
        except OSError as exc:
            source.close()
            raise Refused(packets.ERR_UNDEFINED, f"server cannot open a socket: {exc.strerror}") from exc
        negotiated = negotiate(request.options, source.size, self._mtu)
        transfer = TftpTransfer(
            sock, source, negotiated, self._on_progress, self._on_done, self.give_up, self.first_give_up
        )
        active = _Active(client=client, file=name, mac=served.mac, transfer=transfer)
        self._active[client] = active
        self._per_address[client[0]] += 1
        for event in served.events:
            self.context.emit(event)
        self.context.emit(
            TftpStart(
                mac=served.mac,
                file=name,
                client=client[0],
                total=source.size,
                blksize=negotiated.blksize,
                windowsize=negotiated.windowsize,
                options=dict(request.options),
                kind=None if served.kind == "loader" else served.kind,
                answer=served.answer,
            )
        )
        transfer.start()

    def _lookup(self, name: str, address: str, mac: str | None, netascii: bool) -> Served:
        """A catalog file (a loader), else the signed chain's rendered answers and files."""
        catalog = self.context.boot_files.catalog
        if name not in catalog and self.context.boot_files.is_autoexec(name):
            # iPXE's signed build asks for it beside itself (it cannot embed a script).
            self.stats.rendered += 1
            script = self._scripts.autoexec(self.context.http_base)
            return Served(BytesSource(script.encode()), "script", mac, answer="autoexec")
        if name not in catalog:
            beside = self.signed.grub_beside_shim(name, address)
            if beside is None:
                served = self.signed.resolve(name, address, mac)
                if netascii:
                    served.source.close()
                    raise Refused(packets.ERR_ILLEGAL, "ask for this file in octet (binary) mode")
                if served.kind == "script":
                    self.stats.rendered += 1
                return served
            name = beside
        try:
            source = _open_source(str(catalog[name]), netascii=netascii)
        except OSError as exc:
            raise Refused(packets.ERR_NOT_FOUND, f"{name} cannot be read: {exc.strerror}") from exc
        self.signed.loader_served(name, address)
        return Served(source, "loader", mac)

    def _transfer_socket(self, client: tuple[str, int]) -> socket.socket:
        """A new port for this transfer (the server's TID), connected so only the client's
        packets reach it and its ICMP errors come back as exceptions."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self._address, 0))
            sock.connect(client)
        except OSError:
            sock.close()
            raise
        return sock

    def _reply_error(self, client: tuple[str, int], code: int, message: str) -> None:
        if self._listener is not None:
            self._listener.sendto(packets.error(code, message), client)

    # -- transfer events --------------------------------------------------------------------

    def _active_for(self, transfer: TftpTransfer) -> _Active | None:
        return next((a for a in self._active.values() if a.transfer is transfer), None)

    def _on_progress(self, transfer: TftpTransfer) -> None:
        active = self._active_for(transfer)
        if active is None:
            return
        self.context.emit(
            TftpProgress(
                mac=active.mac,
                file=active.file,
                client=active.client[0],
                bytes=transfer.acked_bytes,
                total=transfer.size,
                rate=round(transfer.rate),
            )
        )

    def _on_done(self, transfer: TftpTransfer, outcome: Outcome) -> None:
        active = self._active_for(transfer)
        if active is None:
            return
        del self._active[active.client]
        address = active.client[0]
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]
        if outcome.probe:
            self.stats.probes += 1
        elif outcome.ok:
            self.stats.served += 1
        else:
            self.stats.failed += 1
        self.stats.segmented_sends += transfer.segmented_sends
        self.stats.unsegmented += transfer.segmentation_failed
        self.context.emit(
            TftpDone(
                mac=active.mac,
                file=active.file,
                client=active.client[0],
                bytes=transfer.size if outcome.ok and not outcome.probe else transfer.acked_bytes,
                total=transfer.size,
                rate=round(transfer.rate),
                ok=outcome.ok,
                reason=outcome.reason,
                seconds=round((transfer.finished or transfer.started) - transfer.started, 4),
                blksize=transfer.blksize,
                windowsize=transfer.windowsize,
                retransmits=transfer.retransmits,
                segmented=transfer.segmented_sends,
                probe=True if outcome.probe else None,
            )
        )


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, service: TftpService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.service.handle_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        _log.debug("TFTP listener: %s", exc)  # ICMP for an error we sent; nothing to do


def _open_source(path: str, netascii: bool) -> Source:
    """The file as it goes on the wire; netascii is converted as it is read, never held whole."""
    if not netascii:
        return FileSource(path)
    source = NetasciiSource(path)
    if source.too_big:
        source.close()
        limit = NetasciiSource.MAX_BYTES >> 20
        raise Refused(
            packets.ERR_ILLEGAL,
            f"netascii is for text files up to {limit} MiB and this one is {source.raw_size} bytes:"
            " ask for it in octet (binary) mode",
        )
    return source


def _bind_advice(address: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot serve TFTP on {address}:{port}: {_holder_advice(address, port)}"
    if exc.errno == errno.EACCES:
        return f"cannot serve TFTP on {address}:{port}: port {port} needs root; run pxetui with sudo"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot serve TFTP on {address}:{port}: the address is not on the interface any more"
    return f"cannot serve TFTP on {address}:{port}: {exc.strerror or exc}"


def _holder_advice(address: str, port: int) -> str:
    """Who holds the port (the kernel's sockets, their processes) and how to free it."""
    holders = udp_port_holders(port, address)
    named = [h for h in holders if h.process]
    if not named:
        return (
            "another TFTP server holds the port (pxetui cannot see which:"
            f" `sudo ss -ulpn 'sport = :{port}'` shows it); stop it, or serve on another interface"
        )
    holder = named[0]
    where = "every address" if holder.address == WILDCARD else holder.address
    if holder.process == "pxetui":
        return (
            f"another pxetui (pid {holder.pid}) already serves TFTP on {where}:"
            " quit it first, or serve another interface"
        )
    stop = {
        "in.tftpd": "`sudo systemctl stop tftpd-hpa`",
        "dnsmasq": "stop it, or turn its TFTP off (enable-tftp)",
    }.get(holder.process or "", "stop it")
    return f"{holder.describe()} holds UDP {port} on {where}: {stop}, then start pxetui again"
