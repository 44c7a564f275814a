"""MAC addresses in any common notation, normalised to lower-case colon form."""

import re

_HEX = re.compile(r"[0-9a-fA-F]")
_SEPARATED = re.compile(r"^[0-9a-fA-F]{1,2}([:-])(?:[0-9a-fA-F]{1,2}\1){4}[0-9a-fA-F]{1,2}$")
_CISCO = re.compile(r"^[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}$")
_BARE = re.compile(r"^[0-9a-fA-F]{12}$")


class MacError(ValueError):
    pass


def normalize_mac(text: str) -> str:
    """Return `aa:bb:cc:dd:ee:ff` for aa:bb:.., aa-bb-.., aabb.ccdd.eeff or aabbccddeeff."""
    s = text.strip()
    if _SEPARATED.match(s):
        parts = re.split(r"[:-]", s)
        return ":".join(p.zfill(2).lower() for p in parts)
    if _CISCO.match(s) or _BARE.match(s):
        digits = "".join(_HEX.findall(s)).lower()
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    raise MacError(
        f"{text!r} is not a MAC address: use six hex pairs such as 52:54:00:12:34:56"
        " (dashes, aabb.ccdd.eeff and bare 12 hex digits work too)"
    )


def mac_from_bytes(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


def unusable_mac(mac: str) -> str | None:
    """Why no PC has `mac` (normalised): broadcast, all zeros, or multicast; None if a PC may."""
    if mac == "ff:ff:ff:ff:ff:ff":
        return f"{mac} is the broadcast address, not a PC's MAC"
    if mac == "00:00:00:00:00:00":
        return f"{mac} (all zeros) is not a PC's MAC: check the label or the BIOS screen"
    if int(mac[:2], 16) & 1:
        return f"{mac} is a multicast address (odd first octet), not a PC's MAC: check for a typo"
    return None
