"""PCs with Secure Boot on (OVMF's Secure Boot build, Microsoft's keys) boot through pxetui.

OVMF_CODE_4M.ms.fd + OVMF_VARS_4M.ms.fd from Debian's `ovmf` refuse Debian's unsigned iPXE
("Access Denied"); Debian's own chain (shim from the d-i netboot image, its GRUB, the signed
installer kernel) boots, and the kernel says `secureboot: Secure boot enabled`; so does a
profile that brings its own shim + GRUB (here Debian's shim-signed + grub-efi-amd64-signed
pair), named per profile. An OVMF without Secure Boot goes on getting iPXE under the same
`--secure-boot auto`.

Within one power-on OVMF tries PXEv4 once, then PXEv6, HTTPv4, HTTPv6 and its shell. So in
`auto`, after the refusal over PXE, HTTPv4 gets the signed chain as a disk image (Debian's
GRUB has no http module: pxetui/boot/ramdisk.py) and boots it in the same power-on; the next
power-on's PXE gets the shim directly. Nobody tells pxetui anything.

In proxy mode the lab's DHCP server is a router on its own host: pxetui's address-less offer
names the shim, which takes its GRUB from the proxy offer's server, as it does the boot file
when the router's ACK names none. Debian's GRUB then reads only the router's ACK
(boot/grub_proxy.py): with Kea naming pxetui as next-server it boots; beside dnsmasq, which
names itself, it stops at `grub>` and pxetui says what to change on the router.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from dnsmasq_rival import Dnsmasq
from kea_rival import KeaRouter
from lab import Lab

from e2e.chain import SIGNED_CHAIN, in_order, machine_state, planned, steps
from pxetui.boot.profiles import builtin_profiles_dir
from pxetui.lab.qemu import Vm, VmSpec
from pxetui.tui.stalls import GRUB_QUIET

pytestmark = [pytest.mark.lab, pytest.mark.e2e]


def need_ovmf(spec: VmSpec) -> None:
    missing = spec.missing()
    if missing:
        pytest.skip(f"needs Debian's qemu-system-x86 and ovmf packages: {', '.join(missing)}")
    if not Path(
        "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/bootnetx64.efi"
    ).is_file():
        pytest.skip("needs debian-installer-12-netboot-amd64 (make deps-test)")


def pc(mac: str, secure_boot: bool = True) -> VmSpec:
    spec = VmSpec(name=f"pc{mac[-2:]}", mac=mac, tap=f"tap{mac[-1]}", secure_boot=secure_boot)
    need_ovmf(spec)
    return spec


def boot(lab: Lab, tmp_path: Path, spec: VmSpec) -> Vm:
    lab.add_tap(spec.tap)
    vm = Vm(spec, lab.server_ns, tmp_path)
    vm.start()
    return vm


# A profile that brings its own loaders: Debian's shim-signed + grub-efi-amd64-signed packages,
# served under profiles/NAME/ instead of the d-i image's pair (whose prefix differs: /grub).
OWN_SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
OWN_GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
OWN = "debian-12-own-loaders"


def own_loaders_profile(directory: Path) -> Path:
    if not (OWN_SHIM.is_file() and OWN_GRUB.is_file()):
        pytest.skip("needs shim-signed and grub-efi-amd64-signed (make deps-test)")
    doc = yaml.safe_load((builtin_profiles_dir() / "debian-12-local.yaml").read_text())
    doc.update(
        name=OWN,
        arch=["x86_64"],
        secure_boot={"vendor": "debian", "shim": {"path": str(OWN_SHIM)}, "grub": {"path": str(OWN_GRUB)}},
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{OWN}.yaml").write_text(yaml.safe_dump(doc))
    return directory


@pytest.mark.parametrize("profile", ["debian-12-local", OWN])
def test_secure_boot_pc_assigned_by_plan_boots_the_signed_installer(
    lab: Lab, run_pxetui: Any, tmp_path: Path, profile: str
) -> None:
    mac = "52:54:00:5b:e0:01"
    spec = pc(mac)
    args = ["--mode", "full", "--secure-boot", "signed", "--package-proxy", "off"]
    args += ["--plan", planned(tmp_path, mac, profile)]
    if profile == OWN:
        args += ["--profiles", str(own_loaders_profile(tmp_path / "profiles"))]
    pxetui = run_pxetui(*args)
    ready = pxetui.wait_event("service.ready", timeout=30)
    assert ready["services"]["tftp"]["signed_chains"][0]["shim"] == "debian-installer/amd64/bootnetx64.efi"
    vm = boot(lab, tmp_path, spec)
    try:
        seconds = vm.wait_serial(r"secureboot: Secure boot enabled", timeout=400)
        assert seconds is not None, vm.serial()[-3000:]
        assert "Linux version" in vm.serial()
        pxetui.wait_event("tftp.done", mac=mac, file=f"files/{profile}/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    chain = steps(pxetui.events, mac)
    assert in_order(SIGNED_CHAIN, chain), chain
    assert "http.request:script" not in chain  # no iPXE anywhere
    ack = next(e for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac)
    answer = next(e for e in pxetui.events if e["event"] == "tftp.start" and e.get("answer") == profile)
    done = [e for e in pxetui.events if e["event"] == "tftp.done" and e.get("mac") == mac]
    loaders = [e["file"] for e in done if e["ok"] and not e.get("probe")]  # not the size probes
    if profile == OWN:  # the profile's own pair, named per profile, its GRUB's prefix /grub
        assert ack["file"] == f"profiles/{OWN}/shimx64.efi"
        assert answer["file"] == f"grub/grub.cfg-{mac}"
        # Shim asks for its GRUB beside itself (shim 16) or at the root: either is the profile's.
        assert loaders[0] == f"profiles/{OWN}/shimx64.efi" and loaders[1] in (
            f"profiles/{OWN}/grubx64.efi",
            "grubx64.efi",
        ), loaders
        served = {e["file"]: e["bytes"] for e in pxetui.events if e["event"] == "tftp.done" and e["ok"]}
        assert OWN_GRUB.stat().st_size in [
            served.get("grubx64.efi"),
            served.get(f"profiles/{OWN}/grubx64.efi"),
        ]
    else:
        assert ack["file"] == "debian-installer/amd64/bootnetx64.efi"
        assert answer["file"] == f"debian-installer/amd64/grub/grub.cfg-{mac}"
    print(f"Secure Boot PC ({profile}): power-on to the signed kernel in {seconds:.0f} s")


def test_secure_boot_pc_in_proxy_mode_next_to_a_router_naming_pxetui_as_next_server_boots(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    """The fix pxetui advises, done: the router (Kea) gives addresses with next-server = pxetui."""
    mac = "52:54:00:5b:e0:05"
    spec = pc(mac)
    router = KeaRouter(lab, tmp_path, next_server=lab.server_ip)
    try:
        args = ["--mode", "proxy", "--secure-boot", "signed", "--package-proxy", "off"]
        pxetui = run_pxetui(*args, "--plan", planned(tmp_path, mac))
        pxetui.wait_event("service.ready", timeout=30)
        vm = boot(lab, tmp_path, spec)
        try:
            seconds = vm.wait_serial(r"secureboot: Secure boot enabled|grub> ", timeout=400)
            assert seconds is not None, vm.serial()[-3000:]
            assert "grub> " not in vm.serial(), vm.serial()[-1500:]
            assert "Linux version" in vm.serial()
            pxetui.wait_event("tftp.done", mac=mac, file="files/debian-12-local/initrd", timeout=30)
        finally:
            vm.stop()
        assert pxetui.stop() == 0
    finally:
        router.stop()
    events = [e for e in pxetui.events if e.get("mac") == mac]
    assert not [e for e in events if e["event"] in ("dhcp.offer", "dhcp.ack") and e.get("ip")]  # Kea's
    rivals = [e for e in pxetui.events if e["event"] == "dhcp.rival" and e["server_id"] == router.ip]
    assert rivals and all("grub_advice" not in e for e in rivals), rivals
    proxy_chain = [step for step in SIGNED_CHAIN if step != "dhcp.ack"]
    chain = steps(pxetui.events, mac)
    assert in_order(proxy_chain, chain), chain
    assert "http.request:script" not in chain  # no iPXE anywhere
    answer = next(e for e in events if e["event"] == "tftp.start" and e.get("answer") == "debian-12-local")
    assert answer["file"] == f"debian-installer/amd64/grub/grub.cfg-{mac}"
    assert machine_state(tmp_path, mac)["grub_elsewhere"] is None
    print(
        f"Secure Boot PC (proxy mode, router next-server = pxetui): power-on to the signed kernel in {seconds:.0f} s"
    )


def test_secure_boot_pc_in_proxy_mode_next_to_a_routers_dnsmasq_is_told_what_to_change_on_the_router(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    """dnsmasq names itself as next-server; Debian's GRUB asks it, not pxetui, and stops at grub>.

    Seen in a packet trace of this setup: shim fetched grubx64.efi from pxetui, then GRUB sent
    `RRQ /debian-installer/amd64/grub/x86_64-efi/command.lst` to the router, over and over,
    and stopped at `grub>` about two minutes later.
    """
    mac = "52:54:00:5b:e0:06"
    spec = pc(mac)
    router = Dnsmasq(lab, tmp_path)  # the lab's DHCP server: addresses only
    try:
        args = ["--mode", "proxy", "--secure-boot", "signed", "--package-proxy", "off"]
        pxetui = run_pxetui(*args, "--plan", planned(tmp_path, mac))
        rival = pxetui.wait_event("dhcp.rival", timeout=30, server_id=router.ip)
        pxetui.wait_event("service.ready", timeout=30)
        vm = boot(lab, tmp_path, spec)
        try:
            pxetui.wait_event(
                "tftp.done", mac=mac, file="debian-installer/amd64/grubx64.efi", ok=True, timeout=300
            )
            # GRUB retries the router for about two minutes before `grub>`; what counts here is
            # that nothing more reaches pxetui in the time a GRUB needs to ask (tui/stalls.py).
            time.sleep(GRUB_QUIET + 2)
            assert "Welcome to GRUB" in vm.serial() and "Linux version" not in vm.serial(), vm.serial()[
                -3000:
            ]
        finally:
            vm.stop()
        assert pxetui.stop() == 0
    finally:
        router.stop()
    advice = f"set next-server to {lab.server_ip} on {router.ip}"
    assert rival["grub_server"] == router.ip and advice in rival["grub_advice"], rival
    state = machine_state(tmp_path, mac)
    assert state["last_error"] == state["grub_elsewhere"], state
    assert f"asks {router.ip} for grub.cfg" in state["last_error"] and advice in state["last_error"], state
    starts = [e["file"] for e in pxetui.events if e["event"] == "tftp.start" and e.get("mac") == mac]
    assert not [f for f in starts if "grub/" in f], starts  # GRUB asked pxetui for nothing


def test_auto_marks_a_pc_that_refuses_ipxe_and_its_next_boot_takes_the_signed_chain(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    mac = "52:54:00:5b:e0:02"
    spec = pc(mac)
    pxetui = run_pxetui("--mode", "full", "--package-proxy", "off", "--plan", planned(tmp_path, mac))  # auto
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, spec)
    try:
        # The firmware fetches iPXE and refuses it; its next option, HTTPv4, gets the signed
        # chain as a disk image and boots it in this same power-on (test_secure_boot_http_boot.py).
        first = vm.wait_serial(r"secureboot: Secure boot enabled", timeout=400)
        assert first is not None, vm.serial()[-3000:]
        assert "Access Denied" in vm.serial()
        assert pxetui.wait_event("dhcp.ack", mac=mac, timeout=30)["file"] == "ipxe.efi"
        # The next power-on's PXE gets the shim straight away: the mark stays.
        vm.reset()
        seconds = vm.wait_serial(
            r"secureboot: Secure boot enabled[\s\S]*secureboot: Secure boot enabled", timeout=400
        )
        assert seconds is not None, vm.serial()[-3000:]
        print(
            f"auto: iPXE refused, signed kernel in the same power-on after {first:.0f} s; next power-on {seconds:.0f} s"
        )
        pxetui.wait_event("tftp.done", mac=mac, file="files/debian-12-local/initrd", timeout=30)
    finally:
        vm.stop()
    assert pxetui.stop() == 0
    acks = [e.get("file") for e in pxetui.events if e["event"] == "dhcp.ack" and e["mac"] == mac]
    assert acks[0] == "ipxe.efi" and acks[-1] == "debian-installer/amd64/bootnetx64.efi", acks
    assert machine_state(tmp_path, mac)["secure_boot"] == "ipxe-refused"
    assert in_order(SIGNED_CHAIN, steps(pxetui.events, mac)[2:])


def test_unassigned_secure_boot_pc_gets_the_grub_menu_whose_default_is_the_local_disk(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    mac = "52:54:00:5b:e0:03"
    spec = pc(mac)
    pxetui = run_pxetui(
        "--mode", "full", "--secure-boot", "signed", "--package-proxy", "off", "--menu-timeout", "5"
    )
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, spec)
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
    mac = "52:54:00:5b:e0:04"
    spec = pc(mac, secure_boot=False)
    pxetui = run_pxetui("--mode", "full", "--package-proxy", "off", "--plan", planned(tmp_path, mac))  # auto
    pxetui.wait_event("service.ready", timeout=30)
    vm = boot(lab, tmp_path, spec)
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
    print(f"PC without Secure Boot (iPXE path): power-on to the installer kernel in {seconds:.0f} s")
