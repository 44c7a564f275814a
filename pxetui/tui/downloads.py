"""The cache work the TUI starts (fetch, verify, import an ISO, ask upstream), off the UI's loop.

A fetch reads and hashes gigabytes; on the app's loop it would freeze the screen, on the
services' loop it would hold up the PCs' packets. Each job runs in a worker thread (a fetch on
an event loop of its own, through `commands.fetch.fetch_all`, the code `pxetui fetch` runs) and
reports by typed messages posted to the app, which folds them into `Downloads` and redraws.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from pxetui.boot.profiles import Profile
from pxetui.boot.upstream.mirror import Mirrors
from pxetui.commands.fetch import Outcome, Progress, fetch_all, newest_releases
from pxetui.errors import PxetuiError

PROGRESS_SECONDS = 0.2  # at most five progress messages a second per download
STOP_POLL_SECONDS = 0.2  # how soon a download notices that pxetui quits
Post = Callable[[Message], object]


@dataclass(slots=True)
class Download:
    """One profile's fetch as the screens show it."""

    profile: str
    label: str = ""  # the file on its way: "ubuntu-24.04 iso"
    done: int = 0
    total: int | None = None
    note: str = ""  # "verified sha256", "resuming at 12.0 MB", "failed"
    finished: bool = False
    error: str | None = None
    version: str = ""

    @property
    def percent(self) -> float | None:
        return 100.0 * self.done / self.total if self.total else None


class DownloadProgress(Message):
    """A download moved: its file, bytes so far and total (None: unknown)."""

    def __init__(self, profile: str, label: str, done: int, total: int | None, note: str = "") -> None:
        super().__init__()
        self.profile, self.label, self.done, self.total, self.note = profile, label, done, total, note


class DownloadFinished(Message):
    """A fetch ended: `error` None when every file is verified."""

    def __init__(self, profile: str, error: str | None, version: str = "") -> None:
        super().__init__()
        self.profile, self.error, self.version = profile, error, version


class JobDone(Message):
    """A verify, remove, import or upstream check ended: what to tell the operator."""

    def __init__(
        self,
        title: str,
        message: str,
        ok: bool,
        upstream: dict[str, str] | None = None,
        imported: Path | None = None,
    ) -> None:
        super().__init__()
        self.title, self.message, self.ok = title, message, ok
        self.upstream = upstream  # {name: newest version} from an upstream check
        self.imported = imported  # the profile file an ISO import wrote


class MessageBar(Progress):
    """The fetch's progress bar for one profile, as messages (thread-safe `post`)."""

    def __init__(self, profile: str, post: Post, clock: Callable[[], float] = time.monotonic) -> None:
        self.profile, self.post, self.clock = profile, post, clock
        self.label = profile
        self.total: int | None = None
        self.done = 0
        self._sent_at = 0.0

    def start(self, label: str, total: int | None, offset: int) -> None:
        self.label, self.total, self.done = label, total, offset
        note = f"resuming at {offset / 1e6:.1f} MB" if offset else ""
        self._send(note)

    def update(self, done: int) -> None:
        self.done = done
        if self.clock() - self._sent_at >= PROGRESS_SECONDS:
            self._send()

    def finish(self, note: str) -> None:
        self._send(note)

    def _send(self, note: str = "") -> None:
        self._sent_at = self.clock()
        self.post(DownloadProgress(self.profile, self.label, self.done, self.total, note))


class MessageBoard:
    """The ProgressBoard `fetch_all` asks for one bar per profile."""

    def __init__(self, post: Post) -> None:
        self.post = post

    def bar(self, label: str) -> Progress:
        return MessageBar(label, self.post)


def fetch_in_thread(
    profile: Profile, cache_dir: Path, post: Post, stop: threading.Event, mirrors: Mirrors | None = None
) -> None:
    """Run in a worker thread: fetch `profile` on a loop of its own, then post DownloadFinished.

    `stop` set (pxetui quits) cancels the download: the .part stays for the next fetch to resume,
    and quitting never waits for gigabytes to arrive.
    """

    async def until_done_or_stopped() -> list[Outcome]:
        task = asyncio.ensure_future(fetch_all([profile], cache_dir, MessageBoard(post), mirrors=mirrors))
        while not task.done():
            if stop.is_set():
                task.cancel()
            await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)
        return task.result()

    try:
        outcome = asyncio.run(until_done_or_stopped())[0]
    except asyncio.CancelledError:
        post(DownloadFinished(profile.name, "stopped: pxetui quit; the next fetch resumes the partial file"))
        return
    except (PxetuiError, OSError) as exc:  # the cache unwritable, ...: said, never a traceback
        post(DownloadFinished(profile.name, str(exc)))
        return
    error = str(outcome.error) if outcome.error is not None else None
    post(DownloadFinished(profile.name, error, outcome.version))


def check_in_thread(
    profiles: list[Profile], cache_dir: Path, post: Post, mirrors: Mirrors | None = None
) -> None:
    """Run in a worker thread: ask upstream what each release line offers now."""
    try:
        found = asyncio.run(newest_releases(profiles, cache_dir, mirrors))
    except (PxetuiError, OSError) as exc:
        post(JobDone("Upstream", f"cannot ask upstream: {exc}", ok=False))
        return
    newest = {name: v for name, v in found.items() if isinstance(v, str)}
    failed = {name: v for name, v in found.items() if not isinstance(v, str)}
    message = f"{len(newest)} release line(s) checked"
    if failed:
        first = next(iter(failed.values()))
        message += f"; {len(failed)} unknown ({first})"
    post(JobDone("Upstream", message, ok=not failed, upstream=newest))
