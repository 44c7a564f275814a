"""A fixed, recorded-style session for the TUI tests: opened (never started), fed fake events.

Everything that reaches the screen is pinned: event times, the app's clock, the time zone
(tests set TZ=UTC), MACs whose vendor does not depend on the OUI file, and fake interfaces
for the picker. That is what makes the SVGs in screens/ byte-for-byte reproducible.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

from pxetui.host.netif import InterfaceInfo, Member
from pxetui.model.events import (
    DhcpAck,
    DhcpDiscover,
    DhcpRival,
    Event,
    HttpDone,
    HttpProgress,
    HttpRequest,
    InstallDone,
    InstallFailed,
    ProxyStats,
    ServiceReady,
    TftpDone,
    TftpProgress,
    TftpStart,
    make_event,
)
from pxetui.model.plan import PlanEntry
from pxetui.services.proxy.uplink import NO_UPLINK
from pxetui.session import Session, SessionConfig
from pxetui.tui.app import PxetuiApp
from pxetui.tui.screens.main import MainScreen

BASE_TS = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
NOW = BASE_TS + 95.0
SIZE = (120, 36)

PC_UEFI = "52:54:00:12:34:01"
PC_BIOS = "52:54:00:12:34:02"
PC_WAITING = "52:54:00:12:34:03"
PC_HTTPBOOT = "02:00:00:aa:bb:04"
PC_FAILED = "52:54:00:12:34:05"
PC_LOADER = "52:54:00:12:34:06"

UEFI_VENDOR_CLASS = "PXEClient:Arch:00007:UNDI:003010"


def fake_interfaces() -> list[InterfaceInfo]:
    return [
        InterfaceInfo(
            name="eth0",
            up=True,
            mtu=1500,
            speed_mbps=1000,
            mac="3c:52:82:00:00:10",
            ipv4=(ipaddress.IPv4Interface("192.168.1.23/24"),),
            default_route=True,
        ),
        InterfaceInfo(
            name="enx00e04c680001",
            up=True,
            mtu=1500,
            speed_mbps=1000,
            mac="00:e0:4c:68:00:01",
            ipv4=(ipaddress.IPv4Interface("198.18.0.1/24"),),
        ),
        InterfaceInfo(name="eth1", up=False, mtu=1500, speed_mbps=0, mac="3c:52:82:00:00:11"),
        InterfaceInfo(name="lo", up=True, mtu=65536, speed_mbps=0, mac="00:00:00:00:00:00"),
    ]


def bridged_interfaces() -> list[InterfaceInfo]:
    """A laptop with a bridge for its lab VMs: the bridge holds the address, its port and a bond's
    member are no place to serve (host/netif.py `member_of`, as list_interfaces reads it)."""
    return [
        InterfaceInfo(
            name="eth0", up=True, mtu=1500, speed_mbps=1000, mac="3c:52:82:00:00:10",
            ipv4=(ipaddress.IPv4Interface("192.168.1.23/24"),), default_route=True,
        ),
        InterfaceInfo(
            name="enp3s0", up=True, mtu=1500, speed_mbps=1000, mac="00:e0:4c:68:00:02",
            member_of=Member("br-lab", "bridge"),
        ),
        InterfaceInfo(
            name="br-lab", up=True, mtu=1500, speed_mbps=0, mac="00:e0:4c:68:00:02",
            ipv4=(ipaddress.IPv4Interface("198.18.0.1/24"),),
        ),
        InterfaceInfo(
            name="eth2", up=True, mtu=1500, speed_mbps=1000, mac="3c:52:82:00:00:12",
            member_of=Member("bond0", "bond"),
        ),
        InterfaceInfo(name="lo", up=True, mtu=65536, speed_mbps=0, mac="00:00:00:00:00:00"),
    ]  # fmt: skip


def open_session(state: Path, interface: str = "enx00e04c680001") -> Session:
    config = SessionConfig(
        interface=interface,
        state_dir=state,
        # An empty cache: only profiles whose files are installed (path:) or that boot no
        # files are servable, whatever a fetch elsewhere on this machine downloaded.
        cache_dir=state.parent / "empty-cache",
        address=ipaddress.IPv4Interface("198.18.0.1/24"),
    )
    session = Session(config)
    session.open()
    return session


def plan_lab(session: Session) -> None:
    """The operator's plan before power-on (done before the app subscribes: not in the log)."""
    session.add_machine(PC_UEFI, "lab-pc-01")
    session.assign(PC_UEFI, "debian-12-local")
    session.add_machine(PC_BIOS, "lab-pc-02")
    session.assign(PC_BIOS, "debian-12-local")
    session.add_machine(PC_WAITING, "lab-pc-03")
    session.assign(PC_WAITING, "ipxe-shell")
    session.add_machine(PC_FAILED, "lab-pc-05")
    session.assign(PC_FAILED, "debian-12-local")


def publish(session: Session, offset: float, event: Event | str, mac: str | None = None, **fields: Any) -> None:
    """Hand the session an event built by the services' own constructor, at BASE_TS + offset.

    `event` is the event, or its name with its fields (built by `make_event`, so a field the
    service does not send is an error here too).
    """
    built = make_event(event, mac, **fields) if isinstance(event, str) else event
    session.bus.publish(dataclasses.replace(built, ts=BASE_TS + offset))


def _http(mac: str, ip: str, kind: str, file: str, total: int) -> HttpRequest:
    return HttpRequest(mac=mac, path=f"/files/debian-12-local/{kind}", kind=kind, file=file, total=total, client=ip)


def _http_done(mac: str, ip: str, kind: str, file: str, total: int, rate: float) -> HttpDone:
    path = f"/files/debian-12-local/{kind}"
    return HttpDone(mac=mac, path=path, kind=kind, file=file, client=ip, bytes=total, total=total, rate=rate, ok=True)


def _script(mac: str, ip: str, answer: str) -> HttpRequest:
    return HttpRequest(mac=mac, path="/boot.ipxe", kind="script", file="boot.ipxe", total=412, client=ip, answer=answer)


def boot_events(session: Session, *, rival: bool = False) -> None:
    """A morning in the lab: five PCs at different stages of the boot chain."""
    mode = "proxy" if rival else "full"
    session.mode = mode
    services: dict[str, dict[str, object]] = {"dhcp": {"port": 67}, "tftp": {"port": 69}, "http": {"port": 8080}}
    ready = ServiceReady(
        mode=mode,
        interface="enx00e04c680001",
        address="198.18.0.1",
        http_port=8080,
        services=services,
        state_dir=str(session.state.path),
    )
    publish(session, 0, ready)
    if rival:
        publish(
            session,
            1,
            DhcpRival(
                mode=mode,
                server_id="198.18.0.254",
                server_mac="00:16:3e:5e:00:fe",
                message="offer",
                offers_address=True,
                subnet="255.255.255.0",
                router="198.18.0.254",
            ),
        )
    # A BIOS PC that went all the way.
    bios = {"arch": 0, "vendor_class": "PXEClient:Arch:00000:UNDI:002001", "xid": 0x2A0B10}
    publish(session, 2, DhcpDiscover(mac=PC_BIOS, **bios))  # type: ignore[arg-type]
    publish(session, 2.1, DhcpAck(mac=PC_BIOS, ip="198.18.0.101", file="undionly.kpxe", **bios))  # type: ignore[arg-type]
    publish(session, 3, _script(PC_BIOS, "198.18.0.101", "debian-12-local"))
    publish(session, 4, _http(PC_BIOS, "198.18.0.101", "kernel", "linux", 6_600_000))
    publish(session, 5, _http_done(PC_BIOS, "198.18.0.101", "kernel", "linux", 6_600_000, 6_600_000.0))
    publish(session, 5.5, _http(PC_BIOS, "198.18.0.101", "initrd", "initrd.gz", 30_000_000))
    publish(session, 8, _http_done(PC_BIOS, "198.18.0.101", "initrd", "initrd.gz", 30_000_000, 12_000_000.0))
    config = HttpRequest(
        mac=PC_BIOS, path=f"/config/{PC_BIOS}/preseed.cfg", kind="config", file="preseed.cfg", total=2_048,
        client="198.18.0.101", profile="debian-12-local",
    )  # fmt: skip
    publish(session, 9, config)
    publish(session, 60, InstallDone(mac=PC_BIOS, client="198.18.0.101"))
    # A UEFI PC downloading its kernel.
    uefi = {"arch": 7, "vendor_class": UEFI_VENDOR_CLASS, "xid": 0x5C11, "uuid": "00000000-0000-0000-0000-000000000000"}
    params = [1, 3, 6, 43, 60, 66, 67, 93, 97]
    publish(session, 30, DhcpDiscover(mac=PC_UEFI, params=params, **uefi))  # type: ignore[arg-type]
    publish(session, 30.2, DhcpAck(mac=PC_UEFI, ip="198.18.0.100", file="ipxe.efi", params=params, **uefi))  # type: ignore[arg-type]
    tftp = {"file": "ipxe.efi", "client": "198.18.0.100", "total": 1_048_576}
    publish(session, 31, TftpStart(mac=PC_UEFI, blksize=1468, windowsize=4, **tftp))  # type: ignore[arg-type]
    publish(session, 33, TftpDone(mac=PC_UEFI, bytes=1_048_576, rate=524_288, ok=True, reason="", **tftp))  # type: ignore[arg-type]
    ipxe = {"arch": 7, "user_class": "iPXE", "ipxe": True, "xid": 0x77}
    publish(session, 36, DhcpDiscover(mac=PC_UEFI, **ipxe))  # type: ignore[arg-type]
    publish(session, 36.1, DhcpAck(mac=PC_UEFI, ip="198.18.0.100", file="http://198.18.0.1:8080/boot.ipxe", **ipxe))  # type: ignore[arg-type]
    publish(session, 37, _script(PC_UEFI, "198.18.0.100", "debian-12-local"))
    publish(session, 38, _http(PC_UEFI, "198.18.0.100", "kernel", "linux", 8_000_000))
    progress = HttpProgress(
        mac=PC_UEFI, path="/files/debian-12-local/kernel", kind="kernel", file="linux", client="198.18.0.100",
        bytes=3_600_000, total=8_000_000, rate=12_300_000,
    )  # fmt: skip
    publish(session, 39, progress)
    # A UEFI HTTP Boot PC nobody planned: it just got an address.
    http_boot = DhcpDiscover(mac=PC_HTTPBOOT, arch=16, vendor_class="HTTPClient:Arch:00016:UNDI:003001", xid=0x16)
    publish(session, 70, http_boot)
    # A PC whose installer failed.
    failed = {"arch": 7, "vendor_class": UEFI_VENDOR_CLASS, "xid": 0x105}
    publish(session, 10, DhcpDiscover(mac=PC_FAILED, **failed))  # type: ignore[arg-type]
    publish(session, 10.3, DhcpAck(mac=PC_FAILED, ip="198.18.0.105", file="ipxe.efi", **failed))  # type: ignore[arg-type]
    failed_config = HttpRequest(
        mac=PC_FAILED, path=f"/config/{PC_FAILED}/preseed.cfg", kind="config", file="preseed.cfg", total=2_048,
        client="198.18.0.105", profile="debian-12-local",
    )  # fmt: skip
    publish(session, 20, failed_config)
    publish(session, 50, InstallFailed(mac=PC_FAILED, reason="no disk found", client="198.18.0.105"))
    # A PC fetching iPXE over TFTP.
    loader = {"arch": 9, "vendor_class": "PXEClient:Arch:00009:UNDI:003016", "xid": 0x106}
    publish(session, 80, DhcpDiscover(mac=PC_LOADER, **loader))  # type: ignore[arg-type]
    publish(session, 80.2, DhcpAck(mac=PC_LOADER, ip="198.18.0.106", file="ipxe.efi", **loader))  # type: ignore[arg-type]
    tftp = {"file": "ipxe.efi", "client": "198.18.0.106", "total": 1_048_576}
    publish(session, 81, TftpStart(mac=PC_LOADER, blksize=1468, windowsize=4, **tftp))  # type: ignore[arg-type]
    publish(session, 82, TftpProgress(mac=PC_LOADER, bytes=419_430, rate=2_100_000, **tftp))  # type: ignore[arg-type]


def proxy_ready(session: Session, proxy: dict[str, object], offset: float = 0.5) -> None:
    """service.ready again, now listing the package proxy with `proxy` (its describe())."""
    services: dict[str, dict[str, object]] = {
        "dhcp": {"port": 67}, "tftp": {"port": 69}, "http": {"port": 8080}, "proxy": proxy,
    }  # fmt: skip
    ready = ServiceReady(
        mode=session.mode, interface="enx00e04c680001", address="198.18.0.1", http_port=8080,
        services=services, state_dir="/var/lib/pxetui",  # as root would see it: the SVGs show it
    )  # fmt: skip
    publish(session, offset, ready)


def proxy_stats(uplink: bool = True) -> ProxyStats:
    """The proxy's figures mid-morning: the BIOS PC installed through it, the UEFI PC is starting."""
    return ProxyStats(
        url="http://198.18.0.1:3142", upstream_bytes=412_000_000, served_bytes=1_236_000_000,
        from_cache=824_000_000, cache_bytes=430_000_000, files=2_310, refused=2,
        clients={"198.18.0.101": 1_200_000_000, "198.18.0.100": 36_000_000, "198.18.0.7": 120},
        uplink=uplink, upstream_ok=uplink, warning=None if uplink else NO_UPLINK,
    )  # fmt: skip


def make_app(session: Session, **kwargs: Any) -> PxetuiApp:
    kwargs.setdefault("start_session", False)
    kwargs.setdefault("list_interfaces", fake_interfaces)
    kwargs.setdefault("clock", lambda: NOW)
    return PxetuiApp(session, **kwargs)


NO_ENTRY = PlanEntry(mac="00:00:00:00:00:00")


def main_screen(app: PxetuiApp) -> MainScreen:
    """The app's screen, which a test expects to be the main one."""
    screen = app.screen
    assert isinstance(screen, MainScreen), f"expected the main screen, got {screen!r}"
    return screen
