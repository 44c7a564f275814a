#!/usr/bin/env python3
"""A room of N PCs switched on at once, on one 1 Gbit/s link: pxetui against dnsmasq + nginx.

Run as root from the repository: `sudo .venv/bin/python bench/room [--pcs 20 50 100] [--quick]
[--rounds N] [--tui] [--keep DIR]` (--quick: 5 and 10 PCs; --tui: pxetui as the TUI in tmux;
--keep: the servers' logs and every PC's DHCP send/receive times, pcs.json). Each PC is a lab namespace on the bridge doing what a UEFI PC does
(bench/room/pc.py): DHCP with PXE options (all with one cloned UUID, every third with the same
xid), TFTP of ipxe.efi (tsize probe + ERROR 8, then blksize 1468 windowsize 4), DHCP as iPXE,
the HTTP boot script, kernel + initrd over HTTP: ~50 MB of random bytes made in a temporary
directory, served by pxetui from a `path:` profile and by nginx from the same files. The PCs
run at nice 10 (pc.py PC_NICENESS): here they share the server's cores, in a real room they
do not.

The server's side of the bridge is shaped to 1 Gbit/s with `tc qdisc add dev br0 root tbf rate
1gbit` (both servers sit on br0 itself, so everything they send goes through that qdisc, like a
laptop's 1G NIC; netem does not exist on this kernel). The line-rate limit is every byte the PCs
download (loader + kernel + initrd) at 1 Gbit/s; TCP/IP/Ethernet headers make ~1.05x of it the
best possible.

Per N, the stacks take turns (pxetui first on even rounds) in fresh labs, and the table gives
PCs finished, seconds until the last one has its kernel and initrd (from the moment all PCs
power on), that over the limit, DHCP answer p50/p99 (every OFFER and ACK, firmware and iPXE,
from the first send, as each PC saw it; then as a capture on br0 saw it, the server's own time
without the PCs' wait for a core: wire.py), the servers' CPU seconds and peak RSS (dnsmasq + nginx master and workers
summed), and when the median and last PC finished each step. Every run is bounded by --timeout
and every namespace is removed on any exit. --json prints one object per N for bench/run.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import psutil

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # bench/, for classic.py (appended: bench/http must not shadow http)
from classic import ClassicStack  # noqa: E402
from pc import Pc, PcResult, stop_all  # noqa: E402
from wire import WireCapture  # noqa: E402

from pxetui.lab.netns import Lab, pxetui_command  # noqa: E402

LINE_RATE = 1e9  # bits/s
KERNEL_BYTES = 12 * 1024 * 1024 + 4097
INITRD_BYTES = 38 * 1024 * 1024 + 1234
STEPS = ("dhcp", "tftp", "ipxe-dhcp", "script", "files")
STACKS = ("pxetui", "classic")
PXETUI_HTTP = 8080
CLASSIC_HTTP = 8081


@dataclass
class RoomResult:
    stack: str
    pcs: int
    finished: int = 0
    last_s: float | None = None
    limit_s: float = 0.0
    dhcp_ms: list[float] = field(default_factory=list)
    wire_ms: list[float] = field(default_factory=list)  # the same answers timed on the bridge (wire.py)
    resent: int = 0
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    steps: dict[str, tuple[float, float]] = field(default_factory=dict)  # step -> (median, last) s
    failures: list[str] = field(default_factory=list)
    wire_drops: int = 0  # packets the 1 Gbit/s queue dropped (full for 20 ms)
    notes: dict[str, int] = field(default_factory=dict)  # the server's own counts, from its events/log
    tui: bool = False  # pxetui ran as the TUI


def make_files(work: Path) -> tuple[Path, Path]:
    """Random bytes (not sparse: the page cache and the wire see real data)."""
    kernel, initrd = work / "vmlinuz", work / "initrd.img"
    for path, size in ((kernel, KERNEL_BYTES), (initrd, INITRD_BYTES)):
        with open(path, "wb") as fh:
            for left in range(size, 0, -(1 << 20)):
                fh.write(os.urandom(min(left, 1 << 20)))
    return kernel, initrd


def shape(lab: Lab) -> None:
    """1 Gbit/s out of the server's port; burst of ~4 ms, 20 ms of queue (a switch port's buffer)."""
    done = lab.exec(
        lab.server_ns, "tc", "qdisc", "add", "dev", lab.bridge, "root",
        "tbf", "rate", "1gbit", "burst", "512k", "latency", "20ms",
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"cannot shape {lab.bridge} to 1 Gbit/s: {done.stderr.strip()}")


class Meter:
    """CPU seconds and peak RSS of the server processes (the room's clients are not counted)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        for proc in list(self.procs):
            self.procs += proc.children(recursive=True)  # nginx's workers
        self.start_cpu = self.cpu()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def cpu(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            rss = 0
            for proc in self.procs:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.peak = max(self.peak, rss)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join(2)
        return self.cpu() - self.start_cpu, self.peak / (1 << 20)


class PxetuiServer:
    """`pxetui br0 --headless --json --mode full` with a plan giving every PC the room profile."""

    def __init__(self, lab: Lab, work: Path, files: tuple[Path, Path], macs: list[str]) -> None:
        self.lab, self.work = lab, work
        profiles = work / "profiles"
        profiles.mkdir()
        (profiles / "room.yaml").write_text(
            "name: room\ntitle: Room bench OS\narch: [x86_64]\nfirmware: [bios, uefi]\n"
            f'kernel: {{path: {files[0]}}}\ninitrd: {{path: {files[1]}}}\ncmdline: "console=ttyS0"\n'
        )
        plan = work / "plan.csv"
        plan.write_text("mac,profile,hostname\n" + "".join(f"{m},room,pc{i}\n" for i, m in enumerate(macs)))
        self.command = pxetui_command(
            lab.bridge, work / "state", "--mode", "full", "--profiles", str(profiles),
            "--plan", str(plan), "--http-port", str(PXETUI_HTTP),
        )  # fmt: skip
        self.events = work / "events.jsonl"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> PxetuiServer:
        # Events go to a file as an operator's `> log` would: a pipe nobody reads would block it.
        with open(self.events, "w") as out, open(self.work / "pxetui.stderr", "w") as err:
            self.proc = self.lab.popen(self.lab.server_ns, *self.command, stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while '"service.ready"' not in self.events.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pxetui did not start: {(self.work / 'pxetui.stderr').read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    @property
    def pids(self) -> list[int]:
        assert self.proc is not None  # `ip netns exec` execs, so this pid is pxetui itself
        return [self.proc.pid]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class PxetuiTuiServer(PxetuiServer):
    """The same pxetui as the operator's TUI, in a tmux terminal (160x45): the room's 100 rows
    and their moving progress bars are drawn while the services answer (the DHCP target is
    "with the TUI running"). It prints no events, so the server notes stay empty."""

    def __init__(self, lab: Lab, work: Path, files: tuple[Path, Path], macs: list[str]) -> None:
        super().__init__(lab, work, files, macs)
        self.command = [c for c in self.command if c not in ("--headless", "--json")]
        self.tmux = ["tmux", "-L", f"pxetui-room-{work.name}"]
        self._pids: list[int] = []

    def __enter__(self) -> PxetuiTuiServer:
        shell = (
            f"ip netns exec {self.lab.server_ns} {shlex.join(self.command)} 2>{self.work / 'pxetui.stderr'}"
        )
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", "room", "-x", "160", "-y", "45", shell], check=True
        )
        deadline = time.monotonic() + 60
        while not (self._listening("u", 67) and self._listening("t", PXETUI_HTTP)):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"pxetui's TUI did not start: {(self.work / 'pxetui.stderr').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        found = self.lab.exec(self.lab.server_ns, "ip", "netns", "pids", self.lab.server_ns).stdout.split()
        for pid in found:
            with contextlib.suppress(OSError):
                if b"pxetui" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    self._pids.append(int(pid))
        return self

    def _listening(self, proto: str, port: int) -> bool:
        return bool(
            self.lab.exec(self.lab.server_ns, "ss", f"-H{proto}ln", f"sport = :{port}").stdout.strip()
        )

    @property
    def pids(self) -> list[int]:
        return self._pids

    def __exit__(self, *exc: object) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "room", "q"], check=False, capture_output=True)
        deadline = time.monotonic() + 20
        while any(psutil.pid_exists(pid) for pid in self._pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


def classic_pids(stack: ClassicStack) -> list[int]:
    return [proc.pid for proc in stack.procs]


def room_macs(n: int, count: int) -> list[str]:
    return [f"52:54:00:{0x40 + n % 64:02x}:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(count)]


def run_pcs(lab: Lab, macs: list[str], timeout: float, spread: float) -> tuple[list[PcResult], float]:
    """Namespaces first (that is setup, not boot time), then every PC powers on at once."""
    clients = [lab.add_client(mac) for mac in macs]
    start = time.monotonic() + 1.0
    deadline = start + spread + timeout
    pcs = [
        Pc(f"pc{i}", c.netns, c.mac, lab.subnet.prefixlen, clone_xid=i % 3 == 0,
           start_at=start + spread * i / max(1, len(macs)), deadline=deadline)
        for i, c in enumerate(clients)
    ]  # fmt: skip
    for pc in pcs:
        pc.thread.start()
    stop_all(pcs)
    return [pc.result for pc in pcs], start


def summarize(stack: str, results: list[PcResult], cpu: float, rss: float) -> RoomResult:
    room = RoomResult(stack=stack, pcs=len(results), cpu_s=round(cpu, 2), peak_rss_mib=round(rss, 1))
    done = [r for r in results if r.ok]
    room.finished = len(done)
    if done and len(done) == len(results):
        room.last_s = round(max(r.phases["files"] for r in done), 2)
    wire = sum(r.http_bytes + r.tftp_bytes for r in done) or len(results) * (KERNEL_BYTES + INITRD_BYTES)
    room.limit_s = round(wire * 8 / LINE_RATE, 2)
    room.dhcp_ms = sorted(ms for r in results for ms in r.dhcp_ms)
    room.resent = sum(r.dhcp_resent for r in results)
    for step in STEPS:
        times = [r.phases[step] for r in results if step in r.phases]
        if times:
            room.steps[step] = (round(statistics.median(times), 2), round(max(times), 2))
    reasons: dict[str, int] = {}
    for r in results:
        if not r.ok:
            reasons[r.failed] = reasons.get(r.failed, 0) + 1
    room.failures = [f"{count}x {reason}" for reason, count in reasons.items()]
    return room


def measure(stack: str, count: int, files: tuple[Path, Path], args: argparse.Namespace, n: int) -> RoomResult:
    lab = Lab(subnet=ipaddress.IPv4Network(f"198.18.{160 + n % 60}.0/24")).build()
    macs = room_macs(n, count)
    try:
        shape(lab)
        with tempfile.TemporaryDirectory(prefix="pxetui-bench-room-") as tmp:
            work = Path(tmp)
            server: PxetuiServer | ClassicStack
            if stack == "pxetui":
                server = (PxetuiTuiServer if args.tui else PxetuiServer)(lab, work, files, macs)
            else:
                server = ClassicStack(lab, work, CLASSIC_HTTP, kernel=files[0], initrd=files[1])
            with server:
                pids = server.pids if isinstance(server, PxetuiServer) else classic_pids(server)
                with WireCapture(lab, work / "dhcp.pcap") as capture:
                    meter = Meter(pids)
                    results, _ = run_pcs(lab, macs, args.timeout, args.spread)
                    cpu, rss = meter.stop()
                wire_ms = capture.answer_ms()
            if args.keep:
                keep(work, Path(args.keep) / f"{count}-{stack}-{n}", results)
            room = summarize(stack, results, cpu, rss)
            room.wire_ms = wire_ms
            room.tui = stack == "pxetui" and args.tui
            room.wire_drops = wire_drops(lab)
            room.notes = server_notes(work)
            return room
    finally:
        lab.teardown()


def wire_drops(lab: Lab) -> int:
    shown = lab.exec(lab.server_ns, "tc", "-s", "qdisc", "show", "dev", lab.bridge).stdout
    found = re.search(r"dropped (\d+)", shown)
    return int(found.group(1)) if found else 0


def server_notes(work: Path) -> dict[str, int]:
    """What the server says went wrong: pxetui's events (DHCP requests dropped as stale, TFTP
    resends, events it could not deliver), dnsmasq's log lines about TFTP."""
    notes: dict[str, int] = {}
    events = work / "events.jsonl"
    if events.exists():
        for text in events.read_text().splitlines():
            e = json.loads(text)
            kind = e.get("event")
            if kind == "error":
                reason = str(e.get("reason", ""))[:40]
                notes[f"error: {reason}"] = notes.get(f"error: {reason}", 0) + int(e.get("count") or 1)
            elif kind == "tftp.done" and not e.get("probe"):
                notes["tftp resends"] = notes.get("tftp resends", 0) + int(e.get("retransmits") or 0)
            elif kind == "events.dropped":
                notes["events dropped"] = notes.get("events dropped", 0) + int(e.get("count") or 0)
    log = work / "dnsmasq.log"
    if log.exists():
        for text in log.read_text().splitlines():
            if "tftp" in text.lower() and ("max" in text.lower() or "fail" in text.lower()):
                key = f"dnsmasq: {re.sub(r'[0-9.]+', 'N', text.split(': ', 1)[-1])[:50]}"
                notes[key] = notes.get(key, 0) + 1
    return notes


def keep(work: Path, into: Path, results: list[PcResult]) -> None:
    """The servers' own logs (pxetui's events, dnsmasq's log) and each PC's result (its DHCP
    send and receive times included) for reading where time went."""
    into.mkdir(parents=True, exist_ok=True)
    (into / "pcs.json").write_text(json.dumps([asdict(r) for r in results]))
    for name in ("events.jsonl", "pxetui.stderr", "dnsmasq.log", "nginx.error.log"):
        if (work / name).exists():
            shutil.copy(work / name, into / name)


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def line(room: RoomResult) -> str:
    p50, p99 = percentile(room.dhcp_ms, 0.5), percentile(room.dhcp_ms, 0.99)
    last = f"{room.last_s:7.1f}" if room.last_s is not None else "      -"
    over = f"{room.last_s / room.limit_s:6.2f}x" if room.last_s is not None and room.limit_s else "      -"
    dhcp = f"{p50:7.1f} {p99:7.1f}" if p50 is not None and p99 is not None else "      -       -"
    w50, w99 = percentile(room.wire_ms, 0.5), percentile(room.wire_ms, 0.99)
    dhcp += f" {w50:7.1f} {w99:7.1f}" if w50 is not None and w99 is not None else "       -       -"
    name = ("pxetui" + (" TUI" if room.tui else "")) if room.stack == "pxetui" else "dnsmasq+nginx"
    return (
        f"  {name:<14} {room.finished:>3}/{room.pcs:<3} {last} {room.limit_s:7.1f} {over} {dhcp}"
        f" {room.resent:>6} {room.cpu_s:7.1f} {room.peak_rss_mib:8.1f}"
    )


def steps_line(room: RoomResult) -> str:
    parts = [f"{step} {m:.1f}/{last:.1f}" for step, (m, last) in room.steps.items()]
    return f"    {room.stack} steps done at (median/last s): " + ", ".join(parts)


HEADER = (
    f"  {'stack':<14} {'done':>7} {'last s':>7} {'limit s':>7} {'x limit':>7} {'DHCP p50':>7} {'p99 ms':>7}"
    f" {'wire p50':>7} {'p99 ms':>7}"
    f" {'resent':>6} {'CPU s':>7} {'RSS MiB':>8}"
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pcs", type=int, nargs="+", default=[20, 50, 100])
    p.add_argument("--quick", action="store_true", help="5 and 10 PCs, a fast check")
    p.add_argument(
        "--rounds", type=int, default=1, help="rounds per N; odd rounds measure the classic stack first"
    )
    p.add_argument("--timeout", type=float, default=240, help="seconds a room may take once powered on")
    p.add_argument("--spread", type=float, default=0.0, help="power the PCs on over this many seconds")
    p.add_argument(
        "--stacks", nargs="+", choices=STACKS, default=list(STACKS), help="only these (investigation)"
    )
    p.add_argument("--tui", action="store_true", help="run pxetui as the TUI (in tmux), not headless")
    p.add_argument("--json", action="store_true", help="print one JSON object per N")
    p.add_argument("--keep", metavar="DIR", help="copy each server's log / events into DIR")
    args = p.parse_args()
    if args.quick:
        args.pcs = [5, 10]

    # SIGTERM (bench/run's timeout, a Ctrl-C elsewhere) still runs every `finally`: no namespace stays.
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pxetui-bench-room-files-") as tmp:
        files = make_files(Path(tmp))
        lab_number = 0
        for count in args.pcs:
            print(f"\n{count} PCs, {(KERNEL_BYTES + INITRD_BYTES) / 1e6:.0f} MB each, 1 Gbit/s:", flush=True)
            print(HEADER)
            got: dict[str, list[RoomResult]] = {s: [] for s in STACKS}
            for r in range(args.rounds):
                for stack in [s for s in (STACKS if r % 2 == 0 else STACKS[::-1]) if s in args.stacks]:
                    room = measure(stack, count, files, args, lab_number)
                    lab_number += 1
                    got[stack].append(room)
                    print(line(room), flush=True)
                    print(steps_line(room), flush=True)
                    for failure in room.failures[:5]:
                        print(f"    failed: {failure}", flush=True)
                    notes = ", ".join(f"{k} {v}" for k, v in room.notes.items())
                    print(f"    wire drops {room.wire_drops}; server: {notes or '-'}", flush=True)
            rows.append({"pcs": count, **{s: [summary_dict(x) for x in got[s]] for s in STACKS}})
    if args.json:
        for row in rows:
            print(json.dumps(row))
    return 0


def summary_dict(room: RoomResult) -> dict[str, object]:
    out = asdict(room)
    out["dhcp_p50_ms"] = percentile(room.dhcp_ms, 0.5)
    out["dhcp_p99_ms"] = percentile(room.dhcp_ms, 0.99)
    out["wire_p50_ms"] = percentile(room.wire_ms, 0.5)
    out["wire_p99_ms"] = percentile(room.wire_ms, 0.99)
    out["wire_answers"] = len(room.wire_ms)
    del out["dhcp_ms"], out["wire_ms"]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
