"""Progress of bulk HTTP transfers without touching the data path.

Kernels, initrds and ISOs go out with sendfile(2): the bytes never pass through Python, so
there is no per-chunk hook to count them. Instead one task samples every active transfer's
socket a few times a second and reads the kernel's own count of bytes the client has
acknowledged (TCP_INFO.tcpi_bytes_acked). That costs one getsockopt per transfer per tick,
whatever the speed. The same sample shows a client that stopped reading: after
`stall_timeout` seconds without progress its socket is shut down, which wakes the pending
sendfile with an error so the handler, its task and its file are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from pxetui.model.events import HttpProgress
from pxetui.services.context import Emit

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked is the u64 at byte 120 (Linux >= 4.1).
_TCP_INFO_LEN = 128
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_OFFSET = 120


def bytes_acked(sock: Any) -> int | None:
    """Bytes the peer has acknowledged on this TCP connection, or None if the kernel won't say."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, ValueError):
        return None
    if len(raw) < _TCP_INFO_LEN:
        return None
    return int(_BYTES_ACKED.unpack_from(raw, _BYTES_ACKED_OFFSET)[0])


@dataclass(slots=True, eq=False)  # identity: each one is a distinct live transfer
class BodyTransfer:
    """One response body on its way to a client."""

    mac: str | None
    path: str
    kind: str
    file: str
    client: str
    sock: Any
    total: int = 0  # bytes of body this response sends (the range, for a 206)
    baseline: int = 0  # bytes acked on the connection before this response (keep-alive)
    started: float = field(default_factory=time.monotonic)
    last_acked: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    reported: int = -1
    stalled: bool = False

    @property
    def sent(self) -> int:
        """Body bytes acknowledged so far (headers make the raw count a little larger)."""
        return max(0, min(self.total, self.last_acked - self.baseline)) if self.total else 0

    def rate(self, now: float | None = None) -> float:
        elapsed = (now or time.monotonic()) - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


class TransferMonitor:
    """Samples active transfers every `interval` s: http.progress events and stall cut-off."""

    def __init__(self, emit: Emit, interval: float = 0.5, stall_timeout: float = 60.0) -> None:
        self._emit = emit
        self.interval = interval
        self.stall_timeout = stall_timeout
        self.active: set[BodyTransfer] = set()
        self.stalled_total = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pxetui-http-progress")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.active.clear()

    def begin(self, transfer: BodyTransfer) -> None:
        acked = bytes_acked(transfer.sock)
        transfer.baseline = transfer.last_acked = acked or 0
        self.active.add(transfer)

    def end(self, transfer: BodyTransfer) -> None:
        self.active.discard(transfer)
        acked = bytes_acked(transfer.sock)
        if acked is not None:
            transfer.last_acked = acked

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        for transfer in list(self.active):
            acked = bytes_acked(transfer.sock)
            if acked is None:
                continue
            if acked != transfer.last_acked:
                transfer.last_acked = acked
                transfer.last_progress = now
            elif now - transfer.last_progress > self.stall_timeout and not transfer.stalled:
                self._cut(transfer)
                continue
            if transfer.sent != transfer.reported:
                transfer.reported = transfer.sent
                self._emit(
                    HttpProgress(
                        mac=transfer.mac,
                        path=transfer.path,
                        kind=transfer.kind,
                        file=transfer.file,
                        client=transfer.client,
                        bytes=transfer.sent,
                        total=transfer.total,
                        rate=round(transfer.rate(now), 1),
                    )
                )

    def _cut(self, transfer: BodyTransfer) -> None:
        # Shutting the socket down wakes a sendfile waiting for room in the socket buffer
        # (it fails with EPIPE); the handler then ends the transfer and frees its file.
        transfer.stalled = True
        self.stalled_total += 1
        with contextlib.suppress(OSError):
            transfer.sock.shutdown(socket.SHUT_RDWR)
