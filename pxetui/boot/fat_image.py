"""Copy one file out of a FAT image (a Red Hat tree's images/efiboot.img) with mtools.

Fedora, Rocky and AlmaLinux trees carry their Secure Boot shim and GRUB as
`EFI/BOOT/BOOTX64.EFI` and `EFI/BOOT/grubx64.efi`, but their `.treeinfo` checksums only the
FAT image holding the same files (`images/efiboot.img`). So the image is downloaded and
verified like a kernel, and the loaders are taken out of it here: what comes out of a
verified image is as trustworthy as the image.

mtools (`mcopy -i IMAGE ::PATH`) reads the image without mounting it (no root, no loop
device); it is Debian's `mtools` package. A pure-Python FAT reader would be one more parser
of untrusted-format data to get right (FAT12/16/32, long names); mtools has done it for
decades. The inner path is checked by the profile schema (plain names: no wildcard mtools
would expand, no '-' it would read as an option, no '..'), and mcopy writes into a fresh
private directory, so nothing in the image can choose where a file lands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pxetui.boot.cache import place_extracted, sha256_file
from pxetui.errors import UsageError

MCOPY_SECONDS = 60
MAX_FILE_BYTES = 256 << 20  # a shim or a GRUB is a few MB; an image is tens


class FatImageError(UsageError):
    """The file could not be taken out of the image; the message says which and why."""


def extract_from_fat(image: Path, inner: str, dest: Path, origin: str | None = None) -> str:
    """Copy `inner` out of the FAT `image` to `dest` (via dest.part); mark it; return its sha256.

    FAT names are case-insensitive, and so is mcopy: `EFI/BOOT/grubx64.efi` finds GRUBX64.EFI.
    """
    mcopy = shutil.which("mcopy")
    if mcopy is None:
        raise FatImageError(
            f"cannot take {inner} out of {image.name}: mcopy is not installed (sudo apt-get install mtools)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fat-", dir=dest.parent) as tmp:
        out = Path(tmp) / "file"
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull, "LC_ALL": "C"}
        try:
            done = subprocess.run(
                [mcopy, "-n", "-i", str(image), f"::{inner}", str(out)],
                capture_output=True,
                timeout=MCOPY_SECONDS,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FatImageError(f"cannot take {inner} out of {image}: mcopy: {exc}") from exc
        if done.returncode != 0 or not out.is_file() or out.is_symlink():
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            reason = said[-1] if said else f"mcopy exit status {done.returncode}"
            raise FatImageError(f"{image} has no file {inner} ({reason})")
        if out.stat().st_size > MAX_FILE_BYTES:
            raise FatImageError(f"{inner} in {image} is over {MAX_FILE_BYTES >> 20} MB: not a boot loader")
        sha = sha256_file(out)
        place_extracted(out, dest, sha, origin or f"image:{image.name}:{inner}")
    return sha
