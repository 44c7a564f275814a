"""What a service gets from the outside: a frozen context and a small `Booter` to ask.

A service never sees the Session. It is built with a `ServiceContext` (the interface and
address it serves, the boot files, the state directory, the operator's settings, `emit`) and
asks the few questions it has about machines through `Booter`, which the Session implements
(aiosmtpd's protocol + handler and pixiecore's `Booter` are the models). Everything in the
context is checked once, when it is built, as aiohttp's TCPSite checks its values: a service's
`start()` only binds. See docs/architecture.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pxetui.boot.bootfiles import BootFiles
from pxetui.boot.profiles import Profile
from pxetui.boot.unattended import InstallSettings
from pxetui.errors import UsageError
from pxetui.host.netif import InterfaceInfo
from pxetui.model.events import Event
from pxetui.model.state import StateDir

MODES = ("auto", "full", "proxy")
# Which loader a UEFI PC gets: iPXE, the signed chain (shim + GRUB), or auto: iPXE first, the
# signed chain once the PC's firmware refused iPXE (Secure Boot). See services/dhcp/answer.py.
SECURE_BOOT_MODES = ("auto", "signed", "ipxe")
PACKAGE_PROXY_MODES = ("auto", "on", "off")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")  # a bare host name or IPv4 address
Emit = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class BootPlan:
    """What the operator decided for one MAC, as a service needs it."""

    profile: Profile | None = None  # the assigned profile (None: none, or not a loaded profile)
    boot_local: bool = False  # the next boot goes to the local disk
    hostname: str | None = None  # the planned hostname, if the plan names one
    # The profile's files are being fetched now: a PC that asks waits and asks again
    # (fetch on first use); it is sent to the files only once they are verified.
    fetching: bool = False


class Booter(Protocol):
    """The questions a service may ask about machines. The Session answers them."""

    def boot_plan(self, mac: str) -> BootPlan:
        """The operator's decision for `mac` (an empty plan for a MAC nobody planned)."""
        ...

    def menu_choice(self, mac: str) -> Profile | None:
        """The profile `mac` picked from the boot menu in its current boot, if any."""
        ...

    def hostname_for(self, mac: str) -> str:
        """The hostname `mac` installs with: the plan's, else the pattern in boot order."""
        ...

    def mac_for_ip(self, ip: str) -> str | None:
        """The machine that holds `ip` now."""
        ...

    def is_booting(self, mac: str) -> bool:
        """Whether `mac` is between DHCP and its menu in a boot pxetui is serving."""
        ...

    def needs_signed_chain(self, mac: str) -> bool:
        """Whether `mac`'s firmware refused iPXE (Secure Boot): it gets the signed chain next."""
        ...

    def knows(self, mac: str) -> bool:
        """Whether `mac` booted through pxetui (the registry has it) or is in the plan.

        HTTP answers a request naming any other MAC without an event about it, so made-up
        MACs create no machine and no token.
        """
        ...


def _not_a_host(address: ipaddress.IPv4Address) -> bool:
    return address.is_unspecified or address.is_multicast or address.is_loopback or address.is_reserved


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The operator's settings the services read (from the command line)."""

    mode: str = "auto"  # as asked; DHCP resolves "auto" to "full" or "proxy" at start
    force: bool = False
    pool: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None = None
    http_port: int = 8080
    menu_timeout: int = 30
    cache_dir: Path = Path("/var/cache/pxetui")
    template_dirs: tuple[Path, ...] = ()
    install: InstallSettings = field(default_factory=InstallSettings)
    # The package proxy (services/proxy/): on, off, or auto (on in full mode, off in proxy mode).
    package_proxy: str = "auto"
    allow_upstream: tuple[str, ...] = ()  # hosts it forwards to besides the profiles' package hosts
    proxy_port: int = 3142
    # DHCP options 3 and 6 in full mode: without a router no default route is handed out.
    router: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    secure_boot: str = "auto"  # SECURE_BOOT_MODES

    def __post_init__(self) -> None:
        self._check_proxy()
        if self.secure_boot not in SECURE_BOOT_MODES:
            raise UsageError(
                f"--secure-boot must be one of {', '.join(SECURE_BOOT_MODES)}, not {self.secure_boot!r}"
            )
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 1 <= self.http_port <= 65535:
            raise UsageError(f"--http-port {self.http_port} is not a port: give 1-65535")
        if self.menu_timeout < 0:
            raise UsageError(f"--menu-timeout {self.menu_timeout}: give 0 or more seconds")
        if self.pool is not None and int(self.pool[0]) > int(self.pool[1]):
            raise UsageError(f"--range {self.pool[0]}-{self.pool[1]}: the first address is after the last")
        for address in (self.router, *self.dns):
            if address is not None and _not_a_host(address):
                raise UsageError(f"{address} cannot be a router or DNS server: give a host address")

    def _check_proxy(self) -> None:
        if self.package_proxy not in PACKAGE_PROXY_MODES:
            raise UsageError(
                f"--package-proxy must be one of {', '.join(PACKAGE_PROXY_MODES)}, not {self.package_proxy!r}"
            )
        if not 1 <= self.proxy_port <= 65535:
            raise UsageError(f"proxy port {self.proxy_port} is not a port: give 1-65535")
        for host in self.allow_upstream:
            if not _HOST.match(host):
                raise UsageError(
                    f"--allow-upstream {host!r}: give a host name like mirror.example.org"
                    " (no scheme, port or path)"
                )


@dataclass(frozen=True, slots=True)
class ServiceContext:
    interface: InterfaceInfo
    address: ipaddress.IPv4Interface
    boot_files: BootFiles
    state: StateDir
    profiles: Mapping[str, Profile]
    booter: Booter
    emit: Emit
    settings: ServiceSettings = field(default_factory=ServiceSettings)

    def __post_init__(self) -> None:
        if not self.interface.name:
            raise UsageError("no interface to serve: name one, e.g. `sudo pxetui eth1`")
        router = self.settings.router
        if router is not None:
            network = self.address.network
            if router not in network or router in (network.network_address, network.broadcast_address):
                raise UsageError(f"--router {router} is not a host address of the served subnet {network}")
            if router == self.address.ip:
                raise UsageError(
                    f"--router {router} is this machine's own address: pxetui does not route;"
                    " leave --router out, or name the lab's real gateway"
                )
        if self.settings.http_port == self.settings.proxy_port:
            port = self.settings.http_port
            raise UsageError(f"--http-port {port} is the package proxy's port: choose another")

    @property
    def http_base(self) -> str:
        """`http://ADDR:PORT`, what iPXE and installers use to reach the HTTP service."""
        return f"http://{self.address.ip}:{self.settings.http_port}"
