"""Copy one file out of a verified tar archive (Ubuntu's netboot tarball) with Python's tarfile.

Ubuntu's release directory lists `ubuntu-<version>-netboot-amd64.tar.gz` in its SHA256SUMS,
not the files inside it; the tarball holds the network boot chain (`amd64/bootx64.efi`, shim
signed by Microsoft, and `amd64/grubx64.efi`, Canonical's network GRUB), where the ISO holds
only the CD GRUB, which does not boot from the network. So the tarball is downloaded and
verified like a kernel and the loaders are taken out of it here: what comes out of a verified
archive is as trustworthy as the archive.

Only the one named member is read, never `extractall`: its name is checked by the profile
schema (plain relative names), the member must be a regular file (a symlink, hard link or
device would make tar write somewhere, or something, else) of bounded size, and it is written
by this code into a fresh private directory, so nothing in the archive chooses where a file
lands. A name listed twice is refused: tar would let the later copy win, unseen.
"""

from __future__ import annotations

import hashlib
import lzma
import tarfile
import tempfile
import zlib
from pathlib import Path

from pxetui.boot.cache import place_extracted
from pxetui.errors import UsageError

MAX_FILE_BYTES = 256 << 20  # a shim or a GRUB is a few MB
MAX_MEMBERS = 100_000  # Ubuntu's netboot tarball has a few dozen; tarfile keeps every header


class TarArchiveError(UsageError):
    """The file could not be taken out of the archive; the message says which and why."""


def _member_name(member: tarfile.TarInfo) -> str:
    # tar writes `./amd64/bootx64.efi` when made with `tar -C DIR .`, `amd64/...` otherwise.
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _find(tar: tarfile.TarFile, archive: Path, inner: str) -> tarfile.TarInfo:
    found: list[tarfile.TarInfo] = []
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise TarArchiveError(f"{archive} has over {MAX_MEMBERS} members: not a netboot archive")
        if _member_name(member) == inner:
            found.append(member)
    if not found:
        raise TarArchiveError(f"{archive} has no file {inner}")
    if len(found) > 1:
        raise TarArchiveError(f"{archive} lists {inner} {len(found)} times: which one is meant is unclear")
    member = found[0]
    if member.issym() or member.islnk():
        raise TarArchiveError(f"{inner} in {archive} is a link to {member.linkname!r}, not a file: refused")
    if not member.isreg():
        raise TarArchiveError(f"{inner} in {archive} is not a regular file (a directory or device): refused")
    if member.size > MAX_FILE_BYTES:
        raise TarArchiveError(f"{inner} in {archive} is over {MAX_FILE_BYTES >> 20} MB: not a boot loader")
    return member


def extract_from_tar(archive: Path, inner: str, dest: Path, origin: str | None = None) -> str:
    """Copy member `inner` of `archive` to `dest` (via dest.part); mark it; return its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        # "r:*": gzip, xz, bzip2 or plain, whichever it is; read as a stream of headers.
        with tarfile.open(archive, "r:*") as tar:
            member = _find(tar, archive, inner)
            source = tar.extractfile(member)
            if source is None:
                raise TarArchiveError(f"{inner} in {archive} has no data to read")
            with tempfile.TemporaryDirectory(prefix=".tar-", dir=dest.parent) as tmp:
                out = Path(tmp) / "file"
                written = 0
                with source, out.open("xb") as fh:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_FILE_BYTES:  # a header that lied about the size
                            raise TarArchiveError(
                                f"{inner} in {archive} is over {MAX_FILE_BYTES >> 20} MB: not a boot loader"
                            )
                        digest.update(chunk)
                        fh.write(chunk)
                sha = digest.hexdigest()
                place_extracted(out, dest, sha, origin or f"archive:{archive.name}:{inner}")
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise TarArchiveError(f"cannot take {inner} out of {archive}: {exc}") from exc
    return sha
