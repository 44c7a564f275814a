"""The OS file cache: where a profile's files live and which of them may be served.

A downloaded file is written as NAME.part, checked against its SHA-256, and only then renamed
to NAME with a marker `.NAME.verified` next to it (sha256, size, mtime). A file in the cache
without a marker that still matches it is "unverified" and is never served: it may be a
half-copied file, a file replaced by hand, or one left by a crash between rename and marker.
Files the operator names with `path:` are theirs and count as verified when they exist.
A release profile's files sit in `CACHE/NAME/VERSION/`, the version its pin names
(`boot/upstream/`); they are checked the same way. The files `pxetui fetch` takes out of a
release's verified ISO, FAT image or tar archive (`from_iso`, `from_image`, `from_archive`) are
in the pin with their
SHA-256 too, so a re-check knows what they must be even when their marker is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pxetui.boot.profiles import Profile
from pxetui.boot.upstream import pin_path, read_pin
from pxetui.errors import UsageError

PART_SUFFIX = ".part"
MARKER_SUFFIX = ".verified"
_HASH_CHUNK = 1 << 20


class FileState(StrEnum):
    PRESENT = "present"  # verified (or the operator's own `path:` file)
    MISSING = "missing"
    UNVERIFIED = "unverified"  # on disk but never verified, or changed since
    PARTIAL = "partial"  # an interrupted download that `pxetui fetch` resumes


@dataclass(frozen=True, slots=True)
class CachedFile:
    role: str
    path: Path
    state: FileState
    size: int  # bytes on disk (of the .part file for PARTIAL)
    origin: str  # the URL, the operator's path, or iso:INNER/PATH


def part_path(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


def marker_path(path: Path) -> Path:
    return path.with_name("." + path.name + MARKER_SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_marker(path: Path, sha256: str, origin: str) -> None:
    """Record that `path` (as it is now) matched `sha256`; atomic, so never half-written."""
    st = path.stat()
    doc = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "origin": origin}
    marker = marker_path(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, marker)


def place_extracted(made: Path, dest: Path, sha256: str, origin: str) -> None:
    """Move a file taken out of a verified container (`made`, on dest's filesystem) into the
    cache as `dest`, by way of dest.part as a download goes, and mark it with `sha256`."""
    part = part_path(dest)
    part.unlink(missing_ok=True)
    os.replace(made, part)
    os.replace(part, dest)
    write_marker(dest, sha256, origin)


def read_marker(path: Path) -> dict[str, object] | None:
    try:
        doc = json.loads(marker_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def is_verified(path: Path) -> bool:
    """True when `path` is the very file that was verified: same size and mtime as recorded.

    Size and mtime instead of re-hashing: the HTTP service asks on every request and ISOs are
    gigabytes; any copy, truncation or edit changes one of them.
    """
    doc = read_marker(path)
    if doc is None:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    return doc.get("size") == st.st_size and doc.get("mtime_ns") == st.st_mtime_ns


def forget(path: Path) -> None:
    """Remove a file's marker first, then the file: never a marker without its file's truth."""
    marker_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def origin_of(profile: Profile, role: str, cache_dir: Path | None = None) -> str:
    ref = profile.files[role]
    if ref.path:
        return ref.path
    if ref.from_iso:
        return f"iso:{ref.from_iso}"
    if ref.from_image:
        return f"image:{ref.from_image}"
    if ref.from_archive:
        return f"archive:{ref.from_archive}"
    if ref.release:
        pin = read_pin(cache_dir / profile.name) if cache_dir is not None else None
        pinned = pin.files.get(role) if pin else None
        return pinned.urls[0] if pinned else f"release:{ref.release}"
    assert ref.url is not None
    return ref.url


def verified_path(profile: Profile, role: str, cache_dir: Path) -> Path | None:
    """The file to serve for `role` of `profile`, or None when it is missing or unverified.

    This is what the HTTP service calls before it serves a kernel, initrd or ISO.
    """
    if role not in profile.files:
        return None
    path = profile.file_path(role, cache_dir)
    if profile.files[role].path:
        return path if path.is_file() else None
    return path if is_verified(path) else None


def file_status(profile: Profile, role: str, cache_dir: Path) -> CachedFile:
    path = profile.file_path(role, cache_dir)
    origin = origin_of(profile, role, cache_dir)
    if verified_path(profile, role, cache_dir) is not None:
        return CachedFile(role, path, FileState.PRESENT, path.stat().st_size, origin)
    if path.is_file():
        return CachedFile(role, path, FileState.UNVERIFIED, path.stat().st_size, origin)
    part = part_path(path)
    if not profile.files[role].path and part.is_file():
        return CachedFile(role, path, FileState.PARTIAL, part.stat().st_size, origin)
    return CachedFile(role, path, FileState.MISSING, 0, origin)


def profile_status(profile: Profile, cache_dir: Path) -> list[CachedFile]:
    return [file_status(profile, role, cache_dir) for role in profile.files]


def fetch_command(profile: Profile, cache_dir: Path) -> str:
    return f"pxetui fetch {profile.name} --cache {cache_dir}"


class NotServable(UsageError):
    """A profile whose files are not all here and verified; `fetchable`: `pxetui fetch` fixes it."""

    def __init__(self, message: str, profile: Profile, fetchable: bool) -> None:
        super().__init__(message)
        self.profile = profile
        self.fetchable = fetchable


def servable_problem(profile: Profile, cache_dir: Path) -> NotServable | None:
    """Why `profile` cannot boot yet (naming what is missing and the fix), or None when it can.

    The one check behind the Session's refusals and the TUI's ✓/↓ marks.
    """
    statuses = [s for s in profile_status(profile, cache_dir) if s.state is not FileState.PRESENT]
    if not statuses:
        return None
    listed = ", ".join(f"{s.role} {s.state.value} ({s.path})" for s in statuses)
    local = [s for s in statuses if profile.files[s.role].path]
    if local:
        fix = "install or copy the file(s) named by 'path:' in " + str(profile.source)
    else:
        fix = "run: " + fetch_command(profile, cache_dir)
    message = f"profile {profile.name!r} cannot boot yet: {listed}; {fix}"
    return NotServable(message, profile, fetchable=not local)


def is_servable(profile: Profile, cache_dir: Path) -> bool:
    return servable_problem(profile, cache_dir) is None


def require_servable(profile: Profile, cache_dir: Path) -> None:
    """Raise a NotServable (a UsageError) naming what is missing and the command that fixes it."""
    problem = servable_problem(profile, cache_dir)
    if problem is not None:
        raise problem


@dataclass(frozen=True, slots=True)
class Verified:
    """What a re-check of one file found: `ok`, and a sentence for the operator."""

    role: str
    ok: bool
    message: str


def expected_sha256(profile: Profile, role: str, cache_dir: Path) -> str | None:
    """The SHA-256 a cached file must have: its marker's, else the profile's or the pin's."""
    path = profile.file_path(role, cache_dir)
    marker = read_marker(path)
    if marker is not None and isinstance(marker.get("sha256"), str):
        return str(marker["sha256"])
    ref = profile.files[role]
    if ref.sha256:
        return ref.sha256
    if ref.release or (ref.extracted and profile.release is not None):
        # A file taken out of a release's ISO or FAT image is in the pin too (fetch puts it there).
        pin = read_pin(cache_dir / profile.name)
        pinned = pin.files.get(role) if pin else None
        return pinned.sha256 if pinned else None
    return None


def verify_files(profile: Profile, cache_dir: Path) -> list[Verified]:
    """Hash every cached file of `profile` again (seconds per GB: run it off the UI's loop).

    A file that matches is marked verified again (a file copied in by hand becomes servable);
    one that does not loses its marker, so it is never served until fetched again.
    """
    results = []
    for role, ref in profile.files.items():
        path = profile.file_path(role, cache_dir)
        if not path.is_file():
            results.append(Verified(role, False, f"{role}: missing ({path})"))
            continue
        expected = expected_sha256(profile, role, cache_dir)
        got = sha256_file(path)
        if ref.path and expected is None:
            results.append(Verified(role, True, f"{role}: the operator's own file, sha256 {got[:12]}…"))
        elif expected is None:
            results.append(Verified(role, False, f"{role}: no checksum known for {path}; fetch it again"))
        elif got == expected:
            if not ref.path:
                write_marker(path, got, origin_of(profile, role, cache_dir))
            results.append(Verified(role, True, f"{role}: sha256 matches ({got[:12]}…)"))
        else:
            marker_path(path).unlink(missing_ok=True)
            results.append(
                Verified(
                    role,
                    False,
                    f"{role}: sha256 {got[:12]}… is not the expected {expected[:12]}…; not served",
                )
            )
    return results


def remove_files(profile: Profile, cache_dir: Path) -> int:
    """Delete the files the cache holds for `profile` (and a release's pin); bytes freed.

    The operator's own `path:` files are left alone: they are not the cache's to delete.
    """
    freed = 0
    for role, ref in profile.files.items():
        if ref.path:
            continue
        path = profile.file_path(role, cache_dir)
        for leftover in (path, part_path(path)):
            if leftover.is_file() and not leftover.is_symlink():
                freed += leftover.stat().st_size
        forget(path)
        part_path(path).unlink(missing_ok=True)
    if profile.release is not None:
        home = cache_dir / profile.name
        pin = read_pin(home)
        pin_path(home).unlink(missing_ok=True)
        if pin is not None:
            version_dir = home / pin.version
            if version_dir.is_dir() and not version_dir.is_symlink():
                for child in version_dir.iterdir():
                    if child.is_file() and not child.is_symlink():
                        freed += child.stat().st_size if not child.name.startswith(".") else 0
                        child.unlink()
                if not any(version_dir.iterdir()):
                    version_dir.rmdir()
    return freed
