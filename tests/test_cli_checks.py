"""Issue 17, the command line: values that cannot work are refused before anything starts.

No network: every case ends in argparse or in the root check, before a Session exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxetui.__main__ import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--menu-timeout", "-5"], "-5 seconds: give 0 (wait forever) or more"),
        (["--menu-timeout", "soon"], "'soon' is not a whole number of seconds"),
        (["--timezone", "Mars/Olympus"], "'Mars/Olympus' is not a time zone"),
    ],
)
def test_impossible_values_are_refused(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    with pytest.raises(SystemExit) as exit_info:
        main(["eth9", "--state", str(state), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not state.exists()
    # What is right still passes: a real zone, and 0 (the menu waits forever).
    from pxetui.__main__ import build_parser

    good = build_parser().parse_args(["eth9", "--timezone", "Europe/Berlin", "--menu-timeout", "0"])
    assert good.timezone == "Europe/Berlin" and good.menu_timeout == 0


def test_without_root_nothing_is_created_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    state = tmp_path / "state"
    for extra in ([], ["--headless"]):
        assert main(["eth9", "--state", str(state), *extra]) == 2
        assert "must run as root" in capsys.readouterr().err
        assert not state.exists()  # the root check came before the state directory


def test_a_missing_interface_is_refused_before_the_state_directory_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the interface check runs after the root check: needs root to reach it")
    state = tmp_path / "state"
    assert main(["pxetui-nosuch0", "--headless", "--state", str(state)]) == 2
    assert "pxetui-nosuch0" in capsys.readouterr().err
    assert not state.exists()  # no lock, plan.json or machines.json for a session that never ran
