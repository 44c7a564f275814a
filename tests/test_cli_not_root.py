"""Without root, `pxetui demo` and `pxetui IFACE` say the one command that works and create nothing.

Issue 17: `demo` as a user said "run `sudo make test`" (the tests' advice), and a state
directory was made before the root check. Run here as nobody (setpriv), with HOME and the XDG
directories in a fresh directory that must stay empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


@pytest.fixture
def home() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("run as root: the test drops to nobody with setpriv")
    with tempfile.TemporaryDirectory() as directory:  # pytest's tmp_path is private to root
        os.chmod(directory, 0o777)
        yield Path(directory)


def as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "TMPDIR": str(home),
    }
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", "pxetui", *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=home, check=False,
    )  # fmt: skip


def test_demo_as_a_user_says_run_it_with_sudo_and_makes_nothing(home: Path) -> None:
    done = as_nobody(home, "demo", "--vms", "3")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "needs root" in lines[0] and "run `sudo pxetui demo --vms 3`" in lines[0]
    assert "make test" not in lines[0]
    assert list(home.iterdir()) == []  # no state, cache or work directory


def test_serving_as_a_user_makes_no_state_directory(home: Path) -> None:
    done = as_nobody(home, "eth9", "--headless")
    assert done.returncode == 2
    assert "must run as root" in done.stderr and "sudo pxetui eth1" in done.stderr
    assert list(home.iterdir()) == []
