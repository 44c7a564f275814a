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
Emit = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class BootPlan:
    """What the operator decided for one MAC, as a service needs it."""

    profile: Profile | None = None  # the assigned profile (None: none, or not a loaded profile)
    boot_local: bool = False  # the next boot goes to the local disk
    hostname: str | None = None  # the planned hostname, if the plan names one


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

    def knows(self, mac: str) -> bool:
        """Whether `mac` booted through pxetui (the registry has it) or is in the plan.

        HTTP answers a request naming any other MAC without an event about it, so made-up
        MACs create no machine and no token.
        """
        ...


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

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 1 <= self.http_port <= 65535:
            raise UsageError(f"--http-port {self.http_port} is not a port: give 1-65535")
        if self.menu_timeout < 0:
            raise UsageError(f"--menu-timeout {self.menu_timeout}: give 0 or more seconds")
        if self.pool is not None and int(self.pool[0]) > int(self.pool[1]):
            raise UsageError(f"--range {self.pool[0]}-{self.pool[1]}: the first address is after the last")


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

    @property
    def http_base(self) -> str:
        """`http://ADDR:PORT`, what iPXE and installers use to reach the HTTP service."""
        return f"http://{self.address.ip}:{self.settings.http_port}"
