"""One read transfer: a UDP socket of its own (the TID) and an RFC 7440 window of DATA blocks.

The server sends `windowsize` blocks, then waits for the ACK of the last one. An ACK inside
the window means the client saw a gap after that block: the next window starts right after
it. A duplicate of the previous ACK means the window's first block was lost: the window is
sent again at once (once per window position, so a delayed duplicate cannot start the
sorcerer's-apprentice echo). A short, RTT-based timer covers a lost last block or lost ACK,
so a lost packet costs milliseconds instead of a classic TFTP's seconds.

I/O is a plain non-blocking socket (connected to the client) read with `loop.add_reader`,
draining every queued ACK per wake-up, and one timer per transfer whose deadline moves
without rescheduling: per packet, that is most of what separates a Python server from C.
A window of several blocks leaves in one send: with UDP segmentation offload (UDP_SEGMENT,
Linux >= 4.18) the kernel cuts it into one datagram per block, so the client sees exactly
the packets it would otherwise, and the server pays one system call per window. Where the
kernel refuses (a route narrower than the block: EINVAL; IPsec or, on older kernels, no
checksum offload: EIO), that transfer unsets it and sends block by block.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pxetui.services.tftp import packets
from pxetui.services.tftp.requests import Negotiated, to_netascii

MIN_RTO = 0.02  # seconds: the floor of the retransmit timer, well above LAN RTTs (~0.1 ms)
# Before the first RTT sample (the OACK, or the first window without options): a client's first
# answer includes its own start-up (atftp opens its output file, a firmware its buffer), and
# an OACK resent too early makes atftp abort ("unexpected OACK"; 21 of 100 PCs in bench/room
# on a loaded machine with the old 20 ms).
INITIAL_RTO = 0.25
MAX_QUICK_RTO = 1.0  # the RTT-paced timer never waits longer than this (see QUICK_RETRIES)
# A resend that turns out needless (the client re-acknowledged our duplicate) raises the
# transfer's floor to this many times the delay the client really took, up to MAX_FLOOR.
NEEDLESS_FLOOR_FACTOR = 2.0
MAX_FLOOR = 0.5
QUICK_RETRIES = 5  # resends at RTT pace (doubling from the RTO) before assuming a silent client
# Then wait longer than the clients' own timeout (atftp, firmware: ~5 s) before each resend.
# Clients that silently drop duplicate blocks restart their timer on every packet, so a
# server that kept resending every second would stop them from ever re-sending a lost ACK.
SILENT_CLIENT_WAIT = 6.0
MAX_RTO = 16.0
GIVE_UP = 30.0  # seconds without progress: the client has gone
# A transfer whose client never acknowledged anything (not the OACK, not block 1) holds its
# slot only this long: a flood of RRQs that never ACK must not lock TFTP out for GIVE_UP.
# A real client ACKs within milliseconds, and the quick resends cover a lost first packet.
FIRST_ACK_GIVE_UP = 5.0
PROGRESS_INTERVAL = 0.25  # seconds between tftp.progress events of one transfer
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h; Python 3.11 lacks the name
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS in the kernel
GSO_MAX_BYTES = 65000  # one UDP datagram's payload, with room for the headers
# What a segmented send fails with where it cannot work: a segment larger than the route
# allows (EINVAL, EMSGSIZE), IPsec or no checksum offload on older kernels (EIO).
GSO_UNSUPPORTED = frozenset({errno.EIO, errno.EINVAL, errno.EMSGSIZE, errno.ENOPROTOOPT, errno.EOPNOTSUPP})


class Source(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class FileSource:
    """A boot file read block by block (pread), so parallel transfers cost no memory."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.size = os.fstat(self._fd).st_size
        except OSError:
            os.close(self._fd)
            raise

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BytesSource:
    """A small answer rendered for one client (a grub.cfg), served from memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]

    def close(self) -> None:
        self._data = b""


class NetasciiSource:
    """A file in netascii (CR LF line ends, RFC 764), converted block by block as it is read.

    The converted size is known before the first block (tsize, the block count) from one scan
    that only counts CR and LF per CHUNK of the file; it keeps where each chunk starts in the
    converted stream (8 bytes per 4 KiB), so any block, resends included, is converted from
    the chunk it starts in. Memory stays a few KiB per transfer whatever the file's size;
    the scan's time is what MAX_BYTES bounds.
    """

    CHUNK = 4096
    MAX_BYTES = 4 << 20  # bigger files are refused (netascii is for text; boot files are octet)

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.raw_size = os.fstat(self._fd).st_size
            self._starts = self._scan() if self.raw_size <= self.MAX_BYTES else []
        except OSError:
            os.close(self._fd)
            raise
        self.size = self._starts[-1] if self._starts else 0

    @property
    def too_big(self) -> bool:
        return self.raw_size > self.MAX_BYTES

    def _scan(self) -> list[int]:
        """The converted offset at the start of each chunk, and the converted size last."""
        starts = [0]
        for offset in range(0, self.raw_size, self.CHUNK):
            chunk = os.pread(self._fd, self.CHUNK, offset)
            starts.append(starts[-1] + len(chunk) + chunk.count(b"\r") + chunk.count(b"\n"))
        return starts

    def read(self, offset: int, length: int) -> bytes:
        index = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        skip = offset - self._starts[index]
        parts: list[bytes] = []
        have = 0
        raw = index * self.CHUNK
        while have < skip + length and raw < self.raw_size:
            converted = to_netascii(os.pread(self._fd, self.CHUNK, raw))
            parts.append(converted)
            have += len(converted)
            raw += self.CHUNK
        return b"".join(parts)[skip : skip + length]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class RetransmitTimeout:
    """How long a window waits for its ACK before it is resent: RFC 6298's estimator.

    RTO = SRTT + 4 RTTVAR, at least the floor. A fixed short timer fires early whenever the
    server or the client is held up (a loaded machine, 100 atftp starting at once): the ACK
    was only late, the resend is needless, and a duplicate window costs the client work and
    the wire bytes. The variance term widens the timer when the RTT jumps about; Karn's rule
    (no sample from a window sent twice) keeps a resend from shrinking it; after a timeout
    the timer stays doubled until a clean sample says the path is fast again. A resend the
    client proves needless (it acknowledged the duplicate too) raises the floor itself to
    NEEDLESS_FLOOR_FACTOR times the delay it really took: that client is slow, not lossy.
    Pure arithmetic on the seconds it is given; the transfer owns the clock.
    """

    def __init__(self, floor: float = MIN_RTO, initial: float = INITIAL_RTO) -> None:
        self.floor = floor
        self.initial = initial
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.backoff = 1  # doubled per timeout, back to 1 with the next clean sample
        self.needless = 0  # resends found needless

    @property
    def rto(self) -> float:
        """Seconds to wait for the ACK of what is sent now."""
        base = self.initial if self.srtt is None else max(self.floor, self.srtt + 4 * self.rttvar)
        return min(MAX_QUICK_RTO, base * self.backoff)

    def sample(self, rtt: float) -> None:
        """A round trip measured on something sent once (Karn: never on a resend)."""
        rtt = max(0.0, rtt)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.backoff = 1

    def timed_out(self) -> None:
        """No ACK within `rto`: the next wait is twice as long (until a clean sample)."""
        if self.rto < MAX_QUICK_RTO:
            self.backoff *= 2

    def resend_was_needless(self, delay: float) -> None:
        """The client had what was resent: it took `delay` seconds, nothing was lost."""
        self.needless += 1
        self.floor = min(MAX_FLOOR, max(self.floor, NEEDLESS_FLOOR_FACTOR * delay))
        self.sample(delay)


@dataclass(slots=True)
class Outcome:
    ok: bool
    reason: str
    probe: bool = False  # the client only wanted the size (tsize) and ended with error 8


class TftpTransfer:
    def __init__(
        self,
        sock: socket.socket,
        source: Source,
        negotiated: Negotiated,
        on_progress: Callable[[TftpTransfer], None],
        on_done: Callable[[TftpTransfer, Outcome], None],
        give_up: float = GIVE_UP,
        first_give_up: float = FIRST_ACK_GIVE_UP,
    ) -> None:
        self.sock = sock  # bound to the server address, connected to the client: the TID
        self.source = source
        self.size = source.size
        self.blksize = negotiated.blksize
        self.windowsize = negotiated.windowsize
        self._oack = packets.oack(negotiated.oack) if negotiated.oack else None
        self.blocks = self.size // self.blksize + 1  # the last block is short, maybe empty
        self.base = 1  # first block not yet acknowledged
        self.sent_upto = 0  # highest block sent so far
        self.retransmits = 0
        self.segmented_sends = 0  # windows that left in one send (UDP segmentation offload)
        self.segmentation_failed = False  # the kernel refused it: this transfer sends block by block
        self._segment_blocks = 0  # blocks per segmented send; 0: one send per block
        self.started = time.monotonic()
        self.finished: float | None = None
        self.give_up = give_up
        self.first_give_up = min(first_give_up, give_up)
        self.answered = False  # the client acknowledged something: it is really there
        self._on_progress = on_progress
        self._on_done = on_done
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the scheduled timer fires
        self._deadline = 0.0  # when a resend is due; moves on every send, the timer follows lazily
        self._window_sent_at = 0.0
        self._first_sent_at = 0.0  # when what is in flight was first sent (a resend keeps it)
        self._window_resent = False  # Karn: no RTT sample from a window sent twice
        self._dup_resent_base = 0
        # A timer resend whose window was then acknowledged: (its last block, how long the
        # client took from the first send). A duplicate ACK of that block proves it needless.
        self._suspect: tuple[int, float] | None = None
        self._progress_at = self.started  # last time the client moved forward
        self._progress_event_at = self.started
        self.timeout = RetransmitTimeout()
        self._rto = self.timeout.rto
        self._unanswered = 0  # timer resends since the client last moved forward
        self._outcome: Outcome | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def acked_bytes(self) -> int:
        return min((self.base - 1) * self.blksize, self.size)

    @property
    def rate(self) -> float:
        elapsed = (self.finished or time.monotonic()) - self.started
        return self.acked_bytes / elapsed if elapsed > 0 else 0.0

    @property
    def done(self) -> bool:
        return self._outcome is not None

    @property
    def needless_resends(self) -> int:
        """Resends the client proved needless (it acknowledged the duplicate as well)."""
        return self.timeout.needless

    # -- I/O ------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._segment_blocks = self._enable_segmentation()
        self._loop.add_reader(self.sock.fileno(), self._readable)
        if self._oack is not None:
            self._send_oack()
        else:
            self._send_window()

    def _readable(self) -> None:
        recv = self.sock.recv
        while self._outcome is None:
            try:
                data = recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ECONNREFUSED: ICMP port unreachable from the client
                self._client_gone(exc)
                return
            self._datagram(data)

    def _enable_segmentation(self) -> int:
        """Blocks per send under UDP_SEGMENT, or 0 where a window gains nothing or it is refused."""
        per_send = min(self.windowsize, GSO_MAX_SEGMENTS, GSO_MAX_BYTES // (self.blksize + 4))
        if per_send < 2:
            return 0
        try:
            self.sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, self.blksize + 4)
        except OSError:
            return 0  # an old kernel: block by block
        return per_send

    def _send(self, datagram: bytes) -> None:
        try:
            self.sock.send(datagram)
        except (BlockingIOError, InterruptedError):
            pass  # socket buffer full: as good as lost, the timer resends
        except OSError as exc:
            self._client_gone(exc)

    def _datagram(self, data: bytes) -> None:
        block = packets.plain_ack(data)
        if block is not None:
            self._on_ack(block)
            return
        try:
            packet = packets.parse(data)
        except packets.MalformedPacket:
            return  # a garbled datagram on our TID: the timer recovers if it mattered
        if isinstance(packet, packets.Ack):
            self._on_ack(packet.block)
        elif isinstance(packet, packets.Error):
            probe = self.base == 1 and self.sent_upto == 0 and packet.code == packets.ERR_OPTIONS
            if probe:
                self._finish(Outcome(True, "size probe ended by the client", probe=True))
            else:
                self._finish(Outcome(False, f"client error {packet.code}: {packet.message}"[:200]))

    def _client_gone(self, exc: OSError) -> None:
        if self.done:
            return
        if self.sent_upto >= self.blocks:
            # Every block went out and the client closed its port: it had the file and its
            # last ACK was lost on the way (tftp clients exit right after that ACK).
            self._finish(Outcome(True, "client left before its last ACK arrived"))
        else:
            self._finish(Outcome(False, f"client unreachable: {exc.strerror or exc}"))

    # -- protocol logic ---------------------------------------------------------------------

    @property
    def patience(self) -> float:
        """Seconds without progress before giving up: short until the client's first ACK."""
        return self.give_up if self.answered else self.first_give_up

    def _on_ack(self, wire_block: int) -> None:
        self._unanswered = 0  # the client is there, whatever it acknowledges
        self.answered = True
        if self.sent_upto == 0:
            if wire_block == 0 and self._oack is not None:
                self._note_rtt(0)
                self._progress_at = time.monotonic()
                self._send_window()
            return
        # Map the 16-bit wire number onto the window in flight (block numbers roll over).
        offset = (wire_block - (self.base - 1)) & 0xFFFF
        acked = self.base - 1 + offset
        if offset == 0:
            if self._needless_proved(acked):
                self._dup_resent_base = self.base  # that duplicate is explained: nothing lost
            elif self._dup_resent_base != self.base:
                self._dup_resent_base = self.base
                self.retransmits += 1
                self._send_window(resend=True)
            return
        if acked > self.sent_upto:
            return  # older than the window (a late duplicate), or nonsense
        if acked == self.sent_upto:
            self._note_rtt(acked)
        self.base = acked + 1
        if self.base > self.blocks:
            self._finish(Outcome(True, "complete"))
            return
        now = self._progress_at = time.monotonic()
        self._rto = self.timeout.rto
        if now - self._progress_event_at >= PROGRESS_INTERVAL:
            self._progress_event_at = now
            self._on_progress(self)
        self._send_window()

    def _send_oack(self, resend: bool = False) -> None:
        assert self._oack is not None
        self._send(self._oack)
        if self.done:
            return  # the send found the client gone, and that ended the transfer
        self._mark_sent(resend)
        self._arm_timer()

    def _mark_sent(self, resend: bool) -> None:
        now = self._window_sent_at = time.monotonic()
        if not resend:
            self._first_sent_at = now
        self._window_resent = resend

    def _send_window(self, resend: bool = False) -> None:
        end = min(self.base + self.windowsize, self.blocks + 1)
        blksize = self.blksize
        send = self._send
        read = self.source.read
        first = self._send_segmented(self.base, end) if self._segment_blocks else self.base
        for block in range(first, end):
            send(packets.data(block, read((block - 1) * blksize, blksize)))
            if self._outcome is not None:
                return  # the send found the client gone, and that ended the transfer
        if self._outcome is not None:
            return
        fresh = end - 1 > self.sent_upto or self.sent_upto == 0
        self.sent_upto = max(self.sent_upto, end - 1)
        self._mark_sent(resend and not fresh)
        self._arm_timer()

    def _send_segmented(self, first: int, end: int) -> int:
        """Send blocks first..end-1 in sends of up to _segment_blocks; the first block not sent.

        Every block but the file's last is exactly blksize long, so each send is a run of
        equal segments with at most a shorter one at its end, as UDP_SEGMENT requires."""
        blksize, read, step = self.blksize, self.source.read, self._segment_blocks
        block = first
        while end - block > 1:
            upto = min(block + step, end)
            run = b"".join([packets.data(b, read((b - 1) * blksize, blksize)) for b in range(block, upto)])
            try:
                self.sock.send(run)
            except (BlockingIOError, InterruptedError):
                pass  # socket buffer full: as good as lost, the timer resends
            except OSError as exc:
                if exc.errno in GSO_UNSUPPORTED:
                    self._stop_segmentation()
                    return block  # these go block by block, and so does the rest
                self._client_gone(exc)
                return end
            else:
                self.segmented_sends += 1
            block = upto
        return block

    def _stop_segmentation(self) -> None:
        self._segment_blocks = 0
        self.segmentation_failed = True
        # With UDP_SEGMENT set the kernel no longer fragments a single datagram that is too
        # big for the route; it fails it (EMSGSIZE). Unset, single sends work as ever.
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, 0)

    def _note_rtt(self, acked: int) -> None:
        """What was in flight up to block `acked` (0: the OACK) is acknowledged."""
        now = time.monotonic()
        if not self._window_resent:
            self.timeout.sample(now - self._window_sent_at)
            self._suspect = None
        else:
            # Karn: no sample. If this ACK answered the first copy, the client will also
            # acknowledge the duplicate, and that tells the resend was needless.
            self._suspect = (acked, now - self._first_sent_at)
        self._rto = self.timeout.rto

    def _needless_proved(self, acked: int) -> bool:
        """Is this duplicate ACK of `acked` the client's answer to our needless resend?"""
        suspect = self._suspect
        if suspect is None or suspect[0] != acked:
            return False
        self._suspect = None
        self.timeout.resend_was_needless(suspect[1])
        self._rto = self.timeout.rto
        return True

    def _arm_timer(self) -> None:
        """Resend at now + RTO (or at the give-up time). Moving the deadline later, which is
        what every ACK does, costs one float; the timer notices when it fires."""
        assert self._loop is not None
        now = time.monotonic()
        self._deadline = min(now + self._rto, self._progress_at + self.patience)
        if self._timer is not None and self._timer_at <= self._deadline + 0.001:
            return
        self._cancel_timer()
        self._timer_at = self._deadline
        self._timer = self._loop.call_at(self._loop.time() + (self._deadline - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.done:
            return
        now = time.monotonic()
        if now < self._deadline - 0.001:  # the deadline moved on since: sleep until then
            assert self._loop is not None
            self._timer_at = self._deadline
            self._timer = self._loop.call_at(self._loop.time() + (self._deadline - now), self._on_timer)
            return
        self._on_timeout()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        # An ACK may have come in while the loop was busy elsewhere: read it before resending.
        self._readable()
        if self.done or self._timer is not None:
            return  # it moved the transfer on (and set the timer again)
        if time.monotonic() - self._progress_at >= self.patience - 0.005:
            if self.sent_upto >= self.blocks:
                self._finish(Outcome(True, "client went quiet after the last block (no final ACK)"))
            elif not self.answered:
                self._finish(Outcome(False, f"no first ACK from the client within {self.patience:.0f}s"))
            else:
                self._finish(Outcome(False, f"no answer from the client for {self.give_up:.0f}s"))
            return
        self.retransmits += 1
        self._unanswered += 1
        self.timeout.timed_out()
        if self._unanswered < QUICK_RETRIES:
            self._rto = self.timeout.rto
        else:
            self._rto = min(MAX_RTO, max(SILENT_CLIENT_WAIT, self._rto * 2))
        if self.sent_upto == 0 and self._oack is not None:
            self._send_oack(resend=True)
        else:
            self._send_window(resend=True)

    def _finish(self, outcome: Outcome) -> None:
        if self._outcome is not None:
            return
        self._outcome = outcome
        self.finished = time.monotonic()
        self._cancel_timer()
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.source.close()
        self._on_done(self, outcome)

    def abort(self, reason: str) -> None:
        self._finish(Outcome(False, reason))
