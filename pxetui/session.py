"""The Session: owns the services, the registry and the plan; the one way in for operator actions.

Views (TUI, headless printer, tests) subscribe to `session.bus` and call the action methods
here; they never reach into a service. Services get a frozen ServiceContext, never the
Session, and ask their questions about machines through the `Booter` protocol that the
Session implements (pxetui/services/context.py; docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from pxetui.boot import firmware
from pxetui.boot.bootfiles import BootFiles, find_boot_files
from pxetui.boot.cache import require_servable, servable_problem
from pxetui.boot.profiles import Profile, default_cache_dir, load_profiles
from pxetui.boot.unattended import InstallSettings, numbered_hostname
from pxetui.errors import PxetuiError, UsageError
from pxetui.host import netif, vendors
from pxetui.host.mac import normalize_mac, unusable_mac
from pxetui.host.wol import send_wake
from pxetui.model.events import (
    AddressBack,
    AddressLost,
    DhcpDiscover,
    Error,
    Event,
    EventBus,
    InstallDone,
    PlanAdd,
    PlanAssign,
    PlanBootLocal,
    PlanEvent,
    PlanImport,
    PlanRemove,
    PlanUnassign,
    PlanUnknownPolicy,
    ReportExported,
    ServiceReady,
    WakeSent,
)
from pxetui.model.plan import Plan, PlanEntry, PlanError, check_hostname, parse_plan_csv
from pxetui.model.registry import Registry, Stage, needs_signed_chain
from pxetui.model.report import write_report
from pxetui.model.state import StateDir, StateWriter, default_state_dir
from pxetui.services import AddressAware, Service, build_services
from pxetui.services.context import BootPlan, ServiceContext, ServiceSettings
from pxetui.services.dhcp.server import DhcpService
from pxetui.services.proxy.uplink import NO_UPLINK, uplink_present

_log = logging.getLogger(__name__)

REGISTRY_SAVE_DELAY = 0.2  # seconds: stage changes arrive in bursts; one write per burst
SAVE_RETRY_SECONDS = 2.0  # a failed save (full disk) is tried again this long after
ADDRESS_CHECK_SECONDS = 2.0  # how often the served address is looked for on the interface
ACTION_TIMEOUT = 10.0  # seconds an operator action waits for a busy (or stopping) session loop

P = ParamSpec("P")
R = TypeVar("R")


def on_session_loop(method: Callable[Concatenate[Session, P], R]) -> Callable[Concatenate[Session, P], R]:
    """Run an operator action on the session's loop thread, whoever calls it.

    The services, the registry and the plan change only on that thread (events arrive there),
    so an action from the TUI's thread is handed over and waited for: nothing needs a lock,
    and the action's error (a bad MAC, an unknown profile) reaches the caller as before.
    """

    def call(self: Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = self.bus.loop
        if self.bus.on_loop_thread() or loop is None or not loop.is_running():
            return method(self, *args, **kwargs)
        result: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(method(self, *args, **kwargs))
            except BaseException as exc:  # handed to the caller's thread, raised there
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        try:
            return result.result(ACTION_TIMEOUT)
        except concurrent.futures.TimeoutError:
            reason = f"the services did not take {method.__name__} within {ACTION_TIMEOUT:.0f} s"
            raise PxetuiError(reason) from None

    functools.update_wrapper(call, method)
    return call


@dataclass(slots=True)
class SessionConfig:
    interface: str
    mode: str = "auto"
    state_dir: Path = field(default_factory=default_state_dir)
    profile_dirs: list[Path] = field(default_factory=list)
    cache_dir: Path = field(default_factory=default_cache_dir)
    boot_files: Path | None = None
    http_port: int = 8080
    pool: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None = None
    address: ipaddress.IPv4Interface | None = None
    plan_csv: Path | None = None
    force: bool = False
    snponly: bool = False
    menu_timeout: int = 30  # seconds before an unassigned PC's menu boots the local disk
    template_dirs: list[Path] = field(default_factory=list)
    install: InstallSettings = field(default_factory=InstallSettings)
    package_proxy: str = "auto"  # on | off | auto (on in full mode)
    allow_upstream: list[str] = field(default_factory=list)
    router: ipaddress.IPv4Address | None = None
    dns: list[ipaddress.IPv4Address] = field(default_factory=list)
    secure_boot: str = "auto"  # auto | signed | ipxe: which loader chain UEFI PCs get

    def service_settings(self) -> ServiceSettings:
        """The part of the configuration services read; checked here, once."""
        return ServiceSettings(
            mode=self.mode,
            force=self.force,
            pool=self.pool,
            http_port=self.http_port,
            menu_timeout=self.menu_timeout,
            cache_dir=self.cache_dir,
            template_dirs=tuple(self.template_dirs),
            install=self.install,
            package_proxy=self.package_proxy,
            allow_upstream=tuple(self.allow_upstream),
            router=self.router,
            dns=tuple(self.dns),
            secure_boot=self.secure_boot,
        )


BOOTING_STAGES = frozenset({Stage.DHCP, Stage.LOADER, Stage.MENU})


class Session:
    """Owns the services, the registry and the plan; implements the services' `Booter`."""

    def __init__(self, config: SessionConfig) -> None:
        self.settings = config.service_settings()  # a bad --mode, port or range fails here
        self.config = config
        self.bus = EventBus()
        self.registry = Registry()
        self.plan = Plan()
        self.profiles: dict[str, Profile] = {}
        self.state = StateDir(config.state_dir)
        self.services: list[Service] = []
        self.interface: netif.InterfaceInfo | None = None
        self.address: ipaddress.IPv4Interface | None = None
        self.boot_files: BootFiles | None = None
        self.mode = config.mode  # "auto" becomes "full" or "proxy" once DHCP has probed
        self._temp_address: ipaddress.IPv4Interface | None = None
        self._save_handle: asyncio.TimerHandle | None = None
        self._writer: StateWriter | None = None  # registry saves while the services run
        self._address_watch: asyncio.Task[None] | None = None
        self._opened = False
        # Profiles whose files a fetch is downloading now (fetch on first use): they may be
        # assigned, and their PCs wait at a retry script until the files are verified.
        self.fetching: set[str] = set()
        self.bus.subscribe(self._on_event)

    # -- life cycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Load state, profiles and the plan CSV. Touches no network; safe to call twice."""
        if self._opened:
            return
        self.state.open(owner=self.config.interface or "no interface yet")
        self.profiles = load_profiles(self.config.profile_dirs, self.config.cache_dir)
        self.state.load_checked("plan", self.plan.load_document)
        self.state.load_checked("machines", self.registry.load_document)
        if self.config.plan_csv is not None:
            self.import_plan_csv(self.config.plan_csv)
        for mac in self.plan.entries:
            self.registry.ensure(mac)
        self._opened = True

    async def start(self) -> None:
        """Open, check the interface, start every service, then emit service.ready."""
        self.bus.bind_loop(asyncio.get_running_loop())
        cfg = self.config
        # A wrong interface or a missing sudo is refused before the state directory is made.
        netif.check_interface(cfg.interface, cfg.address)
        netif.check_root()
        self.open()
        self._remove_leftover_address()
        info = netif.check_interface(cfg.interface, cfg.address)
        if cfg.address is not None and not netif.has_address(info, cfg.address):
            # Record it before adding, so a crashed session's address is removed next start.
            self.state.save("address", {"interface": cfg.interface, "address": str(cfg.address)})
            netif.add_address(cfg.interface, cfg.address)
            self._temp_address = cfg.address
            info = netif.find_interface(cfg.interface)
        self.interface = info
        address = cfg.address or info.address
        if address is None:
            raise UsageError(f"{cfg.interface} has no IPv4 address: give it one with --address CIDR")
        self.address = address
        started: list[Service] = []
        try:
            self._writer = StateWriter(self.state, self._save_failed, "pxetui-state")
            vendors.load()  # 0.1 s of parsing that would otherwise hold up the first unknown PC's answer
            self.boot_files = find_boot_files(cfg.boot_files, snponly=cfg.snponly)
            context = ServiceContext(
                interface=info,
                address=self.address,
                boot_files=self.boot_files,
                state=self.state,
                profiles=self.profiles,
                booter=self,
                emit=self.emit,
                settings=self.settings,
            )
            self.services = build_services(context)
            for service in self.services:
                await service.start()
                started.append(service)
                if isinstance(service, DhcpService):
                    self.mode = service.mode  # "auto" resolved by the probe
        except BaseException:
            for service in reversed(started):
                await _stop_quietly(service)
            self._close_writer()
            self._drop_temp_address()
            raise
        self._address_watch = asyncio.get_running_loop().create_task(
            self._watch_address(), name="pxetui-address-watch"
        )
        self.emit(
            ServiceReady(
                mode=self.mode,
                interface=cfg.interface,
                address=str(self.address.ip) if self.address else None,
                http_port=cfg.http_port,
                services={s.name: s.describe() for s in self.services},
                state_dir=str(self.state.path),
            )
        )

    def start_warnings(self) -> list[str]:
        """What the operator should hear once the services run (headless text: on stderr)."""
        warnings = []
        install = self.config.install
        if not install.ssh_keys and not install.password_hash:
            warnings.append(
                "no SSH key and no password: nobody can log in to the installed machines"
                " (give --ssh-key FILE or --password)"
            )
        if self.interface is not None and not uplink_present(self.interface.name):
            warnings.append(NO_UPLINK)
        return warnings

    async def stop(self) -> None:
        """Stop every service, write the state, remove the temporary address: all of it, always.

        A state directory that cannot be written (full, read-only, gone) does not keep the
        address on the interface: the failure is reported once the rest is done.
        """
        if self._address_watch is not None:
            self._address_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._address_watch
            self._address_watch = None
        for service in reversed(self.services):
            await _stop_quietly(service)
        self.services = []
        failure: OSError | None = None
        try:
            self._close_writer()
            self.flush()
        except OSError as exc:
            failure = exc
        finally:
            self._drop_temp_address()
            self.state.unlock()
        if failure is not None:
            raise PxetuiError(
                f"could not save the state in {self.state.path} at stop: {failure.strerror or failure};"
                " the plan and the machines' progress since the last save are lost. Free space or fix"
                " the directory's permissions before the next start."
            ) from failure

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()  # what it was handed lands before flush() writes the last word
            self._writer = None

    def flush(self) -> None:
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._opened:
            self.state.save("machines", self.registry.to_document())
            self.state.save("plan", self.plan.to_document())

    # -- events -------------------------------------------------------------------------------

    @property
    def http_base(self) -> str:
        """`http://ADDR:PORT`, what iPXE and installers use to reach the HTTP service."""
        assert self.address is not None, "the session has not started"
        return f"http://{self.address.ip}:{self.config.http_port}"

    def emit(self, event: Event) -> None:
        self.bus.emit(event)

    def _on_event(self, event: Event) -> None:
        if (
            isinstance(event, DhcpDiscover)
            and event.netboot  # a printer's or phone's DISCOVER must not use up a slot
            and event.mac
            and event.mac not in self.plan.entries
        ):
            entry = self.plan.take_for_unknown(event.mac)
            if entry is not None and entry.profile is not None:
                self._plan_changed(PlanAssign(mac=entry.mac, profile=entry.profile, policy=True))
        elif isinstance(event, InstallDone) and event.mac:
            # Never a second install: the next network boot goes to the disk until re-armed.
            self.plan.mark_installed(event.mac, event.ts)
            self._plan_changed(PlanBootLocal(mac=event.mac, boot_local=True, reason="installed"))
        change = self.registry.apply(event)
        if change is not None and change.stage_changed:
            self._schedule_registry_save()

    # -- what services may ask (the Booter protocol) ------------------------------------------

    def boot_plan(self, mac: str) -> BootPlan:
        entry = self.plan.get(mac)
        if entry is None:
            return BootPlan()
        profile = self.profiles.get(entry.profile) if entry.profile else None
        return BootPlan(
            profile=profile,
            boot_local=entry.boot_local,
            hostname=entry.hostname,
            fetching=profile is not None and profile.name in self.fetching,
        )

    def menu_choice(self, mac: str) -> Profile | None:
        machine = self.registry.get(mac)
        name = machine.menu_choice if machine is not None else None
        return self.profiles.get(name) if name else None

    def hostname_for(self, mac: str) -> str:
        """The plan's hostname, else the operator's pattern numbered in boot order (pc-01, ...)."""
        entry = self.plan.get(mac)
        if entry is not None and entry.hostname:
            return entry.hostname
        me = self.registry.get(mac)
        first = me.first_seen if me is not None and me.first_seen is not None else float("inf")
        earlier = sum(
            1
            for m in self.registry.machines.values()
            if m.first_seen is not None and (m.first_seen, m.mac) < (first, mac)
        )
        return numbered_hostname(self.config.install.hostname_pattern, earlier + 1)

    def mac_for_ip(self, ip: str) -> str | None:
        return self.registry.mac_for_ip(ip)

    def is_booting(self, mac: str) -> bool:
        machine = self.registry.get(mac)
        return machine is not None and machine.stage in BOOTING_STAGES

    def knows(self, mac: str) -> bool:
        return mac in self.registry.machines or mac in self.plan.entries

    def needs_signed_chain(self, mac: str) -> bool:
        return needs_signed_chain(self.registry.get(mac))

    def _schedule_registry_save(self) -> None:
        if not self._opened:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.state.save("machines", self.registry.to_document())
            return
        if self._save_handle is None:
            self._save_handle = loop.call_later(REGISTRY_SAVE_DELAY, self._save_registry)

    def _save_registry(self) -> None:
        self._save_handle = None
        document = self.registry.to_document()  # the snapshot, on the loop; the write is not
        if self._writer is not None:
            self._writer.save("machines", document)
            return
        try:
            self.state.save("machines", document)
        except OSError as exc:
            self._save_failed("machines", exc)

    def _save_failed(self, name: str, exc: OSError) -> None:
        """A save failed (on the writer's thread): say so, and try again soon and at stop."""
        what = "machine state" if name == "machines" else name
        self.emit(Error(reason=f"cannot save {what}: {exc}; trying again in {SAVE_RETRY_SECONDS:.0f} s"))
        loop = self.bus.loop
        if name == "machines" and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._retry_registry_save)

    def _retry_registry_save(self) -> None:
        if self._opened and self._save_handle is None and self._writer is not None:
            self._save_handle = asyncio.get_running_loop().call_later(SAVE_RETRY_SECONDS, self._save_registry)

    # -- operator actions (the one way in) ----------------------------------------------------

    def profile(self, name: str) -> Profile:
        profile = self.profiles.get(name)
        if profile is None:
            known = ", ".join(sorted(self.profiles)) or "none loaded"
            raise UsageError(f"unknown profile {name!r} (known: {known}); see `pxetui profiles`")
        return profile

    @on_session_loop
    def assign(self, mac: str, profile: str, hostname: str | None = None) -> PlanEntry:
        return self.assign_machines([mac], profile, hostname)[0]

    @on_session_loop
    def assign_machines(
        self, macs: Sequence[str], profile: str, hostname: str | None = None
    ) -> list[PlanEntry]:
        """Assign `profile` to every MAC, or (when one is refused) to none of them."""
        pcs = [self._pc_mac(mac) for mac in macs]
        chosen = self.profile(profile)
        for mac in pcs:
            self._require_fit(mac, chosen)
        # A PC assigned a profile whose files are missing or unverified would fail to boot:
        # refuse now, naming the `pxetui fetch` command that fixes it (unless a fetch runs).
        self._require_files(chosen)
        if hostname:
            if len(pcs) > 1:
                raise UsageError(
                    f"one hostname ({hostname}) cannot name {len(pcs)} PCs; assign them without one"
                )
            self._require_hostname(pcs[0], hostname)
        entries = []
        for mac in pcs:
            entry = self.plan.assign(mac, profile, hostname)
            self._plan_changed(PlanAssign(mac=mac, profile=profile, hostname=entry.hostname))
            entries.append(entry)
        return entries

    def _require_files(self, profile: Profile) -> None:
        """The profile's files are here and verified, or a fetch of them is running now.

        Being fetched is a state, not a way round the check: the HTTP service sends such a
        PC a script that waits and asks again, never a URL of a file not yet verified.
        """
        if profile.name not in self.fetching:
            require_servable(profile, self.config.cache_dir)

    # -- fetch on first use ---------------------------------------------------------------

    @on_session_loop
    def add_profile(self, profile: Profile) -> None:
        """A profile made while pxetui runs (an ISO imported from the TUI): servable from now on."""
        self.profiles[profile.name] = replace(profile, cache_dir=self.config.cache_dir)

    @on_session_loop
    def fetch_started(self, profile: str) -> None:
        """A fetch of `profile`'s files runs: it may be assigned; its PCs wait for the files."""
        self.fetching.add(self.profile(profile).name)

    @on_session_loop
    def fetch_finished(self, profile: str, error: str | None = None) -> None:
        """The fetch ended: verified files boot; after a failure its waiting PCs are named."""
        self.fetching.discard(profile)
        if error is None:
            return
        waiting = sorted(mac for mac, e in self.plan.entries.items() if e.profile == profile)
        if waiting:
            shown = ", ".join(waiting[:4]) + (f" and {len(waiting) - 4} more" if len(waiting) > 4 else "")
            error += (
                f"; {len(waiting)} PC(s) assigned to {profile} ({shown}) cannot boot it:"
                " fetch it again or assign another profile"
            )
        self.emit(Error(reason=f"fetching {profile} failed: {error}"))

    @staticmethod
    def _pc_mac(text: str) -> str:
        """`text` as a normalised MAC that a PC can have (broadcast, zero, multicast refused)."""
        mac = normalize_mac(text)
        reason = unusable_mac(mac)
        if reason:
            raise UsageError(reason)
        return mac

    def _require_hostname(self, mac: str, hostname: str) -> None:
        reason = check_hostname(hostname) or self.plan.hostname_taken(hostname, mac)
        if reason:
            raise UsageError(reason)

    def _require_fit(self, mac: str, profile: Profile) -> None:
        """A profile the PC's firmware or CPU cannot start is refused, whoever asks."""
        machine = self.registry.get(mac)
        arch = machine.arch if machine is not None else None
        if firmware.fits(arch, profile.arch, profile.firmware):
            return
        row = firmware.client_arch(arch)
        assert row is not None  # an unknown arch fits everything
        raise UsageError(
            f"{profile.name} does not fit {mac}: that PC is {row.name} (option 93 = {arch}), the"
            f" profile boots {'/'.join(profile.arch)} on {'/'.join(profile.firmware)};"
            " choose a profile made for it (the assign dialog lists only those)"
        )

    @on_session_loop
    def unassign(self, mac: str) -> None:
        mac = normalize_mac(mac)
        self.plan.unassign(mac)
        self._plan_changed(PlanUnassign(mac=mac))

    @on_session_loop
    def add_machine(self, mac: str, hostname: str | None = None, profile: str | None = None) -> PlanEntry:
        """Add `mac` to the plan (with `profile` assigned): all of it or, when refused, nothing."""
        mac = self._pc_mac(mac)
        if hostname:
            self._require_hostname(mac, hostname)
        if profile is not None:
            # Everything assign would refuse is refused before the MAC is added:
            # a refused profile must not leave half an entry in the plan.
            chosen = self.profile(profile)
            self._require_fit(mac, chosen)
            self._require_files(chosen)
        entry = self.plan.add(mac)
        if hostname:
            entry.hostname = hostname
        self._plan_changed(PlanAdd(mac=mac, hostname=entry.hostname))
        if profile is not None:
            entry = self.assign(mac, profile)
        return entry

    @on_session_loop
    def remove_machine(self, mac: str) -> None:
        """Take `mac` out of the plan; a machine that never booted leaves the table too."""
        mac = normalize_mac(mac)
        if self.plan.get(mac) is None:
            raise UsageError(f"{mac} is not in the plan")
        self.plan.remove(mac)
        machine = self.registry.get(mac)
        if machine is not None and machine.boots == 0:
            del self.registry.machines[mac]
        self._plan_changed(PlanRemove(mac=mac))

    @on_session_loop
    def set_boot_local(self, mac: str, boot_local: bool = True) -> None:
        """Boot the local disk next time, or (False) re-arm: install again on the next boot."""
        mac = normalize_mac(mac)
        self.plan.set_boot_local(mac, boot_local)
        self._plan_changed(PlanBootLocal(mac=mac, boot_local=boot_local))

    @on_session_loop
    def set_unknown_policy(self, profile: str | None, count: int = 0) -> None:
        if profile is not None:
            self._require_files(self.profile(profile))
            if count <= 0:
                raise UsageError("give the number of unknown machines that get the profile (1 or more)")
        self.plan.unknown.profile = profile
        self.plan.unknown.remaining = count if profile else 0
        self._plan_changed(PlanUnknownPolicy(profile=profile, remaining=self.plan.unknown.remaining))

    @on_session_loop
    def import_plan_csv(self, path: Path) -> int:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError([f"{path}: cannot read: {exc}"]) from exc
        entries = parse_plan_csv(text, source=str(path), known_profiles=self.profiles)
        self._require_servable_rows(entries, str(path))
        count = self.plan.merge(entries)
        for entry in entries:
            if entry.remove:
                machine = self.registry.get(entry.mac)
                if machine is not None and machine.boots == 0:
                    del self.registry.machines[entry.mac]
            else:
                self.registry.ensure(entry.mac)
        self._plan_changed(PlanImport(source=str(path), count=count))
        return count

    def _require_servable_rows(self, entries: list[PlanEntry], source: str) -> None:
        """A plan row whose profile cannot boot yet is refused, as the assign form refuses it."""
        problems: list[str] = []
        checked: dict[str, str | None] = {}
        for entry in entries:
            name = entry.profile
            if entry.remove or name is None:
                continue
            if name not in checked:
                try:
                    chosen = self.profile(name)
                except UsageError as exc:
                    checked[name] = str(exc)
                else:
                    problem = (
                        None if name in self.fetching else servable_problem(chosen, self.config.cache_dir)
                    )
                    checked[name] = None if problem is None else str(problem)
            reason = checked[name]
            if reason is not None:
                problems.append(f"{source}: {entry.mac}: {reason}")
        if problems:
            raise PlanError(problems)

    def _plan_changed(self, event: PlanEvent) -> None:
        if self._opened or self.state.path.is_dir():
            self.state.save("plan", self.plan.to_document())
        if event.mac is not None and not isinstance(event, PlanRemove):
            self.registry.ensure(event.mac)
        self.emit(event)

    # -- the served address -------------------------------------------------------------------

    async def _watch_address(self) -> None:
        """Tell the services (and the operator) when the served address leaves the interface."""
        assert self.address is not None
        iface, ip = self.config.interface, self.address.ip
        present = True
        while True:
            await asyncio.sleep(ADDRESS_CHECK_SECONDS)
            now = netif.interface_has_ip(iface, ip)
            if now == present:
                continue
            present = now
            for service in self.services:
                if isinstance(service, AddressAware):
                    service.address_present(present)
            event = AddressBack if present else AddressLost
            self.emit(event(interface=iface, address=str(ip)))

    # -- temporary address --------------------------------------------------------------------

    def _remove_leftover_address(self) -> None:
        """Remove the temporary address a crashed session on this interface left behind.

        Only on the interface being served: the record is a file anyone with the state
        directory can write, and it must never take an address off another interface.
        """
        record = self.state.load("address")
        if not record:
            return
        try:
            interface = str(record["interface"])
            address = ipaddress.IPv4Interface(str(record["address"]))
        except (TypeError, KeyError, ValueError):
            self.state.file("address").unlink(missing_ok=True)  # not ours to act on
            return
        if interface != self.config.interface:
            return  # kept for a later session on that interface, which removes it
        netif.remove_address(interface, address)
        self.state.file("address").unlink(missing_ok=True)

    def _drop_temp_address(self) -> None:
        if self._temp_address is None:
            return
        netif.remove_address(self.config.interface, self._temp_address)
        self._temp_address = None
        with contextlib.suppress(OSError):  # a read-only state directory must not keep the address
            self.state.file("address").unlink(missing_ok=True)

    # -- session report and wake-on-LAN (used by the TUI) -------------------------------------

    @on_session_loop
    def export_report(self, directory: Path | None = None) -> tuple[Path, Path]:
        """Write pxetui-report.csv and .json (default: in the state directory)."""
        paths = write_report(directory or self.state.path, self.registry, self.plan)
        self.emit(ReportExported(csv=str(paths[0]), json=str(paths[1])))
        return paths

    @on_session_loop
    def wake(self, macs: Iterable[str]) -> int:
        """Send wake-on-LAN magic packets for `macs` on the serving interface."""
        targets = [normalize_mac(m) for m in macs]
        if self.interface is None:
            raise UsageError("wake-on-LAN needs a running session: start pxetui on an interface first")
        count = send_wake(self.interface.name, self.interface.mac, targets, self.address)
        self.emit(WakeSent(macs=targets, interface=self.interface.name))
        return count


async def _stop_quietly(service: Service) -> None:
    try:
        await service.stop()
    except (PxetuiError, OSError) as exc:
        _log.error("stopping %s failed: %s", service.name, exc)  # one line, not a traceback
