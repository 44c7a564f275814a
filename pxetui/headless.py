"""Headless mode: run the Session and print one line per event until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import queue
import signal
import sys
import threading
from typing import TextIO

from pxetui.events import Event
from pxetui.session import Session

PRINT_QUEUE = 10_000  # lines waiting for a slow reader before any is dropped
CLOSE_TIMEOUT = 5.0  # seconds to let a stuck reader take the last lines at exit


class EventPrinter:
    """Prints events on a thread of its own, so a reader that stops reading never stops DHCP.

    Written on the loop, `out.write` blocks once the pipe is full (64 KiB: a few hundred
    events): `pxetui --headless --json | less` left unscrolled would have held every service.
    Lines wait in a bounded queue instead; progress lines are the first dropped (past half
    full), any line once it is full, and the number dropped is printed as an
    `events.dropped` line as soon as the reader catches up.
    """

    def __init__(self, json_lines: bool, out: TextIO) -> None:
        self.json_lines = json_lines
        self.out = out
        self.dropped = 0
        self._queue: queue.Queue[str | None] = queue.Queue(PRINT_QUEUE)
        self._thread = threading.Thread(target=self._write_lines, name="pxetui-printer", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if event.name.endswith(".progress") and self._queue.qsize() > PRINT_QUEUE // 2:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(self._format(event))
        except queue.Full:
            self.dropped += 1

    def _write_lines(self) -> None:
        reported = 0
        while True:
            line = self._queue.get()
            dropped = self.dropped
            try:
                if dropped != reported:
                    note = Event("events.dropped", fields={"count": dropped - reported})
                    self.out.write(self._format(note) + "\n")
                    reported = dropped
                if line is not None:
                    self.out.write(line + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError, OSError):
                return  # the reader left (`| head`): the services go on, unprinted
            if line is None:
                return

    def _format(self, event: Event) -> str:
        return event.to_json() if self.json_lines else event.describe()

    def close(self) -> None:
        """Print what is queued (for at most CLOSE_TIMEOUT if the reader is stuck), then stop."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=CLOSE_TIMEOUT)
        except queue.Full:
            return
        self._thread.join(CLOSE_TIMEOUT)


async def run_headless(session: Session, json_lines: bool, out: TextIO = sys.stdout) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    printer = EventPrinter(json_lines, out)
    session.bus.subscribe(printer)
    try:
        await session.start()
        await stopping.wait()
    finally:
        await session.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        printer.close()
    return 0
