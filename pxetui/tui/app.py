"""The pxetui Textual application: interface picker, then the live machine table.

The app is a view: it subscribes to `session.bus`, folds events into PendingUpdates and
redraws a few times a second; every operator action is a Session method call. The screens
get what they show, and callbacks for what they ask of the app, in their constructors: the app
imports them, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from pxetui.errors import PxetuiError
from pxetui.host import netif
from pxetui.model.events import Event
from pxetui.session import Session
from pxetui.session_loop import SessionLoop
from pxetui.tui.contracts import Clock, InterfaceLister
from pxetui.tui.screens.confirm import ConfirmScreen
from pxetui.tui.screens.main import MainScreen
from pxetui.tui.screens.picker import PickerScreen
from pxetui.tui.updates import PendingUpdates

REFRESH_SECONDS = 0.25  # at most 4 table refreshes a second, whatever the event rate
ELAPSED_TICK_SECONDS = 1.0
T = TypeVar("T")


class PxetuiApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "pxetui"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        session: Session,
        *,
        start_session: bool = True,
        list_interfaces: InterfaceLister = netif.list_interfaces,
        clock: Clock = time.time,
        refresh_seconds: float = REFRESH_SECONDS,
        session_loop: SessionLoop | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        # The services' own loop thread (pxetui itself); None runs them on the app's loop (tests).
        self.session_loop = session_loop
        self.start_session = start_session
        self.list_interfaces = list_interfaces
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.pending = PendingUpdates()
        self.started = not start_session  # a caller that does not want us to start has started it
        self.starting = False
        self.start_error: PxetuiError | None = None
        self.refreshes = 0  # table refreshes done; the coalescing tests count them
        self._unsubscribe: Callable[[], None] | None = None
        self._last_tick = 0.0
        self._stopping = False

    # -- life cycle ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._unsubscribe = self.session.bus.subscribe(self.on_session_event)
        self.set_interval(self.refresh_seconds, self.flush_updates, name="coalesced refresh")
        if self.start_session:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.request_shutdown)
        if self.session.config.interface:
            self.push_screen(self.main_screen())
            if self.start_session:
                # After the first refresh: the main screen is composed before any outcome lands.
                self.call_after_refresh(
                    self.run_worker, self.start_services(from_picker=False), name="start", exclusive=True
                )
        else:
            self.push_screen(PickerScreen(self.list_interfaces, self.choose_interface))

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def main_screen(self) -> MainScreen:
        return MainScreen(self.session, self.pending, self, self.clock)

    def choose_interface(self, name: str) -> None:
        """The operator picked `name`: open the main screen and start the services on it."""
        if self.starting:
            return
        self.session.config.interface = name
        self.push_screen(self.main_screen())
        self.run_worker(self.start_services(from_picker=True), name="start", exclusive=True)

    async def on_services(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a session life-cycle coroutine where the services live."""
        if self.session_loop is None:
            return await coro
        return await self.session_loop.run(coro)

    async def start_services(self, *, from_picker: bool) -> None:
        self.starting = True
        try:
            await self.on_services(self.session.start())
        except PxetuiError as exc:
            await self.on_services(self.session.stop())
            if from_picker:
                self.pop_screen()
                self.notify(str(exc), title="Cannot start", severity="error", timeout=15)
            else:
                self.start_error = exc
                self.exit(return_code=exc.exit_code)
            return
        finally:
            self.starting = False
        self.started = True
        if self.session_loop is not None:
            # A full garbage collection holds the GIL, and so the services' thread, while it
            # scans every object: 50-250 ms with textual, rich and aiohttp loaded. What exists
            # now lives as long as the process; frozen, later collections scan only the rest.
            gc.collect()
            gc.freeze()

    def transfers_running(self) -> int:
        return sum(
            1
            for m in self.session.registry.snapshot()
            if m.transfer is not None and not m.transfer.finished and not m.stage.terminal
        )

    async def action_quit(self) -> None:
        running = self.transfers_running()
        if running:
            question = (
                f"{running} transfer{'s' if running != 1 else ''} still running."
                " Quit anyway? Their PCs will fail to boot."
            )
            self.push_screen(ConfirmScreen(question, yes="Quit", no="Stay"), self._quit_confirmed)
            return
        await self.shutdown()

    def action_help_quit(self) -> None:
        """Ctrl+C (outside a text field, where it copies) quits like q: operators expect it."""
        self.run_worker(self.action_quit(), name="quit")

    async def _quit_confirmed(self, yes: bool | None) -> None:
        if yes:
            await self.shutdown()

    def request_shutdown(self) -> None:
        self.run_worker(self.shutdown(), name="shutdown")

    async def shutdown(self) -> None:
        """Stop the services (removing any temporary address), save the state, exit."""
        if self._stopping:
            return
        self._stopping = True
        if self.started or self.starting:
            await self.on_services(self.session.stop())
        else:
            self.session.flush()
        self.exit(0)

    # -- events -> coalesced refresh -----------------------------------------------------------

    def on_session_event(self, event: Event) -> None:
        """Called for every event, on the session loop's thread: only records; the timer redraws."""
        self.pending.add(event)

    def flush_updates(self) -> None:
        now = self.clock()
        tick = now - self._last_tick >= ELAPSED_TICK_SECONDS
        if tick:
            self._last_tick = now
        macs, events, header = self.pending.take()
        if macs is not None and tick:
            macs |= {m.mac for m in self.session.registry.snapshot() if not m.stage.terminal}
        if macs is not None and not macs and not events and not header and not self._stale_rows():
            return
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen) and screen.ready:
                screen.apply_updates(macs, events, header or tick)
                self.refreshes += 1

    def _stale_rows(self) -> int:
        return sum(s.stale_rows for s in self.screen_stack if isinstance(s, MainScreen) and s.ready)

    # -- command palette -----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, MainScreen):
            for binding in screen.palette_bindings():
                yield SystemCommand(
                    binding.description,
                    f"{binding.tooltip} (key {binding.key_display or binding.key})",
                    _action_caller(screen, binding.action),
                )


def _action_caller(screen: Screen[None], action: str) -> Callable[[], object]:
    async def call() -> None:
        await screen.run_action(action)

    return call


def default_report_dir(session: Session) -> Path:
    return session.state.path
