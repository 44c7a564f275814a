"""One simulated UEFI PC of the room: the steps a real one takes, in order, with real clients.

  1. DHCP DISCOVER / REQUEST as the firmware (PXEClient arch 7, option 97 UUID, option 94);
  2. TFTP of the loader the answer names: the tsize probe ended by ERROR 8, as OVMF does
     (tests/tftp_client.py), then the real read with atftp (blksize 1468, windowsize 4);
  3. DHCP again as iPXE (user class "iPXE");
  4. the HTTP boot script and whatever it chains to (curl), with iPXE's settings filled in;
  5. the kernel and initrd the script names, one after the other on one connection (curl).

Each PC is a thread that entered its own lab namespace (setns affects only the calling thread),
so its raw DHCP socket and its TFTP probe socket live there; curl and atftp run there through
`ip netns exec`. DHCP answer times come from the kernel's receive timestamp (SO_TIMESTAMPNS)
minus the time just before the first send, so the 100 threads of this bench fighting for the
GIL do not count as the server's slowness. A lost answer counts from the first DISCOVER, as the
PC sees it (the retransmission waits are inside).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))
import tftp_client  # noqa: E402
from dhcp_client import dhcp_packet, mac_bytes, pxe_vendor_class  # noqa: E402

CLONE_NEWNET = 0x40000000
# In a real room every PC has its own CPU; here 100 PCs share the server's cores. The PCs'
# threads and the clients they start (atftp, curl: they inherit it) run at this niceness, so
# they take the CPU the server leaves, as other machines would, instead of stalling it for
# 100-200 ms while 100 `ip netns exec atftp` start at once. Both stacks get the same.
PC_NICENESS = 10
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
ARCH_X64_UEFI = 7
COOKIE = b"\x63\x82\x53\x63"
OFFER, ACK, NAK = 2, 5, 6
# EDK2's PXE waits 4, 8, 16, 32 s for an answer; iPXE starts at 1 s and doubles.
FIRMWARE_WAITS = (4.0, 8.0, 16.0, 32.0)
IPXE_WAITS = (1.0, 2.0, 4.0, 8.0, 16.0)
# A cloned disk image (and a cloned NVRAM) gives every PC the same SMBIOS UUID; some also share
# the seed of their transaction ids, so several DISCOVERs carry the same xid.
ROOM_UUID = bytes.fromhex("4c4c4544004a3310805ac4c04f4b3232")
SHARED_XID = 0x0C10E5ED
IPXE_VARS = {"buildarch": "x86_64", "platform": "efi", "pxetui_lm": "0"}


class PcFailed(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Reply:
    kind: int
    yiaddr: str
    siaddr: str
    server_id: str
    file: str
    at: float  # kernel receive time, CLOCK_REALTIME


@dataclass
class PcResult:
    name: str
    mac: str
    ok: bool = False
    failed: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # step -> seconds after the room's start
    dhcp_ms: list[float] = field(default_factory=list)  # one per answer awaited (OFFER, ACK)
    dhcp_resent: int = 0
    # (first send, kernel receive time, message type answered, iPXE?, resends) per answer, wall clock
    dhcp_samples: list[tuple[float, float, int, bool, int]] = field(default_factory=list)
    http_bytes: int = 0
    tftp_bytes: int = 0


def enter_netns(netns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{netns}", "rb") as fh:
        if libc.setns(fh.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns} failed")


def parse_reply(frame: bytes, chaddr: bytes, xid: int, at: float) -> Reply | None:
    """A DHCP reply for this PC (its xid and its MAC), or None; no scapy on this hot path:
    with broadcast answers every PC sees every other PC's frames."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != socket.IPPROTO_UDP:
        return None
    udp = 14 + (frame[14] & 0x0F) * 4
    bootp = udp + 8
    if frame[udp + 2 : udp + 4] != b"\x00\x44" or len(frame) < bootp + 240 or frame[bootp] != 2:
        return None
    if frame[bootp + 4 : bootp + 8] != xid.to_bytes(4, "big") or frame[bootp + 28 : bootp + 34] != chaddr:
        return None  # a clone with the same xid, or someone else's answer
    if frame[bootp + 236 : bootp + 240] != COOKIE:
        return None
    options = parse_options(frame[bootp + 240 :])
    if 53 not in options:
        return None
    boot_file = options.get(67) or frame[bootp + 108 : bootp + 236].split(b"\0", 1)[0]
    server_id = options.get(54, b"")
    return Reply(
        kind=options[53][0],
        yiaddr=socket.inet_ntoa(frame[bootp + 16 : bootp + 20]),
        siaddr=socket.inet_ntoa(frame[bootp + 20 : bootp + 24]),
        server_id=socket.inet_ntoa(server_id) if len(server_id) == 4 else "",
        file=boot_file.rstrip(b"\0").decode("ascii", "replace"),
        at=at,
    )


def parse_options(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        length = data[i + 1]
        out[code] = data[i + 2 : i + 2 + length]
        i += 2 + length
    return out


def substitute(line: str, mac: str, uuid_text: str) -> str:
    """iPXE's ${...} settings as this PC would fill them (unknown ones are empty, as in iPXE)."""
    values = {**IPXE_VARS, "net0/mac": mac.replace(":", "-"), "uuid": uuid_text}
    return re.sub(r"\$\{([^}:]+)(?::[^}]*)?\}", lambda m: values.get(m.group(1), ""), line)


def script_urls(script: str, mac: str, uuid_text: str) -> tuple[str | None, str | None, str | None]:
    """(chain, kernel, initrd) URLs of an iPXE script: the first URL on each such line."""
    found: dict[str, str] = {}
    for raw in script.splitlines():
        words = raw.split()
        if not words or words[0] not in ("chain", "kernel", "initrd") or words[0] in found:
            continue
        url = next((w for w in words[1:] if w.startswith("http://")), None)
        if url is not None:
            found[words[0]] = substitute(url, mac, uuid_text)
    return found.get("chain"), found.get("kernel"), found.get("initrd")


class Pc:
    """One PC; `run()` is the thread body. Every wait is bounded by `deadline` (monotonic)."""

    def __init__(
        self, name: str, netns: str, mac: str, prefix: int, *, clone_xid: bool, start_at: float, deadline: float
    ) -> None:
        self.netns, self.mac, self.prefix = netns, mac, prefix
        self.chaddr = mac_bytes(mac)
        self.xid = SHARED_XID if clone_xid else random.getrandbits(32)
        self.start_at, self.deadline = start_at, deadline
        self.result = PcResult(name=name, mac=mac)
        self.uuid_text = str(uuid.UUID(bytes_le=ROOM_UUID))
        self.sock: socket.socket | None = None
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def left(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise PcFailed("room timeout")
        return remaining

    def mark(self, step: str) -> None:
        self.result.phases[step] = time.monotonic() - self.start_at

    def run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, PC_NICENESS)  # this thread only (Linux): not the server
            enter_netns(self.netns)
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind(("eth0", 0))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            time.sleep(max(0.0, self.start_at - time.monotonic()))
            self.boot()
            self.result.ok = True
        except (PcFailed, OSError, subprocess.SubprocessError) as exc:
            self.result.failed = f"{exc}"[:200]
        finally:
            if self.sock is not None:
                self.sock.close()

    def boot(self) -> None:
        first = self.dhcp(ipxe=False)
        self.mark("dhcp")
        address = f"{first.yiaddr}/{self.prefix}"
        self.sh("ip", "addr", "replace", address, "dev", "eth0")
        server = first.siaddr if first.siaddr != "0.0.0.0" else first.server_id
        self.tftp(server, first.file)
        self.mark("tftp")
        second = self.dhcp(ipxe=True)
        self.mark("ipxe-dhcp")
        kernel, initrd = self.follow_scripts(second.file)
        self.mark("script")
        self.fetch_files(kernel, initrd)
        self.mark("files")

    # -- DHCP ---------------------------------------------------------------------------------

    def frame(self, message: str, ipxe: bool, offer: Reply | None = None) -> bytes:
        extra: list[object] = [(94, b"\x01\x03\x10"), (57, (1472).to_bytes(2, "big"))]
        packet = dhcp_packet(
            self.mac,
            message,
            xid=self.xid,
            arch=ARCH_X64_UEFI,
            vendor_class=pxe_vendor_class(ARCH_X64_UEFI),
            user_class=b"iPXE" if ipxe else None,
            uuid_option=b"\x00" + ROOM_UUID,
            requested=offer.yiaddr if offer else None,
            server_id=offer.server_id if offer else None,
            extra=extra,
        )
        return bytes(packet)

    def dhcp(self, ipxe: bool) -> Reply:
        for _ in range(4):  # a NAK starts over, as firmware does
            offer = self.exchange(self.frame("discover", ipxe), (OFFER,), ipxe)
            ack = self.exchange(self.frame("request", ipxe, offer), (ACK, NAK), ipxe)
            if ack.kind == ACK:
                return ack
        raise PcFailed("DHCP: NAK after NAK")

    def exchange(self, frame: bytes, kinds: tuple[int, ...], ipxe: bool) -> Reply:
        """Send, wait, resend on the client's schedule; the answer time counts from the first send."""
        assert self.sock is not None
        sent_at = time.time()
        for n, wait in enumerate(IPXE_WAITS if ipxe else FIRMWARE_WAITS):
            if n:
                self.result.dhcp_resent += 1
            self.sock.send(frame)
            reply = self.receive(kinds, min(wait, self.left()))
            if reply is not None:
                self.result.dhcp_ms.append((reply.at - sent_at) * 1000)
                self.result.dhcp_samples.append((sent_at, reply.at, reply.kind, ipxe, n))
                return reply
        raise PcFailed(f"DHCP: no answer to {'iPXE' if ipxe else 'firmware'} message type {kinds}")

    def receive(self, kinds: tuple[int, ...], timeout: float) -> Reply | None:
        assert self.sock is not None
        until = time.monotonic() + timeout
        while (remaining := until - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return None
            data, ancdata, _, address = self.sock.recvmsg(65535, 64)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            at = time.time()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    at = sec + nsec / 1e9
            reply = parse_reply(data, self.chaddr, self.xid, at)
            if reply is not None and reply.kind in kinds:
                return reply
        return None

    # -- TFTP, HTTP ---------------------------------------------------------------------------

    def tftp(self, server: str, name: str) -> None:
        if not name:
            raise PcFailed("DHCP: no boot file in the firmware's answer")
        probe, _ = tftp_client.fetch(
            server, name, probe=True, blksize=1468, windowsize=4, timeout=1.0, give_up=min(30.0, self.left())
        )
        if not probe.ok or probe.tsize is None:
            raise PcFailed(f"TFTP probe of {name}: {probe.error or 'no tsize'}")
        with tempfile.TemporaryDirectory(prefix="pxetui-room-") as tmp:
            out = Path(tmp) / "loader"
            options = ["--option", "blksize 1468", "--option", "windowsize 4", "--option", "tsize 0"]
            self.sh("atftp", "--tftp-timeout", "4", *options, "-g", "-r", name, "-l", str(out), server)
            size = out.stat().st_size if out.exists() else 0
        if size != probe.tsize:
            raise PcFailed(f"TFTP {name}: {size} bytes, tsize said {probe.tsize}")
        self.result.tftp_bytes += size

    def follow_scripts(self, url: str) -> tuple[str, str]:
        for _ in range(5):
            if not url.startswith("http://"):
                raise PcFailed(f"iPXE DHCP answer is not an HTTP script: {url!r}")
            script = self.sh("curl", "-sS", "--fail", "--max-time", f"{self.left():.0f}", url)
            chain, kernel, initrd = script_urls(script, self.mac, self.uuid_text)
            if kernel and initrd:
                return kernel, initrd
            if not chain:
                raise PcFailed(f"script {url} names no kernel, initrd or chain: {script[:120]!r}")
            url = chain
        raise PcFailed("scripts chain more than 5 times")

    def fetch_files(self, kernel: str, initrd: str) -> None:
        out = ["-o", "/dev/null"]
        fmt = "%{http_code} %{size_download}\\n"
        text = self.sh(
            "curl", "-sS", "--fail", "--max-time", f"{self.left():.0f}", "-w", fmt, *out, kernel, *out, initrd
        )
        got = [line.split() for line in text.splitlines() if line.strip()]
        if len(got) != 2 or any(code != "200" for code, _ in got):
            raise PcFailed(f"kernel/initrd: {text.strip()!r}")
        self.result.http_bytes += sum(int(size) for _, size in got)

    def sh(self, *cmd: str) -> str:
        """A real client in this PC's namespace; a failure is this PC's failure."""
        try:
            done = subprocess.run(
                ["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True, timeout=self.left()
            )
        except subprocess.TimeoutExpired as exc:
            raise PcFailed(f"{cmd[0]}: room timeout") from exc
        if done.returncode != 0:
            said = " | ".join(done.stderr.strip().splitlines()[-2:])
            raise PcFailed(f"{cmd[0]} exited {done.returncode}: {said[-160:]}")
        return done.stdout


def stop_all(pcs: list[Pc]) -> None:
    """Threads are daemons and every wait is bounded; this only waits for them to notice."""
    for pc in pcs:
        with contextlib.suppress(RuntimeError):
            pc.thread.join(max(0.0, pc.deadline - time.monotonic()) + 5)
