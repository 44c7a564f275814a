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


def test_after_done_the_next_boot_is_the_disk_until_re_armed(session: Session) -> None:
    from pxetui.model.events import InstallDone

    pc = PCS[0]
    session.assign(pc, "debian-12-local")
    assert session.boot_plan(pc).profile is not None and not session.boot_plan(pc).boot_local
    session.bus.publish(InstallDone(mac=pc, client="198.18.0.100"))
    plan = session.boot_plan(pc)
    assert plan.boot_local, "a finished PC must not reinstall on its next network boot"
    entry = session.plan.get(pc)
    assert entry is not None and entry.state == "done -> local" and entry.profile == "debian-12-local"
    # Saved at once: a restart keeps it.
    again = Session(session.config)
    again.open()
    assert again.boot_plan(pc).boot_local
    # The operator re-arms it: the next boot installs again.
    session.set_boot_local(pc, False)
    assert not session.boot_plan(pc).boot_local and session.plan.get(pc).installed is None  # type: ignore[union-attr]
    assert session.boot_plan(pc).profile is not None


def test_a_pc_installed_from_the_menu_also_boots_its_disk_next(session: Session) -> None:
    from pxetui.model.events import InstallDone

    session.bus.publish(InstallDone(mac=PCS[1], client="198.18.0.101"))
    assert session.boot_plan(PCS[1]).boot_local


def test_plan_import_refuses_a_profile_that_cannot_boot_and_applies_nothing(session: Session, tmp_path: Path) -> None:
    from pxetui.model.plan import PlanError

    csv = tmp_path / "lab.csv"
    csv.write_text("mac,profile,hostname\n52:54:00:99:00:21,debian-12-local,a\n52:54:00:99:00:22,debian-12,b\n")
    with pytest.raises(PlanError, match=r"52:54:00:99:00:22: .*pxetui fetch debian-12"):
        session.import_plan_csv(csv)
    assert session.plan.get("52:54:00:99:00:21") is None, "nothing of a refused file is applied"


def test_a_machine_is_removed_from_the_plan_by_call_or_by_csv(session: Session, tmp_path: Path) -> None:
    session.assign("52:54:00:99:00:31", "debian-12-local")
    session.assign("52:54:00:99:00:32", "debian-12-local")
    session.remove_machine("52:54:00:99:00:31")
    assert session.plan.get("52:54:00:99:00:31") is None
    assert session.registry.get("52:54:00:99:00:31") is None, "it never booted: it leaves the table"
    csv = tmp_path / "remove.csv"
    csv.write_text("mac,profile,hostname,action\n52:54:00:99:00:32,,,remove\n")
    assert session.import_plan_csv(csv) == 1
    assert session.plan.get("52:54:00:99:00:32") is None
    with pytest.raises(UsageError, match="not in the plan"):
        session.remove_machine("52:54:00:99:00:31")


@pytest.mark.parametrize(
    ("mac", "why"),
    [("ff:ff:ff:ff:ff:ff", "broadcast"), ("00:00:00:00:00:00", "all zeros"), ("01:00:5e:00:00:01", "multicast")],
)
def test_no_view_can_plan_a_mac_no_pc_has(session: Session, tmp_path: Path, mac: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        session.add_machine(mac)
    with pytest.raises(UsageError, match=why):
        session.assign(mac, "debian-12-local")
    csv = tmp_path / "lab.csv"
    csv.write_text(f"mac,profile,hostname\n{mac},,x\n")
    with pytest.raises(UsageError, match=why):
        session.import_plan_csv(csv)
    assert session.plan.get(mac) is None


def test_two_pcs_cannot_share_a_hostname_whoever_asks(session: Session, tmp_path: Path) -> None:
    session.add_machine("52:54:00:99:00:51", "room-1")
    with pytest.raises(UsageError, match="already 52:54:00:99:00:51's"):
        session.add_machine("52:54:00:99:00:52", "ROOM-1")
    with pytest.raises(UsageError, match="already 52:54:00:99:00:51's"):
        session.assign("52:54:00:99:00:52", "debian-12-local", "room-1")
    session.assign("52:54:00:99:00:51", "debian-12-local", "room-1")  # its own name: fine
    csv = tmp_path / "lab.csv"
    csv.write_text("mac,profile,hostname\n52:54:00:99:00:61,,lab-a\n52:54:00:99:00:62,,lab-a\n")
    with pytest.raises(UsageError, match="also on line 2"):
        session.import_plan_csv(csv)
