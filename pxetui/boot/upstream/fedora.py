"""Fedora: `releases.json` says which releases exist; the release's tree says what it holds.

releases.json is an array of `{version, arch, variant, subvariant, link, sha256, size}` (size a
string, "44 Beta" versions to skip). "latest" is the highest plain version for the profile's
variant and arch; its installable tree (`release.tree`, with `{version}`) has the .treeinfo
with the kernel's and initrd's SHA-256. An end-of-life release moves to the archive.
"""

from __future__ import annotations

import json

from pxetui.boot.upstream import Getter, Release, ReleaseSpec, UpstreamError, UpstreamNotFound, version_key
from pxetui.boot.upstream.treeinfo import read_tree, tree_files, tree_version


def versions(text: str, spec: ReleaseSpec, url: str) -> list[str]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UpstreamError(f"{url}: not JSON ({exc})") from exc
    if not isinstance(doc, list):
        raise UpstreamError(f"{url}: not a releases list")
    found = {
        entry["version"]
        for entry in doc
        if isinstance(entry, dict)
        and isinstance(entry.get("version"), str)
        and entry["version"].isdigit()  # "44 Beta", "Rawhide": not a release
        and entry.get("variant") == spec.get("variant")
        and entry.get("arch") == spec.get("arch")
    }
    return sorted(found, key=version_key)


async def resolve(spec: ReleaseSpec, get: Getter, version: str | None) -> Release:
    listed = versions(await get(spec.url), spec, spec.url)
    line = spec.line
    if version is None:
        if line != "latest":
            version = line
        elif not listed:
            raise UpstreamError(f"{spec.url} lists no {spec.get('variant')} {spec.get('arch')} release")
        else:
            version = listed[-1]
    tree = spec.get("tree").format(version=version)
    archive_tpl = spec.get("archive")
    archive = archive_tpl.format(version=version) if archive_tpl else None
    try:
        url, text = await read_tree(get, tree)
    except UpstreamNotFound:
        if archive is None:
            raise
        tree, archive = archive, None  # end of life: the archive is where it lives now
        url, text = await read_tree(get, tree)
    found = tree_version(text, url)
    if found != version:
        raise UpstreamError(f"{url} describes Fedora {found}, not {version}")
    return Release(version, tree_files(spec, tree, text, url, archive), tree, url)
