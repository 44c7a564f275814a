"""The DHCP service on a private lab bridge, with real clients: udhcpc, dhclient, scapy frames, dnsmasq.

Everything runs inside namespaces the `lab` fixture creates (198.18.0.0/15) and deletes.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need, need_tools
from dhcp_client import (
    ZERO_UUID,
    RawClient,
    dhcp_options,
    dhcp_packet,
    mac_bytes,
    netns_socket,
    pxe_vendor_class,
    random_macs,
)
from dnsmasq_rival import Dnsmasq
from lab import Client, Lab, NetnsLoop, prefix
from scapy.layers.dhcp import BOOTP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from tftp_lab import lab_service_context

from pxetui.boot.bootfiles import find_signed_chains
from pxetui.boot.firmware import ARM64
from pxetui.services.dhcp.server import DhcpService
from pxetui.session import SessionConfig

pytestmark = pytest.mark.lab


def boot_dir(tmp_path: Path) -> Path:
    """Stand-in loaders (never real binaries): only BIOS and x86-64 UEFI, so arm64 is missing."""
    root = tmp_path / "loaders"
    root.mkdir()
    for name in ("undionly.kpxe", "ipxe.efi"):
        (root / name).write_bytes(b"stand-in loader for tests")
    return root


def report_script(tmp_path: Path, name: str, line: str) -> Path:
    """A DHCP client hook that only reports the lease (never touches the host's resolv.conf)."""
    out = tmp_path / f"{name}.out"
    script = tmp_path / f"{name}.sh"
    script.write_text(f'#!/bin/sh\necho "{line}" >> {out}\n')
    script.chmod(0o755)
    return script


def test_udhcpc_and_dhclient_get_leases_in_full_mode_and_leases_are_saved(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    tools = need_tools("udhcpc", "dhclient")
    proc = run_pxetui("--mode", "full", "--range", f"{prefix(lab)}.150-{prefix(lab)}.160")
    ready = proc.wait_event("service.ready")
    assert ready["mode"] == "full" and ready["services"]["dhcp"]["range"].endswith(".160")

    busy = lab.add_client(mac="52:54:00:de:00:01")
    script = report_script(tmp_path, "udhcpc", "$1 $ip $subnet $serverid")
    done = busy.run(tools["udhcpc"], "-f", "-q", "-n", "-t", "4", "-T", "2", "-i", "eth0", "-s", str(script))
    assert done.returncode == 0, done.stderr
    bound = [line for line in (tmp_path / "udhcpc.out").read_text().splitlines() if line.startswith("bound")]
    assert bound == [f"bound {prefix(lab)}.150 255.255.255.0 {lab.server_ip}"]

    isc = lab.add_client(mac="52:54:00:de:00:02")
    script = report_script(tmp_path, "dhclient", "$reason $new_ip_address $new_dhcp_server_identifier")
    done = isc.run(
        tools["dhclient"],
        "-4",
        "-1",
        "-sf",
        str(script),
        "-lf",
        str(tmp_path / "dhclient.leases"),
        "-pf",
        str(tmp_path / "dhclient.pid"),
        "eth0",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "dhclient.out").read_text().splitlines()
    assert f"BOUND {prefix(lab)}.151 {lab.server_ip}" in lines, lines

    ack = proc.wait_event("dhcp.ack", mac="52:54:00:de:00:02")
    assert ack["ip"] == f"{prefix(lab)}.151" and ack["arch"] is None
    assert proc.stop(signal.SIGINT) == 0
    saved = json.loads((tmp_path / "state" / "leases.json").read_text())
    assert {(entry["mac"], entry["ip"], entry["state"]) for entry in saved["leases"]} == {
        ("52:54:00:de:00:01", f"{prefix(lab)}.150", "bound"),
        ("52:54:00:de:00:02", f"{prefix(lab)}.151", "bound"),
    }


@pytest.fixture
def pxe_client(lab: Lab) -> Iterator[tuple[Client, RawClient]]:
    client = lab.add_client()
    raw = RawClient(client.netns)
    yield client, raw
    raw.close()


CASES = [
    # (name, arch, vendor class, user class, expected file (relative to http base if it starts with /))
    ("bios", 0, pxe_vendor_class(0), None, "undionly.kpxe"),
    ("uefi-x64", 7, pxe_vendor_class(7), None, "ipxe.efi"),
    ("uefi-x64-ebc", 9, pxe_vendor_class(9), None, "ipxe.efi"),
    ("http-boot", 16, b"HTTPClient:Arch:00016:UNDI:003001", None, "/loaders/ipxe.efi"),
    ("ipxe", 7, pxe_vendor_class(7), b"iPXE", "/boot.ipxe"),
]


def test_each_firmware_gets_its_file_in_a_frame_to_its_own_mac(
    lab: Lab, run_pxetui: Any, tmp_path: Path, pxe_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--boot-files", str(boot_dir(tmp_path)))
    assert proc.wait_event("service.ready")["mode"] == "full"
    http_base = f"http://{lab.server_ip}:8080"
    _, raw = pxe_client
    for n, (name, arch, vendor, user, expected) in enumerate(CASES):
        mac = f"52:54:00:ab:00:{n:02x}"
        raw.send(
            dhcp_packet(
                mac, "discover", xid=n, arch=arch, vendor_class=vendor, user_class=user, uuid_option=ZERO_UUID
            )
        )
        replies = raw.replies(5, want=1, match=lambda r, mac=mac: r[BOOTP].chaddr[:6] == mac_bytes(mac))
        assert replies, f"{name}: no offer"
        reply = replies[0]
        options = dhcp_options(reply)
        want = http_base + expected if expected.startswith("/") else expected
        assert reply[Ether].dst == mac, f"{name}: frame went to {reply[Ether].dst}"
        assert options["message-type"] == 2
        assert options["boot-file-name"] == want.encode(), name
        assert reply[BOOTP].siaddr == lab.server_ip
        assert options["pxe_client_machine_identifier"] == ZERO_UUID
        assert options["server_id"] == lab.server_ip
        if arch == 16:
            assert options["vendor_class_id"] == b"HTTPClient"
        event = proc.wait_event("dhcp.offer", mac=mac)
        assert (
            event["file"] == want
            and event["arch"] == arch
            and event["uuid"] == "00000000-0000-0000-0000-000000000000"
        )
        if user == b"iPXE":
            assert proc.wait_event("dhcp.discover", mac=mac)["ipxe"] is True

    # No arm64 iPXE exists: an arm64 PC gets Debian's signed arm64 chain where
    # debian-installer-12-netboot-arm64 is installed (`make test` installs it), else an error.
    arm = "52:54:00:ab:00:99"
    arm_chains = [c for c in find_signed_chains()[0] if c.cpu == ARM64]
    raw.send(dhcp_packet(arm, "discover", arch=11, vendor_class=pxe_vendor_class(11)))
    if arm_chains:
        offer = proc.wait_event("dhcp.offer", mac=arm)
        assert offer["file"] == arm_chains[0].shim and offer["arch"] == 11
        assert proc.stop() == 0
        return
    error = proc.wait_event("error", mac=arm)
    assert "arm64-efi/ipxe.efi is missing" in error["reason"]
    assert not raw.replies(1, match=lambda r: r[BOOTP].chaddr[:6] == mac_bytes(arm))
    assert proc.stop() == 0
    assert "dhcp.offer" not in [e["event"] for e in proc.events if e.get("mac") == arm]


def test_100_cloned_pcs_with_one_uuid_and_one_xid_all_get_distinct_addresses(
    lab: Lab, run_pxetui: Any, pxe_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--mode", "full", "--range", f"{prefix(lab)}.10-{prefix(lab)}.200")
    proc.wait_event("service.ready")
    _, raw = pxe_client
    macs = random_macs(100)
    xid = 0xCAFE
    common: dict[str, Any] = {
        "xid": xid,
        "arch": 7,
        "vendor_class": pxe_vendor_class(7),
        "uuid_option": ZERO_UUID,
    }
    discovers = [bytes(dhcp_packet(m, "discover", **common)) for m in macs]
    raw.drain()
    started = time.monotonic()
    for frame in discovers:
        raw.send_raw(frame)
    offers = raw.replies(10, want=100)
    offered = {r[Ether].dst: r[BOOTP].yiaddr for r in offers}
    assert len(offers) == 100, f"{len(offers)} offers"
    # Each OFFER went to the one PC it is for, and no two PCs were offered one address.
    assert set(offered) == set(macs) and len(set(offered.values())) == 100
    requests = [
        bytes(dhcp_packet(m, "request", requested=offered[m], server_id=lab.server_ip, **common))
        for m in macs
    ]
    for frame in requests:
        raw.send_raw(frame)
    acks = raw.replies(10, want=100)
    elapsed = time.monotonic() - started
    kinds = [dhcp_options(r)["message-type"] for r in acks]
    assert kinds == [5] * 100, f"{kinds.count(6)} NAKs"
    acked = {r[Ether].dst: r[BOOTP].yiaddr for r in acks}
    assert acked == offered
    # The same PC asking again (a reboot) gets the same address.
    again = macs[37]
    raw.send(dhcp_packet(again, "discover", **common))
    reply = raw.replies(5, want=1, match=lambda r: r[Ether].dst == again)
    assert reply and reply[0][BOOTP].yiaddr == offered[again]
    assert elapsed < 20


def test_thousands_of_bad_packets_are_dropped_and_counted_then_a_discover_still_works(
    lab: Lab, run_pxetui: Any, pxe_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--mode", "full")
    proc.wait_event("service.ready")
    _, raw = pxe_client
    rng = random.Random(20261122)
    good = bytes(
        dhcp_packet("52:54:00:0f:00:01", "discover", arch=7, vendor_class=pxe_vendor_class(7))[BOOTP]
    )
    payloads: list[bytes] = [
        good[:100],  # truncated
        good[:236] + b"\x00\x00\x00\x00" + good[240:],  # wrong magic cookie
        good[:240] + b"\x35\x01\x01\x3c\xf0PXE",  # option runs past the end
        good[:240] + b"\x35\x01\x01\x34\x01\x03\xff",  # option overload
        good[:2] + b"\x20" + good[3:],  # hlen > 16
        good[:1] + b"\x06" + good[2:],  # not Ethernet
        good[:240] + b"\x35\x01\x01" + (b"\x0c\x10" + b"h" * 16) * 2 + b"\xff",  # duplicate option 12
        b"\x02" + good[1:],  # a BOOTREPLY sent to the server
    ]
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.choice([len(data), rng.randrange(len(data))])
        payloads.append(bytes(data[:cut]))
    payloads += [rng.randbytes(rng.randrange(1, 600)) for _ in range(1000)]
    header = Ether(src="02:00:00:00:00:99", dst="ff:ff:ff:ff:ff:ff") / IP(
        src="0.0.0.0", dst="255.255.255.255"
    )
    for payload in payloads:
        raw.send_raw(bytes(header / UDP(sport=68, dport=67) / Raw(payload)))
    raw.drain()
    raw.send(dhcp_packet("52:54:00:0f:00:02", "discover", arch=0, vendor_class=pxe_vendor_class(0)))
    reply = raw.replies(5, want=1, match=lambda r: r[Ether].dst == "52:54:00:0f:00:02")
    assert reply and dhcp_options(reply[0])["boot-file-name"] == b"undionly.kpxe"
    assert proc.proc.poll() is None
    proc.wait_event("dhcp.offer", mac="52:54:00:0f:00:02")
    assert proc.stop() == 0
    errors = [e for e in proc.events if e["event"] == "error" and e.get("service") == "dhcp"]
    reasons = {e["reason"] for e in errors}
    for reason in (
        "truncated packet",
        "bad magic cookie",
        "option runs past the end",
        "option overload",
        "bad hlen",
        "not ethernet",
        "duplicate option",
        "BOOTREPLY sent to the server",
    ):
        assert reason in reasons, (reason, reasons)
    assert not [r for r in reasons if r.startswith("internal error")]
    assert sum(e["since_last"] for e in errors) < len(payloads)
    # Rate-limited: thousands of drops, a handful of events.
    assert len(errors) < 200


# -- next to another DHCP server ----------------------------------------------------------------


def test_proxy_mode_next_to_dnsmasq_address_from_it_boot_file_from_us(
    lab: Lab, run_pxetui: Any, tmp_path: Path, pxe_client: tuple[Client, RawClient]
) -> None:
    tools = need_tools("udhcpc")
    rival = Dnsmasq(lab, tmp_path)
    try:
        proc = run_pxetui("--boot-files", str(boot_dir(tmp_path)))
        seen = proc.wait_event("dhcp.rival")
        assert seen["server_id"] == rival.ip and seen["server_mac"] == "52:54:00:d0:00:02"
        assert seen["offers_address"] is True and seen["router"] == rival.ip
        assert seen["subnet"] == str(lab.subnet) and seen["boot_file"] is None
        ready = proc.wait_event("service.ready")
        assert ready["mode"] == "proxy" and ready["services"]["dhcp"]["proxy_port"] == 4011

        # A PXE PC: an address from dnsmasq, the boot file from pxetui (with no address).
        client, raw = pxe_client
        mac = client.mac
        raw.send(
            dhcp_packet(
                mac, "discover", xid=77, arch=7, vendor_class=pxe_vendor_class(7), uuid_option=ZERO_UUID
            )
        )
        replies = raw.replies(5, want=2, match=lambda r: r[BOOTP].xid == 77)
        by_server = {dhcp_options(r)["server_id"]: r for r in replies}
        assert set(by_server) == {rival.ip, lab.server_ip}
        ours = by_server[lab.server_ip]
        assert ours[BOOTP].yiaddr == "0.0.0.0" and ours[Ether].dst == mac
        assert dhcp_options(ours)["boot-file-name"] == b"ipxe.efi"
        assert dhcp_options(ours)["vendor_class_id"] == b"PXEClient"
        theirs = by_server[rival.ip]
        assert theirs[BOOTP].yiaddr.startswith(prefix(lab) + ".")

        # The firmware then asks us on port 4011 from the address dnsmasq gave it.
        address = theirs[BOOTP].yiaddr
        client.run("ip", "addr", "add", f"{address}/24", "dev", "eth0", check=True)
        udp = netns_socket(client.netns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((address, 68))
            udp.settimeout(5)
            request = dhcp_packet(
                mac,
                "request",
                xid=78,
                broadcast=False,
                arch=7,
                vendor_class=pxe_vendor_class(7),
                uuid_option=ZERO_UUID,
            )[BOOTP]
            request.ciaddr = address
            udp.sendto(bytes(request), (lab.server_ip, 4011))
            data, source = udp.recvfrom(2048)
        finally:
            udp.close()
        ack = BOOTP(data)
        assert source == (lab.server_ip, 4011)
        assert dhcp_options(ack)["message-type"] == 5 and ack.xid == 78
        assert dhcp_options(ack)["boot-file-name"] == b"ipxe.efi" and ack.yiaddr == "0.0.0.0"

        # A PC that is not network-booting gets its lease from dnsmasq and nothing from us.
        plain = lab.add_client(mac="52:54:00:d0:00:33")
        script = report_script(tmp_path, "udhcpc", "$1 $ip $serverid")
        done = plain.run(
            tools["udhcpc"], "-f", "-q", "-n", "-t", "4", "-T", "2", "-i", "eth0", "-s", str(script)
        )
        assert done.returncode == 0, done.stderr
        lines = (tmp_path / "udhcpc.out").read_text().splitlines()
        assert any(line.startswith("bound ") and line.endswith(rival.ip) for line in lines), lines
        assert proc.stop() == 0
        # Not even listed: on a shared network it is someone's laptop, not a PC to install.
        assert not [e for e in proc.events if e.get("mac") == "52:54:00:d0:00:33"]
        assert "dhcp.discover" in [e["event"] for e in proc.events if e.get("mac") == mac]
    finally:
        rival.stop()


def test_rival_watch_and_full_mode_refusal(
    lab: Lab, run_pxetui: Any, tmp_path: Path, pxe_client: tuple[Client, RawClient]
) -> None:
    proc = run_pxetui("--mode", "full")
    assert proc.wait_event("service.ready")["mode"] == "full"
    rival = Dnsmasq(lab, tmp_path)
    try:
        _, raw = pxe_client
        raw.send(dhcp_packet("52:54:00:d0:00:44", "discover", xid=5))
        seen = proc.wait_event("dhcp.rival", timeout=10)
        assert seen["server_id"] == rival.ip and seen["mode"] == "full"
        assert proc.stop() == 0

        refused = run_pxetui("--mode", "full", state=tmp_path / "state2")
        assert refused.proc.wait(30) == 2
        refused.stop()
        fatal = [e for e in refused.events if e["event"] == "error" and e.get("fatal")]
        assert fatal and rival.ip in fatal[0]["reason"] and "--mode proxy" in fatal[0]["reason"]
        assert "dhcp.rival" in refused.names() and "service.ready" not in refused.names()
    finally:
        rival.stop()


# -- a whole PC: OVMF's own PXE client ------------------------------------------------------------

OVMF = Path("/usr/share/qemu/OVMF.fd")


def start_ovmf_pc(lab: Lab, qemu: str, tap: str, mac: str) -> subprocess.Popen[str]:
    lab.add_tap(tap)
    return lab.popen(
        lab.server_ns, qemu, "-accel", "tcg", "-machine", "q35", "-m", "512",
        "-display", "none", "-monitor", "none", "-bios", str(OVMF),
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile=",  # romfile=: OVMF's own PXE
        "-boot", "n",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def tftp_requests(sock: socket.socket, want: int, vms: list[subprocess.Popen[str]]) -> dict[str, bytes]:
    """First TFTP request (UDP to port 69) per source address seen on the bridge, until `want`
    sources asked or time runs out. Sniffed, so it works with or without a TFTP service."""
    seen: dict[str, bytes] = {}
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and len(seen) < want:
        try:
            frame = Ether(sock.recv(65535))
        except TimeoutError:
            assert all(vm.poll() is None for vm in vms), "qemu exited"
            continue
        if UDP in frame and frame[UDP].dport == 69:
            seen.setdefault(frame[IP].src, bytes(frame[UDP].payload))
    return seen


@pytest.mark.e2e
@pytest.mark.parametrize(("mode", "pcs"), [("full", 4), ("proxy", 1)])
def test_uefi_pcs_ask_us_for_ipxe_efi_over_tftp(
    lab: Lab, run_pxetui: Any, tmp_path: Path, mode: str, pcs: int
) -> None:
    """OVMF (EDK II PXE, like a real PC) accepts our answer: its next packet is the TFTP read of
    ipxe.efi from us. Full mode: four identical PCs powered on together (all-zero UUIDs, and
    OVMF reuses transaction ids across VMs) all get through, each with its own address. Proxy
    mode: the address comes from dnsmasq on the same bridge, the boot file from us."""
    tools = need_tools("qemu-system-x86_64")
    need(None if OVMF.exists() else f"needs {OVMF} (Debian package ovmf, installed by `make test`)")
    rival = Dnsmasq(lab, tmp_path) if mode == "proxy" else None
    tftp = netns_socket(lab.server_ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    vms: list[subprocess.Popen[str]] = []
    macs = [f"52:54:00:12:34:{0x10 + n:02x}" for n in range(pcs)]
    try:
        tftp.bind((lab.bridge, 0))
        tftp.settimeout(1)
        proc = run_pxetui("--mode", mode)
        assert proc.wait_event("service.ready")["mode"] == mode
        vms = [start_ovmf_pc(lab, tools["qemu-system-x86_64"], f"tap{n}", mac) for n, mac in enumerate(macs)]
        requests = tftp_requests(tftp, pcs, vms)
        assert len(requests) == pcs, f"only {sorted(requests)} asked for a loader"
        assert all(r.startswith(b"\x00\x01ipxe.efi\x00") for r in requests.values()), requests
        for mac in macs:
            offer = proc.wait_event("dhcp.offer", mac=mac)
            assert offer["arch"] == 7 and offer["file"] == "ipxe.efi"
        if rival is None:
            acked = {proc.wait_event("dhcp.ack", mac=mac)["ip"] for mac in macs}
            assert acked == set(requests)
            assert "dhcp.nak" not in proc.names()
        else:
            assert all(e.get("ip") is None for e in proc.events if e["event"] == "dhcp.offer")
            assert all(50 <= int(ip.rsplit(".", 1)[1]) <= 90 for ip in requests)  # dnsmasq's range
    finally:
        for vm in vms:
            vm.kill()
            vm.wait(10)
        tftp.close()
        if rival is not None:
            rival.stop()


@pytest.mark.e2e
def test_a_bios_pc_with_ipxe_rom_fetches_the_script_over_http_in_proxy_mode(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    """SeaBIOS runs the NIC's iPXE ROM: address from dnsmasq, then `GET /boot.ipxe` from us."""
    tools = need_tools("qemu-system-x86_64")
    rival = Dnsmasq(lab, tmp_path)
    vm: subprocess.Popen[str] | None = None
    mac = "52:54:00:12:34:02"
    try:
        proc = run_pxetui()
        assert proc.wait_event("service.ready")["mode"] == "proxy"
        lab.add_tap("tap0")
        vm = lab.popen(
            lab.server_ns, tools["qemu-system-x86_64"], "-accel", "tcg", "-machine", "pc", "-m", "256",
            "-display", "none", "-monitor", "none",
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
            "-boot", "n", "-serial", f"file:{tmp_path / 'serial.log'}",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        offer = proc.wait_event("dhcp.offer", timeout=150, mac=mac)
        assert offer["ipxe"] is True and offer["file"] == f"http://{lab.server_ip}:8080/boot.ipxe"
        assert offer.get("ip") is None  # proxyDHCP: the address is dnsmasq's to give
        script = proc.wait_event("http.request", timeout=150, path="/boot.ipxe")
        client = str(script.get("client") or "")
        assert client.startswith(prefix(lab) + ".") and 50 <= int(client.rsplit(".", 1)[1]) <= 90, script
    finally:
        if vm is not None:
            vm.kill()
            vm.wait(10)
        rival.stop()


def test_dhcp_is_answered_while_the_services_loop_is_held_up(
    lab: Lab, tmp_path: Path, pxe_client: tuple[Client, RawClient]
) -> None:
    """DHCP's ports are read and answered on a thread of their own: a services' loop held up
    by other work (in a room: 100 TFTP transfers, boot scripts, events) no longer holds back
    every answer. Here the loop is stuck in one callback until the OFFER has arrived."""
    config = SessionConfig(interface=lab.bridge, mode="full", force=True, state_dir=tmp_path / "state")
    session, context = lab_service_context(lab, config, boot_dir(tmp_path))
    service = DhcpService(context)
    release = threading.Event()
    with NetnsLoop(lab.server_ns) as nl:

        async def start() -> None:
            session.bus.bind_loop(asyncio.get_running_loop())
            await service.start()

        nl.run(start())
        try:
            nl.loop.call_soon_threadsafe(release.wait, 30)  # the loop runs nothing else meanwhile
            _, raw = pxe_client
            mac = "52:54:00:ab:01:01"
            raw.send(
                dhcp_packet(
                    mac, "discover", xid=7, arch=7, vendor_class=pxe_vendor_class(7), uuid_option=ZERO_UUID
                )
            )
            replies = raw.replies(5, want=1, match=lambda r: r[BOOTP].chaddr[:6] == mac_bytes(mac))
            answered_while_held = bool(replies)
            release.set()
            assert answered_while_held, "no OFFER while the services' loop was held up"
            assert dhcp_options(replies[0])["message-type"] == 2
            # Its events reach the loop once that runs again, in order: the PC is in the registry.
            # (The receiver sends the OFFER before it emits the batch's events: allow it a moment.)
            deadline = time.monotonic() + 5
            while not nl.call(lambda: session.registry.get(mac) is not None) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert nl.call(lambda: session.registry.get(mac) is not None)
            assert nl.call(lambda: service.describe()["answered"]) == 1
        finally:
            release.set()
            nl.run(service.stop())
