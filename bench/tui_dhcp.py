#!/usr/bin/env python3
"""DHCP answer delay with the real TUI drawing 300 machines, against the same Session headless.

pxetui runs on a lab bridge twice: headless, then as the TUI in a tmux terminal (160x45). Each
time Kea's perfdhcp brings 300 different PCs (MACs) through DORA while 16 curl clients download
a kernel slowly, so the table is full and progress bars keep moving. perfdhcp measures how long
each DISCOVER waited for its OFFER and each REQUEST for its ACK. Target: under 50 ms with the TUI.
`--download-rate 0` runs the 16 downloads at full speed instead (the kernel over and over), to
see what bulk HTTP costs DHCP.

Run as root from the repository: `sudo .venv/bin/python bench/tui_dhcp.py [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pxetui.lab.netns import Lab, pxetui_command

SUBNET = ipaddress.IPv4Network("198.18.228.0/22")  # room for 300 PCs
PERFDHCP = shutil.which("perfdhcp") or "/usr/sbin/perfdhcp"
HTTP_PORT = 8080


def delays(out: str) -> dict[str, dict[str, float]]:
    """perfdhcp's per-exchange delay figures in ms, plus rate and drops."""
    result: dict[str, dict[str, float]] = {}
    for block in re.split(r"\*\*\*Statistics for: ", out)[1:]:
        name = block.split("***", 1)[0].strip()
        figures: dict[str, float] = {}
        for key in ("min delay", "avg delay", "max delay", "std deviation", "drops ratio"):
            m = re.search(rf"{key}: ([\d.]+)", block)
            if m:
                figures[key] = float(m.group(1))
        result[name] = figures
    rate = re.search(r"Rate: ([\d.]+) 4-way", out)
    result["rate"] = {"DORA/s": float(rate.group(1)) if rate else 0.0}
    return result


def wait_port(lab: Lab, proto: str, port: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.exec(lab.server_ns, "ss", f"-H{proto}ln", f"sport = :{port}").stdout.strip():
            return
        time.sleep(0.2)
    raise SystemExit(f"pxetui did not listen on {proto} port {port}")


def run(
    lab: Lab, tmp: Path, tui: bool, seconds: int, clients: int, rate: int, download_rate: str
) -> dict[str, dict[str, float]]:
    state = tmp / ("tui-state" if tui else "headless-state")
    net = SUBNET.network_address
    args = pxetui_command(
        lab.bridge,
        state,
        "--mode",
        "full",
        "--profiles",
        str(tmp / "profiles"),
        "--range",
        f"{net + 16}-{net + 1000}",  # more addresses than PCs: a full pool would read as drops
        headless=False,
    )
    socket = f"pxetui-bench-{tmp.name}"
    proc: subprocess.Popen[str] | None = None
    if tui:
        command = f"ip netns exec {lab.server_ns} {' '.join(args)}"
        subprocess.run(
            ["tmux", "-L", socket, "new-session", "-d", "-s", "b", "-x", "160", "-y", "45", command],
            check=True,
        )
    else:
        proc = lab.popen(
            lab.server_ns, *args, "--headless", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    curls: list[subprocess.Popen[str]] = []
    try:
        wait_port(lab, "u", 67)
        wait_port(lab, "t", HTTP_PORT)
        url = f"http://{lab.server_ip}:{HTTP_PORT}/files/bench/kernel"
        if download_rate == "0":  # full speed: one kernel is gone in a second, so fetch it again
            fetches = ["--limit-rate", "0", *([url, "-o", "/dev/null"] * 200)]
        else:
            fetches = ["--limit-rate", download_rate, url, "-o", "/dev/null"]
        for _ in range(16):
            curls.append(lab.popen(CLIENT_NS[0], "curl", "-s", "--max-time", str(seconds + 20), *fetches))
        time.sleep(2)  # progress events are flowing, the table is drawing
        done = lab.exec(
            CLIENT_NS[0],
            PERFDHCP,
            "-4",
            "-l",
            "eth0",
            "-r",
            str(rate),
            "-R",
            str(clients),
            "-p",
            str(seconds),
            timeout=seconds + 30,
        )
        return delays(done.stdout + done.stderr)
    finally:
        for c in curls:
            c.terminate()
        if tui:
            subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "b", "q"], check=False)
            time.sleep(2)
            subprocess.run(["tmux", "-L", socket, "kill-server"], check=False, capture_output=True)
        elif proc is not None:
            proc.terminate()
            proc.wait(20)


CLIENT_NS: list[str] = []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--rate", type=int, default=100, help="DORA per second asked of perfdhcp")
    p.add_argument("--download-rate", default="1M", help="per download, curl's --limit-rate; 0: full speed")
    args = p.parse_args()
    lab = Lab(subnet=SUBNET).build()
    try:
        with tempfile.TemporaryDirectory(prefix="pxetui-bench-tui-") as name:
            tmp = Path(name)
            (tmp / "profiles").mkdir()
            with open(tmp / "kernel", "wb") as fh:
                fh.truncate(512 * 1024 * 1024)
            (tmp / "profiles" / "bench.yaml").write_text(
                f"name: bench\ntitle: Bench\nkernel: {{path: {tmp / 'kernel'}}}\n"
            )
            client = lab.add_client(address=f"{SUBNET.network_address + 9}/{SUBNET.prefixlen}")
            CLIENT_NS.append(client.netns)
            rows = {
                "headless": run(lab, tmp, False, args.seconds, args.clients, args.rate, args.download_rate),
                "TUI (tmux)": run(lab, tmp, True, args.seconds, args.clients, args.rate, args.download_rate),
            }
    finally:
        lab.teardown()
    speed = "full-speed" if args.download_rate == "0" else f"{args.download_rate}/s"
    print(f"perfdhcp -r {args.rate} -R {args.clients} -p {args.seconds}, 16 {speed} curl downloads running")
    print(
        f"{'pxetui':12} {'DORA/s':>8} {'D-O avg':>9} {'D-O max':>9} {'R-A avg':>9} {'R-A max':>9} {'drops %':>8}"
    )
    for name, r in rows.items():
        do, ra = r.get("DISCOVER-OFFER", {}), r.get("REQUEST-ACK", {})
        print(
            f"{name:12} {r['rate']['DORA/s']:8.1f} {do.get('avg delay', 0):8.2f}ms {do.get('max delay', 0):8.2f}ms"
            f" {ra.get('avg delay', 0):8.2f}ms {ra.get('max delay', 0):8.2f}ms"
            f" {max(do.get('drops ratio', 0), ra.get('drops ratio', 0)):8.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
