"""A real iPXE runs pxetui's scripts: a BIOS PC (SeaBIOS + the NIC's iPXE ROM) and a UEFI PC
(OVMF, then Debian's ipxe.efi) boot the installer kernel their MAC is assigned, through the
probe script and the per-MAC script; an unassigned PC gets a menu iPXE can draw.

dnsmasq stands in for DHCP and TFTP (so this needs no other pxetui service); the HTTP service
runs in-process on the lab bridge.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import need_tools
from lab import Lab, NetnsLoop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from http_lab import PORT, HttpLab, start_http_lab

from pxetui.lab.qemu import Vm, VmSpec, qemu_command
from pxetui.model.events import Event

pytestmark = [pytest.mark.lab, pytest.mark.e2e]
MAC = "52:54:00:e2:e1:01"


def dhcp_only(lab: Lab, work: Path) -> subprocess.Popen[str]:
    net = lab.subnet.network_address
    conf = work / "dnsmasq.conf"
    conf.write_text(
        f"port=0\ninterface={lab.bridge}\nbind-interfaces\nno-ping\n"
        f"dhcp-range={net + 100},{net + 150},1h\n"
        # UEFI firmware first loads iPXE over TFTP; iPXE (user class iPXE) gets the script URL.
        "enable-tftp\ntftp-root=/usr/lib/ipxe\ndhcp-userclass=set:ipxe,iPXE\n"
        "dhcp-boot=tag:!ipxe,ipxe.efi\n"
        f"dhcp-boot=tag:ipxe,http://{lab.server_ip}:{PORT}/boot.ipxe\n"
        f"dhcp-leasefile={work}/leases\npid-file={work}/dnsmasq.pid\n"
    )
    return lab.popen(
        lab.server_ns, "dnsmasq", "-d", "-C", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_ipxe_follows_probe_then_assigned_script(lab: Lab, tmp_path: Path, firmware: str) -> None:
    need_tools("qemu-system-x86_64", "dnsmasq")
    dnsmasq = dhcp_only(lab, tmp_path)
    try:
        with NetnsLoop(lab.server_ns) as loop:
            http = start_http_lab(lab, tmp_path, loop)
            try:
                http.assign(MAC, "debian-12-local", f"pc-{firmware}")
                vm = Vm(
                    VmSpec(name=firmware, mac=MAC, tap=lab.add_tap("tap0"), firmware=firmware),
                    lab.server_ns,
                    tmp_path,
                )
                vm.start()
                try:
                    seconds = vm.wait_serial("Linux version", timeout=240)
                    assert seconds is not None, vm.serial()[-3000:]
                    http.wait_event("http.done", kind="initrd", timeout=30)
                finally:
                    vm.stop()
            finally:
                loop.run(http.service.stop())
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(10)

    scripts = [e for e in http.named("http.request") if e.fields["kind"] == "script"]
    assert scripts[0].fields["answer"] == "probe"
    answer = next(e for e in scripts if e.mac == MAC)
    assert answer.fields["answer"] == "debian-12-local"
    # iPXE expanded the probe's settings: BIOS iPXE is an i386 build on a 64-bit CPU.
    info = answer.fields["client_info"]
    if firmware == "bios":
        assert info["platform"] == "pcbios" and info["arch"] == "i386" and info["lm"] == "1"
    else:
        assert info["platform"] == "efi" and info["arch"] == "x86_64"
    done = {
        e.fields["kind"]: e for e in http.named("http.done", MAC) if e.fields["kind"] in ("kernel", "initrd")
    }
    assert done["kernel"].fields["ok"] and done["initrd"].fields["ok"]
    assert done["initrd"].fields["bytes"] == done["initrd"].fields["total"] > 10_000_000


def test_unassigned_pc_gets_a_working_menu_and_reports_the_choice(lab: Lab, tmp_path: Path) -> None:
    """iPXE parses the menu; Enter picks the default entry, which is reported to /select."""
    need_tools("qemu-system-x86_64", "dnsmasq")
    mac = "52:54:00:e2:e1:02"
    monitor = tmp_path / "monitor.sock"
    dnsmasq = dhcp_only(lab, tmp_path)
    try:
        with NetnsLoop(lab.server_ns) as loop:
            http = start_http_lab(lab, tmp_path, loop)
            http.seen(mac)  # dnsmasq, not pxetui, gave the lease: tell the registry it booted
            try:
                spec = VmSpec(name="menu", mac=mac, tap=lab.add_tap("tap0"), firmware="bios")
                cmd = qemu_command(spec, tmp_path / "menu.serial.log")
                cmd[cmd.index("-monitor") + 1] = f"unix:{monitor},server,nowait"
                qemu = lab.popen(lab.server_ns, *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    menu = http.wait_event("http.request", timeout=120, answer="menu")
                    deadline = time.monotonic() + 60
                    while not http.named("menu.select") and time.monotonic() < deadline:
                        time.sleep(2)  # let iPXE draw the menu, then press Enter (again if it was early)
                        send_key(monitor, "ret")
                    select = http.wait_event("menu.select", timeout=5)
                finally:
                    qemu.terminate()
                    qemu.wait(10)
            finally:
                loop.run(http.service.stop())
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(10)
    assert menu.mac == mac and menu.fields["client_info"]["lm"] == "1"
    # The default entry is the local disk: an unattended PC never installs by default.
    assert select.mac == mac and select.fields["choice"] == "local-disk"
    answered = [e for e in http.named("http.request", mac) if e.fields.get("file") == "select"]
    assert answered and answered[0].fields["answer"] == "local-disk"


def send_key(monitor: Path, key: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(monitor))
        except OSError:
            return  # QEMU not listening yet
        sock.sendall(f"sendkey {key}\n".encode())
        time.sleep(0.2)


def test_a_pc_waiting_in_the_menu_starts_what_the_operator_assigns_meanwhile(
    lab: Lab, tmp_path: Path
) -> None:
    """Real iPXE runs the menu's wait: its `prompt --timeout` runs out and it asks the server
    again (`chain --replace .../boot.ipxe?...&waited=N`); once the operator assigns the PC, the
    next question gets the installer, which boots. Nobody touches the keyboard."""
    need_tools("qemu-system-x86_64", "dnsmasq")
    mac = "52:54:00:e2:e1:03"
    dnsmasq = dhcp_only(lab, tmp_path)
    try:
        with NetnsLoop(lab.server_ns) as loop:
            http = start_http_lab(lab, tmp_path, loop, menu_poll_interval=3)
            http.seen(mac)  # dnsmasq, not pxetui, gave the lease: tell the registry it booted
            try:
                vm = Vm(
                    VmSpec(name="wait", mac=mac, tap=lab.add_tap("tap0"), firmware="bios"),
                    lab.server_ns,
                    tmp_path,
                )
                vm.start()
                try:
                    http.wait_event("http.request", timeout=120, answer="menu")
                    deadline = time.monotonic() + 30
                    while len(menus(http, mac)) < 2 and time.monotonic() < deadline:
                        time.sleep(0.5)
                    assert len(menus(http, mac)) >= 2, vm.serial()[-3000:]  # iPXE asked again by itself
                    http.assign(mac, "debian-12-local", "pc-late")
                    seconds = vm.wait_serial("Linux version", timeout=240)
                    assert seconds is not None, vm.serial()[-3000:]
                finally:
                    vm.stop()
            finally:
                loop.run(http.service.stop())
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(10)
    answers = [e.fields["answer"] for e in http.named("http.request", mac) if e.fields["kind"] == "script"]
    assert answers[0] == "menu" and "debian-12-local" in answers and "menu-timeout" not in answers
    assert not http.named("menu.select")  # the assignment started it, not a choice at the PC
    kernel = [e for e in http.named("http.done", mac) if e.fields["kind"] == "kernel"]
    assert kernel and kernel[0].fields["ok"]


def menus(http: HttpLab, mac: str) -> list[Event]:
    return [e for e in http.named("http.request", mac) if e.fields.get("answer") == "menu"]
