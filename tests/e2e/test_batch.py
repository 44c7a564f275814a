"""A room of PCs at once: four QEMU PCs powered on together, each planned differently, and the
completion report of an installer (a busybox initramfs that calls /done with its token)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from dnsmasq_rival import Dnsmasq
from lab import Lab

from e2e.initramfs import DI_DIR, build_report_initramfs
from pxetui.lab.qemu import Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

INSTALLER = "52:54:00:ba:00:01"  # UEFI, assigned the Debian installer: reaches its kernel
REPORTER = "52:54:00:ba:00:02"  # BIOS, assigned the reporting "installer": reaches done
LOCAL = "52:54:00:ba:00:03"  # UEFI, assigned "boot from local disk"
UNKNOWN = "52:54:00:ba:00:04"  # UEFI, not in the plan: the menu, then its default after the timeout


def report_profile(directory: Path, initrd: Path) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "e2e-report.yaml").write_text(
        "name: e2e-report\ntitle: E2E installer that reports completion\n"
        f"kernel: {{path: {DI_DIR / 'linux'}}}\ninitrd: {{path: {initrd}}}\n"
        'cmdline: "console=ttyS0 pxetui.url={{ machine.base_url }} pxetui.mac={{ machine.mac }}'
        ' pxetui.token={{ machine.token }}"\n'
    )


def events_for(events: list[dict[str, Any]], mac: str, name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("mac") == mac and e.get("event") == name]


def test_four_pcs_at_once_each_end_where_the_plan_says(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    need_tools("qemu-system-x86_64", "cpio")
    profiles = tmp_path / "profiles"
    report_profile(profiles, build_report_initramfs(tmp_path))
    plan = tmp_path / "plan.csv"
    plan.write_text(
        "mac,profile,hostname\n"
        f"{INSTALLER},debian-12-local,lab-installer\n"
        f"{REPORTER},e2e-report,lab-reporter\n"
        f"{LOCAL},local-disk,lab-local\n"
    )
    pxetui = run_pxetui(
        "--mode", "full", "--plan", str(plan), "--profiles", str(profiles), "--menu-timeout", "5"
    )
    pxetui.wait_event("service.ready", timeout=30)
    specs = [
        VmSpec("installer", INSTALLER, lab.add_tap("tap0"), "uefi", memory_mb=512),
        VmSpec("reporter", REPORTER, lab.add_tap("tap1"), "bios", memory_mb=512),
        VmSpec("local", LOCAL, lab.add_tap("tap2"), "uefi", memory_mb=512),
        VmSpec("unknown", UNKNOWN, lab.add_tap("tap3"), "uefi", memory_mb=512),
    ]
    vms = {spec.mac: Vm(spec, lab.server_ns, tmp_path) for spec in specs}
    for vm in vms.values():
        vm.start()
    try:
        assert vms[INSTALLER].wait_serial("Linux version", timeout=480) is not None, vms[INSTALLER].serial()[
            -2000:
        ]
        done = pxetui.wait_event("install.done", mac=REPORTER, timeout=240)
        assert vms[REPORTER].wait_serial("pxetui-e2e: reported", timeout=60) is not None
        # The forged report (another token) was refused and changed nothing.
        assert vms[REPORTER].wait_serial("forged report: .*(403|refused|Forbidden)", timeout=60) is not None
        selected = pxetui.wait_event("menu.select", mac=UNKNOWN, timeout=300)
        pxetui.wait_event("http.request", mac=LOCAL, kind="script", timeout=120)
    finally:
        for vm in vms.values():
            vm.stop()
    assert pxetui.stop() == 0
    events = pxetui.events
    assert done["mac"] == REPORTER
    assert selected["choice"] == "local-disk"  # nobody chose: the safe default after 5 s
    # The PC told to boot locally fetched no kernel; only the installers did.
    kernels = {e["mac"] for e in events if e.get("event") == "http.request" and e.get("kind") == "kernel"}
    assert kernels == {INSTALLER, REPORTER}
    # Four distinct addresses, one per PC.
    acks = {e["mac"]: e["ip"] for e in events if e.get("event") == "dhcp.ack"}
    assert set(acks) >= set(vms) and len({acks[m] for m in vms}) == 4
    # The registry (saved state) has every stage with its time, in order.
    machines = {
        m["mac"]: m for m in json.loads((tmp_path / "state" / "machines.json").read_text())["machines"]
    }
    order = ["dhcp", "loader", "menu", "kernel", "initrd", "done"]
    times = machines[REPORTER]["stage_times"]
    assert machines[REPORTER]["stage"] == "done"
    assert [s for s in order if s in times] == ["dhcp", "menu", "kernel", "initrd", "done"]  # BIOS: no TFTP
    assert sorted(times.values()) == [times[s] for s in order if s in times]
    assert machines[INSTALLER]["stage"] == "initrd"
    assert {"dhcp", "loader", "menu", "kernel", "initrd"} <= set(machines[INSTALLER]["stage_times"])
    assert machines[LOCAL]["stage"] == "menu" and machines[UNKNOWN]["stage"] == "menu"
    assert machines[UNKNOWN]["menu_choice"] == "local-disk"
    assert machines[REPORTER]["firmware"] == "BIOS" and machines[INSTALLER]["firmware"] == "UEFI"


def test_proxy_mode_next_to_a_dhcp_server_that_only_gives_addresses(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_tools("qemu-system-x86_64")
    rival = Dnsmasq(lab, tmp_path)  # the office router: addresses only, on its own host
    mac = "52:54:00:ba:01:01"
    plan = tmp_path / "plan.csv"
    plan.write_text(f"mac,profile,hostname\n{mac},debian-12-local,lab-proxy\n")
    try:
        pxetui = run_pxetui("--plan", str(plan))  # --mode auto
        seen = pxetui.wait_event("dhcp.rival", timeout=30)
        ready = pxetui.wait_event("service.ready", timeout=30)
        assert ready["mode"] == "proxy"
        vm = Vm(VmSpec("proxy", mac, lab.add_tap("tap0"), "uefi"), lab.server_ns, tmp_path)
        vm.start()
        try:
            assert vm.wait_serial("Linux version", timeout=300) is not None, vm.serial()[-2000:]
        finally:
            vm.stop()
        assert pxetui.stop() == 0
    finally:
        rival.stop()
    # The address came from dnsmasq's pool; pxetui handed out none, and served the boot.
    assert seen["server_id"] == rival.ip
    assert mac in (tmp_path / "dnsmasq.leases").read_text()
    offers = [e for e in pxetui.events if e.get("event") == "dhcp.offer" and e.get("mac") == mac]
    assert offers and not [e for e in offers if e.get("ip")]
    kinds = [e.get("kind") for e in pxetui.events if e.get("event") == "http.request" and e.get("mac") == mac]
    assert "kernel" in kinds and "initrd" in kinds
