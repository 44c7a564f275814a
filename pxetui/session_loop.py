"""A Session's services on an asyncio loop of their own, in a thread of their own.

With the TUI and the services on one loop, every table redraw (tens to hundreds of ms with
300 machines) held back every DHCP answer until it was done. On their own loop the services
wait only for the GIL, which Python hands to a waiting thread every few milliseconds.

The thread is created by the caller's thread, so it serves in the caller's network namespace.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

STOP_TIMEOUT = 30.0  # seconds to wait for the loop thread to end after its last task


class SessionLoop:
    """Runs coroutines on a private loop thread; callers on any thread or loop await the result."""

    def __init__(self, name: str = "pxetui-services") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            # Whatever a stopped session left behind (it should be nothing) is cancelled here,
            # on its own loop, rather than destroyed pending when the loop closes.
            leftovers = asyncio.all_tasks(self.loop)
            for task in leftovers:
                task.cancel()
            if leftovers:
                self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` running on the session loop, from a coroutine on another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the session loop and block this (other) thread until it is done."""
        if not self.running:
            coro.close()
            raise RuntimeError("the session loop has been closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and wait for its thread; safe to call twice."""
        if not self.running:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STOP_TIMEOUT)

    def __enter__(self) -> SessionLoop:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
