"""Issue 13, the rest of DHCP: who becomes a machine, overload, renewals after a switch to proxy.

- Registry entries only for PCs that network-boot or are planned, with a cap: 5000 requests
  naming random MACs grew machines.json to 2.2 MB, slowed DHCP to 46 ms and named the next
  real PC pc-5206.
- Overload: requests that waited over STALE_SECONDS in the receive queue are dropped and
  counted, so fresh ones are answered at once instead of after the backlog.
- After a switch to proxyDHCP, renewals of leases pxetui gave are still answered from the
  pool; a relayed DISCOVER is dropped before any `dhcp.discover` event.

Real frames (tests/dhcp_client.py RawClient), udhcpc and dnsmasq against a real pxetui process,
in namespaces the `lab` fixture makes (198.18.0.0/15) and removes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from dhcp_client import RawClient, dhcp_options, dhcp_packet, mac_bytes, pxe_vendor_class, random_macs
from lab import Client, Lab, prefix
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from test_dhcp_rivals import rival_host, udhcpc_lease

from pxetui.model.events import DhcpDecline, DhcpDiscover, DhcpRequest, Error, PlanAssign
from pxetui.model.registry import Registry
from pxetui.services.dhcp.answer import RELAYED
from pxetui.services.dhcp.leases import OFFER_HOLD_SECONDS
from pxetui.services.dhcp.server import MAX_STRANGERS, OVERLOADED, STALE_SECONDS, TOO_MANY_STRANGERS
from pxetui.session import Session, SessionConfig

pytestmark = pytest.mark.lab


def replies_to(raw: RawClient, mac: str, kind: int, timeout: float = 3, xid: int | None = None) -> list[Any]:
    """DHCP replies of message type `kind` (2 OFFER, 5 ACK) for `mac` within `timeout`."""

    def fits(reply: Any) -> bool:
        if reply[BOOTP].chaddr[:6] != mac_bytes(mac) or dhcp_options(reply).get("message-type") != kind:
            return False
        return xid is None or reply[BOOTP].xid == xid

    return raw.replies(timeout, want=1, match=fits)


def send_paced(raw: RawClient, frames: list[bytes], per_second: int) -> None:
    """Send prebuilt frames at about `per_second` (fast enough for a flood, slow enough that
    none goes stale in pxetui's queue)."""
    started = time.monotonic()
    for n, frame in enumerate(frames):
        raw.send_raw(frame)
        ahead = started + n / per_second - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def saved_machines(state: Path) -> list[dict[str, Any]]:
    machines: list[dict[str, Any]] = json.loads((state / "machines.json").read_text())["machines"]
    return machines


def hostname_after(state: Path, mac: str) -> str:
    """The auto hostname a Session opened on the saved state gives `mac` (pc-NN in boot order)."""
    session = Session(SessionConfig(interface="br0", state_dir=state))
    session.open()
    try:
        return session.hostname_for(mac)
    finally:
        session.state.unlock()


# -- 1. who becomes a machine ------------------------------------------------------------------


def test_only_network_boot_dhcp_and_plan_events_create_machines() -> None:
    """Registry.apply made a machine for any event with a MAC (a phone's ACK, a forged DECLINE,
    an `error` naming a random MAC)."""
    reg = Registry()
    phone, pc, planned = "02:00:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"
    for event in (
        DhcpDiscover(mac=phone, vendor_class="android-dhcp-14"),
        DhcpRequest(mac=phone, requested="198.18.0.150"),
        DhcpDecline(mac=phone, ip="198.18.0.150", accepted=False, reason="not this client's address"),
        Error(mac=phone, service="dhcp", reason="BOOTREPLY sent to the server"),
    ):
        assert reg.apply(event) is None
    assert not reg.machines and reg.refused == 4
    assert reg.apply(DhcpDiscover(mac=pc, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003010"))
    assert reg.apply(PlanAssign(mac=planned, profile="tiny"))
    assert list(reg.machines) == [pc, planned]
    # Once a machine, every event about it counts (its installer's own DHCP, its errors).
    change = reg.apply(Error(mac=pc, service="dhcp", reason="oops"))
    assert change is not None and reg.machines[pc].last_error == "oops"
    reg.apply(DhcpDiscover(mac=phone, vendor_class="udhcp 1.36.1"))
    assert phone not in reg.machines


def test_past_its_cap_the_registry_takes_no_new_machine_from_packets_but_from_the_plan() -> None:
    reg = Registry(max_machines=3)
    for n in range(5):
        reg.apply(DhcpDiscover(mac=f"52:54:00:00:01:{n:02x}", vendor_class="PXEClient"))
    assert len(reg.machines) == 3 and reg.refused == 2
    assert reg.apply(PlanAssign(mac="52:54:00:00:02:01", profile="tiny")) is not None
    assert len(reg.machines) == 4


def test_phones_forged_declines_and_errors_from_random_macs_make_no_machine(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    state = tmp_path / "state"  # run_pxetui's
    net = prefix(lab)
    proc = run_pxetui("--mode", "full", "--range", f"{net}.10-{net}.250")
    proc.wait_event("service.ready")
    _, raw = raw_client
    raw.drain()
    phones = random_macs(200)  # fewer than the pool: the phone after them still gets an address
    frames: list[bytes] = []
    for n, mac in enumerate(phones):  # DISCOVER, REQUEST, DECLINE, a BOOTREPLY: all random MACs
        asked = f"{net}.{10 + n}"
        frames.append(bytes(dhcp_packet(mac, "discover", xid=n, vendor_class=b"android-dhcp-14")))
        frames.append(bytes(dhcp_packet(mac, "request", xid=n, requested=asked, server_id="198.18.99.9")))
        frames.append(bytes(dhcp_packet(mac, "decline", xid=n, requested=asked)))
        reply = dhcp_packet(mac, "discover", xid=n)
        reply[BOOTP].op = 2
        frames.append(bytes(reply))
    send_paced(raw, frames, 1000)
    # A phone still gets its address ...
    phone = "02:00:5e:99:00:01"
    raw.drain()
    raw.send(dhcp_packet(phone, "discover", xid=7001, vendor_class=b"android-dhcp-14"))
    assert replies_to(raw, phone, 2, xid=7001)
    # ... and the first real PC that network-boots is pc-01, after all that.
    pc = "52:54:00:5a:00:01"
    raw.send(dhcp_packet(pc, "discover", xid=7002, arch=7, vendor_class=pxe_vendor_class(7)))
    offer = replies_to(raw, pc, 2, xid=7002)
    assert offer and dhcp_options(offer[0])["boot-file-name"] == b"ipxe.efi"
    proc.wait_event("dhcp.offer", mac=pc)
    assert proc.stop() == 0
    assert [m["mac"] for m in saved_machines(state)] == [pc]
    assert (state / "machines.json").stat().st_size < 10_000
    assert hostname_after(state, pc) == "pc-01"
    heard = [e["event"] for e in proc.events if e.get("mac") in set(phones)]
    assert heard.count("dhcp.decline") == heard.count("dhcp.request") == len(phones)  # all of it heard


def test_network_boot_strangers_past_the_cap_are_dropped_and_counted_and_planned_pcs_still_boot(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    state = tmp_path / "state"
    planned = "52:54:00:5a:00:02"
    plan = tmp_path / "plan.csv"
    plan.write_text(f"mac,profile,hostname\n{planned},,lab-02\n")
    net = prefix(lab)
    proc = run_pxetui("--mode", "full", "--range", f"{net}.10-{net}.250", "--plan", str(plan))
    proc.wait_event("service.ready")
    _, raw = raw_client
    extra = 150
    macs = random_macs(MAX_STRANGERS + extra, prefix="02:00:5d")
    vendor = pxe_vendor_class(7)
    frames = [
        bytes(dhcp_packet(mac, "discover", xid=n, arch=7, vendor_class=vendor)) for n, mac in enumerate(macs)
    ]
    send_paced(raw, frames, 800)
    refused = proc.wait_event("error", timeout=30, reason=TOO_MANY_STRANGERS)
    assert refused["mac"] is None or refused["mac"] not in macs[:MAX_STRANGERS]
    time.sleep(OFFER_HOLD_SECONDS + 0.5)  # the flood's offers may be taken now (the pool is small)
    raw.drain()
    # The planned PC is no stranger: it is answered, as is a stranger seen before the cap.
    raw.send(dhcp_packet(planned, "discover", xid=9001, arch=7, vendor_class=vendor))
    assert replies_to(raw, planned, 2, timeout=5, xid=9001)
    raw.send(dhcp_packet(macs[0], "discover", xid=9002, arch=7, vendor_class=vendor))
    assert replies_to(raw, macs[0], 2, timeout=5, xid=9002)
    raw.send(dhcp_packet(macs[-1], "discover", xid=9003, arch=7, vendor_class=vendor))
    assert not replies_to(raw, macs[-1], 2, timeout=1, xid=9003)
    time.sleep(1.1)  # past the error interval: the next refusal reports every one before it
    raw.send(dhcp_packet(macs[-2], "discover", xid=9004, arch=7, vendor_class=vendor))
    time.sleep(0.5)
    assert proc.stop() == 0
    errors = [e for e in proc.events if e["event"] == "error" and e.get("reason") == TOO_MANY_STRANGERS]
    assert errors, "no error for the strangers past the cap"
    assert len(errors) < 20  # rate-limited: one a second at most
    assert sum(e["since_last"] for e in errors) == errors[-1]["count"] >= extra
    machines = {m["mac"] for m in saved_machines(state)}
    assert len(machines) <= MAX_STRANGERS + 1 and planned in machines and macs[-1] not in machines
    assert not [e for e in proc.events if e["event"] == "dhcp.discover" and e["mac"] == macs[-1]]


# -- 2. overload: stale requests are dropped, fresh ones answered -------------------------------


def test_requests_that_waited_in_the_queue_are_dropped_and_the_fresh_one_is_answered(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    """With 8 MiB receive buffers an overloaded pxetui answered a backlog seconds old first."""
    net = prefix(lab)
    proc = run_pxetui("--mode", "full", "--range", f"{net}.10-{net}.250")
    proc.wait_event("service.ready")
    _, raw = raw_client
    backlog = random_macs(200, prefix="02:00:5c")
    frames = [bytes(dhcp_packet(mac, "discover", xid=n)) for n, mac in enumerate(backlog)]
    pid = proc.proc.pid  # `ip netns exec` execs pxetui itself: this is the pxetui process
    assert "pxetui" in Path(f"/proc/{pid}/cmdline").read_text()
    proc.proc.send_signal(signal.SIGSTOP)  # a stall: the requests queue up in the kernel
    try:
        for frame in frames:
            raw.send_raw(frame)
        time.sleep(STALE_SECONDS + 0.5)
        raw.drain()
        fresh = "02:00:5c:ff:00:01"
        raw.send(dhcp_packet(fresh, "discover", xid=4242))
    finally:
        proc.proc.send_signal(signal.SIGCONT)
    answered = replies_to(raw, fresh, 2, timeout=3, xid=4242)
    assert answered, "the fresh request got no OFFER"
    proc.wait_event("dhcp.offer", mac=fresh)
    assert proc.wait_event("error", reason=OVERLOADED)["count"] == 1  # reported at once ...
    proc.proc.send_signal(signal.SIGSTOP)  # ... and, a second on, with every drop counted
    try:
        raw.send(dhcp_packet("02:00:5c:ff:00:02", "discover", xid=4243))
        time.sleep(max(STALE_SECONDS, 1.0) + 0.2)
    finally:
        proc.proc.send_signal(signal.SIGCONT)
    time.sleep(0.3)
    assert proc.stop() == 0
    offered = {e["mac"] for e in proc.events if e["event"] == "dhcp.offer"}
    assert not offered & {*backlog, "02:00:5c:ff:00:02"}, "stale requests were answered"
    counts = [e["count"] for e in proc.events if e["event"] == "error" and e.get("reason") == OVERLOADED]
    assert len(counts) == 2 and counts[-1] >= 150, counts  # the kernel queue kept (nearly) all of them
    ready = next(e for e in proc.events if e["event"] == "service.ready")
    assert ready["services"]["dhcp"]["stale"] == 0  # describe() counts them (none at start)


# -- 3. after a switch to proxy; relayed requests ----------------------------------------------


def renewal(mac: str, ciaddr: str, xid: int, *, unicast_to: tuple[str, str] | None) -> Any:
    """A RENEWING (unicast to the server) or REBINDING (broadcast) REQUEST: ciaddr set, no option 50/54."""
    dst_mac, dst_ip = unicast_to if unicast_to else ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    return (
        Ether(src=mac, dst=dst_mac)
        / IP(src=ciaddr, dst=dst_ip)
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=mac_bytes(mac), xid=xid, ciaddr=ciaddr)
        / DHCP(options=[("message-type", "request"), "end"])
    )


def server_mac(lab: Lab) -> str:
    out = lab.exec(lab.server_ns, "cat", f"/sys/class/net/{lab.bridge}/address").stdout
    return out.strip()


def test_after_a_switch_to_proxy_our_leases_are_renewed_and_new_clients_get_no_address(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    net = prefix(lab)
    proc = run_pxetui("--range", f"{net}.150-{net}.160")
    assert proc.wait_event("service.ready")["mode"] == "full"
    early = lab.add_client(mac="52:54:00:d1:00:10")
    assert udhcpc_lease(early, tmp_path, "early") == [f"bound {net}.150 {lab.server_ip}"]
    rival, rival_ip = rival_host(lab, tmp_path, ping=False)
    try:
        _, raw = raw_client
        raw.send(dhcp_packet("52:54:00:d1:00:21", "discover", xid=21))
        seen = proc.wait_event("dhcp.rival", timeout=10, server_id=rival_ip)
        assert seen["switched_to"] == "proxy"
        # The PC holds its address (the ACK to a renewal goes to it by plain UDP) and renews it:
        # rebinding (broadcast) and renewing (unicast to us). The lease is still ours to renew.
        early.run("ip", "addr", "add", f"{net}.150/24", "dev", "eth0", check=True)
        own = RawClient(early.netns)
        try:
            for xid, unicast in ((31, None), (32, (server_mac(lab), lab.server_ip))):
                own.send(renewal(early.mac, f"{net}.150", xid, unicast_to=unicast))
                acks = replies_to(own, early.mac, 5, timeout=3, xid=xid)
                assert acks, f"no ACK for the {'unicast' if unicast else 'broadcast'} renewal"
                ack = acks[0]
                assert ack[BOOTP].yiaddr == f"{net}.150" and dhcp_options(ack)["server_id"] == lab.server_ip
                assert dhcp_options(ack)["lease_time"] > 0
        finally:
            own.close()
        # A client pxetui never gave an address asks to renew one from the pool: no answer.
        stranger = "52:54:00:d1:00:30"
        raw.send(renewal(stranger, f"{net}.151", 33, unicast_to=None))
        assert not replies_to(raw, stranger, 5, timeout=2, xid=33)
        # A new client binds the rival's address, not ours.
        late = lab.add_client(mac="52:54:00:d1:00:40")
        bound = udhcpc_lease(late, tmp_path, "late")
        assert len(bound) == 1 and bound[0].endswith(rival_ip), bound
    finally:
        rival.stop()
    assert proc.stop() == 0
    acked = [e for e in proc.events if e["event"] == "dhcp.ack" and e["mac"] == early.mac]
    assert len(acked) == 3  # the first lease in full mode, then both renewals in proxy mode


def test_a_relayed_discover_is_dropped_before_any_event_about_it(
    lab: Lab, run_pxetui: Any, raw_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--mode", "full")
    proc.wait_event("service.ready")
    _, raw = raw_client
    relayed_mac, local_mac = "52:54:00:d1:00:51", "52:54:00:d1:00:52"
    relayed = dhcp_packet(relayed_mac, "discover", xid=51, arch=7, vendor_class=pxe_vendor_class(7))
    relayed[BOOTP].giaddr = "198.18.99.1"
    raw.send(relayed)
    error = proc.wait_event("error", reason=RELAYED)
    assert error["mac"] == relayed_mac
    raw.send(dhcp_packet(local_mac, "discover", xid=52, arch=7, vendor_class=pxe_vendor_class(7)))
    proc.wait_event("dhcp.offer", mac=local_mac)  # everything about the relayed one came before
    assert proc.stop() == 0
    about = [e["event"] for e in proc.events if e.get("mac") == relayed_mac]
    assert about == ["error"], about


def test_udhcpc_renewing_after_the_switch_keeps_its_address(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    """A real client's renewal (busybox udhcpc, SIGUSR1: renew now, unicast to the server)."""
    tool = need_tools("udhcpc")["udhcpc"]
    net = prefix(lab)
    proc = run_pxetui("--range", f"{net}.150-{net}.160")
    assert proc.wait_event("service.ready")["mode"] == "full"
    pc = lab.add_client(mac="52:54:00:d1:00:60")
    log = tmp_path / "udhcpc.log"
    script = tmp_path / "udhcpc.sh"
    # Configures the lab namespace's own eth0 only (the client must hold the address to renew).
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1 $ip $serverid" >> {log}\n'
        'case "$1" in bound|renew) ip addr replace "$ip/24" dev "$interface";; esac\n'
    )
    script.chmod(0o755)
    udhcpc = lab.popen(
        pc.netns, tool, "-f", "-i", "eth0", "-s", str(script), "-t", "4", "-T", "2",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rival = None
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and "bound" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"bound {net}.150 {lab.server_ip}" in log.read_text()
        rival, rival_ip = rival_host(lab, tmp_path, ping=False)
        _, raw = raw_client
        raw.send(dhcp_packet("52:54:00:d1:00:61", "discover", xid=61))
        assert proc.wait_event("dhcp.rival", timeout=10, server_id=rival_ip)["switched_to"] == "proxy"
        udhcpc.send_signal(signal.SIGUSR1)
        proc.wait_event("dhcp.ack", timeout=10, mac=pc.mac, ip=f"{net}.150")
        deadline = time.monotonic() + 10
        while "renew" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"renew {net}.150 {lab.server_ip}" in log.read_text(), log.read_text()
    finally:
        udhcpc.terminate()
        udhcpc.wait(10)
        if rival is not None:
            rival.stop()
    assert proc.stop() == 0
