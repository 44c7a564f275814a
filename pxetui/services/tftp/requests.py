"""What a read request may name and which options it gets: pure functions, no sockets.

The boot-files catalog (name -> real path, built at start) is the whitelist: a request is
served only if, after stripping the leading "/" some firmwares send, it names a catalog
entry. The checks before the lookup only give the refusal a precise message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pxetui.services.tftp.packets import ERR_ACCESS, ERR_ILLEGAL, ERR_NOT_FOUND

MIN_BLKSIZE = 8
DEFAULT_BLKSIZE = 512
MAX_BLKSIZE = 65464  # RFC 2348
MAX_WINDOWSIZE = 64  # RFC 7440 allows 65535; more than this only floods a PC's NIC ring
IP_UDP_TFTP_HEADERS = 32  # 20 IPv4 + 8 UDP + 4 TFTP: what fits one frame at the link MTU
MODES = ("octet", "netascii")


class Refused(Exception):
    """A request we answer with a TFTP ERROR packet."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def catalog_name(filename: str, catalog: dict[str, Path]) -> str:
    """The catalog entry `filename` names, or Refused with the reason."""
    name = clean_name(filename)
    if name in catalog:
        return name
    raise Refused(ERR_NOT_FOUND, f"{name[:80]} is not a boot file served here")


def clean_name(filename: str) -> str:
    """`filename` without the leading "/" some firmwares send, or Refused: it is looked up
    (in the catalog, or as a grub.cfg / profile file name), never joined to a path."""
    if not filename:
        raise Refused(ERR_ILLEGAL, "empty file name")
    if "\0" in filename:
        raise Refused(ERR_ACCESS, "NUL byte in file name")
    if "\\" in filename:
        raise Refused(ERR_ACCESS, "backslash in file name")
    if not filename.isprintable():
        raise Refused(ERR_ACCESS, "control character in file name")
    name = filename.lstrip("/")
    if ".." in name.split("/"):
        raise Refused(ERR_ACCESS, "'..' in file name")
    return name


@dataclass(frozen=True, slots=True)
class Negotiated:
    blksize: int
    windowsize: int
    oack: dict[str, int]  # empty: the client asked for no option we accept, so no OACK


def negotiate(options: dict[str, str], size: int, mtu: int) -> Negotiated:
    """Options per RFC 2347/2348/2349/7440; unknown or malformed ones are ignored, not fatal."""
    blksize_cap = max(MIN_BLKSIZE, min(MAX_BLKSIZE, mtu - IP_UDP_TFTP_HEADERS))
    accepted: dict[str, int] = {}
    blksize, windowsize = DEFAULT_BLKSIZE, 1
    asked_blksize = _int(options.get("blksize"))
    if asked_blksize is not None and asked_blksize >= MIN_BLKSIZE:
        blksize = min(asked_blksize, blksize_cap)
        accepted["blksize"] = blksize
    if _int(options.get("tsize")) is not None:
        accepted["tsize"] = size
    asked_window = _int(options.get("windowsize"))
    if asked_window is not None and asked_window >= 1:
        windowsize = min(asked_window, MAX_WINDOWSIZE)
        accepted["windowsize"] = windowsize
    return Negotiated(blksize=blksize, windowsize=windowsize, oack=accepted)


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 10:
        return None
    return int(value)


def to_netascii(content: bytes) -> bytes:
    """RFC 764 NVT line endings: CR becomes CR NUL, LF becomes CR LF."""
    return content.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
