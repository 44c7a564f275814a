"""Per-machine installer answers (Debian preseed, Ubuntu autoinstall, kickstart), rendered at
request time from jinja2 templates: the operator's template directory first, then the built-ins
in assets/unattended/.

Each machine's files carry its own hostname and its own completion token, so one PC can report
only its own install as done.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from pxetui.boot.profiles import Profile
from pxetui.boot.resources import data_dir
from pxetui.errors import UsageError

# Files each template kind serves under the machine's config URL, and the template for each.
TEMPLATE_FILES: dict[str, dict[str, str]] = {
    "preseed": {"preseed.cfg": "preseed.cfg.j2"},
    "autoinstall": {"user-data": "user-data.j2", "meta-data": "meta-data.j2", "vendor-data": ""},
    "kickstart": {"ks.cfg": "ks.cfg.j2"},
}
_SSH_KEY = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-\S+)\s+[A-Za-z0-9+/=]+(\s+\S.*)?$")


@dataclass(frozen=True, slots=True)
class InstallSettings:
    """What the operator decides once for every machine."""

    ssh_keys: tuple[str, ...] = ()
    user: str = "lab"
    password_hash: str = ""  # crypt(3) hash; empty: password login locked, SSH keys only
    locale: str = "en_US.UTF-8"
    keyboard: str = "us"
    timezone: str = "Etc/UTC"
    domain: str = "lab"
    hostname_pattern: str = "pc-{n:02}"
    mirror_host: str = "deb.debian.org"
    mirror_directory: str = "/debian"


@dataclass(frozen=True, slots=True)
class MachineContext:
    mac: str
    hostname: str
    token: str
    profile: str
    base_url: str  # http://ADDR:PORT

    @property
    def url(self) -> str:
        """Where this machine's config files are: `{{ machine.url }}/preseed.cfg` etc."""
        return f"{self.base_url}/config/{self.mac.replace(':', '-')}"

    @property
    def done_url(self) -> str:
        return f"{self.base_url}/done?mac={self.mac}&token={self.token}"

    @property
    def failed_url(self) -> str:
        return f"{self.base_url}/failed?mac={self.mac}&token={self.token}"


def read_ssh_keys(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--ssh-key {path}: cannot read it: {exc}") from exc
    keys = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    for key in keys:
        if not _SSH_KEY.match(key):
            raise UsageError(f"--ssh-key {path}: {key[:30]!r}... is not an SSH public key line")
    if not keys:
        raise UsageError(f"--ssh-key {path}: no public key in it (expected lines like 'ssh-ed25519 AAAA...')")
    return keys


def numbered_hostname(pattern: str, n: int) -> str:
    try:
        return pattern.format(n=n)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"hostname pattern {pattern!r} is not valid: use {{n}} or {{n:02}}") from exc


@dataclass
class Renderer:
    """Renders a profile's cmdline and its machine files; operator templates override built-ins."""

    template_dirs: list[Path] = field(default_factory=list)
    settings: InstallSettings = field(default_factory=InstallSettings)

    def __post_init__(self) -> None:
        for directory in self.template_dirs:
            if not directory.is_dir():
                raise UsageError(f"--templates {directory}: no such directory")
        search = [str(d) for d in self.template_dirs] + [str(data_dir("assets") / "unattended")]
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # installer files, not HTML
            keep_trailing_newline=True,
        )

    def files_for(self, profile: Profile) -> list[str]:
        return list(TEMPLATE_FILES.get(profile.template or "", {}))

    def render(self, profile: Profile, name: str, machine: MachineContext) -> str | None:
        """The file `name` for this machine, or None when the profile has no such file."""
        template = TEMPLATE_FILES.get(profile.template or "", {}).get(name)
        if template is None:
            return None
        if not template:
            return ""  # an empty vendor-data is what cloud-init expects
        return self._render(self._env.get_template(template), machine)

    def cmdline(self, profile: Profile, machine: MachineContext) -> str:
        return self._render(self._env.from_string(profile.cmdline), machine)

    def _render(self, template: jinja2.Template, machine: MachineContext) -> str:
        try:
            return template.render(
                machine=machine, settings=self.settings, late_command=self.late_command(machine)
            )
        except jinja2.TemplateError as exc:
            raise UsageError(f"template {template.name or 'cmdline'}: {exc}") from exc

    def late_command(self, machine: MachineContext) -> str:
        """Debian's late_command: install the SSH keys, then report completion to /done."""
        steps = []
        if self.settings.ssh_keys:
            home = f"/target/home/{self.settings.user}/.ssh"
            # One preseed line: each key is its own printf argument, never a raw newline.
            keys = " ".join(shlex.quote(k) for k in self.settings.ssh_keys)
            steps.append(f"mkdir -p {home}; printf '%s\\n' {keys} > {home}/authorized_keys")
            steps.append(f"in-target chown -R {self.settings.user}: /home/{self.settings.user}/.ssh")
        steps.append(f"wget -q -O /dev/null {shlex.quote(machine.done_url)} || true")
        return "; ".join(steps)
