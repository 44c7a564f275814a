"""DHCP benchmark: Kea's perfdhcp against pxetui, dnsmasq and Kea itself, same bridge, same run.

    sudo .venv/bin/python bench/dhcp [--rate 1000,2000,3000] [--clients 200] [--seconds 8] [--rounds 1]

Builds a private lab (network namespaces, 198.18.0.0/15, removed at the end), starts each server
on the lab bridge in turn, drives it with `perfdhcp -4 -l eth0 -r RATE -R CLIENTS -p SECONDS`
from a client namespace, and prints 4-way exchanges (DORA) per second and drop ratios side by
side. pxetui runs as the real CLI (`python -m pxetui br0 --headless --json --mode full`), events
and all. Every step has a time limit; the script stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from lab import Lab, lab_available  # noqa: E402

from pxetui.lab.netns import pxetui_command  # noqa: E402

PERFDHCP = shutil.which("perfdhcp") or "/usr/sbin/perfdhcp"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
KEA = shutil.which("kea-dhcp4") or "/usr/sbin/kea-dhcp4"
SUBNET = ipaddress.IPv4Network("198.18.250.0/24")


@dataclass
class Result:
    server: str
    asked: int  # the rate perfdhcp was asked for
    rate: float  # 4-way exchanges per second achieved
    drops: dict[str, float]  # exchange -> drop ratio in percent
    sent: int
    note: str = ""
    delays: dict[str, float] | None = None  # exchange -> average delay in ms
    stale: int | None = None  # pxetui: requests dropped for waiting too long in its queue

    def worst_drop(self) -> float:
        return max(self.drops.values(), default=100.0)


def parse_perfdhcp(server: str, asked: int, out: str) -> Result:
    rate = re.search(r"Rate: ([\d.]+) 4-way exchanges/second", out)
    drops: dict[str, float] = {}
    delays: dict[str, float] = {}
    sent = 0
    for block in re.split(r"\*\*\*Statistics for: ", out)[1:]:
        name = block.split("***", 1)[0].strip()
        ratio = re.search(r"drops ratio: ([\d.]+) ?%", block)
        count = re.search(r"sent packets: (\d+)", block)
        delay = re.search(r"avg delay: ([\d.]+) ms", block)
        if ratio:
            drops[name] = float(ratio.group(1))
        if delay:
            delays[name] = float(delay.group(1))
        if count and name == "DISCOVER-OFFER":
            sent = int(count.group(1))
    last_line = out.strip().splitlines()[-1] if out.strip() else "(no output)"
    note = "" if rate else f"perfdhcp printed no rate: {last_line}"
    return Result(server, asked, float(rate.group(1)) if rate else 0.0, drops, sent, note, delays)


def stale_count(events: Path) -> int:
    """The highest `count` of pxetui's "overloaded" error events: stale requests it dropped."""
    count = 0
    for line in events.read_text().splitlines():
        if '"overloaded' in line:
            with contextlib.suppress(ValueError):
                count = max(count, int(json.loads(line).get("count", 0)))
    return count


def run_perfdhcp(lab: Lab, netns: str, server: str, rate: int, clients: int, seconds: int) -> Result:
    cmd = [PERFDHCP, "-4", "-l", "eth0", "-r", str(rate), "-R", str(clients), "-p", str(seconds)]
    done = lab.exec(netns, *cmd, timeout=seconds + 30)
    return parse_perfdhcp(server, rate, done.stdout + done.stderr)


Workload = Callable[[Lab, str, str, int, argparse.Namespace], Result]


def workload(args: argparse.Namespace) -> Workload:
    return run_flood if args.flood else run_dora


def run_dora(lab: Lab, netns: str, server: str, rate: int, args: argparse.Namespace) -> Result:
    return run_perfdhcp(lab, netns, server, rate, args.clients, args.seconds)


def run_flood(lab: Lab, netns: str, server: str, rate: int, args: argparse.Namespace) -> Result:
    """DISCOVERs only, from ever new random MACs, at `rate`/s; then does a real PC get a lease?

    The abuse case: DISCOVERs that never REQUEST must not hold the pool against the room.
    """
    flood = [PERFDHCP, "-4", "-l", "eth0", "-i", "-r", str(rate), "-R", "1000000", "-p", str(args.seconds)]
    done = lab.exec(netns, *flood, timeout=args.seconds + 30)
    sent = re.search(r"sent packets: (\d+)", done.stdout)
    pc = lab.add_client()
    hook = Path(tempfile.mkdtemp(prefix="bench-dhcp-pc-")) / "udhcpc.sh"
    hook.write_text(f'#!/bin/sh\necho "$1 $ip" >> {hook.parent / "lease"}\n')
    hook.chmod(0o755)
    started = time.monotonic()
    udhcpc = shutil.which("udhcpc") or "/usr/bin/udhcpc"
    lab.exec(pc.netns, udhcpc, "-f", "-q", "-n", "-t", "5", "-T", "2", "-i", "eth0", "-s", str(hook), timeout=30)
    took = time.monotonic() - started
    lease = (hook.parent / "lease").read_text() if (hook.parent / "lease").exists() else ""
    bound = any(line.startswith("bound") for line in lease.splitlines())
    note = f"a PC after the flood: {'lease in ' + format(took, '.1f') + ' s' if bound else 'NO lease'}"
    return Result(server, rate, 1.0 if bound else 0.0, {}, int(sent.group(1)) if sent else 0, note)


def wait_for_port_67(lab: Lab, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.exec(lab.server_ns, "ss", "-uln", "sport = :67").stdout
        if ":67" in out:
            return
        time.sleep(0.2)
    raise RuntimeError("server did not open UDP port 67 in time")


def bench_pxetui(lab: Lab, client_ns: str, rate: int, args: argparse.Namespace, tmp: Path) -> Result:
    first, last = SUBNET.network_address + 10, SUBNET.network_address + 250
    cmd = pxetui_command(lab.bridge, tmp / "pxetui-state", "--mode", "full", "--range", f"{first}-{last}")
    events = tmp / "pxetui-events.jsonl"
    with events.open("w") as out:
        proc = lab.popen(lab.server_ns, *cmd, stdout=out, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30  # the rival probe alone takes ~2 s
        while '"service.ready"' not in events.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                return Result(
                    "pxetui", rate, 0.0, {}, 0, "pxetui did not start: " + events.read_text()[-300:]
                )
            time.sleep(0.2)
        result = workload(args)(lab, client_ns, "pxetui", rate, args)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    result.stale = stale_count(events)
    return result


def bench_dnsmasq(lab: Lab, client_ns: str, rate: int, args: argparse.Namespace, tmp: Path) -> Result:
    first, last = SUBNET.network_address + 10, SUBNET.network_address + 250
    conf = tmp / "dnsmasq.conf"
    conf.write_text(
        "\n".join(
            [
                "port=0",
                f"interface={lab.bridge}",
                "bind-interfaces",
                f"dhcp-range={first},{last},255.255.255.0,1h",
                f"dhcp-leasefile={tmp / 'dnsmasq.leases'}",
                f"pid-file={tmp / 'dnsmasq.pid'}",
                "dhcp-authoritative",
                "user=root",
                "no-ping",
                "",
            ]
        )
    )
    proc = lab.popen(
        lab.server_ns, DNSMASQ, "-d", "-C", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port_67(lab)
        return workload(args)(lab, client_ns, "dnsmasq", rate, args)
    finally:
        proc.terminate()
        proc.wait(10)


def bench_kea(lab: Lab, client_ns: str, rate: int, args: argparse.Namespace, tmp: Path) -> Result:
    """Kea 2.x with an in-memory lease file: ISC's own server for perfdhcp, on the same bridge."""
    first, last = SUBNET.network_address + 10, SUBNET.network_address + 250
    conf = tmp / "kea-dhcp4.json"
    config = {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [lab.bridge], "dhcp-socket-type": "raw"},
            "lease-database": {"type": "memfile", "persist": False},
            "valid-lifetime": 3600,
            "subnet4": [{"id": 1, "subnet": str(SUBNET), "pools": [{"pool": f"{first} - {last}"}]}],
            "loggers": [{"name": "kea-dhcp4", "severity": "ERROR", "output_options": [{"output": "stderr"}]}],
        }
    }
    conf.write_text(json.dumps(config))
    env = ("env", f"KEA_PIDFILE_DIR={tmp}", f"KEA_LOCKFILE_DIR={tmp}")
    proc = lab.popen(lab.server_ns, *env, KEA, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port_67(lab)
        return workload(args)(lab, client_ns, "kea", rate, args)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/dhcp", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rate",
        default="1000,2000,3000",
        help="DORA exchanges per second to ask for; a comma-separated list runs each in turn",
    )
    parser.add_argument("--clients", type=int, default=200, help="simulated clients (distinct MACs)")
    parser.add_argument("--seconds", type=int, default=8, help="length of each perfdhcp run")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the servers this many times")
    parser.add_argument(
        "--flood",
        action="store_true",
        help="instead of DORA: DISCOVERs only from random MACs at RATE/s for SECONDS, then one real"
        " udhcpc PC asks for a lease (e.g. --flood --rate 3 --seconds 120: 180 a minute)",
    )
    args = parser.parse_args()
    rates = [int(r) for r in str(args.rate).split(",") if r.strip()]
    reason = lab_available()
    if reason:
        print(f"bench/dhcp: {reason}", file=sys.stderr)
        return 2
    for tool in (PERFDHCP, DNSMASQ):
        if not Path(tool).exists():
            print(f"bench/dhcp: needs {tool} (`make deps-test` installs it)", file=sys.stderr)
            return 2
    servers = [bench_pxetui, bench_dnsmasq]
    if Path(KEA).exists():
        servers.append(bench_kea)
    else:
        print(f"bench/dhcp: {KEA} missing: Kea left out (`make deps-test` installs it)", file=sys.stderr)
    lab = Lab(subnet=SUBNET)
    results: list[Result] = []
    try:
        lab.build()
        client = lab.add_client(address=f"{SUBNET.network_address + 2}/24")
        with tempfile.TemporaryDirectory(prefix="bench-dhcp-") as tmpdir:
            tmp = Path(tmpdir)
            for n in range(args.rounds):
                for rate in rates:
                    for bench in servers:
                        run_dir = tmp / f"{bench.__name__}-{n}-{rate}"
                        run_dir.mkdir()
                        results.append(bench(lab, client.netns, rate, args, run_dir))
    finally:
        lab.teardown()
    if args.flood:
        print(f"\nperfdhcp -4 -l eth0 -i -r RATE -R 1000000 -p {args.seconds}, then udhcpc; same bridge, same run")
        for r in results:
            print(f"{r.asked:>6}/s {r.server:<8} DISCOVERs sent {r.sent:>6}  {r.note}")
        return 0
    print(f"\nperfdhcp -4 -l eth0 -r RATE -R {args.clients} -p {args.seconds}; same bridge, same run")
    header = (
        f"{'asked/s':>8} {'server':<8} {'DORA/s':>8} {'DISCOVER-OFFER drops':>21} {'REQUEST-ACK drops':>18}"
    )
    print(header + f" {'avg D-O ms':>10} {'avg R-A ms':>10} {'sent':>7} {'stale':>6}")
    nan = float("nan")
    for r in results:
        do, ra = r.drops.get("DISCOVER-OFFER", nan), r.drops.get("REQUEST-ACK", nan)
        delays = r.delays or {}
        do_ms, ra_ms = delays.get("DISCOVER-OFFER", nan), delays.get("REQUEST-ACK", nan)
        stale = "" if r.stale is None else str(r.stale)
        print(
            f"{r.asked:>8} {r.server:<8} {r.rate:>8.1f} {do:>20.3f}% {ra:>17.3f}% {do_ms:>10.2f} {ra_ms:>10.2f}"
            f" {r.sent:>7} {stale:>6} {r.note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
