"""`pxetui profiles`: which OS profiles exist, whether their files are here, what upstream offers.

`--check` resolves every profile that follows a release line (in parallel, through the same
code and mirrors as `pxetui fetch`) and says per profile what is cached and what upstream now
offers, so an operator can tell before going to the lab whether a fetch is due.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pxetui.boot.cache import FileState, profile_status
from pxetui.boot.profiles import (
    Profile,
    builtin_profiles_dir,
    default_cache_dir,
    imported_profiles_dir,
    load_profiles,
    profile_dirs,
)
from pxetui.boot.upstream.mirror import MIRROR_ENV, Mirrors, parse_mirrors
from pxetui.commands.options import add_cache_option, add_profiles_option
from pxetui.errors import PxetuiError


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
    version: str | None = None  # the pinned release, for a profile that follows a line

    @property
    def state(self) -> str:
        if self.kind != "kernel":
            return self.kind
        states: dict[str, list[str]] = {}
        for role, info in self.files.items():
            states.setdefault(str(info["state"]), []).append(role)
        parts = [f"{state} {','.join(roles)}" for state, roles in states.items()]
        pinned = f"{self.version}: " if self.version else ""
        return pinned + "; ".join(parts) + f" ({self.size / 1e6:.1f} MB)"


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
        version=profile.pinned_version(cache_dir),
    )


async def check_upstream(profiles: list[Profile], cache_dir: Path, mirrors: Mirrors) -> dict[str, str]:
    """{name: "cached 24.04.3, upstream 24.04.4"} for every profile that follows a release line."""
    from pxetui.commands.fetch import Fetcher, MultiProgress, http_session

    async with http_session() as http:
        fetcher = Fetcher(cache_dir, http, MultiProgress(tty=False).bar(""), mirrors=mirrors)

        async def one(profile: Profile) -> tuple[str, str]:
            cached = profile.pinned_version(cache_dir)
            have = f"cached {cached}" if cached else "not cached"
            try:
                newest = (await fetcher.resolve(profile)).version
            except PxetuiError as exc:
                return profile.name, f"{have}, upstream unknown: {str(exc).removeprefix(profile.name + ': ')}"
            if cached == newest:
                return profile.name, f"{have}, upstream {newest} (current)"
            return profile.name, f"{have}, upstream {newest} (get it: pxetui fetch {profile.name})"

        tracked = [p for p in profiles if p.release is not None]
        return dict(await asyncio.gather(*(one(p) for p in tracked)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxetui profiles",
        description="List OS profiles: each one's pinned release and whether its files are present"
        " and verified in the cache.",
    )
    add_profiles_option(p)
    add_cache_option(p, "the cache looked in")
    p.add_argument("--json", action="store_true", help="one JSON object per profile")
    p.add_argument(
        "--check",
        action="store_true",
        help="ask upstream what each release line offers now (needs a network)",
    )
    p.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL|HOST=URL",
        help=f"with --check: ask a local mirror instead (also ${MIRROR_ENV}); see `pxetui fetch --help`",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cache = args.cache or default_cache_dir()
    profiles = load_profiles(args.profiles, cache)
    if args.check:
        return _check(
            list(profiles.values()), cache, parse_mirrors(args.mirror), looked_in(args.profiles, cache)
        )
    rows = [profile_row(pr, cache) for pr in profiles.values()]
    rows.sort(key=lambda r: r.name)
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "state": row.state, "cache": str(cache)}))
        return 0
    table = [("NAME", "ARCH", "FIRMWARE", "FILES", "TITLE")]
    for row in rows:
        table.append((row.name, ",".join(row.arch), ",".join(row.firmware), row.state, row.title))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    print(f"\ncache: {cache} (the directory looked in; --cache DIR for another)")
    print(looked_in(args.profiles, cache))
    if any(r.missing for r in rows):
        print("get missing or unverified files with: pxetui fetch NAME... --cache " + str(cache))
    return 0


def looked_in(extra_dirs: list[Path], cache: Path) -> str:
    """Where the profiles came from, each directory with why it was read."""
    why = {builtin_profiles_dir(): "built-in", imported_profiles_dir(cache): "imported ISOs"}
    parts = [f"{d} ({why.get(d, '--profiles')})" for d in profile_dirs(extra_dirs, cache)]
    if not imported_profiles_dir(cache).is_dir():
        parts.insert(1, f"{imported_profiles_dir(cache)} (imported ISOs: none yet)")
    return "profiles read from: " + ", ".join(parts)


def _check(profiles: list[Profile], cache: Path, mirrors: Mirrors, where: str) -> int:
    print(f"cache: {cache}")
    print(where)
    lines = asyncio.run(check_upstream(profiles, cache, mirrors))
    for name in sorted(lines):
        print(f"{name}: {lines[name]}")
    # Unknown upstream is worth a non-zero status for scripts ("before you go to the lab").
    return 1 if any("upstream unknown" in line for line in lines.values()) else 0
