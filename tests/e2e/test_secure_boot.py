"""PCs with Secure Boot on (OVMF's Secure Boot build, Microsoft's keys) boot through pxetui.

OVMF_CODE_4M.ms.fd + OVMF_VARS_4M.ms.fd from Debian's `ovmf` refuse Debian's unsigned iPXE
("Access Denied"); Debian's own chain (shim from the d-i netboot image, its GRUB, the signed
installer kernel) boots, and the kernel says `secureboot: Secure boot enabled`. An OVMF
without Secure Boot goes on getting iPXE under the same `--secure-boot auto`.

Within one power-on OVMF tries PXEv4 once, then PXEv6, HTTPv4 (which cannot use Debian's
GRUB: it has no http module), HTTPv6 and its shell, then waits for a key. So in `auto`, the
attempt after the refusal that can boot is the next power-on: the test resets the PC (as
the operator's power button, or the PC's own retry, would), and nobody tells pxetui anything.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from lab import Lab

from pxetui.lab.qemu import QEMU, Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

SB_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
SB_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
PLAIN_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
PLAIN_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SIGNED_CHAIN = [
    "dhcp.discover",
    "dhcp.ack",
    "tftp.start:loader",  # shim (bootnetx64.efi), then its GRUB
    "tftp.start:script",  # grub.cfg, then grub.cfg-MAC
    "tftp.start:kernel",
    "tftp.start:initrd",
]


class FlashVm(Vm):
    """A UEFI PC from OVMF's split flash images (own copy of the variables), with a monitor."""

    def __init__(self, spec: VmSpec, netns: str, workdir: Path, code: Path, vars_template: Path) -> None:
        super().__init__(spec, netns, workdir)
        self.vars = workdir / f"{spec.name}.vars.fd"
        shutil.copy(vars_template, self.vars)
        self.code = code
        self.monitor = workdir / f"{spec.name}.monitor"

    def command(self) -> list[str]:
        secure = self.code.name.endswith(".ms.fd")
        machine = "q35,smm=on" if secure else "q35"
        cmd = [QEMU, "-accel", "tcg", "-machine", machine, "-m", str(self.spec.memory_mb)]
        if secure:  # the variable store is writable only from SMM: Secure Boot cannot be turned off
            cmd += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        return [
            *cmd,
            "-drive", f"if=pflash,format=raw,unit=0,file={self.code},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}",
            "-display", "none", "-monitor", f"unix:{self.monitor},server,nowait",
            "-netdev", f"tap,id=n0,ifname={self.spec.tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={self.spec.mac},romfile=",
            "-boot", "n", "-serial", f"file:{self.serial_log}",
        ]  # fmt: skip

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *self.command()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def reset(self) -> None:
        """The power button: the PC starts over from its firmware, the serial log goes on."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.monitor))
            sock.sendall(b"system_reset\n")
            time.sleep(0.5)


def need_ovmf(*files: Path) -> None:
    need_tools("qemu-system-x86_64")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        pytest.skip(f"needs Debian's ovmf package: {', '.join(missing)}")
    if not Path(
        "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/bootnetx64.efi"
    ).is_file():
        pytest.skip("needs debian-installer-12-netboot-amd64 (make deps-test)")


def steps(events: list[dict[str, Any]], mac: str) -> list[str]:
    seen: list[str] = []
    for e in events:
        if e.get("mac") != mac:
            continue
        name = e["event"]
        if name == "tftp.start":
            name = f"tftp.start:{e.get('kind') or 'loader'}"
        elif name == "http.request":
            name = f"http.request:{e.get('kind')}"
        if not seen or seen[-1] != name:
            seen.append(name)
    return seen


def in_order(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(step in it for step in wanted)


def machine_state(tmp_path: Path, mac: str) -> dict[str, Any]:
    """The machine as pxetui saved it (state/machines.json)."""
    document = json.loads((tmp_path / "state" / "machines.json").read_text())
    return next(m for m in document["machines"] if m["mac"] == mac)


def planned(tmp_path: Path, mac: str) -> str:
    plan = tmp_path / "plan.csv"
    plan.write_text(f"mac,profile,hostname\n{mac},debian-12-local,pc-sb\n")
    return str(plan)


def boot(lab: Lab, tmp_path: Path, mac: str, code: Path, vars_template: Path) -> FlashVm:
    spec = VmSpec(name=f"pc{mac[-2:]}", mac=mac, tap=lab.add_tap(f"tap{mac[-1]}"), memory_mb=1024)
    vm = FlashVm(spec, lab.server_ns, tmp_path, code, vars_template)
    vm.start()
    return vm


def test_secure_boot_pc_assigned_by_plan_boots_the_signed_installer(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_ovmf(SB_CODE, SB_VARS)
    mac = "52:54:00:5b:e0:01"
    args = (
        "--mode",
        "full",
        "--secure-boot",
        "signed",
        "--package-proxy",
        "off",
        "--plan",
        planned(tmp_path, mac),
    )
    pxetui = run_pxetui(*args)
    ready = pxetui.wait_event("service.ready", timeout=30)
    assert ready["services"]["tftp"]["signed_chains"][0]["shim"] == "debian-installer/amd64/bootnetx64.efi"
    vm = boot(lab, tmp_path, mac, SB_CODE, SB_VARS)
    try:
        seconds = vm.wait_serial(r"secureboot: Secure boot enabled", timeout=400)
        assert seconds is not None, vm.serial()[-3000:]
        assert "Linux version" in vm.serial()
        pxetui.wait_event("tftp.done", mac=mac, file="files/debian-12-local/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    chain = steps(pxetui.events, mac)
    assert in_order(SIGNED_CHAIN, chain), chain
    assert "http.request:script" not in chain  # no iPXE anywhere
    ack = next(e for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac)
    assert ack["file"] == "debian-installer/amd64/bootnetx64.efi"
    answer = next(
        e for e in pxetui.events if e["event"] == "tftp.start" and e.get("answer") == "debian-12-local"
    )
    assert answer["file"] == f"debian-installer/amd64/grub/grub.cfg-{mac}"
    print(f"Secure Boot PC: power-on to the signed kernel in {seconds:.0f} s")


def test_auto_marks_a_pc_that_refuses_ipxe_and_its_next_boot_takes_the_signed_chain(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_ovmf(SB_CODE, SB_VARS)
    mac = "52:54:00:5b:e0:02"
    pxetui = run_pxetui("--mode", "full", "--package-proxy", "off", "--plan", planned(tmp_path, mac))  # auto
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, mac, SB_CODE, SB_VARS)
    try:
        # The firmware fetches iPXE, refuses it, tries its other options and gives up.
        gave_up = vm.wait_serial(r"No bootable option or device was found", timeout=400)
        assert gave_up is not None, vm.serial()[-3000:]
        assert "Access Denied" in vm.serial() and "Linux version" not in vm.serial()
        assert pxetui.wait_event("dhcp.ack", mac=mac, timeout=30)["file"] == "ipxe.efi"
        vm.reset()
        seconds = vm.wait_serial(r"secureboot: Secure boot enabled", timeout=400)
        assert seconds is not None, vm.serial()[-3000:]
        pxetui.wait_event("tftp.done", mac=mac, file="files/debian-12-local/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    acks = [e["file"] for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac]
    assert acks[0] == "ipxe.efi" and acks[-1] == "debian-installer/amd64/bootnetx64.efi", acks
    assert machine_state(tmp_path, mac)["secure_boot"] == "ipxe-refused"
    assert in_order(SIGNED_CHAIN, steps(pxetui.events, mac)[2:])


def test_unassigned_secure_boot_pc_gets_the_grub_menu_whose_default_is_the_local_disk(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_ovmf(SB_CODE, SB_VARS)
    mac = "52:54:00:5b:e0:03"
    pxetui = run_pxetui(
        "--mode", "full", "--secure-boot", "signed", "--package-proxy", "off", "--menu-timeout", "5"
    )
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, mac, SB_CODE, SB_VARS)
    try:
        pxetui.wait_event("menu.select", mac=mac, timeout=400)
        # GRUB handed back to the firmware: OVMF, told the option succeeded, shows its boot
        # manager (UiApp); a PC with a disk in its boot order boots it the same way.
        back = vm.wait_serial(
            r"pxetui: booting the local disk[\s\S]*BdsDxe: (loading|starting|failed to load) Boot", 120
        )
        assert back is not None, vm.serial()[-3000:]
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    (select,) = [e for e in pxetui.events if e["event"] == "menu.select" and e["mac"] == mac]
    assert select["choice"] == "local-disk"  # the built-in local profile, as in iPXE's menu
    answers = [e.get("answer") for e in pxetui.events if e["event"] == "tftp.start" and e["mac"] == mac]
    assert answers.index("menu") < answers.index("local"), answers
    assert "Linux version" not in vm.serial()


def test_a_pc_without_secure_boot_still_gets_ipxe_under_auto(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_ovmf(PLAIN_CODE, PLAIN_VARS)
    mac = "52:54:00:5b:e0:04"
    pxetui = run_pxetui("--mode", "full", "--package-proxy", "off", "--plan", planned(tmp_path, mac))  # auto
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, mac, PLAIN_CODE, PLAIN_VARS)
    try:
        seconds = vm.wait_serial("Linux version", timeout=400)
        assert seconds is not None, vm.serial()[-3000:]
        pxetui.wait_event("http.done", mac=mac, kind="initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    chain = steps(pxetui.events, mac)
    assert in_order(["dhcp.ack", "tftp.start:loader", "http.request:script", "http.request:kernel"], chain), (
        chain
    )
    assert all(e.get("file") != "debian-installer/amd64/bootnetx64.efi" for e in pxetui.events)
    assert "secureboot: Secure boot enabled" not in vm.serial()
    assert machine_state(tmp_path, mac)["secure_boot"] is None
