"""Events as sentences an operator reads at a glance: "52:54:00:12:34:01 got 198.18.0.100 (x64 UEFI)".

The event log used to print every field (`services={'tftp': {...`, `params=[1, 3, 6,`): right
for a developer, noise for the person in the lab. One small function per event class says
what happened, with the numbers that matter; the raw line (`Event.describe`) stays one key
away in the TUI and in the machine's details. No textual here: pure text, unit-tested.

Two views print them: the TUI's event log and `pxetui IFACE --headless` without --json
(`headless.py`), so this lives in the model, below both; the JSON lines stay `Event.to_json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from pxetui.boot import firmware
from pxetui.model.events import (
    AddressBack,
    AddressLost,
    DhcpAck,
    DhcpClientEvent,
    DhcpDecline,
    DhcpDiscover,
    DhcpLeasesRestored,
    DhcpNak,
    DhcpOffer,
    DhcpRequest,
    DhcpRival,
    Error,
    Event,
    EventsDropped,
    HttpDone,
    HttpProgress,
    HttpRequest,
    InstallDone,
    InstallFailed,
    MenuSelect,
    PlanAdd,
    PlanAssign,
    PlanBootLocal,
    PlanImport,
    PlanRemove,
    PlanUnassign,
    PlanUnknownPolicy,
    ProxyStats,
    ReportExported,
    RouterAdvertSent,
    RouterSeen,
    ServiceReady,
    TftpDone,
    TftpProgress,
    TftpStart,
    WakeSent,
)
from pxetui.model.units import rate, size

E = TypeVar("E", bound=Event)
_SENTENCES: dict[type[Event], Callable[[Any], str]] = {}


def _says(cls: type[E]) -> Callable[[Callable[[E], str]], Callable[[E], str]]:
    def register(fn: Callable[[E], str]) -> Callable[[E], str]:
        _SENTENCES[cls] = fn
        return fn

    return register


def sentence(event: Event) -> str:
    """What `event` means, without the time; the raw fields for a class nobody wrote a sentence for."""
    for cls in type(event).__mro__:
        say = _SENTENCES.get(cls)
        if say is not None:
            return say(event)
    return event.describe().split(" ", 1)[1]


# A PC's strings are made harmless where they are decoded; this keeps a terminal safe from any
# field that was not (an operator's file name, a new event): the line is printed to a terminal.
_CONTROLS = {c: "?" for c in (*range(0x20), *range(0x7F, 0xA0))}


def log_line(event: Event) -> str:
    line = f"{time.strftime('%H:%M:%S', time.localtime(event.ts))} {sentence(event)}"
    return line if line.isprintable() else line.translate(_CONTROLS)


def _who(event: Event) -> str:
    return event.mac or "a PC"


def _machine(arch: int | None, ipxe: bool | None) -> str:
    """`(x64 UEFI)`, `(iPXE)`; empty when the PC did not say what it is."""
    if ipxe:
        return " (iPXE)"
    row = firmware.client_arch(arch)
    if row is not None:
        return f" ({row.name})"
    return f" (option 93 = {arch})" if arch is not None else ""


def _percent(done: int, total: int | None) -> str:
    return f" {100 * done / total:.0f} %" if total else ""


def _speed(value: float) -> str:
    return f" {rate(value)}" if value else ""


# -- session ------------------------------------------------------------------------------


@_says(ServiceReady)
def _ready(e: ServiceReady) -> str:
    names = ", ".join(name.upper() for name in e.services) or "no boot services"
    where = f"{e.interface} {e.address}" if e.address else e.interface
    return f"serving {names} on {where} in {e.mode} mode (HTTP port {e.http_port}); state in {e.state_dir}"


@_says(Error)
def _error(e: Error) -> str:
    who = f"{e.mac}: " if e.mac else ""
    service = f"{e.service} " if e.service else ""
    repeats = f" ({e.count} times so far)" if e.count and e.count > 1 else ""
    lead = "pxetui stops: " if e.fatal else f"{service}problem: "
    return f"{lead}{who}{e.reason}{repeats}"


@_says(AddressLost)
def _address_lost(e: AddressLost) -> str:
    return f"{e.interface} lost {e.address} (cable pulled?): PCs cannot reach pxetui until it is back"


@_says(AddressBack)
def _address_back(e: AddressBack) -> str:
    return f"{e.interface} has {e.address} again: serving"


@_says(EventsDropped)
def _dropped(e: EventsDropped) -> str:
    return f"{e.count} events were not shown (too many at once); the machines' timelines have them"


@_says(ReportExported)
def _report(e: ReportExported) -> str:
    return f"report written: {e.csv} and {e.json}"


@_says(WakeSent)
def _wake(e: WakeSent) -> str:
    return f"wake-on-LAN sent to {len(e.macs)} PC(s) on {e.interface}"


# -- DHCP ---------------------------------------------------------------------------------


@_says(DhcpDiscover)
def _discover(e: DhcpDiscover) -> str:
    return f"{_who(e)} asks for an address{_machine(e.arch, e.ipxe)}"


@_says(DhcpRequest)
def _request(e: DhcpRequest) -> str:
    what = f" {e.requested}" if e.requested else " an address"
    return f"{_who(e)} requests{what}{_machine(e.arch, e.ipxe)}"


def _boot_file(e: DhcpClientEvent, file: str | None) -> str:
    return f", boot file {file}" if file else ""


@_says(DhcpOffer)
def _offer(e: DhcpOffer) -> str:
    what = f"offered {e.ip}" if e.ip else "offered boot information"
    return f"{_who(e)} {what}{_boot_file(e, e.file)}"


@_says(DhcpAck)
def _ack(e: DhcpAck) -> str:
    what = f"got {e.ip}" if e.ip else "got its boot information"
    return f"{_who(e)} {what}{_machine(e.arch, e.ipxe)}{_boot_file(e, e.file)}"


@_says(DhcpNak)
def _nak(e: DhcpNak) -> str:
    why = f": {e.reason}" if e.reason else ""
    return f"{_who(e)} was refused the address it asked for{why}; it asks again"


@_says(DhcpRival)
def _rival(e: DhcpRival) -> str:
    where = e.process or f"{e.server_id} ({e.server_mac})"
    offers = "hands out addresses" if e.offers_address else "answers without addresses"
    if e.message == "listening":
        offers = "listens on UDP 67"
    switched = f"; pxetui switched to {e.switched_to} mode" if e.switched_to else ""
    why = f" ({e.reason})" if e.reason else ""
    grub = f". Secure Boot PCs: {e.grub_advice}" if e.grub_advice else ""
    return f"another DHCP server {where} {offers}{switched}{why}{grub}"


@_says(DhcpLeasesRestored)
def _leases(e: DhcpLeasesRestored) -> str:
    return f"{e.restored} address lease(s) kept from the last session"


@_says(DhcpDecline)
def _decline(e: DhcpDecline) -> str:
    what = e.ip or "an address"
    outcome = "taken out of the pool" if e.accepted else f"ignored: {e.reason}"
    return f"{_who(e)} says {what} is in use by someone else ({outcome})"


# -- TFTP ---------------------------------------------------------------------------------


@_says(TftpStart)
def _tftp_start(e: TftpStart) -> str:
    total = f" ({size(e.total)})" if e.total else ""
    return f"{_who(e)} loading {e.file}{total} over TFTP"


@_says(TftpProgress)
def _tftp_progress(e: TftpProgress) -> str:
    return f"{_who(e)} loading {e.file}{_percent(e.bytes, e.total)}{_speed(e.rate)}"


@_says(TftpDone)
def _tftp_done(e: TftpDone) -> str:
    if e.probe:
        return f"{_who(e)} asked the size of {e.file}"
    if not e.ok:
        return f"{_who(e)} could not load {e.file}: {e.reason or 'the transfer failed'}"
    took = f" in {e.seconds:.1f} s" if e.seconds else ""
    return f"{_who(e)} loaded {e.file} ({size(e.bytes)}{took}{_speed(e.rate)})"


# -- HTTP ---------------------------------------------------------------------------------

_SCRIPT_ANSWERS = {
    "menu": "the boot menu",
    "local": "boot its local disk",
    "menu-timeout": "boot its local disk (the menu's default)",
    "probe": "the probe script",
    "wait-fetch": "wait: its profile is still being fetched",
}


@_says(HttpRequest)
def _http_request(e: HttpRequest) -> str:
    who = _who(e)
    if e.kind == "script":
        answer = e.answer or ""
        if e.file == "select":
            return f"{who} chose {answer} from the menu"
        told = _SCRIPT_ANSWERS.get(answer, f"install {answer}" if answer else "its boot script")
        return f"{who} fetched its boot script: {told}"
    if e.kind == "config":
        return f"{who}: the installer fetched its answers ({e.file})"
    if e.kind == "report":
        return f"{who} reports {e.file}"
    if e.method == "HEAD":
        return f"{who} asked the size of {e.file}"
    total = f" ({size(e.total)})" if e.total else ""
    return f"{who} loading {e.kind} {e.file}{total}"


@_says(HttpProgress)
def _http_progress(e: HttpProgress) -> str:
    return f"{_who(e)} loading {e.file}{_percent(e.bytes, e.total)}{_speed(e.rate)}"


@_says(HttpDone)
def _http_done(e: HttpDone) -> str:
    if not e.ok:
        return f"{_who(e)} stopped loading {e.file} at {size(e.bytes)}: {e.reason or 'connection closed'}"
    if e.kind in ("script", "config", "report"):
        return f"{_who(e)} got {e.file} ({size(e.bytes)})"
    return f"{_who(e)} loaded {e.file} ({size(e.bytes)}{_speed(e.rate)})"


@_says(MenuSelect)
def _menu(e: MenuSelect) -> str:
    if e.timed_out:
        return f"{_who(e)}: nobody chose from the menu in time, so it takes the default, {e.choice}"
    return f"{_who(e)} chose {e.choice} from the menu"


@_says(InstallDone)
def _installed(e: InstallDone) -> str:
    return f"{_who(e)} installed: the installer reported success"


@_says(InstallFailed)
def _install_failed(e: InstallFailed) -> str:
    return f"{_who(e)} install FAILED: {e.reason}"


# -- IPv6 ---------------------------------------------------------------------------------


@_says(RouterAdvertSent)
def _ra(e: RouterAdvertSent) -> str:
    return f"told {e.to} there is no IPv6 router here (keeps its installer from waiting for one)"


@_says(RouterSeen)
def _router(e: RouterSeen) -> str:
    return f"an IPv6 router answers on this network: {e.router}"


# -- the plan -----------------------------------------------------------------------------


@_says(PlanAssign)
def _assign(e: PlanAssign) -> str:
    name = f" as {e.hostname}" if e.hostname else ""
    why = " (the policy for unknown PCs)" if e.policy else ""
    return f"{_who(e)} will get {e.profile}{name}{why}"


@_says(PlanUnassign)
def _unassign(e: PlanUnassign) -> str:
    return f"{_who(e)} gets the menu next boot"


@_says(PlanAdd)
def _add(e: PlanAdd) -> str:
    name = f" as {e.hostname}" if e.hostname else ""
    return f"{_who(e)} added to the plan{name}"


@_says(PlanBootLocal)
def _boot_local(e: PlanBootLocal) -> str:
    if not e.boot_local:
        return f"{_who(e)} installs again at its next network boot"
    if e.reason == "installed":
        return f"{_who(e)} boots its disk from now on (installed; l installs again)"
    return f"{_who(e)} boots its local disk next time"


@_says(PlanRemove)
def _remove(e: PlanRemove) -> str:
    return f"{_who(e)} taken off the plan"


@_says(PlanUnknownPolicy)
def _policy(e: PlanUnknownPolicy) -> str:
    if e.profile is None:
        return "PCs not in the plan get the menu"
    return f"the next {e.remaining} PC(s) not in the plan get {e.profile}"


@_says(PlanImport)
def _import(e: PlanImport) -> str:
    return f"imported {e.count} machine(s) from {e.source}"


@_says(ProxyStats)
def _proxy_stats(e: ProxyStats) -> str:
    return (
        f"package proxy: {size(e.served_bytes)} served to {len(e.clients)} PC(s),"
        f" {size(e.upstream_bytes)} from upstream, {size(e.from_cache)} from its cache"
        f" (cache {size(e.cache_bytes)})"
    )
