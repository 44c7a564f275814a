"""What the screens need from the app that shows them, typed here so that no screen imports it.

The app imports the screens to push them; a screen importing the app back would make the two
one import cycle. Each screen gets its objects and callbacks in its constructor instead, and
the app, which satisfies these types, passes itself or its attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pxetui.host.netif import InterfaceInfo

Clock = Callable[[], float]
InterfaceLister = Callable[[], list[InterfaceInfo]]
ChooseInterface = Callable[[str], None]


class MainHost(Protocol):
    """The app as the main screen sees it."""

    @property
    def starting(self) -> bool:
        """The services are being started: the header says so rather than "not running"."""
        ...

    def flush_updates(self) -> None:
        """Redraw now: an operator's action shows at once, not at the next coalesced refresh."""
        ...
