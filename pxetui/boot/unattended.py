"""Per-machine installer answers (Debian preseed, Ubuntu autoinstall, kickstart), rendered at
request time from jinja2 templates: the operator's template directory first, then the built-ins
in assets/unattended/.

Each machine's files carry its own hostname and its own completion token, so one PC can report
only its own install as done. While pxetui's package proxy runs, every answer file sends the
installer's downloads through it (`proxy` in the templates: "" while it does not run), asked at
each render, so a file fetched after the proxy stopped no longer names it. A profile with a
local mirror (`mirror: {path: DIR}`, served by pxetui's HTTP service under /mirror/NAME/) points
the installer at that mirror instead (`mirror` in the templates), without the proxy: it must
work with no uplink at all.

The installed machine must be reachable: the invoking user's SSH keys are taken by default
(`default_ssh_keys`, via SUDO_USER), and `--password` is stored only as a SHA-512 crypt hash
(`hash_password`, by `openssl passwd -6`: python's `crypt` module is gone in 3.13).
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
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
_INST_REPO = re.compile(r"(?:^|\s)inst\.repo=(\S+)")
_SHA512_CRYPT = re.compile(r"^\$6\$[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}$")
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


def default_ssh_keys(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The public keys in the invoking user's ~/.ssh (SUDO_USER under sudo, else $HOME's owner).

    Unreadable or malformed files are skipped: this is a default, not something asked for.
    """
    env = os.environ if environ is None else environ
    home: Path | None = None
    user = env.get("SUDO_USER")
    if user and user != "root":
        try:
            home = Path(pwd.getpwnam(user).pw_dir)
        except KeyError:
            home = None
    elif env.get("HOME"):
        home = Path(env["HOME"])
    if home is None:
        return ()
    keys: list[str] = []
    for path in sorted((home / ".ssh").glob("*.pub")):
        try:
            keys.extend(k for k in read_ssh_keys(path) if k not in keys)
        except UsageError:
            continue
    return tuple(keys)


def hash_password(password: str) -> str:
    """A SHA-512 crypt(3) hash (`$6$...`) of `password`, by `openssl passwd -6 -stdin`.

    The password goes through a pipe, never the command line (which `ps` shows).
    """
    if not password or "\n" in password:
        raise UsageError("--password: give a non-empty password on one line")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise UsageError("--password needs `openssl` to hash it (apt install openssl)")
    done = subprocess.run(
        [openssl, "passwd", "-6", "-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    hashed = done.stdout.strip()
    if done.returncode != 0 or not _SHA512_CRYPT.match(hashed):
        raise UsageError(f"--password: openssl could not hash it: {done.stderr.strip()[:200]}")
    return hashed


# d-i's network questions answered on the kernel command line (see Renderer.cmdline).
NETWORK_ANSWERS = (("netcfg/no_default_route", "true"), ("netcfg/get_nameservers", ""))
MIRROR_ROUTE = "/mirror/"  # the HTTP service serves a profile's local mirror under /mirror/NAME/


def mirror_url(profile: Profile, base_url: str) -> str:
    """`http://ADDR:PORT/mirror/NAME`: where pxetui serves `profile`'s local mirror, else ""."""
    return f"{base_url}{MIRROR_ROUTE}{profile.name}" if profile.mirror is not None else ""


def kickstart_repo(profile: Profile) -> str:
    """The installation tree a kickstart profile names with `inst.repo=` on its command line."""
    if profile.template != "kickstart":
        return ""
    match = _INST_REPO.search(profile.cmdline)
    return match.group(1) if match else ""


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
    # The package proxy's URL while it runs ("http://ADDR:PORT"), else "": asked at each render.
    proxy: Callable[[], str] = field(default=lambda: "")

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
        return self._render(self._env.get_template(template), machine, profile)

    def cmdline(self, profile: Profile, machine: MachineContext) -> str:
        line = self._render(self._env.from_string(profile.cmdline), machine, profile)
        proxy = self._proxy_for(profile)
        if proxy and profile.template == "kickstart" and "inst.proxy=" not in line:
            # Anaconda fetches its stage2 (inst.repo) before it reads the kickstart's --proxy.
            line = f"{line} inst.proxy={proxy}"
        if profile.template == "preseed":
            # d-i configures the network to fetch the preseed, so the preseed's own answers
            # come too late: on a switch without a router or DNS it stopped at "Continue
            # without a default route?", then at "name servers" (seen in QEMU,
            # tests/e2e/test_debian_installer.py). Answers on the kernel command line are read
            # before that first network step. No name server is needed: the preseed names
            # pxetui and its proxy by address. (Asked only when DHCP gave none.)
            for question, answer in NETWORK_ANSWERS:
                if f"{question}=" not in line:
                    line = f"{line} {question}={answer}"
        return line

    def _proxy_for(self, profile: Profile) -> str:
        """The package proxy for `profile`'s installer: none with a local mirror (pxetui serves
        that itself, and the proxy would refuse it: it forwards to package hosts only)."""
        return "" if profile.mirror is not None else self.proxy()

    def _render(self, template: jinja2.Template, machine: MachineContext, profile: Profile) -> str:
        mirror = mirror_url(profile, machine.base_url)
        try:
            return template.render(
                machine=machine,
                settings=self.settings,
                late_command=self.late_command(machine),
                proxy=self._proxy_for(profile),
                repo=kickstart_repo(profile),
                mirror=mirror,
                # d-i's mirror/http/hostname takes HOST:PORT, mirror/http/directory the rest.
                mirror_host=mirror.removeprefix("http://").split("/", 1)[0] if mirror else "",
                mirror_directory=MIRROR_ROUTE + profile.name if mirror else "",
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
        # `http_proxy=`: the report goes to pxetui itself, never through the package proxy
        # (which refuses every host but the package hosts); busybox wget ignores an empty one.
        steps.append(f"http_proxy= wget -q -O /dev/null {shlex.quote(machine.done_url)} || true")
        return "; ".join(steps)
