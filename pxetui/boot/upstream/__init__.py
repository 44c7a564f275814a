"""Profiles that follow a release line: resolve "Rocky 9" or "Ubuntu 24.04" from upstream metadata.

A file URL rots: releases.ubuntu.com keeps only the newest point release, Rocky moves old
minors to its vault, Fedora's "latest" changes every six months. So a profile can name a line
and the machine-readable file that says what the line holds today (simplestreams, Debian's
SHA256SUMS + InRelease, Fedora's releases.json, a tree's .treeinfo). Resolving it gives a
`Release`: an exact version with exact URLs and SHA-256s. `pxetui fetch` downloads those into
`CACHE/NAME/VERSION/` and only then writes the pin (`CACHE/NAME/release.json`); serving reads
the pin, never upstream, so a cached release keeps booting after upstream moves or deletes it.

The parsers are pure and the network is injected (`Getter`): this package knows no aiohttp,
and every format is tested against a recorded sample.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pxetui.errors import UsageError

FORMATS = ("ubuntu-simplestreams", "debian-installer", "fedora-releases", "treeinfo")
PIN_NAME = "release.json"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# The keys each format needs ("url" and "files" always), and the optional ones with defaults.
REQUIRED: dict[str, tuple[str, ...]] = {
    "ubuntu-simplestreams": ("line",),
    "debian-installer": ("suite",),
    "fedora-releases": ("tree",),
    "treeinfo": (),
}
DEFAULTS: dict[str, dict[str, str]] = {
    "ubuntu-simplestreams": {
        "stream": "streams/v1/com.ubuntu.releases:ubuntu-server.json",
        "product": "live-server",
        "arch": "amd64",
    },
    "debian-installer": {"arch": "amd64"},
    "fedora-releases": {"variant": "Server", "arch": "x86_64", "line": "latest"},
    "treeinfo": {},
}
SPEC_KEYS = (
    "format",
    "url",
    "files",
    "line",
    "archive",
    "stream",
    "product",
    "arch",
    "suite",
    "variant",
    "tree",
)


class UpstreamError(UsageError):
    """Upstream metadata could not be had or read; the message names the URL and the fix."""


class UpstreamNotFound(UpstreamError):
    """HTTP 404 (or 410): the file moved or was removed upstream."""


# A coroutine that returns the text at a URL, raising UpstreamNotFound / UpstreamError.
Getter = Callable[[str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    format: str
    url: str  # the metadata (stream root, archive root, releases.json, or the tree itself)
    files: Mapping[str, str]  # role -> item (simplestreams ftype, or a path in SHA256SUMS/.treeinfo)
    options: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.options.get(key) or DEFAULTS[self.format].get(key, "")

    @property
    def line(self) -> str:
        return self.get("line")

    def unbound_tree(self) -> str:
        """What `{{ release.tree }}` means before anything is pinned (never served: no files yet)."""
        if self.format == "fedora-releases":
            return self.get("tree").replace("{version}", self.line)
        return self.url


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    name: str  # the file's name in the cache (its upstream basename)
    sha256: str
    urls: tuple[str, ...]  # where to get it, best first (then the archive it moves to)
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    files: Mapping[str, ReleaseFile]  # by role
    tree: str  # `{{ release.tree }}`: the installable tree / directory of this exact version
    source: str  # the metadata URL the checksums came from
    resolved_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tree": self.tree,
            "source": self.source,
            "resolved_at": self.resolved_at,
            "files": {
                role: {"name": f.name, "sha256": f.sha256, "size": f.size, "urls": list(f.urls)}
                for role, f in self.files.items()
            },
        }


def parse_spec(doc: Any, where: str) -> ReleaseSpec:
    """Validate a profile's `release:` mapping; `where` prefixes every message (the YAML file)."""
    if not isinstance(doc, dict):
        raise UpstreamError(f"{where}: 'release' must be a mapping with 'format', 'url' and 'files'")
    for key in doc:
        if key not in SPEC_KEYS:
            raise UpstreamError(f"{where}: unknown key 'release.{key}' (known: {', '.join(SPEC_KEYS)})")
    fmt = doc.get("format")
    if fmt not in FORMATS:
        raise UpstreamError(f"{where}: 'release.format' is {fmt!r}; allowed: {', '.join(FORMATS)}")
    url = doc.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise UpstreamError(f"{where}: 'release.url' must be an http:// or https:// URL")
    files = doc.get("files")
    if (
        not isinstance(files, dict)
        or not files
        or not all(isinstance(k, str) and isinstance(v, str) and v.strip("/") for k, v in files.items())
    ):
        raise UpstreamError(
            f"{where}: 'release.files' must map roles to upstream items,"
            " like {kernel: images/pxeboot/vmlinuz}"
        )
    options: dict[str, str] = {}
    for key in SPEC_KEYS[3:]:
        if key in doc:
            value = doc[key]
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value:
                raise UpstreamError(f"{where}: 'release.{key}' must be a string (quote versions: \"24.04\")")
            options[key] = value
    for key in REQUIRED[fmt]:
        if key not in options:
            raise UpstreamError(f"{where}: a {fmt} release needs 'release.{key}'")
    for key in ("archive", "tree"):
        if key in options and urlsplit(options[key]).scheme not in ("http", "https"):
            raise UpstreamError(f"{where}: 'release.{key}' must be an http:// or https:// URL")
    return ReleaseSpec(format=fmt, url=url, files=dict(files), options=options)


def check_version(version: str, where: str) -> str:
    if not _VERSION.match(version):
        raise UpstreamError(f"{where}: {version!r} is not a version (like 24.04.3 or 9.6)")
    return version


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key: 24.04.10 after 24.04.9, 10 after 9."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-+~]", version))


def basename(url_or_path: str) -> str:
    return PurePosixPath(urlsplit(url_or_path).path).name


def sha_ok(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and _SHA256.match(value.lower()) else None


async def resolve(spec: ReleaseSpec, get: Getter, version: str | None = None) -> Release:
    """The newest release of the line, or `version` of it (from the archive when it moved)."""
    from pxetui.boot.upstream import debian, fedora, treeinfo, ubuntu

    resolvers = {
        "ubuntu-simplestreams": ubuntu.resolve,
        "debian-installer": debian.resolve,
        "fedora-releases": fedora.resolve,
        "treeinfo": treeinfo.resolve,
    }
    release = await resolvers[spec.format](spec, get, version)
    check_version(release.version, release.source)
    missing = [role for role in spec.files if role not in release.files]
    if missing:
        raise UpstreamError(
            f"{release.source}: lists no {', '.join(spec.files[r] for r in missing)} for {release.version}"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Release(release.version, release.files, release.tree, release.source, stamp)


# -- the pin -----------------------------------------------------------------------------------


def pin_path(profile_dir: Path) -> Path:
    return profile_dir / PIN_NAME


def read_pin(profile_dir: Path) -> Release | None:
    """The release pinned in `CACHE/NAME/`, or None (never pinned, or a file that is not one)."""
    try:
        doc = json.loads(pin_path(profile_dir).read_text(encoding="utf-8"))
        files = {
            str(role): ReleaseFile(
                name=str(f["name"]),
                sha256=str(f["sha256"]),
                urls=tuple(str(u) for u in f["urls"]),
                size=int(f["size"]) if f.get("size") is not None else None,
            )
            for role, f in doc["files"].items()
        }
        release = Release(
            version=str(doc["version"]),
            files=files,
            tree=str(doc.get("tree", "")),
            source=str(doc.get("source", "")),
            resolved_at=str(doc.get("resolved_at", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    # A pin names directories and files: anything that could climb out of the cache is no pin.
    if not _VERSION.match(release.version) or any(
        not f.name or "/" in f.name or f.name in (".", "..") for f in release.files.values()
    ):
        return None
    return release


def write_pin(profile_dir: Path, release: Release) -> None:
    """Atomically: a reader sees the old pin or the new one, never half of one."""
    path = pin_path(profile_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(release.to_json(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
