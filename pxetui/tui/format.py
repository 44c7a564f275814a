"""Pure text for the TUI: cells of the machine table, durations, rates, fitting profiles.

No textual here, so these stay trivially testable and reusable by other views.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pxetui.boot import firmware
from pxetui.boot.profiles import Profile
from pxetui.model.plan import PlanEntry
from pxetui.model.registry import Machine, Stage
from pxetui.model.units import rate, size  # the sentences say them alike

BAR_WIDTH = 6
_BLOCKS = " ▏▎▍▌▋▊▉█"

STAGE_STYLES = {
    Stage.WAITING: "dim",
    Stage.DONE: "bold green",
    Stage.FAILED: "bold red",
}


def profile_fits(profile: Profile, arch: int | None) -> bool:
    """Whether a PC announcing option-93 `arch` can boot `profile` (unknown arch: any)."""
    return firmware.fits(arch, profile.arch, profile.firmware)


def fitting_profiles(profiles: Iterable[Profile], arches: Iterable[int | None]) -> list[Profile]:
    """Profiles every one of the machines (by their option-93 arch) can boot, by name."""
    wanted = list(arches)
    return sorted(
        (p for p in profiles if all(profile_fits(p, a) for a in wanted)),
        key=lambda p: p.name,
    )


def arch_label(arch: int | None) -> str:
    return firmware.arch_name(arch)


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`; empty for None."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A fixed-width bar with eighth-block resolution."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_BLOCKS[part] if part and full < width else "")
    return text.ljust(width, "·")


def progress(machine: Machine) -> str:
    """`███▌···· 44% 12.3MB/s` for the current transfer; bytes so far when the size is unknown."""
    transfer = machine.transfer
    if transfer is None or machine.stage.terminal:
        return ""
    if transfer.finished:
        return f"{transfer.file.rsplit('/', 1)[-1][:12]} ✓" if transfer.file else "✓"
    percent = transfer.percent
    speed = rate(transfer.rate) if transfer.rate else ""
    if percent is None:
        if not transfer.bytes:
            return transfer.file.rsplit("/", 1)[-1]
        return f"{size(transfer.bytes)} {speed}".strip()
    return f"{bar(percent / 100)} {percent:3.0f}% {speed}".rstrip()


def elapsed(machine: Machine, now: float) -> str:
    """Time since the first packet of the current boot; frozen once done or failed."""
    if machine.stage is Stage.WAITING:
        return ""
    start = machine.stage_times.get(Stage.DHCP.value) or machine.first_seen
    if start is None:
        return ""
    end = machine.stage_times.get(Stage.DONE.value) or machine.stage_times.get(Stage.FAILED.value)
    return duration((end or now) - start)


def assigned(entry: PlanEntry | None, machine: Machine | None = None) -> str:
    """What the PC boots next: its profile, `→ disk` (`→ disk: PROFILE` kept for later), or `menu`.

    The arrow keeps "boots its disk next (l)" apart from the `local-disk` profile: the two
    read alike as "local disk" / "local-disk" and mean different things.
    """
    if entry is not None and entry.boot_local and entry.profile:
        return f"→ disk: {entry.profile}"  # the next boot first: a narrow column cuts the end
    if entry is not None and entry.boot_local:
        return "→ disk"
    if entry is not None and entry.profile:
        return entry.profile
    if machine is not None and machine.menu_choice:
        return f"menu: {machine.menu_choice}"
    return "menu"


def stage_text(machine: Machine) -> str:
    label = machine.stage.label
    if machine.stage is Stage.WAITING:
        return "waiting"
    if machine.stage is Stage.FAILED and machine.last_error:
        return f"failed: {machine.last_error}"
    if machine.booted_local and not machine.stage.terminal:
        return "local disk"
    return label


def firmware_text(machine: Machine) -> str:
    """`x64 UEFI (option 93 = 7)`, not `UEFI (arch 7 (x64 UEFI))`; `—` before the PC said anything."""
    if machine.arch is None:
        return machine.firmware or "—"
    row = firmware.client_arch(machine.arch)
    name = row.name if row is not None else f"{machine.firmware or 'UEFI'}, unregistered architecture"
    return f"{name} (option 93 = {machine.arch})"


def transfer_text(machine: Machine) -> str:
    """`linux: 3.6MB of 8.0MB, 12.3MB/s`, `ipxe.efi: 1.0MB, done`; `—` without a transfer."""
    transfer = machine.transfer
    if transfer is None:
        return "—"
    name = transfer.file or "?"
    if transfer.finished:
        return f"{name}: {size(transfer.bytes)}, done"
    total = f" of {size(transfer.total)}" if transfer.total else ""
    speed = f", {rate(transfer.rate)}" if transfer.rate else ""
    return f"{name}: {size(transfer.bytes)}{total}{speed}"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))
