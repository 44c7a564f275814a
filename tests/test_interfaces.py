"""Interface problems are one-line errors with the fix in them, exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from dhcp_client import RawClient, dhcp_packet, pxe_vendor_class
from lab import Lab, ip
from scapy.layers.dhcp import BOOTP

from pxetui.errors import UsageError
from pxetui.host.netif import InterfaceError, check_interface, default_route_interfaces, parse_cidr

pytestmark = pytest.mark.lab


def pxetui(lab: Lab, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return lab.exec(lab.server_ns, *prefix, sys.executable, "-m", "pxetui", *args, timeout=30)


def spare_interface(lab: Lab, name: str, up: bool) -> str:
    # A veth pair whose peer stays unused: the kernel here has no `dummy` module.
    ip("-n", lab.server_ns, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    lab.owned[lab.server_ns].update({name, f"{name}p"})
    if up:
        ip("-n", lab.server_ns, "link", "set", f"{name}p", "up")
        ip("-n", lab.server_ns, "link", "set", name, "up")
    return name


def inet(lab: Lab, iface: str) -> list[str]:
    out = lab.exec(lab.server_ns, "ip", "-j", "addr", "show", "dev", iface).stdout
    return [
        f"{a['local']}/{a['prefixlen']}"
        for i in json.loads(out)
        for a in i["addr_info"]
        if a["family"] == "inet"
    ]


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0]


def test_unknown_interface(lab: Lab, tmp_path: Path) -> None:
    done = pxetui(lab, "eth9", "--headless", "--state", str(tmp_path))
    one_line_error(done, "no interface named 'eth9'", "br0", "ip -br link")


def test_interface_down(lab: Lab, tmp_path: Path) -> None:
    spare_interface(lab, "lab0", up=False)
    done = pxetui(lab, "lab0", "--headless", "--state", str(tmp_path))
    one_line_error(done, "interface lab0 is down", "ip link set lab0 up")


def test_interface_without_ipv4(lab: Lab, tmp_path: Path) -> None:
    spare_interface(lab, "lab0", up=True)
    done = pxetui(lab, "lab0", "--headless", "--state", str(tmp_path))
    one_line_error(done, "lab0 has no IPv4 address", "--address 198.18.0.1/24")


def test_not_root(lab: Lab) -> None:
    with tempfile.TemporaryDirectory() as state:  # pytest's tmp_path is private to root
        os.chmod(state, 0o777)
        done = pxetui(
            lab,
            "br0",
            "--headless",
            "--state",
            state,
            prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
        )
    one_line_error(done, "must run as root", "sudo pxetui eth1")


def test_temporary_address_is_added_then_removed(lab: Lab, run_pxetui: Any) -> None:
    spare_interface(lab, "lab0", up=True)
    cidr = str(lab.subnet.network_address + 200) + "/24"
    proc = run_pxetui("--address", cidr, iface="lab0")
    ready = proc.wait_event("service.ready")
    assert ready["address"] == cidr.split("/")[0]
    assert inet(lab, "lab0") == [cidr]
    assert proc.stop(signal.SIGINT) == 0
    assert inet(lab, "lab0") == []


def test_temporary_address_is_removed_after_a_start_error(lab: Lab, tmp_path: Path) -> None:
    spare_interface(lab, "lab0", up=True)
    cidr = str(lab.subnet.network_address + 200) + "/24"
    done = pxetui(
        lab,
        "lab0",
        "--headless",
        "--state",
        str(tmp_path),
        "--address",
        cidr,
        "--boot-files",
        str(tmp_path / "missing"),
    )
    one_line_error(done, "--boot-files", "no such directory")
    assert inet(lab, "lab0") == []


def test_address_left_by_a_killed_session_is_removed_on_next_start(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    spare_interface(lab, "lab0", up=True)
    cidr = str(lab.subnet.network_address + 200) + "/24"
    proc = run_pxetui("--address", cidr, iface="lab0")
    proc.wait_event("service.ready")
    proc.stop(signal.SIGKILL)
    assert inet(lab, "lab0") == [cidr]
    done = pxetui(lab, "lab0", "--headless", "--state", str(tmp_path / "state"))
    one_line_error(done, "lab0 has no IPv4 address")
    assert inet(lab, "lab0") == []


def test_address_argument_errors() -> None:
    with pytest.raises(UsageError, match="needs a prefix length"):
        parse_cidr("198.18.0.1")
    with pytest.raises(UsageError, match="not an IPv4 address"):
        parse_cidr("lab")
    with pytest.raises(UsageError, match="leaves no room"):
        parse_cidr("198.18.0.1/32")


def test_loopback_is_refused() -> None:
    with pytest.raises(InterfaceError, match="loopback"):
        check_interface("lo", None)


def test_default_route_is_read_from_the_route_table(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\neth0\t00000000\t0100A8C0\t0003\neth1\t0012C6\t00000000\t0001\n"
    )
    assert default_route_interfaces(table) == {"eth0"}


def test_a_second_pxetui_on_the_same_state_directory_is_refused_naming_the_first(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    spare_interface(lab, "lab0", up=True)
    cidr = str(lab.subnet.network_address + 200) + "/24"
    first = run_pxetui("--address", cidr, iface="lab0")
    first.wait_event("service.ready")
    second = pxetui(lab, "lab0", "--headless", "--state", str(tmp_path / "state"), "--address", cidr)
    one_line_error(second, "another pxetui (pid", "on lab0", "--state DIR")
    assert inet(lab, "lab0") == [cidr], "the second one must not take the first one's address away"
    assert first.stop(signal.SIGINT) == 0
    assert inet(lab, "lab0") == []
    # Once the first has stopped, the directory is free again.
    again = run_pxetui("--address", cidr, iface="lab0")
    again.wait_event("service.ready")
    assert again.stop(signal.SIGINT) == 0


def test_a_recorded_address_on_another_interface_is_left_alone(lab: Lab, tmp_path: Path) -> None:
    spare_interface(lab, "lab0", up=True)
    spare_interface(lab, "lab1", up=True)
    other = str(lab.subnet.network_address + 201) + "/24"
    lab.exec(lab.server_ns, "ip", "addr", "add", other, "dev", "lab1")
    state = tmp_path / "state"
    state.mkdir()
    (state / "address.json").write_text(json.dumps({"interface": "lab1", "address": other}))
    done = pxetui(lab, "lab0", "--headless", "--state", str(state))
    one_line_error(done, "lab0 has no IPv4 address")
    assert inet(lab, "lab1") == [other], "a crafted address.json must not remove another interface's address"


def test_losing_the_served_address_while_running_is_an_event_and_its_return_too(
    lab: Lab, run_pxetui: Any
) -> None:
    cidr = str(lab.subnet.network_address + 200) + "/24"
    proc = run_pxetui("--mode", "full", "--address", cidr)
    proc.wait_event("service.ready")
    pc = lab.add_client(mac="52:54:00:ad:00:01")
    raw = RawClient(pc.netns)

    def offered(xid: int) -> bool:
        raw.drain()
        raw.send(dhcp_packet(pc.mac, "discover", xid=xid, arch=7, vendor_class=pxe_vendor_class(7)))
        return bool(raw.replies(3, want=1, match=lambda r: r[BOOTP].xid == xid))

    try:
        assert offered(1)
        lab.exec(lab.server_ns, "ip", "addr", "del", cidr, "dev", lab.bridge)
        lost = proc.wait_event("service.address_lost", timeout=10)
        assert (lost["interface"], lost["address"]) == (lab.bridge, cidr.split("/")[0])
        assert not offered(2), "no PC may be sent to an address that is gone"
        lab.exec(lab.server_ns, "ip", "addr", "add", cidr, "dev", lab.bridge)
        back = proc.wait_event("service.address_back", timeout=10)
        assert back["address"] == cidr.split("/")[0]
        assert offered(3)
    finally:
        raw.close()
    assert proc.stop(signal.SIGINT) == 0
    assert cidr not in inet(lab, lab.bridge)
