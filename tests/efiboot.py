"""A real FAT `images/efiboot.img` and a real netboot tarball for the tests, as upstream publishes them.

The FAT image (Fedora/Rocky/Alma trees) is built with dosfstools (`mkfs.vfat -C`) and filled
with mtools (`mcopy`), never mounted. The tarball (Ubuntu's `ubuntu-<v>-netboot-amd64.tar.gz`,
members `./amd64/...` as `tar -C tarball .` writes them) is built with Python's tarfile. Their
loaders are Debian's signed shim and network GRUB (the only signed ones on a Debian machine),
standing in for Red Hat's and Canonical's: the container is what upstream checksums, the files
in it are what pxetui must take out.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
GRUB_NET = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")  # prefix /grub
DI_AMD64 = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
IMAGE_KB = 8192


def need_tools() -> None:
    for tool in ("mkfs.vfat", "mcopy"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: make test-deps installs dosfstools and mtools")


def build_efiboot(path: Path, files: dict[str, bytes], kib: int = IMAGE_KB) -> Path:
    """A FAT image at `path` holding `files` ({"EFI/BOOT/BOOTX64.EFI": b"..."})."""
    need_tools()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    subprocess.run(
        ["mkfs.vfat", "-C", "-n", "ANACONDA", str(path), str(kib)], check=True, capture_output=True
    )
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    made: set[str] = set()
    staging = path.with_name(path.name + ".files")
    staging.mkdir(exist_ok=True)
    for n, (inner, data) in enumerate(files.items()):
        parts = inner.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in made:
                subprocess.run(
                    ["mmd", "-i", str(path), f"::{directory}"], check=True, env=env, capture_output=True
                )
                made.add(directory)
        src = staging / str(n)
        src.write_bytes(data)
        subprocess.run(
            ["mcopy", "-i", str(path), str(src), f"::{inner}"], check=True, env=env, capture_output=True
        )
    shutil.rmtree(staging)
    return path


def stand_in_loaders() -> dict[str, bytes]:
    """Debian's signed shim + network GRUB under the names a Red Hat tree's efiboot.img uses."""
    for need in (SHIM, GRUB_NET):
        if not need.is_file():
            pytest.fail(f"{need} is missing: make test-deps installs shim-signed and grub-efi-amd64-signed")
    return {"EFI/BOOT/BOOTX64.EFI": SHIM.read_bytes(), "EFI/BOOT/grubx64.efi": GRUB_NET.read_bytes()}


def ubuntu_netboot_loaders() -> dict[str, bytes]:
    """Debian's signed shim + network GRUB under the names Ubuntu's netboot tarball uses."""
    loaders = stand_in_loaders()
    return {
        "amd64/bootx64.efi": loaders["EFI/BOOT/BOOTX64.EFI"],
        "amd64/grubx64.efi": loaders["EFI/BOOT/grubx64.efi"],
    }


def build_tarball(path: Path, files: dict[str, bytes], extra: tuple[tarfile.TarInfo, ...] = ()) -> Path:
    """A gzip tar at `path`: `files` as regular members `./NAME`, then `extra` headers as given
    (symlinks, hard links, devices, odd names: what a hostile archive could hold)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_760_000_000
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def link_member(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info
