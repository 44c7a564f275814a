"""What the TUI's drawing costs a service on another thread: a UDP answer's delay, no network.

pxetui answers DHCP on a thread of its own (`pxetui-dhcp`), the services run on a loop thread,
the TUI draws on the main thread; all three share one GIL. A DHCP answer waits for the GIL
each time its thread wakes up (the request arrived, the send returned), so the TUI's share of
the GIL is what shows up as DHCP delay (bench/room measures it on the wire). This bench
reproduces that without namespaces: the events of a room (`--replay` a `bench/room --keep`
events.jsonl at its own pace, or a synthetic room of `--machines` PCs loading kernels, an
http.progress event per PC every 0.5 s as the HTTP service sends them) are fed on a session
loop thread, an answering thread receives a UDP request on localhost and sends a reply, and a
client in another process sends a request every 5 ms and times each answer. The TUI thread's
CPU share over the same seconds is the steadier figure on a shared machine.

Three setups, same run: no TUI; the TUI in Textual's headless driver at `--size` (layout and
rendering happen, the terminal write does not); the same TUI with DataTable's own cell updates
(MachineTable.cell_caching off: every visible cell drawn again when any cell changes, the
reference the machine table is measured against).

    .venv/bin/python bench/tui_gil.py [--seconds 8] [--machines 100] [--size 160x45] [--replay FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pxetui.model.events import DhcpDiscover, HttpProgress, HttpRequest, make_event
from pxetui.session import Session, SessionConfig
from pxetui.session_loop import SessionLoop
from pxetui.tui.app import PxetuiApp
from pxetui.tui.launch import SWITCH_INTERVAL
from pxetui.tui.widgets import MachineTable

PROGRESS_SECONDS = 0.5  # the HTTP service's sampling interval
KERNEL_BYTES = 50 * 1024 * 1024

CLIENT = r"""
import json, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
delays = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    sent = time.monotonic()
    s.sendto(b"x" * 300, ("127.0.0.1", port))
    try:
        s.recv(2048)
    except TimeoutError:
        delays.append(1000.0)
        continue
    delays.append((time.monotonic() - sent) * 1000)
    time.sleep(0.005)
print(json.dumps(delays))
"""


class Answerer:
    """A thread that answers each UDP request with a little Python work, as DhcpReceiver does."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, name="bench-answer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
            except OSError:
                return
            reply = bytes(reversed(data))  # stands for parsing and building an answer
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        self.sock.close()


async def feed(session: Session, machines: int, stop: threading.Event) -> int:
    macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(machines)]
    path = "/files/room/kernel"
    for mac in macs:
        session.bus.publish(DhcpDiscover(mac=mac, arch=7, vendor_class="PXEClient"))
        session.bus.publish(
            HttpRequest(mac=mac, path=path, kind="kernel", file="linux", total=KERNEL_BYTES, client="")
        )
    sent, tick = 0, 0
    started = time.monotonic()
    while not stop.is_set():
        tick += 1
        # Spread over the interval as the sampler's PCs started at different times.
        for n, mac in enumerate(macs):
            rate = 1.0e6 + 2e4 * n + 1e5 * (tick % 7)
            done = min(KERNEL_BYTES - 1, int(rate * tick * PROGRESS_SECONDS))
            session.bus.publish(
                HttpProgress(
                    mac=mac, path=path, kind="kernel", file="linux", client="",
                    bytes=done, total=KERNEL_BYTES, rate=rate,
                )
            )  # fmt: skip
            sent += 1
            if n % 10 == 9:
                await asyncio.sleep(PROGRESS_SECONDS / 10)
        await asyncio.sleep(max(0.0, started + tick * PROGRESS_SECONDS * 1.1 - time.monotonic()))
    return sent


async def replay(session: Session, path: Path, stop: threading.Event) -> int:
    """Publish a recorded room's events (`bench/room --keep`'s events.jsonl) at their pace."""
    lines = [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    start = next(e["ts"] for e in lines if e["event"] == "service.ready")
    began = time.time()
    sent = 0
    for doc in lines:
        if stop.is_set():
            break
        name, mac, ts = doc.pop("event"), doc.pop("mac", None), doc.pop("ts")
        wait = began + max(0.0, ts - start) - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        session.bus.publish(make_event(name, mac, ts=time.time(), **doc))
        sent += 1
    return sent


def measure(port: int, seconds: float) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), str(seconds)], capture_output=True, text=True, check=True
    )
    return sorted(json.loads(out.stdout))


async def run_case(kind: str, args: argparse.Namespace) -> tuple[list[float], int, float]:
    width, height = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp, SessionLoop() as services:
        session = Session(SessionConfig(interface="bench0", state_dir=Path(tmp)))
        session.open()
        session.bus.bind_loop(services.loop)
        session.bus._loop_thread = services.thread_id  # bound from here, runs there
        stop = threading.Event()
        work = replay(session, args.replay, stop) if args.replay else feed(session, args.machines, stop)
        feeding = asyncio.run_coroutine_threadsafe(work, services.loop)
        answerer = Answerer()
        try:
            if kind == "none":
                await asyncio.sleep(1.0)
                delays = await asyncio.to_thread(measure, answerer.port, args.seconds)
                return delays, 0, 0.0
            app = PxetuiApp(session, start_session=False, session_loop=services)
            async with app.run_test(size=(width, height)) as pilot:
                if kind == "datatable":
                    app.screen.query_one(MachineTable).cell_caching = False
                await pilot.pause(1.0)
                gc.collect()  # as the app does once its services started (app.start_services)
                gc.freeze()
                clock = time.pthread_getcpuclockid(threading.get_ident())  # the TUI's thread
                cpu = time.clock_gettime(clock)
                delays = await asyncio.to_thread(measure, answerer.port, args.seconds)
                cpu = time.clock_gettime(clock) - cpu
                return delays, app.refreshes, cpu / args.seconds
        finally:
            stop.set()
            feeding.result(5)
            answerer.close()


def figures(delays: list[float]) -> str:
    def at(q: float) -> float:
        return delays[min(len(delays) - 1, int(len(delays) * q))]

    return f"{len(delays):6}  p50 {at(0.5):6.2f}  p99 {at(0.99):7.2f}  max {delays[-1]:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--size", default="160x45", help="the terminal, COLSxROWS")
    parser.add_argument(
        "--replay", type=Path, help="a room's events.jsonl (bench/room --keep) instead of the synthetic feed"
    )
    parser.add_argument("--cases", nargs="+", default=["none", "tui", "datatable"])
    args = parser.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL)  # as run_tui sets it
    labels = {"none": "no TUI", "tui": "TUI (pxetui)", "datatable": "TUI, DataTable's own updates"}
    what = f"the room of {args.replay}" if args.replay else f"{args.machines} PCs loading"
    print(f"{what}, {args.seconds:g} s per setup, terminal {args.size}")
    print(f"{'setup':<30} {'answers':>6}  answer delay in ms                     refreshes  TUI thread CPU")
    for kind in args.cases:
        delays, refreshes, cpu = asyncio.run(run_case(kind, args))
        print(f"{labels[kind]:<30} {figures(delays)}   {refreshes:9}  {cpu:6.1%}", flush=True)


if __name__ == "__main__":
    main()
