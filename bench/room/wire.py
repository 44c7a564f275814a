"""DHCP answer times as the wire saw them: a capture on the server's bridge, request to reply.

The PCs' own figure (pc.py: from a PC's first send to its kernel receive time) also holds the
time a PC thread waits for a core: 100 PCs share this machine's two cores with the server
(and with the TUI), where in a real room each has its own. The capture times the server
alone: tcpdump on br0 stamps each request as the bridge hands it up to the server and each
reply as it leaves, so the client's scheduling is not in it. It is timed from the first
request of each exchange (same MAC, xid and message type, until a reply), so a request the
server dropped counts with the wait for the PC's resend, as on the PC's side.

tcpdump runs in the lab's server namespace with a filter for DHCP's ports only (a few hundred
packets per room), and is stopped before the file is read.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

from pxetui.lab.netns import Lab
from pxetui.services.dhcp import codec

TCPDUMP = shutil.which("tcpdump") or "/usr/bin/tcpdump"
_ETHERNET = 14
_EXPECTED_REPLY = {codec.DISCOVER: codec.OFFER, codec.REQUEST: codec.ACK}


class WireCapture:
    """`with WireCapture(lab, path) as capture:` ... then `capture.answer_ms()`."""

    def __init__(self, lab: Lab, path: Path) -> None:
        self.lab, self.path = lab, path
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> WireCapture:
        if not Path(TCPDUMP).exists():
            return self  # no figure, said by answer_ms() returning nothing
        cmd = [TCPDUMP, "-i", self.lab.bridge, "-n", "-s", "600", "-U", "-w", str(self.path),
               "-j", "adapter_unsynced", "--time-stamp-precision=micro", "udp port 67 or udp port 68"]  # fmt: skip
        self.proc = self.lab.popen(
            self.lab.server_ns, *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (self.path.exists() and self.path.stat().st_size >= 24):
            time.sleep(0.05)  # the file header is written once tcpdump listens
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def answer_ms(self) -> list[float]:
        """Sorted milliseconds from each exchange's first request to the server's reply."""
        if self.proc is None or not self.path.exists():
            return []
        return sorted(answer_times(self.path.read_bytes()))


def frames(pcap: bytes) -> list[tuple[float, bytes]]:
    """(seconds, frame) of a classic pcap file in either byte order, microsecond stamps."""
    if len(pcap) < 24:
        return []
    order = "<" if pcap[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    out, at = [], 24
    while at + 16 <= len(pcap):
        sec, usec, caplen, _ = struct.unpack_from(f"{order}IIII", pcap, at)
        at += 16
        out.append((sec + usec / 1e6, pcap[at : at + caplen]))
        at += caplen
    return out


def answer_times(pcap: bytes) -> list[float]:
    pending: dict[tuple[bytes, int, int], float] = {}  # (mac, xid, reply type) -> first request
    answers: list[float] = []
    for ts, frame in frames(pcap):
        if len(frame) < _ETHERNET + 28 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[_ETHERNET] & 0x0F) * 4
        udp = _ETHERNET + ihl
        sport = struct.unpack_from("!H", frame, udp)[0]
        try:
            packet = codec.decode(frame[udp + 8 :])
        except codec.DecodeError:
            continue
        kind = packet.message_type
        if sport == 68 and kind in _EXPECTED_REPLY:
            pending.setdefault((packet.mac_bytes, packet.xid, _EXPECTED_REPLY[kind]), ts)
        elif sport == 67 and kind is not None:
            first = pending.pop((packet.mac_bytes, packet.xid, kind), None)
            if first is not None:
                answers.append((ts - first) * 1000)
    return answers
