"""Whether this machine has a route to the internet other than through the lab interface.

A laptop on an isolated lab switch with no Wi-Fi has none: network installs cannot finish
there, and the operator should hear it at start rather than after twenty minutes of a stuck
installer. Only the routing tables are read (/proc/net/route, /proc/net/ipv6_route of the
network namespace pxetui runs in): nothing is sent.
"""

from __future__ import annotations

from pathlib import Path

NO_UPLINK = "no route to the internet: network installs will fail; use ISO-based profiles or a local mirror"
IPV4_ROUTES = Path("/proc/net/route")
IPV6_ROUTES = Path("/proc/net/ipv6_route")
_RTF_UP = 0x1


def ipv4_default_interfaces(table: str) -> set[str]:
    """Interfaces with an IPv4 default route, from the text of /proc/net/route."""
    found: set[str] = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, flags, mask = fields[0], fields[1], fields[3], fields[7]
        try:
            up = int(flags, 16) & _RTF_UP
        except ValueError:
            continue
        if destination == "00000000" and mask == "00000000" and up:
            found.add(iface)
    return found


def ipv6_default_interfaces(table: str) -> set[str]:
    """Interfaces with an IPv6 default route (::/0 through a gateway), from /proc/net/ipv6_route."""
    found: set[str] = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        destination, prefix, next_hop, iface = fields[0], fields[1], fields[4], fields[9]
        # The kernel lists "unreachable" ::/0 entries on lo; a default route has a next hop.
        if destination == "0" * 32 and prefix == "00" and next_hop != "0" * 32 and iface != "lo":
            found.add(iface)
    return found


def has_uplink(lab_interface: str, ipv4: str, ipv6: str = "") -> bool:
    """True when some default route leaves through an interface other than the lab's."""
    others = (ipv4_default_interfaces(ipv4) | ipv6_default_interfaces(ipv6)) - {lab_interface}
    return bool(others)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def uplink_present(lab_interface: str) -> bool:
    """Read this namespace's routing tables: is there a way out other than the lab interface?"""
    return has_uplink(lab_interface, _read(IPV4_ROUTES), _read(IPV6_ROUTES))
