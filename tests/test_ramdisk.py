"""The Secure Boot HTTP Boot disk image (pxetui/boot/ramdisk.py): what is on it, and when a
new one is made. Read back with mtools, as the firmware's FAT driver would see it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pxetui.boot import ramdisk
from pxetui.boot.ramdisk import ImageInputs, RamdiskError, RamdiskImages

pytestmark = pytest.mark.skipif(bool(ramdisk.missing_tools()), reason=f"needs {ramdisk.INSTALL_HINT}")


def loaders(tmp_path: Path, shim: bytes = b"MZ shim", grub: bytes = b"MZ grub") -> ImageInputs:
    (tmp_path / "shim.efi").write_bytes(shim)
    (tmp_path / "grub.efi").write_bytes(grub)
    return ImageInputs(
        "x86_64", tmp_path / "shim.efi", tmp_path / "grub.efi", "debian-installer/amd64/grub", "198.18.7.1"
    )


def read(image: Path, name: str) -> bytes:
    return subprocess.run(["mtype", "-i", str(image), "::" + name], capture_output=True, check=True).stdout


def test_the_image_holds_shim_as_the_removable_loader_its_grub_beside_it_and_a_grub_cfg(
    tmp_path: Path,
) -> None:
    images = RamdiskImages(tmp_path / "state" / "ramdisk")
    image = images.image(loaders(tmp_path))
    assert read(image, "/EFI/BOOT/BOOTX64.EFI") == b"MZ shim"
    assert read(image, "/EFI/BOOT/grubx64.efi") == b"MZ grub"
    cfg = read(image, "/debian-installer/amd64/grub/grub.cfg").decode()
    assert "net_bootp" in cfg and "export net_default_interface" in cfg
    assert "set prefix=(tftp,198.18.7.1)/debian-installer/amd64/grub" in cfg
    assert [p.name for p in image.parent.iterdir()] == [image.name]  # no scratch file left


def test_an_arm64_chain_gets_the_arm64_names() -> None:
    inputs = ImageInputs("arm64", Path("s"), Path("g"), "debian-installer/arm64/grub", "198.18.7.1")
    assert inputs.removable_names == ("BOOTAA64.EFI", "grubaa64.efi")


def test_the_same_chain_is_made_once_and_a_changed_loader_or_address_makes_a_new_image(
    tmp_path: Path,
) -> None:
    images = RamdiskImages(tmp_path / "ramdisk")
    first = images.image(loaders(tmp_path))
    made = first.stat().st_mtime_ns
    assert images.image(loaders(tmp_path)) == first and first.stat().st_mtime_ns == made
    changed = images.image(loaders(tmp_path, grub=b"MZ grub, updated"))
    assert changed != first and read(changed, "/EFI/BOOT/grubx64.efi") == b"MZ grub, updated"
    inputs = loaders(tmp_path)
    moved = ImageInputs(inputs.cpu, inputs.shim, inputs.grub, inputs.grub_prefix, "198.18.7.2")
    assert images.image(moved) not in (first, changed)


def test_a_loader_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    inputs = ImageInputs("x86_64", tmp_path / "gone.efi", tmp_path / "gone2.efi", "grub", "198.18.7.1")
    with pytest.raises(RamdiskError, match="cannot read the chain's loaders"):
        RamdiskImages(tmp_path / "ramdisk").image(inputs)


def test_image_names_in_urls() -> None:
    assert (
        ramdisk.url_path("debian-installer/amd64/bootnetx64.efi")
        == "/ramdisk/debian-installer/amd64/bootnetx64.efi.img"
    )
    assert (
        ramdisk.shim_of("debian-installer/amd64/bootnetx64.efi.img")
        == "debian-installer/amd64/bootnetx64.efi"
    )
    assert ramdisk.shim_of(".img") is None and ramdisk.shim_of("bootnetx64.efi") is None
