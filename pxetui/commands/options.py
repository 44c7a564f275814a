"""Options several commands share (`--profiles DIR`, `--cache DIR`), with one help text each.

`pxetui`, `profiles`, `fetch`, `import-bundle`, `import-iso` and `demo` all take some of them;
written once here, `pxetui X --help` says the same thing everywhere (tests/test_cli_help.py
checks that no option of any parser is left without help).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pxetui.boot.profiles import DEFAULT_CACHE


def add_profiles_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profiles",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="extra directory of profile YAML files (overrides built-ins by name; may be repeated)",
    )


def add_cache_option(parser: argparse.ArgumentParser, what: str = "where downloaded OS files live") -> None:
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"{what} (default {DEFAULT_CACHE}: one cache for `sudo pxetui` and `pxetui fetch`)",
    )
