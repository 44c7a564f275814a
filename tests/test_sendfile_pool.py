"""The sendfile workers on real sockets (AF_UNIX socket pairs: no network is involved)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pxetui.services.http.sendfile_pool import FileEndedEarly, SendfilePool, SendfileUnavailable

MIB = 1024 * 1024


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(3 * MIB + 11)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def pool() -> Iterator[SendfilePool]:
    pool = SendfilePool(2, chunk=256 * 1024)
    pool.start()
    yield pool
    pool.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


class Reader:
    """The client end of a socket pair, read on its own thread (optionally only after `go`)."""

    def __init__(self, limit: int | None = None) -> None:
        self.server, self.client = socket.socketpair()
        self.server.setblocking(False)
        self.received = bytearray()
        self.limit = limit  # stop reading (and close) after this many bytes
        self.go = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        self.go.wait()
        while self.limit is None or len(self.received) < self.limit:
            chunk = self.client.recv(1 << 16)
            if not chunk:
                break
            self.received += chunk
        self.client.close()
        self.done.set()

    def close(self) -> None:
        self.go.set()
        self.server.close()
        self.done.wait(5)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_sends_exact_ranges_concurrently_spread_over_workers(
    pool: SendfilePool, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    # Three bodies larger than a socket buffer (held until read) and two that fit at once.
    ranges = [(0, len(data)), (1000, 2 * MIB), (MIB + 3, 2 * MIB), (len(data) - 5, 5), (17, 1)]
    readers = [Reader() for _ in ranges]
    loads: list[list[int]] = []

    async def main() -> list[int]:
        with open(path, "rb") as fh:
            sends = [
                asyncio.ensure_future(pool.send(r.server, fh.fileno(), offset, count))
                for r, (offset, count) in zip(readers, ranges, strict=True)
            ]
            await asyncio.sleep(0.1)  # nobody reads yet: the big three are held by the workers
            loads.append(pool.loads())
            for r in readers:
                r.go.set()
            return list(await asyncio.gather(*sends))

    try:
        sent = run(main())
    finally:
        for r in readers:
            r.close()
    assert sorted(loads[0]) == [1, 2]  # the least loaded worker takes the next job
    assert sent == [count for _, count in ranges]
    for r, (offset, count) in zip(readers, ranges, strict=True):
        assert bytes(r.received) == data[offset : offset + count]
    assert pool.bytes_total == sum(sent) and pool.jobs_total == len(ranges)


def test_one_worker_serves_side_by_side_so_a_small_file_is_not_stuck_behind_a_big_one(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.img"
    with open(big, "wb") as fh:
        fh.truncate(512 * MIB)  # sparse
    pool = SendfilePool(1, chunk=64 * 1024)
    pool.start()
    fast, small = Reader(), Reader()
    fast.go.set()
    small.go.set()
    finished: list[str] = []

    async def send(name: str, reader: Reader, count: int) -> None:
        with open(big, "rb") as fh:
            await pool.send(reader.server, fh.fileno(), 0, count)
        finished.append(name)

    async def main() -> None:
        first = asyncio.ensure_future(send("big", fast, 512 * MIB))
        await asyncio.sleep(0.05)
        await asyncio.gather(first, send("small", small, MIB))

    try:
        run(main())
    finally:
        fast.close()
        small.close()
        pool.close()
    assert finished == ["small", "big"]


def test_client_that_goes_away_is_a_connection_error_and_frees_everything(
    pool: SendfilePool, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    reader = Reader(limit=MIB)
    reader.go.set()
    before = open_fds()

    async def main() -> None:
        with open(path, "rb") as fh:
            await pool.send(reader.server, fh.fileno(), 0, len(data))

    with pytest.raises(ConnectionError):
        run(main())
    reader.close()
    assert wait_for(lambda: open_fds() <= before - 1), "a duplicated descriptor was left open"
    assert bytes(reader.received[:MIB]) == data[:MIB]


def test_cancel_stops_the_job_and_the_worker_goes_on(
    pool: SendfilePool, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    stuck, later = Reader(), Reader()  # `stuck` is never read until the end
    later.go.set()
    before = open_fds()

    async def main() -> int:
        with open(path, "rb") as fh:
            job = asyncio.ensure_future(pool.send(stuck.server, fh.fileno(), 0, len(data)))
            await asyncio.sleep(0.1)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            return int(await pool.send(later.server, fh.fileno(), 0, len(data)))

    try:
        assert run(main()) == len(data)
        # The cancelled job's duplicates are closed by its worker: only the pairs stay open.
        assert wait_for(lambda: open_fds() <= before)
        assert pool.loads() == [0, 0]
    finally:
        stuck.close()
        later.close()
    assert bytes(later.received) == data
    assert len(stuck.received) < len(data)


def test_file_shorter_than_announced_is_an_error_after_what_it_had(
    pool: SendfilePool, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    reader = Reader()
    reader.go.set()

    async def main() -> None:
        with open(path, "rb") as fh:
            await pool.send(reader.server, fh.fileno(), 0, len(data) + 100)

    with pytest.raises(FileEndedEarly, match="100 bytes early"):
        run(main())
    reader.close()
    assert bytes(reader.received) == data


def test_close_ends_a_running_job_and_refuses_new_ones(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    pool = SendfilePool(2)
    pool.start()
    stuck = Reader()
    errors: list[BaseException] = []

    async def main() -> None:
        with open(path, "rb") as fh:
            job = asyncio.ensure_future(pool.send(stuck.server, fh.fileno(), 0, len(data)))
            await asyncio.sleep(0.1)
            pool.close()  # a shutdown while a client still downloads
            try:
                await asyncio.wait_for(job, 5)
            except ConnectionResetError as exc:
                errors.append(exc)
            with pytest.raises(RuntimeError, match="not running"):
                await pool.send(stuck.server, fh.fileno(), 0, 1)

    try:
        run(main())
    finally:
        stuck.close()
    assert errors and "stopping" in str(errors[0])
    assert not [t for t in threading.enumerate() if t.name.startswith("pxetui-sendfile")]


def test_a_blocking_socket_is_refused(pool: SendfilePool, data_file: tuple[Path, bytes]) -> None:
    path, _ = data_file
    server, client = socket.socketpair()

    async def main() -> None:
        with open(path, "rb") as fh:
            await pool.send(server, fh.fileno(), 0, 10)

    try:
        with pytest.raises(ValueError, match="non-blocking"):
            run(main())
    finally:
        server.close()
        client.close()


def test_no_descriptor_left_is_refused_before_sending_and_leaks_nothing(
    pool: SendfilePool, data_file: tuple[Path, bytes]
) -> None:
    path, _ = data_file
    reader = Reader()
    reader.go.set()

    async def main() -> None:
        with open(path, "rb") as fh, exactly_one_free_descriptor():
            before = open_fds()
            with pytest.raises(SendfileUnavailable, match="cannot hand the transfer"):
                await pool.send(reader.server, fh.fileno(), 0, 1000)
            assert open_fds() == before

    try:
        run(main())
    finally:
        reader.close()
    assert pool.unavailable_total == 1 and pool.jobs_total == 0 and reader.received == b""


@contextlib.contextmanager
def exactly_one_free_descriptor() -> Iterator[None]:
    """Fill every free descriptor number, then allow exactly one more: the socket's duplicate
    fits, the file's does not."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = max(int(name) for name in os.listdir("/proc/self/fd"))
    fillers = [os.open(os.devnull, os.O_RDONLY)]
    while fillers[-1] <= top:  # the lowest free number comes first: gaps fill before top + 1
        fillers.append(os.open(os.devnull, os.O_RDONLY))
    os.close(fillers.pop())  # top + 1 is the one free number below the limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 2, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in fillers:
            os.close(fd)
