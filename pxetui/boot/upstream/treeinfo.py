"""Rocky Linux and AlmaLinux: a major-version tree (`.../9/BaseOS/x86_64/os/`) and its .treeinfo.

The major directory follows the newest minor (`[release] version = 9.6`); older minors move to
a vault (`release.archive`, a URL template with `{version}`), where a pinned or asked-for minor
is fetched from. `.treeinfo` `[checksums]` has `images/pxeboot/vmlinuz = sha256:HEX`.
"""

from __future__ import annotations

import configparser
from urllib.parse import urljoin

from pxetui.boot.upstream import (
    Getter,
    Release,
    ReleaseFile,
    ReleaseSpec,
    UpstreamError,
    UpstreamNotFound,
    basename,
)
from pxetui.boot.upstream.sums import parse_checksums, treeinfo


def tree_version(text: str, url: str) -> str:
    try:
        parser = treeinfo(text)
    except configparser.Error as exc:
        raise UpstreamError(f"{url}: not a .treeinfo ({exc})") from exc
    version = parser.get("release", "version", fallback="") or parser.get("general", "version", fallback="")
    if not version.strip():
        raise UpstreamError(f"{url}: names no version ([release] version)")
    return version.strip()


def tree_files(
    spec: ReleaseSpec, tree: str, text: str, url: str, archive: str | None
) -> dict[str, ReleaseFile]:
    sums = parse_checksums(text)
    files: dict[str, ReleaseFile] = {}
    for role, item in spec.files.items():
        name = item.strip("/")
        if name not in sums:
            raise UpstreamError(f"{url} lists no checksum for {name}")
        urls = (urljoin(tree, name),) + ((urljoin(archive, name),) if archive else ())
        files[role] = ReleaseFile(basename(name), sums[name], urls)
    return files


async def read_tree(get: Getter, tree: str) -> tuple[str, str]:
    url = urljoin(tree, ".treeinfo")
    return url, await get(url)


async def resolve(spec: ReleaseSpec, get: Getter, version: str | None) -> Release:
    url, text = await read_tree(get, spec.url)
    current = tree_version(text, url)
    archive_tpl = spec.get("archive")
    if version is None or version == current:
        archive = archive_tpl.format(version=current) if archive_tpl else None
        return Release(current, tree_files(spec, spec.url, text, url, archive), spec.url, url)
    if not archive_tpl:
        raise UpstreamError(
            f"{url} offers {current}, not {version}, and the profile names no 'release.archive'"
        )
    tree = archive_tpl.format(version=version)
    try:
        url, text = await read_tree(get, tree)
    except UpstreamNotFound as exc:
        raise UpstreamError(f"{version} is neither the current release ({current}) nor in {tree}") from exc
    found = tree_version(text, url)
    if found != version:
        raise UpstreamError(f"{url} describes {found}, not {version}")
    return Release(version, tree_files(spec, tree, text, url, None), tree, url)
