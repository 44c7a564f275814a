"""The iPXE boot loaders pxetui hands to firmware, and which one each architecture gets.

Loaders come from `--boot-files DIR`, else Debian's `ipxe` package. The set of files is read
once at start into a catalog (name -> real path); TFTP serves only names in the catalog, so a
request can never name anything else. Debian ships /usr/lib/ipxe/ipxe.efi as a symlink to
/boot/ipxe.efi: links made by the operator or the package are trusted at start, nothing a
client sends is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pxetui.boot import firmware
from pxetui.boot.firmware import BIOS_LOADER, UEFI_LOADER, UEFI_SNP_LOADER
from pxetui.errors import UsageError

DEBIAN_IPXE_DIR = Path("/usr/lib/ipxe")


@dataclass(frozen=True, slots=True)
class BootFiles:
    root: Path
    catalog: dict[str, Path]  # name as requested over TFTP/HTTP -> regular file on disk
    uefi_loader: str = UEFI_LOADER

    def path(self, name: str) -> Path | None:
        return self.catalog.get(name)

    def loader_for_arch(self, arch: int) -> str | None:
        """The file name a PXE client of option-93 `arch` should load, or None if there is none."""
        candidates = firmware.loader_candidates(arch, snponly=self.snponly)
        return next((c for c in candidates if c in self.catalog), None)

    def expected_loader(self, arch: int) -> str:
        """The loader file name that would serve `arch`, to name it when it is missing."""
        return firmware.expected_loader(arch, snponly=self.snponly)

    @property
    def snponly(self) -> bool:
        return self.uefi_loader == UEFI_SNP_LOADER


def find_boot_files(directory: Path | None, snponly: bool = False) -> BootFiles:
    root = directory or DEBIAN_IPXE_DIR
    if not root.is_dir():
        if directory is None:
            raise UsageError(
                f"no boot loaders: {DEBIAN_IPXE_DIR} does not exist. Install Debian's iPXE"
                " with `sudo apt-get install ipxe`, or give a directory with --boot-files DIR"
            )
        raise UsageError(f"--boot-files {directory}: no such directory")
    catalog: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():  # follows links that exist at start; broken links are skipped
            catalog[path.relative_to(root).as_posix()] = path.resolve()
    uefi = UEFI_SNP_LOADER if snponly else UEFI_LOADER
    if BIOS_LOADER not in catalog and uefi not in catalog:
        raise UsageError(
            f"{root} has neither {BIOS_LOADER} nor {uefi}: install Debian's `ipxe` package"
            " or put the iPXE loaders there"
        )
    return BootFiles(root=root, catalog=catalog, uefi_loader=uefi)
