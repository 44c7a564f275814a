"""One machine in full: plan, addresses, DHCP fingerprint and the timeline of its boots."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from pxetui.model.registry import Machine
from pxetui.model.units import size
from pxetui.session import Session
from pxetui.tui import format as fmt
from pxetui.tui import stalls
from pxetui.tui.contracts import Clock

REFRESH_SECONDS = 0.5

# Fingerprint keys recorded by the registry, with the DHCP option each comes from.
FINGERPRINT = (
    ("arch", "93", "client system architecture"),
    ("vendor_class", "60", "vendor class"),
    ("uuid", "97", "client machine UUID"),
    ("user_class", "77", "user class"),
    ("client_id", "61", "client identifier"),
    ("params", "55", "parameter request list"),
)


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back"),
    ]

    def __init__(
        self,
        session: Session,
        mac: str,
        clock: Clock,
        asks: Callable[[str], int | None] = lambda mac: None,
    ) -> None:
        super().__init__(id="detail")
        self.session = session
        self.mac = mac
        self.clock = clock
        self.asks = asks  # DHCP DISCOVERs without an address, as the main screen counted them
        self._shown: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        with Horizontal(id="detail-top"):
            yield Static(id="detail-info")
            with Vertical(id="detail-fp"):
                yield Static("DHCP fingerprint", classes="section")
                yield DataTable(id="fingerprint", cursor_type="none", show_cursor=False)
        yield Static("Timeline", classes="section")
        yield DataTable(id="timeline", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        fp = self.query_one("#fingerprint", DataTable)
        fp.add_columns("Opt", "Meaning", "Value")
        timeline = self.query_one("#timeline", DataTable)
        timeline.add_columns("Time", "+", "Step", "Detail")
        self.refresh_details()
        self.set_interval(REFRESH_SECONDS, self.refresh_details)
        timeline.focus()

    def refresh_details(self) -> None:
        session = self.session
        machine = session.registry.get(self.mac) or Machine(mac=self.mac)
        entry = session.plan.get(self.mac)
        now = self.clock()
        info = [
            ("Vendor", machine.vendor or "unknown"),
            ("Hostname", (entry.hostname if entry else None) or "—"),
            ("Boots next", fmt.assigned(entry, machine)),
            ("Stage", _stage_text(machine, now, self.asks(self.mac))),
            ("IP", machine.ip or "—"),
            ("Firmware", fmt.firmware_text(machine)),
            ("Boots seen", str(machine.boots)),
            ("Elapsed", fmt.elapsed(machine, now) or "—"),
            ("Transfer", fmt.transfer_text(machine)),
            ("Packages", _packages_text(machine, session.registry.proxy is not None)),
            ("Last error", machine.last_error or "—"),
        ]
        state = (tuple(info), tuple(sorted(machine.fingerprint.items(), key=str)), len(machine.timeline))
        if state == self._shown:
            return
        self._shown = state
        self.query_one("#detail-title", Static).update(f"[b]{self.mac}[/b]  {machine.vendor}")
        self.query_one("#detail-info", Static).update(
            Text.assemble(*[part for k, v in info for part in ((f"{k:<11}", "bold"), f"{v}\n")])
        )
        fp = self.query_one("#fingerprint", DataTable)
        fp.clear()
        for key, option, meaning in FINGERPRINT:
            value = machine.fingerprint.get(key)
            if key == "arch" and isinstance(value, int):
                value = fmt.arch_label(value)
            fp.add_row(option, meaning, "" if value is None else str(value))
        timeline = self.query_one("#timeline", DataTable)
        timeline.clear()
        start = machine.timeline[0][0] if machine.timeline else None
        for ts, step, detail in machine.timeline:
            offset = fmt.duration(ts - start) if start is not None else ""
            timeline.add_row(fmt.clock(ts), offset, step, detail)


def _packages_text(machine: Machine, proxy_runs: bool) -> str:
    """What its installer fetched through the package proxy (over all its installs)."""
    if machine.proxy_bytes:
        return f"{size(machine.proxy_bytes)} through the package proxy"
    return "none through the package proxy yet" if proxy_runs else "—"


def _stage_text(machine: Machine, now: float, asks: int | None) -> str:
    stuck = stalls.stall(machine, now, asks)
    return stuck.describe() if stuck is not None else fmt.stage_text(machine)
