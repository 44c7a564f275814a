"""Headless mode: run the Session and print one line per event until SIGINT/SIGTERM.

With --json each line is the event's JSON (`Event.to_json`, the contract scripts read); without,
it is the sentence the TUI's event log shows (`model/sentences.py`), for a person watching.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections import deque
from typing import TextIO

from pxetui.model.events import Event, EventsDropped
from pxetui.model.sentences import log_line
from pxetui.session import Session

PRINT_BACKLOG = 10_000  # lines waiting for a slow reader before any is dropped
CLOSE_TIMEOUT = 5.0  # seconds to let a stuck reader take the last lines at exit
BATCH_SECONDS = 0.02  # how long the printer lets lines gather before it writes them


class EventPrinter:
    """Prints events on a thread of its own, so a reader that stops reading never stops DHCP.

    Written on the loop, `out.write` blocks once the pipe is full (64 KiB: a few hundred
    events): `pxetui --headless --json | less` left unscrolled would have held every service.
    Lines wait in a bounded backlog instead; progress lines are the first dropped (past half
    full), any line once it is full, and the number dropped is printed as an
    `events.dropped` line as soon as the reader catches up. The loop only formats and appends;
    the thread writes what gathered every BATCH_SECONDS, in one write.
    """

    def __init__(self, json_lines: bool, out: TextIO) -> None:
        self.json_lines = json_lines
        self.out = out
        self.dropped = 0
        self._lines: deque[str] = deque()  # append and popleft are atomic: no lock needed
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._write_lines, name="pxetui-printer", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        backlog = len(self._lines)
        if backlog >= PRINT_BACKLOG or (backlog > PRINT_BACKLOG // 2 and event.name.endswith(".progress")):
            self.dropped += 1
            return
        self._lines.append(self._format(event))

    def _write_lines(self) -> None:
        reported = 0
        while True:
            # Waking per event would take the GIL from the services' thread thousands of times
            # a second; waking per batch costs it 1/BATCH_SECONDS times.
            closing = self._closing.wait(BATCH_SECONDS)
            text = []
            while self._lines:
                text.append(self._lines.popleft())
            dropped = self.dropped
            if dropped != reported:
                note = EventsDropped(count=dropped - reported)
                text.append(self._format(note))
                reported = dropped
            if text:
                try:
                    self.out.write("\n".join(text) + "\n")
                    self.out.flush()
                except (BrokenPipeError, ValueError, OSError):
                    return  # the reader left (`| head`): the services go on, unprinted
            if closing:
                return

    def _format(self, event: Event) -> str:
        return event.to_json() if self.json_lines else log_line(event)

    def close(self) -> None:
        """Print what is waiting (for at most CLOSE_TIMEOUT if the reader is stuck), then stop."""
        self._closing.set()
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
        if not json_lines:  # JSON readers have service.ready's proxy facts; people read stderr
            for warning in session.start_warnings():
                print(f"pxetui: warning: {warning}", file=sys.stderr, flush=True)
        await stopping.wait()
    finally:
        await session.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        printer.close()
    return 0
