"""iPXE scripts, rendered from the jinja2 templates in assets/ipxe/.

The HTTP service decides *what* a PC gets (probe, menu, a profile's boot, local disk); this
module turns that decision into text. All script text lives in assets/ipxe/*.j2, so wording
and iPXE commands change without touching code. Installer answers (preseed, ...) and the
kernel command line are pxetui.boot.unattended's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2

from pxetui.boot.profiles import Profile
from pxetui.boot.resources import data_dir
from pxetui.boot.unattended import MachineContext
from pxetui.errors import PxetuiError

# Choices in the menu that are not profiles. Profile names cannot start with '-', so these
# never collide with one.
EXTRA_CHOICES = {"-local": "Boot from the local disk", "-shell": "iPXE shell", "-reboot": "Reboot"}
EXTRA_ACTIONS = {"-local": "local", "-shell": "shell", "-reboot": "reboot"}
CONFIRM_SECONDS = 30  # "Erase the disk ...?" goes back to the menu after this long
FETCH_WAIT_SECONDS = 5  # a PC whose profile is being fetched asks again this often
_LINE_BREAKS = re.compile(r"\s+")


class TemplateError(PxetuiError):
    """A script template could not be rendered; the message names it."""


@dataclass(frozen=True, slots=True)
class MenuEntry:
    choice: str
    title: str
    erases: bool = False  # an unattended install: the entry says so and asks before it starts


@dataclass(frozen=True, slots=True)
class MenuPoll:
    """How a menu left alone asks the server again (so an assignment made meanwhile starts).

    `url` is the next /boot.ipxe request, with the wait so far in it; `interval` is the
    seconds until then; `remaining` the seconds until the local disk boots (None: never).
    """

    url: str
    interval: int
    remaining: int | None


def ipxe_line(text: object) -> str:
    """One line of iPXE text: a title or command line with newlines would start a new command."""
    return _LINE_BREAKS.sub(" ", str(text)).strip()


class ScriptRenderer:
    """Renders the templates; `template_dirs` come first, so an operator's files override ours."""

    def __init__(self, template_dirs: Sequence[Path] = ()) -> None:
        assets = data_dir("assets")
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([*template_dirs, assets]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # iPXE scripts and preseeds are not HTML
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["ipxe_line"] = ipxe_line

    def _render(self, name: str, **context: object) -> str:
        try:
            return self._env.get_template(name).render(**context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name}: {exc}") from exc

    def probe(self, base: str) -> str:
        return self._render("ipxe/probe.ipxe.j2", base=base)

    def autoexec(self, base: str) -> str:
        """autoexec.ipxe for iPXE's signed build: DHCP, then the probe, marked `shim=1`."""
        return self._render("ipxe/autoexec.ipxe.j2", base=base)

    def action(self, action: str, base: str, machine: MachineContext) -> str:
        """local | shell | reboot."""
        return self._render(f"ipxe/{action}.ipxe.j2", base=base, machine=machine)

    def menu(
        self,
        base: str,
        machine: MachineContext,
        systems: Iterable[Profile],
        actions: Iterable[Profile],
        timeout_seconds: int = 0,
        *,
        poll: MenuPoll | None = None,
        confirm_seconds: int = CONFIRM_SECONDS,
    ) -> str:
        """The menu for an unassigned PC. Left alone, it boots the local disk after the
        timeout (0: waits for a choice): an unattended PC must never install by default.

        An entry that installs unattended (its profile has a `template`) says it erases the
        disk and asks again before it starts; that question goes back to the menu after
        `confirm_seconds`. With `poll`, the PC first waits for the operator and asks the
        server again every `poll.interval` seconds; any key shows the menu at once.
        """
        system_entries = [MenuEntry(p.name, p.title, erases=p.template is not None) for p in systems]
        other_entries = [MenuEntry(p.name, p.title) for p in actions]
        covered = {p.action for p in actions}
        other_entries += [
            MenuEntry(choice, title)
            for choice, title in EXTRA_CHOICES.items()
            if EXTRA_ACTIONS[choice] not in covered
        ]
        local = [p.name for p in actions if p.action == "local"] or ["-local"]
        default = local[0]
        return self._render(
            "ipxe/menu.ipxe.j2",
            base=base,
            machine=machine,
            systems=system_entries,
            others=other_entries,
            default=default,
            timeout_ms=max(0, timeout_seconds) * 1000,
            confirm_ms=max(1, confirm_seconds) * 1000,
            poll_url=poll.url if poll else None,
            poll_ms=max(1, poll.interval) * 1000 if poll else 0,
            remaining_seconds=poll.remaining if poll else None,
        )

    def boot(
        self,
        profile: Profile,
        base: str,
        machine: MachineContext,
        cmdline: str,
        retry_url: str,
        shim_url: str | None = None,
    ) -> str:
        """The script that boots `profile` on `machine`: kernel+initrd, chain, or an action.

        `cmdline` is the profile's kernel command line already rendered for this machine.
        `shim_url`: the PC runs iPXE's signed build and the kernel is signed by a distribution;
        iPXE's `shim` command hands the kernel to that distribution's shim to verify it.
        """
        if profile.action:
            return self.action(profile.action, base, machine)
        if profile.chain:
            return self._render("ipxe/chain.ipxe.j2", profile=profile, machine=machine, retry_url=retry_url)
        mac_q = quote(machine.mac, safe="")
        urls = {role: f"{base}/files/{profile.name}/{role}?mac={mac_q}" for role in profile.files}
        return self._render(
            "ipxe/kernel.ipxe.j2",
            profile=profile,
            machine=machine,
            kernel_url=urls["kernel"],
            initrd_url=urls.get("initrd"),
            cmdline=ipxe_line(cmdline),
            retry_url=retry_url,
            shim_url=shim_url,
        )

    def wait_for_files(
        self,
        profile: Profile,
        base: str,
        machine: MachineContext,
        retry_url: str,
        seconds: int = FETCH_WAIT_SECONDS,
    ) -> str:
        """Fetch on first use: `profile`'s files are being downloaded; wait `seconds`, ask again.

        The PC is never given a file URL until every file is verified; `retry_url` is the
        probe, which asks again with the PC's whole identity.
        """
        return self._render(
            "ipxe/wait.ipxe.j2",
            profile=profile,
            machine=machine,
            base=base,
            retry_url=retry_url,
            seconds=max(1, seconds),
        )
