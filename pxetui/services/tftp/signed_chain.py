"""What TFTP serves for the Secure Boot chain beyond the loader catalog: grub.cfg per MAC,
the menu's choices, and the profile files GRUB loads.

Debian 12's signed GRUB reads only TFTP (it has no `http` module and, under Secure Boot,
cannot load one), so the answers the HTTP service gives iPXE are given here to GRUB, with the
same rules (docs/architecture.md, README "Safe on a shared network"):
  - every name is split by `boot.grub_config.parse_name` and each part looked up (the MAC
    among machines pxetui knows, the profile among the loaded ones, the role among its
    files): nothing a client sends is joined to a path;
  - a machine's answer goes to the address that holds it (with its token), is refused to an
    address another machine holds, and goes without the token to an address nobody holds
    yet (proxy mode); a MAC pxetui does not know gets "not found" and no event names it;
  - profile files are served only once verified, like over HTTP.
The decisions mirror the HTTP service's for iPXE: done -> local disk; assigned -> its
kernel and initrd with its command line; else the menu of what this chain can boot.

Shim asks for a few optional files (revocations, its certificate) and GRUB for its module
lists; they do not exist and that is normal, so they are refused without an event (which
would show as the PC's last error).

A profile's own loaders (`secure_boot: {vendor, shim, grub}`) are served here too, as
`profiles/NAME/shimx64.efi` and `.../grubx64.efi`, only once verified (`bootfiles.profile_chain`);
their GRUB's grub.cfg names are answered like the packages' chains'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pxetui.boot import grub_config
from pxetui.boot.bootfiles import PROFILE_LOADERS, SignedChain, profile_chain
from pxetui.boot.cache import FileState, profile_status, verified_path
from pxetui.boot.grub_config import GrubRenderer, GrubRequest
from pxetui.boot.ipxe_scripts import TemplateError
from pxetui.boot.profiles import Profile
from pxetui.boot.unattended import MachineContext, Renderer
from pxetui.errors import UsageError
from pxetui.model.events import Error, Event, MenuSelect
from pxetui.model.tokens import TokenRefused, Tokens
from pxetui.services.context import ServiceContext
from pxetui.services.tftp.packets import ERR_ACCESS, ERR_NOT_FOUND, ERR_UNDEFINED
from pxetui.services.tftp.requests import Refused
from pxetui.services.tftp.transfer import BytesSource, FileSource, Source

# Names a healthy signed boot asks for and does without (shim 15.7+, GRUB's normal mode).
_OPTIONAL = re.compile(
    r"(^|/)(revocations(_[a-z]+)?\.efi|shim_certificate(_\d+)?\.efi"
    r"|(x86_64|arm64|i386)-efi/[a-z]+\.lst|(x86_64|arm64|i386)-efi/grub\.cfg)$"
)
LOCAL = "local"


class Quiet(Refused):
    """Refused without an event: a file the PC asks for on the way and does without."""


@dataclass(slots=True)
class Served:
    """What a name resolved to: the bytes, how the registry counts it, who it is for."""

    source: Source
    kind: str  # loader | script | kernel | initrd (the HTTP service's kinds)
    mac: str | None
    answer: str | None = None
    events: list[Event] = field(default_factory=list)  # emitted before the transfer starts


class SignedChainFiles:
    """Resolves the Secure Boot chain's names for one TFTP service."""

    def __init__(
        self,
        context: ServiceContext,
        unattended: Renderer | None = None,
        tokens: Tokens | None = None,
    ) -> None:
        self._context = context
        self._booter = context.booter
        settings = context.settings
        self._grub = GrubRenderer(settings.template_dirs)
        self._unattended = unattended or Renderer(
            template_dirs=list(settings.template_dirs), settings=settings.install
        )
        self._tokens = tokens or Tokens(context.state, known=self._booter.knows)
        self._shim_of: dict[str, SignedChain] = {}  # client address -> the chain whose shim it got

    # -- loaders ------------------------------------------------------------------------------

    def loader_served(self, name: str, client: str) -> None:
        """A catalog file goes to `client`: remember the chain of a shim, for its GRUB."""
        chain = self._context.boot_files.chain_of(name)
        if chain is not None and name == chain.shim:
            self._shim_of[client] = chain

    def grub_beside_shim(self, name: str, client: str) -> str | None:
        """The catalog name of the GRUB a shim asks for at the TFTP root (shim 16 does so).

        Which GRUB: the one of the chain whose shim this client was just served, else the
        default chain's of that file name. A profile's own GRUB is not in the catalog:
        None, and `resolve` serves it.
        """
        chain = self._shim_of.get(client)
        if chain is not None and name == chain.grub.rsplit("/", 1)[-1]:
            return chain.grub if chain.profile is None else None
        return next(
            (c.grub for c in self._context.boot_files.chains if c.grub.rsplit("/", 1)[-1] == name), None
        )

    # -- rendered answers and profile files ---------------------------------------------------

    def _profile_chains(self) -> list[SignedChain]:
        """The chains of profiles with their own loaders, those whose files are verified."""
        cache_dir = self._context.settings.cache_dir
        found = (
            profile_chain(p, cache_dir) for _, p in sorted(self._context.profiles.items()) if p.own_loaders
        )
        return [chain for chain in found if chain is not None]

    def _all_chains(self) -> list[SignedChain]:
        return [*self._context.boot_files.chains, *self._profile_chains()]

    def _profile_loader(self, name: str, client: str, owner: str | None) -> Served | None:
        """A profile's own shim or GRUB (`profiles/NAME/FILE`, or GRUB asked at the root)."""
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == PROFILE_LOADERS:
            profile = self._context.profiles.get(parts[1])
            chain = profile_chain(profile, self._context.settings.cache_dir) if profile else None
        elif len(parts) == 1:
            chain = self._shim_of.get(client)  # the GRUB of the profile shim it was just served
        else:
            return None
        if chain is None or chain.profile is None:
            return None
        role = {chain.shim.rsplit("/", 1)[-1]: "shim", chain.grub.rsplit("/", 1)[-1]: "grub"}.get(parts[-1])
        if role is None or (len(parts) == 1 and role != "grub"):
            return None
        profile = self._context.profiles[chain.profile]
        cache_dir = self._context.settings.cache_dir
        path = verified_path(profile, role, cache_dir)
        if path is None:
            return None
        if profile.files[role].path is None and not path.resolve().is_relative_to(
            (cache_dir / profile.name).resolve()
        ):
            raise Refused(ERR_NOT_FOUND, f"{path} points outside the cache; not served")  # a planted symlink
        try:
            source = FileSource(str(path))
        except OSError as exc:
            raise Refused(ERR_NOT_FOUND, f"{path.name} cannot be read: {exc.strerror}") from exc
        if role == "shim":
            self._shim_of[client] = chain
        return Served(source, "loader", owner)

    def resolve(self, name: str, client: str, owner: str | None) -> Served:
        """What `name` asked by `client` (held by `owner`) is, or Refused / Quiet."""
        loader = self._profile_loader(name, client, owner)
        if loader is not None:
            return loader
        chains = self._all_chains()
        request = grub_config.parse_name(name, {prefix for chain in chains for prefix in chain.prefixes})
        if request is None:
            if _OPTIONAL.search(name):
                raise Quiet(ERR_NOT_FOUND, f"{name[:80]} is not served here (optional)")
            raise Refused(ERR_NOT_FOUND, f"{name[:80]} is not a boot file served here")
        try:
            if request.what == grub_config.FILE:
                return self._profile_file(request, owner)
            if request.what == grub_config.BOOTSTRAP:
                text = self._grub.bootstrap(request.prefix)
                return Served(BytesSource(text.encode()), "script", owner, answer="bootstrap")
            return self._for_machine(request, client, owner, chains)
        except TemplateError as exc:
            self._error(owner, client, str(exc), name)
            raise Refused(ERR_UNDEFINED, "pxetui could not render this answer") from exc

    def _chain(self, request: GrubRequest, client: str, chains: list[SignedChain]) -> SignedChain | None:
        """The chain whose GRUB asked: the one whose shim this address got, if its prefix fits
        (two GRUBs may share a prefix, like `/grub`), else the first with that prefix."""
        served = self._shim_of.get(client)
        if served is not None and request.prefix in served.prefixes:
            return served
        return next((c for c in chains if request.prefix in c.prefixes), None)

    def _for_machine(
        self, request: GrubRequest, client: str, owner: str | None, chains: list[SignedChain]
    ) -> Served:
        mac = request.mac
        assert mac is not None
        token = self._may_boot(mac, client, owner)
        chain = self._chain(request, client, chains)
        if request.what == grub_config.SELECT:
            return self._select(request, mac, client, token, chain)
        plan = self._booter.boot_plan(mac)
        if plan.boot_local:
            return self._text(self._grub.local(mac), mac, LOCAL)
        if plan.profile is not None:
            return self._text(self._boot(plan.profile, mac, token), mac, plan.profile.name)
        systems = self._menu_systems(chain)
        vendor = chain.vendor if chain is not None else "none"
        menu = self._grub.menu(
            mac, vendor, systems, self._context.settings.menu_timeout, local_choice=self._local_choice()
        )
        return self._text(menu, mac, "menu")

    def _select(
        self, request: GrubRequest, mac: str, client: str, token: bool, chain: SignedChain | None
    ) -> Served:
        choice = request.choice or ""
        if choice in (grub_config.LOCAL_CHOICE, self._local_choice()):
            served = self._text(self._grub.local(mac), mac, LOCAL)
        else:
            profile = self._context.profiles.get(choice)
            if profile is None or profile not in self._menu_systems(chain):
                what = f"menu choice {choice[:64]!r}: not a profile this PC's chain can boot now"
                self._error(mac, client, what, None)
                raise Refused(ERR_NOT_FOUND, "no such choice")
            served = self._text(self._boot(profile, mac, token), mac, profile.name)
        served.events.append(MenuSelect(mac=mac, choice=choice, client=client))
        return served

    def _local_choice(self) -> str:
        """The local disk's choice: the `action: local` profile's name (as in iPXE's menu)."""
        local = [name for name, p in sorted(self._context.profiles.items()) if p.action == LOCAL]
        return local[0] if local else grub_config.LOCAL_CHOICE

    def _menu_systems(self, chain: SignedChain | None) -> list[Profile]:
        """Profiles this chain boots now: signed by its vendor, for its CPU, files verified."""
        if chain is None:
            return []
        cache_dir = self._context.settings.cache_dir
        return [
            profile
            for _, profile in sorted(self._context.profiles.items())
            if profile.secure_boot == chain.vendor
            and chain.cpu in profile.arch
            and "uefi" in profile.firmware
            and all(s.state is FileState.PRESENT for s in profile_status(profile, cache_dir))
        ]

    def _boot(self, profile: Profile, mac: str, token: bool) -> str:
        machine = MachineContext(
            mac=mac,
            hostname=self._booter.hostname_for(mac),
            token=self._token(mac) if token else "",
            profile=profile.name,
            base_url=self._context.http_base,
        )
        if profile.action == "local" or "kernel" not in profile.files:
            return self._grub.local(mac)
        try:
            cmdline = self._unattended.cmdline(profile, machine) if profile.cmdline else ""
        except UsageError as exc:
            raise TemplateError(f"profile {profile.name} ({profile.source}): cmdline: {exc}") from exc
        return self._grub.boot(profile, mac, machine.hostname, cmdline)

    def _token(self, mac: str) -> str:
        try:
            return self._tokens.for_mac(mac)
        except TokenRefused as exc:
            self._context.emit(Error(service="tftp", reason=str(exc)))
            raise Refused(ERR_UNDEFINED, str(exc)) from exc

    def _may_boot(self, mac: str, client: str, owner: str | None) -> bool:
        """As HTTP's boot script: True with the token (its own address), else without or refused."""
        if owner == mac:
            return True
        if owner is not None:
            self._error(owner, client, f"{client} ({owner}) asked for the grub.cfg of {mac}; refused", None)
            raise Refused(ERR_ACCESS, f"only {mac} itself gets this")
        if not self._booter.knows(mac):
            raise Quiet(ERR_NOT_FOUND, "no such machine")  # no event: it would name a made-up MAC
        return False

    def _profile_file(self, request: GrubRequest, owner: str | None) -> Served:
        profile = self._context.profiles.get(request.profile or "")
        role = request.role or ""
        if profile is None or role not in profile.files:
            raise Refused(ERR_NOT_FOUND, "no such profile file")
        cache_dir = self._context.settings.cache_dir
        path = profile.file_path(role, cache_dir)
        home = (cache_dir / profile.name).resolve()
        if profile.files[role].path is None and not path.resolve().is_relative_to(home):
            # A symlink planted in the cache must not serve anything outside it.
            raise Refused(ERR_NOT_FOUND, f"{path} points outside the cache; not served")
        if verified_path(profile, role, cache_dir) is None:
            raise Refused(
                ERR_NOT_FOUND,
                f"profile {profile.name}: its {role} is missing or unverified;"
                f" run `pxetui fetch {profile.name}`",
            )
        try:
            source = FileSource(str(path))
        except OSError as exc:
            raise Refused(ERR_NOT_FOUND, f"{path.name} cannot be read: {exc.strerror}") from exc
        return Served(source, role, owner)

    def _text(self, text: str, mac: str, answer: str) -> Served:
        return Served(BytesSource(text.encode()), "script", mac, answer=answer)

    def _error(self, mac: str | None, client: str, reason: str, path: str | None) -> None:
        self._context.emit(Error(mac=mac, service="tftp", reason=reason, client=client, path=path))
