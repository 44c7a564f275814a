"""Wake-on-LAN: the magic packet, sent on the serving interface only.

A magic packet is 6 x 0xff then the target MAC 16 times. NICs look for it anywhere in a frame,
so it goes out twice: as a raw Ethernet frame with EtherType 0x0842 (what most BIOS settings
call "WoL") and as a UDP broadcast to port 9 of the interface's subnet, for NICs and switches
that only pass IP. Both leave through the chosen interface and never through another.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence

from pxetui.errors import PxetuiError
from pxetui.host.mac import normalize_mac

ETH_P_WOL = 0x0842
WOL_UDP_PORT = 9
BROADCAST_MAC = b"\xff" * 6


class WakeError(PxetuiError):
    pass


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(normalize_mac(mac).replace(":", ""))


def magic_payload(mac: str) -> bytes:
    return b"\xff" * 6 + mac_bytes(mac) * 16


def wol_frame(target_mac: str, source_mac: str) -> bytes:
    """A broadcast Ethernet frame of EtherType 0x0842 carrying the magic payload."""
    header = BROADCAST_MAC + mac_bytes(source_mac) + struct.pack("!H", ETH_P_WOL)
    return header + magic_payload(target_mac)


def send_wake(
    interface: str,
    source_mac: str,
    targets: Sequence[str],
    address: ipaddress.IPv4Interface | None = None,
) -> int:
    """Send one raw frame (and one UDP broadcast when `address` is known) per target MAC.

    Returns the number of machines woken; raises WakeError saying what to do when the
    interface refuses (not root, interface gone).
    """
    macs = [normalize_mac(t) for t in targets]
    if not macs:
        return 0
    try:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
            raw.bind((interface, 0))
            for mac in macs:
                raw.send(wol_frame(mac, source_mac))
        if address is not None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
                udp.bind((str(address.ip), 0))
                target = str(address.network.broadcast_address)
                for mac in macs:
                    udp.sendto(magic_payload(mac), (target, WOL_UDP_PORT))
    except PermissionError as exc:
        raise WakeError(
            f"cannot send wake-on-LAN on {interface}: {exc.strerror}; run pxetui as root"
        ) from exc
    except OSError as exc:
        raise WakeError(
            f"cannot send wake-on-LAN on {interface}: {exc.strerror or exc};"
            f" check the interface with `ip link show {interface}`"
        ) from exc
    return len(macs)
