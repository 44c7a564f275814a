"""The one private aiohttp hook pxetui overrides: a change in aiohttp fails here, loudly.

`WorkerFileResponse._sendfile` replaces aiohttp's `FileResponse._sendfile` so the sendfile
workers carry file bodies (tests/test_http.py checks the bytes they carry). If aiohttp renamed
the hook or stopped calling it from `prepare()`, the override would silently do nothing and
every body would go the slow way; these tests say so instead. No network: a Unix socket.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from pxetui.services.http import sendfile_response
from pxetui.services.http.sendfile_pool import SendfilePool
from pxetui.services.http.sendfile_response import AiohttpHookChanged, WorkerFileResponse, check_aiohttp_hook


def test_the_installed_aiohttp_has_the_hook() -> None:
    check_aiohttp_hook()  # raises AiohttpHookChanged naming the version otherwise


def test_a_renamed_or_reshaped_hook_is_an_error_not_a_silent_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    async def reshaped(self: Any, request: Any, fobj: Any, offset: int, count: int, extra: int = 0) -> None:
        return None

    monkeypatch.setattr(web.FileResponse, "_sendfile", reshaped)
    with pytest.raises(AiohttpHookChanged, match="changed FileResponse._sendfile"):
        check_aiohttp_hook()
    monkeypatch.delattr(web.FileResponse, "_sendfile")
    with pytest.raises(AiohttpHookChanged, match="has no coroutine FileResponse._sendfile"):
        check_aiohttp_hook()
    assert sendfile_response.HOOK == "_sendfile"


async def test_prepare_still_sends_the_body_through_the_hook(tmp_path: Path) -> None:
    body = bytes(range(256)) * 4099  # not a multiple of any buffer size
    served = tmp_path / "kernel"
    served.write_bytes(body)
    calls: list[tuple[int, int]] = []
    pool = SendfilePool(1)  # not started: the override hands the body back to aiohttp's own path

    class Recording(WorkerFileResponse):
        async def _sendfile(
            self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
        ) -> AbstractStreamWriter:
            calls.append((offset, count))
            return await super()._sendfile(request, fobj, offset, count)

    async def handler(request: web.Request) -> web.StreamResponse:
        return Recording(served, pool)

    app = web.Application()
    app.router.add_get("/kernel", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = tmp_path / "http.sock"
    await web.UnixSite(runner, str(sock)).start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as client:
            async with client.get("http://pxetui/kernel") as whole:
                assert await whole.read() == body
            async with client.get("http://pxetui/kernel", headers={"Range": "bytes=1000-1999"}) as part:
                assert part.status == 206 and await part.read() == body[1000:2000]
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)
    assert calls == [(0, len(body)), (1000, 1000)]
