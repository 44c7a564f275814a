"""A small RFC 7440 (windowsize) TFTP client for tests and benches; no packaged client sends
windowsize. Written with plain struct, independent of pxetui's codec, so it checks the server
rather than sharing its bugs.

    python tftp_client.py SERVER FILE [--blksize N] [--windowsize W] [--tsize] [--probe]
                          [--parallel N] [--out PATH]

prints one JSON object per fetch: ok, bytes, sha256, seconds, oack, error.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6


@dataclass
class Result:
    ok: bool = False
    bytes: int = 0
    sha256: str = ""
    seconds: float = 0.0
    oack: dict[str, str] = field(default_factory=dict)
    error: str = ""
    error_code: int | None = None
    tsize: int | None = None
    packets: int = 0
    timeouts: int = 0


def rrq(filename: bytes, mode: bytes = b"octet", options: dict[str, int] | None = None) -> bytes:
    out = struct.pack("!H", RRQ) + filename + b"\0" + mode + b"\0"
    for name, value in (options or {}).items():
        out += name.encode() + b"\0" + str(value).encode() + b"\0"
    return out


def _send(sock: socket.socket, datagram: bytes, dest: tuple[str, int]) -> None:
    # A firewall rule (the tests' simulated loss) refuses with EPERM: the same as a lost packet.
    with contextlib.suppress(PermissionError):
        sock.sendto(datagram, dest)


def parse_oack(payload: bytes) -> dict[str, str]:
    parts = payload.split(b"\0")[:-1]
    return {parts[i].decode().lower(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)}


def fetch(
    server: str,
    filename: str | bytes,
    *,
    port: int = 69,
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    probe: bool = False,
    mode: bytes = b"octet",
    timeout: float = 0.5,
    give_up: float = 30.0,
    raw_request: bytes | None = None,
    ack_delay: float = 0.0,
) -> tuple[Result, bytes]:
    """Fetch one file; returns the result and the content received."""
    name = filename.encode() if isinstance(filename, str) else filename
    options: dict[str, int] = {}
    if tsize or probe:
        options["tsize"] = 0
    if blksize:
        options["blksize"] = blksize
    if windowsize:
        options["windowsize"] = windowsize
    request = raw_request if raw_request is not None else rrq(name, mode, options)
    result = Result()
    chunks: list[bytes] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    started = time.monotonic()
    peer: tuple[str, int] | None = None
    window = 1
    size = 512
    expected = 1  # next block we want
    in_window = 0  # blocks received in order since our last ACK
    last_ack_sent = -1
    try:
        _send(sock, request, (server, port))
        last_sent = request
        last_dest = (server, port)
        while True:
            if time.monotonic() - started > give_up:
                result.error = "gave up"
                break
            try:
                datagram, addr = sock.recvfrom(65536)
            except TimeoutError:
                result.timeouts += 1
                _send(sock, last_sent, last_dest)  # re-request or re-ACK what we have
                continue
            if peer is None:
                peer = addr
            elif addr != peer:
                _send(sock, struct.pack("!HH", ERROR, 5) + b"Unknown transfer ID\0", addr)
                continue
            result.packets += 1
            opcode = struct.unpack_from("!H", datagram)[0]
            if opcode == ERROR:
                result.error_code = struct.unpack_from("!H", datagram, 2)[0]
                result.error = datagram[4:].split(b"\0", 1)[0].decode("ascii", "replace")
                break
            if opcode == OACK:
                if expected != 1 or last_ack_sent > 0:
                    continue  # a repeated OACK after data began
                result.oack = parse_oack(datagram[2:])
                window = int(result.oack.get("windowsize", 1))
                size = int(result.oack.get("blksize", 512))
                if "tsize" in result.oack:
                    result.tsize = int(result.oack["tsize"])
                if probe:
                    _send(sock, struct.pack("!HH", ERROR, 8) + b"User aborted\0", peer)
                    result.ok = True
                    break
                last_sent, last_dest = struct.pack("!HH", ACK, 0), peer
                last_ack_sent = 0
                _send(sock, last_sent, last_dest)
                continue
            if opcode != DATA:
                continue
            block = struct.unpack_from("!H", datagram, 2)[0]
            if block != expected & 0xFFFF:
                # Out of order or a repeat: tell the server where we are (once per gap).
                ack_block = (expected - 1) & 0xFFFF
                if ack_block != last_ack_sent or block == (expected - 1) & 0xFFFF:
                    last_sent, last_dest = struct.pack("!HH", ACK, ack_block), peer
                    last_ack_sent = ack_block
                    _send(sock, last_sent, last_dest)
                in_window = 0
                continue
            payload = datagram[4:]
            chunks.append(payload)
            result.bytes += len(payload)
            expected += 1
            in_window += 1
            last_block = len(payload) < size
            if last_block or in_window >= window:
                if ack_delay:
                    time.sleep(ack_delay)
                last_sent, last_dest = struct.pack("!HH", ACK, block), peer
                last_ack_sent = block
                _send(sock, last_sent, last_dest)
                in_window = 0
            if last_block:
                result.ok = True
                break
    finally:
        sock.close()
    content = b"".join(chunks)
    result.seconds = round(time.monotonic() - started, 4)
    result.sha256 = hashlib.sha256(content).hexdigest()
    if result.ok and result.tsize is not None and not probe and result.tsize != len(content):
        result.ok = False
        result.error = f"tsize {result.tsize} but got {len(content)} bytes"
    return result, content


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("file")
    ap.add_argument("--port", type=int, default=69)
    ap.add_argument("--blksize", type=int)
    ap.add_argument("--windowsize", type=int)
    ap.add_argument("--tsize", action="store_true")
    ap.add_argument("--probe", action="store_true", help="tsize probe then error 8, like OVMF")
    ap.add_argument("--then-fetch", action="store_true", help="after --probe, fetch like OVMF does")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=0.5)
    ap.add_argument("--ack-delay", type=float, default=0.0, help="seconds to wait before each ACK")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    results: list[dict[str, object]] = [{} for _ in range(args.parallel)]

    def one(i: int) -> None:
        kw = dict(
            port=args.port,
            blksize=args.blksize,
            windowsize=args.windowsize,
            timeout=args.timeout,
            ack_delay=args.ack_delay,
        )
        if args.probe:
            probe_result, _ = fetch(args.server, args.file, probe=True, **kw)  # type: ignore[arg-type]
            if not args.then_fetch:
                results[i] = asdict(probe_result)
                return
        res, content = fetch(args.server, args.file, tsize=args.tsize, **kw)  # type: ignore[arg-type]
        if args.out and i == 0:
            with open(args.out, "wb") as fh:
                fh.write(content)
        results[i] = asdict(res)

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    for r in results:
        print(json.dumps(r))
    print(json.dumps({"wall": round(wall, 4), "clients": args.parallel}))
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
