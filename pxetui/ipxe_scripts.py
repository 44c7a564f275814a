"""iPXE scripts and per-machine install files, rendered from the jinja2 templates in assets/.

The HTTP service decides *what* a PC gets (probe, menu, a profile's boot, local disk); this
module turns that decision into text. All script text lives in assets/ipxe/*.j2 and
assets/install/*.j2, so wording and iPXE commands change without touching code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2

from pxetui.errors import PxetuiError
from pxetui.profiles import Profile
from pxetui.resources import data_dir

# Choices in the menu that are not profiles. Profile names cannot start with '-', so these
# never collide with one.
EXTRA_CHOICES = {"-local": "Boot from the local disk", "-shell": "iPXE shell", "-reboot": "Reboot"}
EXTRA_ACTIONS = {"-local": "local", "-shell": "shell", "-reboot": "reboot"}
# What each install template renders, by the file name the installer asks for.
CONFIG_FILES = {"preseed": {"preseed.cfg": "preseed.cfg.j2"}}
_LINE_BREAKS = re.compile(r"\s+")


class TemplateError(PxetuiError):
    """A profile's template or command line could not be rendered; the message names it."""


@dataclass(frozen=True, slots=True)
class MachineContext:
    """What templates may say about the machine they are rendered for (`machine.*`)."""

    mac: str
    hostname: str
    token: str
    url: str  # base URL of this machine's own files: {base}/config/{mac}
    done_url: str
    failed_url: str
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class MenuEntry:
    choice: str
    title: str


def ipxe_line(text: object) -> str:
    """One line of iPXE text: a title or command line with newlines would start a new command."""
    return _LINE_BREAKS.sub(" ", str(text)).strip()


def default_hostname(mac: str) -> str:
    return "pc-" + mac.replace(":", "")


def machine_context(base: str, mac: str, hostname: str | None, token: str, ip: str | None) -> MachineContext:
    mac_q = quote(mac, safe="")
    report = f"mac={mac_q}&token={quote(token, safe='')}"
    return MachineContext(
        mac=mac,
        hostname=hostname or default_hostname(mac),
        token=token,
        url=f"{base}/config/{mac_q}",
        done_url=f"{base}/done?{report}",
        failed_url=f"{base}/failed?{report}&reason=installer",
        ip=ip,
    )


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
        self._cmdlines: dict[str, jinja2.Template] = {}

    def _render(self, name: str, **context: object) -> str:
        try:
            return self._env.get_template(name).render(**context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name}: {exc}") from exc

    def probe(self, base: str) -> str:
        return self._render("ipxe/probe.ipxe.j2", base=base)

    def action(self, action: str, base: str, machine: MachineContext) -> str:
        """local | shell | reboot."""
        return self._render(f"ipxe/{action}.ipxe.j2", base=base, machine=machine)

    def menu(
        self,
        base: str,
        machine: MachineContext,
        systems: Iterable[Profile],
        actions: Iterable[Profile],
    ) -> str:
        system_entries = [MenuEntry(p.name, p.title) for p in systems]
        other_entries = [MenuEntry(p.name, p.title) for p in actions]
        covered = {p.action for p in actions}
        other_entries += [
            MenuEntry(choice, title)
            for choice, title in EXTRA_CHOICES.items()
            if EXTRA_ACTIONS[choice] not in covered
        ]
        default = system_entries[0].choice if system_entries else other_entries[0].choice
        return self._render(
            "ipxe/menu.ipxe.j2",
            base=base,
            machine=machine,
            systems=system_entries,
            others=other_entries,
            default=default,
        )

    def cmdline(self, profile: Profile, machine: MachineContext) -> str:
        template = self._cmdlines.get(profile.name)
        try:
            if template is None:
                template = self._env.from_string(profile.cmdline)
                self._cmdlines[profile.name] = template
            return ipxe_line(template.render(machine=machine, profile=profile))
        except jinja2.TemplateError as exc:
            raise TemplateError(f"profile {profile.name} ({profile.source}): cmdline: {exc}") from exc

    def boot(self, profile: Profile, base: str, machine: MachineContext, retry_url: str) -> str:
        """The script that boots `profile` on `machine`: kernel+initrd, chain, or an action."""
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
            cmdline=self.cmdline(profile, machine),
            retry_url=retry_url,
        )

    @staticmethod
    def config_names(profile: Profile) -> Mapping[str, str]:
        """File name the installer asks for -> template, for this profile's install template."""
        return CONFIG_FILES.get(profile.template or "", {})

    def config(self, profile: Profile, name: str, machine: MachineContext) -> str | None:
        """The rendered install file `name` for `machine`, or None if the profile has none so named."""
        template = self.config_names(profile).get(name)
        if template is None:
            return None
        return self._render(f"install/{template}", profile=profile, machine=machine)
