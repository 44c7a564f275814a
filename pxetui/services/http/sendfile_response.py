"""File responses whose bodies go out on the sendfile workers, and report their transfer.

aiohttp has no public way to hand a FileResponse's body to another sender: its
`FileResponse._sendfile(request, fobj, offset, count)` is the one place, and it is private.
pxetui keeps that one override in `WorkerFileResponse` below, and nowhere else:
- pyproject.toml pins aiohttp to the minor versions it was checked on;
- `check_aiohttp_hook()` runs at import and fails loudly (no silent fallback to the slow
  path) if aiohttp renamed or re-shaped the hook; tests/test_http_hook.py runs it and checks
  that FileResponse.prepare() still calls the hook.
Everything before the hook (Range, conditional requests, HEAD, the headers) stays aiohttp's.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from pxetui.model.events import HttpDone
from pxetui.services.context import Emit
from pxetui.services.http.sendfile_pool import SendfilePool, SendfileUnavailable
from pxetui.services.http.transfers import BodyTransfer, TransferMonitor

HOOK = "_sendfile"
HOOK_PARAMETERS = ("self", "request", "fobj", "offset", "count")


class AiohttpHookChanged(RuntimeError):
    """aiohttp's FileResponse no longer has the private hook pxetui overrides."""


def check_aiohttp_hook() -> None:
    hook = getattr(web.FileResponse, HOOK, None)
    if hook is None or not inspect.iscoroutinefunction(hook):
        raise AiohttpHookChanged(
            f"aiohttp {_aiohttp_version()} has no coroutine FileResponse.{HOOK}: pxetui's sendfile"
            " workers cannot carry file bodies. Install the aiohttp versions pyproject.toml names."
        )
    names = tuple(inspect.signature(hook).parameters)
    if names != HOOK_PARAMETERS:
        raise AiohttpHookChanged(
            f"aiohttp {_aiohttp_version()} changed FileResponse.{HOOK}{names}, pxetui overrides"
            f" {HOOK_PARAMETERS}. Install the aiohttp versions pyproject.toml names."
        )


def _aiohttp_version() -> str:
    import aiohttp

    return str(getattr(aiohttp, "__version__", "?"))


check_aiohttp_hook()


class WorkerFileResponse(web.FileResponse):
    """A FileResponse whose body the sendfile workers send instead of the services' thread."""

    def __init__(self, path: Path, pool: SendfilePool) -> None:
        super().__init__(path)
        self._pool = pool

    async def _sendfile(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or sock is None or not self._pool.running or self.compression:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)  # the headers, written at once
        assert writer is not None
        by_loop = bool(transport.get_write_buffer_size())  # headers still queued: asyncio waits
        if not by_loop:
            reading = transport.is_reading()
            transport.pause_reading()  # the next request waits until this body is out
            try:
                await self._pool.send(sock, fobj.fileno(), offset, count)
            except SendfileUnavailable:
                by_loop = True  # out of descriptors: this one goes the slower way, but goes
            finally:
                if reading and not transport.is_closing():
                    transport.resume_reading()
        if by_loop:
            await asyncio.get_running_loop().sendfile(transport, fobj, offset, count)
        await web.StreamResponse.write_eof(self)
        return writer


class TrackedFileResponse(WorkerFileResponse):
    """A file response that reports its own transfer: sampled while it runs, http.done after.

    aiohttp sends the body inside prepare() (by sendfile), so that is where the transfer
    begins and ends. A client that goes away surfaces as ConnectionError, which aiohttp
    takes as "close this connection" without logging a traceback.
    """

    def __init__(
        self, path: Path, transfer: BodyTransfer, monitor: TransferMonitor, emit: Emit, pool: SendfilePool
    ) -> None:
        super().__init__(path, pool)
        self._transfer = transfer
        self._monitor = monitor
        self._emit = emit

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:  # FileResponse.prepare would open the file and send it again
            return None
        transfer = self._transfer
        self._monitor.begin(transfer)
        ok, reason = False, ""
        try:
            writer = await super().prepare(request)
            ok = self.status < 400
            reason = "" if ok else f"status {self.status}"
            return writer
        except ConnectionError as exc:
            reason = "client stopped reading" if transfer.stalled else f"client went away ({exc})"
            raise
        except OSError as exc:
            reason = f"send failed: {exc}"
            raise ConnectionResetError(reason) from exc
        finally:
            self._monitor.end(transfer)
            body = self.content_length or 0
            transfer.total = body
            sent = body if ok else transfer.sent
            elapsed = max(time.monotonic() - transfer.started, 1e-6)
            self._emit(
                HttpDone(
                    mac=transfer.mac,
                    path=transfer.path,
                    kind=transfer.kind,
                    file=transfer.file,
                    client=transfer.client,
                    bytes=sent,
                    total=body,
                    rate=round(sent / elapsed, 1),
                    ok=ok,
                    reason=reason or None,
                )
            )
