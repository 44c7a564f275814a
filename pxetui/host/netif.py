"""Network interfaces: what exists, which one pxetui may serve on, and temporary addresses."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pxetui.errors import UsageError


class InterfaceError(UsageError):
    pass


SYSFS_NET = Path("/sys/class/net")


@dataclass(frozen=True, slots=True)
class Member:
    """What an interface is a port of: serving on it serves nobody, the master takes its packets."""

    master: str  # the bridge (or bond, team, ...) it is enslaved to
    kind: str  # "bridge", "bond" or "device"


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    name: str
    up: bool
    mtu: int
    speed_mbps: int
    mac: str
    ipv4: tuple[ipaddress.IPv4Interface, ...] = field(default_factory=tuple)
    default_route: bool = False
    member_of: Member | None = None  # a bridge's (or bond's) port: not a place to serve

    @property
    def address(self) -> ipaddress.IPv4Interface | None:
        return self.ipv4[0] if self.ipv4 else None


def member_of(name: str, sysfs: Path = SYSFS_NET) -> Member | None:
    """The device `name` is enslaved to (`NAME/master`; a bridge port has `NAME/brport`), or None.

    A bridge port still shows link and sometimes an address, but the kernel hands its frames to
    the bridge: pxetui bound there sees no DHCP at all. The bridge is where to serve.
    """
    here = sysfs / name
    try:
        master = os.path.basename(os.readlink(here / "master"))
    except OSError:
        master = ""
    bridge_port = (here / "brport").exists()
    if not master and not bridge_port:
        return None
    if bridge_port:
        kind = "bridge"
    elif (here / "bonding_slave").exists():
        kind = "bond"
    else:
        kind = "device"
    return Member(master=master or "its bridge", kind=kind)


def unusable_reason(info: InterfaceInfo) -> str | None:
    """Why pxetui cannot serve on `info` at all (a choice the picker refuses), or None."""
    if info.name == "lo":
        return "the loopback: pick a NIC"
    member = info.member_of
    if member is None:
        return None
    return f"{_membership(member)}: serve on {member.master} instead"


def _membership(member: Member) -> str:
    what = {"bridge": "a port of bridge", "bond": "a member of bond"}.get(member.kind, "enslaved to")
    return f"{what} {member.master}"


def choosable(interfaces: list[InterfaceInfo]) -> list[InterfaceInfo]:
    """The interfaces an operator may pick to serve on: not the loopback, no bridge or bond port."""
    return [i for i in interfaces if unusable_reason(i) is None]


def default_route_interfaces(route_file: Path = Path("/proc/self/net/route")) -> set[str]:
    names: set[str] = set()
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return names
    for line in lines:
        cols = line.split()
        if len(cols) > 2 and cols[1] == "00000000":
            names.add(cols[0])
    return names


def list_interfaces(sysfs: Path = SYSFS_NET) -> list[InterfaceInfo]:
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    defaults = default_route_interfaces()
    result = []
    for name in sorted(addrs):
        st = stats.get(name)
        ipv4 = []
        mac = ""
        for a in addrs[name]:
            if a.family == socket.AF_INET and a.netmask:
                ipv4.append(ipaddress.IPv4Interface(f"{a.address}/{a.netmask}"))
            elif a.family == psutil.AF_LINK:
                mac = a.address.lower()
        result.append(
            InterfaceInfo(
                name=name,
                up=bool(st and st.isup),
                mtu=st.mtu if st else 1500,
                speed_mbps=st.speed if st else 0,
                mac=mac,
                ipv4=tuple(ipv4),
                default_route=name in defaults,
                member_of=member_of(name, sysfs),
            )
        )
    return result


def find_interface(name: str) -> InterfaceInfo:
    interfaces = {i.name: i for i in list_interfaces()}
    info = interfaces.get(name)
    if info is None:
        others = ", ".join(n for n in interfaces if n != "lo") or "none"
        raise InterfaceError(
            f"no interface named {name!r} on this machine (interfaces: {others});"
            " run `ip -br link` to see them, or start pxetui without one to pick"
        )
    return info


def check_interface(name: str, address: ipaddress.IPv4Interface | None) -> InterfaceInfo:
    """The interface to serve on, or an InterfaceError saying what the operator must do."""
    info = find_interface(name)
    if name == "lo":
        raise InterfaceError("pxetui serves PCs on a network: 'lo' is the loopback, pick a NIC")
    if info.member_of is not None:
        master = info.member_of.master
        raise InterfaceError(
            f"{name} is {_membership(info.member_of)}: its packets go to {master}, so pxetui would"
            f" see no PC there; serve on {master}: `sudo pxetui {master}`"
        )
    if not info.up:
        raise InterfaceError(
            f"interface {name} is down: plug in the cable and run `sudo ip link set {name} up`"
        )
    if info.address is None and address is None:
        raise InterfaceError(
            f"interface {name} has no IPv4 address: start pxetui with"
            f" `--address 198.18.0.1/24` (added for this session, removed on exit)"
            f" or give it one with `sudo ip addr add ADDR/24 dev {name}`"
        )
    return info


def check_root() -> None:
    if os.geteuid() != 0:
        raise InterfaceError(
            "pxetui must run as root to serve DHCP (port 67) and TFTP (port 69):"
            " run it with sudo, e.g. `sudo pxetui eth1`"
        )


def parse_cidr(text: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError as exc:
        raise UsageError(
            f"--address {text!r} is not an IPv4 address with prefix, e.g. 198.18.0.1/24"
        ) from exc
    if "/" not in text:
        raise UsageError(f"--address {text!r} needs a prefix length, e.g. {text}/24")
    if iface.network.prefixlen > 30:
        raise UsageError(f"--address {text!r}: a /{iface.network.prefixlen} leaves no room for PCs; use /24")
    return iface


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def add_address(name: str, address: ipaddress.IPv4Interface) -> None:
    done = _ip("addr", "add", str(address), "dev", name)
    if done.returncode != 0:
        raise InterfaceError(f"could not add {address} to {name}: {done.stderr.strip() or 'ip failed'}")


def remove_address(name: str, address: ipaddress.IPv4Interface) -> bool:
    return _ip("addr", "del", str(address), "dev", name).returncode == 0


def interface_has_ip(name: str, ip: ipaddress.IPv4Address) -> bool:
    """Whether `ip` is on interface `name` now (one cheap look at the kernel's address list)."""
    return any(
        a.family == socket.AF_INET and a.address == str(ip) for a in psutil.net_if_addrs().get(name, ())
    )


def has_address(info: InterfaceInfo, address: ipaddress.IPv4Interface) -> bool:
    return any(a.ip == address.ip for a in info.ipv4)
