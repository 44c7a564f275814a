"""Checksum listings: GNU SHA256SUMS, BSD-style CHECKSUM, a .treeinfo's [checksums], an InRelease.

Every name is relative to the directory of the listing itself; callers join it to a URL.
"""

from __future__ import annotations

import configparser
import re

_GNU_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+[*]?(.+?)\s*$")  # sha256sum: HASH  name
_BSD_LINE = re.compile(r"^SHA256\s*\((.+)\)\s*=\s*([0-9a-fA-F]{64})\s*$")  # Fedora/Rocky CHECKSUM
_TREEINFO_LINE = re.compile(r"^(\S[^=]*?)\s*=\s*sha256:([0-9a-fA-F]{64})\s*$")  # .treeinfo [checksums]
_RELEASE_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+(\d+)\s+(\S+)$")  # InRelease: HASH SIZE path


def parse_checksums(text: str) -> dict[str, str]:
    """{name as listed, without a leading ./: sha256} from any of the three file formats."""
    sums: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[", ";")):
            continue
        if m := _GNU_LINE.match(line):
            digest, name = m.group(1), m.group(2)
        elif (m := _BSD_LINE.match(line)) or (m := _TREEINFO_LINE.match(line)):
            name, digest = m.group(1), m.group(2)
        else:
            continue
        sums[name.strip().removeprefix("./")] = digest.lower()
    return sums


def inrelease_fields(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(the header fields, {path: sha256} of its SHA256: section) of a Debian (In)Release file.

    Give it what `debian.verified_inrelease` returned (the part gpgv verified); the PGP armour
    of a whole InRelease is skipped here, not checked.
    """
    fields: dict[str, str] = {}
    sha256: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        if raw.startswith("-----BEGIN PGP SIGNATURE"):
            break
        if raw.startswith((" ", "\t")):
            if section == "SHA256" and (m := _RELEASE_LINE.match(raw.strip())):
                sha256[m.group(3)] = m.group(1).lower()
            continue
        key, sep, value = raw.partition(":")
        if sep and key and " " not in key:
            section = key
            fields.setdefault(key, value.strip())
    return fields, sha256


def treeinfo(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # paths keep their case
    parser.read_string(text)
    return parser
