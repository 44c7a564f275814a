"""Scapy-built DHCP clients for the lab: raw frames from a client namespace, replies parsed by scapy.

Sockets are created on a short-lived thread that entered the namespace (setns affects only that
thread); the socket stays in that namespace and is then used from the test's own thread.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
ZERO_UUID = b"\x00" + bytes(16)


def netns_socket(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    result: list[Any] = []

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as fh:
                if libc.setns(fh.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            result.append(socket.socket(family, kind, proto))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    sock: socket.socket = result[0]
    return sock


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def dhcp_packet(
    mac: str,
    message: str,
    *,
    xid: int = 0x1234,
    broadcast: bool = True,
    arch: int | None = None,
    vendor_class: bytes | None = None,
    user_class: bytes | None = None,
    uuid_option: bytes | None = None,
    requested: str | None = None,
    server_id: str | None = None,
    extra: list[Any] | None = None,
) -> Any:
    options: list[Any] = [("message-type", message)]
    if arch is not None:
        options.append((93, arch.to_bytes(2, "big")))
    if vendor_class is not None:
        options.append((60, vendor_class))
    if user_class is not None:
        options.append((77, user_class))
    if uuid_option is not None:
        options.append((97, uuid_option))
    if requested is not None:
        options.append(("requested_addr", requested))
    if server_id is not None:
        options.append(("server_id", server_id))
    options += extra or []
    options += [("param_req_list", [1, 3, 6, 43, 60, 66, 67]), "end"]
    return (
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=mac_bytes(mac), xid=xid, flags=0x8000 if broadcast else 0)
        / DHCP(options=options)
    )


def pxe_vendor_class(arch: int) -> bytes:
    return f"PXEClient:Arch:{arch:05d}:UNDI:003010".encode()


def dhcp_options(reply: Any) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for item in reply[DHCP].options:
        if isinstance(item, tuple):
            out[item[0]] = item[1] if len(item) == 2 else item[1:]
    return out


class RawClient:
    """Sends frames on a client namespace's eth0 and collects the DHCP replies that reach it."""

    def __init__(self, netns: str, iface: str = "eth0") -> None:
        self.sock = netns_socket(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((iface, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def send(self, frame: Any) -> None:
        self.sock.send(bytes(frame))

    def send_raw(self, data: bytes) -> None:
        self.sock.send(data)

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(65535)
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def replies(
        self, timeout: float, want: int | None = None, match: Callable[[Any], bool] = lambda r: True
    ) -> list[Any]:
        """DHCP replies (scapy Ether packets from UDP port 67) until `want` matched or `timeout`."""
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while want is None or len(found) < want:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                break
            data, address = self.sock.recvfrom(65535)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            frame = Ether(data)
            is_reply = UDP in frame and frame[UDP].sport == 67 and BOOTP in frame and frame[BOOTP].op == 2
            if is_reply and match(frame):
                found.append(frame)
        return found

    def close(self) -> None:
        self.sock.close()


def random_macs(count: int, prefix: str = "02:00:5e") -> list[str]:
    tail = os.urandom(1)[0]
    return [f"{prefix}:{tail:02x}:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(count)]


def uuid_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw[1:]))
