"""`pxetui IFACE` (the TUI) as a process: a start failure is one clear line and exit status 2.

Runs inside a lab namespace so that even a mistake could not touch this machine's network.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path

import pytest
from lab import Lab


@pytest.mark.lab
def test_tui_on_a_missing_interface_exits_2_with_the_reason(lab: Lab, tmp_path: Path) -> None:
    done = lab.exec(
        lab.server_ns,
        sys.executable,
        "-m",
        "pxetui",
        "eth9",
        "--state",
        str(tmp_path / "state"),
        timeout=60,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    assert "no interface named 'eth9'" in done.stderr
    assert "Traceback" not in done.stderr
    # The session was opened (state dir made) and saved on the way out.
    assert (tmp_path / "state").is_dir()


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


@pytest.mark.lab
@pytest.mark.parametrize("how", ["ctrl+c", "SIGTERM"])
def test_tui_in_a_terminal_starts_on_the_lab_bridge_and_stops_cleanly(
    lab: Lab, tmp_path: Path, how: str
) -> None:
    """A real terminal (a pty), a real Session on the lab bridge; Ctrl+C or SIGTERM: exit 0, state saved.

    Textual draws on stderr, so both go to the terminal."""
    client = lab.add_client()  # gives the bridge a port, so its link is up
    assert client.netns
    deadline = time.monotonic() + 10
    while lab.exec(lab.server_ns, "cat", f"/sys/class/net/{lab.bridge}/operstate").stdout.strip() != "up":
        assert time.monotonic() < deadline, "lab bridge never came up"
        time.sleep(0.1)
    state = tmp_path / "state"
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    cmd = [sys.executable, "-m", "pxetui", lab.bridge, "--state", str(state), "--http-port", "18082"]
    proc = lab.popen(
        lab.server_ns, *cmd, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True
    )
    os.close(terminal)
    try:
        # The event log's sentence for service.ready (issue 17: the log reads as sentences).
        screen = _read_until(controller, b"(HTTP port 18082)", timeout=60)
        assert b"(HTTP port 18082)" in screen, screen[-2000:]
        if how == "ctrl+c":
            os.write(controller, b"\x03")
        else:
            proc.send_signal(signal.SIGTERM)
        tail = b""
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            tail = (tail + _read_until(controller, b"\x00never", timeout=0.5))[-4000:]  # keep the pty drained
        code = proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    assert code == 0, tail
    assert (state / "plan.json").is_file() and (state / "machines.json").is_file()
