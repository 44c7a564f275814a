"""Which process holds a UDP port on this machine: its sockets by sock_diag, their owners by psutil.

Two questions need it. DHCP: is another server listening on UDP 67 that would hear our PCs
(`services/dhcp/local_servers.py`; binding does not fail there, every server sets SO_REUSEADDR).
TFTP: whose socket made our bind on UDP 69 fail, so the message names it (dnsmasq, in.tftpd,
a second pxetui) instead of guessing.

sock_diag (the netlink interface `ss` uses) lists this network namespace's UDP sockets with
the interface each is bound to (SO_BINDTODEVICE), which /proc/net/udp does not show; without
sock_diag /proc is read and the device is unknown. The owner is found by the socket's inode
in /proc/PID/fd and named with psutil (`python -m pxetui` is named pxetui).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

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
WILDCARD = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class UdpSocket:
    """One IPv4 UDP socket of this network namespace, on a given local port."""

    address: str  # the local address it is bound to (WILDCARD: every address)
    ifindex: int  # 0: no SO_BINDTODEVICE; UNKNOWN_DEVICE: could not be read
    inode: int


@dataclass(frozen=True, slots=True)
class PortHolder:
    """The process behind a socket, as far as this machine lets pxetui see it."""

    address: str
    pid: int | None
    process: str | None  # "dnsmasq", "in.tftpd", "pxetui", ...

    def describe(self) -> str:
        """`dnsmasq (pid 1234)`, or what is known when the owner is hidden."""
        return f"{self.process} (pid {self.pid})" if self.process else "a process pxetui cannot see"


def udp_sockets(port: int) -> list[UdpSocket]:
    """This namespace's IPv4 UDP sockets on local `port` (sock_diag, else /proc/net/udp)."""
    try:
        return _diag_udp_sockets(port)
    except OSError:
        return _proc_udp_sockets(port)


def udp_port_holders(port: int, address: str, skip_inodes: Iterable[int] = ()) -> list[PortHolder]:
    """Who holds UDP `port` where a bind to `address` collides: that address or the wildcard."""
    skip = set(skip_inodes)
    held = [s for s in udp_sockets(port) if s.inode not in skip and s.address in (address, WILDCARD)]
    owners = socket_owners({s.inode for s in held})
    holders: list[PortHolder] = []
    for sock in held:
        pid = owners.get(sock.inode)
        holders.append(PortHolder(address=sock.address, pid=pid, process=process_name(pid)))
    return holders


def socket_owners(inodes: set[int]) -> dict[int, int]:
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


def process_name(pid: int | None) -> str | None:
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


def interface_name(ifindex: int) -> str | None:
    if ifindex in (0, UNKNOWN_DEVICE):
        return None
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"interface #{ifindex}"


def _diag_udp_sockets(port: int) -> list[UdpSocket]:
    request = _REQUEST.pack(socket.AF_INET, socket.IPPROTO_UDP, 0, 0, ALL_STATES, bytes(48))
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    found: list[UdpSocket] = []
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


def _diag_socket(body: bytes, port: int) -> UdpSocket | None:
    if len(body) < _MESSAGE.size:
        return None
    fields = _MESSAGE.unpack_from(body)
    sport, src, ifindex, inode = fields[4], fields[6], fields[8], fields[14]
    if int.from_bytes(sport, "big") != port:
        return None
    return UdpSocket(socket.inet_ntoa(src[:4]), ifindex, inode)


def _proc_udp_sockets(port: int) -> list[UdpSocket]:
    """Fallback without sock_diag: /proc/net/udp has address and inode, not the device."""
    found: list[UdpSocket] = []
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
            found.append(UdpSocket(address, UNKNOWN_DEVICE, int(parts[9])))
    return found
