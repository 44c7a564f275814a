"""OVMF's own UEFI HTTP Boot client boots through pxetui's HTTP URL to the installer kernel.

The guest's PXE is switched off in the firmware (`VmSpec(network_boot="http")`), so its first
network option is `UEFI HTTPv4`: it asks DHCP as `HTTPClient:Arch:00016`, and takes an offer
only if it says `HTTPClient` back (option 60) with a whole `http://` URL as the boot file.
It then fetches that URL itself (no TFTP anywhere), runs the loader, and from there it is
the iPXE path: iPXE DHCPs as iPXE, reads its script and loads the kernel over HTTP.

In proxy mode the address comes from a router's dnsmasq and the URL from pxetui's
address-less offer (edk2 HttpBootDxe's "proxy IP URI" offer): the firmware takes both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dnsmasq_rival import Dnsmasq
from lab import Lab

from e2e.chain import in_order, planned, steps
from pxetui.lab.qemu import Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]
MAC = "52:54:00:4b:e0:01"
PORT = 8080


@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_ovmf_http_boot_client_boots_the_installer_kernel_from_the_url(
    lab: Lab, run_pxetui: Any, tmp_path: Path, mode: str
) -> None:
    spec = VmSpec(name="httpboot", mac=MAC, tap="tap0", network_boot="http")
    if spec.missing():
        pytest.skip(f"needs {', '.join(spec.missing())} (make deps-test)")
    router = Dnsmasq(lab, tmp_path) if mode == "proxy" else None  # addresses only, on its own host
    try:
        args = ("--mode", mode, "--package-proxy", "off", "--plan", planned(tmp_path, MAC))
        pxetui = run_pxetui(*args)
        pxetui.wait_event("service.ready", timeout=30)
        lab.add_tap(spec.tap)
        vm = Vm(spec, lab.server_ns, tmp_path)
        vm.start()
        try:
            seconds = vm.wait_serial("Linux version", timeout=400)
            assert seconds is not None, vm.serial()[-3000:]
            pxetui.wait_event("http.done", mac=MAC, kind="kernel", timeout=30)
        finally:
            vm.stop()
        assert pxetui.stop() == 0
    finally:
        if router is not None:
            router.stop()
    events = [e for e in pxetui.events if e.get("mac") == MAC]
    first = next(e for e in events if e["event"] == "dhcp.discover")
    assert first["arch"] == 16 and first["vendor_class"].startswith("HTTPClient"), first
    url = f"http://{lab.server_ip}:{PORT}/loaders/ipxe.efi"
    offer = next(e for e in events if e["event"] == "dhcp.offer")
    assert offer["file"] == url, offer
    if router is not None:  # the address is the router's; pxetui's offer carried none
        assert MAC in (tmp_path / "dnsmasq.leases").read_text()
        assert not [e for e in events if e["event"] in ("dhcp.offer", "dhcp.ack") and e.get("ip")]
    assert not [e for e in events if e["event"].startswith("tftp.")]  # HTTP from the first byte
    chain = steps(pxetui.events, MAC)
    assert in_order(
        ["dhcp.offer", "http.request:loader", "http.request:script", "http.request:kernel"], chain
    ), chain
    print(f"UEFI HTTP Boot PC ({mode}): power-on to the installer kernel in {seconds:.0f} s")
