"""What the screens need from the app that shows them, typed here so that no screen imports it.

The app imports the screens to push them; a screen importing the app back would make the two
one import cycle. Each screen gets its objects and callbacks in its constructor instead, and
the app, which satisfies these types, passes itself or its attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from pxetui.host.netif import InterfaceInfo
from pxetui.tui.downloads import Download

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

    def start_fetch(self, profile: str) -> str | None:
        """Fetch `profile` in the background (fetch on first use); None, or why it cannot start."""
        ...

    def open_profiles(self) -> None:
        """Show the profiles screen."""
        ...


class ProfilesHost(Protocol):
    """The app as the profiles screen sees it: the cache work it runs off the UI's loop.

    Each `start_*` returns None once the work runs in a worker thread (its outcome arrives
    later as a notification and a redraw), or the sentence that says why it cannot start.
    """

    @property
    def downloads(self) -> Mapping[str, Download]:
        """This session's fetches by profile, running and finished."""
        ...

    @property
    def upstream(self) -> Mapping[str, str]:
        """The newest version each release line offers, as the last upstream check found."""
        ...

    def start_fetch(self, profile: str) -> str | None: ...

    def start_verify(self, profile: str) -> str | None: ...

    def start_check(self) -> str | None: ...

    def start_import(self, path: str, name: str | None, force: bool = False) -> str | None:
        """Import an ISO; `force`: replace the imported profile of the same name."""
        ...

    def remove_files(self, profile: str) -> str | None:
        """Delete the profile's cached files now (quick: unlinks); None, or why not."""
        ...
