"""Which PCs stopped making progress, since when, and the likely reason; and the room's summary.

A PC stuck at DHCP or after its initrd used to show "booting" for as long as pxetui ran, and
again after a restart. Whether it is stuck is a question of the registry's facts (stage, the
time it got there, its last packet, its transfer) and the clock only, so it is a pure function
here, tested with the scenario's clock; the table, the details screen and the summary bar ask
it at every refresh.

The quiet times are how long each step normally takes with room to spare: a firmware asks for
its loader seconds after its address, iPXE for its script seconds after it starts; an
installer may run for many minutes without a word to pxetui (it fetches packages elsewhere),
so only a long silence after it fetched its answers counts.

A PC whose firmware refused every loader (iPXE, then the Microsoft-signed shim: the registry's
`all-refused`) will not get further whatever the network does: it is stalled at once, with
what it tried and what to change in its firmware, not a network hint. One that fetched a whole
shim and then went quiet is told the same after the usual step silence; one whose shim
transfer stopped midway is a transfer problem, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pxetui.model.registry import (
    ALL_REFUSED,
    REFUSED_ADVICE_SHORT,
    Machine,
    Stage,
    refused_every_loader,
)
from pxetui.tui.format import duration

DHCP_QUIET = 45.0  # seconds at DHCP without asking for a boot file (firmware retries 4 times in ~60 s)
STEP_QUIET = 60.0  # seconds of silence between two steps of the boot chain
GRUB_QUIET = 10.0  # a signed GRUB asks for its config within a second of starting
BOOT_QUIET = 180.0  # seconds from the last installer file to the installer fetching its answers
MENU_QUIET = 600.0  # an unassigned PC on the menu: its timeout boots the disk, nothing tells pxetui
INSTALL_QUIET = 900.0  # seconds of silence from a running installer

_SHORT = {
    Stage.DHCP: "DHCP",
    Stage.LOADER: "loader",
    Stage.MENU: "menu",
    Stage.KERNEL: "kernel",
    Stage.INITRD: "initrd",
    Stage.ISO: "ISO",
    Stage.INSTALLING: "install",
}


@dataclass(frozen=True, slots=True)
class Stall:
    step: str  # the last step it got to: "DHCP", "loader", ...
    silent: float  # seconds without progress
    observed: str  # what it did last: "asked for an address 3 times, never took it"
    hint: str  # the likely cause: "another DHCP server?"

    @property
    def cause(self) -> str:
        return f"{self.observed}: {self.hint}"

    def describe(self) -> str:
        return f"stalled at {self.step} for {duration(self.silent)}: {self.cause}"


def stall(machine: Machine, now: float, asks: int | None = None) -> Stall | None:
    """The machine's stall, or None while it moves on (or waits for power-on, or has finished).

    `asks`: how many DHCP DISCOVERs the PC sent in this boot without taking an address, when
    the view counted them (after a restart nobody did).
    """
    stage = machine.stage
    if stage is Stage.WAITING or stage.terminal:
        return None
    if machine.secure_boot == ALL_REFUSED and stage in (Stage.DHCP, Stage.LOADER):
        refused = _refused_everything(machine, now)
        if refused is not None:
            return refused
    check = _CHECKS.get(stage)
    return check(machine, now, asks) if check is not None else None


def _refused_everything(machine: Machine, now: float) -> Stall | None:
    """Its firmware refused every loader; None while it fetches one again (it may get further)."""
    transfer = machine.transfer
    if transfer is not None and not transfer.finished:
        return None
    step = _SHORT[machine.stage]
    return Stall(step, _silent(machine, now), refused_every_loader(machine), REFUSED_ADVICE_SHORT)


def _silent(machine: Machine, now: float) -> float:
    last = machine.last_seen or machine.stage_times.get(machine.stage.value) or now
    return max(0.0, now - last)


def _file(machine: Machine) -> str:
    transfer = machine.transfer
    return transfer.file.rsplit("/", 1)[-1] if transfer is not None and transfer.file else "its file"


def _at_dhcp(machine: Machine, now: float, asks: int | None) -> Stall | None:
    # Its DISCOVERs keep it talking: what counts is the time since it got to DHCP.
    since = machine.stage_times.get(Stage.DHCP.value) or machine.first_seen or now
    quiet = now - since
    if quiet < DHCP_QUIET:
        return None
    if machine.ip is None:
        times = f" {asks} times" if asks and asks > 1 else ""
        return Stall("DHCP", quiet, f"asked for an address{times}, never took it", "another DHCP server?")
    return Stall(
        "DHCP", quiet, f"got {machine.ip}, never asked for its boot file", "a firewall on TFTP (UDP 69)?"
    )


def _unfinished(machine: Machine, silent: float) -> Stall:
    transfer = machine.transfer
    assert transfer is not None
    percent = transfer.percent
    where = f" at {percent:.0f} %" if percent is not None else ""
    return Stall(
        _SHORT[machine.stage],
        silent,
        f"{_file(machine)} stopped{where}",
        "cable, switch, or the PC switched off?",
    )


def _at_loader(machine: Machine, now: float, asks: int | None) -> Stall | None:
    silent = _silent(machine, now)
    if machine.grub_elsewhere is not None and silent >= GRUB_QUIET:
        advice = machine.grub_elsewhere.split(": ", 1)[-1]
        return Stall(
            "loader", silent, "loaded its signed GRUB, which never asked pxetui for grub.cfg", advice
        )
    if silent < STEP_QUIET:
        return None
    transfer = machine.transfer
    if transfer is not None and not transfer.finished:
        return _unfinished(machine, silent)
    if machine.fingerprint.get("user_class") == "iPXE":
        return Stall(
            "loader", silent, "iPXE started, never fetched its boot script", "HTTP blocked by a firewall?"
        )
    if machine.shim_loaded:
        return Stall(
            "loader",
            silent,
            f"loaded {_file(machine)} (the Microsoft-signed shim), never asked for its GRUB",
            f"its Secure Boot refused it? {REFUSED_ADVICE_SHORT}",
        )
    hint = "Secure Boot?" if machine.firmware.startswith("UEFI") else "look at its screen"
    return Stall("loader", silent, f"loaded {_file(machine)}, never came back", hint)


def _at_menu(machine: Machine, now: float, asks: int | None) -> Stall | None:
    if machine.booted_local:
        return None  # sent to its own disk: quiet on the network is what it should be
    silent = _silent(machine, now)
    transfer = machine.transfer
    if transfer is not None and not transfer.finished and silent >= STEP_QUIET:
        return _unfinished(machine, silent)
    if machine.menu_choice is None and silent >= MENU_QUIET:
        return Stall(
            "menu",
            silent,
            "showed the menu, nothing was chosen",
            "it booted its disk, or waits at its screen",
        )
    if machine.menu_choice is not None and silent >= STEP_QUIET:
        chosen = f"chose {machine.menu_choice}, never asked for its kernel"
        return Stall("menu", silent, chosen, "look at its screen")
    return None


def _loading(machine: Machine, now: float, asks: int | None) -> Stall | None:
    silent = _silent(machine, now)
    transfer = machine.transfer
    if transfer is not None and not transfer.finished:
        return _unfinished(machine, silent) if silent >= STEP_QUIET else None
    if machine.stage is Stage.KERNEL:
        if silent < STEP_QUIET:
            return None
        return Stall(
            "kernel", silent, f"loaded {_file(machine)}, never asked for the initrd", "look at its screen"
        )
    if silent < BOOT_QUIET:
        return None
    return Stall(
        _SHORT[machine.stage],
        silent,
        f"loaded {_file(machine)}, the installer never fetched its answers",
        "look at its screen (no network driver? kernel panic?)",
    )


def _installing(machine: Machine, now: float, asks: int | None) -> Stall | None:
    silent = _silent(machine, now)
    if silent < INSTALL_QUIET:
        return None
    return Stall(
        "install",
        silent,
        f"installer fetched its answers {duration(silent)} ago and is silent",
        "look at its screen",
    )


_CHECKS: dict[Stage, Callable[[Machine, float, int | None], Stall | None]] = {
    Stage.DHCP: _at_dhcp,
    Stage.LOADER: _at_loader,
    Stage.MENU: _at_menu,
    Stage.KERNEL: _loading,
    Stage.INITRD: _loading,
    Stage.ISO: _loading,
    Stage.INSTALLING: _installing,
}

# The summary bar's groups, in the order of a boot; "stalled" takes a PC out of its stage's group.
GROUPS = ("waiting", "at DHCP", "loading", "installing", "done", "on disk", "failed", "stalled")
_GROUP_OF = {
    Stage.WAITING: "waiting",
    Stage.DHCP: "at DHCP",
    Stage.LOADER: "loading",
    Stage.MENU: "loading",
    Stage.KERNEL: "loading",
    Stage.INITRD: "loading",
    Stage.ISO: "loading",
    Stage.INSTALLING: "installing",
    Stage.DONE: "done",
    Stage.FAILED: "failed",
}


def group(machine: Machine, now: float, asks: int | None = None) -> str:
    """The summary group of one machine."""
    if stall(machine, now, asks) is not None:
        return "stalled"
    if machine.booted_local and not machine.stage.terminal:
        return "on disk"  # told to boot its own disk (not installed by pxetui: not "done")
    return _GROUP_OF[machine.stage]


def summary(
    machines: Iterable[Machine], now: float, asks: Callable[[str], int | None] = lambda mac: None
) -> dict[str, int]:
    """How many machines are in each group, every group present (zero included), in GROUPS order."""
    counts = dict.fromkeys(GROUPS, 0)
    for machine in machines:
        counts[group(machine, now, asks(machine.mac))] += 1
    return counts


def segments(counts: dict[str, int], width: int) -> list[tuple[str, int]]:
    """The summary bar: (group, cells) in GROUPS order, cells proportional to the counts.

    Every group with a machine gets a cell at least (one failed PC among 300 must show), so a
    bar narrower than the number of non-empty groups is not drawn.
    """
    present = [(g, counts.get(g, 0)) for g in GROUPS if counts.get(g, 0) > 0]
    total = sum(n for _, n in present)
    if not present or width < len(present):
        return []
    cells = {g: max(1, n * width // total) for g, n in present}
    # Hand out or take back the rounding, largest groups first: the small ones keep their cell.
    by_size = sorted(present, key=lambda gn: -gn[1])
    i = 0
    while sum(cells.values()) != width:
        g = by_size[i % len(by_size)][0]
        if sum(cells.values()) < width:
            cells[g] += 1
        elif cells[g] > 1:
            cells[g] -= 1
        i += 1
    return [(g, cells[g]) for g, _ in present]
