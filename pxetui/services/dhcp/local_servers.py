"""Other DHCP servers on this machine: listeners on UDP 67 that would hear our PCs too.

The probe cannot see them. It sends its DISCOVER through a packet socket, which the kernel
never delivers to local sockets, and the watch skips frames this host sends itself. Nor does
the bind fail: dnsmasq, Kea and pxetui all set SO_REUSEADDR on port 67, so a second server
binds next to the first and both answer every DISCOVER (two OFFERs, each server NAKing the
other's address, no PC gets a lease). So pxetui asks the kernel instead.

sock_diag (the netlink interface `ss` uses) lists this network namespace's UDP sockets with
the interface each is bound to (SO_BINDTODEVICE), which /proc/net/udp does not show; the
owning process is found by the socket's inode in /proc/PID/fd, named with psutil. A socket on
port 67 counts when it hears broadcasts on the served interface: bound to the wildcard (or the
interface's address) and to that interface or to none. When sock_diag is not available the
device is unknown, and every wildcard listener counts (the report says so).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

SERVER_PORT = 67
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
ALL_STATES = 0xFFFFFFFF
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then an all-zero inet_diag_sockid
_REQUEST = struct.Struct("=BBBBI48s")
# inet_diag_msg: family, state, timer, retrans; sockid (sport, dport big-endian, src, dst,
# ifindex, cookie); expires, rqueue, wqueue, uid, inode
_MESSAGE = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
UNKNOWN_DEVICE = -1


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


@dataclass(frozen=True, slots=True)
class _Socket:
    address: str
    ifindex: int  # 0: no SO_BINDTODEVICE; UNKNOWN_DEVICE: could not be read
    inode: int


def dhcp_listeners(ifname: str, address: str, skip_inodes: Iterable[int] = ()) -> list[Listener]:
    """The other sockets on UDP 67 that hear broadcasts on `ifname` (whose address is `address`)."""
    try:
        ifindex = socket.if_nametoindex(ifname)
    except OSError:
        ifindex = 0
    skip = set(skip_inodes)
    sockets = [s for s in _port_sockets(SERVER_PORT) if s.inode not in skip]
    heard = [s for s in sockets if _hears(s, ifindex, address)]
    owners = _owners({s.inode for s in heard})
    found: list[Listener] = []
    for sock in heard:
        pid = owners.get(sock.inode)
        found.append(
            Listener(
                address=sock.address,
                device=_ifname(sock.ifindex),
                device_known=sock.ifindex != UNKNOWN_DEVICE,
                pid=pid,
                process=_process_name(pid),
            )
        )
    return found


def _hears(sock: _Socket, ifindex: int, address: str) -> bool:
    # A socket bound to one unicast address never receives the broadcast DISCOVER.
    if sock.address not in ("0.0.0.0", "255.255.255.255", address):
        return False
    return sock.ifindex in (0, UNKNOWN_DEVICE) or sock.ifindex == ifindex


def _port_sockets(port: int) -> list[_Socket]:
    try:
        return _diag_udp_sockets(port)
    except OSError:
        return _proc_udp_sockets(port)


def _diag_udp_sockets(port: int) -> list[_Socket]:
    """This namespace's IPv4 UDP sockets on local `port`, with their bound interface."""
    request = _REQUEST.pack(socket.AF_INET, socket.IPPROTO_UDP, 0, 0, ALL_STATES, bytes(48))
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    found: list[_Socket] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)
        nl.sendto(header + request, (0, 0))
        while True:
            data = nl.recv(65536)
            if not data:
                return found
            for kind, body in _netlink_messages(data):
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    continue
                sock = _diag_socket(body, port)
                if sock is not None:
                    found.append(sock)


def _netlink_messages(data: bytes) -> Iterable[tuple[int, bytes]]:
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            return
        yield kind, data[offset + _NLMSG.size : offset + length]
        offset += (length + 3) & ~3


def _diag_socket(body: bytes, port: int) -> _Socket | None:
    if len(body) < _MESSAGE.size:
        return None
    fields = _MESSAGE.unpack_from(body)
    sport, src, ifindex, inode = fields[4], fields[6], fields[8], fields[14]
    if int.from_bytes(sport, "big") != port:
        return None
    return _Socket(socket.inet_ntoa(src[:4]), ifindex, inode)


def _proc_udp_sockets(port: int) -> list[_Socket]:
    """Fallback without sock_diag: /proc/net/udp has address and inode, not the device."""
    found: list[_Socket] = []
    with contextlib.suppress(OSError), open("/proc/thread-self/net/udp") as fh:
        next(fh, None)
        for line in fh:
            parts = line.split()
            if len(parts) < 10:
                continue
            host, _, hexport = parts[1].partition(":")
            if int(hexport, 16) != port:
                continue
            address = socket.inet_ntoa(struct.pack("<I", int(host, 16)))
            found.append(_Socket(address, UNKNOWN_DEVICE, int(parts[9])))
    return found


def _owners(inodes: set[int]) -> dict[int, int]:
    """inode -> pid of the process holding that socket (the first found)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[int, int] = {}
    if not wanted:
        return owners
    for pid in psutil.pids():
        try:
            entries = os.scandir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to read
        with entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    inode = wanted.get(os.readlink(entry.path))
                    if inode is not None:
                        owners.setdefault(inode, pid)
        if len(owners) == len(wanted):
            break
    return owners


def _process_name(pid: int | None) -> str | None:
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        name = process.name()
        cmdline = process.cmdline()
    except psutil.Error:
        return None
    # `python -m pxetui` is named python by the kernel; say what it is.
    if any(arg == "pxetui" or arg.endswith("/pxetui") for arg in cmdline[:3]):
        return "pxetui"
    return name


def _ifname(ifindex: int) -> str | None:
    if ifindex in (0, UNKNOWN_DEVICE):
        return None
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"interface #{ifindex}"
