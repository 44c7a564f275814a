"""The interface picker offers no bridge or bond port as a place to serve (issue 17).

A port of a bridge still shows link (and sometimes an address), but the kernel hands its frames
to the bridge: pxetui bound there would see no PC. host/netif.py says which interfaces are ports
(`member_of`, from /sys/class/net); the picker gets that with its interface list, lists them
last, marked with why, and refuses Enter on one. Its key bar names Enter at every size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import tui_scenario as sc
from lab import Lab
from test_interfaces import one_line_error, pxetui
from test_tui_actions import FakeStart
from textual.widgets import DataTable, Static

from pxetui.host.netif import Member, choosable, member_of, unusable_reason
from pxetui.tui.screens.picker import PickerScreen
from pxetui.tui.widgets import KeyBar

room = sc.bridged_interfaces


# -- host/netif.py: which interfaces are ports -----------------------------------------------------


def test_member_of_reads_master_and_brport_from_sysfs(tmp_path: Path) -> None:
    for name in ("br-lab", "bond0", "enp3s0", "eth2", "eth1"):
        (tmp_path / name).mkdir()
    (tmp_path / "enp3s0" / "master").symlink_to("../br-lab")
    (tmp_path / "enp3s0" / "brport").mkdir()
    (tmp_path / "eth2" / "master").symlink_to("../bond0")
    (tmp_path / "eth2" / "bonding_slave").mkdir()
    assert member_of("enp3s0", tmp_path) == Member("br-lab", "bridge")
    assert member_of("eth2", tmp_path) == Member("bond0", "bond")
    assert member_of("eth1", tmp_path) is None and member_of("br-lab", tmp_path) is None
    assert member_of("gone0", tmp_path) is None


def test_choosable_leaves_out_ports_and_the_loopback() -> None:
    assert [i.name for i in choosable(room())] == ["eth0", "br-lab"]
    by_name = {i.name: i for i in room()}
    assert unusable_reason(by_name["enp3s0"]) == "a port of bridge br-lab: serve on br-lab instead"
    assert unusable_reason(by_name["eth2"]) == "a member of bond bond0: serve on bond0 instead"
    assert unusable_reason(by_name["br-lab"]) is None


@pytest.mark.lab
def test_a_real_bridge_port_is_seen_and_refused_naming_the_bridge(lab: Lab, tmp_path: Path) -> None:
    lab.add_client()  # its veth's other end is a port of the lab's bridge
    ports = json.loads(
        lab.exec(
            lab.server_ns, sys.executable, "-c",
            "import json; from pxetui.host import netif\n"
            "print(json.dumps({i.name: i.member_of and i.member_of.master for i in netif.list_interfaces()}))",
        ).stdout
    )  # fmt: skip
    port = next(name for name, master in ports.items() if master == lab.bridge)
    assert ports[lab.bridge] is None
    done = pxetui(lab, port, "--headless", "--state", str(tmp_path / "state"))
    one_line_error(done, f"{port} is a port of bridge {lab.bridge}", f"`sudo pxetui {lab.bridge}`")


# -- the picker ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_the_picker_marks_ports_refuses_them_and_names_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    session = sc.open_session(tmp_path / "state", interface="")
    start = FakeStart(session)
    monkeypatch.setattr(session, "start", start)
    app = sc.make_app(session, start_session=True, list_interfaces=room)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        assert "enter serve on it" in str(picker.query_one(KeyBar).render())
        table = picker.query_one("#interfaces", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names == ["br-lab", "eth0", "enp3s0", "eth2"]  # the choices first, the ports last
        assert str(table.get_row("enp3s0")[5]) == "✗ a port of bridge br-lab: serve on br-lab instead"
        assert str(table.get_row("eth2")[5]) == "✗ a member of bond bond0: serve on bond0 instead"
        table.move_cursor(row=names.index("enp3s0"))
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.screen is picker and start.interfaces == []  # nothing started on a port
        hint = str(picker.query_one("#picker-hint", Static).render())
        assert "enp3s0 cannot be chosen: a port of bridge br-lab: serve on br-lab instead" in hint
        table.move_cursor(row=names.index("br-lab"))
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert start.interfaces == ["br-lab"]
