"""Shared fixtures: the private lab network, tool checks, and a headless pxetui in the lab."""

from __future__ import annotations

import ipaddress
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab import Client, Lab, lab_available, leftover_namespaces

from pxetui.lab.netns import pxetui_command

if TYPE_CHECKING:
    from dhcp_client import RawClient

    from pxetui.session import Session

REPO = Path(__file__).resolve().parent.parent
# `make test` sets this: a missing tool or root is then a failure, never a silent skip.
STRICT = os.environ.get("PXETUI_TEST_STRICT") == "1"
_subnets = iter(range(1, 250))


def need(reason: str | None) -> None:
    if reason is None:
        return
    if STRICT:
        pytest.fail(f"PXETUI_TEST_STRICT: {reason}")
    pytest.skip(reason)


def need_tools(*tools: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for tool in tools:
        venv_bin = Path(sys.executable).parent  # console scripts of the test venv (ksvalidator)
        path = shutil.which(tool) or next(
            (str(p) for p in (venv_bin / tool, Path("/usr/sbin") / tool, Path("/sbin") / tool) if p.exists()),
            None,
        )
        if path is None:
            need(f"needs {tool} (installed by `make test`)")
        else:
            found[tool] = path
    return found


@pytest.fixture
def lab() -> Iterator[Lab]:
    need(lab_available())
    # A /24 of 198.18.0.0/15 per lab; namespaces keep labs of parallel runs apart anyway.
    subnet = ipaddress.IPv4Network(f"198.18.{next(_subnets)}.0/24")
    the_lab = Lab(subnet=subnet)
    try:
        the_lab.build()
        yield the_lab
    finally:
        the_lab.teardown()
    assert not [ns for ns in leftover_namespaces(the_lab.tag) if ns.startswith(the_lab.tag)]


class PxetuiProcess:
    """`pxetui IFACE --headless --json` running inside a lab namespace, with its events."""

    def __init__(self, lab: Lab, netns: str, iface: str, args: list[str], state: Path) -> None:
        lab.check_owned(netns, iface)
        self.state = state
        cmd = pxetui_command(iface, state, *args)
        self.proc = lab.popen(netns, *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "<not json>", "line": line}
            self._queue.put(event)
        self._queue.put(None)

    def wait_event(self, name: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {name} {match} within {timeout}s; got {self.names()}; stderr: {self.stderr_so_far()}"
                )
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                raise AssertionError(
                    f"pxetui exited ({self.proc.wait()}) before {name};"
                    f" events {self.names()}; stderr: {self.stderr_so_far()}"
                )
            self.events.append(event)
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event

    def names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events]

    def stderr_so_far(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read()[-2000:]

    def stop(self, sig: int = 2, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            if event is not None:
                self.events.append(event)
        return code


@pytest.fixture
def run_pxetui(lab: Lab, tmp_path: Path) -> Iterator[Any]:
    started: list[PxetuiProcess] = []

    def start(
        *args: str, netns: str | None = None, iface: str | None = None, state: Path | None = None
    ) -> PxetuiProcess:
        proc = PxetuiProcess(
            lab, netns or lab.server_ns, iface or lab.bridge, list(args), state or tmp_path / "state"
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)


@pytest.fixture
def raw_client(lab: Lab) -> Iterator[tuple[Client, RawClient]]:
    """A lab host that sends and sees raw DHCP frames (a PC's firmware, or an attacker)."""
    from dhcp_client import RawClient  # scapy: loaded only by the tests that send frames

    client = lab.add_client()
    raw = RawClient(client.netns)
    yield client, raw
    raw.close()


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The TUI tests' clock text in UTC, so screenshots and sentences match on any host."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def session(tmp_path: Path) -> Session:
    """The TUI tests' session: tui_scenario's, opened (never started), with the lab's plan in it.

    A test file that needs another session defines its own `session` fixture, which wins.
    """
    import tui_scenario as sc  # the app and its screens: loaded by the TUI tests only

    opened = sc.open_session(tmp_path / "state")
    sc.plan_lab(opened)
    return opened
