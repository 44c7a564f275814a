"""Never a second DHCP server: rivals on this machine, slow rivals, rivals that appear later, relays.

Real dnsmasq in lab namespaces (198.18.0.0/15, made and removed by the `lab` fixture). The
server namespace stands for "this machine": a dnsmasq started there listens next to pxetui.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from dhcp_client import RawClient, dhcp_options, dhcp_packet, mac_bytes, pxe_vendor_class
from kea_rival import KeaRouter
from lab import Client, Lab, NetnsLoop, prefix
from scapy.layers.dhcp import BOOTP
from test_dhcp_answer import SERVER, facts_for, pxe, request_bytes
from test_dhcp_answer import boot_dir as answer_boot_dir

from pxetui.services.dhcp import codec
from pxetui.services.dhcp.answer import RELAYED, ServerFacts, answer
from pxetui.services.dhcp.leases import LeasePool
from pxetui.services.dhcp.local_servers import dhcp_listeners
from pxetui.services.dhcp.probe import PROBE_SECONDS, PROBE_SENDS


class LabDnsmasq:
    """dnsmasq 2.90 handing out addresses (DHCP only) in `netns` on `iface`.

    `ping=True` leaves dnsmasq's default on: it pings an address before offering it, so its
    first OFFER comes about 3 s after the first DISCOVER, as on a real network.
    """

    def __init__(self, lab: Lab, netns: str, iface: str, router: str, tmp_path: Path, *, ping: bool) -> None:
        tool = need_tools("dnsmasq")["dnsmasq"]
        lines = [
            "port=0",
            f"interface={iface}",
            "bind-interfaces",
            f"dhcp-range={prefix(lab)}.50,{prefix(lab)}.90,255.255.255.0,1h",
            f"dhcp-option=3,{router}",
            f"dhcp-leasefile={tmp_path / 'dnsmasq.leases'}",
            f"pid-file={tmp_path / 'dnsmasq.pid'}",
            "user=root",
        ]
        if not ping:
            lines.append("no-ping")
        conf = tmp_path / "dnsmasq.conf"
        conf.write_text("\n".join([*lines, ""]))
        self.proc = lab.popen(
            netns, tool, "-d", "-C", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(0.5)
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def rival_host(lab: Lab, tmp_path: Path, *, ping: bool) -> tuple[LabDnsmasq, str]:
    """dnsmasq on another host of the segment (the office router pxetui must live next to)."""
    ip = f"{prefix(lab)}.2"
    host = lab.add_client(mac="52:54:00:d0:00:02", address=f"{ip}/24")
    return LabDnsmasq(lab, host.netns, "eth0", ip, tmp_path, ping=ping), ip


# -- 1. a DHCP server on this machine ---------------------------------------------------------


@pytest.mark.lab
def test_dnsmasq_on_this_machine_sends_auto_to_proxy_and_full_is_refused_naming_it(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    # dnsmasq binds 0.0.0.0:67 with SO_REUSEADDR on br0, so pxetui's bind succeeds, and the
    # probe's frames never reach a local socket: only asking the kernel finds it.
    local = LabDnsmasq(lab, lab.server_ns, lab.bridge, lab.server_ip, tmp_path, ping=False)
    try:
        refused = run_pxetui("--mode", "full", state=tmp_path / "refused")
        assert refused.proc.wait(30) == 2
        refused.stop()
        fatal = [e for e in refused.events if e["event"] == "error" and e.get("fatal")]
        assert fatal, refused.names()
        reason = fatal[0]["reason"]
        assert f"dnsmasq (pid {local.proc.pid})" in reason, reason
        assert "this machine" in reason and "--mode proxy" in reason and lab.bridge in reason
        assert "service.ready" not in refused.names()

        proc = run_pxetui()  # --mode auto
        seen = proc.wait_event("dhcp.rival")
        assert seen["message"] == "listening" and seen["server_id"] == "0.0.0.0"
        assert seen["process"] == f"dnsmasq (pid {local.proc.pid}), bound to {lab.bridge}"
        ready = proc.wait_event("service.ready")
        # The local server settles it: proxy at once, without waiting out the network probe.
        assert ready["mode"] == "proxy" and ready["ts"] - seen["ts"] < PROBE_SECONDS / 2
        assert ready["services"]["dhcp"]["local_servers"] == [seen["process"]]
        assert proc.stop() == 0
    finally:
        local.stop()


@pytest.mark.lab
def test_a_second_pxetui_on_the_interface_is_a_local_rival_and_other_interfaces_are_not(
    lab: Lab, run_pxetui: Any
) -> None:
    first = run_pxetui("--mode", "full", "--force")
    assert first.wait_event("service.ready")["mode"] == "full"
    lab.add_client()  # its port vc1 is a second interface of "this machine"
    port = next(name for name in lab.owned[lab.server_ns] if name.startswith("vc"))
    with NetnsLoop(lab.server_ns) as ns:

        def sockets() -> tuple[list[Any], list[Any]]:
            # A server on every interface (no SO_BINDTODEVICE) hears br0 too; one bound to
            # another interface does not.
            everywhere = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            elsewhere = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                for sock in (everywhere, elsewhere):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                elsewhere.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, port.encode())
                elsewhere.bind(("0.0.0.0", 67))
                everywhere.bind(("0.0.0.0", 67))
                on_bridge = dhcp_listeners(lab.bridge, lab.server_ip)
                on_other = dhcp_listeners(port, "0.0.0.0")
            finally:
                everywhere.close()
                elsewhere.close()
            return on_bridge, on_other

        on_bridge, on_other = ns.call(sockets)
    by_process = {(item.process, item.device) for item in on_bridge}
    assert ("pxetui", lab.bridge) in by_process, on_bridge  # the first pxetui
    assert any(item.device is None and item.device_known for item in on_bridge), on_bridge
    assert all(item.device != port for item in on_bridge), on_bridge
    # On the other port: the socket bound to it and the wildcard one, never br0's pxetui.
    assert {item.device for item in on_other} == {port, None}, on_other
    assert first.stop() == 0


# -- 2. a slow rival ----------------------------------------------------------------------------


@pytest.mark.lab
def test_a_ping_checking_dnsmasq_that_answers_after_3_s_is_found(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    assert PROBE_SENDS[-1] < PROBE_SECONDS and len(PROBE_SENDS) >= 3
    rival, rival_ip = rival_host(lab, tmp_path, ping=True)
    try:
        proc = run_pxetui()
        seen = proc.wait_event("dhcp.rival", timeout=PROBE_SECONDS + 10)
        assert seen["server_id"] == rival_ip and seen["offers_address"] is True
        assert proc.wait_event("service.ready")["mode"] == "proxy"
        assert proc.stop() == 0
    finally:
        rival.stop()


# -- 3. a rival that appears while pxetui serves full DHCP --------------------------------------


def offers_to(raw: RawClient, mac: str, xid: int, timeout: float) -> dict[str, Any]:
    """Every OFFER for `mac`/`xid` within `timeout`, by server id."""
    replies = raw.replies(
        timeout, match=lambda r: r[BOOTP].xid == xid and r[BOOTP].chaddr[:6] == mac_bytes(mac)
    )
    return {dhcp_options(r)["server_id"]: r for r in replies if dhcp_options(r)["message-type"] == 2}


def udhcpc_lease(client: Client, tmp_path: Path, name: str) -> list[str]:
    """udhcpc's `bound IP SERVER` lines, from a script that only reports (never touches the host)."""
    tool = need_tools("udhcpc")["udhcpc"]
    out = tmp_path / f"{name}.out"
    script = tmp_path / f"{name}.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $ip $serverid" >> {out}\n')
    script.chmod(0o755)
    done = client.run(tool, "-f", "-q", "-n", "-t", "4", "-T", "2", "-i", "eth0", "-s", str(script))
    assert done.returncode == 0, done.stderr
    return [line for line in out.read_text().splitlines() if line.startswith("bound")]


@pytest.mark.lab
def test_a_rival_seen_while_serving_full_stops_our_address_offers_at_once(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--range", f"{prefix(lab)}.150-{prefix(lab)}.160")
    assert proc.wait_event("service.ready")["mode"] == "full"  # auto, nobody else answered
    early = lab.add_client(mac="52:54:00:d0:00:10")
    assert udhcpc_lease(early, tmp_path, "early") == [f"bound {prefix(lab)}.150 {lab.server_ip}"]

    rival, rival_ip = rival_host(lab, tmp_path, ping=False)
    try:
        _, raw = raw_client
        # The first DISCOVER after dnsmasq came up: both answer; pxetui sees dnsmasq's OFFER.
        raw.send(dhcp_packet("52:54:00:d0:00:21", "discover", xid=21))
        seen = proc.wait_event("dhcp.rival", timeout=10, server_id=rival_ip)
        assert seen["mode"] == "full" and seen["switched_to"] == "proxy", seen
        assert "stopped offering addresses" in seen["reason"] and "leases kept: 1 bound" in seen["reason"]
        # dnsmasq names itself as next-server: a Secure Boot PC's signed GRUB would ask it.
        assert seen["grub_server"] == rival_ip, seen
        assert f"set next-server to {lab.server_ip} on {rival_ip}" in seen["grub_advice"], seen

        # From now on only dnsmasq gives addresses: a plain client gets nothing from us ...
        raw.drain()
        raw.send(dhcp_packet("52:54:00:d0:00:22", "discover", xid=22))
        offers = offers_to(raw, "52:54:00:d0:00:22", 22, 4)
        assert set(offers) == {rival_ip}, offers
        # ... a PXE PC only boot information (proxyDHCP: no address) ...
        raw.send(
            dhcp_packet("52:54:00:d0:00:23", "discover", xid=23, arch=7, vendor_class=pxe_vendor_class(7))
        )
        offers = offers_to(raw, "52:54:00:d0:00:23", 23, 4)
        assert set(offers) == {rival_ip, lab.server_ip}, offers
        ours = offers[lab.server_ip]
        assert ours[BOOTP].yiaddr == "0.0.0.0" and dhcp_options(ours)["boot-file-name"] == b"ipxe.efi"
        # ... and udhcpc binds dnsmasq's address.
        late = lab.add_client(mac="52:54:00:d0:00:30")
        bound = udhcpc_lease(late, tmp_path, "late")
        assert len(bound) == 1 and bound[0].endswith(rival_ip), bound
        assert ipaddress.IPv4Address(bound[0].split()[1]) in ipaddress.IPv4Network(f"{prefix(lab)}.0/24")
        # proxyDHCP's port 4011 was opened on the switch.
        assert f":{4011:04X} " in lab.exec(lab.server_ns, "cat", "/proc/net/udp").stdout
    finally:
        rival.stop()
    assert proc.stop() == 0
    assert not [e for e in proc.events if e["event"] == "dhcp.offer" and e.get("mac") == "52:54:00:d0:00:22"]
    saved = json.loads((tmp_path / "state" / "leases.json").read_text())
    assert ("52:54:00:d0:00:10", f"{prefix(lab)}.150") in {(e["mac"], e["ip"]) for e in saved["leases"]}


@pytest.mark.lab
def test_with_force_a_rival_seen_while_serving_leaves_full_mode_and_says_so(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--mode", "full", "--force")
    assert proc.wait_event("service.ready")["mode"] == "full"
    rival, rival_ip = rival_host(lab, tmp_path, ping=False)
    try:
        _, raw = raw_client
        raw.send(dhcp_packet("52:54:00:d0:00:41", "discover", xid=41))
        seen = proc.wait_event("dhcp.rival", timeout=10, server_id=rival_ip)
        assert seen["mode"] == "full" and "switched_to" not in seen and "--force" in seen["reason"]
        assert "grub_advice" not in seen  # pxetui gives the addresses: GRUB reads pxetui's own ACK
        raw.drain()
        raw.send(dhcp_packet("52:54:00:d0:00:42", "discover", xid=42))
        offers = offers_to(raw, "52:54:00:d0:00:42", 42, 4)
        assert set(offers) == {rival_ip, lab.server_ip} and offers[lab.server_ip][BOOTP].yiaddr != "0.0.0.0"
    finally:
        rival.stop()
    assert proc.stop() == 0


@pytest.mark.lab
@pytest.mark.parametrize(
    ("router", "options", "advised"),
    [
        ("kea-next-server-pxetui", ["--mode", "auto"], False),  # the fix: Kea's next-server is pxetui
        ("kea", ["--mode", "auto"], True),  # Kea without next-server: siaddr empty, GRUB has no server
        ("dnsmasq", ["--mode", "auto", "--secure-boot", "ipxe"], False),  # no signed chain: no GRUB
        # --mode proxy runs no probe: pxetui asks like a client once, so the watch hears it
        ("dnsmasq", ["--mode", "proxy"], True),
    ],
)
def test_in_proxy_mode_the_probe_says_whether_a_signed_grub_will_find_pxetui(
    lab: Lab, run_pxetui: Any, tmp_path: Path, router: str, options: list[str], advised: bool
) -> None:
    if router.startswith("kea"):
        fixed = router == "kea-next-server-pxetui"
        server: Any = KeaRouter(lab, tmp_path, next_server=lab.server_ip if fixed else None)
        server_ip = server.ip
    else:
        server, server_ip = rival_host(lab, tmp_path, ping=False)
    try:
        proc = run_pxetui(*options)
        seen = proc.wait_event("dhcp.rival", timeout=15, server_id=server_ip)
        assert proc.wait_event("service.ready")["mode"] == "proxy"
        assert proc.stop() == 0
    finally:
        server.stop()
    assert seen["offers_address"], seen
    if router == "kea-next-server-pxetui":
        assert seen["grub_server"] == lab.server_ip, seen
    if advised:
        where = "has no server to ask" if router == "kea" else f"asks {server_ip} for grub.cfg"
        assert where in seen["grub_advice"], seen
    else:
        assert "grub_advice" not in seen, seen


# -- 4. relayed requests ----------------------------------------------------------------------


def small_pool() -> LeasePool:
    return LeasePool(
        ipaddress.IPv4Address("198.18.7.100"), ipaddress.IPv4Address("198.18.7.110"), exclude=[SERVER.ip]
    )


@pytest.mark.parametrize("mode", ["full", "proxy"])
@pytest.mark.parametrize("message", ["discover", "request"])
def test_relayed_requests_get_no_answer_from_the_local_pool(tmp_path: Path, mode: str, message: str) -> None:
    facts: ServerFacts = facts_for(answer_boot_dir(tmp_path, "undionly.kpxe", "ipxe.efi"), mode=mode)
    pool = small_pool() if mode == "full" else None
    options = [*pxe(7)]
    if message == "request":
        options += [("requested_addr", "198.18.7.100"), ("server_id", str(SERVER.ip))]
    packet = codec.decode(request_bytes(message=message, options=options, giaddr="198.18.9.1"))
    result = answer(packet, 67, facts, pool)
    assert result.kind is None and not result.reply and result.delivery is None
    assert result.error == RELAYED  # dropped and counted by the server, one event a second
    if pool is not None:
        assert not pool.by_mac and pool.lease_for(packet.mac) is None


# -- what the TUI's rival bar gets --------------------------------------------------------------


def test_the_rival_bar_names_a_local_process_and_the_switch_to_proxy() -> None:
    from pxetui.model.events import DhcpRival
    from pxetui.tui.updates import PendingUpdates

    pending = PendingUpdates()
    pending.add(
        DhcpRival(mode="auto", server_id="0.0.0.0", server_mac="02:00:00:00:00:01", message="listening",
                  offers_address=False, process="dnsmasq (pid 4242), bound to br0")
    )  # fmt: skip
    assert pending.rival == "dnsmasq (pid 4242), bound to br0 on this machine" and pending.rival_mode is None
    pending.add(
        DhcpRival(mode="full", server_id="198.18.0.254", server_mac="00:16:3e:5e:00:fe", message="offer",
                  offers_address=True, switched_to="proxy", reason="another DHCP server ...")
    )  # fmt: skip
    assert pending.rival == "198.18.0.254 (00:16:3e:5e:00:fe)" and pending.rival_mode == "proxy"
    assert '"switched_to":"proxy"' in pending.events[-1].to_json()
    assert "process" not in pending.events[-1].to_dict()  # optional fields left out while unset


@pytest.mark.lab
def test_in_proxy_mode_the_installers_own_request_moves_a_planned_pc_to_its_new_address(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    """The installer's DHCP (udhcpc in d-i) is no PXE client, but it is a machine pxetui installs:
    the address the router gives it is where its install files go."""
    rival, _ = rival_host(lab, tmp_path, ping=False)
    try:
        pc = lab.add_client(mac="52:54:00:d0:00:41")
        plan = tmp_path / "lab.csv"
        plan.write_text(f"mac,profile,hostname\n{pc.mac},debian-12-local,lab-41\n")
        proc = run_pxetui("--mode", "proxy", "--plan", str(plan))
        proc.wait_event("service.ready")
        bound = udhcpc_lease(pc, tmp_path, "installer")
        assert bound, "dnsmasq gave the installer no address"
        address = bound[0].split()[1]
        seen = proc.wait_event("dhcp.request", mac=pc.mac, requested=address)
        assert not seen.get("ipxe") and not str(seen.get("vendor_class")).startswith("PXEClient")
        pc.run("ip", "addr", "add", f"{address}/24", "dev", "eth0", check=True)
        url = f"http://{lab.server_ip}:8080/config/{pc.mac}/preseed.cfg"
        done = pc.run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url)
        assert done.stdout == "200", "its own install files, at the address the router gave it"
        # A phone's DHCP in proxy mode is still not ours to list.
        phone = lab.add_client(mac="52:54:00:d0:00:42")
        udhcpc_lease(phone, tmp_path, "phone")
        time.sleep(0.5)
        assert not any(e.get("mac") == phone.mac for e in proc.events)
    finally:
        rival.stop()
