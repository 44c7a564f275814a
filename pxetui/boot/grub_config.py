"""grub.cfg for the Secure Boot chain, per MAC, rendered from the templates in assets/grub/.

The signed GRUBs of Debian and Ubuntu read `$prefix/grub.cfg` and nothing else by
themselves; pxetui answers that name with a small bootstrap that reads
`$prefix/grub.cfg-${net_default_mac}` (MAAS's and Foreman's way), and answers that one per
machine: an assigned PC boots its profile's kernel and initrd with its command line, an
unassigned one gets a menu of what its chain can boot whose default after the menu timeout
is the local disk, and a PC that is done boots its disk. A menu entry reads
`$prefix/select/MAC/CHOICE`, which is how the choice reaches pxetui (`menu.select`).

Debian 12's signed GRUB has no `http` module (and under Secure Boot it cannot load one), so
everything, the kernel and initrd too, comes over TFTP: `/files/PROFILE/ROLE`.

This module is pure: `parse_name` says what a TFTP name asks for (every part looked up by
the caller, nothing joined to a path), the renderer turns a decision into text.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from pxetui.boot.ipxe_scripts import CONFIRM_SECONDS, TemplateError
from pxetui.boot.profiles import FILE_ROLES, Profile
from pxetui.boot.resources import data_dir
from pxetui.host.mac import MacError, normalize_mac

BOOTSTRAP = "bootstrap"
MACHINE = "machine"
SELECT = "select"
FILE = "file"
LOCAL_CHOICE = "-local"  # the menu's local-disk entry; profile names cannot start with '-'
PER_MAC = "grub.cfg-"
FILES_DIR = "files"


@dataclass(frozen=True, slots=True)
class GrubRequest:
    """What a TFTP name asks for: the bootstrap, one machine's answer, a choice, a profile file."""

    what: str  # BOOTSTRAP | MACHINE | SELECT | FILE
    prefix: str = ""  # the GRUB prefix it was asked under ("" for FILE)
    mac: str | None = None
    choice: str | None = None  # SELECT: a profile name or LOCAL_CHOICE
    profile: str | None = None  # FILE
    role: str | None = None  # FILE: kernel | initrd


def _mac(text: str) -> str | None:
    try:
        return normalize_mac(text)
    except MacError:
        return None


def parse_name(name: str, prefixes: Iterable[str]) -> GrubRequest | None:
    """What `name` (a TFTP name without its leading "/") asks for; None: none of these.

    `prefixes` are the chains' GRUB prefixes. The caller still looks every part up (the MAC
    among known machines, the profile among loaded ones): this only splits the name.
    """
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == FILES_DIR and parts[2] in FILE_ROLES:
        return GrubRequest(FILE, profile=parts[1], role=parts[2])
    for prefix in prefixes:
        if not name.startswith(prefix + "/"):
            continue
        rest = name[len(prefix) + 1 :].split("/")
        if rest == ["grub.cfg"]:
            return GrubRequest(BOOTSTRAP, prefix)
        if len(rest) == 1 and rest[0].startswith(PER_MAC):
            mac = _mac(rest[0][len(PER_MAC) :])
            return GrubRequest(MACHINE, prefix, mac=mac) if mac else None
        if len(rest) == 3 and rest[0] == SELECT and rest[2]:
            mac = _mac(rest[1])
            return GrubRequest(SELECT, prefix, mac=mac, choice=rest[2]) if mac else None
    return None


def grub_word(text: object) -> str:
    """One GRUB script word, single-quoted: nothing in it is expanded or splits it.

    GRUB's lexer takes `'\\''` for a quote inside a quoted word, as sh does; a newline would
    end the command, so line breaks become spaces.
    """
    flat = " ".join(str(text).split())
    return "'" + flat.replace("'", "'\\''") + "'"


def cmdline_words(cmdline: str) -> list[str]:
    """The kernel command line as words, each passed to `linux` as one argument.

    GRUB puts double quotes around an argument with a space in it, so the line is split
    here, the way the kernel will split it, and quoted word by word.
    """
    try:
        return shlex.split(cmdline, posix=True)
    except ValueError:
        return cmdline.split()


@dataclass(frozen=True, slots=True)
class GrubMenuEntry:
    choice: str
    title: str
    erases: bool = False


class GrubRenderer:
    """Renders assets/grub/*.j2; an operator's `--templates DIR` (grub/NAME.j2) overrides them."""

    def __init__(self, template_dirs: Sequence[Path] = ()) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([*template_dirs, data_dir("assets")]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["grub_word"] = grub_word

    def _render(self, template: str, **context: object) -> str:
        try:
            return self._env.get_template(f"grub/{template}.cfg.j2").render(**context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template grub/{template}.cfg.j2: {exc}") from exc

    def bootstrap(self, prefix: str) -> str:
        return self._render("bootstrap", prefix=prefix)

    def local(self, mac: str) -> str:
        return self._render("local", mac=mac)

    def boot(self, profile: Profile, mac: str, hostname: str, cmdline: str) -> str:
        """Boot `profile`'s kernel and initrd over TFTP with this machine's command line."""
        files = {role: f"/{FILES_DIR}/{profile.name}/{role}" for role in profile.files if role != "iso"}
        return self._render(
            "boot",
            name=profile.name,
            title=profile.title,
            mac=mac,
            hostname=hostname,
            kernel=files["kernel"],
            initrd=files.get("initrd"),
            cmdline=cmdline_words(cmdline),
        )

    def menu(
        self,
        mac: str,
        vendor: str,
        systems: Iterable[Profile],
        timeout_seconds: int,
        confirm_seconds: int = CONFIRM_SECONDS,
        local_choice: str = LOCAL_CHOICE,
    ) -> str:
        """An unassigned PC's menu: the local disk by default after the timeout (0: waits)."""
        entries = [GrubMenuEntry(p.name, p.title, erases=p.template is not None) for p in systems]
        return self._render(
            "menu",
            mac=mac,
            vendor=vendor,
            local=local_choice,
            systems=entries,
            timeout=max(0, timeout_seconds),
            confirm=max(1, confirm_seconds),
        )
