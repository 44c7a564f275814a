"""An installed wheel works on its own: `pxetui --help`, and the built-in profiles are found."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp / "dist").glob("pxetui-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [venv / "bin" / "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Dependencies come from the test venv (appended after the wheel's own site-packages), so the
    # test checks the wheel's packaging without downloading textual & co again.
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv / "bin" / "pxetui", *args], capture_output=True, text=True, cwd="/", timeout=60
    )


def test_installed_wheel_runs_help(installed: Path) -> None:
    done = run(installed, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: pxetui" in done.stdout and "--headless" in done.stdout


def test_installed_wheel_finds_its_own_profiles(installed: Path) -> None:
    done = run(installed, "profiles", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    names = {r["name"] for r in rows}
    assert {"debian-12", "local-disk", "ipxe-shell", "reboot"} <= names
    sources = {Path(r["source"]).parent for r in rows}
    assert sources == {next((installed / "lib").glob("python3*/site-packages")) / "pxetui/_data/profiles"}


def test_checkout_finds_the_top_level_profiles() -> None:
    from pxetui.boot.profiles import builtin_profiles_dir

    assert builtin_profiles_dir() == REPO / "profiles"
