"""Headless mode: run the Session and print one line per event until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TextIO

from pxetui.events import Event
from pxetui.session import Session


def make_printer(json_lines: bool, out: TextIO):  # type: ignore[no-untyped-def]
    def print_event(event: Event) -> None:
        line = event.to_json() if json_lines else event.describe()
        out.write(line + "\n")
        out.flush()

    return print_event


async def run_headless(session: Session, json_lines: bool, out: TextIO = sys.stdout) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    session.bus.subscribe(make_printer(json_lines, out))
    try:
        await session.start()
        await stopping.wait()
    finally:
        await session.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
