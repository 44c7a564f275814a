"""Plain events: the only thing services emit, and what every view consumes.

An event has a dotted name from the contract in DESIGN.md (`dhcp.ack`, `tftp.progress`, ...),
the MAC it concerns (or None) and free-form JSON-safe fields. The bus fans events out to
subscribers on the asyncio loop, whatever thread emitted them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger(__name__)

# Names from DESIGN.md's contract; services may add more (`plan.*`, `session.*`).
CONTRACT_EVENTS = frozenset(
    {
        "service.ready",
        "dhcp.rival",
        "dhcp.discover",
        "dhcp.offer",
        "dhcp.request",
        "dhcp.ack",
        "dhcp.nak",
        "tftp.start",
        "tftp.progress",
        "tftp.done",
        "http.request",
        "http.progress",
        "http.done",
        "menu.select",
        "install.done",
        "install.failed",
        "error",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    mac: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": round(self.ts, 6), "event": self.name, "mac": self.mac}
        for key, value in self.fields.items():
            if key not in out:
                out[key] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)

    def describe(self) -> str:
        """One human line: `12:00:01 dhcp.ack 52:54:00:12:34:01 ip=198.18.0.100`."""
        clock = time.strftime("%H:%M:%S", time.localtime(self.ts))
        extras = " ".join(f"{k}={v}" for k, v in self.fields.items())
        who = f" {self.mac}" if self.mac else ""
        return f"{clock} {self.name}{who} {extras}".rstrip()


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, always delivered on the bus's event loop.

    Services running in threads (tftpy) and operator actions from the TUI's thread emit
    through the same call; the bus hops onto the loop with `call_soon_threadsafe`, so the
    session's own subscribers never need locks. A view living on another thread (the TUI)
    is called on the bus's thread and must hand the event over itself.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def on_loop_thread(self) -> bool:
        """True when called on the thread that runs the bus's loop (or no loop is bound)."""
        return self._loop is None or threading.get_ident() == self._loop_thread

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, name: str, mac: str | None = None, **fields: Any) -> Event:
        event = Event(name=name, mac=mac, fields=fields)
        self.publish(event)
        return event

    def publish(self, event: Event) -> None:
        loop = self._loop
        if loop is not None and not self.on_loop_thread():
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._deliver, event)
            return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                # One broken view must not stop the others (or the service that emitted).
                _log.exception("event subscriber failed on %s", event.name)
