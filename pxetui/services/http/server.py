"""The HTTP service: iPXE scripts per MAC, boot loaders, OS files, install files and reports.

Routes (nothing else is served; there are no directory listings):
  /boot.ipxe                  the script DHCP hands iPXE; with ?mac= the answer for that PC
                              (its plan, else the menu; &waited=S: the menu's own re-ask)
  /select?mac=&profile=       the menu's choice (menu.select), answered with that boot script
  /loaders/<name>             iPXE loaders from the boot-files catalog (UEFI HTTP boot)
                              (also autoexec.ipxe beside iPXE's signed shim, and a
                              profile's own shim for iPXE's `shim` command)
  /ramdisk/<shim>.img         a Secure Boot chain as a FAT disk image (boot/ramdisk.py), for
                              a Secure Boot PC's UEFI HTTP Boot; made on the first request
  /files/<profile>/<role>     kernel / initrd / iso of a profile (sendfile, Range, HEAD)
  /config/<mac>/<name>        install files rendered for that one machine (preseed.cfg, ...)
  /mirror/<profile>/<path>    a profile's local package mirror (`mirror: {path: DIR}`), read-only
  /done, /failed              the installer's report, checked against the machine's token

Every name a client sends is looked up in a table (catalog, profiles, roles, template names);
no client text is ever joined onto a filesystem path, so `..`, encoded slashes and the like
cannot reach anything: they are simply not in the table (404). The one exception is a local
mirror, a directory tree by nature: there a path's parts are checked (no empty, `.` or `..`
part) and the file it resolves to (symlinks followed) must still be inside the mirror
directory and a regular file, else 404; no listings there either.

The menu (an unassigned PC) offers only profiles whose files are present and verified; an
unattended install asks "erase the disk?" at the PC first. Left alone, the PC asks again every
`menu_poll_interval` seconds with the wait so far in the URL (the server keeps no timer per
PC), so an assignment made meanwhile starts, and after --menu-timeout it gets the local disk.
Connections are accepted by connections.py (caps below the open-file limit, 503 over them).

One PC cannot read or change another. The registry knows which machine holds each address
(`Booter.mac_for_ip`: leased by pxetui or seen in the PC's DHCP REQUEST), and:
  - install files (hostname, SSH keys, the token) and /done, /failed are answered only to the
    address that holds that MAC; any other address, known or not, gets 403;
  - a boot script or menu choice for a MAC is refused (403) to an address another machine
    holds. An address no machine holds yet still gets it, since in proxy mode iPXE can ask
    before pxetui has seen its address, but without the token: the token only ever goes to
    the machine's own address;
  - a request naming a MAC pxetui does not know (it never booted through pxetui and is not in
    the plan) is refused before any event names that MAC, so made-up MACs create no machine
    and no token; those refusals are reported with no MAC, at most once a second per kind;
  - file transfers are credited to the machine holding the client's address (the newest
    holder, when an address moves), else to the known MAC the URL names.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from pxetui.boot import ramdisk
from pxetui.boot.bootfiles import PROFILE_LOADERS, SignedChain, profile_chain
from pxetui.boot.cache import FileState, profile_status, verified_path
from pxetui.boot.firmware import ipxe_fits
from pxetui.boot.ipxe_scripts import EXTRA_ACTIONS, MenuPoll, ScriptRenderer, TemplateError
from pxetui.boot.profiles import FILE_ROLES, Profile
from pxetui.boot.unattended import TEMPLATE_FILES, MachineContext, Renderer
from pxetui.errors import UsageError
from pxetui.host.mac import MacError, normalize_mac
from pxetui.model.events import Error, HttpDone, HttpRequest, InstallDone, InstallFailed, MenuSelect
from pxetui.model.tokens import TokenRefused, Tokens
from pxetui.services.context import Emit, ServiceContext
from pxetui.services.http.connections import ConnectionGate, ConnectionLimits, accept_loop, listen
from pxetui.services.http.sendfile_pool import SendfilePool
from pxetui.services.http.sendfile_response import TrackedFileResponse
from pxetui.services.http.transfers import BodyTransfer, TransferMonitor

SCRIPT_TYPE = "text/plain"
MENU_DEFAULT = "local-disk"  # what an unassigned PC boots when nobody chose in its menu
SIGNED_IPXE = "shim"  # query: "1" from iPXE's signed build (set by autoexec.ipxe)
CLIENT_INFO = ("arch", "platform", "uuid", "serial", "manufacturer", "product", "lm")
MAX_INFO_LEN = 128  # firmware strings are short; anything longer is cut, not trusted
MAX_REASON_LEN = 300
REFUSAL_REPORT_INTERVAL = 1.0  # seconds between `error` events of one kind about no known machine
MENU_POLL_INTERVAL = 10  # seconds between an unassigned PC's questions "anything for me now?"
MAX_WAITED_DIGITS = 7  # ?waited= is seconds; longer text is not a wait, it is an attack
CONFIG_NAMES = frozenset(name for files in TEMPLATE_FILES.values() for name in files)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RefusalReports:
    """`error` events for refusals of one kind, at most one a second, and the last one always.

    A flood of requests naming made-up MACs, or of connections over a cap, costs the operator
    one line a second per kind, with `count` and `since_last`; a flood that ends within the
    second still gets its closing line (the count it reached), so no refusal goes unreported.
    The kinds are this service's own fixed words, so the tables do not grow with what clients send.
    """

    def __init__(self, emit: Emit, interval: float = REFUSAL_REPORT_INTERVAL) -> None:
        self._emit = emit
        self.interval = interval
        self.counts: dict[str, int] = {}
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (time of last event, count then)
        self._pending: dict[str, tuple[str, str | None, str | None]] = {}  # not yet reported
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def report(self, kind: str, reason: str, path: str | None, client: str | None) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last[0] < self.interval:
            self._pending[kind] = (reason, path, client)
            self._flush_later(kind, last[0] + self.interval - now)
            return
        self._send(kind, now, reason, path, client)

    def _flush_later(self, kind: str, delay: float) -> None:
        if kind in self._timers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test): the next report carries the count
        self._timers[kind] = loop.call_later(delay, self._flush, kind)

    def _flush(self, kind: str) -> None:
        self._timers.pop(kind, None)
        pending = self._pending.pop(kind, None)
        if pending is not None:
            self._send(kind, time.monotonic(), *pending)

    def _send(self, kind: str, now: float, reason: str, path: str | None, client: str | None) -> None:
        self._pending.pop(kind, None)
        count = self.counts[kind]
        last = self._last.get(kind)
        self._last[kind] = (now, count)
        self._emit(
            Error(
                service="http",
                reason=reason,
                path=path,
                client=client,
                count=count,
                since_last=count - last[1] if last is not None else count,
            )
        )

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class HttpService:
    name = "http"

    def __init__(
        self,
        context: ServiceContext,
        *,
        idle_timeout: float = 60.0,
        stall_timeout: float = 60.0,
        progress_interval: float = 0.5,
        unattended: Renderer | None = None,
        sendfile_workers: int | None = None,
        menu_poll_interval: int = MENU_POLL_INTERVAL,
        connection_limits: ConnectionLimits | None = None,
        tokens: Tokens | None = None,
    ) -> None:
        if idle_timeout <= 0 or stall_timeout <= 0 or progress_interval <= 0 or menu_poll_interval <= 0:
            raise UsageError("HTTP timeouts and the progress and poll intervals must be more than 0 seconds")
        self._context = context
        self._booter = context.booter
        self._profiles = context.profiles
        self.idle_timeout = idle_timeout
        self.menu_poll_interval = menu_poll_interval
        template_dirs = context.settings.template_dirs
        self._scripts = ScriptRenderer(template_dirs)
        # Kernel command lines and installer answers (preseed, autoinstall, kickstart).
        self._unattended = unattended or Renderer(template_dirs=list(template_dirs))
        # One table with the TFTP service's (GRUB's command lines): one token per machine.
        self._tokens = tokens or Tokens(context.state, known=self._booter.knows)
        self.refusals = RefusalReports(context.emit)
        # Connections turned away (over a cap, or no descriptor to accept them): counted apart
        # from the refusals about unknown machines, reported the same way.
        self.turned_away = RefusalReports(context.emit)
        self._limits = connection_limits
        self.gate: ConnectionGate | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self.monitor = TransferMonitor(context.emit, progress_interval, stall_timeout)
        self.sendfile = SendfilePool(sendfile_workers)
        self._runner: web.AppRunner | None = None
        self.rejected = 0  # requests answered 4xx: bad input is counted, never fatal
        self.port = context.settings.http_port
        self._host = str(context.address.ip)
        self._base = context.http_base
        self._ramdisks = ramdisk.RamdiskImages(context.state.path / "ramdisk")

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        host = self._host
        app = web.Application(middlewares=[self._count_rejections], client_max_size=64 * 1024)
        app.router.add_get("/boot.ipxe", self._boot)
        app.router.add_get("/select", self._select)
        app.router.add_get("/loaders/{name:.+}", self._loader)
        app.router.add_get(ramdisk.URL_PREFIX + "{name:.+}", self._ramdisk)
        app.router.add_get("/files/{profile}/{role}", self._file)
        app.router.add_get("/config/{mac}/{name}", self._config)
        app.router.add_get("/mirror/{profile}/{path:.*}", self._mirror)
        for path, failed in (("/done", False), ("/failed", True)):
            handler = self._report_handler(failed)
            app.router.add_get(path, handler)
            app.router.add_post(path, handler)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            # Idle keep-alive connections, and connections that never finish their request
            # headers, are closed after this long.
            keepalive_timeout=self.idle_timeout,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            listener = listen(host, self.port, backlog=256)
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"HTTP port {self.port} on {host} is already in use by another program;"
                    " stop it or choose another port with --http-port N"
                ) from exc
            raise UsageError(
                f"cannot serve HTTP on {host}:{self.port}: {exc.strerror or exc};"
                " choose another port with --http-port N"
            ) from exc
        self._runner = runner
        # Measured now, with DHCP's, TFTP's and the state's descriptors already open.
        self.gate = ConnectionGate(self._limits or ConnectionLimits.for_process())
        assert runner.server is not None
        self._listener = listener
        self._accepting = asyncio.create_task(
            accept_loop(listener, self.gate, runner.server, self._turn_away), name="pxetui-http-accept"
        )
        self.sendfile.start()
        self.monitor.start()

    def _turn_away(self, kind: str, reason: str, client: str) -> None:
        self.turned_away.report(kind, reason, None, client or None)

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self.monitor.stop()
        self.refusals.close()
        self.turned_away.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.sendfile.close()
        self._tokens.flush()  # tokens handed out are on disk before the session ends

    def describe(self) -> dict[str, object]:
        gate = self.gate
        turned = self.turned_away.counts
        return {
            "port": self.port,
            "address": self._host,
            "connections": gate.live() if gate else 0,
            "connection_cap": gate.limits.cap if gate else 0,
            "per_address_cap": gate.limits.per_address if gate else 0,
            "turned_away_busy": turned.get("busy", 0),
            "turned_away_per_address": turned.get("per-address", 0),
            "accept_failed": turned.get("no descriptor", 0),
            "active": len(self.monitor.active),
            "rejected": self.rejected,
            "refused_unknown": sum(self.refusals.counts.values()),
            "stalled": self.monitor.stalled_total,
            "sendfile_workers": self.sendfile.size,
            "sent_by_workers": self.sendfile.bytes_total,
            "responses_by_loop": self.sendfile.unavailable_total,  # for want of descriptors to hand over
        }

    # -- helpers ------------------------------------------------------------------------------

    @web.middleware
    async def _count_rejections(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                self.rejected += 1
            raise
        if response.status >= 400:
            self.rejected += 1
        return response

    def _client(self, request: web.Request) -> str:
        return request.remote or ""

    def _owner(self, request: web.Request) -> str | None:
        """The machine that holds the client's address now, if pxetui knows one."""
        return self._booter.mac_for_ip(self._client(request))

    def _mac_of(self, request: web.Request, text: str | None) -> str | None:
        """The MAC a request names (query or path), else the machine holding its address."""
        if text:
            try:
                return normalize_mac(text)
            except MacError as exc:
                raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        return self._owner(request)

    def _may_boot(self, request: web.Request, mac: str, what: str) -> bool:
        """Whether the request may have `mac`'s boot script or menu choice; True: with the token.

        The machine's own address: yes, with its token. Another machine's address: 403. An
        address no machine holds: yes for a MAC pxetui knows, without the token (in proxy mode
        iPXE can ask before the registry has its address); 404 for a MAC it does not know.
        """
        owner = self._owner(request)
        if owner == mac:
            return True
        client = self._client(request)
        if owner is not None:
            self._error(owner, request, f"{client} ({owner}) asked for {what} of {mac}; refused")
            raise web.HTTPForbidden(text=f"{mac} is another machine\n")
        if not self._booter.knows(mac):
            self._refused(request, "unknown machine", f"{what} of {mac}, a MAC pxetui does not know")
            raise web.HTTPNotFound(text=f"{mac} has not booted through pxetui and is not in the plan\n")
        return False

    def _require_owner(self, request: web.Request, mac: str, what: str) -> None:
        """Only the address that holds `mac` gets `what` (its install files, its reports): else 403."""
        owner = self._owner(request)
        if owner == mac:
            return
        client = self._client(request)
        if owner is not None:
            self._error(owner, request, f"{client} ({owner}) asked for {what} of {mac}; refused")
        else:
            where = f"from {client}, an address no machine holds"
            self._refused(request, "unknown address", f"{what} of {mac} {where}")
        raise web.HTTPForbidden(text=f"only {mac} itself gets this\n")

    def _refused(self, request: web.Request, kind: str, what: str) -> None:
        """Report a refusal about no known machine: no MAC in the event, rate-limited per kind."""
        self.refusals.report(kind, f"{what}; refused", request.path, self._client(request))

    def _credit(self, request: web.Request, text: str | None) -> str | None:
        """Who a file transfer is credited to: the address's holder, else the known MAC named."""
        named = self._mac_of(request, text) if text else None
        owner = self._owner(request)
        if owner is not None:
            return owner
        return named if named is not None and self._booter.knows(named) else None

    def _machine(self, mac: str, profile: Profile | None = None, *, token: bool = True) -> MachineContext:
        """What templates see of `mac`; `token=False` for an address that is not the machine's."""
        return MachineContext(
            mac=mac,
            hostname=self._booter.hostname_for(mac),
            token=self._token(mac) if token else "",
            profile=profile.name if profile else "",
            base_url=self._base,
        )

    def _token(self, mac: str) -> str:
        try:
            return self._tokens.for_mac(mac)
        except TokenRefused as exc:
            self._context.emit(Error(service="http", reason=str(exc)))
            raise web.HTTPServiceUnavailable(text=f"{exc}\n") from exc

    def _error(self, mac: str | None, request: web.Request, reason: str) -> None:
        self._context.emit(Error(mac=mac, reason=reason, path=request.path, client=self._client(request)))

    def _request_event(
        self, request: web.Request, mac: str | None, kind: str, file: str, total: int, **fields: Any
    ) -> None:
        self._context.emit(
            HttpRequest(
                mac=mac,
                path=request.path,
                kind=kind,
                file=file,
                total=total,
                client=self._client(request),
                **fields,
            )
        )

    def _text(
        self, request: web.Request, mac: str | None, kind: str, file: str, text: str, **fields: Any
    ) -> web.Response:
        """A small rendered answer (script or install file): request and done events with it."""
        body = text.encode()
        self._request_event(request, mac, kind, file, len(body), **fields)
        self._context.emit(
            HttpDone(
                mac=mac,
                path=request.path,
                kind=kind,
                file=file,
                bytes=len(body),
                total=len(body),
                rate=0.0,
                ok=True,
            )
        )
        return web.Response(body=body, content_type=SCRIPT_TYPE, charset="utf-8")

    def _profile_for(self, mac: str) -> Profile | None:
        """The profile a machine installs: the operator's assignment, else its menu choice."""
        return self._booter.boot_plan(mac).profile or self._booter.menu_choice(mac)

    # -- iPXE scripts -------------------------------------------------------------------------

    async def _boot(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if not query.get("mac"):
            mac = self._mac_of(request, None)
            return self._text(
                request,
                mac,
                "script",
                "boot.ipxe",
                self._scripts.probe(self._base),
                answer="probe",
            )
        mac = self._mac_of(request, query["mac"])
        assert mac is not None
        waited = self._waited(query.get("waited"))
        token = self._may_boot(request, mac, "the boot script")
        info = {key: query.get(key, "")[:MAX_INFO_LEN] for key in CLIENT_INFO}
        signed_ipxe = query.get(SIGNED_IPXE) == "1"
        machine = self._machine(mac, token=token)
        base = self._base
        plan = self._booter.boot_plan(mac)
        timeout = self._context.settings.menu_timeout
        try:
            if plan.boot_local:
                answer, script = "local", self._scripts.action("local", base, machine)
            elif plan.profile is not None and plan.fetching and not self._can_boot(plan.profile):
                # Fetch on first use: never a URL of a file not yet verified; wait, ask again.
                retry = f"{base}/boot.ipxe"
                script = self._scripts.wait_for_files(plan.profile, base, machine, retry)
                answer = "wait-fetch"
            elif plan.profile is not None:
                profile = plan.profile
                script = self._boot_script(profile, mac, token, self._shim_for(profile, info, signed_ipxe))
                answer = profile.name
            elif timeout and waited >= timeout:
                # Nobody chose and nobody assigned while the menu waited: the local disk.
                answer, script = "menu-timeout", self._scripts.action("local", base, machine)
            else:
                answer, script = "menu", self._menu(machine, info, waited, signed_ipxe)
        except TemplateError as exc:
            self._error(mac, request, str(exc))
            raise web.HTTPInternalServerError(text=f"{exc}\n") from exc
        if answer == "menu-timeout":
            # The menu's default was taken: the operator sees it, told apart from a key pressed.
            self._context.emit(
                MenuSelect(mac=mac, choice=MENU_DEFAULT, client=self._client(request), timed_out=True)
            )
        return self._text(request, mac, "script", "boot.ipxe", script, answer=answer, client_info=info)

    def _waited(self, text: str | None) -> int:
        """The seconds an unassigned PC has waited in its menu, as its last poll URL says.

        It is the PC's own count (the server keeps no timer per PC); anything but a few
        digits is refused, and a wait longer than the timeout only means the wait is over.
        """
        if text is None:
            return 0
        if not text.isascii() or not text.isdigit() or len(text) > MAX_WAITED_DIGITS:
            raise web.HTTPBadRequest(text="waited= must be a number of seconds\n")
        return int(text)

    def _boot_script(self, profile: Profile, mac: str, token: bool, shim_url: str | None = None) -> str:
        machine = self._machine(mac, profile, token=token)
        # A failed boot starts over at the probe, which asks again with the PC's whole identity.
        retry = f"{self._base}/boot.ipxe"
        try:
            cmdline = self._unattended.cmdline(profile, machine) if profile.cmdline else ""
        except UsageError as exc:
            raise TemplateError(f"profile {profile.name} ({profile.source}): cmdline: {exc}") from exc
        return self._scripts.boot(profile, self._base, machine, cmdline, retry, shim_url)

    def _shim_for(self, profile: Profile, info: dict[str, str], signed_ipxe: bool) -> str | None:
        """The URL of the shim that trusts `profile`'s kernel, for a PC on iPXE's signed build.

        None for unsigned iPXE (it has no `shim` command and needs none) and for a profile
        without a signed kernel. The shim is the profile's own (`secure_boot.shim`, once
        verified), else the one of the chain of its vendor (`secure_boot: debian`: the d-i
        image's), for the CPU the PC's iPXE runs on.
        """
        if not signed_ipxe or profile.secure_boot is None:
            return None
        cpu = info.get("arch") or (profile.arch[0] if profile.arch else "")
        if profile.own_loaders:
            chain = profile_chain(profile, self._context.settings.cache_dir)
        else:
            chains = self._context.boot_files.chains
            chain = next((c for c in chains if c.vendor == profile.secure_boot and c.cpu == cpu), None)
        if chain is None or chain.cpu != cpu:
            return None
        return f"{self._base}/loaders/{chain.shim}"

    def _can_boot(self, profile: Profile) -> bool:
        """Every file of the profile is there and verified: what the menu may offer now."""
        statuses = profile_status(profile, self._context.settings.cache_dir)
        return all(status.state is FileState.PRESENT for status in statuses)

    def _menu(
        self, machine: MachineContext, info: dict[str, str], waited: int, signed_ipxe: bool = False
    ) -> str:
        long_mode = info["lm"] == "1"

        def fits(profile: Profile) -> bool:
            return ipxe_fits(info["arch"], info["platform"], long_mode, profile.arch, profile.firmware)

        profiles = [p for _, p in sorted(self._profiles.items()) if fits(p)]
        systems = [p for p in profiles if not p.action and self._can_boot(p)]
        actions = [p for p in profiles if p.action]
        timeout = self._context.settings.menu_timeout
        return self._scripts.menu(
            self._base,
            machine,
            systems,
            actions,
            timeout,
            poll=self._poll(machine.mac, info, waited, signed_ipxe),
        )

    def _poll(self, mac: str, info: dict[str, str], waited: int, signed_ipxe: bool = False) -> MenuPoll:
        """The menu's next question to the server: the same request, with the wait so far."""
        timeout = self._context.settings.menu_timeout
        remaining = timeout - waited if timeout else None
        interval = self.menu_poll_interval if remaining is None else min(self.menu_poll_interval, remaining)
        signed = {SIGNED_IPXE: "1"} if signed_ipxe else {}
        query = urlencode({"mac": mac, **info, **signed, "waited": waited + interval}, quote_via=quote)
        return MenuPoll(url=f"{self._base}/boot.ipxe?{query}", interval=interval, remaining=remaining)

    async def _select(self, request: web.Request) -> web.StreamResponse:
        mac = self._mac_of(request, request.query.get("mac"))
        if mac is None:
            raise web.HTTPBadRequest(text="give the machine as ?mac=\n")
        token = self._may_boot(request, mac, "a menu choice")
        choice = request.query.get("profile", "")
        machine = self._machine(mac, token=token)
        try:
            if choice in EXTRA_ACTIONS:
                script = self._scripts.action(EXTRA_ACTIONS[choice], self._base, machine)
            elif choice in self._profiles and self._can_boot(self._profiles[choice]):
                profile = self._profiles[choice]
                info = {"arch": request.query.get("arch", "")[:MAX_INFO_LEN]}
                shim = self._shim_for(profile, info, request.query.get(SIGNED_IPXE) == "1")
                script = self._boot_script(profile, mac, token, shim)
            elif choice in self._profiles:
                # Not in the menu either: an old menu, or files removed since it was drawn.
                self._error(mac, request, f"menu choice {choice}: its files are missing or unverified")
                raise web.HTTPNotFound(text=f"{choice} cannot boot now\n")
            else:
                self._error(mac, request, f"menu choice {choice[:64]!r} is not a profile")
                raise web.HTTPNotFound(text="no such profile\n")
        except TemplateError as exc:
            self._error(mac, request, str(exc))
            raise web.HTTPInternalServerError(text=f"{exc}\n") from exc
        self._context.emit(MenuSelect(mac=mac, choice=choice, client=self._client(request)))
        return self._text(request, mac, "script", "select", script, answer=choice)

    # -- files --------------------------------------------------------------------------------

    async def _loader(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        files = self._context.boot_files
        path = files.path(name)
        if path is None and files.is_autoexec(name):
            # iPXE's signed build asks for it beside itself (over TFTP; here for HTTP too).
            mac = self._mac_of(request, None)
            script = self._scripts.autoexec(self._base)
            return self._text(request, mac, "script", name, script, answer="autoexec")
        if path is None:
            # A profile's own shim, for iPXE's `shim` command (signed iPXE, signed kernel).
            found = self._signed_chain(name) if name.startswith(PROFILE_LOADERS + "/") else None
            if found is None or found[0].shim != name:
                raise web.HTTPNotFound()
            path = found[1]
        mac = self._credit(request, request.query.get("mac"))
        return await self._send_file(request, path, "loader", name, mac)

    def _signed_chain(self, shim: str) -> tuple[SignedChain, Path, Path] | None:
        """The chain whose shim is catalog name `shim`, with its two loader files on disk."""
        parts = shim.split("/")
        if len(parts) == 3 and parts[0] == PROFILE_LOADERS:  # a profile's own loaders
            profile = self._profiles.get(parts[1])
            if profile is None:
                return None
            cache_dir = self._context.settings.cache_dir
            chain = profile_chain(profile, cache_dir)
            if chain is None or chain.shim != shim:
                return None
            shim_path = verified_path(profile, "shim", cache_dir)
            grub_path = verified_path(profile, "grub", cache_dir)
        else:
            files = self._context.boot_files
            chain = files.chain_of(shim)
            if chain is None or chain.shim != shim:
                return None
            shim_path, grub_path = files.path(chain.shim), files.path(chain.grub)
        if shim_path is None or grub_path is None:
            return None
        return chain, shim_path, grub_path

    async def _ramdisk(self, request: web.Request) -> web.StreamResponse:
        """A Secure Boot chain as a disk image: what HttpBootDxe boots as a RAM disk."""
        name = request.match_info["name"]
        shim = ramdisk.shim_of(name)
        found = self._signed_chain(shim) if shim is not None else None
        if found is None:
            raise web.HTTPNotFound()
        chain, shim_path, grub_path = found
        mac = self._credit(request, request.query.get("mac"))
        inputs = ramdisk.ImageInputs(chain.cpu, shim_path, grub_path, chain.grub_prefix, self._host)
        try:
            path = await asyncio.to_thread(self._ramdisks.image, inputs)
        except ramdisk.RamdiskError as exc:
            self._error(mac, request, f"Secure Boot HTTP Boot image of {chain.shim}: {exc}")
            raise web.HTTPServiceUnavailable(text=f"{exc}\n") from exc
        response = await self._send_file(request, path, "loader", name, mac)
        # HttpBootDxe takes the image type from this header: a disk, not an EFI program.
        response.headers["Content-Type"] = ramdisk.CONTENT_TYPE
        return response

    async def _file(self, request: web.Request) -> web.StreamResponse:
        profile = self._profiles.get(request.match_info["profile"])
        role = request.match_info["role"]
        if profile is None or role not in FILE_ROLES or role not in profile.files:
            raise web.HTTPNotFound()
        mac = self._credit(request, request.query.get("mac"))
        cache_dir = self._context.settings.cache_dir
        path = profile.file_path(role, cache_dir)
        if profile.files[role].path is None:
            # A downloaded file must really be in the profile's cache directory: a symlink
            # planted there must not serve anything outside it.
            home = (cache_dir / profile.name).resolve()
            if not path.resolve().is_relative_to(home):
                self._error(mac, request, f"{path} points outside {home}; not served")
                raise web.HTTPNotFound()
        if verified_path(profile, role, cache_dir) is None:
            # Missing, half-downloaded or failing its checksum: never served.
            self._error(
                mac,
                request,
                f"profile {profile.name}: its {role} at {path} is missing or unverified;"
                f" run `pxetui fetch {profile.name}`",
            )
            raise web.HTTPNotFound()
        return await self._send_file(request, path, role, path.name, mac)

    async def _send_file(
        self, request: web.Request, path: Path, kind: str, file: str, mac: str | None
    ) -> web.StreamResponse:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise web.HTTPNotFound() from exc
        client = self._client(request)
        self._request_event(
            request, mac, kind, file, size, method=request.method, range=request.headers.get("Range")
        )
        transport = request.transport
        if request.method == "HEAD" or transport is None:
            return web.FileResponse(path)
        transfer = BodyTransfer(
            mac=mac,
            path=request.path,
            kind=kind,
            file=file,
            client=client,
            sock=transport.get_extra_info("socket"),
            total=size,
        )
        return TrackedFileResponse(path, transfer, self.monitor, self._context.emit, self.sendfile)

    async def _mirror(self, request: web.Request) -> web.StreamResponse:
        profile = self._profiles.get(request.match_info["profile"])
        if profile is None or profile.mirror is None:
            raise web.HTTPNotFound()
        path = mirror_file(profile.mirror, request.match_info["path"])
        if path is None:
            raise web.HTTPNotFound()
        mac = self._credit(request, None)
        return await self._send_file(request, path, "mirror", path.name, mac)

    # -- per-machine install files and reports ------------------------------------------------

    async def _config(self, request: web.Request) -> web.StreamResponse:
        mac = self._mac_of(request, request.match_info["mac"])
        assert mac is not None
        name = request.match_info["name"]
        if name not in CONFIG_NAMES:
            raise web.HTTPNotFound()  # no template serves such a file, whoever asks
        # The files carry the machine's token, hostname and the operator's SSH keys.
        self._require_owner(request, mac, "the install files")
        profile = self._profile_for(mac)
        if profile is None:
            raise web.HTTPNotFound(text=f"{mac} has no profile assigned or chosen\n")
        try:
            text = self._unattended.render(profile, name, self._machine(mac, profile))
        except UsageError as exc:
            self._error(mac, request, str(exc))
            raise web.HTTPInternalServerError(text=f"{exc}\n") from exc
        if text is None:
            raise web.HTTPNotFound()
        return self._text(request, mac, "config", name, text, profile=profile.name)

    def _report_handler(self, failed: bool) -> Handler:
        async def report(request: web.Request) -> web.StreamResponse:
            return await self._report(request, failed)

        return report

    async def _report(self, request: web.Request, failed: bool) -> web.StreamResponse:
        query = request.query
        mac = self._mac_of(request, query.get("mac"))
        if mac is None:
            raise web.HTTPBadRequest(text="give the machine as ?mac=\n")
        client = self._client(request)
        what = "failed" if failed else "done"
        self._require_owner(request, mac, f"a /{what} report")
        self._context.emit(
            HttpRequest(mac=mac, path=request.path, kind="report", file=what, total=0, client=client)
        )
        if not self._tokens.check(mac, query.get("token", "")):
            self._error(mac, request, f"/{what} report for {mac} from {client} with a wrong token; ignored")
            raise web.HTTPForbidden(text="wrong token\n")
        if failed:
            reason = query.get("reason", "")[:MAX_REASON_LEN] or "installer reported failure"
            self._context.emit(InstallFailed(mac=mac, reason=reason, client=client))
        else:
            self._context.emit(InstallDone(mac=mac, client=client))
        return web.Response(text="ok\n")


def mirror_file(root: Path, relative: str) -> Path | None:
    """The regular file `relative` names inside the mirror directory `root` (resolved), or None.

    `relative` is the client's (already percent-decoded) path: an empty, `.` or `..` part, a NUL,
    or a symlink leading out of `root` names nothing.
    """
    parts = relative.split("/")
    if not relative or "\0" in relative or any(part in ("", ".", "..") for part in parts):
        return None
    try:
        root = root.resolve()
        path = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path
