"""Domain rules live in the Session, not in a view: whoever calls it gets the same answer.

An opened (never started) Session, fed the events the DHCP service builds.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pxetui.errors import UsageError
from pxetui.model.events import DhcpDiscover, Event, PlanAssign
from pxetui.session import Session, SessionConfig

PXE_UEFI = "PXEClient:Arch:00007:UNDI:003010"
PXE_ARM = "PXEClient:Arch:00011:UNDI:003001"
PRINTER = "52:54:00:99:00:01"
PCS = ("52:54:00:99:00:02", "52:54:00:99:00:03")


@pytest.fixture
def session(tmp_path: Path) -> Session:
    config = SessionConfig(
        interface="lab0",
        state_dir=tmp_path / "state",
        cache_dir=tmp_path / "empty-cache",
        address=ipaddress.IPv4Interface("198.18.0.1/24"),
    )
    opened = Session(config)
    opened.open()
    return opened


def test_assign_refuses_a_profile_the_pcs_firmware_cannot_boot(session: Session) -> None:
    arm, bios = "52:54:00:99:00:0b", "52:54:00:99:00:0c"
    session.bus.publish(DhcpDiscover(mac=arm, arch=11, vendor_class=PXE_ARM))
    with pytest.raises(UsageError, match=r"debian-12-local does not fit 52:54:00:99:00:0b: .*ARM64 UEFI"):
        session.assign(arm, "debian-12-local")
    assert session.plan.get(arm) is None or session.plan.get(arm).profile is None  # type: ignore[union-attr]
    # A BIOS PC and a UEFI-only profile: refused before the missing files are even looked at.
    session.bus.publish(DhcpDiscover(mac=bios, arch=0, vendor_class="PXEClient:Arch:00000:UNDI:002001"))
    with pytest.raises(UsageError, match=r"memtest86plus does not fit .* boots x86_64 on uefi"):
        session.assign(bios, "memtest86plus")
    # A PC that never said what it is (planned before power-on) may get any profile.
    session.assign("52:54:00:99:00:0d", "debian-12-local")
    assert session.plan.get("52:54:00:99:00:0d").profile == "debian-12-local"  # type: ignore[union-attr]


def test_unknown_policy_takes_a_slot_only_for_a_network_boot_client(session: Session) -> None:
    session.set_unknown_policy("debian-12-local", 1)
    # A printer's DISCOVER in full mode: no PXE vendor class, no iPXE.
    session.bus.publish(DhcpDiscover(mac=PRINTER, vendor_class="HP LaserJet", params=[1, 3, 6]))
    session.bus.publish(DhcpDiscover(mac=PCS[0], arch=7, vendor_class=PXE_UEFI))
    session.bus.publish(DhcpDiscover(mac=PCS[1], arch=7, vendor_class=PXE_UEFI))
    assert session.plan.get(PRINTER) is None
    assert session.plan.get(PCS[0]).profile == "debian-12-local"  # type: ignore[union-attr]
    assert session.plan.get(PCS[1]) is None, "the one slot went to the first PXE PC"


def test_views_see_the_discover_before_the_assignment_it_caused(session: Session) -> None:
    seen: list[Event] = []
    session.bus.subscribe(seen.append)  # subscribed after the Session itself, as every view is
    session.set_unknown_policy("debian-12-local", 1)
    seen.clear()
    session.bus.publish(DhcpDiscover(mac=PCS[0], arch=7, vendor_class=PXE_UEFI))
    assert [(type(e), e.mac) for e in seen] == [(DhcpDiscover, PCS[0]), (PlanAssign, PCS[0])]
