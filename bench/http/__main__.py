#!/usr/bin/env python3
"""8 curl clients x 1 GiB over HTTP: pxetui's HTTP service against nginx, same bridge, one run.

Run as root from the repository: `sudo .venv/bin/python bench/http [--clients 8] [--rounds 2]`.
Everything runs inside a private lab (namespaces, 198.18.0.0/15) that is removed at the end.
The file is sparse, made in a temporary directory and deleted afterwards (never committed).
Rounds alternate nginx and pxetui so a noisy neighbour hurts both alike. Prints aggregate GB/s
for each, the ratio (target >= 0.9x nginx) and pxetui's memory before and after.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, for classic.py
from classic import nginx_conf

from pxetui.lab.netns import Client, Lab, pxetui_command

GIB = 1024**3
PXETUI_PORT = 8080
NGINX_PORT = 8081


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


class Pxetui:
    """`pxetui br0 --headless --json` in the server namespace; its events are drained and counted."""

    def __init__(self, lab: Lab, work: Path, big: Path) -> None:
        profiles = work / "profiles"
        profiles.mkdir()
        (profiles / "bench.yaml").write_text(f"name: bench\ntitle: Bench\nkernel: {{path: {big}}}\n")
        command = pxetui_command(
            lab.bridge, work / "state", "--profiles", str(profiles), "--http-port", str(PXETUI_PORT)
        )
        self.proc = lab.popen(lab.server_ns, *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.counts: dict[str, int] = {}
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.ready.wait(30):
            self.stop()
            raise RuntimeError(
                f"pxetui did not become ready: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                name = json.loads(line).get("event", "?")
            except json.JSONDecodeError:
                name = "<not json>"
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == "service.ready":
                self.ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a server process and its children (nginx's workers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        times = p.cpu_times()
        total += times.user + times.system
    return total


def fetch_all(clients: list[Client], url: str, size: int, timeout: float) -> float:
    """Start one curl per client at once; return seconds until the last one finished intact."""
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                *("ip", "netns", "exec", c.netns, "curl", "-sS", "--max-time", str(int(timeout))),
                *("-o", "/dev/null", "-w", "%{http_code} %{size_download}", url),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in clients
    ]
    outputs = [p.communicate(timeout=timeout + 10) for p in procs]
    elapsed = time.monotonic() - start
    for out, err in outputs:
        code, _, got = out.partition(" ")
        if code != "200" or int(got or 0) != size:
            raise RuntimeError(f"{url}: a client got {out!r} {err.strip()!r}, expected 200 and {size} bytes")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="nginx/pxetui pairs, alternated")
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per round")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    size = int(args.size_gib * GIB)

    lab = Lab(subnet=ipaddress.IPv4Network("198.18.240.0/24"))
    with tempfile.TemporaryDirectory(prefix="pxetui-bench-http-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers run unprivileged and must reach the file
        www = work / "www"
        www.mkdir()
        big = www / "big.img"
        with open(big, "wb") as fh:
            fh.truncate(size)  # sparse: no disk, served from the page cache like a warm ISO
        big.chmod(0o644)
        nginx = None
        pxetui = None
        try:
            lab.build()
            prefix = lab.server_ip.rsplit(".", 1)[0]
            clients = [lab.add_client(address=f"{prefix}.{10 + i}/24") for i in range(args.clients)]
            nginx = lab.popen(
                lab.server_ns,
                "nginx",
                "-c",
                str(nginx_conf(lab, work, NGINX_PORT, www)),
                "-g",
                "daemon off;",
            )
            pxetui = Pxetui(lab, work, big)
            rss_before = rss_kib(pxetui.proc.pid)
            urls = {
                "nginx": f"http://{lab.server_ip}:{NGINX_PORT}/big.img",
                "pxetui": f"http://{lab.server_ip}:{PXETUI_PORT}/files/bench/kernel",
            }
            rates: dict[str, list[float]] = {"nginx": [], "pxetui": []}
            cpu: dict[str, list[float]] = {"nginx": [], "pxetui": []}
            pids = {"nginx": nginx.pid, "pxetui": pxetui.proc.pid}  # `ip netns exec` execs the server
            for _ in range(args.rounds):
                for name, url in urls.items():
                    before = cpu_seconds(pids[name])
                    elapsed = fetch_all(clients, url, size, args.timeout)
                    rates[name].append(args.clients * size / elapsed / 1e9)
                    cpu[name].append(cpu_seconds(pids[name]) - before)
            rss_after = rss_kib(pxetui.proc.pid)
        finally:
            if pxetui is not None:
                pxetui.stop()
            if nginx is not None:
                nginx.terminate()
                nginx.wait(10)
            lab.teardown()

    best = {name: max(values) for name, values in rates.items()}
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"HTTP: {args.clients} clients x {args.size_gib:g} GiB each, {args.rounds} rounds (alternated)")
    print(f"{'server':8} {'rounds GB/s':30} {'median':>8} {'best':>8} {'server CPU s/round':>19}")
    for name in ("nginx", "pxetui"):
        listed = " ".join(f"{r:.2f}" for r in rates[name])
        used = statistics.median(cpu[name])
        print(f"{name:8} {listed:30} {median[name]:8.2f} {best[name]:8.2f} {used:19.2f}")
    ratio = median["pxetui"] / median["nginx"]
    print(f"pxetui/nginx (median): {ratio:.2f}x  (target >= 0.90x)")
    print(
        f"pxetui RSS: {rss_before['VmRSS'] / 1024:.1f} MiB before, {rss_after['VmRSS'] / 1024:.1f} MiB after,"
        f" peak {rss_after['VmHWM'] / 1024:.1f} MiB"
    )
    print(f"pxetui events while serving: {dict(sorted(pxetui.counts.items()))}")
    if args.json:
        print(
            json.dumps(
                {
                    "rates": rates,
                    "cpu": cpu,
                    "ratio": ratio,
                    "rss_before": rss_before,
                    "rss_after": rss_after,
                    "events": pxetui.counts,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
