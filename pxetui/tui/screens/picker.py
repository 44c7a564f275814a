"""The interface picker, shown when pxetui starts without an interface.

A bridge's (or bond's) member ports are listed last, dimmed and marked with why they cannot be
chosen: serving on a port serves nobody (the bridge holds the address and takes the packets);
Enter on one says to pick the bridge instead. Which interface is a port comes with the list the
app gives the screen (`InterfaceInfo.member_of`, read by host/netif.py); the screen reads no
system files itself.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Static

from pxetui.host.netif import InterfaceInfo, unusable_reason
from pxetui.tui.contracts import ChooseInterface, InterfaceLister
from pxetui.tui.screens.confirm import ConfirmScreen
from pxetui.tui.widgets import KeyBar

PICKER_KEYS = (("↑↓", "choose", 1), ("enter", "serve on it", 3), ("r", "refresh", 1), ("q", "quit", 2))
HINT = "↑/↓ choose, Enter serves on it. Nothing is sent until you press Enter."

INTRO = (
    "[b]pxetui[/b]: pick the interface plugged into the lab switch. pxetui serves DHCP, TFTP and"
    " HTTP on it (and only on it) until you quit."
)


def interface_note(info: InterfaceInfo) -> tuple[str, str]:
    """(note, style) for one interface: why it is an unusable or a risky choice."""
    unusable = unusable_reason(info)
    if unusable:
        return f"✗ {unusable}", "yellow"
    if info.default_route:
        return "⚠ default route (uplink): DHCP here can break it", "bold red"
    if not info.up:
        return "link down: plug in the cable", "yellow"
    if info.address is None:
        return "no IPv4 address: a temporary one is needed (--address)", "yellow"
    return "", ""


class PickerScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "choose", "Serve on this interface"),
        Binding("r", "reload", "Refresh"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, list_interfaces: InterfaceLister, choose: ChooseInterface) -> None:
        super().__init__(id="picker")
        self.list_interfaces = list_interfaces
        self.choose = choose  # the app opens the main screen and starts the services on it
        self.interfaces: dict[str, InterfaceInfo] = {}

    def compose(self) -> ComposeResult:
        yield Static(INTRO, id="picker-intro")
        yield DataTable(id="interfaces", cursor_type="row")
        yield Static(id="picker-hint")
        # Enter is the table's key too, so a Footer showed the focused table's bindings without it.
        yield KeyBar(PICKER_KEYS)

    def on_mount(self) -> None:
        table = self.query_one("#interfaces", DataTable)
        for key, label in (
            ("name", "Interface"),
            ("link", "Link"),
            ("speed", "Speed"),
            ("mac", "MAC"),
            ("ipv4", "IPv4"),
            ("note", "Note"),
        ):
            table.add_column(label, key=key)
        self.action_reload()
        table.focus()

    def action_reload(self) -> None:
        table = self.query_one("#interfaces", DataTable)
        table.clear()
        self.interfaces = {i.name: i for i in self.list_interfaces() if i.name != "lo"}
        # The likely lab NICs first: up, not the uplink; the ports nobody can choose last.
        ordered = sorted(
            self.interfaces.values(),
            key=lambda i: (unusable_reason(i) is not None, i.default_route, not i.up, i.name),
        )
        for info in ordered:
            note, style = interface_note(info)
            unusable = unusable_reason(info) is not None
            table.add_row(
                Text(info.name, style="dim" if unusable else "bold"),
                Text("up", style="green") if info.up else Text("down", style="red"),
                f"{info.speed_mbps} Mb/s" if info.speed_mbps else "",
                info.mac,
                ", ".join(str(a) for a in info.ipv4),
                Text(note, style=style),
                key=info.name,
            )
        self._show_hint(self.chosen())

    def _show_hint(self, info: InterfaceInfo | None) -> None:
        """What Enter does here; on a port, why it cannot be chosen (the Note is cut at 80 columns)."""
        hint = self.query_one("#picker-hint", Static)
        unusable = unusable_reason(info) if info is not None else None
        if not self.interfaces:
            hint.update("No network interface found besides the loopback: plug in a USB NIC and press r.")
        elif info is not None and unusable is not None:
            hint.update(Text.assemble((info.name, "bold"), f" cannot be chosen: {unusable}."))
        else:
            hint.update(HINT)

    def chosen(self) -> InterfaceInfo | None:
        table = self.query_one("#interfaces", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.interfaces.get(str(key))

    def action_choose(self) -> None:
        info = self.chosen()
        if info is None:
            return
        if unusable_reason(info) is not None:  # a port: the bridge takes its packets, nothing to serve there
            self._show_hint(info)
            self.app.bell()
            return
        if info.default_route:
            question = (
                f"{info.name} carries this machine's default route: it is probably your office"
                " network, where a second DHCP server breaks everyone's connection. Serve on it anyway?"
            )
            self.app.push_screen(
                ConfirmScreen(question, yes="Serve", no="Back"),
                lambda yes: self.choose(info.name) if yes else None,
            )
            return
        self.choose(info.name)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_hint(self.interfaces.get(str(event.row_key.value)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_choose()
