"""The engine must be usable without the TUI: importing the core never imports textual."""

import subprocess
import sys

CORE = [
    "pxetui.session",
    "pxetui.services",
    "pxetui.model.registry",
    "pxetui.model.plan",
    "pxetui.boot.profiles",
    "pxetui.model.events",
    "pxetui.headless",
    "pxetui.host.netif",
    "pxetui.boot.bootfiles",
    "pxetui.__main__",
]


def test_core_modules_do_not_import_textual() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "import pxetui.services as s\n"
        "for m in pkgutil.walk_packages(s.__path__, 'pxetui.services.'): importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(len(bad)); sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_tui_does_import_textual() -> None:
    """The check above can fail: the TUI package really pulls textual in."""
    code = "import sys, pxetui.tui.launch; import textual; print('textual' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "True", done.stderr
