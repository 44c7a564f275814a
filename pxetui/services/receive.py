"""Reading what waits on a non-blocking datagram socket, a batch at a time.

DHCP (its ports and its packet tap) and the IPv6 router-advert service are woken by the loop
when a socket is readable; each then reads at most BATCH datagrams and goes back to the loop,
so a room powering on (or a flood) cannot keep the other services from their turn.

DHCP's ports also read each datagram's kernel receive time (SO_TIMESTAMPNS), so that under
overload it answers what is fresh and drops what waited too long: with deep receive buffers
(8 MiB, for a room powering on) a server past its capacity otherwise works through a queue of
requests a second or more old, whose clients have retransmitted (or given up) already, and
every answer comes late (1.3-2.6 s at 1800 DORA/s, and throughput fell). A stale datagram is
skipped without being decoded, which is what lets the server catch up with the queue.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

BATCH = 64  # datagrams read per wake-up before yielding to the loop
STALE_SKIP = 4 * BATCH  # stale datagrams skipped per wake-up on top of the batch (cheap: never decoded)
# Linux's SO_TIMESTAMPNS (asm-generic value, and x86's; Python does not export it): the
# kernel adds the receive time as a struct timespec (CLOCK_REALTIME) to every datagram.
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@ll")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def waiting_datagrams(sock: socket.socket, bufsize: int, batch: int = BATCH) -> Iterator[tuple[bytes, Any]]:
    """(data, address) of each datagram waiting on `sock`, up to `batch` of them."""
    for _ in range(batch):
        try:
            yield sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            return  # nothing more waiting
        except OSError:
            return  # closed under us (stop) or an ICMP error: the next wake-up tells


def enable_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel for each datagram's receive time; False where it cannot (then none is stale)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def received_at(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel receive time in `ancdata` (seconds, wall clock), or None if it has none."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            stamp: float = seconds + nanoseconds / 1e9
            return stamp
    return None


def fresh_datagrams(
    sock: socket.socket,
    bufsize: int,
    max_age: float | Callable[[bytes], float],
    on_stale: Callable[[float], None],
    batch: int = BATCH,
    clock: Callable[[], float] = time.time,
) -> Iterator[tuple[bytes, Any]]:
    """Like `waiting_datagrams`, but a datagram that waited in the queue longer than `max_age`
    seconds is not yielded: `on_stale(age)` is called for it instead.

    `max_age` may depend on the datagram (a callable given its bytes): DHCP lets a REQUEST,
    whose DISCOVER was answered already, wait longer than a DISCOVER. Up to `batch` fresh
    ones and STALE_SKIP stale ones per call, so a backlog is skipped quickly and the loop
    still gets its turn. A datagram without a timestamp is fresh.
    """
    fresh = stale = 0
    while fresh < batch and stale < STALE_SKIP:
        try:
            data, ancdata, _flags, address = sock.recvmsg(bufsize, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        stamp = received_at(ancdata)
        age = clock() - stamp if stamp is not None else 0.0
        if age > (max_age if isinstance(max_age, float | int) else max_age(data)):
            stale += 1
            on_stale(age)
            continue
        fresh += 1
        yield data, address
