"""TFTP under a flood of read requests that never ACK, and netascii without the whole file in memory.

Issue 13: 256 RRQs that never ACK filled MAX_TRANSFERS for the 30 s give-up, so every PC was
told "server busy"; netascii read the whole file into memory per request. The lab tests run
the in-process service on a lab bridge (198.18.0.0/15 namespaces made and removed by the
`lab` fixture) with real clients (tftp-hpa, atftp) on another host of the segment.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tools
from lab import Lab, NetnsLoop
from tftp_client import rrq
from tftp_lab import TftpServer, make_boot_dir, start_tftp

from pxetui.services.tftp.requests import Refused, to_netascii
from pxetui.services.tftp.server import MAX_PER_CLIENT, MAX_TRANSFERS, _open_source
from pxetui.services.tftp.transfer import FIRST_ACK_GIVE_UP, NetasciiSource

FLOOD = MAX_TRANSFERS + 44  # more than the service can run at once


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def boot(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "boot"
    files = make_boot_dir(root, tmp_path / "outside")
    rng = random.Random(5)
    text = b"".join(rng.choice([b"line\n", b"cr\r", b"crlf\r\n", b"x" * 70]) for _ in range(3000))
    (root / "notes.txt").write_bytes(text)
    files["notes.txt"] = text
    with open(root / "big.txt", "wb") as fh:  # sparse: costs no disk
        fh.truncate(NetasciiSource.MAX_BYTES + 1)
    return root, files


@pytest.fixture
def server(lab: Lab, tmp_path: Path, boot: tuple[Path, dict[str, bytes]]) -> Iterator[TftpServer]:
    with NetnsLoop(lab.server_ns) as nl:
        srv = start_tftp(lab, nl, tmp_path / "state", boot[0])  # the real 30 s give-up
        try:
            yield srv
        finally:
            nl.run(srv.service.stop())


def open_flood(server_ip: str, count: int) -> list[socket.socket]:
    """`count` RRQs, each from its own port (a transfer each); the ports stay open and silent,
    so the server hears neither an ACK nor an ICMP error: clients that never ACK."""
    socks = []
    for n in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(rrq(b"ipxe.efi", options={"blksize": 1468, "tsize": 0}), (server_ip, 69))
        socks.append(sock)
        if n % 16 == 15:
            time.sleep(0.005)  # ~3000 a second: no RRQ lost to a full queue, so each is counted
    return socks


@pytest.mark.lab
def test_a_flood_of_rrqs_that_never_ack_does_not_lock_out_real_clients(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    tools = need_tools("tftp", "atftp")
    flooder = lab.add_client(address=f"{lab.subnet.network_address + 40}/24")
    pc = lab.add_client(address=f"{lab.subnet.network_address + 41}/24")
    with NetnsLoop(flooder.netns) as fl:
        socks = fl.call(lambda: open_flood(server.ip, FLOOD))
        try:
            assert server.wait(lambda: server.stats()["busy"] == FLOOD - MAX_PER_CLIENT, timeout=10), (
                json.dumps(server.stats())
            )
            assert server.stats()["active"] == MAX_PER_CLIENT  # one address, a handful of slots
            # While the flood's transfers still wait for their first ACK, real clients get their files.
            started = time.monotonic()
            hpa_out, atftp_out = tmp_path / "hpa.efi", tmp_path / "atftp.efi"
            done = pc.run(tools["tftp"], "-m", "binary", server.ip, "-c", "get", "ipxe.efi", str(hpa_out))
            assert done.returncode == 0 and hpa_out.exists(), done.stdout + done.stderr
            done = pc.run(tools["atftp"], "--get", "-r", "undionly.kpxe", "-l", str(atftp_out), server.ip)
            assert done.returncode == 0, done.stdout + done.stderr
            assert time.monotonic() - started < FIRST_ACK_GIVE_UP
            assert sha(hpa_out.read_bytes()) == sha(boot[1]["ipxe.efi"])
            assert sha(atftp_out.read_bytes()) == sha(boot[1]["undionly.kpxe"])
            # The flood's own transfers give their slots back long before the 30 s give-up.
            assert server.wait(lambda: server.stats()["active"] == 0, timeout=FIRST_ACK_GIVE_UP + 2)
        finally:
            fl.call(lambda: [sock.close() for sock in socks])
    given_up = [e for e in server.named("tftp.done", ok=False) if "first ACK" in str(e.fields["reason"])]
    assert len(given_up) == MAX_PER_CLIENT
    assert server.stats()["served"] == 2
    # Busy refusals are counted, not one event each.
    assert len(server.named("tftp.done")) == MAX_PER_CLIENT + 2


@pytest.mark.lab
def test_netascii_is_converted_as_it_is_sent_and_too_big_a_file_is_a_clear_error(
    lab: Lab, server: TftpServer, boot: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    need_tools("tftp")
    pc = lab.add_client(address=f"{lab.subnet.network_address + 42}/24")
    out = tmp_path / "notes.txt"
    done = pc.run("tftp", "-m", "netascii", server.ip, "-c", "get", "notes.txt", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_bytes() == boot[1]["notes.txt"]  # tftp-hpa turned CR LF / CR NUL back
    assert server.wait(lambda: bool(server.named("tftp.done", file="notes.txt", ok=True)))
    (finished,) = server.named("tftp.done", file="notes.txt", ok=True)
    assert finished.fields["total"] == len(to_netascii(boot[1]["notes.txt"]))

    done = pc.run("tftp", "-m", "netascii", server.ip, "-c", "get", "big.txt", str(tmp_path / "big"))
    assert "octet" in done.stdout + done.stderr, done.stdout + done.stderr
    (refused,) = server.named("tftp.done", file="big.txt")
    assert refused.fields["ok"] is False and "netascii is for text files" in str(refused.fields["reason"])


def test_netascii_blocks_match_the_whole_conversion_at_every_offset(tmp_path: Path) -> None:
    rng = random.Random(7)
    content = bytes(rng.choice(b"ab\r\n") for _ in range(3 * NetasciiSource.CHUNK + 123))
    path = tmp_path / "text"
    path.write_bytes(content)
    whole = to_netascii(content)
    source = NetasciiSource(str(path))
    try:
        assert source.size == len(whole)
        for blksize in (8, 512, 1468, 8192):
            offsets = list(range(0, source.size + blksize, blksize))
            rng.shuffle(offsets)  # resends go back; windows go forward
            for offset in offsets:
                assert source.read(offset, blksize) == whole[offset : offset + blksize], (blksize, offset)
    finally:
        source.close()


def test_netascii_never_holds_the_file_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_bytes(os.urandom(NetasciiSource.MAX_BYTES - 1))
    tracemalloc.start()
    try:
        source = _open_source(str(path), netascii=True)
        for offset in range(0, 200 * 1468, 1468):
            source.read(offset, 1468)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    source.close()
    assert peak < 256 * 1024, f"{peak} bytes for a {NetasciiSource.MAX_BYTES >> 20} MiB file"
    big = tmp_path / "big"
    with open(big, "wb") as fh:
        fh.truncate(NetasciiSource.MAX_BYTES + 1)
    with pytest.raises(Refused, match="octet"):
        _open_source(str(big), netascii=True)
