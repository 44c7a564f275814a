"""Bulk response bodies sent by worker threads, each with its own epoll, as nginx's workers do.

Why not asyncio's `loop.sendfile`: it runs every os.sendfile on the services' thread, so all
the kernel's copying for every PC happens on one core, and it re-registers the socket with the
selector on each wake-up (two epoll_ctl calls per socket-buffer fill). `bench/http`
(8 clients x 1 GiB, 2 cores): loop.sendfile 0.91x nginx, these workers 1.02x. os.sendfile and
epoll.poll release the GIL, so the copying spreads over the cores and the services' thread only
hands a job over and is told when it is done.

A job owns duplicates of the socket and file descriptors. So the loop may close the connection
or the file at any moment (a cancelled handler, a shutdown) without a worker ever writing to a
descriptor number that meanwhile names something else. Every epoll change and every close of
a job's descriptors happens on its worker's own thread; the loop only posts messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

# One wake-up sends at most this much to one client before the others get their turn
# (nginx's sendfile_max_chunk is 2 MiB); the socket stays registered (level-triggered).
CHUNK = 4 * 1024 * 1024
MAX_WORKERS = 4
STOP_TIMEOUT = 5.0


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


class FileEndedEarly(OSError):
    """The file is shorter than the response announced (it shrank while being served)."""


class SendfileUnavailable(OSError):
    """The job could not be handed over (no descriptors left to duplicate); nothing was sent."""


@dataclass(slots=True, eq=False)
class _Job:
    sock_fd: int
    file_fd: int
    offset: int
    remaining: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]
    sent: int = 0


def _settle(future: asyncio.Future[int], sent: int, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is None:
        future.set_result(sent)
    else:
        future.set_exception(error)


class _Worker:
    def __init__(self, name: str, chunk: int) -> None:
        self.load = 0  # jobs handed to this worker and not yet finished; the loop's thread only
        self._chunk = chunk
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._inbox: deque[tuple[str, _Job | None]] = deque()
        self._jobs: dict[int, _Job] = {}  # by sock_fd; the worker's thread only
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the loop's side ---------------------------------------------------------------------

    def post(self, what: str, job: _Job | None = None) -> None:
        if self._stopped:  # the thread has finished (or is finishing) every job itself
            return
        self._inbox.append((what, job))
        os.eventfd_write(self._wake, 1)

    def stop(self) -> None:
        if self._stopped:
            return
        self.post("stop")
        self._stopped = True
        self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive():
            # Closed here, after the last post, so no post can reach a reused number.
            os.close(self._wake)

    # -- the worker's thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._serve_once():
                pass
        finally:
            pending = [job for what, job in self._inbox if what == "add" and job is not None]
            for job in [*self._jobs.values(), *pending]:
                self._finish(job, ConnectionResetError("pxetui is stopping"))
            self._epoll.close()

    def _serve_once(self) -> bool:
        for fd, mask in self._epoll.poll():
            if fd == self._wake:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)
                if not self._read_inbox():
                    return False
                continue
            job = self._jobs.get(fd)
            if job is not None:
                self._pump(job, broken=bool(mask & (select.EPOLLERR | select.EPOLLHUP)))
        return True

    def _read_inbox(self) -> bool:
        while self._inbox:
            what, job = self._inbox.popleft()
            if what == "stop":
                return False
            assert job is not None
            if what == "add":
                self._jobs[job.sock_fd] = job
                try:
                    self._epoll.register(job.sock_fd, select.EPOLLOUT)
                except OSError as exc:
                    self._finish(job, exc)
            elif self._jobs.get(job.sock_fd) is job:  # "cancel" of a job still running
                self._finish(job, None)
        return True

    def _pump(self, job: _Job, *, broken: bool) -> None:
        budget = self._chunk
        while budget > 0:
            try:
                sent = os.sendfile(job.sock_fd, job.file_fd, job.offset, min(job.remaining, budget))
            except (BlockingIOError, InterruptedError):
                if broken:  # level-triggered: an error that sendfile does not report would spin
                    self._finish(job, ConnectionResetError("connection failed"))
                return
            except OSError as exc:
                self._finish(job, exc)
                return
            if sent == 0:
                self._finish(job, FileEndedEarly(f"file ended {job.remaining} bytes early"))
                return
            job.offset += sent
            job.remaining -= sent
            job.sent += sent
            budget -= sent
            if job.remaining == 0:
                self._finish(job, None)
                return

    def _finish(self, job: _Job, error: BaseException | None) -> None:
        self._jobs.pop(job.sock_fd, None)
        with contextlib.suppress(OSError):
            self._epoll.unregister(job.sock_fd)
        os.close(job.sock_fd)
        os.close(job.file_fd)
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits
            job.loop.call_soon_threadsafe(_settle, job.future, job.sent, error)


def _dup(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:  # EMFILE / ENFILE: the caller sends this one itself
        raise SendfileUnavailable(exc.errno, f"cannot hand the transfer to a worker: {exc.strerror}") from exc


class SendfilePool:
    """Worker threads that send file ranges to sockets; `send` is awaited on the event loop."""

    def __init__(self, workers: int | None = None, *, chunk: int = CHUNK) -> None:
        self.size = workers or default_workers()
        self._chunk = chunk
        self._workers: list[_Worker] = []
        self.jobs_total = 0
        self.bytes_total = 0
        self.unavailable_total = 0  # jobs refused for want of descriptors (sent by the caller)

    def start(self) -> None:
        if not self._workers:
            self._workers = [_Worker(f"pxetui-sendfile-{i}", self._chunk) for i in range(self.size)]

    def close(self) -> None:
        """Stop the workers; a transfer still running ends with ConnectionResetError."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()

    @property
    def running(self) -> bool:
        return bool(self._workers)

    def loads(self) -> list[int]:
        """Transfers each worker is carrying now."""
        return [worker.load for worker in self._workers]

    async def send(self, sock: Any, file_fd: int, offset: int, count: int) -> int:
        """Send `count` bytes of the file from `offset` to the socket; the bytes sent.

        Raises what sendfile raised (ConnectionError when the client went away),
        FileEndedEarly when the file is shorter than `count`, and SendfileUnavailable, before
        anything is sent, when no descriptor is left for the job. Cancelling stops it at once.
        """
        if not self._workers:
            raise RuntimeError("the sendfile pool is not running")
        if count <= 0:
            return 0
        if os.get_blocking(sock.fileno()):
            # A blocking socket would hold a worker, and every transfer it carries, in sendfile.
            raise ValueError("the sendfile pool needs a non-blocking socket")
        loop = asyncio.get_running_loop()
        worker = min(self._workers, key=lambda w: w.load)
        try:
            sock_copy = _dup(sock.fileno())
            try:
                file_copy = _dup(file_fd)
            except SendfileUnavailable:
                os.close(sock_copy)
                raise
        except SendfileUnavailable:
            self.unavailable_total += 1
            raise
        job = _Job(
            sock_fd=sock_copy,
            file_fd=file_copy,
            offset=offset,
            remaining=count,
            loop=loop,
            future=loop.create_future(),
        )
        worker.load += 1
        self.jobs_total += 1
        worker.post("add", job)
        try:
            return await job.future
        except asyncio.CancelledError:
            worker.post("cancel", job)
            raise
        finally:
            worker.load -= 1
            self.bytes_total += job.sent
