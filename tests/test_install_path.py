"""`sudo pxetui` works after `make run` (issue 17: "command not found", sudo's PATH has no venv).

`make install` (a step of `make run`) links PREFIX/bin/pxetui to the venv's entry point. Run here
into a temporary PREFIX, with `-o .venv/.installed` so make never rebuilds the venv (that would
download packages); then pxetui is found with nothing but sudo's kind of PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENTRY = REPO / ".venv" / "bin" / "pxetui"
SECURE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # sudo's secure_path without /usr/local/bin


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), "-o", ".venv/.installed", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(autouse=True)
def venv_entry_point() -> None:
    if not ENTRY.exists():
        pytest.fail(f"{ENTRY} is missing: run `make venv` first")


def run_with_secure_path(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["env", "-i", f"PATH={SECURE_PATH}:{prefix / 'bin'}", "pxetui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_install_links_the_entry_point_where_sudo_finds_it(tmp_path: Path) -> None:
    assert run_with_secure_path(tmp_path, "--help").returncode == 127  # not found before
    done = make("install", f"PREFIX={tmp_path}")
    assert done.returncode == 0, done.stderr
    link = tmp_path / "bin" / "pxetui"
    assert link.is_symlink() and os.readlink(link) == str(ENTRY)
    found = run_with_secure_path(tmp_path, "--help")
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("usage: pxetui")
    again = make("install", f"PREFIX={tmp_path}")  # idempotent: nothing to do, nothing said
    assert again.returncode == 0 and again.stdout == again.stderr == ""
    assert os.readlink(link) == str(ENTRY)


def test_a_foreign_file_is_left_alone_and_named(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    foreign = tmp_path / "bin" / "pxetui"
    foreign.write_text("#!/bin/sh\necho another pxetui\n")
    done = make("install", f"PREFIX={tmp_path}")
    assert done.returncode == 0  # `make run` goes on with the venv's pxetui
    assert foreign.read_text() == "#!/bin/sh\necho another pxetui\n" and not foreign.is_symlink()
    assert f"{foreign} is not a link to {ENTRY}: left alone" in done.stderr


def test_a_link_into_a_venv_that_is_gone_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    link = tmp_path / "bin" / "pxetui"
    link.symlink_to(tmp_path / "old-checkout" / ".venv" / "bin" / "pxetui")
    done = make("install", f"PREFIX={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert os.readlink(link) == str(ENTRY)


def test_make_run_installs_before_it_starts_pxetui(tmp_path: Path) -> None:
    # -n: print what `sudo make run` would do (deps-run, the Debian packages, is taken as done).
    done = make("-n", "run", f"PREFIX={tmp_path}", "IFACE=eth9", "-o", "deps-run")
    assert done.returncode == 0, done.stderr
    link_at = done.stdout.find(f'link="{tmp_path}/bin/pxetui"')
    start_at = done.stdout.find(".venv/bin/pxetui eth9")
    assert 0 <= link_at < start_at, done.stdout


def test_the_readme_starts_with_two_commands_that_work_as_written() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["sudo make run IFACE=eth1", "make test"]
    # The pipx way also puts pxetui where sudo looks (Debian 12's pipx 1.1 has no --global).
    assert "sudo env PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install ." in readme
    assert "\npipx install .  " not in readme
