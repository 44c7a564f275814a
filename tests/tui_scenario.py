"""A fixed, recorded-style session for the TUI tests: opened (never started), fed fake events.

Everything that reaches the screen is pinned: event times, the app's clock, the time zone
(tests set TZ=UTC), MACs whose vendor does not depend on the OUI file, and fake interfaces
for the picker. That is what makes the SVGs in screens/ byte-for-byte reproducible.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pxetui.model.events import Event

from pxetui.host.netif import InterfaceInfo
from pxetui.model.plan import PlanEntry
from pxetui.session import Session, SessionConfig
from pxetui.tui.app import PxetuiApp

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


def publish(session: Session, offset: float, name: str, mac: str | None = None, **fields: Any) -> None:
    session.bus.publish(Event(name=name, mac=mac, fields=fields, ts=BASE_TS + offset))


def boot_events(session: Session, *, rival: bool = False) -> None:
    """A morning in the lab: five PCs at different stages of the boot chain."""
    mode = "proxy" if rival else "full"
    session.mode = mode
    services = {"dhcp": {"port": 67}, "tftp": {"port": 69}, "http": {"port": 8080}}
    publish(session, 0, "service.ready", mode=mode, address="198.18.0.1", http_port=8080, services=services)
    if rival:
        publish(session, 1, "dhcp.rival", server="198.18.0.254")
    # A BIOS PC that went all the way.
    publish(session, 2, "dhcp.discover", PC_BIOS, arch=0, vendor_class="PXEClient:Arch:00000:UNDI:002001")
    publish(session, 2.1, "dhcp.ack", PC_BIOS, ip="198.18.0.101", arch=0)
    publish(session, 3, "http.request", PC_BIOS, kind="script", path="/boot.ipxe")
    publish(session, 4, "http.request", PC_BIOS, kind="kernel", path="linux", total=6_600_000)
    publish(session, 5, "http.done", PC_BIOS, path="linux", bytes=6_600_000, total=6_600_000)
    publish(session, 5.5, "http.request", PC_BIOS, kind="initrd", path="initrd.gz", total=30_000_000)
    publish(session, 8, "http.done", PC_BIOS, path="initrd.gz", bytes=30_000_000, total=30_000_000)
    publish(session, 9, "http.request", PC_BIOS, kind="config", path="/preseed.cfg")
    publish(session, 9.1, "http.done", PC_BIOS, path="/preseed.cfg", bytes=2_048, total=2_048)
    publish(session, 60, "install.done", PC_BIOS)
    # A UEFI PC downloading its kernel.
    publish(
        session,
        30,
        "dhcp.discover",
        PC_UEFI,
        arch=7,
        vendor_class=UEFI_VENDOR_CLASS,
        uuid="00000000-0000-0000-0000-000000000000",
        params=[1, 3, 6, 43, 60, 66, 67, 93, 97],
    )
    publish(session, 30.2, "dhcp.ack", PC_UEFI, ip="198.18.0.100", arch=7)
    publish(session, 31, "tftp.start", PC_UEFI, file="ipxe.efi", total=1_048_576)
    publish(session, 33, "tftp.done", PC_UEFI, file="ipxe.efi", bytes=1_048_576, total=1_048_576)
    publish(session, 36, "dhcp.discover", PC_UEFI, arch=7, user_class="iPXE", ipxe=True)
    publish(session, 36.1, "dhcp.ack", PC_UEFI, ip="198.18.0.100", arch=7)
    publish(session, 37, "http.request", PC_UEFI, kind="script", path="/boot.ipxe")
    publish(session, 38, "http.request", PC_UEFI, kind="kernel", path="linux", total=8_000_000)
    publish(
        session, 39, "http.progress", PC_UEFI, path="linux", bytes=3_600_000, total=8_000_000, rate=12_300_000
    )
    # A UEFI HTTP Boot PC nobody planned: it just got an address.
    publish(
        session, 70, "dhcp.discover", PC_HTTPBOOT, arch=16, vendor_class="HTTPClient:Arch:00016:UNDI:003001"
    )
    # A PC whose installer failed.
    publish(session, 10, "dhcp.discover", PC_FAILED, arch=7, vendor_class=UEFI_VENDOR_CLASS)
    publish(session, 10.3, "dhcp.ack", PC_FAILED, ip="198.18.0.105", arch=7)
    publish(session, 20, "http.request", PC_FAILED, kind="config", path="/preseed.cfg")
    publish(session, 50, "install.failed", PC_FAILED, reason="no disk found")
    # A PC fetching iPXE over TFTP.
    publish(session, 80, "dhcp.discover", PC_LOADER, arch=9, vendor_class="PXEClient:Arch:00009:UNDI:003016")
    publish(session, 80.2, "dhcp.ack", PC_LOADER, ip="198.18.0.106", arch=9)
    publish(session, 81, "tftp.start", PC_LOADER, file="ipxe.efi", total=1_048_576)
    publish(
        session,
        82,
        "tftp.progress",
        PC_LOADER,
        file="ipxe.efi",
        bytes=419_430,
        total=1_048_576,
        rate=2_100_000,
    )


def make_app(session: Session, **kwargs: Any) -> PxetuiApp:
    kwargs.setdefault("start_session", False)
    kwargs.setdefault("list_interfaces", fake_interfaces)
    kwargs.setdefault("clock", lambda: NOW)
    return PxetuiApp(session, **kwargs)


NO_ENTRY = PlanEntry(mac="00:00:00:00:00:00")
