"""Per-MAC machine state: how far each PC got, when, and what it is transferring now.

The registry is fed events (packets -> service -> event -> registry) and nothing else. A boot
moves forward through the stages; a fresh DHCP DISCOVER after the PC got past the menu (or
finished) means it rebooted, and starts a new boot cycle with a new timeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from pxetui.boot.firmware import firmware_label
from pxetui.host.vendors import vendor_for
from pxetui.model.events import (
    DhcpAck,
    DhcpClientEvent,
    DhcpDiscover,
    DhcpReply,
    DhcpRequest,
    Error,
    Event,
    HttpDone,
    HttpProgress,
    HttpRequest,
    InstallDone,
    InstallFailed,
    MenuSelect,
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
    Stage.LOADER: "iPXE loader",
    Stage.MENU: "menu",
    Stage.KERNEL: "kernel",
    Stage.INITRD: "initrd",
    Stage.ISO: "ISO",
    Stage.INSTALLING: "installing",
    Stage.DONE: "done",
    Stage.FAILED: "failed",
}

# What the HTTP service calls each kind of file it serves, and the stage fetching it means.
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


class Registry:
    """All machines seen or planned, keyed by normalised MAC."""

    def __init__(self) -> None:
        self.machines: dict[str, Machine] = {}

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
        for machine in self.machines.values():
            if machine.ip == ip:
                return machine.mac
        return None

    def apply(self, event: Event) -> Change | None:
        """Fold one event into the machine it names; None for events about no machine."""
        if event.mac is None:
            return None
        new = event.mac not in self.machines
        machine = self.ensure(event.mac)
        before = machine.stage
        machine.last_seen = event.ts
        if machine.first_seen is None:
            machine.first_seen = event.ts
        _fold(machine, event)
        machine_changed_stage = machine.stage is not before
        return Change(machine=machine, stage_changed=machine_changed_stage or new, new=new)

    def to_document(self) -> dict[str, Any]:
        return {"version": 1, "machines": [m.to_dict() for m in self.machines.values()]}

    def load_document(self, doc: dict[str, Any] | None) -> None:
        if not doc:
            return
        for item in doc.get("machines", []):
            machine = Machine.from_dict(item)
            self.machines[machine.mac] = machine


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
    machine.timeline.append((ts, "boot", f"boot #{machine.boots}"))


def _on_dhcp(machine: Machine, event: DhcpClientEvent) -> None:
    ack = isinstance(event, DhcpAck)
    # Only a network-boot client (firmware PXE / HTTP boot, or iPXE) starts a new boot: the
    # installer's own DHCP (udhcpc, dhclient) during the install must not reset the stage.
    if (
        isinstance(event, DhcpDiscover)
        and event.netboot
        and (machine.stage.terminal or machine.stage.order >= Stage.MENU.order)
    ):
        _new_boot(machine, event.ts)
    ip = event.ip if isinstance(event, DhcpReply) else None
    if not event.netboot and machine.stage.order > Stage.DHCP.order:
        if ack and ip:
            machine.ip = ip
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
    if ack and ip:
        machine.ip = ip
    elif isinstance(event, DhcpRequest) and event.requested and machine.ip is None:
        # In proxy mode the rival server's ACK is not ours to see; the PC's REQUEST names the address.
        machine.ip = event.requested
    _advance(machine, Stage.DHCP, event.ts, event.name.split(".", 1)[1])


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


def _on_http_request(machine: Machine, event: HttpRequest) -> None:
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
            _transfer_begins(machine, event.ts, Stage.LOADER, event.file, event.total)
        case TftpProgress():
            _transfer_moves(machine, event.ts, event.file, event.bytes, event.total, event.rate)
        case TftpDone():
            moved = _transfer_moves(machine, event.ts, event.file, event.bytes, event.total, event.rate)
            _transfer_ends(machine, moved, event.ok, event.reason)
        case HttpRequest():
            _on_http_request(machine, event)
        case HttpProgress():
            _transfer_moves(machine, event.ts, event.file or event.path, event.bytes, event.total, event.rate)
        case HttpDone():
            file = event.file or event.path
            moved = _transfer_moves(machine, event.ts, file, event.bytes, event.total, event.rate)
            _transfer_ends(machine, moved, event.ok, event.reason)
        case MenuSelect():
            machine.menu_choice = event.choice
            machine.timeline.append((event.ts, "menu.select", event.choice))
        case InstallDone():
            _advance(machine, Stage.DONE, event.ts)
        case InstallFailed():
            _on_install_failed(machine, event)
        case Error():
            machine.last_error = event.reason
