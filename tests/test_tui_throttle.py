"""The TUI draws what changed, no more: progress at most once a second, only the changed cells.

A room of 100 PCs loading had the TUI's thread draw every visible cell at every refresh, and
the DHCP thread waits for that thread's GIL time (issue 18). Three things keep it small: a
row whose only change is its progress waits for ProgressThrottle, a stage change does not;
and the machine table renders again only the cells that changed.
"""

from __future__ import annotations

from typing import Any

import pytest
import tui_scenario as sc
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from pxetui.session import Session
from pxetui.tui.updates import PROGRESS_SECONDS, ProgressThrottle
from pxetui.tui.widgets import MachineTable

pytestmark = pytest.mark.usefixtures("utc")

MAC = "52:54:00:77:00:01"
TFTP_START: dict[str, Any] = {"client": "198.18.0.100", "blksize": 1468, "windowsize": 4}
TFTP_PROGRESS: dict[str, Any] = {"client": "198.18.0.100", "total": 1_000_000, "rate": 1e6}

# -- ProgressThrottle: the decision alone --------------------------------------------------------


def test_a_row_never_drawn_is_due() -> None:
    assert ProgressThrottle().due(MAC, sample_at=100.0, now=5.0)


def test_a_newer_sample_waits_until_it_is_a_second_newer() -> None:
    throttle = ProgressThrottle()
    throttle.drawn(MAC, sample_at=100.0, now=5.0)
    assert not throttle.due(MAC, sample_at=100.5, now=5.5)  # HTTP samples every 0.5 s
    assert not throttle.due(MAC, sample_at=100.0 + PROGRESS_SECONDS - 0.01, now=5.9)
    assert throttle.due(MAC, sample_at=100.0 + PROGRESS_SECONDS, now=5.9)


def test_the_last_sample_before_a_pause_is_drawn_a_second_later() -> None:
    """No newer sample comes (the transfer paused or ended): the drawing clock lets it out."""
    throttle = ProgressThrottle()
    throttle.drawn(MAC, sample_at=100.0, now=5.0)
    assert not throttle.due(MAC, sample_at=100.25, now=5.5)
    assert throttle.due(MAC, sample_at=100.25, now=5.0 + PROGRESS_SECONDS)


def test_an_older_sample_is_not_held() -> None:
    """The events' clock went back (clock set, state reloaded): no row waits on that."""
    throttle = ProgressThrottle()
    throttle.drawn(MAC, sample_at=100.0, now=5.0)
    assert throttle.due(MAC, sample_at=50.0, now=5.1)


def test_a_forgotten_row_is_due_and_rows_are_apart() -> None:
    throttle = ProgressThrottle()
    throttle.drawn(MAC, sample_at=100.0, now=5.0)
    assert throttle.due("52:54:00:77:00:02", sample_at=100.1, now=5.1)
    throttle.forget(MAC)
    assert throttle.due(MAC, sample_at=100.1, now=5.1)


# -- the main screen: progress waits, a stage change does not --------------------------------------


def row_text(app: Any, mac: str) -> str:
    table = sc.main_screen(app).query_one("#machines", DataTable)
    return " | ".join(str(cell).strip() for cell in table.get_row(mac))


async def test_progress_is_drawn_at_most_once_a_second_a_stage_change_at_once(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.publish(session, 1, "dhcp.discover", MAC, arch=7)
        sc.publish(session, 2, "tftp.start", MAC, file="ipxe.efi", total=1_000_000, **TFTP_START)
        sc.publish(session, 3, "tftp.progress", MAC, file="ipxe.efi", bytes=100_000, **TFTP_PROGRESS)
        app.flush_updates()
        await pilot.pause()
        assert "10%" in row_text(app, MAC)
        # A quarter of a second later (by the events' clock): the row keeps showing 10 %.
        sc.publish(session, 3.25, "tftp.progress", MAC, file="ipxe.efi", bytes=300_000, **TFTP_PROGRESS)
        app.flush_updates()
        assert "10%" in row_text(app, MAC) and "30%" not in row_text(app, MAC)
        assert sc.main_screen(app).stale_rows == 1  # it waits, it is not lost
        # A second after the sample shown: drawn.
        sc.publish(session, 4, "tftp.progress", MAC, file="ipxe.efi", bytes=500_000, **TFTP_PROGRESS)
        app.flush_updates()
        assert "50%" in row_text(app, MAC)
        # A change of stage is drawn at the next refresh, progress or not.
        sc.publish(session, 4.1, "tftp.done", MAC, file="ipxe.efi", client="198.18.0.100", ok=True,
                   bytes=1_000_000, total=1_000_000, rate=1e6, reason="", seconds=1.0)  # fmt: skip
        sc.publish(session, 4.2, "dhcp.discover", MAC, arch=7, user_class="iPXE")
        before = row_text(app, MAC)
        sc.publish(session, 4.3, "http.request", MAC, path="/files/debian-12/linux", kind="kernel",
                   file="linux", total=8_000_000, client="198.18.0.100")  # fmt: skip
        app.flush_updates()
        assert row_text(app, MAC) != before and "kernel" in row_text(app, MAC).lower()


async def test_the_last_progress_sample_is_drawn_without_a_newer_one(session: Session) -> None:
    app = sc.make_app(session, refresh_seconds=0.05)
    async with app.run_test(size=sc.SIZE) as pilot:
        sc.publish(session, 1, "dhcp.discover", MAC, arch=7)
        sc.publish(session, 2, "tftp.start", MAC, file="ipxe.efi", total=1_000_000, **TFTP_START)
        sc.publish(session, 3, "tftp.progress", MAC, file="ipxe.efi", bytes=100_000, **TFTP_PROGRESS)
        app.flush_updates()
        sc.publish(session, 3.25, "tftp.progress", MAC, file="ipxe.efi", bytes=300_000, **TFTP_PROGRESS)
        app.flush_updates()
        assert "30%" not in row_text(app, MAC)
        await pilot.pause(PROGRESS_SECONDS + 0.3)  # the app's own refreshes, no new event
        assert "30%" in row_text(app, MAC)
        assert sc.main_screen(app).stale_rows == 0


# -- MachineTable: one changed cell costs one cell ---------------------------------------------------


class TableApp(App[None]):
    def __init__(self, table: DataTable[Text]) -> None:
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        yield self.table


def fill(table: DataTable[Text], rows: int) -> None:
    for key in ("a", "b", "c"):
        table.add_column(key, key=key, width=12)
    for i in range(rows):
        table.add_row(Text(f"row{i}"), Text(f"b{i}"), Text(f"{i}%"), key=f"r{i}")


def cell_renders(app: App[None], table: DataTable[Text], change: Any) -> tuple[int, list[str]]:
    """How many times Rich renders to draw the table again after `change` (twice per cell:
    DataTable pads it), and the table's lines."""
    table.refresh()  # every line drawn again now, so every cell is in DataTable's caches
    table.render_lines(table.region.reset_offset)
    change()
    calls = 0
    render_lines = app.console.render_lines

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return render_lines(*args, **kwargs)

    app.console.render_lines = counting  # type: ignore[method-assign]
    try:
        strips = table.render_lines(table.region.reset_offset)
    finally:
        app.console.render_lines = render_lines  # type: ignore[method-assign]
    return calls, [strip.text for strip in strips]


@pytest.mark.parametrize("caching", [True, False])
async def test_a_changed_cell_is_the_only_cell_rendered_again(caching: bool) -> None:
    table = MachineTable(cursor_type="row", zebra_stripes=True, cell_padding=0)
    table.cell_caching = caching  # False: DataTable's own update, the reference
    app = TableApp(table)
    async with app.run_test(size=(60, 20)) as pilot:
        fill(table, 40)
        await pilot.pause()
        calls, lines = cell_renders(app, table, lambda: table.update_cell("r3", "c", Text("99%")))
        assert "99%" in lines[4] and "row3" in lines[4]  # the header is line 0
        assert "3%" not in lines[4]
        assert "2%" in lines[3] and "4%" in lines[5]  # its neighbours are drawn as they were
        if caching:
            assert calls == 2  # one cell
        else:
            assert calls > 20, "DataTable renders every visible cell again"


async def test_several_cells_of_rows_on_and_off_screen() -> None:
    table = MachineTable(cursor_type="row", zebra_stripes=True, cell_padding=0)
    app = TableApp(table)
    async with app.run_test(size=(60, 10)) as pilot:
        fill(table, 40)
        await pilot.pause()

        def change() -> None:
            table.update_cells("r1", [("b", Text("B1")), ("c", Text("50%"))])
            table.update_cell("r30", "c", Text("77%"))  # off screen: nothing drawn now

        calls, lines = cell_renders(app, table, change)
        assert "B1" in lines[2] and "50%" in lines[2]
        assert calls == 4  # two cells; the one off screen is not drawn
        table.scroll_to(y=25, animate=False)
        await pilot.pause()
        shown = [strip.text for strip in table.render_lines(table.region.reset_offset)]
        assert any("row30" in line and "77%" in line for line in shown), shown
