"""How much the TUI slows the event loop the services share with it, under 300 busy PCs.

Every service answers packets on the one asyncio loop the TUI also draws on, so what the TUI
costs shows up as loop lag: how late a 5 ms timer fires is how long a DHCP request arriving at
that moment waits before its handler runs. Three setups, same run, same event stream (300
machines, each reporting transfer progress 10 times a second = 3000 events/s):

  no TUI         the Session alone (what `--headless` without a printer costs)
  TUI coalesced  pxetui's TUI: events folded, table refreshed 4 times a second
  TUI per event  the naive design, one table refresh per event (the peer to beat)

The TUI runs headless (Textual's test driver: layout and rendering happen, the terminal write
does not). No network is used at all. Bounded: --seconds per setup (default 8).

    .venv/bin/python bench/tui_load.py [--seconds 8] [--machines 300] [--rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pxetui.model.events import DhcpDiscover, Event, HttpProgress, HttpRequest
from pxetui.session import Session, SessionConfig
from pxetui.tui.app import PxetuiApp

PROBE_SECONDS = 0.005
TICK_SECONDS = 0.01


class PerEventApp(PxetuiApp):
    """The design pxetui avoids: redraw the changed row on every single event."""

    def on_session_event(self, event: Event) -> None:
        super().on_session_event(event)
        self.flush_updates()


def open_session(state: Path) -> Session:
    session = Session(SessionConfig(interface="bench0", state_dir=state))
    session.open()
    return session


async def feed(session: Session, machines: int, rate: float, seconds: float) -> int:
    """Publish `rate` progress events per machine per second, spread over 10 ms ticks."""
    macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(machines)]
    for mac in macs:
        session.bus.publish(DhcpDiscover(mac=mac, arch=7, vendor_class="PXEClient"))
        path = "/files/debian-12/kernel"
        session.bus.publish(HttpRequest(mac=mac, path=path, kind="kernel", file="linux", total=10**8, client=""))
    per_tick = machines * rate * TICK_SECONDS
    sent, owed, i = 0, 0.0, 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    next_tick = loop.time()
    while loop.time() < end:
        owed += per_tick
        while owed >= 1:
            mac = macs[i % machines]
            i += 1
            owed -= 1
            sent += 1
            session.bus.publish(
                HttpProgress(
                    mac=mac, path="/files/debian-12/kernel", kind="kernel", file="linux", client="",
                    bytes=i * 1000, total=10**8, rate=1.2e7,
                )
            )
        next_tick += TICK_SECONDS
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
    return sent


async def probe(seconds: float) -> list[float]:
    """Lateness of a 5 ms timer, in ms, sampled for `seconds`."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    end = loop.time() + seconds
    while loop.time() < end:
        start = loop.time()
        await asyncio.sleep(PROBE_SECONDS)
        lags.append((loop.time() - start - PROBE_SECONDS) * 1000)
    return lags


async def run_case(kind: str, machines: int, rate: float, seconds: float) -> tuple[list[float], int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        session = open_session(Path(tmp))
        session.bus.bind_loop(asyncio.get_running_loop())

        async def load() -> tuple[list[float], int]:
            lags, sent = await asyncio.gather(probe(seconds), feed(session, machines, rate, seconds))
            return lags, sent

        if kind == "none":
            lags, sent = await load()
            return lags, sent, 0
        app_class = PerEventApp if kind == "per-event" else PxetuiApp
        app = app_class(session, start_session=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.5)
            lags, sent = await load()
            refreshes = app.refreshes
        return lags, sent, refreshes


def summary(lags: list[float]) -> str:
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):7.2f}  p99 {p99:7.2f}  max {ordered[-1]:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--machines", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="progress events per machine per second")
    args = parser.parse_args()
    cases: list[tuple[str, str]] = [
        ("none", "no TUI"),
        ("coalesced", "TUI coalesced (pxetui)"),
        ("per-event", "TUI per event (naive)"),
    ]
    print(f"{args.machines} machines x {args.rate:g} progress events/s, {args.seconds:g} s per setup")
    print(f"{'setup':<24} {'events':>7} {'refreshes':>9}   loop lag in ms (how long a packet waits)")
    for kind, label in cases:
        started = time.monotonic()
        runner: Callable[[], Awaitable[tuple[list[float], int, int]]] = lambda k=kind: run_case(  # noqa: E731
            k, args.machines, args.rate, args.seconds
        )
        lags, sent, refreshes = asyncio.run(runner())
        took = time.monotonic() - started
        print(f"{label:<24} {sent:>7} {refreshes:>9}   {summary(lags)}   ({took:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
