"""A PC whose Secure Boot trusts no loader pxetui has is told so, with what to change (issue 15).

OVMF_CODE_4M.snakeoil.fd + OVMF_VARS_4M.snakeoil.fd from Debian's `ovmf`: Secure Boot on with
only a snakeoil test key enrolled, no Microsoft key: it refuses Debian's iPXE and the
Microsoft-signed shim alike, as a Lenovo with the third-party CA off or a Surface in
Secured-core mode does. Under `--secure-boot auto` its PXE fetches iPXE ("Access Denied"), its
HTTPv4 try gets the signed chain as a disk image (refused too), and the next power-on's PXE the
shim straight away (refused again). pxetui must end with the machine marked as refusing every
loader, the firmware settings to change in its state, and no sign of a network fault.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from lab import Lab

from e2e.chain import machine_state
from pxetui.lab.qemu import Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

SHIM = "debian-installer/amd64/bootnetx64.efi"


def snakeoil_pc(mac: str) -> VmSpec:
    spec = VmSpec(
        name=f"pc{mac[-2:]}", mac=mac, tap=f"tap{mac[-1]}", secure_boot=True, secure_boot_keys="snakeoil"
    )
    missing = spec.missing()
    if missing:
        pytest.skip(f"needs Debian's qemu-system-x86 and ovmf packages: {', '.join(missing)}")
    if not Path(f"/usr/lib/debian-installer/images/12/amd64/text/{SHIM}").is_file():
        pytest.skip("needs debian-installer-12-netboot-amd64 (make deps-test)")
    return spec


def discovers(pxetui: Any, mac: str) -> list[dict[str, Any]]:
    return [e for e in pxetui.events if e["event"] == "dhcp.discover" and e.get("mac") == mac]


def wait_discover(pxetui: Any, mac: str, after: int, timeout: float) -> bool:
    """Whether `mac` sent more than `after` DISCOVERs within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while len(discovers(pxetui, mac)) <= after and time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):
            pxetui.wait_event("never.sent", timeout=2)  # takes in what arrives meanwhile
    return len(discovers(pxetui, mac)) > after


# Unassigned (an unknown PC, the usual case); an assigned PC takes the same chain (unit tests),
# and each run of this costs about three minutes of OVMF trying its boot options.
def test_a_pc_that_trusts_neither_ipxe_nor_the_shim_is_marked_with_the_firmware_settings_to_change(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    mac = "52:54:00:5b:e0:0e"
    spec = snakeoil_pc(mac)
    args = ["--mode", "full", "--package-proxy", "off"]  # --secure-boot auto
    pxetui = run_pxetui(*args)
    pxetui.wait_event("service.ready", timeout=30)
    lab.add_tap(spec.tap)
    vm = Vm(spec, lab.server_ns, tmp_path)
    vm.start()
    began = time.monotonic()
    try:
        assert pxetui.wait_event("dhcp.ack", mac=mac, timeout=120)["file"] == "ipxe.efi"
        pxetui.wait_event("tftp.done", mac=mac, file="ipxe.efi", ok=True, timeout=120)
        # The same power-on's HTTPv4 gets the chain's disk image, whole, and refuses its shim.
        pxetui.wait_event("http.done", mac=mac, kind="loader", ok=True, timeout=300)
        time.sleep(10)  # room for a request after the shim, which a refused shim never makes
        vm.reset()  # the next power-on: PXE again, and pxetui sees it back after the shim
        pxetui.wait_event("dhcp.ack", mac=mac, file=SHIM, timeout=180)
        pxetui.wait_event("tftp.done", mac=mac, file=SHIM, ok=True, timeout=120)
        # Refused again: the firmware's next option (HTTPv4) asks DHCP, nothing asked the shim's GRUB.
        back = wait_discover(pxetui, mac, after=len(discovers(pxetui, mac)), timeout=240)
        assert back, vm.serial()[-3000:]
        assert "Access Denied" in vm.serial(), vm.serial()[-3000:]
    finally:
        vm.stop()
    seconds = time.monotonic() - began
    assert pxetui.stop() == 0
    state = machine_state(tmp_path, mac)
    assert state["secure_boot"] == "all-refused", state
    error = state["last_error"] or ""
    assert "refused iPXE and the Microsoft-signed shim: its Secure Boot trusts neither" in error, error
    assert "Allow Microsoft 3rd Party UEFI CA" in error and "Secured-core off" in error, error
    steps = [detail for _, step, detail in state["timeline"] if step == "secure-boot"]
    assert steps == ["iPXE refused", "shim refused too: every loader refused"], state["timeline"]
    # Refused, not cut off: the shim arrived whole, and nothing after it was asked.
    mine = [e for e in pxetui.events if e.get("mac") == mac]
    assert [
        e for e in mine if e["event"] == "tftp.done" and e["file"] == SHIM and e["ok"] and not e.get("probe")
    ]
    assert not [e for e in mine if e["event"] == "tftp.start" and "grub" in e["file"]]
    assert "Linux version" not in vm.serial()
    print(f"snakeoil Secure Boot PC (unassigned): marked in {seconds:.0f} s")
