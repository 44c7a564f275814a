"""The package proxy service: apt-cacher-ng as pxetui's child, on the lab address only.

Why a child and not our own cache: apt-cacher-ng already knows which files are volatile
(Release, InRelease, Packages*, repomd.xml: revalidated) and which are not (.deb, .rpm: kept),
merges concurrent downloads of one file, and resumes partial ones; see config.py for how it is
closed to every host but the package hosts. pxetui only:

- writes its configuration into a private temporary directory (removed at stop, with its log
  and socket), its cache under pxetui's cache directory (`CACHE/proxy`, kept between sessions),
- starts it bound to the lab address and waits until it accepts connections (or names why not),
- reads its transfer log once a second for the counts (`stats`), reporting refused requests
  as `error` events (at most one a second, with the count), and sends the figures as a
  `proxy.stats` event every STATS_INTERVAL seconds while they change: bytes from upstream and
  served, per client address (the registry credits them to machines), the cache's size on disk
  (summed in a thread every CACHE_SIZE_INTERVAL) and whether a package host answers now (a TCP
  connect to port 80 of the first allowed host that resolves, every PROBE_INTERVAL, only while
  the routing table has an uplink: nothing is sent otherwise),
- reports an exit it did not ask for as an `error` event, and stops it at stop (SIGTERM, then
  SIGKILL).

`--package-proxy auto` runs it in full mode only: in proxy mode a real router exists and the
PCs reach their mirrors themselves. The mode is asked of DHCP when this service starts, so it
starts after DHCP (see services/__init__.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pxetui.errors import PxetuiError, UsageError
from pxetui.model.events import Error, ProxyStats
from pxetui.services.context import ServiceContext
from pxetui.services.proxy.config import LogCounts, acng_conf, allowed_hosts
from pxetui.services.proxy.uplink import NO_UPLINK, uplink_present

BINARY_PLACES = ("/usr/sbin/apt-cacher-ng",)
READY_TIMEOUT = 10.0  # seconds for the child to accept connections
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
                continue  # removed meanwhile (apt-cacher-ng replaces files as it revalidates)
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
    return shutil.which("apt-cacher-ng") or next((p for p in BINARY_PLACES if Path(p).is_file()), None)


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
                "--package-proxy on needs apt-cacher-ng (apt install apt-cacher-ng, then"
                " `systemctl disable --now apt-cacher-ng`: pxetui runs its own), or --package-proxy off"
            )
        self.hosts = allowed_hosts(context.profiles.values(), settings.install, settings.allow_upstream)
        self.cache_dir = settings.cache_dir / "proxy"
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
            return False, "apt-cacher-ng is not installed (apt install apt-cacher-ng)"
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
        self._stopping = False
        remove_stale_work_dirs()
        self._work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
        (self._work / "owner").write_text(f"{os.getpid()}\n")
        try:
            await self._launch(self.binary, self._work)
        except BaseException:
            await self._kill()
            self._remove_work()
            raise
        self.state = "running"
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch_exit(), name="pxetui-proxy-exit"),
            loop.create_task(self._follow_log(), name="pxetui-proxy-log"),
            loop.create_task(self._measure(), name="pxetui-proxy-measure"),
        ]

    async def _launch(self, binary: str, work: Path) -> None:
        settings = self.context.settings
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PxetuiError(f"package proxy: cannot create its cache {self.cache_dir}: {exc}") from exc
        (work / "log").mkdir()
        (work / "acng.conf").write_text(
            acng_conf(
                address=str(self.context.address.ip),
                port=settings.proxy_port,
                cache_dir=self.cache_dir,
                log_dir=work / "log",
                socket_path=work / "socket",
                hosts=self.hosts,
            )
        )
        output = (work / "output").open("wb")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(work),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # a Ctrl-C in the terminal is pxetui's to handle, not its
                preexec_fn=_die_with_parent,
            )
        finally:
            output.close()
        await self._wait_listening()

    async def _wait_listening(self) -> None:
        address, port = str(self.context.address.ip), self.context.settings.proxy_port
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise PxetuiError(
                    f"package proxy: apt-cacher-ng exited at start ({self._proc.returncode}):"
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
            f"package proxy: apt-cacher-ng did not listen on {address}:{port} within {READY_TIMEOUT:.0f} s"
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
                reason=f"apt-cacher-ng exited ({code}): PCs can no longer download packages;"
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
            from_cache=max(0, stats.served_bytes - stats.upstream_bytes),
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
        """Count the transfer log lines written since the last read."""
        if self._work is None:
            return
        path = self._work / "log" / "apt-cacher.log"
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
