"""`pxetui profiles`: which OS profiles exist and whether their files are here."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pxetui.boot.cache import FileState, profile_status
from pxetui.boot.profiles import Profile, default_cache_dir, load_profiles


@dataclass(frozen=True, slots=True)
class ProfileRow:
    name: str
    title: str
    arch: list[str]
    firmware: list[str]
    kind: str  # kernel | chain | action
    files: dict[str, dict[str, object]]
    missing: list[str]  # roles not servable: missing, partial or unverified
    unverified: list[str]
    size: int  # bytes on disk, partial downloads included
    source: str

    @property
    def state(self) -> str:
        if self.kind != "kernel":
            return self.kind
        states: dict[str, list[str]] = {}
        for role, info in self.files.items():
            states.setdefault(str(info["state"]), []).append(role)
        parts = [f"{state} {','.join(roles)}" for state, roles in states.items()]
        return "; ".join(parts) + f" ({self.size / 1e6:.1f} MB)"


def profile_row(profile: Profile, cache_dir: Path) -> ProfileRow:
    files: dict[str, dict[str, object]] = {}
    for status in profile_status(profile, cache_dir):
        files[status.role] = {
            "path": str(status.path),
            "state": status.state.value,
            "present": status.state is FileState.PRESENT,
            "size": status.size,
            "origin": status.origin,
        }
    return ProfileRow(
        name=profile.name,
        title=profile.title,
        arch=list(profile.arch),
        firmware=list(profile.firmware),
        kind="kernel" if profile.files else ("chain" if profile.chain else "action"),
        files=files,
        missing=[r for r, f in files.items() if not f["present"]],
        unverified=[r for r, f in files.items() if f["state"] == FileState.UNVERIFIED.value],
        size=sum(int(str(f["size"])) for f in files.values()),
        source=str(profile.source),
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pxetui profiles", description="List OS profiles.")
    p.add_argument("--profiles", type=Path, action="append", default=[], metavar="DIR")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR")
    p.add_argument("--json", action="store_true", help="one JSON object per profile")
    args = p.parse_args(argv)
    cache = args.cache or default_cache_dir()
    rows = [profile_row(pr, cache) for pr in load_profiles(args.profiles).values()]
    rows.sort(key=lambda r: r.name)
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "state": row.state}))
        return 0
    table = [("NAME", "ARCH", "FIRMWARE", "FILES", "TITLE")]
    for row in rows:
        table.append((row.name, ",".join(row.arch), ",".join(row.firmware), row.state, row.title))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    print(f"\ncache: {cache}")
    if any(r.missing for r in rows):
        print("get missing or unverified files with: pxetui fetch NAME... --cache " + str(cache))
    return 0
