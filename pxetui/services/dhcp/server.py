"""The DHCP service: PXE boot answers in full or proxyDHCP mode, with rival-server safety.

Sockets: UDP 67 on the serving interface (SO_BINDTODEVICE; bound to 0.0.0.0 because the
requests that matter are broadcasts from clients that have no address), UDP 4011 on the
interface address in proxy mode, an AF_PACKET socket to send frames to each client's MAC, and
a filtered AF_PACKET tap that sees other servers' replies (the probe and the rival watch).
The policy itself is pxetui/services/dhcp/answer.py; this module moves bytes and reports events.

The two request ports are read and answered on a thread of their own (DhcpReceiver), not on
the services' loop: in a room of 100 PCs that loop runs 100 TFTP transfers, the HTTP requests
and every event, and an iPXE DHCP request waited behind a whole loop iteration of them (p99
55-76 ms in bench/room). The thread wakes for a request alone and needs only the GIL, which
the loop gives up at each of its many system calls. Its events go to the loop in one hand-over
per batch; the lease pool is shared under a lock (the loop saves it, the thread changes it).
Life cycle, the rival tap and the lease saves stay on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import ipaddress
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pxetui.boot.bootfiles import BootFiles
from pxetui.boot.grub_proxy import proxy_grub_advice
from pxetui.errors import PxetuiError, UsageError
from pxetui.model.events import (
    DhcpAck,
    DhcpDecline,
    DhcpDiscover,
    DhcpLeasesRestored,
    DhcpNak,
    DhcpOffer,
    DhcpReply,
    DhcpRequest,
    DhcpRival,
    Error,
    Event,
)
from pxetui.model.state import StateWriter
from pxetui.services.context import ServiceContext
from pxetui.services.dhcp import codec, rawnet
from pxetui.services.dhcp.answer import (
    NOT_PXE,
    PROXY_PORT,
    RELAYED_NOTE,
    SERVER_PORT,
    Answer,
    ServerFacts,
    answer,
)
from pxetui.services.dhcp.leases import BOUND, LeasePool, default_range
from pxetui.services.dhcp.local_servers import Listener, dhcp_listeners
from pxetui.services.dhcp.probe import PROBE_SECONDS, Rival, ask_servers, probe, rival_from_reply
from pxetui.services.receive import enable_timestamps, fresh_datagrams, waiting_datagrams

LEASE_SAVE_DELAY = 0.5  # seconds: leases change in bursts when a room powers on; one write per burst
ERROR_EVENT_INTERVAL = 1.0  # at most one `error` event per reason and second; the rest are counted
RIVAL_REPEAT_SECONDS = 30.0
# A request that waited longer than this in the socket's queue is dropped unanswered: its
# client has retransmitted by now (PXE firmware after 4 s at most, dhclient/udhcpc after 1-3 s,
# perfdhcp after 1 s), so answering it only delays the fresh copy behind it. Counted (`stale`).
STALE_SECONDS = 0.5
# A DISCOVER goes stale sooner: nothing was done for it yet, while dropping a REQUEST wastes
# the OFFER already sent. Past capacity the queue then stays as short as this, REQUESTs wait
# in it behind no more than that and are answered: throughput holds instead of halving
# (perfdhcp at 8000/s: 4167 DORA/s with one limit for both). A room's burst is answered in
# tens of ms, far below it.
DISCOVER_STALE_SECONDS = 0.25
OVERLOADED = (
    f"overloaded: requests that waited over {STALE_SECONDS} s ({DISCOVER_STALE_SECONDS} s for a"
    " DISCOVER) were dropped unanswered (their clients retransmit)"
)
# Network-boot clients pxetui does not know (not planned, never seen) it reports per session:
# each becomes a machine in the registry (and machines.json). Past it their requests are
# dropped and counted: a flood of random MACs cannot grow the state without bound or push
# the next real PC's auto hostname to pc-5206. A room never comes near it; the plan always can.
MAX_STRANGERS = 2000
TOO_MANY_STRANGERS = (
    f"more than {MAX_STRANGERS} unknown network-boot clients this session: requests from new"
    " ones are dropped (add a PC to the plan to boot it)"
)


class ErrorCounter:
    """Counts dropped packets per reason; says when an `error` event is due (rate limit).

    The limit is per reason only, never per MAC: a flood from random MACs (3000 packets gave
    2845 events when it was per reason and MAC) must cost the operator one line a second, with
    `count` and `since_last` saying how many there were. Reasons can carry packet data (the
    arch in "no boot loader for arch N"), so past MAX_REASONS distinct ones the rest share
    one slot: neither the events nor this table grow with what a client sends.
    """

    MAX_REASONS = 64
    OTHER = "other reasons"

    def __init__(self, interval: float = ERROR_EVENT_INTERVAL) -> None:
        self.interval = interval
        self.counts: dict[str, int] = {}
        self._last: dict[str, tuple[float, int]] = {}  # slot -> (time of last event, count then)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def slot(self, reason: str) -> str:
        """Where `reason` is counted: itself, or OTHER once the table is full."""
        if reason in self.counts or len(self.counts) < self.MAX_REASONS:
            return reason
        return self.OTHER

    def count(self, reason: str) -> int | None:
        """Count one drop; return how many went unreported since the last event, if one is due."""
        slot = self.slot(reason)
        seen = self.counts[slot] = self.counts.get(slot, 0) + 1
        now = time.monotonic()
        last = self._last.get(slot)
        if last is not None and now - last[0] < self.interval:
            return None
        self._last[slot] = (now, seen)
        return seen - last[1] if last is not None else seen


def _probe_mac(mac_text: str) -> bytes:
    """The MAC the probe's DISCOVERs come from: the interface's own, or a local one without it."""
    return bytes.fromhex(mac_text.replace(":", "")) if mac_text else b"\x02\x00\x00\x00\x00\x01"


class DhcpReceiver:
    """A thread that waits on DHCP's request sockets (epoll) and calls `on_readable(sock, port)`.

    Sockets can be added from any thread (the proxy port opens when a rival appears);
    `stop()` wakes the thread through an eventfd and waits for it, so the caller may close
    the sockets afterwards without the thread touching a closed descriptor.
    """

    STOP_TIMEOUT = 5.0

    def __init__(self, on_readable: Callable[[socket.socket, int], None]) -> None:
        self._on_readable = on_readable
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._sockets: dict[int, tuple[socket.socket, int]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pxetui-dhcp", daemon=True)

    def add(self, sock: socket.socket, port: int) -> None:
        self._sockets[sock.fileno()] = (sock, port)
        self._epoll.register(sock.fileno(), select.EPOLLIN)

    def start(self) -> None:
        self._thread.start()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    def _run(self) -> None:
        while not self._stopping:
            try:
                ready = self._epoll.poll()
            except InterruptedError:
                continue
            for fd, _mask in ready:
                if fd == self._wake or self._stopping:
                    continue
                entry = self._sockets.get(fd)
                if entry is not None:
                    self._on_readable(*entry)

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)
        if self._thread.is_alive():
            self._thread.join(self.STOP_TIMEOUT)
        self._epoll.close()
        os.close(self._wake)


class DhcpService:
    name = "dhcp"

    def __init__(self, context: ServiceContext, probe_seconds: float = PROBE_SECONDS) -> None:
        self.context = context
        self.probe_seconds = probe_seconds
        self.mode = context.settings.mode if context.settings.mode != "auto" else "full"
        # The pool's range is checked now; a default that does not fit the subnet is an
        # error only if full mode is chosen (next to another server, proxy mode needs none).
        self._range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None = None
        self._range_error: UsageError | None = None
        if context.settings.mode != "proxy":
            try:
                self._range = _pool_range(context)
            except UsageError as exc:
                if context.settings.pool is not None:
                    raise
                self._range_error = exc
        self.pool: LeasePool | None = None
        self.facts: ServerFacts | None = None
        self.errors = ErrorCounter()
        self.rivals: dict[str, Rival] = {}
        self.local_rivals: list[Listener] = []  # other servers on UDP 67 of this machine, at start
        self.switched_from: str | None = None  # "full" once a rival made pxetui stop giving addresses
        self.switch_reason: str | None = None
        self._rival_reported: dict[str, float] = {}
        self._rival_advice: dict[str, str | None] = {}  # server id -> its last grub_advice
        self._asking: asyncio.Task[None] | None = None  # proxy mode: DISCOVERs for the watch to hear
        self._server: socket.socket | None = None
        self._proxy: socket.socket | None = None
        self._sender: socket.socket | None = None
        self._tap: socket.socket | None = None
        self._save_handle: asyncio.TimerHandle | None = None
        self._writer: StateWriter | None = None
        self._ifname = ""
        self._ours = b""
        self.answered = 0
        self._address_gone = False  # the Session says when the served address leaves
        self.ignored = 0  # proxy mode: requests from clients that are not network-booting
        self.stale = 0  # requests dropped for waiting over STALE_SECONDS in the receive queue
        self.max_strangers = MAX_STRANGERS
        self._strangers: set[str] = set()  # unknown network-boot MACs reported this session
        self._receiver: DhcpReceiver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool_lock = threading.Lock()  # the receiver changes the pool, the loop saves it
        self._batch: list[Event] | None = None  # events of the batch being answered (receiver)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        context = self.context
        interface, address, boot_files = context.interface, context.address, context.boot_files
        self._ifname = interface.name
        self._ours = address.ip.packed
        loop = asyncio.get_running_loop()
        self._writer = StateWriter(context.state, self._save_failed, "dhcp-leases")
        try:
            self._sender = rawnet.frame_sender(self._ifname)
            _grow_buffers(self._sender)
            self._tap = rawnet.server_reply_tap(self._ifname)
        except OSError as exc:
            self._close()
            raise PxetuiError(
                f"cannot open a packet socket on {self._ifname}: {exc.strerror}; pxetui must run as root"
            ) from exc
        try:
            self.mode = await self._resolve_mode(interface.mac)
            if self.mode == "full":
                self.pool = self._make_pool(address)
            self.facts = self._make_facts(address, boot_files)
            self._server = _bind_udp(self._ifname, "0.0.0.0", SERVER_PORT)
            if self.mode == "proxy":
                self._proxy = _bind_udp(self._ifname, str(address.ip), PROXY_PORT)
        except BaseException:
            self._close()
            raise
        self._loop = loop
        self._receiver = DhcpReceiver(self._drain)
        self._receiver.add(self._server, SERVER_PORT)
        if self._proxy is not None:
            self._receiver.add(self._proxy, PROXY_PORT)
        self._receiver.start()
        loop.add_reader(self._tap.fileno(), self._watch)
        if self.mode == "proxy" and self.context.settings.mode == "proxy":
            # No probe ran (the operator named the mode): ask like a client once, so the watch
            # hears what the router tells PCs before the first one boots (`grub_advice`).
            self._asking = loop.create_task(self._ask_servers(interface.mac))

    async def _ask_servers(self, mac_text: str) -> None:
        assert self._sender is not None
        mac = _probe_mac(mac_text)
        try:
            await ask_servers(self._sender, self._ifname, mac, self._router_heard)
        except OSError as exc:  # the interface went away: the watch reports what it still hears
            self.context.emit(
                Error(service="dhcp", reason=f"could not ask the DHCP server on {self._ifname}: {exc}")
            )

    def _router_heard(self) -> bool:
        return any(rival.offers_address for rival in self.rivals.values())

    async def stop(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._asking
            self._asking = None
        if self._receiver is not None:
            self._receiver.stop()  # before the sockets close: it never reads a closed one
            self._receiver = None
        self._close()
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        self._save_leases()

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {
            "mode": self.mode,
            "port": SERVER_PORT,
            "answered": self.answered,
            "address_gone": self._address_gone,
            "dropped": self.errors.total,
            "ignored": self.ignored,
            "stale": self.stale,
            "strangers": len(self._strangers),
            "rivals": sorted(self.rivals),
        }
        if self.local_rivals:
            info["local_servers"] = [listener.describe() for listener in self.local_rivals]
        if self.switched_from is not None:
            info["switched_from"] = self.switched_from
            info["reason"] = self.switch_reason
        if self.mode == "proxy":
            info["proxy_port"] = PROXY_PORT
        if self.pool is not None:
            first, last = ipaddress.IPv4Address(self.pool.first), ipaddress.IPv4Address(self.pool.last)
            info["range"] = f"{first}-{last}"
            info["leases"] = len(self.pool.by_mac)
        return info

    def _close(self) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for sock in (self._server, self._proxy, self._tap, self._sender):
            if sock is None:
                continue
            if loop is not None and sock is self._tap and sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())  # the request ports are the receiver's
            sock.close()
        self._server = self._proxy = self._tap = self._sender = None

    # -- mode and pool ------------------------------------------------------------------------

    async def _resolve_mode(self, mac_text: str) -> str:
        """auto: full only when no other server listens here or answers the probe; full:
        refuse next to one unless --force; proxy: no question (the watch still reports)."""
        settings = self.context.settings
        requested = settings.mode
        self.mode = requested  # what dhcp.rival events from the probe report
        if requested == "proxy":
            return "proxy"  # the operator knows there is a server; the watch still reports it
        self.local_rivals = self._local_listeners()
        if self.local_rivals:
            return self._next_to_local_server(requested, settings.force)
        if settings.force:
            return "full"  # the probe could not change the answer; the watch reports rivals
        assert self._tap is not None and self._sender is not None
        mac = _probe_mac(mac_text)
        rival = await probe(self._tap, self._sender, self._ifname, mac, self.probe_seconds, self._ours)
        if rival is None:
            return "full"
        self._report_rival(rival)
        if requested == "auto":
            return "proxy"
        raise UsageError(
            f"another DHCP server answers on {self._ifname}: {rival.server_id} ({rival.server_mac})."
            f" {_TWO_SERVERS} {_USE_PROXY}"
        )

    def _local_listeners(self) -> list[Listener]:
        """Other sockets on UDP 67 of this machine hearing the interface, each a dhcp.rival."""
        ifname, address = self._ifname, str(self.context.address.ip)
        found = dhcp_listeners(ifname, address)
        for listener in found:
            self.context.emit(
                DhcpRival(
                    mode=self.mode,
                    server_id=listener.address,
                    server_mac=self.context.interface.mac,
                    message="listening",
                    offers_address=False,
                    process=listener.describe(),
                    reason=f"a DHCP server on this machine listens on UDP {SERVER_PORT} for {ifname}",
                )
            )
        return found

    def _next_to_local_server(self, requested: str, force: bool) -> str:
        if requested == "auto":
            return "proxy"
        if force:
            return "full"
        names = "; ".join(listener.describe() for listener in self.local_rivals)
        unknown = ""
        if not all(listener.device_known for listener in self.local_rivals):
            unknown = " (its interface could not be read, so a listener on every address counts)"
        raise UsageError(
            f"another DHCP server runs on this machine and listens on UDP {SERVER_PORT} for"
            f" {self._ifname}: {names}{unknown}. {_TWO_SERVERS} Stop it first, or: {_USE_PROXY}"
        )

    def _make_pool(self, address: ipaddress.IPv4Interface) -> LeasePool:
        if self._range_error is not None:
            raise self._range_error
        assert self._range is not None
        first, last = self._range
        network = address.network
        pool = LeasePool(
            first, last, exclude=(address.ip, network.network_address, network.broadcast_address)
        )
        restored: list[int] = []
        # A leases file of the wrong shape is damaged, like bad JSON: kept aside, named.
        self.context.state.load_checked("leases", lambda doc: restored.append(pool.load_document(doc)))
        if restored and restored[0]:
            self.context.emit(DhcpLeasesRestored(restored=restored[0]))
        return pool

    def _make_facts(self, address: ipaddress.IPv4Interface, boot_files: BootFiles) -> ServerFacts:
        booter = self.context.booter

        def planned_hostname(mac: str) -> str | None:
            return booter.boot_plan(mac).hostname

        def signed_loader(mac: str, arch: int) -> tuple[str, bool] | None:
            # The first shim decides which vendor's kernels boot: the assigned profile's own
            # loaders, else its vendor's chain, else the default one.
            profile = booter.boot_plan(mac).profile
            chain = boot_files.chain_for(arch, profile, self.context.settings.cache_dir)
            return (chain.shim, chain.http) if chain is not None else None

        def ipxe_shim(arch: int) -> str | None:
            shim = boot_files.ipxe_shim_for_arch(arch)
            return shim.shim if shim is not None else None

        return ServerFacts(
            mode=self.mode,
            server_ip=address.ip,
            network=address.network,
            http_base=self.context.http_base,
            loader_for_arch=boot_files.loader_for_arch,
            expected_loader=boot_files.expected_loader,
            planned_hostname=planned_hostname,
            boot_dir=str(boot_files.root),
            secure_boot=self.context.settings.secure_boot,
            signed_loader=signed_loader,
            needs_signed=booter.needs_signed_chain,
            ipxe_shim=ipxe_shim,
            router=self.context.settings.router,
            dns=self.context.settings.dns,
        )

    # -- the hot path -------------------------------------------------------------------------

    def _drain(self, sock: socket.socket, port: int) -> None:
        """Answer what waits on `sock` (on the receiver's thread); then hand the batch's
        events to the loop in one go, after every answer of the batch has left."""
        batch: list[Event] = []
        self._batch = batch
        try:
            for data, source in fresh_datagrams(sock, 65535, stale_after, self._stale):
                try:
                    with self._pool_lock:
                        self._handle(data, source, sock, port)
                except Exception as exc:  # one bad packet must never stop the server
                    self._drop(f"internal error: {type(exc).__name__}: {exc}", None)
        finally:
            self._batch = None
        changed = self.pool is not None and self.pool.changed
        if batch or changed:
            self._on_loop(self._deliver, batch, changed)

    def _emit(self, event: Event) -> None:
        """An event from the hot path: part of the batch when the receiver answers, else now."""
        if self._batch is not None:
            self._batch.append(event)
        else:
            self.context.emit(event)

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if self._receiver is not None and threading.get_ident() == self._receiver.thread_id:
            with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
                loop.call_soon_threadsafe(callback, *args)
        else:
            callback(*args)

    def _deliver(self, events: list[Event], pool_changed: bool) -> None:
        """On the loop: the batch's events, in the order they happened; a lease save if due."""
        emit = self.context.emit
        for event in events:
            emit(event)
        if pool_changed:
            self._schedule_save()

    def _stale(self, age: float) -> None:
        self.stale += 1
        self._drop(OVERLOADED, None)

    def address_present(self, present: bool) -> None:
        """The served address left (or came back): no PC is sent to an address nobody has."""
        self._address_gone = not present

    def _handle(self, data: bytes, source: tuple[str, int], sock: socket.socket, port: int) -> None:
        if self._address_gone:
            self._drop("the served address is gone from the interface: not answering", None)
            return
        try:
            packet = codec.decode(data)
        except codec.DecodeError as exc:
            self._drop(exc.reason, None)
            return
        if packet.op != codec.BOOTREQUEST:
            self._drop("BOOTREPLY sent to the server", packet.mac)
            return
        mtype = packet.message_type
        if mtype == 0:
            self._drop("BOOTP request without DHCP message type", packet.mac)
            return
        if mtype in (codec.DISCOVER, codec.REQUEST) and self._too_many_strangers(packet):
            self._drop(TOO_MANY_STRANGERS, None)
            return
        assert self.facts is not None
        result = answer(packet, port, self.facts, self.pool)
        if result.note == RELAYED_NOTE:
            self._drop(result.error or "relayed request", packet.mac)  # before any event about it
            return
        if result.note == NOT_PXE:
            self._ignore(packet, mtype)
            return
        facts = client_fields(packet)
        self._report_request(packet, mtype, port, facts)
        emit = self._emit
        if result.decline is not None:
            decline = result.decline
            emit(DhcpDecline(mac=packet.mac, ip=decline.ip, accepted=decline.accepted, reason=decline.reason))
        if result.error is not None:
            self._drop(result.error, packet.mac)
        if result.kind is None or result.delivery is None:
            return
        self._send(result, sock, source)
        self.answered += 1
        ip = result.ip
        if ip is None and packet.ciaddr != codec.ZERO_IP:
            # proxyDHCP: the address came from the other server; the PC told us which it is.
            ip = codec.ip_text(packet.ciaddr)
        reason = result.note if result.kind == "nak" else None
        reply_type = _REPLY_TYPES[result.kind]
        emit(reply_type(mac=packet.mac, **facts, ip=ip, file=result.file, reason=reason))

    def _ignore(self, packet: codec.Packet, mtype: int) -> None:
        """proxyDHCP on a shared network: phones and laptops are not ours to list (nor to use
        up the operator's "next N unknown machines" policy). A machine pxetui is installing is
        the exception: its installer's REQUEST names the address the router gave it, which its
        install files are served to."""
        self.ignored += 1
        if mtype == codec.REQUEST and self.context.booter.knows(packet.mac):
            fields = {**client_fields(packet), **_request_fields(packet)}
            self._emit(DhcpRequest(mac=packet.mac, **fields))

    def _report_request(self, packet: codec.Packet, mtype: int, port: int, facts: dict[str, Any]) -> None:
        """The `dhcp.discover` / `dhcp.request` event of a request pxetui answers (or NAKs)."""
        if mtype not in (codec.DISCOVER, codec.REQUEST):
            return
        extra: dict[str, Any] = {}
        if mtype == codec.REQUEST:
            extra.update(_request_fields(packet))
        if port == PROXY_PORT:
            extra["port"] = PROXY_PORT
        request_type = DhcpDiscover if mtype == codec.DISCOVER else DhcpRequest
        self._emit(request_type(mac=packet.mac, **facts, **extra))

    def _too_many_strangers(self, packet: codec.Packet) -> bool:
        """Is `packet` from a new network-boot stranger past MAX_STRANGERS? (Counts it if not.)

        A relayed request is left to `answer()`, which drops it without costing a place.
        """
        mac = packet.mac
        if mac in self._strangers or packet.giaddr != codec.ZERO_IP or not codec.is_netboot(packet):
            return False
        if self.context.booter.knows(mac):
            return False
        if len(self._strangers) >= self.max_strangers:
            return True
        self._strangers.add(mac)
        return False

    def _send(self, result: Answer, sock: socket.socket, source: tuple[str, int]) -> None:
        delivery = result.delivery
        assert delivery is not None
        try:
            if delivery.ether is not None:
                assert self._sender is not None
                dst = socket.inet_aton(delivery.ip)
                datagram = rawnet.ip_udp(self._ours, dst, SERVER_PORT, delivery.port, result.reply)
                rawnet.send_frame(self._sender, self._ifname, delivery.ether, datagram)
            elif delivery.port == 0:
                sock.sendto(result.reply, source)
            else:
                sock.sendto(result.reply, (delivery.ip, delivery.port))
        except BlockingIOError:
            self._drop("send queue full", None)
        except OSError as exc:
            self._drop(f"send failed: {exc.strerror}", None)

    def _drop(self, reason: str, mac: str | None) -> None:
        """Count a drop; report it at most once a second per reason, with the MAC that was next."""
        unreported = self.errors.count(reason)
        if unreported is not None:
            self._emit(
                Error(
                    mac=mac,
                    service="dhcp",
                    reason=reason,
                    count=self.errors.counts[self.errors.slot(reason)],
                    since_last=unreported,
                )
            )

    # -- leases -------------------------------------------------------------------------------

    def _schedule_save(self) -> None:
        if self._save_handle is None:
            loop = asyncio.get_running_loop()
            self._save_handle = loop.call_later(LEASE_SAVE_DELAY, self._save_soon)

    def _save_soon(self) -> None:
        """Snapshot on the loop, write (and fsync) on the one writer thread: no stall, in order."""
        self._save_handle = None
        if self.pool is None or not self.pool.changed:
            return
        with self._pool_lock:  # the receiver may be changing it right now
            self.pool.changed = False
            document = self.pool.to_document()
        if self._writer is not None:
            self._writer.save("leases", document)

    def _save_failed(self, name: str, exc: OSError) -> None:
        self.context.emit(Error(service="dhcp", reason=f"cannot save {name}: {exc}"))

    def _save_leases(self) -> None:
        if self._writer is not None:
            self._writer.close()  # earlier snapshots land first
            self._writer = None
        if self.pool is None or not self.pool.changed:
            return
        self.pool.changed = False
        self.context.state.save("leases", self.pool.to_document())

    # -- rival watch --------------------------------------------------------------------------

    def _watch(self) -> None:
        tap = self._tap
        if tap is None:
            return
        for data, address in waiting_datagrams(tap, 4096):
            parts = rawnet.udp_payload(data)
            if parts is None or parts[0] == self._ours:
                continue
            rival = rival_from_reply(parts[4], address[4], self._ours)
            if rival is not None:
                self._report_rival(rival)

    def _report_rival(self, rival: Rival) -> None:
        """A `dhcp.rival` event (once per RIVAL_REPEAT_SECONDS per server); while pxetui
        hands out addresses, a rival that does too makes it switch to proxyDHCP at once."""
        self.rivals[rival.server_id] = rival
        seen_in = self.mode
        switched_to = reason = None
        if self.facts is not None and seen_in == "full" and rival.offers_address:
            if self.context.settings.force:
                reason = "--force: pxetui stays in full mode and keeps handing out addresses"
            else:
                switched_to, reason = "proxy", self._switch_to_proxy(rival)
        advice = self._grub_advice(rival, seen_in, switched_to)
        changed = self._rival_advice.get(rival.server_id, advice) != advice
        self._rival_advice[rival.server_id] = advice
        now = time.monotonic()
        last = self._rival_reported.get(rival.server_id)
        if switched_to is None and not changed and last is not None and now - last < RIVAL_REPEAT_SECONDS:
            return
        self._rival_reported[rival.server_id] = now
        self.context.emit(rival.event(seen_in, switched_to=switched_to, reason=reason, grub_advice=advice))

    def _grub_advice(self, rival: Rival, seen_in: str, switched_to: str | None) -> str | None:
        """Why a Secure Boot PC's signed GRUB will not find pxetui next to this server, if it
        will not: only where pxetui is (or becomes) a proxy beside a server giving addresses,
        and only when the signed chain can be handed out at all."""
        proxy = switched_to == "proxy" or seen_in != "full"
        if not (proxy and rival.offers_address) or self.context.settings.secure_boot == "ipxe":
            return None
        return proxy_grub_advice(rival.grub_server, str(self.context.address.ip), rival.server_id)

    def _switch_to_proxy(self, rival: Rival) -> str:
        """Stop offering addresses: from the next packet on, answer as proxyDHCP (boot
        information only). The leases given so far stay in the pool and in leases.json."""
        assert self.facts is not None
        self.mode = "proxy"
        # One reference: the receiver answers with the old facts or the new ones, never a mix.
        self.facts = dataclasses.replace(self.facts, mode="proxy")
        self._open_proxy_port()
        pool = self.pool
        with self._pool_lock:
            kept = sum(lease.state == BOUND for lease in pool.by_mac.values()) if pool is not None else 0
        self.switched_from = "full"
        self.switch_reason = (
            f"another DHCP server ({rival.server_id}, {rival.server_mac}) hands out addresses on"
            f" {self._ifname}: pxetui stopped offering addresses and goes on as proxyDHCP (boot"
            f" information only); leases kept: {kept} bound. `--force` keeps full mode next to it."
        )
        return self.switch_reason

    def _open_proxy_port(self) -> None:
        """UDP 4011 for PXE firmware that asks the proxy there; without it, port 67 still works."""
        if self._proxy is not None:
            return
        try:
            self._proxy = _bind_udp(self._ifname, str(self.context.address.ip), PROXY_PORT)
        except PxetuiError as exc:
            self.context.emit(Error(service="dhcp", reason=f"proxyDHCP without port {PROXY_PORT}: {exc}"))
            return
        if self._receiver is not None:
            self._receiver.add(self._proxy, PROXY_PORT)


_TWO_SERVERS = "Two servers handing out addresses break the network for everyone on it."
_USE_PROXY = (
    "Use `--mode proxy` (or the default `--mode auto`): pxetui then only adds boot information"
    " and that server keeps giving out addresses. `--force` serves full DHCP anyway (only on a"
    " network you own)."
)
_REPLY_TYPES: dict[str, type[DhcpReply]] = {"offer": DhcpOffer, "ack": DhcpAck, "nak": DhcpNak}


_DISCOVER_FIRST = bytes((codec.OPT_MESSAGE_TYPE, 1, codec.DISCOVER))


def stale_after(data: bytes) -> float:
    """How long a request may wait in the queue, read from its bytes without decoding: a
    DISCOVER (option 53 first, where clients put it) DISCOVER_STALE_SECONDS, the rest
    STALE_SECONDS."""
    if data[240:243] == _DISCOVER_FIRST:
        return DISCOVER_STALE_SECONDS
    return STALE_SECONDS


def _request_fields(packet: codec.Packet) -> dict[str, Any]:
    """The address a REQUEST asks for and the server it chose, when it names them."""
    fields: dict[str, Any] = {}
    requested = packet.ip_option(codec.OPT_REQUESTED_IP)
    server_id = packet.ip_option(codec.OPT_SERVER_ID)
    if requested is not None:
        fields["requested"] = codec.ip_text(requested)
    if server_id is not None:
        fields["server_id"] = codec.ip_text(server_id)
    return fields


def _pool_range(context: ServiceContext) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """The addresses full mode hands out: --range, checked against the subnet, or the default."""
    address, ifname = context.address, context.interface.name
    network = address.network
    if context.settings.pool is not None:
        first, last = context.settings.pool
        if first not in network or last not in network:
            try:  # the example is the default range: inside the subnet whatever its size (a /26 too)
                low, high = default_range(network, address.ip)
            except ValueError:  # too small for the default: its hosts but this machine's address
                low, high = network.network_address + 1, network.broadcast_address - 1
                low, high = (low + 1, high) if address.ip == low else (low, high - (address.ip == high))
            raise UsageError(
                f"--range {first}-{last} is not inside {network} (the subnet of {ifname});"
                f" give a range on it, e.g. {low}-{high}"
            )
        return first, last
    try:
        return default_range(network, address.ip)
    except ValueError as exc:
        raise UsageError(f"{exc}: give {ifname} a /24 with --address") from exc


def client_fields(packet: codec.Packet) -> dict[str, Any]:
    """What a request says about the client: the fields of every DHCP event about it."""
    fields: dict[str, Any] = {
        "xid": packet.xid,
        "arch": codec.client_arch(packet),
        "vendor_class": codec.text(packet.options.get(codec.OPT_VENDOR_CLASS)),
        "user_class": codec.user_class(packet),
        "uuid": codec.client_uuid(packet),
        "client_id": (
            packet.options[codec.OPT_CLIENT_ID].hex() if codec.OPT_CLIENT_ID in packet.options else None
        ),
        "params": list(packet.options.get(codec.OPT_PARAMS, b"")),
    }
    fields["ipxe"] = True if codec.is_ipxe(packet) else None
    return fields


SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SOCKET_BUFFER = 8 << 20


def _grow_buffers(sock: socket.socket) -> None:
    """Deep queues, so a room powering on (or a stall while state is written) drops nothing.

    The *FORCE variants (root) go past net.core.rmem_max, which is only 208 KiB by default:
    about 150 queued DHCP packets.
    """
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


def _bind_udp(ifname: str, host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        _grow_buffers(sock)
        enable_timestamps(sock)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PxetuiError(
                f"UDP port {port} is already in use on {ifname}: another DHCP server (dnsmasq,"
                " dhcpd, kea) runs on this machine. Stop it (`sudo ss -ulpn 'sport = :67'` shows"
                " which), then start pxetui again."
            ) from exc
        raise PxetuiError(f"cannot bind UDP {host}:{port} on {ifname}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock
