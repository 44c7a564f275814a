"""A private lab network: namespaces, a bridge, veth clients and taps in 198.18.0.0/15.

Used by `pxetui demo` and by the tests. Everything lives in network namespaces this module
creates and deletes again; nothing is created in, bound to or sent from the host's own namespace.
Servers may only be started on an interface the lab created (`Lab.check_owned`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAB_SUPERNET = ipaddress.IPv4Network("198.18.0.0/15")
_counter = itertools.count(1)


class LabError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def lab_available() -> str | None:
    """None when labs can be built here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (run `sudo make test`)"
    if shutil.which("ip") is None:
        return "needs `ip` from iproute2"
    return None


def pxetui_command(iface: str, state: Path, *options: str, headless: bool = True) -> list[str]:
    """`python -m pxetui IFACE [--headless --json] --state DIR OPTIONS...`: pxetui as a lab starts it."""
    output = ("--headless", "--json") if headless else ()
    return [sys.executable, "-m", "pxetui", iface, *output, "--state", str(state), *options]


@dataclass
class Client:
    netns: str
    iface: str
    mac: str

    def run(self, *cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


@dataclass
class Lab:
    """One server namespace with bridge `br0`, plus client namespaces and taps on it."""

    subnet: ipaddress.IPv4Network
    tag: str = field(default_factory=lambda: f"pxt{os.getpid() % 100000}x{next(_counter)}")
    server_ns: str = ""
    bridge: str = "br0"
    namespaces: list[str] = field(default_factory=list)
    owned: dict[str, set[str]] = field(default_factory=dict)
    _clients: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    @property
    def server_ip(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def server_cidr(self) -> str:
        return f"{self.server_ip}/{self.subnet.prefixlen}"

    def _add_ns(self, suffix: str) -> str:
        name = f"{self.tag}{suffix}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        self.owned[name] = {"lo"}
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def build(self, *, bridge_address: bool = True) -> Lab:
        if not self.subnet.subnet_of(LAB_SUPERNET):
            raise LabError(f"{self.subnet} is outside the lab range {LAB_SUPERNET}")
        self.server_ns = self._add_ns("s")
        ip(
            "-n",
            self.server_ns,
            "link",
            "add",
            self.bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        )
        self.owned[self.server_ns].add(self.bridge)
        if bridge_address:
            ip("-n", self.server_ns, "addr", "add", self.server_cidr, "dev", self.bridge)
        ip("-n", self.server_ns, "link", "set", self.bridge, "up")
        return self

    def add_client(self, mac: str | None = None, *, address: str | None = None) -> Client:
        """A client namespace whose `eth0` is a veth plugged into the bridge."""
        n = next(self._clients)
        ns = self._add_ns(f"c{n}")
        port = f"vc{n}"
        ip("-n", self.server_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.owned[self.server_ns].add(port)
        self.owned[ns].add("eth0")
        ip("-n", self.server_ns, "link", "set", port, "master", self.bridge, "up")
        if mac:
            ip("-n", ns, "link", "set", "eth0", "address", mac)
        if address:
            ip("-n", ns, "addr", "add", address, "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        out = ip("-n", ns, "-br", "link", "show", "eth0").stdout.split()
        return Client(netns=ns, iface="eth0", mac=out[2] if len(out) > 2 else "")

    def add_tap(self, name: str) -> str:
        """A tap device on the bridge for a QEMU guest (`ip netns exec` the QEMU into server_ns)."""
        ip("-n", self.server_ns, "tuntap", "add", name, "mode", "tap")
        self.owned[self.server_ns].add(name)
        ip("-n", self.server_ns, "link", "set", name, "master", self.bridge, "up")
        return name

    def check_owned(self, netns: str, iface: str) -> None:
        if iface not in self.owned.get(netns, set()):
            raise LabError(
                f"refusing to serve on {iface!r} in namespace {netns!r}: the lab did not create it"
            )

    def exec(self, netns: str, *cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", netns, *cmd], check=False, **kw)

    def popen(self, netns: str, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
        kw.setdefault("text", True)
        return subprocess.Popen(["ip", "netns", "exec", netns, *cmd], **kw)

    def teardown(self) -> None:
        for ns in reversed(self.namespaces):
            # Kill anything still running inside first, so the namespace really goes away.
            pids = ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            ip("netns", "del", ns, check=False)
        self.namespaces.clear()


def leftover_namespaces(tag_prefix: str = "pxt") -> list[str]:
    out = ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in out if line.startswith(tag_prefix)]
