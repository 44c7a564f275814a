"""A PC whose Secure Boot refuses every loader (issue 15): told apart from a network fault.

Events are built with the services' own constructors, in the order the services send them
for the boots OVMF does: PXE fetches iPXE and is refused, the next try fetches the shim (over
TFTP, or HTTP Boot's disk image) and is refused too, and the PC comes back to DHCP.
tests/e2e/test_secure_boot_refused.py boots OVMF with only a snakeoil key through it.
"""

from __future__ import annotations

import pytest
from dhcp_client import pxe_vendor_class

from pxetui.errors import UsageError
from pxetui.lab.qemu import OVMF_SNAKEOIL_CODE, OVMF_SNAKEOIL_VARS, VmSpec, qemu_command
from pxetui.model.events import DhcpDiscover, Event, HttpDone, HttpRequest, TftpDone, TftpStart
from pxetui.model.registry import (
    ALL_REFUSED,
    IPXE_REFUSED,
    Machine,
    Registry,
    is_shim_loader,
    needs_signed_chain,
)

MAC = "52:54:00:5b:0f:01"
CLIENT = "198.18.9.100"
SHIM = "debian-installer/amd64/bootnetx64.efi"
IMAGE = f"{SHIM}.img"  # what HTTP Boot gets: the chain as a RAM disk (boot/ramdisk.py)


def discover(ts: float, arch: int = 7, *, http: bool = False) -> DhcpDiscover:
    vendor = f"HTTPClient:Arch:{arch:05d}:UNDI:003000" if http else pxe_vendor_class(arch).decode()
    return DhcpDiscover(mac=MAC, ts=ts, arch=arch, vendor_class=vendor)


def start(ts: float, file: str, kind: str | None = None) -> TftpStart:
    return TftpStart(
        mac=MAC, ts=ts, file=file, client=CLIENT, total=10, blksize=1468, windowsize=4, kind=kind
    )


def done(ts: float, file: str, *, sent: int = 10, ok: bool = True, probe: bool = False) -> TftpDone:
    reason = "" if ok else "the client stopped answering"
    return TftpDone(
        mac=MAC, ts=ts, file=file, client=CLIENT, bytes=sent, total=10, rate=1.0, ok=ok, reason=reason,
        probe=probe or None,
    )  # fmt: skip


def fetched(ts: float, file: str) -> list[Event]:
    """A loader over TFTP as the firmware fetches it: the size probe, then the file."""
    return [start(ts, file), done(ts + 0.1, file, probe=True), start(ts + 0.2, file), done(ts + 0.5, file)]


def image_fetched(ts: float) -> list[Event]:
    path = f"/ramdisk/{IMAGE}"
    return [
        HttpRequest(mac=MAC, ts=ts, path=path, kind="loader", file=IMAGE, total=10, client=CLIENT, method="GET"),
        HttpDone(mac=MAC, ts=ts + 1, path=path, kind="loader", file=IMAGE, client=CLIENT, bytes=10, total=10,
                 rate=1.0, ok=True),
    ]  # fmt: skip


def ipxe_refused(registry: Registry) -> Machine:
    """Boot 1's PXE: iPXE fetched and refused; the firmware's HTTP Boot is its next try."""
    feed(registry, discover(1.0), *fetched(2.0, "ipxe.efi"), discover(5.0, 16, http=True))
    machine = registry.get(MAC)
    assert machine is not None and machine.secure_boot == IPXE_REFUSED
    return machine


def feed(registry: Registry, *events: Event) -> None:
    for event in events:
        registry.apply(event)


def test_a_pc_that_refuses_ipxe_and_the_shim_is_marked_with_what_to_change() -> None:
    registry = Registry()
    machine = ipxe_refused(registry)
    feed(registry, *image_fetched(6.0))  # HTTP Boot: the shim's disk image, whole
    assert machine.secure_boot == IPXE_REFUSED and machine.shim_loaded  # pending until it is back
    feed(registry, discover(60.0))  # the next power-on's PXE: nothing was asked after the shim
    assert machine.secure_boot == ALL_REFUSED
    error = machine.last_error or ""
    assert "refused iPXE and the Microsoft-signed shim: its Secure Boot trusts neither" in error
    assert "'Allow Microsoft 3rd Party UEFI CA'" in error and "Secured-core off" in error
    assert (60.0, "secure-boot", "shim refused too: every loader refused") in machine.timeline
    assert needs_signed_chain(machine)  # it goes on getting the shim: the firmware may be changed
    # It refuses again over TFTP: still marked, one timeline step, the advice kept.
    feed(registry, *fetched(61.0, SHIM), discover(70.0, 16, http=True))
    assert machine.secure_boot == ALL_REFUSED and "3rd-party UEFI CA" in (machine.last_error or "")
    assert [d for _, s, d in machine.timeline if s == "secure-boot"] == [
        "iPXE refused",
        "shim refused too: every loader refused",
    ]
    restored = Registry()
    restored.load_document(registry.to_document())
    assert restored.get(MAC).secure_boot == ALL_REFUSED  # type: ignore[union-attr]


def test_a_shim_whose_transfer_stopped_is_a_network_fault_not_a_refusal() -> None:
    registry = Registry()
    machine = ipxe_refused(registry)
    feed(registry, discover(10.0), start(11.0, SHIM), done(40.0, SHIM, sent=4, ok=False), discover(60.0))
    assert machine.secure_boot == IPXE_REFUSED and not machine.shim_loaded
    # A size probe is no fetch either.
    feed(registry, start(61.0, SHIM), done(61.1, SHIM, probe=True), discover(70.0))
    assert machine.secure_boot == IPXE_REFUSED


def test_a_shim_that_asks_for_its_grub_ran_and_clears_the_mark() -> None:
    registry = Registry()
    machine = ipxe_refused(registry)
    feed(registry, *fetched(10.0, SHIM), start(11.0, "debian-installer/amd64/grubx64.efi"), discover(60.0))
    assert machine.secure_boot == IPXE_REFUSED
    # Marked, then the operator allows the third-party CA: the shim runs, the mark goes back.
    feed(registry, *fetched(61.0, SHIM), discover(70.0))
    assert machine.secure_boot == ALL_REFUSED
    feed(registry, *fetched(71.0, SHIM), start(72.0, "grubx64.efi"))
    assert machine.secure_boot == IPXE_REFUSED and needs_signed_chain(machine)
    assert machine.timeline[-1][1:] == ("secure-boot", "shim accepted")
    feed(registry, start(73.0, f"debian-installer/amd64/grub/grub.cfg-{MAC}", kind="script"), discover(300.0))
    assert machine.secure_boot == IPXE_REFUSED


def test_grubs_own_dhcp_after_the_disk_image_is_no_return_of_the_firmware() -> None:
    registry = Registry()
    machine = ipxe_refused(registry)
    feed(registry, *image_fetched(6.0))
    # The image's shim ran its GRUB, whose grub.cfg does `net_bootp` (no vendor class), then TFTP.
    feed(
        registry,
        DhcpDiscover(mac=MAC, ts=8.0),
        start(9.0, "debian-installer/amd64/grub/grub.cfg", kind="script"),
    )
    assert machine.secure_boot == IPXE_REFUSED and not machine.shim_loaded


def test_a_pc_given_only_the_signed_chain_is_told_it_refused_the_shim() -> None:
    registry = Registry()  # --secure-boot signed: iPXE was never offered
    feed(registry, discover(1.0), *fetched(2.0, SHIM), discover(5.0, 16, http=True))
    machine = registry.get(MAC)
    assert machine is not None and machine.secure_boot == ALL_REFUSED
    assert (machine.last_error or "").startswith(
        "Secure Boot: refused the Microsoft-signed shim: its Secure Boot does not trust it; in its firmware setup"
    )


def test_shim_names_are_the_signed_chains_first_loaders_only() -> None:
    for name in (SHIM, IMAGE, "debian/shimx64.efi", "profiles/fedora-41/shimx64.efi", "ipxe-shimx64.efi",
                 "shimaa64.efi"):  # fmt: skip
        assert is_shim_loader(name), name
    for name in (
        "ipxe.efi",
        "grubx64.efi",
        "debian-installer/amd64/grubx64.efi",
        "shimx64.efi.sig",
        "x/grub.cfg",
    ):
        assert not is_shim_loader(name), name


def test_the_lab_builds_a_pc_that_trusts_only_a_snakeoil_key() -> None:
    spec = VmSpec(name="pc", mac=MAC, tap="tap1", secure_boot=True, secure_boot_keys="snakeoil")
    assert spec.flash == (OVMF_SNAKEOIL_CODE, OVMF_SNAKEOIL_VARS)
    cmd = " ".join(qemu_command(spec, OVMF_SNAKEOIL_VARS.parent / "serial", OVMF_SNAKEOIL_VARS))
    assert f"file={OVMF_SNAKEOIL_CODE},readonly=on" in cmd and "smm=on" in cmd
    assert VmSpec(name="pc", mac=MAC, tap="tap1", secure_boot=True).flash != spec.flash
    for wrong in ({"secure_boot_keys": "snakeoil"}, {"secure_boot": True, "secure_boot_keys": "vendor"}):
        with pytest.raises(UsageError):
            VmSpec(name="pc", mac=MAC, tap="tap1", **wrong)  # type: ignore[arg-type]
