"""The operator's plan: which PC (by MAC) installs what, under which hostname.

The plan is the one thing pxetui must never lose. It is changed only through the Session,
validated before it changes (so a bad CSV changes nothing), and saved atomically on every
change by the Session.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pxetui.errors import UsageError
from pxetui.host.mac import MacError, normalize_mac, unusable_mac

CSV_COLUMNS = ("mac", "profile", "hostname")
# An import may carry a fourth column: `action` = `remove` takes the machine out of the plan.
CSV_ACTION = "action"
CSV_REMOVE = "remove"
_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$", re.I)


class PlanError(UsageError):
    """A plan change that was refused; `problems` lists every reason, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(slots=True)
class PlanEntry:
    mac: str
    profile: str | None = None
    hostname: str | None = None
    boot_local: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    # When the installer reported done; the machine then boots its disk until re-armed, so a
    # PC that boots the network first (the usual set-up with wake-on-LAN) never reinstalls.
    installed: float | None = None
    remove: bool = False  # an imported row that takes the machine out of the plan (never stored)

    @property
    def state(self) -> str:
        """`assigned`, `done -> local`, `local`, `menu`: what the plan says of this machine."""
        if self.installed is not None and self.boot_local:
            return "done -> local"
        if self.boot_local:
            return "local"
        return "assigned" if self.profile else "menu"


@dataclass(slots=True)
class UnknownPolicy:
    """What an unplanned PC gets: the menu (profile None), or `profile` for the next N."""

    profile: str | None = None
    remaining: int = 0


def check_hostname(hostname: str) -> str | None:
    """The reason a hostname is invalid, or None."""
    if len(hostname) > 253 or not _HOSTNAME.match(hostname):
        return (
            f"hostname {hostname!r} is not valid: use letters, digits and '-',"
            " at most 63 per label, not starting or ending with '-'"
        )
    return None


class Plan:
    def __init__(self) -> None:
        self.entries: dict[str, PlanEntry] = {}
        self.unknown = UnknownPolicy()

    def get(self, mac: str) -> PlanEntry | None:
        return self.entries.get(mac)

    def _entry(self, mac: str) -> PlanEntry:
        entry = self.entries.get(mac)
        if entry is None:
            entry = self.entries[mac] = PlanEntry(mac=mac)
        return entry

    def hostname_taken(self, hostname: str, mac: str) -> str | None:
        """Why `mac` may not have `hostname`: another PC has it (they would fight over the name)."""
        for other in self.entries.values():
            if other.mac != mac and other.hostname and other.hostname.lower() == hostname.lower():
                return f"hostname {hostname} is already {other.mac}'s: give each PC its own"
        return None

    def add(self, mac: str) -> PlanEntry:
        return self._entry(mac)

    def assign(self, mac: str, profile: str, hostname: str | None = None) -> PlanEntry:
        entry = self._entry(mac)
        entry.profile = profile
        entry.boot_local = False
        entry.installed = None
        if hostname is not None:
            entry.hostname = hostname or None
        return entry

    def unassign(self, mac: str) -> None:
        entry = self.entries.get(mac)
        if entry is not None:
            entry.profile = None
            entry.boot_local = False
            entry.installed = None

    def remove(self, mac: str) -> None:
        self.entries.pop(mac, None)

    def set_boot_local(self, mac: str, boot_local: bool) -> PlanEntry:
        entry = self._entry(mac)
        entry.boot_local = boot_local
        # Re-armed (False): the next boot installs again. Sent to the disk by the operator
        # (True): that is the operator's choice now, not the installer's report.
        entry.installed = None
        return entry

    def mark_installed(self, mac: str, when: float) -> PlanEntry:
        """The installer reported done: from now on this machine boots its local disk."""
        entry = self._entry(mac)
        entry.installed = when
        entry.boot_local = True
        return entry

    def take_for_unknown(self, mac: str) -> PlanEntry | None:
        """Apply the unknown-machine policy to a MAC that is not in the plan."""
        if mac in self.entries or self.unknown.profile is None or self.unknown.remaining <= 0:
            return None
        self.unknown.remaining -= 1
        profile = self.unknown.profile
        if self.unknown.remaining == 0:
            self.unknown.profile = None
        return self.assign(mac, profile)

    def merge(self, entries: Iterable[PlanEntry]) -> int:
        count = 0
        for new in entries:
            if new.remove:
                if self.entries.pop(new.mac, None) is not None:
                    count += 1
                continue
            entry = self._entry(new.mac)
            entry.profile = new.profile
            if new.hostname:
                entry.hostname = new.hostname
            count += 1
        return count

    def to_document(self) -> dict[str, Any]:
        return {
            "version": 1,
            "machines": [_stored(e) for e in sorted(self.entries.values(), key=lambda e: e.mac)],
            "unknown": asdict(self.unknown),
        }

    def load_document(self, doc: dict[str, Any] | None) -> None:
        if not doc:
            return
        for item in doc.get("machines", []):
            entry = PlanEntry(**{k: v for k, v in item.items() if k != "remove"})
            self.entries[entry.mac] = entry
        unknown = doc.get("unknown")
        if unknown:
            self.unknown = UnknownPolicy(**unknown)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for entry in sorted(self.entries.values(), key=lambda e: e.mac):
            writer.writerow([entry.mac, entry.profile or "", entry.hostname or ""])
        return out.getvalue()


def parse_plan_csv(
    text: str, source: str = "plan", known_profiles: Collection[str] | None = None
) -> list[PlanEntry]:
    """Rows of a `mac,profile,hostname` CSV; every bad row is named by line, nothing half-read."""
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    entries: list[PlanEntry] = []
    seen: dict[str, int] = {}
    hostnames: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            unknown = [c for c in header if c not in (*CSV_COLUMNS, CSV_ACTION)]
            if "mac" not in header or unknown:
                raise PlanError(
                    [
                        f"{source}:{line}: the header must be 'mac,profile,hostname'"
                        + (f" (unknown column {unknown[0]!r})" if unknown else " (no 'mac' column)")
                        + "; an 'action' column may follow, 'remove' takes a machine out"
                    ]
                )
            continue
        if len(row) > len(header):
            problems.append(f"{source}:{line}: {len(row)} fields, the header has {len(header)}")
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        try:
            mac = normalize_mac(cells.get("mac", ""))
        except MacError as exc:
            problems.append(f"{source}:{line}: {exc}")
            continue
        if reason := unusable_mac(mac):
            problems.append(f"{source}:{line}: {reason}")
            continue
        profile = cells.get("profile") or None
        hostname = cells.get("hostname") or None
        action = cells.get(CSV_ACTION, "").lower()
        if action not in ("", CSV_REMOVE):
            problems.append(f"{source}:{line}: action {action[:20]!r} is not known; use 'remove' or nothing")
            continue
        if profile and known_profiles is not None and profile not in known_profiles:
            choices = ", ".join(sorted(known_profiles)) or "none are loaded"
            problems.append(f"{source}:{line}: unknown profile {profile!r} (known: {choices})")
            continue
        if hostname:
            reason = check_hostname(hostname)
            if reason:
                problems.append(f"{source}:{line}: {reason}")
                continue
            if hostname.lower() in hostnames:
                first = hostnames[hostname.lower()]
                problems.append(f"{source}:{line}: hostname {hostname} is also on line {first}")
                continue
            hostnames[hostname.lower()] = line
        if mac in seen:
            problems.append(f"{source}:{line}: {mac} is already on line {seen[mac]}")
            continue
        seen[mac] = line
        if action == CSV_REMOVE:
            entries.append(PlanEntry(mac=mac, remove=True))
            continue
        entries.append(PlanEntry(mac=mac, profile=profile, hostname=hostname))
    if header is None:
        problems.append(f"{source}: empty; expected the header 'mac,profile,hostname'")
    if problems:
        raise PlanError(problems)
    return entries


def _stored(entry: PlanEntry) -> dict[str, Any]:
    document = asdict(entry)
    del document["remove"]
    return document
