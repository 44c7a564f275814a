"""The pxetui Textual application: interface picker, then the live machine table.

The app is a view: it subscribes to `session.bus`, folds events into PendingUpdates and
redraws a few times a second; every operator action is a Session method call. The screens
get what they show, and callbacks for what they ask of the app, in their constructors: the app
imports them, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from pxetui.boot import cache
from pxetui.boot.profiles import load_profile
from pxetui.boot.upstream.mirror import Mirrors, parse_mirrors
from pxetui.commands.import_iso import default_profiles_out, import_iso
from pxetui.errors import PxetuiError
from pxetui.host import netif
from pxetui.model.events import Event
from pxetui.session import Session
from pxetui.session_loop import SessionLoop
from pxetui.tui.contracts import Clock, InterfaceLister
from pxetui.tui.downloads import (
    Download,
    DownloadFinished,
    DownloadProgress,
    JobDone,
    check_in_thread,
    fetch_in_thread,
)
from pxetui.tui.screens.confirm import ConfirmScreen
from pxetui.tui.screens.main import MainScreen
from pxetui.tui.screens.picker import PickerScreen
from pxetui.tui.screens.profiles import ProfilesScreen
from pxetui.tui.updates import PendingUpdates

# At most 2 table refreshes a second, whatever the event rate. 4 cost the TUI's thread 40 % more
# GIL time in a room of 100 PCs (bench/tui_gil.py), time the DHCP thread waits for (issue 18);
# progress is drawn once a second anyway (updates.ProgressThrottle), an operator's action at once.
REFRESH_SECONDS = 0.5
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
        mirrors: Mirrors | None = None,
    ) -> None:
        super().__init__()
        # Where the profiles screen's fetches and upstream checks go ($PXETUI_MIRROR by default).
        self.mirrors = mirrors if mirrors is not None else parse_mirrors([])
        self._downloads: dict[str, Download] = {}
        self._stop_downloads = threading.Event()  # set at quit: downloads stop, their .part stays
        self._upstream: dict[str, str] = {}
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

    def downloads_running(self) -> int:
        return sum(1 for d in self._downloads.values() if not d.finished)

    async def action_quit(self) -> None:
        running = self.transfers_running()
        downloads = self.downloads_running()
        if running or downloads:
            question = ""
            if running:
                question = f"{running} transfer{'s' if running != 1 else ''} still running. "
            if downloads:
                question += (
                    f"{downloads} download{'s' if downloads != 1 else ''} still running (resumed next time). "
                )
            question += "Quit anyway?" + (" Their PCs will fail to boot." if running else "")
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
        self._stop_downloads.set()
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
        if not self.is_running:
            return  # shutting down: the screens' widgets are being removed under the timer
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

    # -- the OS library: profiles screen, fetch on first use (off the UI's loop) ---------------

    @property
    def downloads(self) -> dict[str, Download]:
        return self._downloads

    @property
    def upstream(self) -> dict[str, str]:
        return self._upstream

    def open_profiles(self) -> None:
        self.push_screen(ProfilesScreen(self.session, self))

    def _busy(self, name: str) -> str | None:
        running = self._downloads.get(name)
        if running is not None and not running.finished:
            return f"{name} is being fetched now; wait for it to finish"
        return None

    def start_fetch(self, profile: str) -> str | None:
        try:
            chosen = self.session.profile(profile)
        except PxetuiError as exc:
            return str(exc)
        if not chosen.files:
            return f"{profile} boots no files: nothing to fetch"
        if reason := self._busy(profile):
            return reason
        try:
            self.session.fetch_started(profile)  # from now on it may be assigned; its PCs wait
        except PxetuiError as exc:
            return str(exc)
        self._downloads[profile] = Download(profile, label=profile, note="starting")
        work = functools.partial(
            fetch_in_thread,
            chosen,
            self.session.config.cache_dir,
            self._post,
            self._stop_downloads,
            self.mirrors,
        )
        self.run_worker(work, thread=True, name=f"fetch {profile}", group="cache")
        self._refresh_profiles()
        return None

    def start_verify(self, profile: str) -> str | None:
        try:
            chosen = self.session.profile(profile)
        except PxetuiError as exc:
            return str(exc)
        if not chosen.files:
            return f"{profile} boots no files: nothing to verify"
        if reason := self._busy(profile):
            return reason
        cache_dir, post = self.session.config.cache_dir, self._post

        def work() -> None:
            try:
                results = cache.verify_files(chosen, cache_dir)
            except OSError as exc:
                post(JobDone("Verify", f"{profile}: cannot read its files: {exc}", ok=False))
                return
            ok = all(r.ok for r in results)
            verdict = "every file verified" if ok else "NOT servable"
            post(JobDone("Verify", f"{profile}: {verdict}; " + "; ".join(r.message for r in results), ok))

        self.run_worker(work, thread=True, name=f"verify {profile}", group="cache")
        return None

    def remove_files(self, profile: str) -> str | None:
        try:
            chosen = self.session.profile(profile)
        except PxetuiError as exc:
            return str(exc)
        if reason := self._busy(profile):
            return reason
        try:
            freed = cache.remove_files(chosen, self.session.config.cache_dir)
        except OSError as exc:
            return f"cannot remove the files of {profile}: {exc}"
        self._downloads.pop(profile, None)
        self.notify(f"{profile}: {freed / 1e6:.1f} MB deleted from the cache", title="Remove")
        self._refresh_profiles()
        return None

    def start_check(self) -> str | None:
        tracked = [p for p in self.session.profiles.values() if p.release is not None]
        if not tracked:
            return "no profile follows a release line: nothing to ask upstream"
        work = functools.partial(
            check_in_thread, tracked, self.session.config.cache_dir, self._post, self.mirrors
        )
        self.run_worker(work, thread=True, name="upstream check", group="cache")
        return None

    def start_import(self, path: str, name: str | None, force: bool = False) -> str | None:
        iso = Path(path).expanduser()
        if not iso.is_file():
            return f"{iso}: no such file"
        cache_dir, post = self.session.config.cache_dir, self._post

        def work() -> None:
            try:
                result = import_iso(iso, cache_dir, default_profiles_out(cache_dir), name, force)
            except (PxetuiError, OSError) as exc:
                post(JobDone("Import ISO", str(exc), ok=False))
                return
            message = (
                f"{result.name}: {result.family} from {iso.name}; its profile is {result.profile_file}"
                " (read again at every start)"
            )
            post(JobDone("Import ISO", message, ok=True, imported=result.profile_file))

        self.run_worker(work, thread=True, name=f"import {iso.name}", group="cache")
        return None

    def _post(self, message: Message) -> None:
        """What the worker threads report through (`post_message` is thread-safe)."""
        self.post_message(message)

    def on_download_progress(self, message: DownloadProgress) -> None:
        download = self._downloads.setdefault(message.profile, Download(message.profile))
        download.label, download.done, download.total = message.label, message.done, message.total
        if message.note:
            download.note = message.note
        self._refresh_profiles()

    def on_download_finished(self, message: DownloadFinished) -> None:
        download = self._downloads.setdefault(message.profile, Download(message.profile))
        download.finished, download.error, download.version = True, message.error, message.version
        try:
            self.session.fetch_finished(message.profile, message.error)
        except PxetuiError as exc:
            self.notify(str(exc), title="Fetch", severity="error", timeout=10)
        if message.error is None:
            got = f" {message.version}" if message.version else ""
            download.note = "verified"
            self.notify(f"{message.profile}{got}: every file verified", title="Fetch")
        else:
            self.notify(message.error, title=f"Fetch {message.profile} failed", severity="error", timeout=15)
        self._refresh_profiles()
        self.flush_updates()

    def on_job_done(self, message: JobDone) -> None:
        if message.upstream is not None:
            self._upstream.update(message.upstream)
        if message.imported is not None:
            try:
                self.session.add_profile(load_profile(message.imported))
            except PxetuiError as exc:
                self.notify(str(exc), title=message.title, severity="error", timeout=15)
                return
        if message.ok:
            self.notify(message.message, title=message.title, timeout=10)
        else:
            self.notify(message.message, title=message.title, severity="error", timeout=15)
        self._refresh_profiles()

    def _refresh_profiles(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ProfilesScreen):
                screen.refresh_profiles()

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
