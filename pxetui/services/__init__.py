"""Network services (DHCP, TFTP, HTTP). Each is an object with async start()/stop().

Services get what they need from the Session at construction (interface, address, registry
lookups, an `emit` callable) and report only through events. They never import textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pxetui.boot.unattended import Renderer
from pxetui.services.dhcp.server import DhcpService
from pxetui.services.http.server import HttpService
from pxetui.services.ra.server import RouterAdvertService
from pxetui.services.tftp.server import TftpService

if TYPE_CHECKING:
    from pxetui.session import Session


class Service(Protocol):
    name: str

    async def start(self) -> None:
        """Bind and begin serving; raise PxetuiError (with the fix in it) if that fails."""

    async def stop(self) -> None:
        """Stop serving and release every socket, task and file."""

    def describe(self) -> dict[str, object]:
        """JSON-safe facts for service.ready: port, state, ..."""


def build_services(session: Session) -> list[Service]:
    """The services a session runs, in start order. Each boot-chain service adds itself here."""
    cfg = session.config
    templates = tuple(cfg.template_dirs)
    return [
        TftpService(session),
        HttpService(
            session,
            template_dirs=templates,
            unattended=Renderer(template_dirs=list(templates), settings=cfg.install),
        ),
        # Before DHCP: its solicitation at start finds any IPv6 router before a PC asks.
        RouterAdvertService(session),
        # DHCP last: it sends PCs to TFTP/HTTP, so those must already listen when it answers.
        DhcpService(session),
    ]
