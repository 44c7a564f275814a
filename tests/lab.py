"""Test-side lab helpers: the lab itself is pxetui.lab.netns; this adds in-process namespace loops."""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from pxetui.lab.netns import LAB_SUPERNET, Client, Lab, LabError, ip, lab_available, leftover_namespaces

__all__ = [
    "LAB_SUPERNET",
    "Client",
    "Lab",
    "LabError",
    "NetnsLoop",
    "ip",
    "lab_available",
    "leftover_namespaces",
    "wait_for",
]

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetnsLoop:
    """An asyncio loop on a thread that has entered a lab namespace.

    Sockets opened by coroutines run here belong to that namespace, so an in-process Session
    can serve on the lab bridge while the test itself stays in the host namespace. (setns on
    one thread affects only that thread.)
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"netns-{netns}", daemon=True)

    def _main(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{self.netns}", "rb") as fh:
                if libc.setns(fh.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def __enter__(self) -> NetnsLoop:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10, step: float = 0.02) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def prefix(lab: Lab) -> str:
    """The first three octets of the lab's /24 (`198.18.3`), for addresses of its hosts."""
    return lab.server_ip.rsplit(".", 1)[0]
