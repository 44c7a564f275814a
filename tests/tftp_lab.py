"""An in-process TFTP service on a lab bridge, with the events it emits (shared by tests/bench)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import Lab, NetnsLoop

from pxetui.boot.bootfiles import BootFiles, find_boot_files
from pxetui.host.netif import InterfaceInfo
from pxetui.model.events import Event
from pxetui.services.context import ServiceContext
from pxetui.services.tftp.server import TftpService
from pxetui.session import Session, SessionConfig


def make_boot_dir(root: Path, outside: Path) -> dict[str, bytes]:
    """A boot-files directory like Debian's: real files, a subdirectory, and a symlink whose
    target lies outside the directory (as /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi)."""
    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    files = {
        "undionly.kpxe": os.urandom(74_213),
        "snponly.efi": os.urandom(1468 * 20),  # an exact multiple of 1468: ends in an empty block
        "arm64-efi/ipxe.efi": os.urandom(5000),
        "ipxe.efi": os.urandom(850_528),
    }
    for name, content in files.items():
        if name == "ipxe.efi":
            (outside / "ipxe.efi").write_bytes(content)
            (root / name).symlink_to(outside / "ipxe.efi")
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
    (outside / "secret.txt").write_text("must never be served\n")
    return files


@dataclass
class TftpServer:
    lab: Lab
    session: Session
    service: TftpService
    loop: NetnsLoop
    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ip(self) -> str:
        return self.lab.server_ip

    def named(self, name: str, **match: Any) -> list[Event]:
        def fits(event: Event) -> bool:
            return all((event.mac if k == "mac" else event.fields.get(k)) == v for k, v in match.items())

        with self._lock:
            return [e for e in self.events if e.name == name and fits(e)]

    def wait(self, predicate: Callable[[], bool], timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def stats(self) -> dict[str, object]:
        return self.loop.call(self.service.describe)


def lab_service_context(
    lab: Lab, config: SessionConfig, boot_dir: Path | None, mtu: int = 1500, boot_files: BootFiles | None = None
) -> tuple[Session, ServiceContext]:
    """An opened (never started) Session, the services' Booter and event bus, and the context
    a service on the lab bridge gets from it, as in Session.start (which reads the interface
    from /sys, the host's view for a thread in a lab namespace: hence built by hand here).
    `boot_files`: a catalog made by the test (its own chains), instead of `boot_dir`'s."""
    session = Session(config)
    session.open()
    boot: BootFiles = boot_files if boot_files is not None else find_boot_files(boot_dir)
    context = ServiceContext(
        interface=InterfaceInfo(name=lab.bridge, up=True, mtu=mtu, speed_mbps=0, mac=""),
        address=ipaddress.IPv4Interface(lab.server_cidr),
        boot_files=boot,
        state=session.state,
        profiles=session.profiles,
        booter=session,
        emit=session.emit,
        settings=session.settings,
    )
    return session, context


def start_tftp(
    lab: Lab,
    nl: NetnsLoop,
    state: Path,
    boot_dir: Path | None,
    mtu: int = 1500,
    port: int = 69,
    give_up: float = 30.0,
) -> TftpServer:
    session, context = lab_service_context(lab, SessionConfig(interface=lab.bridge, state_dir=state), boot_dir, mtu)
    return serve_tftp(lab, nl, session, context, port=port, give_up=give_up)


@contextlib.contextmanager
def running_tftp(lab: Lab, session: Session, context: ServiceContext) -> Iterator[TftpServer]:
    """`serve_tftp` on a loop in the lab's server namespace, stopped when the block ends."""
    with NetnsLoop(lab.server_ns) as nl:
        server = serve_tftp(lab, nl, session, context)
        try:
            yield server
        finally:
            nl.run(server.service.stop())


def serve_tftp(
    lab: Lab, nl: NetnsLoop, session: Session, context: ServiceContext, port: int = 69, give_up: float = 30.0
) -> TftpServer:
    """The TFTP service of `context` started on `nl`, its events collected (stop: nl.run(service.stop()))."""
    service = TftpService(context, port=port, give_up=give_up)
    server = TftpServer(lab=lab, session=session, service=service, loop=nl)

    def collect(event: Event) -> None:
        with server._lock:
            server.events.append(event)

    session.bus.subscribe(collect)

    async def go() -> None:
        session.bus.bind_loop(asyncio.get_running_loop())
        await service.start()

    nl.run(go())
    return server
