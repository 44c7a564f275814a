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
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from pxetui.boot.cache import verified_path
from pxetui.boot.firmware import ipxe_fits
from pxetui.boot.ipxe_scripts import EXTRA_ACTIONS, ScriptRenderer, TemplateError
from pxetui.boot.profiles import FILE_ROLES, Profile
from pxetui.boot.unattended import MachineContext, Renderer
from pxetui.errors import UsageError
from pxetui.host.mac import MacError, normalize_mac
from pxetui.model.tokens import Tokens
from pxetui.services.http.sendfile_pool import SendfilePool, SendfileUnavailable
from pxetui.services.http.transfers import Emit, Transfer, TransferMonitor

if TYPE_CHECKING:
    from pxetui.session import Session

SCRIPT_TYPE = "text/plain"
CLIENT_INFO = ("arch", "platform", "uuid", "serial", "manufacturer", "product", "lm")
MAX_INFO_LEN = 128  # firmware strings are short; anything longer is cut, not trusted
MAX_REASON_LEN = 300
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpService:
    name = "http"

    def __init__(
        self,
        session: Session,
        *,
        idle_timeout: float = 60.0,
        stall_timeout: float = 60.0,
        progress_interval: float = 0.5,
        template_dirs: tuple[Path, ...] = (),
        unattended: Renderer | None = None,
        sendfile_workers: int | None = None,
    ) -> None:
        self._session = session
        self.idle_timeout = idle_timeout
        self._scripts = ScriptRenderer(template_dirs)
        # Kernel command lines and installer answers (preseed, autoinstall, kickstart).
        self._unattended = unattended or Renderer(template_dirs=list(template_dirs))
        self._tokens = Tokens(session.state)
        self.monitor = TransferMonitor(session.emit, progress_interval, stall_timeout)
        self.sendfile = SendfilePool(sendfile_workers)
        self._runner: web.AppRunner | None = None
        self.rejected = 0  # requests answered 4xx: bad input is counted, never fatal
        self.port = session.config.http_port

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        address = self._session.address
        if address is None:
            raise UsageError(
                f"{self._session.config.interface} has no IPv4 address for the HTTP service;"
                " give one with --address CIDR"
            )
        host = str(address.ip)
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
        address = self._session.address
        return {
            "port": self.port,
            "address": str(address.ip) if address else None,
            "active": len(self.monitor.active),
            "rejected": self.rejected,
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

    def _mac_of(self, request: web.Request, text: str | None) -> str | None:
        """The MAC a request names (query or path), else the one leased to its address."""
        if text:
            try:
                return normalize_mac(text)
            except MacError as exc:
                raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        return self._session.registry.mac_for_ip(self._client(request))

    def _machine(self, mac: str, profile: Profile | None = None) -> MachineContext:
        return MachineContext(
            mac=mac,
            hostname=self._session.hostname_for(mac),
            token=self._tokens.for_mac(mac),
            profile=profile.name if profile else "",
            base_url=self._session.http_base,
        )

    def _error(self, mac: str | None, request: web.Request, reason: str) -> None:
        self._session.emit("error", mac, reason=reason, path=request.path, client=self._client(request))

    def _request_event(
        self, request: web.Request, mac: str | None, kind: str, file: str, total: int, **fields: Any
    ) -> None:
        self._session.emit(
            "http.request",
            mac,
            path=request.path,
            kind=kind,
            file=file,
            total=total,
            client=self._client(request),
            **fields,
        )

    def _text(
        self, request: web.Request, mac: str | None, kind: str, file: str, text: str, **fields: Any
    ) -> web.Response:
        """A small rendered answer (script or install file): request and done events with it."""
        body = text.encode()
        self._request_event(request, mac, kind, file, len(body), **fields)
        self._session.emit(
            "http.done",
            mac,
            path=request.path,
            kind=kind,
            file=file,
            bytes=len(body),
            total=len(body),
            rate=0.0,
            ok=True,
        )
        return web.Response(body=body, content_type=SCRIPT_TYPE, charset="utf-8")

    def _profile_for(self, mac: str) -> Profile | None:
        """The profile a machine installs: the operator's assignment, else its menu choice."""
        entry = self._session.plan.get(mac)
        name = entry.profile if entry and entry.profile else None
        if name is None:
            machine = self._session.registry.get(mac)
            name = machine.menu_choice if machine else None
        return self._session.profiles.get(name) if name else None

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
                self._scripts.probe(self._session.http_base),
                answer="probe",
            )
        mac = self._mac_of(request, query["mac"])
        assert mac is not None
        info = {key: query.get(key, "")[:MAX_INFO_LEN] for key in CLIENT_INFO}
        machine = self._machine(mac)
        base = self._session.http_base
        entry = self._session.plan.get(mac)
        try:
            if entry is not None and entry.boot_local:
                answer, script = "local", self._scripts.action("local", base, machine)
            elif entry is not None and entry.profile and entry.profile in self._session.profiles:
                profile = self._session.profiles[entry.profile]
                answer, script = profile.name, self._boot_script(profile, mac)
            else:
                answer, script = "menu", self._menu(machine, info, query.get("lm") == "1")
        except TemplateError as exc:
            self._error(mac, request, str(exc))
            raise web.HTTPInternalServerError(text=f"{exc}\n") from exc
        return self._text(request, mac, "script", "boot.ipxe", script, answer=answer, client_info=info)

    def _boot_script(self, profile: Profile, mac: str) -> str:
        machine = self._machine(mac, profile)
        # A failed boot starts over at the probe, which asks again with the PC's whole identity.
        retry = f"{self._session.http_base}/boot.ipxe"
        try:
            cmdline = self._unattended.cmdline(profile, machine) if profile.cmdline else ""
        except UsageError as exc:
            raise TemplateError(f"profile {profile.name} ({profile.source}): cmdline: {exc}") from exc
        return self._scripts.boot(profile, self._session.http_base, machine, cmdline, retry)

    def _menu(self, machine: MachineContext, info: dict[str, str], long_mode: bool) -> str:
        def fits(profile: Profile) -> bool:
            return ipxe_fits(info["arch"], info["platform"], long_mode, profile.arch, profile.firmware)

        profiles = [p for _, p in sorted(self._session.profiles.items()) if fits(p)]
        systems = [p for p in profiles if not p.action]
        actions = [p for p in profiles if p.action]
        return self._scripts.menu(
            self._session.http_base, machine, systems, actions, self._session.config.menu_timeout
        )

    async def _select(self, request: web.Request) -> web.StreamResponse:
        mac = self._mac_of(request, request.query.get("mac"))
        if mac is None:
            raise web.HTTPBadRequest(text="give the machine as ?mac=\n")
        choice = request.query.get("profile", "")
        machine = self._machine(mac)
        base = self._session.http_base
        try:
            if choice in EXTRA_ACTIONS:
                script = self._scripts.action(EXTRA_ACTIONS[choice], base, machine)
            elif choice in self._session.profiles:
                script = self._boot_script(self._session.profiles[choice], mac)
            else:
                self._error(mac, request, f"menu choice {choice[:64]!r} is not a profile")
                raise web.HTTPNotFound(text="no such profile\n")
        except TemplateError as exc:
            self._error(mac, request, str(exc))
            raise web.HTTPInternalServerError(text=f"{exc}\n") from exc
        self._session.emit("menu.select", mac, choice=choice, client=self._client(request))
        return self._text(request, mac, "script", "select", script, answer=choice)

    # -- files --------------------------------------------------------------------------------

    async def _loader(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        catalog = self._session.boot_files
        path = catalog.path(name) if catalog is not None else None
        if path is None:
            raise web.HTTPNotFound()
        mac = self._mac_of(request, request.query.get("mac"))
        return await self._send_file(request, path, "loader", name, mac)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        profile = self._session.profiles.get(request.match_info["profile"])
        role = request.match_info["role"]
        if profile is None or role not in FILE_ROLES or role not in profile.files:
            raise web.HTTPNotFound()
        mac = self._mac_of(request, request.query.get("mac"))
        cache_dir = self._session.config.cache_dir
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
        transfer = Transfer(
            mac=mac,
            path=request.path,
            kind=kind,
            file=file,
            client=client,
            sock=transport.get_extra_info("socket"),
            total=size,
        )
        return _TrackedFileResponse(path, transfer, self.monitor, self._session.emit, self.sendfile)

    # -- per-machine install files and reports ------------------------------------------------

    async def _config(self, request: web.Request) -> web.StreamResponse:
        mac = self._mac_of(request, request.match_info["mac"])
        assert mac is not None
        owner = self._session.registry.mac_for_ip(self._client(request))
        if owner is not None and owner != mac:
            # Another machine asking for this one's files (and so its token).
            self._error(owner, request, f"asked for the install files of {mac}; refused")
            raise web.HTTPForbidden()
        profile = self._profile_for(mac)
        name = request.match_info["name"]
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
        self._session.emit(
            "http.request", mac, path=request.path, kind="report", file=what, total=0, client=client
        )
        if not self._tokens.check(mac, query.get("token", "")):
            self._error(mac, request, f"/{what} report for {mac} from {client} with a wrong token; ignored")
            raise web.HTTPForbidden(text="wrong token\n")
        if failed:
            reason = query.get("reason", "")[:MAX_REASON_LEN] or "installer reported failure"
            self._session.emit("install.failed", mac, reason=reason, client=client)
        else:
            self._session.emit("install.done", mac, client=client)
        return web.Response(text="ok\n")


class _TrackedFileResponse(web.FileResponse):
    """A FileResponse that reports its own transfer: sampled while it runs, http.done after.

    aiohttp sends the body inside prepare() (by sendfile), so that is where the transfer
    begins and ends. A client that goes away surfaces as ConnectionError, which aiohttp
    takes as "close this connection" without logging a traceback.
    """

    def __init__(
        self, path: Path, transfer: Transfer, monitor: TransferMonitor, emit: Emit, pool: SendfilePool
    ) -> None:
        super().__init__(path)
        self._transfer = transfer
        self._monitor = monitor
        self._emit = emit
        self._pool = pool

    async def _sendfile(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        """The body by the sendfile workers instead of the services' thread (see sendfile_pool).

        Overrides aiohttp's hook; everything before it (Range, conditional requests, headers)
        stays aiohttp's. tests/test_http.py checks the workers really carry the bytes.
        """
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or sock is None or not self._pool.running or self.compression:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)  # the headers, written at once
        assert writer is not None
        by_loop = bool(transport.get_write_buffer_size())  # headers still queued: asyncio waits
        if not by_loop:
            reading = transport.is_reading()
            transport.pause_reading()  # the next request waits until this body is out
            try:
                await self._pool.send(sock, fobj.fileno(), offset, count)
            except SendfileUnavailable:
                by_loop = True  # out of descriptors: this one goes the slower way, but goes
            finally:
                if reading and not transport.is_closing():
                    transport.resume_reading()
        if by_loop:
            await asyncio.get_running_loop().sendfile(transport, fobj, offset, count)
        await web.StreamResponse.write_eof(self)
        return writer

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:  # FileResponse.prepare would open the file and send it again
            return None
        transfer = self._transfer
        self._monitor.begin(transfer)
        ok, reason = False, ""
        try:
            writer = await super().prepare(request)
            ok = self.status < 400
            reason = "" if ok else f"status {self.status}"
            return writer
        except ConnectionError as exc:
            reason = "client stopped reading" if transfer.stalled else f"client went away ({exc})"
            raise
        except OSError as exc:
            reason = f"send failed: {exc}"
            raise ConnectionResetError(reason) from exc
        finally:
            self._monitor.end(transfer)
            body = self.content_length or 0
            transfer.total = body
            sent = body if ok else transfer.sent
            elapsed = max(time.monotonic() - transfer.started, 1e-6)
            self._emit(
                "http.done",
                transfer.mac,
                path=transfer.path,
                kind=transfer.kind,
                file=transfer.file,
                client=transfer.client,
                bytes=sent,
                total=body,
                rate=round(sent / elapsed, 1),
                ok=ok,
                **({"reason": reason} if reason else {}),
            )
