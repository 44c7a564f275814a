"""Network services (DHCP, TFTP, HTTP, IPv6 router adverts, the package proxy): one folder each.

A service is built from a frozen ServiceContext (services/context.py) and reports only
through typed events (model/events.py); it never sees the Session. The import contract in
pyproject.toml keeps it so. See docs/architecture.md.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pxetui.boot.unattended import Renderer
from pxetui.model.tokens import Tokens
from pxetui.services.context import ServiceContext
from pxetui.services.dhcp.server import DhcpService
from pxetui.services.http.server import HttpService
from pxetui.services.proxy.server import ProxyService
from pxetui.services.ra.server import RouterAdvertService
from pxetui.services.tftp.server import TftpService


class Service(Protocol):
    name: str

    async def start(self) -> None:
        """Bind and begin serving; raise PxetuiError (with the fix in it) if that fails."""

    async def stop(self) -> None:
        """Stop serving and release every socket, task and file."""

    def describe(self) -> dict[str, object]:
        """JSON-safe facts for service.ready: port, state, ..."""


@runtime_checkable
class AddressAware(Protocol):
    """A service that must stop pointing PCs at the served address while it is gone."""

    def address_present(self, present: bool) -> None:
        """Called by the Session when the served address leaves (False) or returns (True)."""


def build_services(context: ServiceContext) -> list[Service]:
    """The services a session runs, in start order. Each is checked as it is built."""
    settings = context.settings
    dhcp = DhcpService(context)
    # Built first, started last: `auto` asks DHCP's resolved mode when it starts.
    proxy = ProxyService(context, dhcp_mode=lambda: dhcp.mode)
    # Kernel command lines and tokens, one of each for iPXE's scripts (HTTP) and GRUB's (TFTP).
    unattended = Renderer(
        template_dirs=list(settings.template_dirs),
        settings=settings.install,
        proxy=lambda: proxy.url,  # asked at each render: "" while the proxy does not run
    )
    tokens = Tokens(context.state, known=context.booter.knows, background=True)  # saves off the loop
    return [
        TftpService(context, unattended=unattended, tokens=tokens),
        HttpService(context, unattended=unattended, tokens=tokens),
        # Before DHCP: its solicitation at start finds any IPv6 router before a PC asks.
        RouterAdvertService(context),
        # DHCP after TFTP/HTTP: it sends PCs to them, so those must already listen when it answers.
        dhcp,
        # The proxy after DHCP: installers ask for it minutes after their first DHCP answer.
        proxy,
    ]
