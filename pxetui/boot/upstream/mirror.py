"""Where upstream URLs are really fetched from: the internet, or a mirror the operator names.

`--mirror URL` (or `PXETUI_MIRROR=URL`) serves every upstream host as a top directory, the
layout `wget --mirror` writes: https://releases.ubuntu.com/streams/v1/x.json is fetched as
URL/releases.ubuntu.com/streams/v1/x.json. `--mirror HOST=URL` replaces one host only
(`deb.debian.org=http://apt.lab/debian-mirror/`). Pins and messages keep the upstream URLs,
so a cache filled through a mirror is the same cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pxetui.errors import UsageError

MIRROR_ENV = "PXETUI_MIRROR"


@dataclass(frozen=True, slots=True)
class Mirrors:
    root: str | None = None
    hosts: dict[str, str] = field(default_factory=dict)

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        rest = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        if host in self.hosts:
            return self.hosts[host] + rest
        if self.root is not None and host:
            return f"{self.root}{host}/{rest}"
        return url

    def __bool__(self) -> bool:
        return self.root is not None or bool(self.hosts)


def _prefix(url: str, what: str) -> str:
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise UsageError(f"{what}: {url!r} is not an http:// or https:// URL")
    return url if url.endswith("/") else url + "/"


def parse_mirrors(values: Iterable[str], env: str | None = None) -> Mirrors:
    """From `--mirror` values, then the environment variable (both may name several)."""
    env_value = os.environ.get(MIRROR_ENV, "") if env is None else env
    items = [*env_value.replace(",", " ").split(), *values]
    root: str | None = None
    hosts: dict[str, str] = {}
    for item in items:
        host, sep, url = item.partition("=")
        if sep:
            hosts[host.strip().lower()] = _prefix(url.strip(), f"--mirror {item}")
        else:
            root = _prefix(item.strip(), f"--mirror / {MIRROR_ENV}")
    return Mirrors(root, hosts)
