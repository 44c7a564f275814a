"""Typed events: the only thing services emit, and what every view consumes.

One frozen dataclass per event kind (the page of messages toolong and harlequin keep), each
with the dotted name of the JSON contract (`dhcp.ack`, `tftp.progress`, ...; README "Command
line" lists them), the MAC it concerns (or None) and its own typed fields. `to_json()` gives
exactly the line `--headless --json` prints: `ts`, `event`, `mac`, then the fields in the order
they are declared, leaving out the optional ones that are unset. The registry and the TUI
match on the class; tests build events with these same constructors (or `make_event` by
name), so a view cannot read a field a service never sends. See docs/architecture.md.

The bus fans events out to subscribers on the asyncio loop, whatever thread emitted them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The fields every event has. Subclasses set `name` and list their own fields."""

    name: ClassVar[str] = ""
    # Fields left out of the JSON line while they are None (they were sent only when known).
    optional: ClassVar[frozenset[str]] = frozenset()

    mac: str | None = None
    ts: float = field(default_factory=time.time)

    @property
    def fields(self) -> dict[str, Any]:
        """The event's own fields, as they appear in its JSON line."""
        out: dict[str, Any] = {}
        for key in _field_names(type(self)):
            value = getattr(self, key)
            if value is None and key in self.optional:
                continue
            out[key] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": round(self.ts, 6), "event": self.name, "mac": self.mac}
        for key, value in self.fields.items():
            if key not in out:
                out[key] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)

    def describe(self) -> str:
        """One human line: `12:00:01 dhcp.ack 52:54:00:12:34:01 ip=198.18.0.100`."""
        clock = time.strftime("%H:%M:%S", time.localtime(self.ts))
        extras = " ".join(f"{k}={v}" for k, v in self.fields.items())
        who = f" {self.mac}" if self.mac else ""
        return f"{clock} {self.name}{who} {extras}".rstrip()


_NAMES_CACHE: dict[type[Event], tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    names = _NAMES_CACHE.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("mac", "ts"))
        _NAMES_CACHE[cls] = names
    return names


def _optional(*names: str) -> frozenset[str]:
    return frozenset(names)


# -- session ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceReady(Event):
    name: ClassVar[str] = "service.ready"
    mode: str
    interface: str
    address: str | None
    http_port: int
    services: Mapping[str, Mapping[str, object]]
    state_dir: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Event):
    """Something went wrong or was refused; `service` names who reports it, when one does."""

    name: ClassVar[str] = "error"
    optional: ClassVar[frozenset[str]] = _optional(
        "service", "path", "client", "count", "since_last", "fatal"
    )
    service: str | None = None
    reason: str
    path: str | None = None
    client: str | None = None
    count: int | None = None  # drops of this reason so far (rate-limited reports)
    since_last: int | None = None  # drops since the last report of this reason
    fatal: bool | None = None  # pxetui stops because of it


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressLost(Event):
    """The served address went from the interface while pxetui runs (NetworkManager, a cable
    pulled and plugged, someone's `ip addr flush`): PCs cannot reach pxetui, and DHCP stops
    sending them to it until it is back."""

    name: ClassVar[str] = "service.address_lost"
    interface: str
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressBack(Event):
    name: ClassVar[str] = "service.address_back"
    interface: str
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsDropped(Event):
    name: ClassVar[str] = "events.dropped"
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportExported(Event):
    name: ClassVar[str] = "report.export"
    csv: str
    json: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeSent(Event):
    name: ClassVar[str] = "wol.sent"
    macs: list[str]
    interface: str


# -- DHCP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpClientEvent(Event):
    """What a client's request said about it; every DHCP event about one client carries it."""

    optional: ClassVar[frozenset[str]] = _optional("ipxe")
    xid: int = 0
    arch: int | None = None  # option 93
    vendor_class: str | None = None  # option 60
    user_class: str | None = None  # option 77 ("iPXE")
    uuid: str | None = None  # option 97
    client_id: str | None = None  # option 61, hex
    params: list[int] = field(default_factory=list)  # option 55
    ipxe: bool | None = None  # True when the request came from iPXE

    @property
    def netboot(self) -> bool:
        """A network-boot client (firmware PXE / HTTP boot, or iPXE), not an OS's own DHCP."""
        vendor = self.vendor_class or ""
        return bool(self.ipxe) or vendor.startswith(("PXEClient", "HTTPClient"))


_REQUEST_OPTIONAL = _optional("ipxe", "requested", "server_id", "port")
_REPLY_OPTIONAL = _optional("ipxe", "ip", "file", "reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpDiscover(DhcpClientEvent):
    name: ClassVar[str] = "dhcp.discover"
    optional: ClassVar[frozenset[str]] = _REQUEST_OPTIONAL
    requested: str | None = None
    server_id: str | None = None
    port: int | None = None  # 4011 when it came to the proxyDHCP port


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpRequest(DhcpClientEvent):
    name: ClassVar[str] = "dhcp.request"
    optional: ClassVar[frozenset[str]] = _REQUEST_OPTIONAL
    requested: str | None = None  # option 50
    server_id: str | None = None  # option 54: the server the client chose
    port: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpReply(DhcpClientEvent):
    """What pxetui answered; `ip` is the client's address (in proxy mode, the one it has)."""

    optional: ClassVar[frozenset[str]] = _REPLY_OPTIONAL
    ip: str | None = None
    file: str | None = None  # the boot file (TFTP name or URL) the answer named
    reason: str | None = None  # why a NAK


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpOffer(DhcpReply):
    name: ClassVar[str] = "dhcp.offer"


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpAck(DhcpReply):
    name: ClassVar[str] = "dhcp.ack"


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpNak(DhcpReply):
    name: ClassVar[str] = "dhcp.nak"


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpRival(Event):
    """Another DHCP server answered on the segment, or listens on UDP 67 on this machine."""

    name: ClassVar[str] = "dhcp.rival"
    optional: ClassVar[frozenset[str]] = _optional(
        "process", "switched_to", "reason", "grub_server", "grub_advice"
    )
    mode: str  # pxetui's mode when it was seen
    server_id: str  # a local listener: the address it is bound to ("0.0.0.0": all)
    server_mac: str  # a local listener: the served interface's own MAC
    message: str  # "offer" / "ack"; "listening": a socket on UDP 67 here, no reply seen
    offers_address: bool
    subnet: str | None = None
    router: str | None = None
    next_server: str | None = None
    boot_file: str | None = None
    process: str | None = None  # a server on this machine: "dnsmasq (pid 1234), bound to br0"
    switched_to: str | None = None  # "proxy": pxetui stopped handing out addresses because of it
    reason: str | None = None  # why pxetui switched (or, with --force, why it did not)
    grub_server: str | None = None  # where upstream GRUB, booted via proxyDHCP, asks for grub.cfg
    # In proxy mode, a server that hands out addresses and does not name pxetui as the
    # next-server: why a Secure Boot PC's Debian/Ubuntu GRUB will stop, and what to change.
    grub_advice: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpLeasesRestored(Event):
    name: ClassVar[str] = "dhcp.leases"
    restored: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpDecline(Event):
    """A client said an address is in use (DHCPDECLINE); `accepted` if it left the pool.

    Not a DhcpClientEvent: a decline says nothing about a boot, and a forged one must not
    move a machine on.
    """

    name: ClassVar[str] = "dhcp.decline"
    ip: str | None  # the declined address (option 50); None if the packet named none
    accepted: bool  # only the client the address is bound to can take it out of the pool
    reason: str


# -- TFTP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TftpStart(Event):
    name: ClassVar[str] = "tftp.start"
    optional: ClassVar[frozenset[str]] = _optional("kind", "answer")
    file: str
    client: str
    total: int | None
    blksize: int
    windowsize: int
    options: dict[str, str] = field(default_factory=dict)
    # What is served, named as the HTTP service names it (the stage it means): loader,
    # script (a grub.cfg rendered for the PC), kernel, initrd. Unset: a loader.
    kind: str | None = None
    answer: str | None = None  # a rendered grub.cfg: bootstrap, menu, local, or the profile booted


@dataclass(frozen=True, slots=True, kw_only=True)
class TftpProgress(Event):
    name: ClassVar[str] = "tftp.progress"
    file: str
    client: str
    bytes: int
    total: int | None
    rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TftpDone(Event):
    """A transfer ended (or a request was refused: ok false, and no transfer figures)."""

    name: ClassVar[str] = "tftp.done"
    optional: ClassVar[frozenset[str]] = _optional(
        "seconds", "blksize", "windowsize", "retransmits", "segmented", "probe"
    )
    file: str
    client: str
    bytes: int
    total: int | None
    rate: float
    ok: bool
    reason: str
    seconds: float | None = None
    blksize: int | None = None
    windowsize: int | None = None
    retransmits: int | None = None
    segmented: int | None = None  # windows sent in one send (UDP segmentation offload)
    probe: bool | None = None  # only the size was asked (tsize, then error 8)


# -- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest(Event):
    """A request was answered; `kind` is script, config, loader, kernel, initrd, iso or report."""

    name: ClassVar[str] = "http.request"
    optional: ClassVar[frozenset[str]] = _optional("answer", "client_info", "profile", "method", "range")
    path: str
    kind: str
    file: str
    total: int
    client: str
    answer: str | None = None  # boot scripts: which answer (profile, menu, local, probe)
    client_info: dict[str, str] | None = None  # what iPXE said about the PC
    profile: str | None = None  # install files: for which profile
    method: str | None = None  # files: GET or HEAD
    range: str | None = None  # files: the Range header


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProgress(Event):
    name: ClassVar[str] = "http.progress"
    path: str
    kind: str
    file: str
    client: str
    bytes: int
    total: int
    rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpDone(Event):
    name: ClassVar[str] = "http.done"
    optional: ClassVar[frozenset[str]] = _optional("client", "reason")
    path: str
    kind: str
    file: str
    client: str | None = None
    bytes: int
    total: int
    rate: float
    ok: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MenuSelect(Event):
    name: ClassVar[str] = "menu.select"
    choice: str
    client: str
    # The menu's default, taken because nobody chose within --menu-timeout (not a key press).
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallDone(Event):
    name: ClassVar[str] = "install.done"
    client: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallFailed(Event):
    name: ClassVar[str] = "install.failed"
    reason: str
    client: str


# -- package proxy ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyStats(Event):
    """The package proxy's figures, sent every few seconds while they change (and once at start).

    `clients` is bytes served per client address since the proxy started: the registry credits
    them to the machine holding each address. `from_cache` is what the room did not have to
    download (bytes served that squid's log marks as from its cache); `upstream_ok` says whether
    the laptop reaches a package host now (None: not asked yet).
    """

    name: ClassVar[str] = "proxy.stats"
    optional: ClassVar[frozenset[str]] = _optional("upstream_ok", "warning")
    url: str
    upstream_bytes: int
    served_bytes: int
    from_cache: int
    cache_bytes: int
    files: int
    refused: int
    clients: Mapping[str, int] = field(default_factory=dict)
    uplink: bool = True  # some default route leaves through another interface than the lab's
    upstream_ok: bool | None = None
    warning: str | None = None  # what to tell the operator while there is no uplink


# -- IPv6 router adverts ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterAdvertSent(Event):
    name: ClassVar[str] = "ra.answer"
    to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterSeen(Event):
    name: ClassVar[str] = "ra.router"
    router: str


# -- the operator's plan ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanEvent(Event):
    """The plan changed; views redraw, the state file was already written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanAssign(PlanEvent):
    name: ClassVar[str] = "plan.assign"
    optional: ClassVar[frozenset[str]] = _optional("hostname", "policy")
    profile: str
    hostname: str | None = None
    policy: bool | None = None  # True: the unknown-machines policy assigned it


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanUnassign(PlanEvent):
    name: ClassVar[str] = "plan.unassign"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanAdd(PlanEvent):
    name: ClassVar[str] = "plan.add"
    hostname: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanBootLocal(PlanEvent):
    name: ClassVar[str] = "plan.boot_local"
    optional: ClassVar[frozenset[str]] = _optional("reason")
    boot_local: bool
    reason: str | None = None  # "installed": the installer reported done


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRemove(PlanEvent):
    name: ClassVar[str] = "plan.remove"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanUnknownPolicy(PlanEvent):
    name: ClassVar[str] = "plan.unknown_policy"
    profile: str | None
    remaining: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanImport(PlanEvent):
    name: ClassVar[str] = "plan.import"
    source: str
    count: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        ServiceReady, Error, AddressLost, AddressBack, EventsDropped, ReportExported, WakeSent,
        DhcpDiscover, DhcpRequest, DhcpOffer, DhcpAck, DhcpNak, DhcpRival, DhcpLeasesRestored,
        DhcpDecline,
        TftpStart, TftpProgress, TftpDone,
        HttpRequest, HttpProgress, HttpDone, MenuSelect, InstallDone, InstallFailed,
        RouterAdvertSent, RouterSeen, ProxyStats,
        PlanAssign, PlanUnassign, PlanAdd, PlanBootLocal, PlanRemove, PlanUnknownPolicy, PlanImport,
    )
}  # fmt: skip


def make_event(name: str, mac: str | None = None, **fields: Any) -> Event:
    """The event called `name`, built by its class: an unknown name or field is a TypeError.

    For code that has the name as data (a JSON line read back, a test table).
    """
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise TypeError(f"no event is called {name!r}")
    return cls(mac=mac, **fields)


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, always delivered on the bus's event loop.

    Services running in threads (tftpy) and operator actions from the TUI's thread emit
    through the same call; the bus hops onto the loop with `call_soon_threadsafe`, so the
    session's own subscribers never need locks. A view living on another thread (the TUI)
    is called on the bus's thread and must hand the event over itself.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._pending: deque[Event] = deque()
        self._delivering = False

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def on_loop_thread(self) -> bool:
        """True when called on the thread that runs the bus's loop (or no loop is bound)."""
        return self._loop is None or threading.get_ident() == self._loop_thread

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event: Event) -> None:
        self.publish(event)

    def publish(self, event: Event) -> None:
        loop = self._loop
        if loop is not None and not self.on_loop_thread():
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._deliver, event)
            return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        """Hand `event` to every subscriber, then whatever they emitted meanwhile, in order.

        A subscriber that emits while it handles an event (the Session assigning a profile
        because of a DISCOVER) queues the new event, so every view sees the cause first.
        """
        self._pending.append(event)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                current = self._pending.popleft()
                for subscriber in list(self._subscribers):
                    try:
                        subscriber(current)
                    except Exception:
                        # One broken view must not stop the others (or the service that emitted).
                        _log.exception("event subscriber failed on %s", current.name)
        finally:
            self._delivering = False
