"""Other DHCP servers on this machine: listeners on UDP 67 that would hear our PCs too.

The probe cannot see them. It sends its DISCOVER through a packet socket, which the kernel
never delivers to local sockets, and the watch skips frames this host sends itself. Nor does
the bind fail: dnsmasq, Kea and pxetui all set SO_REUSEADDR on port 67, so a second server
binds next to the first and both answer every DISCOVER (two OFFERs, each server NAKing the
other's address, no PC gets a lease). So pxetui asks the kernel instead (`host/sockets.py`:
sock_diag for the sockets and the interface each is bound to, psutil for their owners).

A socket on port 67 counts when it hears broadcasts on the served interface: bound to the
wildcard (or the interface's address) and to that interface or to none. When sock_diag is not
available the device is unknown, and every wildcard listener counts (the report says so).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from pxetui.host.sockets import (
    UNKNOWN_DEVICE,
    UdpSocket,
    interface_name,
    process_name,
    socket_owners,
    udp_sockets,
)

SERVER_PORT = 67


@dataclass(frozen=True, slots=True)
class Listener:
    """One socket on UDP 67 that hears the served interface's broadcasts."""

    address: str  # the local address it is bound to ("0.0.0.0": every address)
    device: str | None  # the interface it is bound to, None when bound to none
    device_known: bool  # False: sock_diag was unavailable, so the binding could not be read
    pid: int | None
    process: str | None  # "dnsmasq", "kea-dhcp4", "pxetui", ...

    def describe(self) -> str:
        """`dnsmasq (pid 1234)` or, when the owner is hidden, what the kernel says about it."""
        who = f"{self.process} (pid {self.pid})" if self.process else "a process pxetui cannot see"
        if not self.device_known:
            return f"{who} on {self.address}:{SERVER_PORT}, interface unknown"
        where = f"bound to {self.device}" if self.device else "on every interface"
        return f"{who}, {where}"


def dhcp_listeners(ifname: str, address: str, skip_inodes: Iterable[int] = ()) -> list[Listener]:
    """The other sockets on UDP 67 that hear broadcasts on `ifname` (whose address is `address`)."""
    try:
        ifindex = socket.if_nametoindex(ifname)
    except OSError:
        ifindex = 0
    skip = set(skip_inodes)
    sockets = [s for s in udp_sockets(SERVER_PORT) if s.inode not in skip]
    heard = [s for s in sockets if _hears(s, ifindex, address)]
    owners = socket_owners({s.inode for s in heard})
    found: list[Listener] = []
    for sock in heard:
        pid = owners.get(sock.inode)
        found.append(
            Listener(
                address=sock.address,
                device=interface_name(sock.ifindex),
                device_known=sock.ifindex != UNKNOWN_DEVICE,
                pid=pid,
                process=process_name(pid),
            )
        )
    return found


def _hears(sock: UdpSocket, ifindex: int, address: str) -> bool:
    # A socket bound to one unicast address never receives the broadcast DISCOVER.
    if sock.address not in ("0.0.0.0", "255.255.255.255", address):
        return False
    return sock.ifindex in (0, UNKNOWN_DEVICE) or sock.ifindex == ifindex
