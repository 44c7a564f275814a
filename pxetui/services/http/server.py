"""The HTTP service: iPXE scripts per MAC, boot loaders, OS files, install files and reports.

Routes (nothing else is served; there are no directory listings):
  /boot.ipxe                  the script DHCP hands iPXE; with ?mac= the answer for that PC
  /select?mac=&profile=       the menu's choice (menu.select), answered with that boot script
  /loaders/<name>             iPXE loaders from the boot-files catalog (UEFI HTTP boot)
  /files/<profile>/<role>     kernel / initrd / iso of a profile (sendfile, Range, HEAD)
  /config/<mac>/<name>        install files rendered for that one machine (preseed.cfg, ...)
  /done, /failed              the installer's report, checked against the machine's token

Every name a client sends is looked up in a table (catalog, profiles, roles, template names);
no client text is ever joined onto a filesystem path, so `..`, encoded slashes and the like
cannot reach anything: they are simply not in the table (404).

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

import errno
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pxetui.boot.cache import verified_path
from pxetui.boot.firmware import ipxe_fits
from pxetui.boot.ipxe_scripts import EXTRA_ACTIONS, ScriptRenderer, TemplateError
from pxetui.boot.profiles import FILE_ROLES, Profile
from pxetui.boot.unattended import TEMPLATE_FILES, MachineContext, Renderer
from pxetui.errors import UsageError
from pxetui.host.mac import MacError, normalize_mac
from pxetui.model.events import Error, HttpDone, HttpRequest, InstallDone, InstallFailed, MenuSelect
from pxetui.model.tokens import TokenRefused, Tokens
from pxetui.services.context import Emit, ServiceContext
from pxetui.services.http.sendfile_pool import SendfilePool
from pxetui.services.http.sendfile_response import TrackedFileResponse
from pxetui.services.http.transfers import BodyTransfer, TransferMonitor

SCRIPT_TYPE = "text/plain"
CLIENT_INFO = ("arch", "platform", "uuid", "serial", "manufacturer", "product", "lm")
MAX_INFO_LEN = 128  # firmware strings are short; anything longer is cut, not trusted
MAX_REASON_LEN = 300
REFUSAL_REPORT_INTERVAL = 1.0  # seconds between `error` events of one kind about no known machine
CONFIG_NAMES = frozenset(name for files in TEMPLATE_FILES.values() for name in files)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RefusalReports:
    """`error` events for refusals about no known machine, at most one a second per kind.

    A flood of requests naming made-up MACs, or from addresses no machine holds, costs the
    operator one line a second per kind, with `count` and `since_last`; the kinds are this
    service's own fixed words, so the table does not grow with what clients send.
    """

    def __init__(self, emit: Emit, interval: float = REFUSAL_REPORT_INTERVAL) -> None:
        self._emit = emit
        self.interval = interval
        self.counts: dict[str, int] = {}
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (time of last event, count then)

    def report(self, kind: str, reason: str, path: str, client: str) -> None:
        count = self.counts.get(kind, 0) + 1
        self.counts[kind] = count
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last[0] < self.interval:
            return
        self._last[kind] = (now, count)
        since_last = count - last[1] if last is not None else 1
        self._emit(
            Error(
                service="http",
                reason=reason,
                path=path,
                client=client,
                count=count,
                since_last=since_last,
            )
        )


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
    ) -> None:
        if idle_timeout <= 0 or stall_timeout <= 0 or progress_interval <= 0:
            raise UsageError("HTTP timeouts and the progress interval must be more than 0 seconds")
        self._context = context
        self._booter = context.booter
        self._profiles = context.profiles
        self.idle_timeout = idle_timeout
        template_dirs = context.settings.template_dirs
        self._scripts = ScriptRenderer(template_dirs)
        # Kernel command lines and installer answers (preseed, autoinstall, kickstart).
        self._unattended = unattended or Renderer(template_dirs=list(template_dirs))
        self._tokens = Tokens(context.state, known=self._booter.knows)
        self.refusals = RefusalReports(context.emit)
        self.monitor = TransferMonitor(context.emit, progress_interval, stall_timeout)
        self.sendfile = SendfilePool(sendfile_workers)
        self._runner: web.AppRunner | None = None
        self.rejected = 0  # requests answered 4xx: bad input is counted, never fatal
        self.port = context.settings.http_port
        self._host = str(context.address.ip)
        self._base = context.http_base

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        host = self._host
        app = web.Application(middlewares=[self._count_rejections], client_max_size=64 * 1024)
        app.router.add_get("/boot.ipxe", self._boot)
        app.router.add_get("/select", self._select)
        app.router.add_get("/loaders/{name:.+}", self._loader)
        app.router.add_get("/files/{profile}/{role}", self._file)
        app.router.add_get("/config/{mac}/{name}", self._config)
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
        site = web.TCPSite(runner, host=host, port=self.port, backlog=256)
        try:
            await site.start()
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
        self.sendfile.start()
        self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.sendfile.close()

    def describe(self) -> dict[str, object]:
        return {
            "port": self.port,
            "address": self._host,
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
        token = self._may_boot(request, mac, "the boot script")
        info = {key: query.get(key, "")[:MAX_INFO_LEN] for key in CLIENT_INFO}
        machine = self._machine(mac, token=token)
        base = self._base
        plan = self._booter.boot_plan(mac)
        try:
            if plan.boot_local:
                answer, script = "local", self._scripts.action("local", base, machine)
            elif plan.profile is not None:
                profile = plan.profile
                answer, script = profile.name, self._boot_script(profile, mac, token)
            else:
                answer, script = "menu", self._menu(machine, info, query.get("lm") == "1")
        except TemplateError as exc:
            self._error(mac, request, str(exc))
            raise web.HTTPInternalServerError(text=f"{exc}\n") from exc
        return self._text(request, mac, "script", "boot.ipxe", script, answer=answer, client_info=info)

    def _boot_script(self, profile: Profile, mac: str, token: bool) -> str:
        machine = self._machine(mac, profile, token=token)
        # A failed boot starts over at the probe, which asks again with the PC's whole identity.
        retry = f"{self._base}/boot.ipxe"
        try:
            cmdline = self._unattended.cmdline(profile, machine) if profile.cmdline else ""
        except UsageError as exc:
            raise TemplateError(f"profile {profile.name} ({profile.source}): cmdline: {exc}") from exc
        return self._scripts.boot(profile, self._base, machine, cmdline, retry)

    def _menu(self, machine: MachineContext, info: dict[str, str], long_mode: bool) -> str:
        def fits(profile: Profile) -> bool:
            return ipxe_fits(info["arch"], info["platform"], long_mode, profile.arch, profile.firmware)

        profiles = [p for _, p in sorted(self._profiles.items()) if fits(p)]
        systems = [p for p in profiles if not p.action]
        actions = [p for p in profiles if p.action]
        return self._scripts.menu(self._base, machine, systems, actions, self._context.settings.menu_timeout)

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
            elif choice in self._profiles:
                script = self._boot_script(self._profiles[choice], mac, token)
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
        path = self._context.boot_files.path(name)
        if path is None:
            raise web.HTTPNotFound()
        mac = self._credit(request, request.query.get("mac"))
        return await self._send_file(request, path, "loader", name, mac)

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
