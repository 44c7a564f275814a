"""Ubuntu: simplestreams `com.ubuntu.releases:ubuntu-server.json`, old-releases for older points.

The stream lists one version per product, the newest point release (`versions{"24.04.4":
{items: {iso: {path, sha256, size}}}}`, `path` relative to the releases root). An older point
release asked for by version, or pinned and resumed after upstream moved on, is on
old-releases.ubuntu.com under `releases/<X.YY.Z>/` with its own SHA256SUMS.

The stream does not list the netboot tarball (`ubuntu-<version>-netboot-<arch>.tar.gz`, which
holds the network shim + GRUB: the ISO's GRUB is a CD build). The SHA256SUMS of the directory
the ISO is in does, so an item named in `SUMS_ITEMS` (`netboot`) is looked up there: on
releases.ubuntu.com for the newest point release, in the old-releases directory's for an
older one.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin

from pxetui.boot.upstream import (
    Getter,
    Release,
    ReleaseFile,
    ReleaseSpec,
    UpstreamError,
    UpstreamNotFound,
    basename,
    sha_ok,
    version_key,
)
from pxetui.boot.upstream.sums import parse_checksums

# Items of a release directory that the stream does not list: the file name their SHA256SUMS uses.
SUMS_ITEMS = {"netboot": "ubuntu-{version}-netboot-{arch}.tar.gz"}


def _sums_file(
    spec: ReleaseSpec,
    sums: dict[str, str],
    sums_url: str,
    item: str,
    version: str,
    directories: tuple[str, ...],
) -> ReleaseFile:
    """The SUMS_ITEMS `item` of `version` as `sums` (read from `sums_url`) lists it, in `directories`."""
    name = SUMS_ITEMS[item].format(version=version, arch=spec.get("arch"))
    if name not in sums:
        raise UpstreamError(f"{sums_url} lists no {name} (Ubuntu's {item} tarball of {version})")
    return ReleaseFile(name, sums[name], tuple(urljoin(d, name) for d in directories))


def product_key(spec: ReleaseSpec) -> str:
    return f"com.ubuntu.releases:ubuntu-server:{spec.get('product')}:{spec.line}:{spec.get('arch')}"


def _versions(doc: Any, spec: ReleaseSpec, url: str) -> dict[str, Any]:
    products = doc.get("products") if isinstance(doc, dict) else None
    if not isinstance(products, dict):
        raise UpstreamError(f"{url}: not a simplestreams products file (no 'products')")
    product = products.get(product_key(spec))
    if (
        not isinstance(product, dict)
        or not isinstance(product.get("versions"), dict)
        or not product["versions"]
    ):
        lines = sorted(k.split(":", 2)[2] for k in products if isinstance(k, str) and k.count(":") >= 2)
        raise UpstreamError(f"{url}: lists no {product_key(spec)} (it has: {', '.join(lines) or 'nothing'})")
    versions: dict[str, Any] = product["versions"]
    return versions


def _from_stream(spec: ReleaseSpec, items: Any, version: str, url: str) -> dict[str, ReleaseFile]:
    files: dict[str, ReleaseFile] = {}
    archive = spec.get("archive")
    for role, ftype in spec.files.items():
        if ftype in SUMS_ITEMS:
            continue  # in the directory's SHA256SUMS, not in the stream (see _from_sums)
        item = items.get(ftype) if isinstance(items, dict) else None
        sha = sha_ok(item.get("sha256")) if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or sha is None:
            raise UpstreamError(f"{url}: {version} has no usable '{ftype}' item (path + sha256)")
        where = urljoin(spec.url, item["path"])
        name = basename(where)
        urls = (where, urljoin(archive.format(version=version), name)) if archive else (where,)
        size = item.get("size")
        files[role] = ReleaseFile(name, sha, urls, size if isinstance(size, int) else None)
    return files


async def _from_sums(
    spec: ReleaseSpec, get: Getter, version: str, directory: str, mirrors: tuple[str, ...] = ()
) -> dict[str, ReleaseFile]:
    """The SUMS_ITEMS roles of `spec`, from the SHA256SUMS in `directory` (the ISO's)."""
    wanted = {role: item for role, item in spec.files.items() if item in SUMS_ITEMS}
    if not wanted:
        return {}
    sums_url = urljoin(directory, "SHA256SUMS")
    try:
        sums = parse_checksums(await get(sums_url))
    except UpstreamNotFound as exc:
        raise UpstreamError(
            f"{sums_url} is missing: it is where Ubuntu {version}'s netboot tarball is listed"
        ) from exc
    return {
        role: _sums_file(spec, sums, sums_url, item, version, (directory, *mirrors))
        for role, item in wanted.items()
    }


async def _from_archive(
    spec: ReleaseSpec, get: Getter, newest: str, newest_items: Any, version: str, url: str
) -> Release:
    archive = spec.get("archive")
    if not archive:
        raise UpstreamError(
            f"{url}: offers {newest}, not {version}, and the profile names no 'release.archive'"
        )
    directory = archive.format(version=version)
    sums_url = urljoin(directory, "SHA256SUMS")
    try:
        sums = parse_checksums(await get(sums_url))
    except UpstreamNotFound as exc:
        raise UpstreamError(
            f"Ubuntu {version} is neither in {url} (which offers {newest}) nor at {directory}"
        ) from exc
    files: dict[str, ReleaseFile] = {}
    for role, ftype in spec.files.items():
        if ftype in SUMS_ITEMS:
            files[role] = _sums_file(spec, sums, sums_url, ftype, version, (directory,))
            continue
        item = newest_items.get(ftype) if isinstance(newest_items, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise UpstreamError(f"{url}: {newest} has no '{ftype}' item to name the file after")
        # Point releases share one naming scheme: ubuntu-24.04.4-live-server-amd64.iso -> .3
        name = basename(item["path"]).replace(newest, version)
        if name not in sums:
            raise UpstreamError(f"{sums_url} lists no {name}")
        files[role] = ReleaseFile(name, sums[name], (urljoin(directory, name),))
    return Release(version, files, directory, sums_url)


async def resolve(spec: ReleaseSpec, get: Getter, version: str | None) -> Release:
    url = urljoin(spec.url, spec.get("stream"))
    try:
        doc = json.loads(await get(url))
    except ValueError as exc:
        raise UpstreamError(f"{url}: not JSON ({exc})") from exc
    versions = _versions(doc, spec, url)
    newest = max(versions, key=version_key)
    want = version or newest
    if want != spec.line and not want.startswith(spec.line + "."):
        raise UpstreamError(f"{want} is not a release of Ubuntu {spec.line}")
    newest_items = versions[newest].get("items") if isinstance(versions[newest], dict) else None
    if want not in versions:
        return await _from_archive(spec, get, newest, newest_items, want, url)
    entry = versions[want]
    files = _from_stream(spec, entry.get("items") if isinstance(entry, dict) else None, want, url)
    if not files:
        raise UpstreamError(f"{url}: the profile takes no file of {want} from the stream (like iso)")
    first = next(iter(files.values()))
    directory = urljoin(first.urls[0], ".")
    archive = spec.get("archive")
    # Once this point release moves, its SHA256SUMS and tarball are in the archive directory too.
    moved = (archive.format(version=want),) if archive else ()
    files.update(await _from_sums(spec, get, want, directory, moved))
    return Release(want, files, directory, url)
