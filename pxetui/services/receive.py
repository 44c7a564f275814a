"""Reading what waits on a non-blocking datagram socket, a batch at a time.

DHCP (its ports and its packet tap) and the IPv6 router-advert service are woken by the loop
when a socket is readable; each then reads at most BATCH datagrams and goes back to the loop,
so a room powering on (or a flood) cannot keep the other services from their turn.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

BATCH = 64  # datagrams read per wake-up before yielding to the loop


def waiting_datagrams(sock: socket.socket, bufsize: int, batch: int = BATCH) -> Iterator[tuple[bytes, Any]]:
    """(data, address) of each datagram waiting on `sock`, up to `batch` of them."""
    for _ in range(batch):
        try:
            yield sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            return  # nothing more waiting
        except OSError:
            return  # closed under us (stop) or an ICMP error: the next wake-up tells
