"""The state directory: JSON files written atomically so that kill -9 loses nothing.

Every write goes to a temporary file in the same directory, is fsynced, then renamed over
the old file; the directory is fsynced too. A crash at any point leaves either the old or the
new file whole. Leftover temporary files from such a crash are removed on the next start.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pxetui.errors import UsageError

_TMP_PREFIX = ".tmp-"


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pxetui")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pxetui"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateDir:
    """One directory holding the session's JSON documents (plan, machines, leases)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def open(self, owner: str | None = None) -> None:
        """Create the directory; with `owner` (the interface served), hold its lock first."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the state directory {self.path}: {exc.strerror};"
                " choose another with --state DIR"
            ) from exc
        if not os.access(self.path, os.W_OK):
            raise UsageError(
                f"the state directory {self.path} is not writable; choose another with --state DIR"
            )
        if owner is not None:
            self.lock(owner)  # before the clean-up: another pxetui's half-written file is not ours
        for leftover in self.path.glob(_TMP_PREFIX + "*"):
            leftover.unlink(missing_ok=True)

    def file(self, name: str) -> Path:
        return self.path / f"{name}.json"

    def lock(self, interface: str) -> None:
        """Hold the directory for this process: a second pxetui on it is refused, naming this one.

        flock(2) on `lock`: released by the kernel when the process ends, however it ends, so a
        pxetui killed with -9 never leaves a stale lock behind.
        """
        if self._lock_fd is not None:
            return
        path = self.path / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, pid = _lock_holder(fd)
            os.close(fd)
            if pid == os.getpid():
                return  # this process holds it already (the Session opened it once before)
            raise UsageError(
                f"another pxetui ({holder}) uses the state directory {self.path}: stop it first,"
                " or give this one its own directory with --state DIR"
            ) from None
        os.ftruncate(fd, 0)
        note = {"pid": os.getpid(), "interface": interface, "started": round(time.time(), 3)}
        os.write(fd, json.dumps(note).encode() + b"\n")
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def save(self, name: str, document: Any) -> None:
        # No indent: json's C encoder handles only compact output, and the Python one took
        # 30 ms for 300 machines. `python3 -m json.tool FILE` shows a file readably.
        data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        atomic_write_bytes(self.file(name), data)

    def load(self, name: str) -> Any | None:
        """The saved document, or None when there is none yet.

        A file that is not valid JSON was not written by us (our writes are atomic): it is
        kept aside as NAME.json.corrupt-TS for the operator instead of being overwritten.
        """
        path = self.file(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._damaged(name, f"is not valid JSON ({exc})") from exc

    def load_checked(self, name: str, apply: Callable[[Any], None]) -> None:
        """Hand the saved document to `apply`; one of the wrong shape is damaged like bad JSON.

        Valid JSON that is not what pxetui writes (a list, a missing key, a string where a
        table belongs) is moved aside with the same message, never half-trusted.
        """
        document = self.load(name)
        if document is None:
            return
        try:
            apply(document)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise self._damaged(name, f"is not a pxetui {name} file ({type(exc).__name__}: {exc})") from exc

    def _damaged(self, name: str, what: str) -> UsageError:
        """Keep a damaged file aside as NAME.json.corrupt-TS for the operator; say so."""
        path = self.file(name)
        aside = path.with_name(f"{path.name}.corrupt-{int(os.path.getmtime(path))}")
        os.replace(path, aside)
        return UsageError(
            f"{path} {what}; it was moved to {aside}. Start again to"
            " begin with an empty one, or repair it and move it back."
        )


def _lock_holder(fd: int) -> tuple[str, int | None]:
    """(`pid 1234 on eth1, since 08:01:02`, 1234) from what the holder wrote into the lock file."""
    try:
        note = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid = int(note["pid"])
        when = time.strftime("%H:%M:%S", time.localtime(float(note["started"])))
        return f"pid {pid} on {note['interface']}, since {when}", pid
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid is not recorded", None


class StateWriter:
    """Saves documents of a StateDir in order on one thread of its own.

    The event loop takes a snapshot (a document nobody changes afterwards) and goes on: the
    encoding and the two fsyncs of an atomic write, tens of ms, never delay a packet. A failed
    write is reported to `on_error` (on the writer's thread) with the document's name.
    """

    def __init__(self, state: StateDir, on_error: Callable[[str, OSError], None], name: str) -> None:
        self._state = state
        self._on_error = on_error
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)

    def save(self, name: str, document: Any) -> None:
        future = self._pool.submit(self._state.save, name, document)
        future.add_done_callback(lambda done: self._report(name, done))

    def _report(self, name: str, done: concurrent.futures.Future[None]) -> None:
        exc = done.exception()
        if isinstance(exc, OSError):
            self._on_error(name, exc)
        elif exc is not None:
            raise exc

    def close(self) -> None:
        """Wait until every document handed over so far is on disk."""
        self._pool.shutdown(wait=True)
