"""An HTTP service running in-process on a lab bridge, with files, profiles and a curl client."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import Client, Lab, NetnsLoop

from pxetui.boot.bootfiles import BootFiles, find_boot_files
from pxetui.host.netif import InterfaceInfo
from pxetui.model.events import DhcpAck, DhcpDiscover, Event
from pxetui.services.context import ServiceContext
from pxetui.services.http.server import HttpService
from pxetui.session import Session, SessionConfig

PORT = 8080
KERNEL_SIZE = 3 * 1024 * 1024 + 17  # odd size: ranges and resumes end mid-block
BIG_SIZE = 512 * 1024 * 1024  # sparse: costs no disk, long enough to interrupt


def write_profiles(tmp: Path) -> tuple[Path, Path]:
    """Test profiles, OS files and a cache with a symlink planted to escape it."""
    os_dir = tmp / "os"
    os_dir.mkdir()
    (os_dir / "kernel").write_bytes(os.urandom(KERNEL_SIZE))
    with open(os_dir / "big", "wb") as fh:
        fh.truncate(BIG_SIZE)
    profiles = tmp / "profiles"
    profiles.mkdir()
    (profiles / "tiny.yaml").write_text(
        "name: tiny\ntitle: Tiny OS\narch: [x86_64]\n"
        f"kernel: {{path: {os_dir / 'kernel'}}}\ninitrd: {{path: {os_dir / 'big'}}}\n"
        'cmdline: "url={{ machine.url }}/preseed.cfg hostname={{ machine.hostname }}"\n'
        "template: preseed\n"
    )
    (profiles / "armos.yaml").write_text(
        f"name: armos\ntitle: Arm OS\narch: [arm64]\nkernel: {{path: {os_dir / 'kernel'}}}\n"
    )
    (profiles / "cached.yaml").write_text(
        "name: cached\ntitle: Cached OS\narch: [x86_64]\nkernel: {url: https://files.invalid/linux}\n"
    )
    cache = tmp / "cache"
    (cache / "cached").mkdir(parents=True)
    (cache / "cached" / "linux").symlink_to("/etc/passwd")
    boot = tmp / "boot"
    boot.mkdir()
    (boot / "ipxe.efi").write_bytes(os.urandom(100_000))
    (boot / "undionly.kpxe").write_bytes(os.urandom(70_000))
    return profiles, cache


@dataclass
class HttpLab:
    lab: Lab
    loop: NetnsLoop
    session: Session
    context: ServiceContext
    service: HttpService
    client: Client
    tmp: Path
    events: list[Event] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)  # client namespace -> its address

    @property
    def client_ip(self) -> str:
        return self.lab.server_ip.rsplit(".", 1)[0] + ".10"

    def add_client(self, host: int) -> Client:
        """Another client namespace on the bridge, at .`host` of the lab subnet (a static address)."""
        ip = f"{self.lab.server_ip.rsplit('.', 1)[0]}.{host}"
        client = self.lab.add_client(address=f"{ip}/24")
        self.addresses[client.netns] = ip
        return client

    def ip_of(self, client: Client | None) -> str:
        return self.client_ip if client is None or client is self.client else self.addresses[client.netns]

    def lease(self, mac: str, via: Client | None = None) -> None:
        """The registry learns that `mac` holds `via`'s address, as pxetui's DHCP ACK tells it."""
        ip = self.ip_of(via)
        self.loop.call(lambda: self.session.emit(DhcpAck(mac=mac, ip=ip, vendor_class="PXEClient")))

    def seen(self, mac: str) -> None:
        """`mac` network-booted through pxetui (its DISCOVER), with no address known yet."""
        self.loop.call(lambda: self.session.emit(DhcpDiscover(mac=mac, vendor_class="PXEClient")))

    @property
    def base(self) -> str:
        return f"http://{self.lab.server_ip}:{PORT}"

    def curl(
        self, *args: str, timeout: float = 60, via: Client | None = None
    ) -> subprocess.CompletedProcess[str]:
        client = via or self.client
        return client.run("curl", "-sS", "--max-time", str(int(timeout)), *args, timeout=timeout + 5)

    def get(self, path: str, *args: str, via: Client | None = None) -> tuple[int, str]:
        """(status, body) of GET base+path from `via` (default: the first client), with curl's
        --path-as-is so `..` reaches the server."""
        out = self.tmp / "body.out"
        out.unlink(missing_ok=True)
        done = self.curl(
            "--path-as-is", "-o", str(out), "-w", "%{http_code}", *args, self.base + path, via=via
        )
        body = out.read_text(errors="replace") if out.exists() else ""
        return int(done.stdout or 0), body

    def named(self, name: str, mac: str | None = None) -> list[Event]:
        return [e for e in list(self.events) if e.name == name and (mac is None or e.mac == mac)]

    def wait_event(self, name: str, timeout: float = 20, **match: Any) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if event.name == name and all(event.fields.get(k) == v for k, v in match.items()):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {name} {match} in {timeout}s; got {[e.name for e in self.events]}")

    def assign(self, mac: str, profile: str, hostname: str | None = None) -> None:
        self.loop.call(lambda: self.session.assign(mac, profile, hostname))

    def set_boot_local(self, mac: str) -> None:
        self.loop.call(lambda: self.session.set_boot_local(mac))


def start_http_lab(lab: Lab, tmp: Path, loop: NetnsLoop, **service_args: Any) -> HttpLab:
    profiles, cache = write_profiles(tmp)
    config = SessionConfig(
        interface=lab.bridge,
        state_dir=tmp / "state",
        profile_dirs=[profiles],
        cache_dir=cache,
        boot_files=tmp / "boot",
        http_port=PORT,
    )
    return serve_http_lab(lab, tmp, loop, config, find_boot_files(config.boot_files), **service_args)


def serve_http_lab(
    lab: Lab,
    tmp: Path,
    loop: NetnsLoop,
    config: SessionConfig,
    boot_files: BootFiles,
    client_mac: str = "52:54:00:00:00:10",
    **service_args: Any,
) -> HttpLab:
    """The HTTP service of a Session of `config` with `boot_files`, started on `loop`, and a client."""
    session = Session(config)
    events: list[Event] = []

    async def setup() -> tuple[ServiceContext, HttpService]:
        # An opened (never started) Session is the Booter and the bus; the service gets its
        # context, as Session.start builds it, without the other services.
        session.bus.bind_loop(loop.loop)
        session.bus.subscribe(events.append)
        session.open()
        context = ServiceContext(
            interface=InterfaceInfo(name=lab.bridge, up=True, mtu=1500, speed_mbps=0, mac=""),
            address=ipaddress.IPv4Interface(lab.server_cidr),
            boot_files=boot_files,
            state=session.state,
            profiles=session.profiles,
            booter=session,
            emit=session.emit,
            settings=session.settings,
        )
        service = HttpService(context, **service_args)
        await service.start()
        return context, service

    context, service = loop.run(setup())
    prefix = lab.server_ip.rsplit(".", 1)[0]
    client = lab.add_client(mac=client_mac, address=f"{prefix}.10/24")
    return HttpLab(lab, loop, session, context, service, client, tmp, events)
