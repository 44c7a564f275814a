#!/usr/bin/env python3
"""20 PCs loading ipxe.efi over TFTP at once: pxetui (windowsize 4 and 1) against dnsmasq.

Run as root from the repository:
`sudo .venv/bin/python bench/tftp.py [--clients 20 1] [--rounds 3] [--loss 0 5] [--ovmf 3]`.
Everything runs in a private lab namespace (198.18.0.0/15): pxetui as `pxetui br0 --headless`,
dnsmasq 2.90 as `dnsmasq --port=0 --enable-tftp --tftp-root=/usr/lib/ipxe` on the same bridge,
taking turns; the clients live in one client namespace. Clients: atftp (C, RFC 7440: asked for
`blksize 1468 windowsize 4` as OVMF asks, and for blksize only), curl (blksize 1468) and
tests/tftp_client.py (Python, windowsize 4). dnsmasq ignores windowsize, so its w4 rows run at 1.
Simulated loss (--loss PCT ...) drops that share of UDP both ways in the client namespace
(nftables; this kernel has no sch_netem). Prints one table per loss level: median wall time for
all clients together, aggregate MB/s, the server's CPU seconds, and whether every copy was
intact. First, --ovmf N boots of one UEFI PC (QEMU TCG + OVMF's own PXE client) per server,
timed from its RRQ to the last DATA block by tcpdump on the bridge (DHCP by dnsmasq in both
cases). Every run is bounded by --timeout; the lab is removed on any exit.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from pxetui.boot.bootfiles import DEBIAN_IPXE_DIR
from pxetui.lab.netns import Client, Lab, pxetui_command

REPO = Path(__file__).resolve().parent.parent
WINDOW_CLIENT = REPO / "tests" / "tftp_client.py"
FILE = "ipxe.efi"
SERVERS = ("pxetui", "dnsmasq")


@dataclass
class Row:
    server: str
    client: str
    walls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server process CPU seconds (user + system)
    intact: bool = True
    note: str = ""


class Server:
    """A TFTP server on the lab bridge, started and stopped around each measurement."""

    def __init__(self, lab: Lab, work: Path, kind: str) -> None:
        self.lab, self.work, self.kind = lab, work, kind
        self.proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    def __enter__(self) -> Server:
        if self.kind == "pxetui":
            cmd = pxetui_command(self.lab.bridge, self.work / "state", "--boot-files", str(DEBIAN_IPXE_DIR))
            self.proc = self.lab.popen(
                self.lab.server_ns, *cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            assert self.proc.stdout is not None
            deadline = time.monotonic() + 30
            for line in self.proc.stdout:  # wait for service.ready
                if json.loads(line).get("event") == "service.ready":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("pxetui did not get ready in 30 s")
            else:
                raise RuntimeError(f"pxetui exited with {self.proc.wait()}")
            # Keep reading its events, so a full pipe never slows it down.
            self._drain = threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True)
            self._drain.start()
        else:
            cmd = ["dnsmasq", "--keep-in-foreground", "--port=0", "--enable-tftp"]
            cmd += [f"--tftp-root={DEBIAN_IPXE_DIR}", "--bind-interfaces", f"--interface={self.lab.bridge}"]
            cmd += ["--conf-file=/dev/null", f"--pid-file={self.work / 'dnsmasq.pid'}", "--user=root"]
            self.proc = self.lab.popen(
                self.lab.server_ns, *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(0.5)
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited with {self.proc.returncode}")
        return self

    def cpu_seconds(self) -> float:
        assert self.proc is not None  # `ip netns exec` execs, so this pid is the server itself
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


def window_client(client: Client, server_ip: str, count: int, windowsize: int, timeout: float) -> bool:
    """tests/tftp_client.py: Python, RFC 7440; quick to re-ACK on its own timeout (0.3 s)."""
    args = [sys.executable, str(WINDOW_CLIENT), server_ip, FILE, "--parallel", str(count)]
    args += ["--tsize", "--blksize", "1468", "--windowsize", str(windowsize), "--timeout", "0.3"]
    try:
        done = client.run(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_leftovers(client.netns)
        return False
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    wanted = hashlib.sha256((DEBIAN_IPXE_DIR / FILE).read_bytes()).hexdigest()
    results = lines[:-1]
    return len(results) == count and all(r.get("ok") and r.get("sha256") == wanted for r in results)


def shell_clients(client: Client, count: int, command: str, out: Path, timeout: float) -> bool:
    """`count` copies of a C client at once; `command` writes to "$OUT"."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = f'for i in $(seq {count}); do OUT="{out}/$i"; {command} & done; wait'
    try:
        client.run("sh", "-c", script, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_leftovers(client.netns)
        return False
    wanted = (DEBIAN_IPXE_DIR / FILE).read_bytes()
    copies = list(out.iterdir())
    return len(copies) == count and all(p.read_bytes() == wanted for p in copies)


def atftp(server_ip: str, windowsize: int | None) -> str:
    options = '--option "blksize 1468" --option "tsize 0"'
    if windowsize:
        options += f' --option "windowsize {windowsize}"'
    return f'atftp {options} -g -r {FILE} -l "$OUT" {server_ip} >/dev/null 2>&1'


def curl(server_ip: str) -> str:
    return f'curl -s --tftp-blksize 1468 -o "$OUT" tftp://{server_ip}/{FILE}'


def set_loss(lab: Lab, client: Client, client_ip: str, percent: int) -> None:
    """Drop `percent` % of UDP between server and client, both ways, on each side's input hook
    (nftables numgen), so senders see no error: the packets just vanish."""
    for netns, match in (
        (client.netns, "meta l4proto udp"),
        (lab.server_ns, f"meta l4proto udp ip saddr {client_ip}"),
    ):
        lab.exec(netns, "nft", "delete", "table", "inet", "benchloss")
        if percent <= 0:
            continue
        rule = f"{match} numgen random mod 100 < {percent} drop"
        rules = f"table inet benchloss {{\n chain in {{ type filter hook input priority 0; {rule}; }}\n}}\n"
        done = lab.exec(netns, "nft", "-f", "-", input=rules)
        if done.returncode != 0:
            raise RuntimeError(f"cannot simulate loss with nft: {done.stderr.strip()}")


def kill_leftovers(netns: str) -> None:
    """Clients still running after a timed-out measurement (only ones in our lab namespace)."""
    for pid in subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


OVMF_MAC = "52:54:00:b7:f0:01"


def ovmf_load_seconds(lab: Lab, work: Path, kind: str, attempt: int, timeout: float) -> float | None:
    """One UEFI PC (QEMU + OVMF, its own PXE client) loading ipxe.efi: seconds from its real
    RRQ (after the tsize probe) to the last DATA block, read from a packet capture on its
    tap, so both servers are timed the same way. DHCP is dnsmasq's in both cases."""
    # `python bench/tftp.py` puts bench/ first on sys.path, where bench/http.py would shadow
    # the standard library's http (which aiohttp, imported by pxetui.services, needs).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
    sys.path.insert(0, str(REPO / "tests"))
    from lab import NetnsLoop
    from tftp_lab import start_tftp

    from pxetui.lab.qemu import Vm, VmSpec

    pc_ip = str(lab.subnet.network_address + 60)
    size = (DEBIAN_IPXE_DIR / FILE).stat().st_size
    last_length = size % 1468 + 4  # the final, short DATA packet (OVMF asks blksize 1468)
    tap = lab.add_tap(f"tap{attempt}")
    capture = work / f"ovmf-{kind}-{attempt}.txt"
    dhcp = ["dnsmasq", "--keep-in-foreground", "--port=0", "--no-ping", "--bind-interfaces"]
    dhcp += [
        f"--interface={lab.bridge}",
        f"--dhcp-range={pc_ip},{pc_ip},10m",
        f"--dhcp-host={OVMF_MAC},{pc_ip}",
    ]
    dhcp += ["--dhcp-userclass=set:ipxe,iPXE", "--dhcp-boot=tag:ipxe,http://0.0.0.0/stop"]
    dhcp += [f"--dhcp-boot=tag:!ipxe,{FILE},,{lab.server_ip}", "--conf-file=/dev/null", "--user=root"]
    dhcp += [
        f"--dhcp-leasefile={work / f'leases-{attempt}'}",
        f"--pid-file={work / f'dnsmasq-{attempt}.pid'}",
    ]
    if kind == "dnsmasq":
        dhcp += ["--enable-tftp", f"--tftp-root={DEBIAN_IPXE_DIR}"]
    with capture.open("w") as out:
        # On the PC's tap, not the bridge: a window pxetui sends as one segmented datagram is
        # cut into the PC's packets only on its way into the tap.
        dump = lab.popen(lab.server_ns, "tcpdump", "-i", tap, "-n", "-tt", "-l", f"udp and host {pc_ip}",
                         stdout=out, stderr=subprocess.DEVNULL)  # fmt: skip
    server = lab.popen(lab.server_ns, *dhcp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vm = Vm(VmSpec(name=f"ovmf{attempt}", mac=OVMF_MAC, tap=tap, memory_mb=512), lab.server_ns, work)
    loop = NetnsLoop(lab.server_ns).__enter__() if kind == "pxetui" else None
    tftp = start_tftp(lab, loop, work / f"state-{attempt}", None) if loop is not None else None
    try:
        time.sleep(1)  # tcpdump and the servers listening
        vm.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and f"length {last_length}" not in capture.read_text():
            time.sleep(0.5)
    finally:
        vm.stop()
        for proc in (server, dump):
            proc.terminate()
            proc.wait(10)
        if loop is not None and tftp is not None:
            loop.run(tftp.service.stop())
            loop.__exit__()
    start = end = None
    for line in capture.read_text().splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        if fields[4] == f"{lab.server_ip}.69:" and end is None:
            start = float(fields[0])  # the latest request before the last block: the real one
        elif line.endswith(f"length {last_length}") and start is not None:
            end = float(fields[0])
            break
    return end - start if start is not None and end is not None else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="*", default=[20, 1], help="clients at once, per table")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per row; the median is shown")
    ap.add_argument("--loss", type=int, nargs="*", default=[0, 5], help="simulated UDP loss %% per table")
    ap.add_argument("--timeout", type=float, default=60, help="seconds one measurement may take")
    ap.add_argument("--ovmf", type=int, default=3, help="UEFI PC (QEMU+OVMF) loads per server; 0: none")
    args = ap.parse_args()
    if not (DEBIAN_IPXE_DIR / FILE).is_file():
        print(f"needs {DEBIAN_IPXE_DIR / FILE}: apt-get install ipxe", file=sys.stderr)
        return 2
    size = (DEBIAN_IPXE_DIR / FILE).stat().st_size
    lab = Lab(subnet=ipaddress.IPv4Network("198.19.77.0/24"))
    try:
        lab.build()
        client_ip = str(lab.subnet.network_address + 10)
        client = lab.add_client(address=f"{client_ip}/24")
        with tempfile.TemporaryDirectory(prefix="pxetui-bench-tftp-") as tmp:
            work = Path(tmp)
            if args.ovmf:
                print_ovmf(lab, work, args.ovmf)
            for loss in args.loss:
                set_loss(lab, client, client_ip, loss)
                for count in args.clients:
                    rows = measure(lab, client, work, count, args.rounds, args.timeout)
                    print_table(rows, count, size, loss)
    finally:
        lab.teardown()
    return 0


def measure(lab: Lab, client: Client, work: Path, count: int, rounds: int, timeout: float) -> list[Row]:
    ip = lab.server_ip
    files = work / "copies"
    clients: list[tuple[str, str, Callable[[], bool]]] = [
        ("atftp w4", "OVMF's ask", lambda: shell_clients(client, count, atftp(ip, 4), files, timeout)),
        ("atftp w1", "", lambda: shell_clients(client, count, atftp(ip, None), files, timeout)),
        ("curl", "", lambda: shell_clients(client, count, curl(ip), files, timeout)),
        ("python w4", "", lambda: window_client(client, ip, count, 4, timeout)),
    ]
    rows = {(server, name): Row(server, name, note=note) for server in SERVERS for name, note, _ in clients}
    for _ in range(rounds):  # rounds interleave the servers, so machine noise hits both alike
        for server in SERVERS:
            with Server(lab, work, server) as running:
                for name, _, run in clients:
                    cpu_before = running.cpu_seconds()
                    started = time.monotonic()
                    intact = run()
                    row = rows[(server, name)]
                    row.walls.append(time.monotonic() - started)
                    row.cpu.append(running.cpu_seconds() - cpu_before)
                    row.intact = row.intact and intact
    return sorted(rows.values(), key=lambda r: ([c[0] for c in clients].index(r.client), r.server))


def print_ovmf(lab: Lab, work: Path, rounds: int) -> None:
    times: dict[str, list[float | None]] = {"pxetui": [], "dnsmasq": []}
    attempts = itertools.count()  # one tap per boot
    for _ in range(rounds):  # alternate the servers, so machine noise hits both alike
        for kind in times:
            times[kind].append(ovmf_load_seconds(lab, work, kind, next(attempts), 180))
    print(f"\nOne UEFI PC (QEMU TCG + OVMF PXE, asks blksize 1468 windowsize 4) loading {FILE}:")
    print(f"{'server':8} {'seconds (median)':>17}  each run")
    for kind, runs in times.items():
        done = [t for t in runs if t is not None]
        median = f"{statistics.median(done):17.3f}" if done else f"{'none':>17}"
        shown = " ".join("fail" if t is None else f"{t:.3f}" for t in runs)
        print(f"{kind:8} {median}  {shown}")
    print("(from the PC's real RRQ to the last DATA block, timed by tcpdump on its tap)")
    sys.stdout.flush()


def print_table(rows: list[Row], count: int, size: int, loss: int) -> None:
    print(f"\n{count} clients at once x {FILE} ({size} B), blksize 1468, simulated UDP loss {loss} %:")
    print(
        f"{'client':10} {'server':8} {'wall s':>7} {'MB/s':>6} {'server CPU s':>12}  intact  {'each run (wall s)':18} note"
    )
    for row in rows:
        wall = statistics.median(row.walls)
        cpu = statistics.median(row.cpu)
        runs = " ".join(f"{w:.2f}" for w in row.walls)
        rate = count * size / wall / 1e6
        intact = "yes" if row.intact else "NO"
        print(
            f"{row.client:10} {row.server:8} {wall:7.2f} {rate:6.1f} {cpu:12.2f}  {intact:6}  {runs:18} {row.note}"
        )
    print("(medians over the rounds; dnsmasq 2.90 ignores windowsize, so its w4 rows run at 1)")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
