"""The pool and the DHCP service under abuse: forged DECLINEs, random-MAC DISCOVER floods,
error floods from distinct MACs, terminal escapes in client text (issue 13).

The unit tests drive `answer()`, `LeasePool`, `ErrorCounter` and `codec.text` directly; the lab
tests send real frames (tests/dhcp_client.py RawClient) and run udhcpc against a real pxetui
process in namespaces the `lab` fixture creates (198.18.0.0/15) and removes.
"""

from __future__ import annotations

import ipaddress
import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from dhcp_client import RawClient, dhcp_options, dhcp_packet, mac_bytes, pxe_vendor_class, random_macs
from lab import Client, Lab, prefix
from scapy.layers.dhcp import BOOTP
from scapy.layers.l2 import Ether
from test_dhcp_answer import SERVER, dora, facts_for, pxe, request_bytes
from test_dhcp_answer import boot_dir as unit_boot_dir

from pxetui.lab.netns import pxetui_command
from pxetui.model.events import DhcpDecline, make_event
from pxetui.services.dhcp import codec
from pxetui.services.dhcp.answer import ServerFacts, answer
from pxetui.services.dhcp.leases import BOUND, OFFER_HOLD_SECONDS, LeasePool
from pxetui.services.dhcp.server import ErrorCounter

ESCAPES = b"\x1b]0;owned\x07\x1b[2J"
HOLD = OFFER_HOLD_SECONDS
CONTROLS = {*range(0x20), *range(0x7F, 0xA0)}


@pytest.fixture
def facts(tmp_path: Path) -> ServerFacts:
    return facts_for(unit_boot_dir(tmp_path, "undionly.kpxe", "ipxe.efi"))


def small_pool(size: int, now: list[float]) -> LeasePool:
    first = ipaddress.IPv4Address("198.18.7.100")
    return LeasePool(first, first + size - 1, clock=lambda: now[0])


def discover(facts: ServerFacts, leases: LeasePool, mac: str) -> str | None:
    return answer(codec.decode(request_bytes(mac, options=pxe(7))), 67, facts, leases).ip


def decline(mac: str, ip: str, server: str = str(SERVER.ip)) -> codec.Packet:
    return codec.decode(
        request_bytes(mac, "decline", options=[("requested_addr", ip), ("server_id", server)])
    )


# -- DECLINE -----------------------------------------------------------------------------------


def test_forged_discover_decline_pairs_do_not_empty_the_pool(facts: ServerFacts) -> None:
    """155 forged pairs a minute emptied the default pool (155 addresses) for the session."""
    now = [1000.0]
    leases = small_pool(155, now)
    for mac in random_macs(155):
        offered = discover(facts, leases, mac)
        if offered is None:
            continue
        result = answer(decline(mac, offered), 67, facts, leases)
        assert result.kind is None and result.decline is not None
        assert (result.decline.ip, result.decline.accepted) == (offered, False)
        assert result.decline.reason == "address not bound to this client"
        now[0] += 0.4  # 155 a minute
    assert not leases.excluded
    assert dora(facts, leases, "52:54:00:00:00:77") is not None


def test_a_decline_counts_only_from_the_client_the_address_is_bound_to(facts: ServerFacts) -> None:
    leases = small_pool(10, [1000.0])
    owner, other = "52:54:00:00:00:51", "52:54:00:00:00:52"
    ip = dora(facts, leases, owner)
    theft = answer(decline(other, ip), 67, facts, leases).decline
    assert theft is not None and not theft.accepted and theft.reason == "not this client's address"
    elsewhere = answer(decline(owner, ip, server="198.18.7.9"), 67, facts, leases).decline
    assert elsewhere is not None and not elsewhere.accepted and elsewhere.reason == "for another server"
    lease = leases.lease_for(owner)
    assert lease is not None and lease.state == BOUND and codec.ip_text(lease.ip.to_bytes(4, "big")) == ip

    taken = answer(decline(owner, ip), 67, facts, leases).decline
    assert taken is not None and taken.accepted and taken.ip == ip
    assert int(ipaddress.IPv4Address(ip)) in leases.excluded
    assert discover(facts, leases, owner) not in (None, ip)


def test_the_decline_event_has_the_address_and_the_verdict() -> None:
    event = make_event("dhcp.decline", "52:54:00:00:00:51", ip="198.18.7.100", accepted=False, reason="r")
    assert isinstance(event, DhcpDecline)
    line = json.loads(event.to_json())
    del line["ts"]
    assert line == {
        "event": "dhcp.decline",
        "mac": event.mac,
        "ip": "198.18.7.100",
        "accepted": False,
        "reason": "r",
    }


# -- DISCOVER floods ---------------------------------------------------------------------------


def test_a_random_mac_flood_cannot_starve_a_real_client_and_never_takes_a_bound_lease(
    facts: ServerFacts,
) -> None:
    """155 DISCOVERs a minute from random MACs kept the default pool (155 addresses) empty."""
    now = [1000.0]
    leases = small_pool(155, now)
    bound = {dora(facts, leases, f"52:54:00:00:00:{i:02x}") for i in range(3)}
    offers = []
    for mac in random_macs(3 * 155):  # three minutes of it, never a REQUEST
        offers.append(discover(facts, leases, mac))
        now[0] += 60 / 155
    assert None not in offers  # once the pool ran dry, the oldest offer made room for the next
    assert not bound & set(offers)
    real = dora(facts, leases, "52:54:00:00:00:99")
    assert real not in bound
    for i in range(3):  # the bound PCs renew the address they had
        assert dora(facts, leases, f"52:54:00:00:00:{i:02x}") in bound


def test_when_the_pool_runs_dry_the_oldest_offer_goes_first_and_fresh_offers_are_held() -> None:
    now = [1000.0]
    leases = small_pool(3, now)
    first, second, third = (leases.offer(f"52:54:00:00:01:{i:02x}") for i in range(3))
    assert leases.offer("52:54:00:00:01:10") is None  # all three were offered just now
    now[0] += leases.offer_hold_seconds + 1
    assert leases.offer("52:54:00:00:01:11") == first
    assert leases.offer("52:54:00:00:01:02") == third  # its own offer, refreshed
    assert leases.offer("52:54:00:00:01:12") == second
    for mac in ("52:54:00:00:01:02", "52:54:00:00:01:11", "52:54:00:00:01:12"):
        lease = leases.lease_for(mac)
        assert lease is not None and leases.request(mac, lease.ip).ack
    assert leases.offer("52:54:00:00:01:13") is None  # all bound: never taken
    now[0] += 3600 * 2
    assert leases.offer("52:54:00:00:01:13") is not None  # expired leases are reused, as before


# -- rate-limited errors -----------------------------------------------------------------------


def test_error_events_are_limited_per_reason_even_when_reasons_carry_client_data() -> None:
    counter = ErrorCounter(interval=60)
    due = [counter.count(f"no boot loader for arch {arch}") for arch in range(3000)]
    reported = [d for d in due if d is not None]
    assert len(reported) == ErrorCounter.MAX_REASONS + 1  # one per reason, then one for the rest
    assert len(counter.counts) == ErrorCounter.MAX_REASONS + 1 and counter.total == 3000
    assert counter.counts[ErrorCounter.OTHER] == 3000 - ErrorCounter.MAX_REASONS


# -- text shown to the operator ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"PXEClient" + ESCAPES, b"\x9b31mred\x7f\x85", b"a\tb\r\nc\x00\x00", bytes(range(256))],
)
def test_client_text_keeps_its_printable_part_and_no_control_character(raw: bytes) -> None:
    shown = codec.text(raw)
    assert shown is not None and not {ord(c) for c in shown} & CONTROLS
    printable = bytes(b for b in raw if 0x20 <= b < 0x7F).decode()
    assert "".join(c for c in shown if c.isascii()) == printable


def test_an_escape_in_option_60_and_77_never_reaches_the_event(facts: ServerFacts) -> None:
    from pxetui.services.dhcp.server import client_fields

    packet = codec.decode(request_bytes(options=[(60, b"PXEClient:Arch:00007" + ESCAPES), (77, ESCAPES)]))
    fields = client_fields(packet)
    assert fields["vendor_class"] == "PXEClient:Arch:00007\ufffd]0;owned\ufffd\ufffd[2J"
    for value in (fields["vendor_class"], fields["user_class"]):
        assert "\x1b" not in value and "\x07" not in value


# -- in the lab, against a real pxetui process ------------------------------------------------


def udhcpc(lab: Lab, tmp_path: Path, mac: str, tries: int = 8) -> list[str]:
    """Run busybox udhcpc on a fresh client; return its `bound <ip>` lines."""
    tools = need_tools("udhcpc")
    client = lab.add_client(mac=mac)
    out = tmp_path / f"udhcpc-{mac[-2:]}.out"
    script = tmp_path / f"udhcpc-{mac[-2:]}.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $ip" >> {out}\n')
    script.chmod(0o755)
    client.run(
        tools["udhcpc"], "-f", "-q", "-n", "-t", str(tries), "-T", "2", "-i", "eth0", "-s", str(script),
        timeout=60,
    )  # fmt: skip
    lines = out.read_text().splitlines() if out.exists() else []
    return [line for line in lines if line.startswith("bound ")]


def offer_to(raw: RawClient, mac: str, timeout: float = 3) -> str | None:
    replies = raw.replies(timeout, want=1, match=lambda r: r[Ether].dst == mac)
    return str(replies[0][BOOTP].yiaddr) if replies else None


def discover_until_offered(raw: RawClient, mac: str, tries: int = 5) -> str | None:
    """DISCOVER every 2 s, as a client does, until an OFFER comes."""
    for xid in range(tries):
        raw.send(dhcp_packet(mac, "discover", xid=xid))
        offered = offer_to(raw, mac, timeout=2)
        if offered is not None:
            return offered
    return None


@pytest.mark.lab
def test_forged_declines_from_random_macs_leave_the_pool_to_a_real_client(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    net = prefix(lab)
    proc = run_pxetui("--mode", "full", "--range", f"{net}.150-{net}.159")
    proc.wait_event("service.ready")
    _, raw = raw_client
    raw.drain()
    declined = []
    for mac in random_macs(30):
        raw.send(dhcp_packet(mac, "discover"))
        offered = offer_to(raw, mac)
        if offered is None:
            continue
        raw.send(dhcp_packet(mac, "decline", requested=offered, server_id=lab.server_ip))
        declined.append(offered)
        proc.wait_event("dhcp.decline", mac=mac, ip=offered, accepted=False)
    assert len(declined) >= 10  # the whole pool was offered and declined at least once
    bound = udhcpc(lab, tmp_path, "52:54:00:dc:00:01")
    assert bound and bound[0].startswith(f"bound {net}.15"), bound

    # The PC the address is bound to can decline it: it then goes to nobody this session.
    real = "52:54:00:dc:00:02"
    mine = discover_until_offered(raw, real)
    assert mine is not None
    raw.send(dhcp_packet(real, "request", requested=mine, server_id=lab.server_ip))
    assert raw.replies(
        3, want=1, match=lambda r: r[Ether].dst == real and dhcp_options(r)["message-type"] == 5
    )
    raw.send(dhcp_packet(real, "decline", requested=mine, server_id=lab.server_ip))
    proc.wait_event("dhcp.decline", mac=real, ip=mine, accepted=True)
    again = discover_until_offered(raw, real)
    assert again is not None and again != mine
    assert proc.stop() == 0


@pytest.mark.lab
def test_a_random_mac_discover_flood_does_not_starve_udhcpc(
    lab: Lab, run_pxetui: Any, tmp_path: Path, raw_client: tuple[Client, RawClient]
) -> None:
    net = prefix(lab)
    proc = run_pxetui("--mode", "full", "--range", f"{net}.150-{net}.165")
    proc.wait_event("service.ready")
    _, raw = raw_client
    raw.drain()
    flood = random_macs(200)
    filled = set()
    for mac in flood[:16]:
        raw.send(dhcp_packet(mac, "discover"))
        filled.add(offer_to(raw, mac))
    assert len(filled - {None}) == 16  # every address of the pool is offered to the flood
    stop = threading.Event()

    def keep_flooding() -> None:  # two DISCOVERs a second from new MACs, never a REQUEST
        for mac in flood[16:]:
            if stop.wait(0.5):
                return
            raw.send(dhcp_packet(mac, "discover"))

    flooder = threading.Thread(target=keep_flooding, daemon=True)
    flooder.start()
    try:
        first = udhcpc(lab, tmp_path, "52:54:00:dc:00:11")
        second = udhcpc(lab, tmp_path, "52:54:00:dc:00:12")
    finally:
        stop.set()
        flooder.join(5)
    assert first and second and first != second, (first, second)
    held = {line.split()[1] for line in first + second}
    time.sleep(HOLD + 0.5)  # every flood offer may now be taken; the two bound leases may not
    raw.drain()
    later = []
    for mac in random_macs(20, prefix="02:00:5f"):
        raw.send(dhcp_packet(mac, "discover"))
        later.append(offer_to(raw, mac, timeout=0.5))
    offered = set(later) - {None}
    assert len(offered) == 14 and not offered & held, (later, held)
    assert proc.stop() == 0
    acks = {e["ip"] for e in proc.events if e["event"] == "dhcp.ack"}
    assert held <= acks


@pytest.mark.lab
def test_errors_from_thousands_of_distinct_macs_are_a_few_events_that_count_them_all(
    lab: Lab, run_pxetui: Any, raw_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--mode", "full")
    proc.wait_event("service.ready")
    _, raw = raw_client
    template = bytearray(bytes(dhcp_packet("02:ff:00:00:00:01", "discover")))
    bootp_at = 14 + 20 + 8
    template[bootp_at] = 2  # a BOOTREPLY sent to the server: dropped with the client's MAC
    template[bootp_at - 2 : bootp_at] = b"\x00\x00"  # no UDP checksum (RFC 768), so bytes can change
    total = 3000
    started = time.monotonic()
    for n in range(total):
        frame = bytearray(template)
        chaddr = b"\x02\x00" + n.to_bytes(4, "big")
        frame[6:12] = chaddr
        frame[bootp_at + 28 : bootp_at + 34] = chaddr
        raw.send_raw(bytes(frame))
    elapsed = time.monotonic() - started
    time.sleep(1.2)  # past the interval: the next drop is reported with all the ones before it
    raw.send_raw(bytes(template))
    reason = "BOOTREPLY sent to the server"
    last = proc.wait_event("error", reason=reason, mac="02:ff:00:00:00:01")
    assert proc.stop() == 0
    errors = [e for e in proc.events if e["event"] == "error" and e.get("reason") == reason]
    assert len(errors) <= elapsed + 3, f"{len(errors)} events for {last['count']} drops in {elapsed:.1f} s"
    # Nothing is lost from the count: the events' since_last add up to every drop so far.
    assert sum(e["since_last"] for e in errors) == last["count"] > total // 2


def read_lines(stream: Any, into: queue.Queue[bytes | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


@pytest.mark.lab
@pytest.mark.parametrize("json_lines", [False, True], ids=["text", "json"])
def test_terminal_escapes_in_option_60_never_reach_the_operator(
    lab: Lab, tmp_path: Path, raw_client: tuple[Client, RawClient], json_lines: bool
) -> None:
    """Headless text mode printed option 60 raw: `\\x1b]0;owned\\x07` retitled the terminal."""
    loaders = unit_boot_dir(tmp_path, "ipxe.efi")
    cmd = pxetui_command(
        lab.bridge, tmp_path / "state", "--mode", "full", "--boot-files", str(loaders), headless=False
    )
    cmd += ["--headless", "--json"] if json_lines else ["--headless"]
    lab.check_owned(lab.server_ns, lab.bridge)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.server_ns, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    lines: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: list[bytes] = []
    try:

        def wait_for(word: bytes) -> None:
            deadline = time.monotonic() + 30
            while not any(word in line for line in seen):
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
                assert line is not None, f"pxetui exited: {b''.join(seen)!r}"
                seen.append(line)

        # Text mode prints sentences: "serving DHCP, ...", "MAC offered ADDR ...".
        wait_for(b"service.ready" if json_lines else b"serving ")
        _, raw = raw_client
        mac = "52:54:00:dc:00:21"
        vendor = pxe_vendor_class(7) + ESCAPES
        raw.send(dhcp_packet(mac, "discover", arch=7, vendor_class=vendor, user_class=b"\x9b2J" + ESCAPES))
        assert raw.replies(5, want=1, match=lambda r: r[BOOTP].chaddr[:6] == mac_bytes(mac))
        wait_for(b"dhcp.offer" if json_lines else f"{mac} offered".encode())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    out = b"".join(seen).decode()
    assert not {ord(c) for c in out} & (CONTROLS - {0x0A}), out
    if not json_lines:
        assert f"{mac} asks for an address" in out
        return
    events = [json.loads(line) for line in seen]
    assert "owned" in out  # the field is there, made harmless
    shown = [e for e in events if e.get("mac") == mac and e["event"] in ("dhcp.discover", "dhcp.offer")]
    assert len(shown) == 2
    for event in shown:
        assert event["vendor_class"].startswith("PXEClient:Arch:00007:UNDI:003010")
        assert not {ord(c) for c in event["vendor_class"] + event["user_class"]} & CONTROLS
