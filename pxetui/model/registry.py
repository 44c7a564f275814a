"""Per-MAC machine state: how far each PC got, when, and what it is transferring now.

The registry is fed events (packets -> service -> event -> registry) and nothing else. A boot
moves forward through the stages; a fresh DHCP DISCOVER after the PC got past the menu (or
finished) means it rebooted, and starts a new boot cycle with a new timeline.

An address has one holder: the machine DHCP last saw take it. When a lease expires and the
address goes to another PC (or a router in proxy mode reuses it), the new holder gets it at
once and the old one loses it, so HTTP serves that address the new holder's files and TFTP
and HTTP credit its transfers to the new holder. DHCP, TFTP and HTTP ask `mac_for_ip` per
request: it is a dict lookup in an index kept in step with `Machine.ip`.

Secure Boot: a UEFI PC that fetched the iPXE loader and comes back to DHCP without ever
having spoken as iPXE was refused it by its firmware (Secure Boot on, iPXE unsigned). The
machine is marked (`secure_boot = "ipxe-refused"`, kept across boots and restarts) and the
DHCP answer gives it the signed chain (shim + GRUB) from then on (`needs_signed_chain`).
A PC that then fetches the whole shim and comes back to DHCP without asking for anything after
it (its GRUB, a grub.cfg) refused the shim too: its Secure Boot trusts neither (a Lenovo with
the Microsoft third-party CA off, a Surface in Secured-core mode). It is marked
`secure_boot = "all-refused"` with the firmware settings that would let it boot in its
last_error. Only a shim fetched whole counts: one whose transfer stopped is a network fault,
and a PC whose shim goes on to ask for its GRUB (the operator changed its firmware) goes back
to "ipxe-refused".

Only PCs that matter get a machine: one in the plan (plan events), one that network-boots
(a DHCP event from PXE / HTTP-boot firmware or iPXE), and from then on every event about it.
A phone's DHCP in full mode, a forged DECLINE or an `error` naming a MAC make none: 5000 DHCP
requests from random MACs once grew machines.json to 2.2 MB, slowed every DHCP answer from
1.6 ms to 46 ms and named the next real PC pc-5206. The DHCP service also caps how many
network-boot strangers it reports (services/dhcp/server.py); MAX_MACHINES here is the last
line: past it, packets name no new machine whatever reports them (plan events still do).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from pxetui.boot.firmware import firmware_label, is_ipxe_loader
from pxetui.host.vendors import vendor_for
from pxetui.model.events import (
    DhcpAck,
    DhcpClientEvent,
    DhcpDiscover,
    DhcpNak,
    DhcpRequest,
    DhcpRival,
    Error,
    Event,
    HttpDone,
    HttpProgress,
    HttpRequest,
    InstallDone,
    InstallFailed,
    MenuSelect,
    PlanEvent,
    PlanRemove,
    ProxyStats,
    TftpDone,
    TftpProgress,
    TftpStart,
)


class Stage(StrEnum):
    WAITING = "waiting"
    DHCP = "dhcp"
    LOADER = "loader"
    MENU = "menu"
    KERNEL = "kernel"
    INITRD = "initrd"
    ISO = "iso"
    INSTALLING = "installing"
    DONE = "done"
    FAILED = "failed"

    @property
    def order(self) -> int:
        return _ORDER[self]

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def terminal(self) -> bool:
        return self in (Stage.DONE, Stage.FAILED)


_ORDER = {stage: i for i, stage in enumerate(Stage)}
_LABELS = {
    Stage.WAITING: "waiting for power-on",
    Stage.DHCP: "DHCP",
    Stage.LOADER: "loader",
    Stage.MENU: "menu",
    Stage.KERNEL: "kernel",
    Stage.INITRD: "initrd",
    Stage.ISO: "ISO",
    Stage.INSTALLING: "installing",
    Stage.DONE: "done",
    Stage.FAILED: "failed",
}

# Boot-script answers (iPXE script, rendered grub.cfg) that send a PC to its own disk.
LOCAL_ANSWERS = frozenset({"local", "menu-timeout"})
IPXE_REFUSED = "ipxe-refused"  # Machine.secure_boot: the firmware refused iPXE (Secure Boot)
ALL_REFUSED = "all-refused"  # Machine.secure_boot: it refused the Microsoft-signed shim too
# What the operator can change in the firmware of a PC that refuses every loader (the short
# form fits the TUI's Progress column; the details and machines.json have the whole advice).
REFUSED_ADVICE_SHORT = "allow the Microsoft 3rd-party UEFI CA in its firmware setup, or Secure Boot off"
REFUSED_ADVICE = (
    "in its firmware setup: allow the Microsoft 3rd-party UEFI CA (Lenovo: 'Allow Microsoft 3rd"
    " Party UEFI CA'), or turn Secure Boot off; Surface: Secured-core off"
)
# A signed chain's first loader: shim (shimx64.efi, Debian's d-i bootnetx64.efi, iPXE 2.x's
# ipxe-shimx64.efi), or the HTTP Boot disk image carrying it (boot/ramdisk.py: SHIM.img).
_SHIM_LOADER = re.compile(r"(^|/)(ipxe-)?(shim|bootnet)(x64|aa64|ia32|arm)\.efi(\.img)?$", re.IGNORECASE)
# The GRUB a shim loads from beside itself (shim's DEFAULT_LOADER per architecture).
_SIGNED_GRUB = re.compile(r"(^|/)grub(x64|aa64|ia32|arm)\.efi$", re.IGNORECASE)
GRUB_ELSEWHERE = "Secure Boot in proxy mode"  # the start of the last_error of such a PC

# What the HTTP service calls each kind of file it serves, and the stage fetching it means.
# TFTP names what it serves the same way (a grub.cfg is a "script"); unnamed is a loader.
HTTP_KIND_STAGES = {
    "script": Stage.MENU,
    "kernel": Stage.KERNEL,
    "initrd": Stage.INITRD,
    "iso": Stage.ISO,
    "config": Stage.INSTALLING,
}


@dataclass(slots=True)
class TransferProgress:
    file: str
    bytes: int = 0
    total: int | None = None
    rate: float = 0.0  # bytes per second
    started: float = field(default_factory=time.time)
    finished: bool = False

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return min(100.0, 100.0 * self.bytes / self.total)


_TRANSFER_FIELDS = tuple(f.name for f in fields(TransferProgress))


@dataclass(slots=True)
class Machine:
    mac: str
    vendor: str = ""
    stage: Stage = Stage.WAITING
    ip: str | None = None
    arch: int | None = None
    firmware: str = ""
    first_seen: float | None = None
    last_seen: float | None = None
    boots: int = 0
    stage_times: dict[str, float] = field(default_factory=dict)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    transfer: TransferProgress | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    menu_choice: str | None = None
    last_error: str | None = None
    secure_boot: str | None = None  # IPXE_REFUSED once its firmware refused iPXE, ALL_REFUSED: the shim too
    ipxe_loaded: bool = False  # this boot: the firmware fetched a whole iPXE loader
    spoke_ipxe: bool = False  # this boot: iPXE ran (a DHCP request said so)
    # The firmware fetched a whole shim and asked for nothing after it yet: refused, if the PC
    # comes back to DHCP next. Kept over the DISCOVER that starts a new boot, which reads it.
    shim_loaded: bool = False
    # This boot: pxetui told it to boot its own disk (menu default, a local choice, `l`): it is
    # done with the network, not stuck at the menu.
    booted_local: bool = False
    # This boot, in proxy mode: it fetched the signed GRUB, whose config the router's DHCP
    # answer sends it to look for elsewhere: what to change (boot/grub_proxy.py). Cleared by
    # its next request here (a GRUB that reads the proxy offer asks pxetui at once).
    grub_elsewhere: str | None = None
    proxy_bytes: int = 0  # package bytes the proxy served it, over all its boots and sessions

    def to_dict(self) -> dict[str, Any]:
        """A copy that shares nothing mutable with the machine (a writer thread encodes it).

        Written out by hand: dataclasses.asdict deep-copies field by field and took 30 ms
        for 300 machines, on the loop the services answer from.
        """
        transfer = self.transfer
        return {
            "mac": self.mac,
            "vendor": self.vendor,
            "stage": self.stage.value,
            "ip": self.ip,
            "arch": self.arch,
            "firmware": self.firmware,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "boots": self.boots,
            "stage_times": dict(self.stage_times),
            "timeline": [list(t) for t in self.timeline],
            "transfer": None if transfer is None else {f: getattr(transfer, f) for f in _TRANSFER_FIELDS},
            "fingerprint": dict(self.fingerprint),  # values come whole from events, never changed in place
            "menu_choice": self.menu_choice,
            "last_error": self.last_error,
            "secure_boot": self.secure_boot,
            "ipxe_loaded": self.ipxe_loaded,
            "spoke_ipxe": self.spoke_ipxe,
            "shim_loaded": self.shim_loaded,
            "booted_local": self.booted_local,
            "grub_elsewhere": self.grub_elsewhere,
            "proxy_bytes": self.proxy_bytes,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Machine:
        doc = dict(doc)
        doc["stage"] = Stage(doc.get("stage", "waiting"))
        doc["timeline"] = [tuple(t) for t in doc.get("timeline", [])]
        transfer = doc.get("transfer")
        doc["transfer"] = TransferProgress(**transfer) if transfer else None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})

    @property
    def elapsed(self) -> float | None:
        """Seconds since the first packet of the current boot."""
        start = self.stage_times.get(Stage.DHCP.value) or self.first_seen
        if start is None:
            return None
        end = self.stage_times.get(Stage.DONE.value) or self.stage_times.get(Stage.FAILED.value)
        return (end or time.time()) - start


@dataclass(frozen=True, slots=True)
class Change:
    machine: Machine
    stage_changed: bool
    new: bool


# Machines a packet may still create; past it only the plan adds any. Above what the DHCP
# service lets through per session (services/dhcp/server.py MAX_STRANGERS), so it only bites
# when a state directory kept growing over many sessions.
MAX_MACHINES = 5000


def ipxe_refused(machine: Machine) -> bool:
    """Its firmware fetched iPXE this boot and iPXE never spoke: the firmware refused it."""
    return machine.ipxe_loaded and not machine.spoke_ipxe


def needs_signed_chain(machine: Machine | None) -> bool:
    """Whether `--secure-boot auto` gives this PC the signed chain on its next DHCP attempt.

    Asked while the DHCP answer is being made, before the registry has seen that request:
    a refusal pending (iPXE fetched, never ran) counts as much as the mark it will become.
    """
    return machine is not None and (
        machine.secure_boot in (IPXE_REFUSED, ALL_REFUSED) or ipxe_refused(machine)
    )


def is_signed_grub(name: str) -> bool:
    """Whether a served file is the GRUB a shim loads from beside itself (grubx64.efi, ...)."""
    return _SIGNED_GRUB.search(name) is not None


def is_shim_loader(name: str) -> bool:
    """Whether a served file is a signed chain's first loader (a shim, or the disk image of one)."""
    return _SHIM_LOADER.search(name) is not None


def refused_every_loader(machine: Machine) -> str:
    """What a PC marked ALL_REFUSED tried and its firmware refused, as a sentence."""
    if any(step == "secure-boot" and detail == "iPXE refused" for _, step, detail in machine.timeline):
        return "refused iPXE and the Microsoft-signed shim: its Secure Boot trusts neither"
    return "refused the Microsoft-signed shim: its Secure Boot does not trust it"  # --secure-boot signed


def creates_machine(event: Event) -> bool:
    """Whether `event` may add a machine the registry does not have: plan events and
    network-boot DHCP events only (see the module docstring). A client architecture (option
    93) counts as network boot, as it does for the DHCP answer: only boot firmware sends it."""
    if isinstance(event, PlanEvent):
        return True
    return isinstance(event, DhcpClientEvent) and (event.netboot or event.arch is not None)


class Registry:
    """All machines seen or planned, keyed by normalised MAC."""

    def __init__(self, max_machines: int = MAX_MACHINES) -> None:
        self.machines: dict[str, Machine] = {}
        self.max_machines = max_machines
        self.refused = 0  # events about a new MAC that made no machine (not network boot, or full)
        # ip -> MAC of its holder. Every change of a Machine.ip goes through `_moved` (from
        # `apply`, `set_ip` and `load_document`); `mac_for_ip` checks each answer against the
        # machine, so one removed from `machines` is never named.
        self._holders: dict[str, str] = {}
        self.proxy: ProxyStats | None = None  # the package proxy's last figures
        # server id -> its advice, for each server handing out addresses next to pxetui in
        # proxy mode whose answers send a signed GRUB elsewhere (DhcpRival.grub_advice)
        self.grub_advice: dict[str, str] = {}
        self._proxy_counted: dict[str, int] = {}  # client address -> its bytes credited so far

    def get(self, mac: str) -> Machine | None:
        return self.machines.get(mac)

    def snapshot(self) -> list[Machine]:
        """The machines in registry order, safe to iterate from another thread than the feeder's.

        `list()` of a dict copies it in C without releasing the GIL: a machine added on the
        session loop meanwhile cannot break a view's loop ("dictionary changed size").
        """
        return list(self.machines.values())

    def macs(self) -> list[str]:
        """The MACs in registry order (see `snapshot`)."""
        return list(self.machines)

    def ensure(self, mac: str) -> Machine:
        machine = self.machines.get(mac)
        if machine is None:
            machine = Machine(mac=mac, vendor=vendor_for(mac))
            self.machines[mac] = machine
        return machine

    def mac_for_ip(self, ip: str) -> str | None:
        """The machine that holds `ip` now (the newest holder), or None."""
        mac = self._holders.get(ip)
        if mac is None:
            return None
        machine = self.machines.get(mac)
        if machine is None or machine.ip != ip:
            del self._holders[ip]  # the machine left the registry, or its address was changed in place
            return None
        return mac

    def set_ip(self, mac: str, ip: str | None) -> None:
        """Record that `mac` holds `ip` now (None: no address); a previous holder loses it."""
        machine = self.ensure(mac)
        held, machine.ip = machine.ip, ip
        self._moved(machine, held)

    def _moved(self, machine: Machine, held: str | None, *, weak: bool = False) -> None:
        """`machine.ip` changed from `held`: the index follows and the address's old holder loses it.

        A `weak` claim (a REQUEST asking back an old address, which the server may NAK) never
        takes an address another machine holds: it is undone instead.
        """
        if held is not None and self._holders.get(held) == machine.mac:
            del self._holders[held]
        ip = machine.ip
        if ip is None:
            return
        holder = self.mac_for_ip(ip)
        if holder is not None and holder != machine.mac:
            if weak:
                machine.ip = held
                if held is not None:
                    self._holders[held] = machine.mac
                return
            self.machines[holder].ip = None
        self._holders[ip] = machine.mac

    def apply(self, event: Event) -> Change | None:
        """Fold one event into the machine it names; None for events about no machine."""
        if isinstance(event, ProxyStats):
            self._credit_proxy(event)
            return None
        if isinstance(event, DhcpRival):
            self._note_rival(event)
            return None
        if event.mac is None or isinstance(event, PlanRemove):
            return None
        if event.mac not in self.machines and not self._admits(event):
            self.refused += 1
            return None
        if isinstance(event, PlanEvent):
            # The operator's plan is not a sign of life: the machine is listed, but its first
            # and last seen (and so its place in boot order, its auto hostname) wait for a packet.
            new = event.mac not in self.machines
            return Change(machine=self.ensure(event.mac), stage_changed=new, new=new)
        new = event.mac not in self.machines
        machine = self.ensure(event.mac)
        before = machine.stage
        machine.last_seen = event.ts
        if machine.first_seen is None:
            machine.first_seen = event.ts
        held = machine.ip
        _fold(machine, event)
        self._note_grub(machine, event)
        if machine.ip != held:
            self._moved(machine, held, weak=_weak_claim(event))
        machine_changed_stage = machine.stage is not before
        return Change(machine=machine, stage_changed=machine_changed_stage or new, new=new)

    def _note_rival(self, event: DhcpRival) -> None:
        if event.message == "listening":
            return  # a socket on this machine: its answers, if any, come as their own events
        if event.grub_advice:
            self.grub_advice[event.server_id] = event.grub_advice
        else:
            self.grub_advice.pop(event.server_id, None)

    def _note_grub(self, machine: Machine, event: Event) -> None:
        """A whole signed GRUB fetched while a router's answers send it elsewhere: say what to
        change; any later request from the PC (its GRUB asked pxetui after all), or its firmware
        starting over, takes it back."""
        later = isinstance(event, (TftpStart, HttpRequest)) or (
            isinstance(event, DhcpDiscover) and event.netboot
        )
        if machine.grub_elsewhere is not None and later:
            if machine.last_error == machine.grub_elsewhere:
                machine.last_error = None
            machine.grub_elsewhere = None
        if not (isinstance(event, TftpDone) and event.ok and not event.probe and self.grub_advice):
            return
        if not is_signed_grub(event.file):
            return
        advice = "; ".join(dict.fromkeys(self.grub_advice.values()))
        machine.grub_elsewhere = machine.last_error = f"{GRUB_ELSEWHERE}: {advice}"
        machine.timeline.append((event.ts, "secure-boot", "GRUB fetched; its config is looked for elsewhere"))

    def _credit_proxy(self, event: ProxyStats) -> None:
        """Credit each client address's new bytes to the machine holding that address now.

        The proxy counts per address since it started; crediting the growth (not the total)
        keeps bytes with the machine that fetched them when an address later moves to another PC.
        An address no machine holds (a laptop on the switch) is credited to nobody.
        """
        self.proxy = event
        for address, total in event.clients.items():
            grown = total - self._proxy_counted.get(address, 0)
            self._proxy_counted[address] = total
            mac = self.mac_for_ip(address)
            if grown > 0 and mac is not None:
                self.machines[mac].proxy_bytes += grown

    def _admits(self, event: Event) -> bool:
        """May `event`, about a MAC without a machine, create one?"""
        if isinstance(event, PlanEvent):
            return True
        return creates_machine(event) and len(self.machines) < self.max_machines

    def to_document(self) -> dict[str, Any]:
        return {"version": 1, "machines": [m.to_dict() for m in self.machines.values()]}

    def load_document(self, doc: dict[str, Any] | None) -> None:
        if not doc:
            return
        for item in doc.get("machines", []):
            machine = Machine.from_dict(item)
            self.machines[machine.mac] = machine
        self._index_addresses()

    def _index_addresses(self) -> None:
        """Rebuild the address index; of machines saved with the same address, the last seen keeps it.

        (State written before addresses had one holder can name one address on several machines.)
        """
        self._holders.clear()
        with_address = [m for m in self.machines.values() if m.ip is not None]
        for machine in sorted(with_address, key=lambda m: m.last_seen or 0.0):
            self._moved(machine, None)


def _advance(machine: Machine, stage: Stage, ts: float, detail: str = "") -> None:
    """Move forward only; stages already passed in this boot are not revisited."""
    if stage.order <= machine.stage.order and not stage.terminal:
        return
    machine.stage = stage
    machine.stage_times.setdefault(stage.value, ts)
    machine.timeline.append((ts, stage.value, detail))


def _new_boot(machine: Machine, ts: float) -> None:
    machine.boots += 1
    machine.stage = Stage.WAITING
    machine.stage_times = {}
    machine.transfer = None
    machine.menu_choice = None
    machine.last_error = None
    machine.ipxe_loaded = machine.spoke_ipxe = machine.booted_local = False
    machine.grub_elsewhere = None
    machine.timeline.append((ts, "boot", f"boot #{machine.boots}"))


def _note_ipxe(machine: Machine, event: DhcpClientEvent) -> None:
    """iPXE spoke (it ran), or the firmware is back without it: the firmware refused iPXE."""
    if event.ipxe:
        machine.spoke_ipxe = True
        machine.shim_loaded = False  # iPXE 2.x's signed build: its shim ran
        return
    if not isinstance(event, DhcpDiscover) or not event.netboot or not ipxe_refused(machine):
        return
    machine.ipxe_loaded = False
    if machine.secure_boot != IPXE_REFUSED:
        machine.secure_boot = IPXE_REFUSED
        machine.last_error = (
            "Secure Boot: iPXE refused by the firmware; the signed chain (shim + GRUB) is next"
        )
        machine.timeline.append((event.ts, "secure-boot", "iPXE refused"))


def _note_shim(machine: Machine, event: DhcpClientEvent) -> None:
    """Back at DHCP with a whole shim fetched and nothing asked after it: the shim was refused."""
    if not isinstance(event, DhcpDiscover) or not event.netboot or not machine.shim_loaded:
        return
    machine.shim_loaded = False
    first = machine.secure_boot != ALL_REFUSED
    machine.secure_boot = ALL_REFUSED
    machine.last_error = f"Secure Boot: {refused_every_loader(machine)}; {REFUSED_ADVICE}"
    if first:
        machine.timeline.append((event.ts, "secure-boot", "shim refused too: every loader refused"))


def _shim_ran(machine: Machine, file: str, ts: float) -> None:
    """A request after the shim (its GRUB, a grub.cfg, signed iPXE): the shim ran."""
    if is_shim_loader(file):
        return  # the shim again (a size probe, a retry) says nothing about whether it ran
    machine.shim_loaded = False
    if machine.secure_boot == ALL_REFUSED:
        # Its firmware trusts the shim now (the operator changed a setting); iPXE stays refused.
        machine.secure_boot = IPXE_REFUSED
        machine.timeline.append((ts, "secure-boot", "shim accepted"))


def _on_dhcp(machine: Machine, event: DhcpClientEvent) -> None:
    _note_ipxe(machine, event)
    # Only a network-boot client (firmware PXE / HTTP boot, or iPXE) starts a new boot: the
    # installer's own DHCP (udhcpc, dhclient) during the install must not reset the stage.
    if (
        isinstance(event, DhcpDiscover)
        and event.netboot
        and (machine.stage.terminal or machine.stage.order >= Stage.MENU.order)
    ):
        _new_boot(machine, event.ts)
    _note_shim(machine, event)  # after a new boot's reset, so its last_error stays
    address = _address_taken(machine, event)
    if address is not None:
        machine.ip = address or None
    if not event.netboot and machine.stage.order > Stage.DHCP.order:
        return
    if machine.stage is Stage.WAITING and machine.boots == 0:
        machine.boots = 1
    if event.arch is not None:
        machine.arch = event.arch
        machine.firmware = firmware_label(event.arch)
    for key in FINGERPRINT_FIELDS:
        value = getattr(event, key)
        if value is not None:
            machine.fingerprint[key] = value
    _advance(machine, Stage.DHCP, event.ts, event.name.split(".", 1)[1])


def _address_taken(machine: Machine, event: DhcpClientEvent) -> str | None:
    """The address `event` says the machine holds now; "" for none (NAKed); None: it says nothing.

    Also for the installer's own DHCP: in proxy mode its lease can differ from the firmware's
    (another client id), and its requests for install files come from the new address.
    """
    if isinstance(event, DhcpAck):
        return event.ip or None
    if isinstance(event, DhcpNak):
        return ""  # the client has no address now; it starts over with a DISCOVER
    # In proxy mode the rival server's ACK is not ours to see; the PC's REQUEST names the
    # address. With a server id (SELECTING) it takes a server's offer; without one
    # (INIT-REBOOT) it asks back an old address, which is believed only as a first guess.
    if isinstance(event, DhcpRequest) and event.requested and (event.server_id or machine.ip is None):
        return event.requested
    return None


def _weak_claim(event: Event) -> bool:
    """A REQUEST asking back an old address (no server id): it must not take one another holds."""
    return isinstance(event, DhcpRequest) and not event.server_id


FINGERPRINT_FIELDS = ("arch", "vendor_class", "user_class", "uuid", "client_id", "params")


def _transfer_begins(machine: Machine, ts: float, stage: Stage | None, file: str, total: int | None) -> None:
    if stage is not None:
        _advance(machine, stage, ts, file)
    machine.transfer = TransferProgress(file=file, total=total, started=ts)


def _transfer_moves(
    machine: Machine, ts: float, file: str, sent: int, total: int | None, rate: float
) -> TransferProgress:
    transfer = machine.transfer
    if transfer is None or (file and transfer.file != file):
        transfer = machine.transfer = TransferProgress(file=file, started=ts)
    transfer.bytes = sent
    if total is not None:
        transfer.total = total
    transfer.rate = rate
    return transfer


def _transfer_ends(machine: Machine, transfer: TransferProgress, ok: bool, reason: str | None) -> None:
    transfer.finished = True
    if not ok and reason:
        machine.last_error = reason


def _loader_fetched(machine: Machine, file: str, ok: bool, probe: bool | None = None) -> None:
    """A whole loader reached the firmware: iPXE should speak next, or shim ask for its GRUB,
    unless the firmware refused it."""
    if not ok or probe:
        return
    if is_ipxe_loader(file):
        machine.ipxe_loaded = True
    elif is_shim_loader(file):
        machine.shim_loaded = True


def _on_tftp_start(machine: Machine, event: TftpStart) -> None:
    _shim_ran(machine, event.file, event.ts)
    if event.kind == "script" and event.answer in LOCAL_ANSWERS:
        machine.booted_local = True
    stage = HTTP_KIND_STAGES.get(event.kind or "", Stage.LOADER)
    _transfer_begins(machine, event.ts, stage, event.file, event.total)


def _on_http_request(machine: Machine, event: HttpRequest) -> None:
    _shim_ran(machine, event.file or event.path, event.ts)
    if event.kind == "script" and event.answer in LOCAL_ANSWERS:
        machine.booted_local = True
    stage = HTTP_KIND_STAGES.get(event.kind)
    if stage is None:
        return  # other requests (status reports, assets) do not move the boot on
    _transfer_begins(machine, event.ts, stage, event.file or event.path, event.total)


def _on_install_failed(machine: Machine, event: InstallFailed) -> None:
    machine.last_error = event.reason or "installer reported failure"
    _advance(machine, Stage.FAILED, event.ts, machine.last_error)


def _fold(machine: Machine, event: Event) -> None:
    """Move `machine` on by what `event` says, matched on the event's type."""
    match event:
        case DhcpClientEvent():
            _on_dhcp(machine, event)
        case TftpStart():
            _on_tftp_start(machine, event)
        case TftpProgress():
            _transfer_moves(machine, event.ts, event.file, event.bytes, event.total, event.rate)
        case TftpDone():
            moved = _transfer_moves(machine, event.ts, event.file, event.bytes, event.total, event.rate)
            _transfer_ends(machine, moved, event.ok, event.reason)
            _loader_fetched(machine, event.file, event.ok, event.probe)
        case HttpRequest():
            _on_http_request(machine, event)
        case HttpProgress():
            _transfer_moves(machine, event.ts, event.file or event.path, event.bytes, event.total, event.rate)
        case HttpDone():
            file = event.file or event.path
            moved = _transfer_moves(machine, event.ts, file, event.bytes, event.total, event.rate)
            _transfer_ends(machine, moved, event.ok, event.reason)
            if event.kind == "loader":
                _loader_fetched(machine, event.file, event.ok)
        case MenuSelect():
            machine.menu_choice = event.choice
            machine.timeline.append((event.ts, "menu.select", event.choice))
        case InstallDone():
            _advance(machine, Stage.DONE, event.ts)
        case InstallFailed():
            _on_install_failed(machine, event)
        case Error():
            machine.last_error = event.reason
