"""The help screen: every key of the main screen, and what the stages mean.

The main screen passes its bindings in: its keys are listed from the one place that defines them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from pxetui.model.registry import Stage

STAGE_HELP = {
    Stage.WAITING: "planned, no packet yet: switch the PC on (or wake it with w)",
    Stage.DHCP: "the firmware asked for an address",
    Stage.LOADER: "fetching the boot loader: iPXE, or shim + GRUB under Secure Boot",
    Stage.MENU: "iPXE fetched its script: the menu, or straight to the assigned OS",
    Stage.KERNEL: "downloading the kernel over HTTP",
    Stage.INITRD: "downloading the initrd",
    Stage.ISO: "downloading the ISO image",
    Stage.INSTALLING: "the installer is running (fetched its answer file)",
    Stage.DONE: "the installer reported success",
    Stage.FAILED: "the installer reported a failure (see details)",
}
LOCAL_HELP = "told to boot its own disk (the menu's default, a local choice, or l): off the network"
STALLED_HELP = (
    "no progress for longer than that step takes: the Progress column names the likely cause,"
    " Enter shows the last step and the whole reason"
)
EXTRA_KEYS = (
    ("ctrl+p", "command palette: every action by name"),
    ("escape", "close a form or screen"),
)


class HelpScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "app.pop_screen", "Back")]

    def __init__(self, bindings: Iterable[BindingType]) -> None:
        super().__init__(id="help")
        self.bindings = list(bindings)

    def compose(self) -> ComposeResult:
        keys = Table(title="Keys", title_justify="left", show_header=False, box=None, padding=(0, 2))
        for binding in self.bindings:
            if isinstance(binding, Binding):
                keys.add_row(binding.key_display or binding.key, binding.tooltip or binding.description)
        for key, text in EXTRA_KEYS:
            keys.add_row(key, text)
        stages = Table(title="Stages", title_justify="left", show_header=False, box=None, padding=(0, 2))
        for stage, text in STAGE_HELP.items():
            stages.add_row(stage.label, text)
        stages.add_row("local disk", LOCAL_HELP)
        stages.add_row("stalled", STALLED_HELP)
        with VerticalScroll():
            yield Static(
                "[b]pxetui help[/b]: actions apply to the marked machines (space), else to the one"
                " under the cursor. Assign before power-on: add a MAC with n, or import a CSV with i."
            )
            yield Static(keys, classes="help-table")
            yield Static(stages, classes="help-table")
        yield Footer()
