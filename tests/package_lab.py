"""A tiny package "internet" for the package-proxy tests and bench: real .debs, a real index, nginx.

The repository is built here (dpkg-deb, dpkg-scanpackages, apt-ftparchive), served by nginx in
an "internet" namespace behind the laptop (server) namespace's default route, with a dnsmasq
there answering DNS for the mirror names the answer files use (deb.debian.org, ...), so the
installers' real host names work and no test ever reaches a real mirror. Addresses are in
198.19.0.0/16 (inside the lab range 198.18.0.0/15).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import Client, Lab, ip

from pxetui.host.netif import InterfaceInfo
from pxetui.services.context import ServiceContext, ServiceSettings

PACKAGES = ("pxt-alpha", "pxt-beta", "pxt-gamma")
MIRROR_HOSTS = ("deb.debian.org", "security.debian.org")


def build_repo(root: Path, size: int = 300_000, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """A Debian repository under root/debian (suite `stable`, component main); returns the pool paths."""
    debian = root / "debian"
    pool = debian / "pool" / "main"
    pool.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in packages:
        src = root / "src" / name
        (src / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (src / "usr" / "share" / name).mkdir(parents=True, exist_ok=True)
        (src / "usr" / "share" / name / "blob").write_bytes(os.urandom(size))  # incompressible
        (src / "DEBIAN" / "control").write_text(
            f"Package: {name}\nVersion: 1.0\nArchitecture: all\n"
            f"Maintainer: lab <lab@example.invalid>\nDescription: test package {name}\n"
        )
        deb = pool / f"{name}_1.0_all.deb"
        subprocess.run(["dpkg-deb", "-Zgzip", "--build", str(src), str(deb)], check=True, capture_output=True)
        paths.append(f"/debian/pool/main/{deb.name}")
    binary = debian / "dists" / "stable" / "main" / "binary-amd64"
    binary.mkdir(parents=True, exist_ok=True)
    index = subprocess.run(
        ["dpkg-scanpackages", "-m", "pool", "/dev/null"], cwd=debian, check=True, capture_output=True
    ).stdout
    (binary / "Packages").write_bytes(index)
    subprocess.run(["gzip", "-kf", str(binary / "Packages")], check=True)
    release = subprocess.run(
        [
            "apt-ftparchive",
            "-o", "APT::FTPArchive::Release::Suite=stable",
            "-o", "APT::FTPArchive::Release::Codename=stable",
            "-o", "APT::FTPArchive::Release::Components=main",
            "-o", "APT::FTPArchive::Release::Architectures=amd64",
            "release", "dists/stable",
        ],
        cwd=debian, check=True, capture_output=True,
    ).stdout  # fmt: skip
    (debian / "dists" / "stable" / "Release").write_bytes(release)
    return paths


@dataclass
class Internet:
    """The "internet" namespace: nginx with the repository, DNS for the mirror names."""

    lab: Lab
    work: Path
    net: int = 0  # 198.19.NET.0/30 between the server namespace and the internet
    ns: str = ""
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    resolv_dir: Path | None = None

    @property
    def address(self) -> str:
        return f"198.19.{self.net}.2"

    @property
    def access_log(self) -> Path:
        return self.work / "access.log"

    def start(self) -> Internet:
        self.net = int(self.lab.subnet.network_address.packed[2])
        self.ns = self.lab._add_ns("i")
        up = f"up{self.net}"
        ip("-n", self.lab.server_ns, "link", "add", up, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        self.lab.owned[self.lab.server_ns].add(up)
        ip("-n", self.lab.server_ns, "addr", "add", f"198.19.{self.net}.1/30", "dev", up)
        ip("-n", self.lab.server_ns, "link", "set", up, "up")
        ip("-n", self.ns, "addr", "add", f"{self.address}/30", "dev", "eth0")
        ip("-n", self.ns, "link", "set", "eth0", "up")
        # The laptop's uplink: its default route leads to the internet namespace, whose own
        # way back to the lab subnet is through the laptop (NAT-free routing is enough here).
        ip("-n", self.lab.server_ns, "route", "add", "default", "via", self.address)
        ip("-n", self.ns, "route", "add", str(self.lab.subnet), "via", f"198.19.{self.net}.1")
        # `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf: the server namespace (pxetui,
        # its squid) resolves through the internet namespace's dnsmasq, like a laptop would.
        self.resolv_dir = Path("/etc/netns") / self.lab.server_ns
        self.resolv_dir.mkdir(parents=True, exist_ok=True)
        (self.resolv_dir / "resolv.conf").write_text(f"nameserver {self.address}\n")
        (self.work / "www").mkdir(parents=True, exist_ok=True)
        self._nginx()
        self._dns()
        time.sleep(0.5)
        return self

    def _nginx(self) -> None:
        w = self.work
        conf = w / "nginx.conf"
        conf.write_text(
            f"""user root;
worker_processes 2;
pid {w}/nginx.pid;
error_log {w}/nginx.error.log;
events {{ worker_connections 1024; }}
http {{
  access_log {self.access_log};
  sendfile on;
  default_type application/octet-stream;
  client_body_temp_path {w}/nb; proxy_temp_path {w}/np; fastcgi_temp_path {w}/nf;
  uwsgi_temp_path {w}/nu; scgi_temp_path {w}/ns;
  server {{ listen {self.address}:80; root {w}/www; }}
}}
"""
        )
        self.procs.append(self.lab.popen(self.ns, "nginx", "-c", str(conf), "-g", "daemon off;"))

    def _dns(self) -> None:
        args = ["dnsmasq", "-k", "--no-resolv", "--no-hosts", f"--listen-address={self.address}"]
        args += ["--bind-interfaces", "--port=53", f"--pid-file={self.work}/dnsmasq.pid"]
        args += [f"--address=/{host}/{self.address}" for host in MIRROR_HOSTS]
        self.procs.append(self.lab.popen(self.ns, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def requests(self, path_part: str = "") -> list[str]:
        """The request lines nginx logged (GET paths) containing `path_part`."""
        try:
            lines = self.access_log.read_text().splitlines()
        except OSError:
            return []
        paths = [line.split('"')[1].split()[1] for line in lines if line.count('"') >= 2]
        return [p for p in paths if path_part in p]

    def transfers(self, path_part: str) -> list[tuple[int, int]]:
        """(status, bytes sent) of each request nginx logged whose path contains `path_part`."""
        found = []
        for line in self.access_log.read_text().splitlines() if self.access_log.exists() else []:
            quoted = line.split('"')
            if len(quoted) >= 3 and path_part in quoted[1]:
                status, sent = quoted[2].split()[:2]
                found.append((int(status), int(sent)))
        return found

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.resolv_dir is not None:
            shutil.rmtree(self.resolv_dir, ignore_errors=True)


def apt_dir(root: Path, source: str, proxy: str | None) -> Path:
    """A private apt configuration: nothing of the host's apt is read or written."""
    for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial",
                "cache/archives/partial", "out"):  # fmt: skip
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "status").write_text("")
    (root / "etc" / "sources.list").write_text(f"deb [trusted=yes] {source} stable main\n")
    options = {
        "Dir::Etc": f"{root}/etc",
        "Dir::Etc::main": f"{root}/etc/apt.conf",
        "Dir::Etc::parts": f"{root}/etc/apt.conf.d",
        "Dir::Etc::sourcelist": f"{root}/etc/sources.list",
        "Dir::Etc::sourceparts": f"{root}/etc/sources.list.d",
        "Dir::State": f"{root}/state",
        "Dir::State::status": f"{root}/status",
        "Dir::Cache": f"{root}/cache",
        "APT::Architecture": "amd64",
        "APT::Architectures": "amd64",
        "Acquire::Languages": "none",
        "APT::Sandbox::User": "root",
        "Debug::NoLocking": "1",
        "Acquire::http::Proxy": proxy or "DIRECT",
        "Acquire::Retries": "0",
    }
    (root / "etc" / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in options.items()))
    return root


def apt(client: Client, root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """apt-get in the client's namespace with the private configuration at `root`."""
    cmd = ["env", f"APT_CONFIG={root}/etc/apt.conf", "apt-get", "-q", *args]
    return subprocess.run(
        ["ip", "netns", "exec", client.netns, *cmd],
        capture_output=True, text=True, timeout=timeout, cwd=root / "out", check=False,
    )  # fmt: skip


@contextlib.contextmanager
def internet(lab: Lab, work: Path) -> Iterator[Internet]:
    net = Internet(lab, work)
    try:
        yield net.start()
    finally:
        net.stop()


@contextlib.contextmanager
def proxy_cache() -> Iterator[Path]:
    """A --cache directory pxetui's squid (user proxy) can reach: pytest's tmp_path is not
    (/tmp/pytest-of-root is 0700), and pxetui refuses a cache squid could not open."""
    made = Path(tempfile.mkdtemp(prefix="pxetui-test-cache-"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def service_context(settings: ServiceSettings, address: str = "198.18.7.1/24") -> ServiceContext:
    """A context for building a service without a session (its checks, its describe())."""
    iface = InterfaceInfo(name="br0", up=True, mtu=1500, speed_mbps=0, mac="02:00:00:00:00:01")
    return ServiceContext(
        interface=iface, address=ipaddress.IPv4Interface(address), boot_files=None,  # type: ignore[arg-type]
        state=None, profiles={}, booter=None, emit=lambda e: None, settings=settings,  # type: ignore[arg-type]
    )  # fmt: skip


def wait_for(proc: Any, wanted: Callable[[dict[str, Any]], bool], what: str, timeout: float = 10) -> dict[str, Any]:
    """The first event of pxetui `proc` for which `wanted(event)` is true (waiting up to `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in proc.events if wanted(e)]
        if found:
            return dict(found[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what}: {proc.events[-20:]}")
        with contextlib.suppress(AssertionError):
            proc.wait_event("<nothing>", timeout=0.3)  # takes the events that came meanwhile
