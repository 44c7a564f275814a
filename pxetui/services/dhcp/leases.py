"""Address leases for full mode: one address per client MAC, sticky, never shared.

Addresses are keyed by chaddr only, never by option 97 UUID or client-id: cloned and cheap PCs
share UUIDs (QEMU sends all zeros), and merging on them is what makes a room of identical PCs
fight over one address. An OFFER reserves its address for that MAC for `offer_seconds`, so
DISCOVERs that arrive together get distinct addresses.

A DISCOVER costs nothing to forge, though: 155 a minute from random MACs held every address of
the default pool against everyone. So past its first `offer_hold_seconds` an offer is a
reservation only while addresses remain. When the pool runs dry, a new client takes, in this
order, a never-used address, the longest-expired lease, then the oldest offer that was never
REQUESTed and is older than the hold. A flood can only push out its own offers: a real client
REQUESTs within milliseconds (PXE firmware within its 4 s of collecting offers) of its OFFER,
long before its offer becomes the oldest, and the hold keeps a fast flood from taking an offer
between the two. A bound lease is never taken. A DECLINE likewise counts only from the client
the address is bound to: anyone else's would let a forged packet take an address out of the
pool for the whole session.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

OFFERED = "offered"
BOUND = "bound"
# An offer nobody else can take, even from a full pool: longer than PXE firmware takes to
# collect offers (EDK II waits 4 s) before it REQUESTs.
OFFER_HOLD_SECONDS = 5.0


@dataclass(slots=True)
class Lease:
    mac: str
    ip: int
    state: str  # OFFERED or BOUND
    expires: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to a REQUEST: ack with `ip`, or nak with `reason`."""

    ack: bool
    ip: int = 0
    reason: str = ""


class LeasePool:
    def __init__(
        self,
        first: ipaddress.IPv4Address,
        last: ipaddress.IPv4Address,
        *,
        exclude: Iterable[ipaddress.IPv4Address] = (),
        lease_seconds: int = 3600,
        offer_seconds: int = 60,
        offer_hold_seconds: float = OFFER_HOLD_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if last < first:
            raise ValueError(f"empty range {first}-{last}")
        self.first = int(first)
        self.last = int(last)
        self.lease_seconds = lease_seconds
        self.offer_seconds = offer_seconds
        self.offer_hold_seconds = min(offer_hold_seconds, offer_seconds)
        self.clock = clock
        self.excluded = {int(a) for a in exclude}
        self.by_mac: dict[str, Lease] = {}
        self.by_ip: dict[int, Lease] = {}
        self._cursor = self.first
        self.changed = False  # set on every change a restart must see; the service saves and clears it

    @property
    def size(self) -> int:
        return self.last - self.first + 1 - len([a for a in self.excluded if self.first <= a <= self.last])

    def in_pool(self, ip: int) -> bool:
        return self.first <= ip <= self.last and ip not in self.excluded

    def lease_for(self, mac: str) -> Lease | None:
        return self.by_mac.get(mac)

    def holds(self, mac: str, ip: int) -> bool:
        """Whether `ip` is bound to `mac` (ACKed by this server) and its lease still runs."""
        lease = self.by_mac.get(mac)
        return lease is not None and lease.ip == ip and lease.state == BOUND and lease.expires >= self.clock()

    def offer(self, mac: str) -> int | None:
        """The address to offer `mac`: its own if it has one, else a free one (None: pool full)."""
        now = self.clock()
        lease = self.by_mac.get(mac)
        if lease is not None:
            if lease.state == OFFERED or lease.expires < now:
                lease.state = OFFERED
                lease.expires = max(lease.expires, now + self.offer_seconds)
            return lease.ip
        ip = self._free_address(now)
        if ip is None:
            return None
        self._bind(mac, ip, OFFERED, now + self.offer_seconds)
        return ip

    def request(self, mac: str, ip: int) -> Verdict:
        """A REQUEST from `mac` for `ip`: ack if it is that MAC's or free and ours to give."""
        now = self.clock()
        if not self.in_pool(ip):
            return Verdict(False, reason=f"{ipaddress.IPv4Address(ip)} is not in this server's range")
        holder = self.by_ip.get(ip)
        if holder is not None and holder.mac != mac:
            if holder.expires >= now:
                return Verdict(False, reason=f"{ipaddress.IPv4Address(ip)} is leased to {holder.mac}")
            self._drop(holder)
        own = self.by_mac.get(mac)
        if own is not None and own.ip != ip:
            self._drop(own)
        lease = self.by_mac.get(mac)
        if lease is None:
            self._bind(mac, ip, BOUND, now + self.lease_seconds)
        else:
            if lease.state != BOUND:
                self.changed = True
            lease.state = BOUND
            lease.expires = now + self.lease_seconds
        return Verdict(True, ip=ip)

    def release(self, mac: str, ip: int) -> bool:
        """DHCPRELEASE/DECLINE: end the binding (the address stays remembered for that MAC)."""
        lease = self.by_mac.get(mac)
        if lease is None or lease.ip != ip:
            return False
        lease.expires = self.clock()
        lease.state = OFFERED
        self.changed = True
        return True

    def decline(self, mac: str, ip: int) -> str | None:
        """DHCPDECLINE: another host answers on `ip`; never hand it out again this session.

        Only the client `ip` is bound to (ACKed, lease running) can decline it: an offer is not
        enough, since anyone can get one with a forged DISCOVER. Returns None when the decline
        was taken, else why it was ignored.
        """
        lease = self.by_mac.get(mac)
        if lease is None or lease.ip != ip:
            return "not this client's address"
        if lease.state != BOUND or lease.expires < self.clock():
            return "address not bound to this client"
        self._drop(lease)
        self.excluded.add(ip)
        return None

    def forget_offer(self, mac: str) -> None:
        """The client chose another server: free the address we only offered it."""
        lease = self.by_mac.get(mac)
        if lease is not None and lease.state == OFFERED:
            lease.expires = self.clock()

    # -- internals ----------------------------------------------------------------------------

    def _free_address(self, now: float) -> int | None:
        span = self.last - self.first + 1
        ip = self._cursor
        for _ in range(span):  # never-used addresses first, round-robin
            if ip not in self.by_ip and ip not in self.excluded:
                self._cursor = ip + 1 if ip < self.last else self.first
                return ip
            ip = ip + 1 if ip < self.last else self.first
        leases = self.by_ip.values()
        expired = [lease for lease in leases if lease.expires < now]
        if not expired:
            # Offers all last offer_seconds from their last DISCOVER: the earliest to expire is
            # the oldest, and one past the hold expires before this bound.
            held_until = now + self.offer_seconds - self.offer_hold_seconds
            expired = [lease for lease in leases if lease.state == OFFERED and lease.expires <= held_until]
        if not expired:
            return None  # every address is bound (never taken) or offered just now
        oldest = min(expired, key=lambda lease: lease.expires)  # reuse the longest-unused
        self._drop(oldest)
        return oldest.ip

    def _bind(self, mac: str, ip: int, state: str, expires: float) -> None:
        lease = Lease(mac=mac, ip=ip, state=state, expires=expires)
        self.by_mac[mac] = lease
        self.by_ip[ip] = lease
        self.changed = True

    def _drop(self, lease: Lease) -> None:
        self.by_mac.pop(lease.mac, None)
        if self.by_ip.get(lease.ip) is lease:
            del self.by_ip[lease.ip]
        self.changed = True

    # -- persistence --------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        return {
            "version": 1,
            "leases": [
                {
                    "mac": lease.mac,
                    "ip": str(ipaddress.IPv4Address(lease.ip)),
                    "state": lease.state,
                    "expires": round(lease.expires, 3),
                }
                for lease in sorted(self.by_mac.values(), key=lambda lease: lease.ip)
            ],
        }

    def load_document(self, doc: dict[str, Any] | None) -> int:
        """Restore saved leases that fit this pool; returns how many were kept."""
        if not doc:
            return 0
        kept = 0
        for item in doc.get("leases", []):
            try:
                ip = int(ipaddress.IPv4Address(item["ip"]))
                mac = str(item["mac"]).lower()
                state = BOUND if item.get("state") == BOUND else OFFERED
                expires = float(item.get("expires", 0))
            except (KeyError, TypeError, ValueError):
                continue
            if not self.in_pool(ip) or ip in self.by_ip or mac in self.by_mac:
                continue
            self._bind(mac, ip, state, expires)
            kept += 1
        self.changed = False
        return kept


def default_range(
    network: ipaddress.IPv4Network, server: ipaddress.IPv4Address
) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """Hosts from the 100th of the subnet to the last one (upper half on small subnets).

    The low addresses are where people put switches, printers and the server itself.
    """
    hosts = network.num_addresses - 2
    if hosts < 4:
        raise ValueError(f"{network} is too small to hand out addresses")
    offset = 100 if hosts >= 200 else hosts // 2 + 1
    first = network.network_address + offset
    last = network.broadcast_address - 1
    if first <= server <= last and server == first:
        first += 1
    return first, last
