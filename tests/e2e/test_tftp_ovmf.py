"""A UEFI PC's own firmware (OVMF's PXE client) loads iPXE from pxetui's TFTP service.

DHCP here is dnsmasq with its TFTP off (`--port=0`, no `--enable-tftp`), pointing the PC at
pxetui's TFTP, so this test needs nothing from pxetui's DHCP service. OVMF asks for
`tsize 0 blksize 1468 windowsize 4`, aborts that probe with error 8, then fetches for real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import need_tools
from lab import Lab, NetnsLoop
from tftp_lab import start_tftp

from pxetui.boot.bootfiles import DEBIAN_IPXE_DIR
from pxetui.lab.qemu import Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]
MAC = "52:54:00:e2:f0:01"


def test_ovmf_loads_ipxe_with_windowsize_4_after_its_size_probe(lab: Lab, tmp_path: Path) -> None:
    need_tools("qemu-system-x86_64", "dnsmasq")
    pc_ip = str(lab.subnet.network_address + 50)
    tap = lab.add_tap("tap0")
    dnsmasq = lab.popen(
        lab.server_ns,
        "dnsmasq", "--keep-in-foreground", "--port=0", "--no-ping", "--bind-interfaces",
        f"--interface={lab.bridge}", f"--dhcp-range={pc_ip},{pc_ip},10m", f"--dhcp-host={MAC},{pc_ip}",
        f"--dhcp-boot=ipxe.efi,,{lab.server_ip}", f"--dhcp-leasefile={tmp_path / 'leases'}",
        f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--log-facility=-",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    vm = Vm(VmSpec(name="uefi", mac=MAC, tap=tap, firmware="uefi", memory_mb=512), lab.server_ns, tmp_path)
    with NetnsLoop(lab.server_ns) as nl:
        server = start_tftp(lab, nl, tmp_path / "state", None)  # Debian's /usr/lib/ipxe
        nl.call(lambda: server.session.registry.set_ip(MAC, pc_ip))
        try:
            vm.start()
            assert server.wait(lambda: bool(server.named("tftp.done", ok=True, probe=None)), timeout=240), (
                [e.to_dict() for e in server.events],
                vm.serial()[-2000:],
            )
        finally:
            vm.stop()
            dnsmasq.terminate()
            dnsmasq.wait(10)
            nl.run(server.service.stop())
    assert len(server.named("tftp.done")) == 2  # exactly the probe and the real fetch
    (probe,) = server.named("tftp.done", probe=True)
    (fetched,) = server.named("tftp.done", probe=None)
    assert probe.mac == fetched.mac == MAC
    assert probe.fields["ok"] is True
    assert fetched.fields["ok"] is True and fetched.fields["file"] == "ipxe.efi"
    assert fetched.fields["blksize"] == 1468 and fetched.fields["windowsize"] == 4
    size = (DEBIAN_IPXE_DIR / "ipxe.efi").stat().st_size
    assert fetched.fields["bytes"] == fetched.fields["total"] == size
    # Its windows left as one segmented send each, and the firmware took the datagrams the
    # kernel cut from them (through the tap) without a single retransmission.
    assert fetched.fields["segmented"] >= size // (1468 * 4) and fetched.fields["retransmits"] == 0
    print("OVMF fetched ipxe.efi:", dict(fetched.fields))
