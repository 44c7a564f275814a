"""Coalescing of session events into UI refreshes.

Events arrive one by one (hundreds a second with 300 PCs transferring); the table must not
redraw per event. The app folds events into this buffer as they come, and a timer drains it a
few times a second: each drain touches each changed machine's row once, whatever the number
of events about it.

Events are added on the session loop's thread and taken on the TUI's, hence the lock; both
sides hold it for a few set operations only, never while drawing.

A refresh still drew every row whose progress moved: with 100 PCs loading, that was every row
at every refresh, and drawing is GIL time the DHCP thread waits for (issue 18). So a row whose
only change is its transfer's figures is drawn at most once a second (ProgressThrottle); a
change of stage, address or stall is drawn at the next refresh.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pxetui.model.events import (
    DhcpAck,
    DhcpClientEvent,
    DhcpDiscover,
    DhcpRival,
    Error,
    Event,
    HttpProgress,
    HttpRequest,
    InstallDone,
    InstallFailed,
    PlanEvent,
    ProxyStats,
    ServiceReady,
    TftpProgress,
    TftpStart,
)

LOG_KEEP = 1000  # event log lines kept in memory (and in the log pane)
PROGRESS_SECONDS = 1.0  # a row whose only change is its progress is drawn at most this often


@dataclass(slots=True)
class PendingUpdates:
    macs: set[str] = field(default_factory=set)
    all_rows: bool = False
    header: bool = True
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=LOG_KEEP))
    services: dict[str, Any] = field(default_factory=dict)
    rival: str | None = None
    rival_mode: str | None = None  # the mode DHCP switched to because of the rival ("proxy")
    ready: bool = False  # service.ready seen: the services dict is what runs (maybe nothing)
    events_seen: int = 0
    # MAC -> network-boot DISCOVERs since it last took an address or asked for a file: how a
    # PC stuck at DHCP is told ("asked 3 times, never took it"). The registry keeps steps only.
    dhcp_asks: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, event: Event) -> None:
        with self._lock:
            self._add(event)

    def _add(self, event: Event) -> None:
        self.events_seen += 1
        if not isinstance(event, (TftpProgress, HttpProgress, ProxyStats)):
            # Progress is the flood (10 a second per transfer) and the table shows it; the
            # log keeps the steps, which would otherwise be pushed out of it within seconds.
            # The proxy's figures (every 2 s while PCs install) are the header's.
            self.events.append(event)
        if event.mac is not None:
            self.macs.add(event.mac)
            self._count_asks(event, event.mac)
        elif isinstance(event, PlanEvent):
            self.all_rows = True  # an import or policy change may touch many rows
        if isinstance(event, ServiceReady):
            self.services = dict(event.services)
            self.ready = True
            self.header = True
        elif isinstance(event, DhcpRival):
            where = f"{event.server_id} ({event.server_mac})"
            self.rival = f"{event.process} on this machine" if event.process else where
            self.rival_mode = event.switched_to or self.rival_mode
            self.header = True
        elif isinstance(event, (PlanEvent, DhcpClientEvent, InstallDone, InstallFailed, Error, ProxyStats)):
            self.header = True  # counters and the policy line change with these

    def _count_asks(self, event: Event, mac: str) -> None:
        if isinstance(event, DhcpDiscover) and event.netboot:
            self.dhcp_asks[mac] = self.dhcp_asks.get(mac, 0) + 1
        elif isinstance(event, (DhcpAck, TftpStart, HttpRequest)):
            self.dhcp_asks.pop(mac, None)

    def asks(self, mac: str) -> int | None:
        """DISCOVERs `mac` sent without taking an address since this view started; None: none seen."""
        return self.dhcp_asks.get(mac)

    def take(self) -> tuple[set[str] | None, list[Event], bool]:
        """(changed MACs or None for every row, new events, header changed) and reset."""
        with self._lock:
            return self._take()

    def _take(self) -> tuple[set[str] | None, list[Event], bool]:
        macs: set[str] | None = None if self.all_rows else self.macs
        events = list(self.events)
        header = self.header
        self.macs = set()
        self.all_rows = False
        self.header = False
        self.events.clear()
        return macs, events, header


@dataclass(slots=True)
class ProgressThrottle:
    """Whether a row whose only change is its transfer's figures (bar, percent, speed, elapsed)
    is drawn now or waits.

    A row is drawn when its newest sample is `seconds` newer, by the events' own clock, than
    the one it shows (the HTTP service samples every 0.5 s, TFTP every 0.25 s: every second or
    fourth sample is drawn), or when what it shows is `seconds` old on the drawing side's
    clock, so the last sample before a transfer pauses or ends is not left unshown.
    """

    seconds: float = PROGRESS_SECONDS
    # MAC -> (event time of the sample its row shows, drawing clock when it was drawn)
    _shown: dict[str, tuple[float, float]] = field(default_factory=dict)

    def due(self, mac: str, sample_at: float, now: float) -> bool:
        shown = self._shown.get(mac)
        if shown is None:
            return True
        shown_sample, drawn_at = shown
        if sample_at < shown_sample:  # a clock set back, a state reloaded: never hold a row for it
            return True
        return sample_at - shown_sample >= self.seconds or now - drawn_at >= self.seconds

    def drawn(self, mac: str, sample_at: float, now: float) -> None:
        self._shown[mac] = (sample_at, now)

    def forget(self, mac: str) -> None:
        self._shown.pop(mac, None)
