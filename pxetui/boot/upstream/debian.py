"""Debian: the installer's `dists/<suite>/main/installer-<arch>/current/images/SHA256SUMS`.

The suite's InRelease names that SHA256SUMS's own hash (checked here) and the point release
(`Version: 13.2`), which is what pxetui calls the version. The mirror keeps only the current
point release of a suite under `current/`: an older one cannot be fetched again.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urljoin

from pxetui.boot.upstream import Getter, Release, ReleaseFile, ReleaseSpec, UpstreamError, UpstreamNotFound
from pxetui.boot.upstream.sums import inrelease_fields, parse_checksums


async def resolve(spec: ReleaseSpec, get: Getter, version: str | None) -> Release:
    suite, arch = spec.get("suite"), spec.get("arch")
    images = urljoin(spec.url, f"dists/{suite}/main/installer-{arch}/current/images/")
    sums_url = urljoin(images, "SHA256SUMS")
    inrelease_url = urljoin(spec.url, f"dists/{suite}/InRelease")
    sums_text = await get(sums_url)
    try:
        fields, listed = inrelease_fields(await get(inrelease_url))
    except UpstreamNotFound:
        fields, listed = {}, {}
    digest = hashlib.sha256(sums_text.encode("utf-8")).hexdigest()
    key = f"main/installer-{arch}/current/images/SHA256SUMS"
    if key in listed and listed[key] != digest:
        raise UpstreamError(
            f"{sums_url} does not match the hash {inrelease_url} gives it (a mirror mid-update?"
            " try again later, or another mirror)"
        )
    current = fields.get("Version") or f"{suite}-{digest[:12]}"
    if version and version != current:
        raise UpstreamError(
            f"the Debian mirror keeps only the current point release of {suite} ({current}), not {version}"
        )
    sums = parse_checksums(sums_text)
    files: dict[str, ReleaseFile] = {}
    for role, item in spec.files.items():
        name = item.strip("/").removeprefix("./")
        if name not in sums:
            raise UpstreamError(f"{sums_url} lists no ./{name}")
        files[role] = ReleaseFile(name.rsplit("/", 1)[-1], sums[name], (urljoin(images, name),))
    return Release(current, files, images, sums_url)
