"""`pxetui IFACE` (the TUI) as a process: a start failure is one clear line and exit status 2.

Runs inside a lab namespace so that even a mistake could not touch this machine's network.
"""

from __future__ import annotations

import sys
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
