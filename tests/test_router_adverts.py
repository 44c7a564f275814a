"""Router Advertisements that end iPXE's IPv6 wait: only to PCs pxetui boots, never next to a router.

rdisc6 (ndisc6) is the real client soliciting; radvd is the real router on the segment.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from dhcp_client import RawClient, dhcp_packet, pxe_vendor_class
from lab import Client, Lab

from pxetui.services.ra.server import solicitation_mac

BOOTING = "52:54:00:ab:cd:01"
STRANGER = "52:54:00:ab:cd:02"


def network_boot(pc: Client, pxetui: Any) -> None:
    """The PC's firmware asks pxetui's DHCP for a boot file: now pxetui is booting it."""
    client = RawClient(pc.netns)
    try:
        client.send(dhcp_packet(pc.mac, "discover", arch=7, vendor_class=pxe_vendor_class(7)))
        pxetui.wait_event("dhcp.offer", mac=pc.mac, timeout=10)
    finally:
        client.close()


def solicit(lab: Lab, pc: Client, rdisc6: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # The PC's link-local address is tentative for a moment after link-up (DAD): retry a little.
    return lab.exec(pc.netns, rdisc6, "-n", "-r", "3", "-w", "1000", *extra, "eth0", timeout=30)


def wait_link_local(lab: Lab, pc: Client) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = lab.exec(pc.netns, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link").stdout
        if "fe80::" in out and "tentative" not in out:
            return
        time.sleep(0.2)
    raise AssertionError(f"{pc.netns} has no usable link-local address")


@pytest.mark.lab
def test_a_pc_being_booted_gets_an_empty_advert_and_a_stranger_gets_none(lab: Lab, run_pxetui: Any) -> None:
    rdisc6 = need_tools("rdisc6")["rdisc6"]
    pc, stranger = lab.add_client(mac=BOOTING), lab.add_client(mac=STRANGER)
    pxetui = run_pxetui("--mode", "full")
    ready = pxetui.wait_event("service.ready", timeout=40)
    assert ready["services"]["ra"]["state"] == "on", ready["services"]
    wait_link_local(lab, pc)
    wait_link_local(lab, stranger)

    done = solicit(lab, pc, rdisc6, "-1")
    assert "No response" in done.stdout + done.stderr  # before its DHCP: not pxetui's to answer
    network_boot(pc, pxetui)
    done = solicit(lab, pc, rdisc6, "-1")
    assert done.returncode == 0, done.stdout + done.stderr
    # It says nothing: not a router, no stateful configuration, no prefix to take an address from.
    assert "Router lifetime           :            0" in done.stdout, done.stdout
    assert "Stateful address conf.    :           No" in done.stdout
    assert "Stateful other conf.      :           No" in done.stdout
    assert "Prefix" not in done.stdout and "Recursive DNS" not in done.stdout
    answer = pxetui.wait_event("ra.answer", mac=BOOTING, timeout=5)
    assert answer["to"].startswith("fe80::5054:ff:feab:cd01")

    done = solicit(lab, stranger, rdisc6, "-1")
    assert "No response" in done.stdout + done.stderr, done.stdout
    assert pxetui.stop() == 0
    assert not any(e["event"] == "ra.answer" and e["mac"] == STRANGER for e in pxetui.events)


@pytest.mark.lab
def test_pxetui_stays_quiet_where_a_router_advertises(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    tools = need_tools("rdisc6", "radvd")
    router = lab.add_client(mac="52:54:00:ab:cd:fe")
    assert lab.exec(router.netns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1").returncode == 0
    conf = tmp_path / "radvd.conf"
    conf.write_text(
        "interface eth0 {\n AdvSendAdvert on;\n MinRtrAdvInterval 30;\n MaxRtrAdvInterval 60;\n"
        " prefix fd00:198:18::/64 { AdvOnLink on; AdvAutonomous on; };\n};\n"
    )
    wait_link_local(lab, router)
    radvd = lab.popen(
        router.netns,
        tools["radvd"],
        "-n",
        "-C",
        str(conf),
        "-p",
        str(tmp_path / "radvd.pid"),
        "-m",
        "stderr",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pc = lab.add_client(mac=BOOTING)
        time.sleep(1)  # radvd's first unsolicited advertisement
        pxetui = run_pxetui("--mode", "full")
        ready = pxetui.wait_event("service.ready", timeout=40)
        assert ready["services"]["ra"]["state"] in (
            "on",
            "quiet: router fe80::5054:ff:feab:cdfe advertises here",
        )
        seen = pxetui.wait_event("ra.router", timeout=10)  # it asked at start; radvd answered
        assert seen["router"].startswith("fe80::5054:ff:feab:cdfe"), seen
        wait_link_local(lab, pc)
        network_boot(pc, pxetui)
        done = solicit(lab, pc, tools["rdisc6"], "-m")
        assert "fd00:198:18::/64" in done.stdout, done.stdout  # the real router answered...
        assert done.stdout.count("Router lifetime") == 1, done.stdout  # ...and only it
    finally:
        radvd.terminate()
        radvd.wait(10)
    assert pxetui.stop() == 0
    assert not any(e["event"] == "ra.answer" for e in pxetui.events)


def test_the_pc_is_named_by_its_link_layer_option_else_by_its_eui64_address() -> None:
    header = bytes([133, 0, 0, 0, 0, 0, 0, 0])
    slla = bytes([1, 1]) + bytes.fromhex("525400abcd01")
    assert solicitation_mac(header + slla, "fe80::1%eth0") == "52:54:00:ab:cd:01"
    assert solicitation_mac(header, "fe80::5054:ff:feab:cd01%br0") == "52:54:00:ab:cd:01"
    assert solicitation_mac(header, "fe80::1234:5678") is None  # not EUI-64: nobody we know
    assert solicitation_mac(header, "::") is None
    assert solicitation_mac(header + bytes([1, 0, 0, 0]), "fe80::5054:ff:feab:cd01") is None  # zero length
    assert solicitation_mac(header + bytes([1, 1, 0x52]), "fe80::1") is None  # truncated option
