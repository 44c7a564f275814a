"""Every option of every parser says what it does in `--help` (issue 17: `fetch --profiles DIR` had none).

The parsers are the ones the CLI parses with: `build_parser()` for `pxetui [IFACE]` and, for
each subcommand, the `build_parser()` its `main` calls (`subcommand_parsers()`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from pxetui.__main__ import SUBCOMMANDS, build_parser, subcommand_parsers

PARSERS = {"pxetui": build_parser(), **subcommand_parsers()}


def test_every_subcommand_has_a_parser_here() -> None:
    assert set(PARSERS) == {"pxetui", *SUBCOMMANDS}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help(name: str) -> None:
    parser = PARSERS[name]
    silent = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        and (not action.help or not action.help.strip() or action.help == argparse.SUPPRESS)
    ]
    assert silent == [], f"{parser.prog}: options without help text: {silent}"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_the_cli_prints_that_help(name: str) -> None:
    """`pxetui NAME --help` really goes through the parser checked above."""
    done = subprocess.run(
        [sys.executable, "-m", "pxetui", name, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: pxetui {name}")
    for action in PARSERS[name]._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            assert action.option_strings[-1] in done.stdout
    assert "--profiles DIR" not in done.stdout or "extra directory of profile YAML files" in done.stdout
