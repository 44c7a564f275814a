"""TUI building blocks without a screen: cell text, profile fitting, event coalescing,
and the rule that only pxetui/tui imports textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pxetui.boot.profiles import load_profiles
from pxetui.model.events import DhcpRival, HttpRequest, PlanImport, ServiceReady, TftpDone, TftpProgress
from pxetui.model.plan import PlanEntry
from pxetui.model.registry import Machine, Stage, TransferProgress
from pxetui.tui import format as fmt
from pxetui.tui.updates import LOG_KEEP, PendingUpdates


@pytest.mark.parametrize(
    ("arch", "fits", "does_not_fit"),
    [
        (None, {"debian-12", "debian-12-local", "ipxe-shell", "local-disk"}, set()),
        (0, {"debian-12", "debian-12-local", "ipxe-shell", "local-disk"}, set()),
        (7, {"debian-12", "debian-12-local", "ipxe-shell", "local-disk"}, set()),
        (16, {"debian-12", "debian-12-local", "ipxe-shell", "local-disk"}, set()),
        (11, {"ipxe-shell", "local-disk", "reboot"}, {"debian-12", "debian-12-local"}),
        (6, {"ipxe-shell", "local-disk", "reboot"}, {"debian-12", "debian-12-local"}),
    ],
)
def test_fitting_profiles_follow_option_93(arch: int | None, fits: set[str], does_not_fit: set[str]) -> None:
    profiles = load_profiles()
    names = {p.name for p in fmt.fitting_profiles(profiles.values(), [arch])}
    assert fits <= names and not (does_not_fit & names)
    firmware = "bios" if arch == 0 else "uefi"
    for name in names:  # every offered profile really declares the firmware
        assert arch is None or firmware in profiles[name].firmware


def test_arm32_fits_no_builtin_profile() -> None:
    assert fmt.fitting_profiles(load_profiles().values(), [10]) == []


def test_fitting_profiles_for_several_machines_is_the_intersection() -> None:
    profiles = load_profiles()
    both = {p.name for p in fmt.fitting_profiles(profiles.values(), [7, 11])}
    x64 = {p.name for p in fmt.fitting_profiles(profiles.values(), [7])}
    arm = {p.name for p in fmt.fitting_profiles(profiles.values(), [11])}
    assert both == x64 & arm and "ipxe-shell" in both and "debian-12-local" not in both


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, ""), (0, "0s"), (59.9, "59s"), (65, "1m05s"), (3600, "1h00m"), (-3, "0s")]
)
def test_duration(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_bar_and_rate() -> None:
    assert fmt.bar(0) == "······" and fmt.bar(1) == "██████" and fmt.bar(2) == "██████"
    assert fmt.bar(0.5) == "███···"
    assert len(fmt.bar(0.37)) == fmt.BAR_WIDTH
    assert (
        fmt.rate(12_300_000) == "12.3MB/s"
        and fmt.rate(512_000_000) == "512MB/s"
        and fmt.rate(2_000) == "2kB/s"
    )


def test_progress_cells() -> None:
    m = Machine(mac="52:54:00:00:00:01", stage=Stage.KERNEL)
    assert fmt.progress(m) == ""
    m.transfer = TransferProgress(file="linux", bytes=4_000_000, total=8_000_000, rate=10_000_000)
    assert fmt.progress(m) == "███···  50% 10.0MB/s"  # percent right-aligned: columns line up
    m.transfer = TransferProgress(file="/boot/initrd.gz", bytes=0)
    assert fmt.progress(m) == "initrd.gz"
    m.transfer = TransferProgress(file="x.iso", bytes=2_500_000, rate=1_000_000)
    assert fmt.progress(m) == "2.5MB 1.0MB/s"
    m.transfer = TransferProgress(file="linux", bytes=10, total=10, finished=True)
    assert fmt.progress(m) == "linux ✓"
    m.stage = Stage.DONE
    assert fmt.progress(m) == ""


def test_elapsed_counts_from_dhcp_and_freezes_when_done() -> None:
    m = Machine(mac="52:54:00:00:00:01", first_seen=50.0)
    assert fmt.elapsed(m, 1000.0) == ""  # waiting: a plan event is not a first packet
    m.stage = Stage.KERNEL
    m.stage_times = {"dhcp": 100.0}
    assert fmt.elapsed(m, 190.0) == "1m30s"
    m.stage = Stage.DONE
    m.stage_times["done"] = 130.0
    assert fmt.elapsed(m, 5000.0) == "30s"


def test_assigned_and_stage_text() -> None:
    m = Machine(mac="52:54:00:00:00:01", stage=Stage.FAILED, last_error="no disk")
    assert fmt.assigned(None) == "menu"
    assert fmt.assigned(PlanEntry(mac=m.mac, profile="debian-12")) == "debian-12"
    # Issue 17: "boots its disk next" (l) must not read like the `local-disk` profile.
    assert fmt.assigned(PlanEntry(mac=m.mac, profile="debian-12", boot_local=True)) == "→ disk: debian-12"
    assert fmt.assigned(PlanEntry(mac=m.mac, boot_local=True)) == "→ disk"
    assert fmt.assigned(PlanEntry(mac=m.mac, profile="local-disk")) == "local-disk"
    m.menu_choice = "ipxe-shell"
    assert fmt.assigned(None, m) == "menu: ipxe-shell"
    assert fmt.stage_text(m) == "failed: no disk"
    assert fmt.arch_label(7) == "7 (x64 UEFI)" and fmt.arch_label(None) == "unknown"


def test_pending_updates_coalesce_events_per_machine() -> None:
    pending = PendingUpdates()
    tftp = {"file": "ipxe.efi", "client": "198.18.0.100", "total": 1000}
    for i in range(1000):
        pending.add(TftpProgress(mac=f"52:54:00:00:00:{i % 3:02x}", bytes=i, rate=1.0, **tftp))  # type: ignore[arg-type]
    pending.add(TftpDone(mac="52:54:00:00:00:01", bytes=1000, rate=1.0, ok=True, reason="", **tftp))  # type: ignore[arg-type]
    macs, events, header = pending.take()
    assert macs == {"52:54:00:00:00:00", "52:54:00:00:00:01", "52:54:00:00:00:02"}
    assert [e.name for e in events] == ["tftp.done"] and header  # progress: table only, not the log
    assert pending.events_seen == 1001
    assert pending.take() == (set(), [], False)
    pending.add(PlanImport(source="lab.csv", count=3))
    macs, _, header = pending.take()
    assert macs is None and header  # every row may have changed
    for _ in range(LOG_KEEP + 10):
        pending.add(HttpRequest(mac="52:54:00:00:00:01", path="/boot.ipxe", kind="script", file="boot.ipxe",
                                total=100, client="198.18.0.100"))  # fmt: skip
    assert len(pending.take()[1]) == LOG_KEEP
    rival = DhcpRival(mode="full", server_id="198.18.0.254", server_mac="00:16:3e:5e:00:fe", message="offer",
                      offers_address=True)  # fmt: skip
    pending.add(rival)
    ready = ServiceReady(mode="full", interface="eth1", address="198.18.0.1", http_port=8080,
                         services={"dhcp": {"port": 67}}, state_dir="/tmp/x")  # fmt: skip
    pending.add(ready)
    assert pending.rival == "198.18.0.254 (00:16:3e:5e:00:fe)" and pending.services == {"dhcp": {"port": 67}}


def test_rival_bar_names_the_server_the_dhcp_service_reports() -> None:
    """The rival bar reads the fields the service really sends (it read `server`/`ip`/`address`,
    which no service sends, so a real rival showed as "unknown")."""
    from pxetui.services.dhcp.probe import rival_from_reply

    offer = bytearray(300)
    offer[0:3] = bytes([2, 1, 6])  # BOOTREPLY, Ethernet, 6-byte MAC
    offer[236:240] = b"\x63\x82\x53\x63"
    offer[16:20] = bytes([198, 18, 0, 50])  # yiaddr
    offer[240:] = bytes([53, 1, 2, 54, 4, 198, 18, 0, 254, 255]) + bytes(50)
    found = rival_from_reply(bytes(offer), bytes.fromhex("00163e5e00fe"), bytes([198, 18, 0, 1]))
    assert found is not None
    pending = PendingUpdates()
    pending.add(found.event("full"))
    assert pending.rival == "198.18.0.254 (00:16:3e:5e:00:fe)"


def test_only_the_tui_imports_textual() -> None:
    """Services and core must run (headless, in tests) without textual loaded."""
    code = (
        "import sys, pkgutil, importlib, pxetui\n"
        "for m in pkgutil.walk_packages(pxetui.__path__, 'pxetui.'):\n"
        "    if not m.name.startswith('pxetui.tui'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'textual' or n.startswith('textual.'))\n"
        "print(len(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    package = Path(__file__).resolve().parent.parent / "pxetui"
    offenders = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.relative_to(package).parts[0] != "tui"
        and any(
            line.lstrip().startswith(("import textual", "from textual"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
