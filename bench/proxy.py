#!/usr/bin/env python3
"""N lab PCs fetching one package set: through pxetui's package proxy vs straight from the mirror.

Run as root from the repository: `sudo .venv/bin/python bench/proxy.py [--clients 1 5 20]
[--packages 5] [--size-mb 4]`. Everything runs in private namespaces (198.18.0.0/15): a small
real repository (tests/package_lab.py: dpkg-deb, dpkg-scanpackages, apt-ftparchive, nginx) in an
"internet" namespace behind the laptop (server) namespace's default route, whose uplink is
limited to 1 Gbit/s each way (`tc qdisc ... tbf rate 1gbit`). Each of N client namespaces runs
real `apt-get update` and `apt-get download` of every package at once, either directly (the
laptop routes) or through `pxetui br0 --mode full --package-proxy on` (a fresh cache per run).
Prints, side by side, the bytes nginx sent upstream (its access log) and the wall time until
every client has every file.

pxetui's proxy is squid with `collapsed_forwarding on` (pxetui/services/proxy/): until issue 14
was measured here it was apt-cacher-ng 3.7.4, which sent 1.07-1.44 copies of the packages
upstream with 20 clients at once and the CPU loaded (a second PC asking for a file before a
downloader had claimed it started its own download); squid joins the first download.
`--busy N` keeps N busy-looping processes running meanwhile (a laptop with its CPU taken, as
when QEMU guests run beside it): apt-cacher-ng's double downloads showed more often then.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lab import Client, Lab, ip, lab_available
from package_lab import apt, apt_dir, build_repo, internet

from pxetui.lab.netns import pxetui_command


def upstream_bytes(log: Path) -> int:
    total = 0
    for line in log.read_text().splitlines() if log.exists() else []:
        fields = line.split('"')
        if len(fields) >= 3:
            parts = fields[2].split()
            if len(parts) >= 2 and parts[1].isdigit():
                total += int(parts[1])
    return total


def limit_uplink(lab: Lab, internet_ns: str, up: str) -> None:
    """1 Gbit/s each way on the laptop's uplink (the veth to the internet namespace)."""
    for ns, dev in ((lab.server_ns, up), (internet_ns, "eth0")):
        ip("-n", ns, "link", "set", dev, "txqueuelen", "1000")
        subprocess.run(
            ["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
             "rate", "1gbit", "burst", "256kb", "latency", "50ms"],
            check=True, capture_output=True,
        )  # fmt: skip


def fetch_all(clients: list[Client], work: Path, source: str, proxy: str | None, names: list[str]) -> float:
    """Every client: apt-get update, then download every package; the wall time for all of them."""
    roots = [apt_dir(work / f"apt{n}", source, proxy) for n in range(len(clients))]

    def one(pair: tuple[Client, Path]) -> None:
        client, root = pair
        for args in (["update"], ["download", *names]):
            done = apt(client, root, *args, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"{client.netns}: apt-get {args[0]}: {done.stdout[-500:]} {done.stderr[-500:]}")

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(one, zip(clients, roots, strict=True)))
    return time.monotonic() - start


def start_pxetui(lab: Lab, work: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = pxetui_command(lab.bridge, work / "state", "--mode", "full", "--package-proxy", "on",
                         "--cache", str(work / "cache"))  # fmt: skip
    proc = lab.popen(lab.server_ns, *cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "service.ready":
            return proc, str(event["services"]["proxy"]["url"])
    raise RuntimeError("pxetui exited before service.ready")


def run_one(count: int, packages: int, size: int, via: str) -> tuple[int, float]:
    """Upstream bytes and wall time for `count` clients, `via` "direct" or "pxetui"."""
    lab = Lab(subnet=ipaddress.IPv4Network(f"198.18.{200 + count % 50}.0/24")).build()
    try:
        with tempfile.TemporaryDirectory(prefix="pxetui-bench-proxy-") as tmp:
            work = Path(tmp)
            work.chmod(0o755)  # pxetui's squid runs as user proxy: its cache is under here
            with internet(lab, work / "internet") as net:
                names = [f"pxt-bench{n}" for n in range(packages)]
                build_repo(net.work / "www", size=size, packages=tuple(names))
                limit_uplink(lab, net.ns, f"up{net.net}")
                lab.exec(lab.server_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                clients = [lab.add_client(address=f"{lab.subnet.network_address + 10 + n}/24") for n in range(count)]
                for client in clients:
                    ip("-n", client.netns, "route", "add", "default", "via", lab.server_ip)
                net.access_log.write_text("")
                proxy_proc = None
                if via == "direct":
                    seconds = fetch_all(clients, work, f"http://{net.address}/debian", None, names)
                else:
                    proxy_proc, proxy = start_pxetui(lab, work)
                    seconds = fetch_all(clients, work, "http://deb.debian.org/debian", proxy, names)
                time.sleep(0.5)  # nginx writes its log line after the last byte
                if proxy_proc is not None:
                    proxy_proc.terminate()
                    proxy_proc.wait(20)
                return upstream_bytes(net.access_log), seconds
    finally:
        lab.teardown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--packages", type=int, default=5)
    parser.add_argument("--size-mb", type=float, default=4.0)
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes meanwhile")
    args = parser.parse_args()
    reason = lab_available()
    if reason:
        print(f"bench/proxy.py: {reason}", file=sys.stderr)
        return 2
    size = int(args.size_mb * 1_000_000)
    print(f"{args.packages} packages x {args.size_mb} MB (one copy: {args.packages * args.size_mb:.1f} MB),"
          " uplink 1 Gbit/s (tc tbf)", flush=True)  # fmt: skip
    print(f"{'clients':>7} | {'direct MB up':>12} {'direct s':>9} | {'pxetui MB up':>12} {'pxetui s':>9}", flush=True)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        measure(args.clients, args.packages, size)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    return 0


def measure(counts: list[int], packages: int, size: int) -> None:
    for count in counts:
        direct_bytes, direct_s = run_one(count, packages, size, "direct")
        proxy_bytes, proxy_s = run_one(count, packages, size, "pxetui")
        print(
            f"{count:>7} | {direct_bytes / 1e6:>12.1f} {direct_s:>9.2f} | {proxy_bytes / 1e6:>12.1f} {proxy_s:>9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
