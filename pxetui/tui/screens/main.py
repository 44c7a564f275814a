"""The main screen: status header and summary bar, rival-DHCP warning, the machine table, the log.

Everything here fits the terminal it is drawn on: at 80x24 the header keeps to its two lines,
the table keeps MAC, OS, stage and progress (layout.py decides what gives way), the event log
shrinks and the key bar shows the keys that fit; on a wide terminal the columns grow. The
event log reads as sentences (model/sentences.py), the raw events one key (r) away.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Collapsible, DataTable, RichLog, Static

from pxetui.boot.cache import is_servable
from pxetui.boot.profiles import Profile
from pxetui.errors import PxetuiError
from pxetui.host.mac import MacError, normalize_mac
from pxetui.model.events import DhcpNak, DhcpRival, Error, Event, InstallDone, InstallFailed, PlanEvent
from pxetui.model.plan import PlanError
from pxetui.model.registry import Machine
from pxetui.model.report import REPORT_NAME
from pxetui.model.sentences import log_line
from pxetui.session import Session
from pxetui.tui import format as fmt
from pxetui.tui import layout, stalls
from pxetui.tui.contracts import Clock, MainHost
from pxetui.tui.screens.confirm import ConfirmScreen
from pxetui.tui.screens.detail import DetailScreen
from pxetui.tui.screens.forms import Choice, FetchOffer, Field, FormScreen
from pxetui.tui.screens.help import HelpScreen
from pxetui.tui.updates import LOG_KEEP, PendingUpdates, ProgressThrottle
from pxetui.tui.widgets import KeyBar, MachineTable, bar_keys

# (key, label, least width) in display order; layout.fit_columns picks and widens them.
COLUMNS = tuple((c.key, c.label, c.width) for c in layout.COLUMNS)
MARK = "●"
LOG_PANE_LINES = 300  # drawn lines the pane scrolls back through (log_lines keeps LOG_KEEP)
OFFSCREEN_ROWS_PER_REFRESH = 20
LOG_LINES_PER_REFRESH = 40
POLICY_MAX = 1000  # a typed count above this is a typo; "all" is what such a lab means
POLICY_ALL = 1_000_000  # "all": more PCs than any room has, shown as "all"
Row = dict[str, Text]
PROGRESS_COLUMNS = {"progress", "elapsed"}  # a change of these alone waits for ProgressThrottle
GROUP_STYLES = {
    "waiting": "grey62",
    "at DHCP": "cyan",
    "loading": "dodger_blue1",
    "installing": "magenta",
    "done": "green",
    "on disk": "steel_blue",
    "failed": "red",
    "stalled": "yellow",
}
STALLED_STYLE = "bold yellow"
# The package proxy's last check of its package hosts: answered, did not, not asked yet.
UPSTREAM_REACH = {
    True: ("upstream ✓", "green"),
    False: ("upstream ✗", "bold yellow"),
    None: ("upstream ?", "dim"),
}
# The key bar keeps these when the terminal is narrow, most important first (help and quit always).
KEY_PRIORITY = (
    "help", "app.quit", "assign", "add_machine", "import_plan", "unknown_policy", "toggle_mark",
    "details", "export_report", "boot_local", "unassign", "wake", "toggle_log", "toggle_raw", "profiles",
)  # fmt: skip
NO_PC_YET = "no PC yet"
EMPTY_HINT = (
    "[b]No PC yet.[/b] Switch a PC on and let it boot from the network (its boot menu key, often"
    " F12: PXE, network or IPv4): it shows up here by itself.\n\n"
    "Before power-on:\n"
    "  [b]n[/b]  add a PC by its MAC address\n"
    "  [b]i[/b]  import a plan (CSV: mac,profile,hostname)\n"
    "  [b]p[/b]  give PCs that are not in the plan a profile\n"
    "  [b]?[/b]  every key"
)


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
        Binding("o", "profiles", "OS", tooltip="the OS profiles: fetch, verify, remove, import an ISO"),
        Binding("w", "wake", "Wake", tooltip="send wake-on-LAN to the marked machines"),
        Binding("enter", "details", "Details", tooltip="timeline and DHCP fingerprint"),
        Binding("g", "toggle_log", "Log", tooltip="show / hide the event log"),
        Binding("r", "toggle_raw", "Raw", tooltip="event log: sentences / the raw events with every field"),
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
        self._rows: dict[str, Row] = {}  # what each row shows
        self.progress = ProgressThrottle()
        self._stale: set[str] = set()
        # The raw lines (`Event.describe`, what `r` shows) and the sentences the log shows.
        self.log_lines: list[str] = []
        self.log_sentences: list[str] = []
        self._log_events: deque[Event] = deque(maxlen=LOG_PANE_LINES)
        self.raw_log = False
        self.shown_columns: list[tuple[layout.Column, int]] = []
        self._width = 0
        self.ready = False  # composed and not yet torn down: safe to refresh
        self._status: Text | None = None  # what the status lines show now

    def compose(self) -> ComposeResult:
        with Vertical(id="top"):
            yield Static(id="status")
            yield Static(id="rival")
            yield Static(id="uplink")
        table = MachineTable(id="machines", cursor_type="row", zebra_stripes=True, cell_padding=0)
        log = RichLog(id="log", max_lines=LOG_PANE_LINES, wrap=True, markup=False)
        trim_render_caches(table, log)
        yield table
        yield Static(EMPTY_HINT, id="empty-hint")
        with Collapsible(title=self._log_title(), collapsed=False, id="log-pane"):
            yield log
        yield KeyBar(bar_keys(self.BINDINGS, KEY_PRIORITY), id="keys")

    def on_mount(self) -> None:
        table = self.query_one("#machines", DataTable)
        self._fit(self.app.size.width, self.app.size.height)
        self.ready = True
        self.apply_updates(None, [], True)
        table.focus()

    def on_unmount(self) -> None:
        self.ready = False

    def on_resize(self, event: events.Resize) -> None:
        if not self.ready:
            return
        self._fit(event.size.width, event.size.height)
        self._refresh_header()

    # -- fitting the terminal --------------------------------------------------------------

    def _fit(self, width: int, height: int) -> None:
        """Choose the columns for `width` (rebuilding the table if they change) and the log's height."""
        size = layout.log_size(height)
        for name in layout.LOG_SIZES:  # a class, not a style: the log may not be mounted yet
            self.set_class(name == size, f"-log-{name}")
        shown = layout.fit_columns(width)
        self._width = width
        if shown == self.shown_columns:
            return
        self.shown_columns = shown
        table = self.query_one("#machines", DataTable)
        cursor = self.cursor_mac()
        table.clear(columns=True)
        for column, cells in shown:
            table.add_column(f" {column.label}", key=column.key, width=cells)
        self._rows.clear()  # cells were cut for the old widths: every row is drawn again
        self._sync_rows(None)
        if cursor is not None and cursor in self.session.registry.machines:
            table.move_cursor(row=table.get_row_index(cursor))

    def _column_width(self, key: str) -> int:
        return next((cells for column, cells in self.shown_columns if column.key == key), 0)

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
        if not events:
            return
        self.log_lines.extend(e.describe() for e in events)
        del self.log_lines[:-LOG_KEEP]
        self.log_sentences.extend(log_line(e) for e in events)
        del self.log_sentences[:-LOG_KEEP]
        self._log_events.extend(events)
        log = self.query_one("#log", RichLog)
        skipped = len(events) - LOG_LINES_PER_REFRESH
        texts = [self._log_text(event) for event in events[max(0, skipped) :]]
        if skipped > 0:
            texts.insert(
                0, Text(f"… {skipped} more events (all are in the machines' timelines)", style="dim")
            )
        # One write for the refresh's lines: RichLog measures, lays out and scrolls per write.
        log.write(Text("\n").join(texts))

    def _log_text(self, event: Event) -> Text:
        line = event.describe() if self.raw_log else log_line(event)
        return Text(line, style=_log_style(event))

    def _log_title(self) -> str:
        if self.raw_log:
            return "Raw events (r: sentences, g: hide)"
        return "Event log (r: raw events, g: hide)"

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
        table = self.query_one("#machines", MachineTable)
        now = self.clock()
        if any(mac not in self._rows for mac in self._stale):
            for mac in session.registry.macs():  # registry order: planned first, then as seen
                if mac not in self._rows:
                    self._update_row(table, mac, now)
        first, last = self._visible_span(table)
        ordered = [str(row.key.value) for row in table.ordered_rows]
        due = [mac for mac in ordered[first:last] if mac in self._stale]
        # Off screen, the rows just below the screen come first (the next a scroll shows),
        # in table order, so catching up is the same on every run, not the order of a set.
        below = (mac for mac in ordered[last:] + ordered[:first] if mac in self._stale)
        due += itertools.islice(below, OFFSCREEN_ROWS_PER_REFRESH)
        due += [mac for mac in self._stale if mac not in table.rows]  # removed before drawn
        for mac in due:
            self._update_row(table, mac, now)

    @staticmethod
    def _visible_span(table: DataTable[Text]) -> tuple[int, int]:
        first = int(table.scroll_y)
        return first, first + table.size.height + 1

    def _update_row(self, table: MachineTable, mac: str, now: float) -> None:
        self._stale.discard(mac)
        machine = self.session.registry.get(mac)
        if machine is None:
            if mac in table.rows:  # taken off the plan before it ever booted
                table.remove_row(mac)
            self._rows.pop(mac, None)
            self.progress.forget(mac)
            return
        row = self._row(machine, now)
        old = self._rows.get(mac)
        sample_at, drawn_at = machine.last_seen or 0.0, time.monotonic()
        if old is None or mac not in table.rows:
            table.add_row(*(row[column.key] for column, _ in self.shown_columns), key=mac)
        else:
            changed = {
                column.key: row[column.key]
                for column, _ in self.shown_columns
                if row[column.key] != old[column.key]
            }
            if (
                changed.keys() <= PROGRESS_COLUMNS
                and changed
                and not self.progress.due(mac, sample_at, drawn_at)
            ):
                self._stale.add(mac)  # its figures wait for a later refresh; _rows keeps what is shown
                return
            if changed:
                table.update_cells(mac, changed.items())
        self.progress.drawn(mac, sample_at, drawn_at)
        self._rows[mac] = row

    def _row(self, machine: Machine, now: float) -> Row:
        entry = self.session.plan.get(machine.mac)
        stuck = stalls.stall(machine, now, self.pending.asks(machine.mac))
        mark = MARK if machine.mac in self.marked else " "
        if stuck is not None:
            # The step it got to stays in Stage; Progress says it stalled and the likely cause
            # (the whole cause where the column has room; the details always have it).
            stage = _cell(fmt.stage_text(machine), STALLED_STYLE)
            room = self._column_width("progress") - 1
            transfer = machine.transfer
            if transfer is not None and not transfer.finished and transfer.percent is not None:
                shown = f"stalled at {transfer.percent:.0f}%: {stuck.hint}"
            else:
                shown = f"stalled: {stuck.cause}"
                if len(shown) > room:
                    shown = f"stalled: {stuck.hint}"
            progress = _cell(shown, "yellow")
        else:
            stage = _cell(fmt.stage_text(machine), fmt.STAGE_STYLES.get(machine.stage, ""))
            progress = _cell(fmt.progress(machine))
        return {
            "mac": _cell(f"{mark} {machine.mac}", "bold" if mark != " " else ""),
            "vendor": _cell(machine.vendor),
            "hostname": _cell((entry.hostname if entry else None) or ""),
            "firmware": _cell(machine.firmware),
            "ip": _cell(machine.ip or ""),
            "os": _cell(fmt.assigned(entry, machine), "italic" if entry is None or not entry.profile else ""),
            "stage": stage,
            "progress": progress,
            "elapsed": _cell(fmt.elapsed(machine, now)),
        }

    def _refresh_header(self) -> None:
        width = max(20, (self._width or self.app.size.width) - 2)  # the status line's padding
        machines = self.session.registry.snapshot()
        status = Text("\n", no_wrap=True).join(
            [self._status_line(width), self._summary_line(machines, width)]
        )
        if status != self._status:
            # Its height is fixed (two lines): no layout of the whole screen for new figures.
            self.query_one("#status", Static).update(status, layout=self._status is None)
            self._status = status
        self.set_class(not machines, "-empty")
        self._refresh_rival()
        self._refresh_uplink()

    def _status_line(self, width: int) -> Text:
        """Where pxetui serves, its mode, its services, the unknown-PC policy: what fits `width`."""
        session = self.session
        cfg = session.config
        address = session.address or cfg.address
        where = Text.assemble((cfg.interface, "bold"), f" {address}" if address else "")
        services = self.pending.services
        if self.pending.ready:
            state = Text()
            for n, (name, desc) in enumerate(services.items()):
                port = desc.get("port") if isinstance(desc, dict) else None
                # Only a port an operator may have chosen is worth the room at 80 columns.
                show_port = port and (width >= 110 or name == "http")
                state.append("  " if n else "")
                dot = self._service_dot(name, desc)
                if dot is None:  # listed with state off (`--package-proxy off`): not running
                    state.append_text(Text(f"{name.upper()} off", style="dim"))
                    continue
                shown = Text.assemble(name.upper(), dot, f":{port}" if show_port else "")
                state.append_text(shown)
            if not services:
                state = Text("no boot services in this build", style="yellow")
        elif self.host.starting:
            state = Text("starting services…", style="yellow")
        else:
            state = Text("services not running", style="dim")
        policy = session.plan.unknown
        if policy.profile:
            count = "all" if policy.remaining > POLICY_MAX else f"next {policy.remaining}"
            unknown = Text(f"unknown PCs: {policy.profile} for {count}")
        else:
            unknown = Text("unknown PCs: menu")
        parts = [
            (Text("pxetui", style="bold"), 1),
            (where, 9),
            (Text.assemble("mode ", (session.mode, "bold")), 8),
            (state, 7),
            (unknown, 5),
        ]
        if self.marked:
            parts.append((Text(f"marked {len(self.marked)}", style="bold"), 6))
        keep = layout.fit_parts([(t.plain, prio) for t, prio in parts], width)
        return _joined([parts[i][0] for i in keep], width)

    def _service_dot(self, name: str, desc: object) -> tuple[str, str] | None:
        """The dot after a service's name: green runs, yellow runs but its upstream does not
        answer, red failed; None for a service listed with state off."""
        state = desc.get("state") if isinstance(desc, dict) else None
        if state == "off":
            return None
        if state == "failed":
            return ("●", "red")
        if name == "proxy":
            stats = self.session.registry.proxy
            if stats is not None and stats.upstream_ok is False:
                return ("●", "yellow")
        return ("●", "green")

    def _proxy_texts(self) -> list[Text]:
        """The package proxy's figures, longest first (the summary line takes the longest that
        fits); none while the proxy sends none. Down: served to the PCs, up: from upstream."""
        stats = self.session.registry.proxy
        if stats is None or not stats.url:
            return []
        served, upstream = _short_size(stats.served_bytes), _short_size(stats.upstream_bytes)
        cached, cache = _short_size(stats.from_cache), _short_size(stats.cache_bytes)
        label, style = UPSTREAM_REACH[stats.upstream_ok]
        address = stats.url.removeprefix("http://")
        return [
            Text.assemble(
                f"proxy {address} ", (label, style),
                f"  ↓{served} served ({cached} from cache)  ↑{upstream} from upstream  cache {cache}",
            ),
            Text.assemble("proxy ", (label, style), f"  ↓{served} served ({cached} cached)  ↑{upstream} up"),
            Text.assemble("proxy ", (label[-1], style), f" ↓{served} ({cached} cached) ↑{upstream}"),
            Text.assemble(("pkg", style if stats.upstream_ok is False else ""), f" ↓{served} ↑{upstream}"),
        ]  # fmt: skip

    def _uplink_warning(self) -> str | None:
        """The no-uplink sentence while the laptop has no route out (the proxy's latest word)."""
        stats = self.session.registry.proxy
        if stats is not None:
            return stats.warning
        desc = self.pending.services.get("proxy")
        warning = desc.get("warning") if isinstance(desc, dict) else None
        return str(warning) if warning else None

    def _refresh_uplink(self) -> None:
        uplink = self.query_one("#uplink", Static)
        warning = self._uplink_warning()
        if warning:
            _update_if_changed(uplink, f"⚠  {warning[:1].upper()}{warning[1:]}.")
            uplink.add_class("shown")
        else:
            uplink.remove_class("shown")

    def _summary_line(self, machines: list[Machine], width: int) -> Text:
        """`███▒▒░ 6 PCs  1 waiting  1 at DHCP  ...  pkg ↓1.2G ↑412M`: the room at a glance."""
        if not machines:
            return Text(NO_PC_YET, style="dim")
        counts = stalls.summary(machines, self.clock(), self.pending.asks)
        parts = [(Text(f"{len(machines)} PCs", style="bold"), 9)]
        for group, count in counts.items():
            style = GROUP_STYLES[group] if count else "dim"
            text = Text.assemble((str(count), f"bold {style}" if count else "dim"), (f" {group}", style))
            # Zero groups give way first; of the rest, failed and stalled stay longest.
            important = 4 if group in ("failed", "stalled") else 3
            parts.append((text, important if count else 1))
        proxy = self._proxy_texts()
        least_bar = 4 if proxy else 8
        plain = [(t.plain, prio) for t, prio in parts]
        keep = layout.fit_parts(plain, width - least_bar - 1)
        if proxy:
            # The proxy takes the longest of its texts that costs no PC count (zero groups
            # give way to it); none, when even the shortest would cost one.
            needed = {i for i in keep if parts[i][1] > 1}
            for text in proxy:
                reserved = layout.fit_parts(plain, width - least_bar - 1 - len(text.plain) - 2)
                if needed <= set(reserved):
                    keep, proxy = reserved, [text]
                    break
            else:
                proxy = []
        counts_text = _joined([parts[i][0] for i in keep] + proxy, width)
        bar_width = min(40, width - len(counts_text.plain) - 1)
        line = Text(no_wrap=True, overflow="ellipsis")
        for group, cells in stalls.segments(counts, bar_width):
            line.append("█" * cells, style=GROUP_STYLES[group])
        if line.plain:
            line.append(" ")
        line.append_text(counts_text)
        return line

    def _refresh_rival(self) -> None:
        session = self.session
        rival = self.query_one("#rival", Static)
        if self.pending.rival:
            _update_if_changed(
                rival,
                f"⚠  ANOTHER DHCP SERVER answers on {session.config.interface}: {self.pending.rival}."
                + (
                    f" pxetui switched to {self.pending.rival_mode} mode: it hands out no more addresses."
                    if self.pending.rival_mode
                    else f" pxetui runs in {session.mode} mode; PCs may get addresses from it."
                ),
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
        offer = FetchOffer(self.host.start_fetch)  # fetch on first use: a second Enter accepts

        def apply(values: dict[str, str]) -> str | None:
            name = values["profile"]
            if not name:
                return "choose a profile from the list or type its name"
            hostname = values.get("hostname") or None
            refused = offer.attempt(lambda: session.assign_machines(macs, name, hostname), who, "assign it")
            if refused:
                return refused
            if offer.started:
                self._done(f"fetching {name}; assigned to {who}: it boots once the files are verified")
            else:
                self._done(f"{name} assigned to {who}")
            return None

        self.app.push_screen(
            FormScreen(
                f"Assign a profile to {who}",
                fields,
                apply,
                note="Profiles that fit its firmware and arch (✓ files here, ↓ to fetch: offered on Enter):",
                choices=self._profile_choices(fitting),
                form_id="assign-form",
                focus_choices=True,
            )
        )

    def _profile_choices(self, profiles: Iterable[Profile]) -> list[Choice]:
        cache = self.session.config.cache_dir
        fetching = self.session.fetching
        return [
            Choice(p.name, p.title, "✓" if is_servable(p, cache) else ("⇣" if p.name in fetching else "↓"))
            for p in profiles
        ]

    def action_unassign(self) -> None:
        macs = self._need_selection()
        if macs is None:
            return
        for mac in macs:
            self.session.unassign(mac)
        self._done(f"unassigned {len(macs)} machine(s): they get the menu next boot")

    def action_add_machine(self) -> None:
        session = self.session
        offer = FetchOffer(self.host.start_fetch)  # as in the assign form

        def apply(values: dict[str, str]) -> str | None:
            try:
                mac = normalize_mac(values["mac"])
            except MacError as exc:
                return str(exc)
            hostname = values["hostname"] or None
            profile = values["profile"] or None

            def add() -> None:
                session.add_machine(mac, hostname, profile)

            if refused := offer.attempt(add, mac, "add the machine"):
                return refused
            fetching = f"; fetching {profile}: it boots once the files are verified" if offer.started else ""
            self._done(f"added {mac}" + (f" with {profile}" if profile else "") + fetching)
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
                count = len(exc.problems)
                # The verdict first: on a short screen the list's end may be below the fold.
                return (
                    f"Nothing was imported: {count} problem{'s' if count != 1 else ''} in the file.\n"
                    + "\n".join(shown + ([f"… and {more} more"] if more > 0 else []))
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
        confirmed: set[Path] = set()  # directories whose old report the operator agreed to replace

        def apply(values: dict[str, str]) -> str | None:
            directory = Path(os.path.expanduser(values["directory"] or str(session.state.path))).absolute()
            if reason := _make_directory(directory):
                return reason
            old = [p for p in _report_paths(directory) if p.exists()]
            if old and directory not in confirmed:
                confirmed.add(directory)
                when = fmt.clock(old[0].stat().st_mtime)
                return (
                    f"{old[0]} exists (written {when}). Press Enter again to replace it,"
                    " or give another directory."
                )
            try:
                csv_path, json_path = session.export_report(directory)
            except PxetuiError as exc:
                return str(exc)
            self._done(f"report written: {csv_path} and {json_path.name}")
            return None

        self.app.push_screen(
            FormScreen(
                "Export the session report (CSV and JSON)",
                [Field("directory", "Directory (created if missing)", "", str(session.state.path))],
                apply,
                note=f"Writes {REPORT_NAME}.csv and {REPORT_NAME}.json there.",
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
            if count_text.lower() == "all":
                count = POLICY_ALL
            else:
                try:
                    count = int(count_text)
                except ValueError:
                    return f"count {count_text!r} is not a whole number (or type all)"
                if count > POLICY_MAX:
                    return f"{count} PCs is more than a lab has (at most {POLICY_MAX}); type all for every PC"
            try:
                session.set_unknown_policy(profile, count)
            except PxetuiError as exc:
                return str(exc)
            if profile is None:
                self._done("unknown PCs get the menu")
            elif count == POLICY_ALL:
                self._done(f"every unknown PC gets {profile}")
            else:
                self._done(f"the next {count} unknown PCs get {profile}")
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
                    Field(
                        "count",
                        f"How many unknown PCs get it (1-{POLICY_MAX}, or all)",
                        "e.g. 10",
                        "all" if policy.remaining > POLICY_MAX else str(policy.remaining or ""),
                    ),
                ],
                apply,
                choices=self._profile_choices(sorted(session.profiles.values(), key=lambda p: p.name)),
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
            self.app.push_screen(DetailScreen(self.session, mac, self.clock, self.pending.asks))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def action_toggle_log(self) -> None:
        pane = self.query_one("#log-pane", Collapsible)
        pane.collapsed = not pane.collapsed

    def action_toggle_raw(self) -> None:
        """Sentences <-> the raw events: the pane is drawn again from the events it holds."""
        self.raw_log = not self.raw_log
        self.query_one("#log-pane", Collapsible).title = self._log_title()
        log = self.query_one("#log", RichLog)
        log.clear()
        for event in self._log_events:
            log.write(self._log_text(event))

    def action_profiles(self) -> None:
        self.host.open_profiles()

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


def _log_style(event: Event) -> str:
    if isinstance(event, (Error, InstallFailed, DhcpRival, DhcpNak)):
        return "red"
    if isinstance(event, InstallDone):
        return "green"
    if isinstance(event, PlanEvent):
        return "cyan"
    return ""


def _make_directory(directory: Path) -> str | None:
    if directory.exists() and not directory.is_dir():
        return f"cannot write the report: {directory} is not a directory (it is a file)"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {directory}: {exc.strerror or exc}"
    return None


def _report_paths(directory: Path) -> list[Path]:
    return [directory / f"{REPORT_NAME}.csv", directory / f"{REPORT_NAME}.json"]


def _joined(parts: list[Text], width: int, separator: str = "  ") -> Text:
    line = Text(separator, no_wrap=True, overflow="ellipsis").join(parts)
    line.no_wrap = True
    line.overflow = "ellipsis"
    line.truncate(width, overflow="ellipsis")
    return line


def _short_size(n: int) -> str:
    """`412M`, `1.2G`: a size in four or five cells, for the header."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return f"{n}B"


def _update_if_changed(widget: Static, content: str) -> None:
    """A warning bar's text, only when it changed: `Static.update` lays the whole screen out again."""
    if widget.content != content:
        widget.update(content)


def _cell(text: str, style: str = "") -> Text:
    return Text(" " + text, style=style, no_wrap=True, overflow="ellipsis")
