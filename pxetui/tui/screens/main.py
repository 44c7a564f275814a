"""The main screen: status header, rival-DHCP warning, the machine table, the event log."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Collapsible, DataTable, Footer, RichLog, Static

from pxetui.errors import PxetuiError
from pxetui.host.mac import MacError, normalize_mac
from pxetui.model.events import DhcpNak, DhcpRival, Error, Event, InstallDone, InstallFailed, PlanEvent
from pxetui.model.plan import PlanError, check_hostname
from pxetui.model.registry import Machine, Stage
from pxetui.session import Session
from pxetui.tui import format as fmt
from pxetui.tui.contracts import Clock, MainHost
from pxetui.tui.screens.confirm import ConfirmScreen
from pxetui.tui.screens.detail import DetailScreen
from pxetui.tui.screens.forms import Field, FormScreen
from pxetui.tui.screens.help import HelpScreen
from pxetui.tui.updates import LOG_KEEP, PendingUpdates

# (key, label, width). The table has no cell padding: every cell starts with one space
# instead, so 9 columns fit 120 terminal columns (padding would cost 18).
COLUMNS = (
    ("mac", "MAC", 20),
    ("vendor", "Vendor", 9),
    ("hostname", "Hostname", 10),
    ("firmware", "Firmware", 10),
    ("ip", "IP", 16),
    ("os", "OS", 13),
    ("stage", "Stage", 12),
    ("progress", "Progress", 21),
    ("elapsed", "Elapsed", 8),
)
MARK = "●"
LOG_PANE_LINES = 300  # drawn lines the pane scrolls back through (log_lines keeps LOG_KEEP)
OFFSCREEN_ROWS_PER_REFRESH = 20
LOG_LINES_PER_REFRESH = 40
Row = tuple[Text, ...]


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark", tooltip="mark / unmark the machine under the cursor"),
        Binding(
            "asterisk",
            "mark_all",
            "Mark all",
            show=False,
            key_display="*",
            tooltip="mark every machine / clear marks",
        ),
        Binding("a", "assign", "Assign", tooltip="assign a profile to the marked machines (or the cursor's)"),
        Binding("u", "unassign", "Unassign", tooltip="remove the assignment: the menu shows next boot"),
        Binding("n", "add_machine", "Add", tooltip="add a machine by MAC before power-on"),
        Binding("i", "import_plan", "Import", tooltip="import a plan CSV (mac,profile,hostname)"),
        Binding("e", "export_report", "Report", tooltip="export the session report as CSV and JSON"),
        Binding("l", "boot_local", "Local", tooltip="toggle: boot the local disk next time / install again"),
        Binding("d", "remove_machine", "Remove", show=False, tooltip="take the marked machines off the plan"),
        Binding("p", "unknown_policy", "Policy", tooltip="what machines not in the plan get"),
        Binding("w", "wake", "Wake", tooltip="send wake-on-LAN to the marked machines"),
        Binding("enter", "details", "Details", show=False, tooltip="timeline and DHCP fingerprint"),
        Binding("g", "toggle_log", "Log", tooltip="show / hide the event log"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="keys and stages"),
        Binding("q", "app.quit", "Quit", tooltip="stop the services, save the state and quit"),
    ]

    def __init__(self, session: Session, pending: PendingUpdates, host: MainHost, clock: Clock) -> None:
        super().__init__(id="main")
        self.session = session
        self.pending = pending  # the header's services and rival state, folded by the app
        self.host = host
        self.clock = clock
        self.marked: set[str] = set()
        self._rows: dict[str, Row] = {}
        self._stale: set[str] = set()
        self.log_lines: list[str] = []
        self.ready = False  # composed and not yet torn down: safe to refresh

    def compose(self) -> ComposeResult:
        with Vertical(id="top"):
            yield Static(id="status")
            yield Static(id="rival")
        table: DataTable[Text] = DataTable(
            id="machines", cursor_type="row", zebra_stripes=True, cell_padding=0
        )
        log = RichLog(id="log", max_lines=LOG_PANE_LINES, wrap=False, markup=False)
        trim_render_caches(table, log)
        yield table
        with Collapsible(title="Event log (g)", collapsed=False, id="log-pane"):
            yield log
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#machines", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(f" {label}", key=key, width=width)
        self.ready = True
        self.apply_updates(None, [], True)
        table.focus()

    def on_unmount(self) -> None:
        self.ready = False

    # -- refresh (called by the app's coalescing timer) ----------------------------------------

    def apply_updates(self, macs: set[str] | None, events: list[Event], header: bool) -> None:
        self._sync_rows(macs)
        if events:
            self._append_log(events)
        if header:
            self._refresh_header()

    @property
    def stale_rows(self) -> int:
        """Rows whose machine changed but that are not redrawn yet (off screen, over budget)."""
        return len(self._stale)

    def _append_log(self, events: list[Event]) -> None:
        # At most LOG_LINES_PER_REFRESH lines are drawn per refresh: nobody reads faster, and
        # drawing costs loop time the services need.
        lines = [(_log_line(e), _log_style(e)) for e in events]
        if not lines:
            return
        self.log_lines.extend(line for line, _ in lines)
        del self.log_lines[:-LOG_KEEP]
        log = self.query_one("#log", RichLog)
        skipped = len(lines) - LOG_LINES_PER_REFRESH
        if skipped > 0:
            log.write(Text(f"… {skipped} more events (all are in the machines' timelines)", style="dim"))
            lines = lines[skipped:]
        for line, style in lines:
            log.write(Text(line, style=style))

    def _sync_rows(self, macs: set[str] | None) -> None:
        """Redraw changed rows: all visible ones, plus a bounded number of off-screen ones.

        With 300 machines transferring, every row changes between two refreshes; redrawing
        them all would hold the loop (and the services' packets) for tens of ms. Rows on screen
        are always current; rows off screen catch up OFFSCREEN_ROWS_PER_REFRESH at a time.
        """
        session = self.session
        self._stale.update(session.registry.macs() if macs is None else macs)
        if not self._stale:
            return
        table = self.query_one("#machines", DataTable)
        now = self.clock()
        if any(mac not in self._rows for mac in self._stale):
            for mac in session.registry.macs():  # registry order: planned first, then as seen
                if mac not in self._rows:
                    self._update_row(table, mac, now)
        visible = self._visible_macs(table)
        due = [mac for mac in visible if mac in self._stale]
        due += [mac for mac in self._stale if mac not in visible][:OFFSCREEN_ROWS_PER_REFRESH]
        for mac in due:
            self._update_row(table, mac, now)

    def _visible_macs(self, table: DataTable[Text]) -> list[str]:
        first = int(table.scroll_y)
        rows = table.ordered_rows[first : first + table.size.height + 1]
        return [str(row.key.value) for row in rows]

    def _update_row(self, table: DataTable[Text], mac: str, now: float) -> None:
        self._stale.discard(mac)
        machine = self.session.registry.get(mac)
        if machine is None:
            return
        row = self._row(machine, now)
        old = self._rows.get(mac)
        if old is None:
            table.add_row(*row, key=mac)
        elif old != row:
            for (key, _, _), new_cell, old_cell in zip(COLUMNS, row, old, strict=True):
                if new_cell != old_cell:
                    table.update_cell(mac, key, new_cell)
        self._rows[mac] = row

    def _row(self, machine: Machine, now: float) -> Row:
        entry = self.session.plan.get(machine.mac)
        stage_style = fmt.STAGE_STYLES.get(machine.stage, "")
        mark = MARK if machine.mac in self.marked else " "
        return (
            _cell(f"{mark} {machine.mac}", "bold" if mark != " " else ""),
            _cell(machine.vendor),
            _cell((entry.hostname if entry else None) or ""),
            _cell(machine.firmware),
            _cell(machine.ip or ""),
            _cell(fmt.assigned(entry, machine), "italic" if entry is None or not entry.profile else ""),
            _cell(fmt.stage_text(machine), stage_style),
            _cell(fmt.progress(machine)),
            _cell(fmt.elapsed(machine, now)),
        )

    def _refresh_header(self) -> None:
        session = self.session
        cfg = session.config
        address = session.address or cfg.address
        where = f"[b]{cfg.interface}[/b] {address}" if address else f"[b]{cfg.interface}[/b]"
        services = self.pending.services
        if self.pending.ready:
            parts = []
            for name, desc in services.items():
                port = desc.get("port") if isinstance(desc, dict) else None
                parts.append(f"{name.upper()} [green]●[/]" + (f" :{port}" if port else ""))
            state = "  ".join(parts) if parts else "[yellow]no boot services in this build[/]"
        elif self.host.starting:
            state = "[yellow]starting services…[/]"
        else:
            state = "[dim]services not running[/]"
        machines = session.registry.snapshot()
        counts = {stage: 0 for stage in Stage}
        for m in machines:
            counts[m.stage] += 1
        booting = len(machines) - counts[Stage.WAITING] - counts[Stage.DONE]
        booting -= counts[Stage.FAILED]
        policy = session.plan.unknown
        unknown = (
            f"unknown PCs: {policy.profile} for next {policy.remaining}"
            if policy.profile
            else "unknown PCs: menu"
        )
        marked = f"  marked {len(self.marked)}" if self.marked else ""
        self.query_one("#status", Static).update(
            f"pxetui  {where}  mode [b]{session.mode}[/b]   {state}\n"
            f"machines {len(machines)}  waiting {counts[Stage.WAITING]}"
            f"  booting {booting}  [green]done {counts[Stage.DONE]}[/]"
            f"  [red]failed {counts[Stage.FAILED]}[/]   {unknown}{marked}"
        )
        rival = self.query_one("#rival", Static)
        if self.pending.rival:
            rival.update(
                f"⚠  ANOTHER DHCP SERVER answers on {cfg.interface}: {self.pending.rival}."
                + (
                    f" pxetui switched to {self.pending.rival_mode} mode: it hands out no more addresses."
                    if self.pending.rival_mode
                    else f" pxetui runs in {session.mode} mode; PCs may get addresses from it."
                )
            )
            rival.add_class("shown")
        else:
            rival.remove_class("shown")

    # -- selection ----------------------------------------------------------------------------

    def cursor_mac(self) -> str | None:
        table = self.query_one("#machines", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def selected(self) -> list[str]:
        """The marked machines in table order, else the one under the cursor."""
        if self.marked:
            return [mac for mac in self.session.registry.macs() if mac in self.marked]
        mac = self.cursor_mac()
        return [mac] if mac else []

    def _refresh_marks(self, macs: Iterable[str]) -> None:
        self._sync_rows(set(macs))
        self._refresh_header()

    def action_toggle_mark(self) -> None:
        mac = self.cursor_mac()
        if mac is None:
            return
        self.marked ^= {mac}
        self._refresh_marks([mac])
        table = self.query_one("#machines", DataTable)
        table.move_cursor(row=table.cursor_row + 1)

    def action_mark_all(self) -> None:
        everything = set(self.session.registry.macs())
        changed = everything | self.marked
        self.marked = set() if self.marked else everything
        self._refresh_marks(changed)

    def _need_selection(self) -> list[str] | None:
        macs = self.selected()
        if not macs:
            self.notify("No machine selected: add one with n, or wait for a PC to boot", severity="warning")
            return None
        return macs

    def _done(self, message: str) -> None:
        self.notify(message, timeout=4)
        self.host.flush_updates()

    # -- actions ------------------------------------------------------------------------------

    def action_assign(self) -> None:
        macs = self._need_selection()
        if macs is None:
            return
        session = self.session
        arches = [m.arch for m in (session.registry.get(mac) for mac in macs) if m is not None]
        fitting = fmt.fitting_profiles(session.profiles.values(), arches)
        single = len(macs) == 1
        entry = session.plan.get(macs[0]) if single else None
        fields = [Field("profile", "Profile", "profile name", (entry.profile or "") if entry else "")]
        if single:
            fields.append(
                Field("hostname", "Hostname (optional)", "e.g. lab-pc-01", (entry and entry.hostname) or "")
            )
        who = macs[0] if single else f"{len(macs)} marked machines"

        def apply(values: dict[str, str]) -> str | None:
            name = values["profile"]
            if not name:
                return "choose a profile from the list or type its name"
            try:
                profile = session.profile(name)
            except PxetuiError as exc:
                return str(exc)
            if profile not in fitting:
                return f"{name} does not fit the firmware/arch of {who}; fitting: " + (
                    ", ".join(p.name for p in fitting) or "none"
                )
            hostname = values.get("hostname") or None
            try:
                for mac in macs:
                    session.assign(mac, name, hostname)
            except PxetuiError as exc:
                return str(exc)
            self._done(f"{name} assigned to {who}")
            return None

        self.app.push_screen(
            FormScreen(
                f"Assign a profile to {who}",
                fields,
                apply,
                note="Profiles that fit the machine's firmware and arch:",
                choices=[(p.name, p.title) for p in fitting],
                form_id="assign-form",
            )
        )

    def action_unassign(self) -> None:
        macs = self._need_selection()
        if macs is None:
            return
        for mac in macs:
            self.session.unassign(mac)
        self._done(f"unassigned {len(macs)} machine(s): they get the menu next boot")

    def action_add_machine(self) -> None:
        session = self.session

        def apply(values: dict[str, str]) -> str | None:
            try:
                mac = normalize_mac(values["mac"])
            except MacError as exc:
                return str(exc)
            hostname = values["hostname"] or None
            if hostname and (reason := check_hostname(hostname)):
                return reason
            profile = values["profile"] or None
            try:
                if profile:
                    session.profile(profile)
                session.add_machine(mac, hostname)
                if profile:
                    session.assign(mac, profile)
            except PxetuiError as exc:
                return str(exc)
            self._done(f"added {mac}" + (f" with {profile}" if profile else ""))
            return None

        self.app.push_screen(
            FormScreen(
                "Add a machine before power-on",
                [
                    Field("mac", "MAC address", "52:54:00:12:34:56, 52-54-00-…, 5254.0012.3456"),
                    Field("hostname", "Hostname (optional)", "e.g. lab-pc-01"),
                    Field(
                        "profile",
                        "Profile (optional)",
                        "leave empty for the menu",
                        suggestions=sorted(session.profiles),
                    ),
                ],
                apply,
                form_id="add-form",
            )
        )

    def action_import_plan(self) -> None:
        session = self.session

        def apply(values: dict[str, str]) -> str | None:
            if not values["path"]:
                return "give the path of a mac,profile,hostname CSV file"
            try:
                count = session.import_plan_csv(Path(os.path.expanduser(values["path"])))
            except PlanError as exc:
                shown = exc.problems[:8]
                more = len(exc.problems) - len(shown)
                return (
                    "\n".join(shown + ([f"… and {more} more"] if more > 0 else []))
                    + "\nNothing was imported."
                )
            except PxetuiError as exc:
                return str(exc)
            self._done(f"imported {count} machine(s) from {values['path']}")
            return None

        self.app.push_screen(
            FormScreen(
                "Import a plan (CSV: mac,profile,hostname)",
                [Field("path", "CSV file", "/path/to/lab.csv")],
                apply,
                note="Every row is checked first: a file with a bad row changes nothing.",
                form_id="import-form",
            )
        )

    def action_export_report(self) -> None:
        session = self.session

        def apply(values: dict[str, str]) -> str | None:
            directory = Path(os.path.expanduser(values["directory"] or str(session.state.path)))
            try:
                csv_path, json_path = session.export_report(directory)
            except PxetuiError as exc:
                return str(exc)
            self._done(f"report written: {csv_path} and {json_path.name}")
            return None

        self.app.push_screen(
            FormScreen(
                "Export the session report (CSV and JSON)",
                [Field("directory", "Directory", "", str(session.state.path))],
                apply,
                form_id="export-form",
            )
        )

    def action_boot_local(self) -> None:
        macs = self._need_selection()
        if macs is None:
            return
        session = self.session
        entries = [session.plan.get(mac) for mac in macs]
        turn_on = not all(e is not None and e.boot_local for e in entries)
        for mac in macs:
            session.set_boot_local(mac, turn_on)
        state = "boot from the local disk" if turn_on else "get their profile or the menu"
        self._done(f"{len(macs)} machine(s) will {state} next time")

    def action_unknown_policy(self) -> None:
        session = self.session
        policy = session.plan.unknown

        def apply(values: dict[str, str]) -> str | None:
            profile = values["profile"] or None
            count_text = values["count"] or ("0" if profile is None else "")
            try:
                count = int(count_text)
            except ValueError:
                return f"count {count_text!r} is not a whole number"
            try:
                session.set_unknown_policy(profile, count)
            except PxetuiError as exc:
                return str(exc)
            self._done(
                f"the next {count} unknown PCs get {profile}" if profile else "unknown PCs get the menu"
            )
            return None

        self.app.push_screen(
            FormScreen(
                "Machines not in the plan",
                [
                    Field(
                        "profile",
                        "Profile (empty: show them the menu)",
                        "profile name",
                        policy.profile or "",
                        suggestions=sorted(session.profiles),
                    ),
                    Field("count", "How many unknown PCs get it", "e.g. 10", str(policy.remaining or "")),
                ],
                apply,
                choices=[(p.name, p.title) for p in sorted(session.profiles.values(), key=lambda p: p.name)],
                form_id="policy-form",
            )
        )

    def action_remove_machine(self) -> None:
        macs = self._need_selection()
        if macs is None:
            return
        planned = [mac for mac in macs if self.session.plan.get(mac) is not None]
        if not planned:
            self.notify("none of them is in the plan", title="Remove", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            for mac in planned:
                self.session.remove_machine(mac)
            self._done(f"removed {len(planned)} machine(s) from the plan: they get the menu next boot")

        question = f"Take {len(planned)} machine(s) off the plan? Their profile and hostname are forgotten."
        self.app.push_screen(ConfirmScreen(question, yes="Remove", no="Keep"), answered)

    def action_wake(self) -> None:
        macs = self._need_selection()
        if macs is None:
            return
        try:
            count = self.session.wake(macs)
        except PxetuiError as exc:
            self.notify(str(exc), title="Wake-on-LAN", severity="error", timeout=8)
            return
        self._done(f"wake-on-LAN sent to {count} machine(s)")

    def action_details(self) -> None:
        mac = self.cursor_mac()
        if mac is not None:
            self.app.push_screen(DetailScreen(self.session, mac, self.clock))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def action_toggle_log(self) -> None:
        pane = self.query_one("#log-pane", Collapsible)
        pane.collapsed = not pane.collapsed

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.BINDINGS))

    def palette_bindings(self) -> list[Binding]:
        return [b for b in self.BINDINGS if isinstance(b, Binding) and not b.action.startswith("app.")]


# Sizes of the widgets' render caches, for a screen of at most ~60 rows. Textual's defaults
# (10,000 cells, 1,000 lines) fill with stale entries as rows change, and every entry is
# objects that a full garbage collection scans with the GIL held, services' thread waiting:
# 50-170 ms per collection with 300 machines at the defaults.
RENDER_CACHE_SIZES = {
    "_row_render_cache": 200,
    "_row_renderable_cache": 200,
    "_cell_render_cache": 200 * len(COLUMNS),
    "_line_cache": 200,
}


def trim_render_caches(*widgets: DataTable[Text] | RichLog) -> None:
    for widget in widgets:
        for name, size in RENDER_CACHE_SIZES.items():
            cache = getattr(widget, name, None)
            if cache is not None and hasattr(cache, "maxsize"):
                cache.maxsize = size


def _log_line(event: Event) -> str:
    extras = " ".join(f"{k}={v}" for k, v in event.fields.items())
    who = f" {event.mac}" if event.mac else ""
    return f"{fmt.clock(event.ts)} {event.name}{who} {extras}".rstrip()


def _log_style(event: Event) -> str:
    if isinstance(event, (Error, InstallFailed, DhcpRival, DhcpNak)):
        return "red"
    if isinstance(event, InstallDone):
        return "green"
    if isinstance(event, PlanEvent):
        return "cyan"
    return ""


def _cell(text: str, style: str = "") -> Text:
    return Text(" " + text, style=style, no_wrap=True, overflow="ellipsis")
