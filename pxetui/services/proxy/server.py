"""The package proxy service: squid as pxetui's child, on the lab address only.

Why a child and not our own cache: squid already knows how to keep package files and revalidate
index files (config.py says which are which), and with `collapsed_forwarding on` PCs asking
for a file still downloading wait for that download. Why squid and not apt-cacher-ng (used
until issue 14 was measured): apt-cacher-ng 3.7.4 gives each client connection its own
downloader, and two connections asking for the same uncached .deb at once both go upstream;
20 lab PCs fetching three 8 MB packages at once, with the CPU loaded, made it send 1.07-1.44
copies upstream in 10 of 10 runs, squid exactly one copy in 12 of 12 (bench/proxy.py,
tests/test_package_proxy.py). pxetui only:

- writes its squid.conf into a private temporary directory (removed at stop, with its logs
  and pid file), its cache under pxetui's cache directory (`CACHE/proxy/squid`, kept between
  sessions, created with `squid -z` when new, one squid at a time: see _claim_cache),
- starts it as user `proxy` from the first instruction (not as root dropping to it: a change
  of user clears PR_SET_PDEATHSIG, and the proxy must die with pxetui, even by SIGKILL), bound
  to the lab address, and waits until it accepts connections (or names why not),
- reads its access log once a second for the counts (`stats`), reporting refused requests
  as `error` events (at most one a second, with the count), and sends the figures as a
  `proxy.stats` event every STATS_INTERVAL seconds while they change: bytes from upstream,
  served, and served from the cache (squid marks each hit), per client address (the registry
  credits them to machines), the cache's size on disk (summed in a thread every
  CACHE_SIZE_INTERVAL) and whether a package host answers now (a TCP connect to port 80 of the
  first allowed host that resolves, every PROBE_INTERVAL, only while the routing table has an
  uplink: nothing is sent otherwise),
- reports an exit it did not ask for as an `error` event, and stops it at stop (SIGTERM: squid
  cuts the PCs still downloading after `shutdown_lifetime`, 1 s; then SIGKILL).

`--package-proxy auto` runs it in full mode only: in proxy mode a real router exists and the
PCs reach their mirrors themselves. The mode is asked of DHCP when this service starts, so it
starts after DHCP (see services/__init__.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import pwd
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pxetui.errors import PxetuiError, UsageError
from pxetui.model.events import Error, ProxyStats
from pxetui.services.context import ServiceContext
from pxetui.services.proxy.config import LogCounts, SquidPlaces, allowed_hosts, squid_conf
from pxetui.services.proxy.uplink import NO_UPLINK, uplink_present

BINARY_PLACES = ("/usr/sbin/squid",)
SQUID_USER = "proxy"  # Debian's squid package's user (its cache_effective_user default)
READY_TIMEOUT = 15.0  # seconds for the child to accept connections
MAKE_CACHE_TIMEOUT = 60.0  # seconds for `squid -z` to create a new cache's directories
CACHE_MB_LIMITS = (1024, 100_000)  # the cache's size limit: half of free space, within these
STOP_TIMEOUT = 5.0
LOG_POLL = 1.0  # seconds between reads of its transfer log
REFUSAL_REPORT_INTERVAL = 1.0
STATS_INTERVAL = 2.0  # seconds between proxy.stats events (only sent when a figure changed)
CACHE_SIZE_INTERVAL = 10.0  # seconds between walks of the cache directory
PROBE_INTERVAL = 30.0  # seconds between checks that a package host answers
PROBE_TIMEOUT = 3.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WORK_PREFIX = "pxetui-proxy-"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when pxetui dies, even by SIGKILL (no proxy left open)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def remove_stale_work_dirs(tmp: Path | None = None) -> list[Path]:
    """Private directories of pxetui sessions that were killed (their owner pid is gone).

    A `kill -9` gives pxetui no stop; its child died with it (PR_SET_PDEATHSIG), its directory
    is removed here, at the next start.
    """
    removed = []
    for work in Path(tmp or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        try:
            pid = int((work / "owner").read_text().strip())
        except (OSError, ValueError):
            continue  # not ours to judge (being created, or not a pxetui directory)
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


def directory_bytes(root: Path) -> int:
    """Bytes of the files under `root` (allocated size would differ little for .debs)."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue  # removed meanwhile (squid replaces files as it revalidates)
    return total


async def upstream_answers(hosts: tuple[str, ...], port: int = 80) -> bool:
    """Whether one of `hosts` accepts a TCP connection now (the first few tried, in order)."""
    for host in hosts[:3]:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def find_binary() -> str | None:
    # /usr/sbin is not on a user's PATH: `pxetui` without sudo (--mode proxy) still finds it.
    return shutil.which("squid") or next((p for p in BINARY_PLACES if Path(p).is_file()), None)


@dataclass(frozen=True, slots=True)
class RunAs:
    """The user squid runs as: `proxy` when pxetui is root, else pxetui's own user."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_squid(cls) -> RunAs:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)
        try:
            entry = pwd.getpwnam(SQUID_USER)
        except KeyError as exc:
            raise PxetuiError(
                f"package proxy: no user {SQUID_USER!r} to run squid as (reinstall the squid package)"
            ) from exc
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)

    def cannot_reach(self, path: Path) -> Path | None:
        """The first directory above `path` this user may not enter (by its mode bits), if any."""
        for parent in reversed(path.parents):
            try:
                info = parent.stat()
            except OSError:
                return parent
            if info.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif info.st_gid == self.gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if self.uid != 0 and not info.st_mode & bit:
                return parent
        return None


def port_taken(address: str, port: int) -> str:
    """Why squid could not listen on address:port ("" when it can): checked before it starts,
    as squid's own failure only shows after it has read its configuration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def cache_limit_mb(cache_dir: Path, cached_bytes: int) -> int:
    """Half of what the cache could grow to on its disk (its bytes now plus free space)."""
    free = shutil.disk_usage(cache_dir).free
    low, high = CACHE_MB_LIMITS
    return max(low, min(high, (free + cached_bytes) // 2 // 1_000_000))


class ProxyService:
    name = "proxy"

    def __init__(
        self,
        context: ServiceContext,
        dhcp_mode: Callable[[], str] = lambda: "full",
        binary: str | None = None,
    ) -> None:
        self.context = context
        settings = context.settings
        self._dhcp_mode = dhcp_mode
        self.binary = binary or find_binary()
        if settings.package_proxy == "on" and self.binary is None:
            raise UsageError(
                "--package-proxy on needs squid (`make deps-run`, or apt install squid then"
                " `systemctl disable --now squid`: pxetui runs its own), or --package-proxy off"
            )
        self.hosts = allowed_hosts(context.profiles.values(), settings.install, settings.allow_upstream)
        self.cache_dir = settings.cache_dir / "proxy" / "squid"
        self.state = "off"
        self.reason = ""
        self.uplink = True
        self.stats = LogCounts()
        self._proc: asyncio.subprocess.Process | None = None
        self._work: Path | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._log_offset = 0
        self._refused_reported = 0
        self._refused_at = 0.0
        self.cache_bytes = 0
        self.upstream_ok: bool | None = None
        self._sent: tuple[object, ...] = ()
        self._lock: IO[str] | None = None  # held while squid runs on the cache (see _claim_cache)

    @property
    def url(self) -> str:
        """`http://ADDR:PORT` while the proxy runs, else "": what the answer files are given."""
        if self.state != "running":
            return ""
        return f"http://{self.context.address.ip}:{self.context.settings.proxy_port}"

    def wanted(self) -> tuple[bool, str]:
        """Whether to run it, and why not when not."""
        choice = self.context.settings.package_proxy
        if choice == "off":
            return False, "--package-proxy off"
        if choice == "auto" and self._dhcp_mode() != "full":
            return False, "proxy mode: the network's router takes the PCs to their mirrors"
        if self.binary is None:
            return False, "squid is not installed (make deps-run, or apt install squid)"
        return True, ""

    async def start(self) -> None:
        # Said in service.ready (describe) and, in headless text mode, on stderr by the CLI; not
        # an `error` event: nothing failed yet, and ISO-based profiles still work.
        self.uplink = uplink_present(self.context.interface.name)
        run, why = self.wanted()
        if not run:
            self.reason = why
            return
        assert self.binary is not None
        user = RunAs.for_squid()
        why = self._claim_cache(user)
        if why:
            if self.context.settings.package_proxy == "on":
                raise PxetuiError(f"package proxy: {why}, or choose --package-proxy off")
            self.reason = why  # auto: the installs that need no proxy still work
            return
        self._stopping = False
        remove_stale_work_dirs()
        self._work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
        (self._work / "owner").write_text(f"{os.getpid()}\n")
        try:
            await self._launch(self.binary, self._work, user)
        except BaseException:
            await self._kill()
            self._remove_work()
            self._release_cache()
            raise
        self.state = "running"
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch_exit(), name="pxetui-proxy-exit"),
            loop.create_task(self._follow_log(), name="pxetui-proxy-log"),
            loop.create_task(self._measure(), name="pxetui-proxy-measure"),
        ]

    def _claim_cache(self, user: RunAs) -> str:
        """Make the cache squid's and hold its lock; why not ("" when done).

        Two squids on one cache directory would corrupt its index (swap.state): a second
        pxetui on this machine (a second lab interface) runs without a proxy, or says why.
        """
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            user.own(self.cache_dir)
            lock = (self.cache_dir.parent / "squid.lock").open("a+")
        except OSError as exc:
            raise PxetuiError(f"package proxy: cannot create its cache {self.cache_dir}: {exc}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            owner = lock.read().strip() or "?"
            lock.close()
            return f"its cache {self.cache_dir} is in use by another pxetui (pid {owner})"
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock
        closed = user.cannot_reach(self.cache_dir)
        if closed is not None:
            self._release_cache()
            return (
                f"squid runs as user {user.name}, who may not enter {closed} (to reach its cache"
                f" {self.cache_dir}): give --cache a directory it can reach (the default /var/cache/pxetui)"
            )
        return ""

    def _release_cache(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing it releases the flock

    async def _launch(self, binary: str, work: Path, user: RunAs) -> None:
        settings = self.context.settings
        address, port = str(self.context.address.ip), settings.proxy_port
        taken = port_taken(address, port)
        if taken:
            raise PxetuiError(
                f"package proxy: cannot listen on {address}:{port}: {taken} (another proxy running?"
                " stop it, or choose --package-proxy off)"
            )
        closed = user.cannot_reach(work)
        if closed is not None:
            raise PxetuiError(f"package proxy: squid runs as user {user.name}, who may not enter {closed}")
        work.chmod(0o711)  # squid (another user) enters it; only its log directory is squid's
        log_dir = work / "log"
        log_dir.mkdir()
        user.own(log_dir)
        conf = work / "squid.conf"
        cached = await asyncio.to_thread(directory_bytes, self.cache_dir)
        places = SquidPlaces(
            cache_dir=self.cache_dir,
            cache_mb=cache_limit_mb(self.cache_dir, cached),
            log_dir=log_dir,
            pid_file=log_dir / "squid.pid",
            user=user.name,
        )
        conf.write_text(squid_conf(address=address, port=port, places=places, hosts=self.hosts))
        conf.chmod(0o644)
        if not (self.cache_dir / "00").is_dir():
            await self._make_cache(binary, conf, user, work)
        self._proc = await self._spawn(binary, ["-N", "-d", "1", "-f", str(conf)], user, work)
        await self._wait_listening()

    async def _spawn(
        self, binary: str, args: list[str], user: RunAs, work: Path
    ) -> asyncio.subprocess.Process:
        output = (work / "output").open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                binary,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # a Ctrl-C in the terminal is pxetui's to handle, not its
                # The user is set before _die_with_parent runs, so no later change clears it.
                user=user.uid if os.geteuid() == 0 else None,
                group=user.gid if os.geteuid() == 0 else None,
                extra_groups=[] if os.geteuid() == 0 else None,
                cwd=work / "log",
                preexec_fn=_die_with_parent,
            )
        finally:
            output.close()

    async def _make_cache(self, binary: str, conf: Path, user: RunAs, work: Path) -> None:
        """`squid -z`: the directories of a new cache (it exits when done)."""
        proc = await self._spawn(binary, ["-z", "-N", "-f", str(conf)], user, work)
        try:
            code = await asyncio.wait_for(proc.wait(), MAKE_CACHE_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PxetuiError(f"package proxy: squid -z did not create {self.cache_dir} in time") from None
        if code != 0 or not (self.cache_dir / "00").is_dir():
            raise PxetuiError(
                f"package proxy: squid -z could not create its cache in {self.cache_dir} ({code}):"
                f" {self._output_tail()}"
            )

    async def _wait_listening(self) -> None:
        address, port = str(self.context.address.ip), self.context.settings.proxy_port
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise PxetuiError(
                    f"package proxy: squid exited at start ({self._proc.returncode}):"
                    f" {self._output_tail()} (port {port} taken? choose --package-proxy off)"
                )
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 0.5)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        raise PxetuiError(
            f"package proxy: squid did not listen on {address}:{port} within {READY_TIMEOUT:.0f} s:"
            f" {self._output_tail()}"
        )

    def _output_tail(self) -> str:
        if self._work is None:
            return ""
        try:
            text = (self._work / "output").read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text.split())[-300:] or "no output"

    async def _watch_exit(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        if self._stopping:
            return
        self.state = "failed"
        self.context.emit(
            Error(
                service=self.name,
                reason=f"squid exited ({code}): PCs can no longer download packages;"
                f" restart pxetui ({self._output_tail()})",
            )
        )

    async def _follow_log(self) -> None:
        sent_at = 0.0
        while True:
            self.read_log()
            now = time.monotonic()
            if now - sent_at >= STATS_INTERVAL:
                self.emit_stats()
                sent_at = now
            await asyncio.sleep(LOG_POLL)

    async def _measure(self) -> None:
        """The slow figures: the cache's size, and whether a package host answers."""
        probed_at = -PROBE_INTERVAL
        while True:
            self.cache_bytes = await asyncio.to_thread(directory_bytes, self.cache_dir)
            now = time.monotonic()
            if now - probed_at >= PROBE_INTERVAL:
                probed_at = now
                self.uplink = uplink_present(self.context.interface.name)
                self.upstream_ok = await upstream_answers(self.hosts) if self.uplink else False
            await asyncio.sleep(CACHE_SIZE_INTERVAL)

    def stats_event(self) -> ProxyStats:
        stats = self.stats
        return ProxyStats(
            url=self.url,
            upstream_bytes=stats.upstream_bytes,
            served_bytes=stats.served_bytes,
            from_cache=stats.cache_served_bytes,
            cache_bytes=self.cache_bytes,
            files=stats.files_served,
            refused=stats.refused,
            clients=dict(stats.per_client),
            uplink=self.uplink,
            upstream_ok=self.upstream_ok,
            warning=None if self.uplink else NO_UPLINK,
        )

    def emit_stats(self) -> None:
        """Send `proxy.stats` when a figure changed since the last one sent."""
        event = self.stats_event()
        fields = event.fields
        figures = tuple(sorted(fields.pop("clients").items())) + tuple(fields.values())
        if figures == self._sent:
            return
        self._sent = figures
        self.context.emit(event)

    def read_log(self) -> None:
        """Count the access log lines written since the last read."""
        if self._work is None:
            return
        path = self._work / "log" / "access.log"
        try:
            with path.open("rb") as fh:
                fh.seek(self._log_offset)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self._log_offset += end
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            self.stats.add_line(line)
        self._report_refusals()

    def _report_refusals(self) -> None:
        refused = self.stats.refused
        now = time.monotonic()
        if refused == self._refused_reported or now - self._refused_at < REFUSAL_REPORT_INTERVAL:
            return
        self.context.emit(
            Error(
                service=self.name,
                reason="package proxy refused a request for a host or file it does not forward"
                " (allow a host with --allow-upstream HOST)",
                path=self.stats.last_refused[:200],
                count=refused,
                since_last=refused - self._refused_reported,
            )
        )
        self._refused_reported, self._refused_at = refused, now

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self.read_log()
        if self.state == "running":
            self.emit_stats()  # the last figures, for the exit summary and the JSON log
        await self._kill()
        self._remove_work()
        self._release_cache()
        if self.state == "running":
            self.state = "stopped"

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def _remove_work(self) -> None:
        work, self._work = self._work, None
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

    def describe(self) -> dict[str, object]:
        facts: dict[str, object] = {"state": self.state, "uplink": self.uplink}
        if not self.uplink:
            facts["warning"] = NO_UPLINK
        if self.state == "running":
            facts.update(url=self.url, cache=str(self.cache_dir), upstream=list(self.hosts))
            if self.upstream_ok is not None:
                facts["upstream_ok"] = self.upstream_ok
        if self.reason:
            facts["reason"] = self.reason
        facts.update(self.stats.as_dict())
        return facts
