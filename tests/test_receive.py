"""`fresh_datagrams`: what waited too long in the queue is dropped, by an age that may depend
on the datagram (DHCP: a DISCOVER goes stale sooner than a REQUEST)."""

from __future__ import annotations

import socket
import time

from dhcp_client import dhcp_packet
from scapy.layers.dhcp import BOOTP

from pxetui.services.dhcp.server import DISCOVER_STALE_SECONDS, STALE_SECONDS, stale_after
from pxetui.services.receive import enable_timestamps, fresh_datagrams


def payload(message: str, mac: str = "52:54:00:00:00:01") -> bytes:
    """What a DHCP server reads from its UDP socket: the BOOTP message without the headers."""
    requested = "198.18.0.100" if message == "request" else None
    return bytes(dhcp_packet(mac, message, requested=requested)[BOOTP])


def test_a_discover_goes_stale_before_a_request() -> None:
    discover, request = payload("discover"), payload("request")
    assert stale_after(discover) == DISCOVER_STALE_SECONDS < STALE_SECONDS == stale_after(request)
    assert stale_after(b"\x01" * 10) == STALE_SECONDS  # too short to tell: the longer wait


def test_fresh_datagrams_drops_by_the_age_each_datagram_may_wait() -> None:
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with receiver, sender:
        assert enable_timestamps(receiver)
        receiver.setblocking(False)
        discover, request = payload("discover"), payload("request", "52:54:00:00:00:02")
        for data in (discover, request, discover):
            sender.send(data)
        waited = (DISCOVER_STALE_SECONDS + STALE_SECONDS) / 2  # too long for a DISCOVER only
        ages: list[float] = []
        got = list(fresh_datagrams(receiver, 2048, stale_after, ages.append, clock=lambda: time.time() + waited))
    assert [data for data, _ in got] == [request]
    assert len(ages) == 2 and all(age >= waited for age in ages)
