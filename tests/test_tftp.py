"""TFTP service with real clients (tftp-hpa, curl, the windowsize client) in lab namespaces."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tools
from lab import Client, Lab, NetnsLoop
from tftp_client import Result, fetch, rrq
from tftp_lab import TftpServer, make_boot_dir, start_tftp

from pxetui.errors import PxetuiError
from pxetui.services.tftp.server import TftpService

pytestmark = pytest.mark.lab
CLIENT = str(Path(__file__).with_name("tftp_client.py"))


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def boot(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "boot"
    return root, make_boot_dir(root, tmp_path / "outside")


@pytest.fixture
def server(lab: Lab, tmp_path: Path, boot: tuple[Path, dict[str, bytes]]) -> Iterator[TftpServer]:
    with NetnsLoop(lab.server_ns) as nl:
        srv = start_tftp(lab, nl, tmp_path / "state", boot[0])
        try:
            yield srv
        finally:
            nl.run(srv.service.stop())


def windowsize_client(client: object, *args: str, timeout: float = 120) -> list[dict[str, object]]:
    run = client.run  # type: ignore[attr-defined]
    done = run(sys.executable, CLIENT, *args, timeout=timeout)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert lines and not done.stderr, f"client stderr: {done.stderr[-3000:]}"
    return lines[:-1]  # the last line is the summary


def test_tftp_hpa_binary_fetch_through_symlink_with_mac_events(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    need_tools("tftp")
    client = lab.add_client(mac="52:54:00:aa:00:01", address=f"{lab.subnet.network_address + 20}/24")
    ip = str(lab.subnet.network_address + 20)
    server.loop.call(lambda: server.session.registry.set_ip(client.mac, ip))  # what dhcp.ack would record
    out = tmp_path / "ipxe.efi"
    done = client.run("tftp", "-v", "-m", "binary", server.ip, "-c", "get", "ipxe.efi", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sha(out.read_bytes()) == sha(boot[1]["ipxe.efi"])
    assert server.wait(lambda: bool(server.named("tftp.done", file="ipxe.efi")))
    start = server.named("tftp.start", file="ipxe.efi")[0]
    finished = server.named("tftp.done", file="ipxe.efi")[0]
    assert start.mac == finished.mac == "52:54:00:aa:00:01"
    assert start.fields["blksize"] == 512 and start.fields["windowsize"] == 1
    assert finished.fields["ok"] is True
    assert finished.fields["bytes"] == finished.fields["total"] == 850_528
    assert finished.fields["rate"] > 0
    assert server.session.registry.get(client.mac).transfer.finished  # type: ignore[union-attr]


def test_tftp_hpa_leading_slash_and_subdirectory(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    need_tools("tftp")
    client = lab.add_client(address=f"{lab.subnet.network_address + 21}/24")
    for name in ("/undionly.kpxe", "arm64-efi/ipxe.efi", "snponly.efi"):
        out = tmp_path / name.replace("/", "_")
        done = client.run("tftp", "-m", "binary", server.ip, "-c", "get", name, str(out))
        assert done.returncode == 0, done.stdout + done.stderr
        assert sha(out.read_bytes()) == sha(boot[1][name.lstrip("/")]), name


def test_tftp_hpa_netascii_mode_roundtrips(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    need_tools("tftp")
    client = lab.add_client(address=f"{lab.subnet.network_address + 32}/24")
    out = tmp_path / "ascii"
    # tftp-hpa's default mode: the server sends CR LF / CR NUL, the client turns them back.
    done = client.run("tftp", server.ip, "-c", "get", "arm64-efi/ipxe.efi", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_bytes() == boot[1]["arm64-efi/ipxe.efi"]
    assert server.wait(lambda: bool(server.named("tftp.done", ok=True)))
    content = boot[1]["arm64-efi/ipxe.efi"]
    wire_size = len(content) + content.count(b"\n") + content.count(b"\r")
    assert server.named("tftp.done", ok=True)[0].fields["total"] == wire_size


@pytest.mark.parametrize("blksize", [512, 1024, 1468, 8192])
def test_curl_blksize_variants_capped_at_mtu(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path, blksize: int
) -> None:
    need_tools("curl")
    client = lab.add_client(address=f"{lab.subnet.network_address + 22}/24")
    out = tmp_path / "got"
    done = client.run(
        "curl", "-sS", "--tftp-blksize", str(blksize), "-o", str(out), f"tftp://{server.ip}/ipxe.efi"
    )
    assert done.returncode == 0, done.stderr
    assert sha(out.read_bytes()) == sha(boot[1]["ipxe.efi"])
    assert server.wait(lambda: bool(server.named("tftp.done", ok=True)))
    finished = server.named("tftp.done", ok=True)[0]
    assert finished.fields["blksize"] == min(blksize, 1500 - 32)


@pytest.mark.parametrize("windowsize", [1, 4, 16])
def test_windowsize_client_gets_file_intact(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], windowsize: int
) -> None:
    client = lab.add_client(address=f"{lab.subnet.network_address + 23}/24")
    results = windowsize_client(
        client, server.ip, "ipxe.efi", "--tsize", "--blksize", "1468", "--windowsize", str(windowsize)
    )
    (result,) = results
    assert result["ok"], result
    assert result["sha256"] == sha(boot[1]["ipxe.efi"])
    assert result["oack"] == {"tsize": "850528", "blksize": "1468", "windowsize": str(windowsize)}
    assert server.wait(lambda: bool(server.named("tftp.done", ok=True)))
    finished = server.named("tftp.done", ok=True)[0]
    assert finished.fields["windowsize"] == windowsize
    # A window leaves in one send (UDP segmentation), cut by the kernel into the datagrams the
    # client just checked: ipxe.efi is 580 blocks of 1468.
    assert finished.fields["segmented"] == (0 if windowsize == 1 else -(-580 // windowsize))
    assert server.service.describe()["unsegmented"] == 0


def test_a_route_narrower_than_the_block_gets_block_by_block_sends(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]]
) -> None:
    # blksize follows the interface's MTU (1500), but the route to the clients allows 1400:
    # the kernel refuses segments larger than the route (EINVAL) and fragments single sends.
    done = lab.exec(lab.server_ns, "ip", "route", "replace", str(lab.subnet), "dev", lab.bridge, "mtu", "1400")
    assert done.returncode == 0, done.stderr
    client = lab.add_client(address=f"{lab.subnet.network_address + 24}/24")
    (result,) = windowsize_client(client, server.ip, "ipxe.efi", "--blksize", "1468", "--windowsize", "8")
    assert result["ok"], result
    assert result["sha256"] == sha(boot[1]["ipxe.efi"])
    assert server.wait(lambda: bool(server.named("tftp.done", ok=True)))
    finished = server.named("tftp.done", ok=True)[0]
    assert finished.fields["segmented"] == 0 and finished.fields["retransmits"] == 0
    assert server.service.describe()["unsegmented"] == 1


@pytest.mark.parametrize("windowsize", [4, None])
def test_atftp_packaged_windowsize_client(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path, windowsize: int | None
) -> None:
    need_tools("atftp")
    client = lab.add_client(address=f"{lab.subnet.network_address + 31}/24")
    options = ["--option", "blksize 1468", "--option", "tsize 0"]
    if windowsize:
        options += ["--option", f"windowsize {windowsize}"]
    out = tmp_path / "atftp.efi"
    done = client.run("atftp", *options, "-g", "-r", "ipxe.efi", "-l", str(out), server.ip)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sha(out.read_bytes()) == sha(boot[1]["ipxe.efi"])
    assert server.wait(lambda: bool(server.named("tftp.done", ok=True)))
    finished = server.named("tftp.done", ok=True)[0]
    assert (finished.fields["blksize"], finished.fields["windowsize"]) == (1468, windowsize or 1)


def test_blksize_follows_interface_mtu(lab: Lab, tmp_path: Path, boot: tuple[Path, dict[str, bytes]]) -> None:
    with NetnsLoop(lab.server_ns) as nl:
        srv = start_tftp(lab, nl, tmp_path / "state", boot[0], mtu=1000)
        try:
            client = lab.add_client(address=f"{lab.subnet.network_address + 24}/24")
            (result,) = windowsize_client(client, srv.ip, "undionly.kpxe", "--blksize", "65464")
            assert result["ok"] and result["oack"] == {"blksize": "968"}
            assert result["sha256"] == sha(boot[1]["undionly.kpxe"])
        finally:
            nl.run(srv.service.stop())


def test_ovmf_size_probe_then_fetch_is_not_a_failure(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]]
) -> None:
    client = lab.add_client(mac="52:54:00:aa:00:02", address=f"{lab.subnet.network_address + 25}/24")
    machine = server.loop.call(lambda: server.session.registry.ensure(client.mac))
    ip = str(lab.subnet.network_address + 25)
    server.loop.call(lambda: server.session.registry.set_ip(client.mac, ip))
    (result,) = windowsize_client(
        client,
        server.ip,
        "ipxe.efi",
        "--probe",
        "--then-fetch",
        "--tsize",
        "--blksize",
        "1468",
        "--windowsize",
        "4",
    )
    assert result["ok"] and result["sha256"] == sha(boot[1]["ipxe.efi"])
    assert server.wait(lambda: len(server.named("tftp.done")) == 2)
    # The probe's error 8 and the new request arrive on different sockets: either may be
    # handled first, so the events are told apart by the probe flag, not by order.
    (probe,) = server.named("tftp.done", probe=True)
    (fetched,) = server.named("tftp.done", probe=None)
    assert probe.fields["ok"] is True and probe.fields["bytes"] == 0
    assert probe.fields["reason"] == "size probe ended by the client"
    assert fetched.fields["ok"] is True and fetched.fields["bytes"] == len(boot[1]["ipxe.efi"])
    assert len(server.named("tftp.start")) == 2
    assert machine.last_error is None
    assert server.stats()["probes"] == 1 and server.stats()["served"] == 1


TRAVERSAL = [
    "../outside/secret.txt",
    "/../outside/secret.txt",
    "../../../../etc/passwd",
    "/etc/passwd",
    "//etc/passwd",
    "arm64-efi/../../outside/secret.txt",
    "arm64-efi/../ipxe.efi",
    "..\\outside\\secret.txt",
    "ipxe.efi\\",
    "%2e%2e/outside/secret.txt",
    "arm64-efi",
    ".",
    "",
    "ipxe.efi/",
    "IPXE.EFI",
    "pxelinux.0",
]


def test_traversal_corpus_refused_with_tftp_error(lab: Lab, server: TftpServer, tmp_path: Path) -> None:
    client = lab.add_client(address=f"{lab.subnet.network_address + 26}/24")
    # Created after start: the catalog is fixed at start, so it is not served either.
    (tmp_path / "boot" / "late.bin").write_bytes(b"x" * 10)
    raw = {
        "nul": b"\x00\x01ipxe.efi\x00../../etc/passwd\x00octet\x00",  # NUL ends the name early
        "nul-in-name": b"\x00\x01ipx\x00e.efi\x00octet\x00x\x00",
        "non-ascii": b"\x00\x01\xff\xfe.efi\x00octet\x00",
        "bad-mode": b"\x00\x01ipxe.efi\x00mail\x00",
        "write": b"\x00\x02evil.efi\x00octet\x00",
        "write-existing": b"\x00\x02ipxe.efi\x00octet\x00",
    }
    results: dict[str, Result] = {}
    with NetnsLoop(client.netns) as cl:
        for name in [*TRAVERSAL, "late.bin"]:
            results[name] = cl.call(lambda n=name: fetch(server.ip, n, timeout=0.3, give_up=5)[0])
        for key, request in raw.items():
            results[key] = cl.call(
                lambda r=request: fetch(server.ip, "-", raw_request=r, timeout=0.3, give_up=5)[0]
            )
        for key, result in results.items():
            assert not result.ok and result.bytes == 0, (key, result)
            assert result.error_code is not None, (key, result)  # a TFTP error, not silence
        assert results["write"].error_code == 2 and results["write-existing"].error_code == 2
        assert results["../outside/secret.txt"].error_code == 2
        assert results["pxelinux.0"].error_code == 1
        # Refusals are events the operator sees, with a reason.
        assert server.wait(lambda: len(server.named("tftp.done")) == len(results) - 2, timeout=3), (
            [(e.fields["file"], e.fields["reason"]) for e in server.named("tftp.done")],
            json.dumps(server.stats()),
        )
        refused = server.named("tftp.done", ok=False)
        # The NUL-split and non-ASCII requests do not even parse: counted as malformed, no event.
        assert len(refused) == len(results) - 2
        assert all(str(e.fields["reason"]).startswith("refused: ") for e in refused)
        # The service still serves after all that.
        ok, content = cl.call(lambda: fetch(server.ip, "undionly.kpxe"))
    assert ok.ok and len(content) == 74_213
    assert server.stats()["malformed"] == 2 and server.stats()["served"] == 1


def test_garbage_datagrams_are_dropped_and_counted(lab: Lab, server: TftpServer) -> None:
    client = lab.add_client(address=f"{lab.subnet.network_address + 27}/24")
    rng = random.Random(4)
    garbage = [b"\x00", b"\x00\x01", b"\x00\x09abc\x00", b"\x00\x01noterm", b"\x00\x04\x00"]
    garbage += [b"\x00\x01" + rng.randbytes(rng.randrange(1, 80)) for _ in range(40)]
    garbage += [rng.randbytes(rng.randrange(4, 600)) for _ in range(40)]

    def spray() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in garbage:
                sock.sendto(datagram, (server.ip, 69))

    with NetnsLoop(client.netns) as cl:
        cl.call(spray)
        ok, _ = cl.call(lambda: fetch(server.ip, "snponly.efi", blksize=1468, windowsize=4))
    assert ok.ok
    stats = server.stats()
    assert int(stats["malformed"]) + int(stats["ignored"]) + int(stats["refused"]) == len(garbage)
    assert int(stats["malformed"]) > 10
    assert stats["served"] == 1 and stats["active"] == 0


def udp_loss(lab: Lab, client: Client, percent: int) -> None:
    """Drop `percent` % of the UDP between the server and `client`, both ways. (tc netem is what
    one would use, but this machine's kernel has no sch_netem.) nftables' numgen drops on the
    input hook of each side, so no sender sees an error: the packets just vanish, like on a
    bad cable. The rules live and die with the namespaces."""
    need_tools("nft")
    drop = f"numgen random mod 100 < {percent} drop"
    for netns, match in (
        (client.netns, "meta l4proto udp"),
        (lab.server_ns, f"meta l4proto udp ip saddr {client_ip(client)}"),
    ):
        rules = (
            f"table inet pxtloss {{\n chain in {{ type filter hook input priority 0; {match} {drop}; }}\n}}\n"
        )
        done = lab.exec(netns, "nft", "-f", "-", input=rules)
        assert done.returncode == 0, done.stderr


def client_ip(client: Client) -> str:
    out = subprocess.run(
        ["ip", "-n", client.netns, "-4", "-o", "addr", "show", "dev", client.iface],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[3].split("/")[0]


def test_twenty_clients_with_5_percent_loss_get_ipxe_intact(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]]
) -> None:
    client = lab.add_client(address=f"{lab.subnet.network_address + 28}/24")
    udp_loss(lab, client, 5)  # requests, DATA and ACKs alike
    results = windowsize_client(
        client,
        server.ip,
        "ipxe.efi",
        "--parallel",
        "20",
        "--tsize",
        "--blksize",
        "1468",
        "--windowsize",
        "4",
        "--timeout",
        "0.3",
        timeout=170,
    )
    assert len(results) == 20
    assert all(r["ok"] and r["sha256"] == sha(boot[1]["ipxe.efi"]) for r in results), results
    assert server.wait(lambda: len(server.named("tftp.done", file="ipxe.efi")) == 20, timeout=30)
    done = server.named("tftp.done", file="ipxe.efi")
    assert all(e.fields["ok"] for e in done)
    assert sum(int(e.fields["retransmits"]) for e in done) > 20  # the loss was real and recovered
    # A classic 5 s retransmit timer would need minutes for ~30 losses per transfer.
    assert max(float(e.fields["seconds"]) for e in done) < 60


def test_twenty_curl_clients_with_5_percent_loss(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """curl sends no windowsize and re-sends its ACK only after its own timeout: the server's
    quick resend of lost DATA is what keeps it moving."""
    need_tools("curl")
    client = lab.add_client(address=f"{lab.subnet.network_address + 33}/24")
    udp_loss(lab, client, 5)
    out = tmp_path / "copies"
    out.mkdir()
    url = f"tftp://{server.ip}/ipxe.efi"
    script = f'for i in $(seq 20); do curl -s --tftp-blksize 1468 -o "{out}/$i" {url} & done; wait'
    done = client.run("sh", "-c", script, timeout=120)
    assert done.returncode == 0, done.stderr
    copies = sorted(out.iterdir())
    assert len(copies) == 20 and all(sha(p.read_bytes()) == sha(boot[1]["ipxe.efi"]) for p in copies)
    assert server.wait(lambda: len(server.named("tftp.done", ok=True)) == 20, timeout=30)


def test_progress_events_are_rate_limited_and_monotonic(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]]
) -> None:
    client = lab.add_client(address=f"{lab.subnet.network_address + 29}/24")
    # A slow client (4 ms per ACK) makes the transfer last ~2.5 s.
    (result,) = windowsize_client(
        client, server.ip, "ipxe.efi", "--tsize", "--blksize", "1468", "--ack-delay", "0.004"
    )
    assert result["ok"]
    assert server.wait(lambda: bool(server.named("tftp.done", ok=True)))
    progress = server.named("tftp.progress", file="ipxe.efi")
    assert len(progress) >= 3, [e.fields for e in progress]
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(progress)]
    assert min(gaps) >= 0.2, gaps
    sizes = [int(e.fields["bytes"]) for e in progress]
    assert sizes == sorted(sizes) and sizes[-1] < 850_528
    assert all(e.fields["total"] == 850_528 and float(e.fields["rate"]) > 0 for e in progress)


def test_client_that_vanishes_is_given_up_and_reported(
    lab: Lab, tmp_path: Path, boot: tuple[Path, dict[str, bytes]]
) -> None:
    client = lab.add_client(address=f"{lab.subnet.network_address + 30}/24")
    nl = NetnsLoop(lab.server_ns).__enter__()
    server = start_tftp(lab, nl, tmp_path / "state", boot[0], give_up=3)
    # Request with windowsize, take the OACK and one window, then never answer: the service must let go.

    def stall() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(rrq(b"ipxe.efi", options={"blksize": 1468, "windowsize": 4}), (server.ip, 69))
            _, peer = sock.recvfrom(2000)
            sock.sendto(struct.pack("!HH", 4, 0), peer)
            first = len(sock.recvfrom(2000)[0])
            time.sleep(5)  # keep the port open: silence, not ICMP
            return first

    try:
        with NetnsLoop(client.netns) as cl:
            assert cl.call(stall, timeout=30) == 1472
        assert server.wait(lambda: bool(server.named("tftp.done")), timeout=5)
        (finished,) = server.named("tftp.done")
        assert finished.fields["ok"] is False and "no answer" in str(finished.fields["reason"])
        assert int(finished.fields["retransmits"]) >= 3  # 50, 100, 200, 400, 800 ms, ... backoff
        assert server.stats()["active"] == 0
    finally:
        nl.run(server.service.stop())
        nl.__exit__()


def test_port_in_use_is_a_clear_error(lab: Lab, tmp_path: Path, boot: tuple[Path, dict[str, bytes]]) -> None:
    with NetnsLoop(lab.server_ns) as nl:
        blocker = nl.call(lambda: _bound_udp(lab.server_ip, 69))
        try:
            # The holder is named: this test's own process (tests/test_tftp_port_holder.py: dnsmasq, pxetui).
            with pytest.raises(PxetuiError, match=rf"\(pid {os.getpid()}\) holds UDP 69 on {lab.server_ip}"):
                start_tftp(lab, nl, tmp_path / "state", boot[0])
        finally:
            blocker.close()


def _bound_udp(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    return sock


def test_service_is_built_by_the_session() -> None:
    import ipaddress

    from pxetui.boot.bootfiles import BootFiles
    from pxetui.host.netif import InterfaceInfo
    from pxetui.services import build_services
    from pxetui.services.context import ServiceContext
    from pxetui.session import Session, SessionConfig

    session = Session(SessionConfig(interface="lo"))
    context = ServiceContext(
        interface=InterfaceInfo(name="lo", up=True, mtu=65536, speed_mbps=0, mac=""),
        address=ipaddress.IPv4Interface("127.0.0.1/8"),
        boot_files=BootFiles(root=Path("/nonexistent"), catalog={}),
        state=session.state,
        profiles={},
        booter=session,
        emit=session.emit,
    )
    services = build_services(context)
    assert isinstance(services[0], TftpService) and services[0].name == "tftp"


def held_up_atftp(client: Client, server_ip: str, out: Path, run_s: float, stop_s: float) -> tuple[int, int]:
    """atftp (blksize 1468, windowsize 4) that is stopped for `stop_s` after every `run_s`
    of running, as a client on a loaded machine is: its ACKs come late, none is lost.
    Returns (exit code, pauses)."""
    options = ["--option", "blksize 1468", "--option", "windowsize 4", "--option", "tsize 0"]
    fetch_cmd = ["atftp", *options, "-g", "-r", "ipxe.efi", "-l", str(out), server_ip]
    cmd = ["ip", "netns", "exec", client.netns, *fetch_cmd]  # netns exec execs: the pid is atftp's
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pauses = 0
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(run_s)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGSTOP)
            pauses += 1
            time.sleep(stop_s)
            proc.send_signal(signal.SIGCONT)
    return proc.wait(10), pauses


def test_a_held_up_atftp_gets_no_needless_resends(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """Low RTT, no loss, but the client stops for 30 ms again and again: a fixed 20 ms timer
    resent a window at every stop (and an early second OACK makes atftp abort). The adaptive
    timer learns from the first needless resend that this client is slow, not lossy."""
    need_tools("atftp")
    client = lab.add_client(address=f"{lab.subnet.network_address + 34}/24")
    out = tmp_path / "held-up.efi"
    code, pauses = held_up_atftp(client, server.ip, out, run_s=0.001, stop_s=0.03)
    assert code == 0 and sha(out.read_bytes()) == sha(boot[1]["ipxe.efi"])
    assert server.wait(lambda: bool(server.named("tftp.done", ok=True)))
    (finished,) = server.named("tftp.done", ok=True)
    assert pauses >= 5, pauses  # the client really was held up, many times
    assert int(finished.fields["retransmits"]) <= 3, (finished.fields, pauses)


def test_atftp_with_loss_recovers_quickly(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """The adaptive timer still resends at RTT pace when packets are really lost."""
    need_tools("atftp", "nft")
    client = lab.add_client(address=f"{lab.subnet.network_address + 35}/24")
    udp_loss(lab, client, 3)
    options = ["--option", "blksize 1468", "--option", "windowsize 4", "--option", "tsize 0"]
    got = 0
    for i in range(3):  # atftp itself gives up on some losses (a lost OACK): most must work
        out = tmp_path / f"lossy-{i}.efi"
        fetch_cmd = ["atftp", "--tftp-timeout", "1", *options, "-g", "-r", "ipxe.efi", "-l", str(out)]
        done = client.run(*fetch_cmd, server.ip)
        got += done.returncode == 0 and out.exists() and sha(out.read_bytes()) == sha(boot[1]["ipxe.efi"])
    assert got >= 2
    assert server.wait(lambda: len(server.named("tftp.done", ok=True)) >= got)
    done_ok = server.named("tftp.done", ok=True)
    assert sum(int(e.fields["retransmits"]) for e in done_ok) > 0  # the loss was real and recovered
    assert max(float(e.fields["seconds"]) for e in done_ok) < 20  # RTT-paced, not atftp's seconds
