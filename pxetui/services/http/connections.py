"""The HTTP service's own accept loop: a connection cap below the open-file limit, a cap per
address, and one report a second whatever a flood does.

asyncio's accept loop, at EMFILE, logs a traceback for each of up to `backlog` accept()s per
wake-up and tries again a second later, without end: 142,577 tracebacks (58 MB) in a minute,
and every other service of the process was out of descriptors too. pxetui accepts itself:
- one connection costs up to FDS_PER_CONNECTION descriptors (its socket, the file it sends, the
  sendfile worker's duplicates of both), so the cap is what the soft RLIMIT_NOFILE leaves after
  the descriptors open at start and a reserve (TFTP transfers, DHCP, the state files' saves);
- one address holds at most `per_address` of them: one PC, or one flooding host, cannot take
  the rest from the room;
- a connection over either cap gets `503` at once and is closed: it costs a descriptor for a
  moment, never for as long as the client likes;
- an accept() that fails for want of descriptors (something else took them) is retried after a
  short pause, never in a busy loop; all three are counted and reported at most once a second
  per kind (RefusalReports), never as a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass

FDS_PER_CONNECTION = 4  # socket + open file + the sendfile worker's dup of each
RESERVED_FDS = 64  # always left to TFTP, DHCP and the state files
RESERVED_SHARE = 16  # ... and 1/16 of the limit on top, so a large limit keeps a large reserve
MAX_PER_ADDRESS = 32  # an installer opens a few connections at once, never dozens
ACCEPT_RETRY = 0.1  # seconds to wait after accept() found no descriptor
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    cap: int  # connections at once, from all addresses
    per_address: int  # connections at once from one address

    @classmethod
    def for_process(cls, open_now: int | None = None) -> ConnectionLimits:
        """The limits the soft RLIMIT_NOFILE allows, with `open_now` descriptors already open."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return cls.for_limit(soft, open_descriptors() if open_now is None else open_now)

    @classmethod
    def for_limit(cls, soft: int, open_now: int) -> ConnectionLimits:
        if soft == resource.RLIM_INFINITY or soft > 1 << 20:
            soft = 1 << 20
        spare = soft - open_now - RESERVED_FDS - soft // RESERVED_SHARE
        cap = max(1, spare // FDS_PER_CONNECTION)
        return cls(cap=cap, per_address=max(1, min(MAX_PER_ADDRESS, cap // 4)))


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return RESERVED_FDS  # no /proc: assume as many as the reserve


class ConnectionGate:
    """Which accepted sockets may become HTTP connections; it holds the live ones per address.

    A socket is live until its transport closes it (fileno() is then -1); lists are pruned as
    they are looked at, and an address with none left is forgotten, so the table never grows
    with the addresses a flood uses.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._live: dict[str, list[socket.socket]] = {}
        self._total = 0

    def _prune(self, address: str) -> int:
        socks = self._live.get(address)
        if not socks:
            return 0
        alive = [s for s in socks if s.fileno() != -1]
        self._total -= len(socks) - len(alive)
        if alive:
            self._live[address] = alive
        else:
            del self._live[address]
        return len(alive)

    def live(self) -> int:
        for address in list(self._live):
            self._prune(address)
        return self._total

    def admit(self, sock: socket.socket, address: str) -> str | None:
        """None if `sock` may be served (it is then counted), else why not: per-address | busy."""
        if self._prune(address) >= self.limits.per_address:
            return "per-address"
        if self._total >= self.limits.cap and self.live() >= self.limits.cap:
            return "busy"
        self._live.setdefault(address, []).append(sock)
        self._total += 1
        return None


def turn_away(sock: socket.socket, why: str) -> None:
    """Answer 503 and close: the client learns to retry, and the descriptor is free at once."""
    body = f"pxetui: {why}; try again in a few seconds\n".encode()
    try:
        sock.setblocking(False)
        # What the client already sent is read first: closing over unread data would reset
        # the connection before the client reads the answer.
        with contextlib.suppress(OSError):
            sock.recv(65536)
        sock.send(BUSY % (len(body), body))
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()


def listen(host: str, port: int, backlog: int = 256) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


Refuse = Callable[[str, str, str], None]  # (kind, reason, client address)


async def accept_loop(
    listener: socket.socket,
    gate: ConnectionGate,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    refuse: Refuse,
) -> None:
    """Accept until cancelled; each connection the gate admits is served by `protocol_factory`."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, peer = await loop.sock_accept(listener)
        except OSError as exc:
            if exc.errno in OUT_OF_DESCRIPTORS:
                refuse("no descriptor", f"cannot accept a connection: {exc.strerror}", "")
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                continue  # the client gave up between SYN and accept
            # Anything else is reported and retried: the service must not stop accepting.
            refuse("accept error", f"cannot accept a connection: {exc}", "")
            await asyncio.sleep(ACCEPT_RETRY)
            continue
        address = str(peer[0])
        why = gate.admit(conn, address)
        if why is not None:
            what = "too many connections from this address" if why == "per-address" else "server busy"
            turn_away(conn, what)
            refuse(why, f"{what}: {address} turned away with 503", address)
            continue
        try:
            await loop.connect_accepted_socket(protocol_factory, conn)
        except OSError as exc:
            conn.close()
            refuse("no descriptor", f"cannot serve a connection: {exc.strerror}", address)
