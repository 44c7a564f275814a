"""The firmware table: what each DHCP option-93 code means, and what boots on it.

One row per client system architecture (RFC 4578 and the IANA registry): the firmware kind
(BIOS, UEFI, UEFI HTTP), the CPU, the iPXE ${buildarch} that runs there, which profile arches
that PC can start, and which loader files serve it. The DHCP answer, the boot-files catalog,
the registry, the HTTP menu and the TUI's assign form all ask this table, so a new firmware
kind (or a signed loader chain) is added here once. See docs/architecture.md.

Two loader kinds exist: `ipxe` (Debian's iPXE, unsigned) and `signed`, the Secure Boot chain
firmware -> shim (Microsoft-signed) -> GRUB (signed by the distribution) -> the distribution's
signed kernel. A PC with Secure Boot on refuses iPXE, so the rows of UEFI CPUs that a
distribution signs for (x64, arm64) list both; which one a PC gets is the DHCP answer's
choice (`--secure-boot`). The signed chain's file names per CPU are here too: shim loads
GRUB by this very name from the directory it was loaded from.

Codes 7 and 9 both mean x64 UEFI: RFC 4578 lists 7 as "EFI BC" and 9 as "EFI x86-64", its
errata and the IANA registry swap them, and firmware in the field sends either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

BIOS: Final = "bios"
UEFI: Final = "uefi"
FIRMWARES: Final = (BIOS, UEFI)  # the values a profile's `firmware:` lists

# iPXE ${buildarch} values; a profile's `arch:` lists these.
X86_64: Final = "x86_64"
I386: Final = "i386"
ARM64: Final = "arm64"
ARM32: Final = "arm32"  # no profile can name it yet: nothing pxetui serves boots there
PROFILE_ARCHES: Final = (X86_64, I386, ARM64)

# Loader kinds, and the iPXE loader files of Debian's `ipxe` package (or --boot-files).
IPXE: Final = "ipxe"
SIGNED: Final = "signed"  # shim + GRUB + a signed kernel: what boots under Secure Boot
LOADER_KINDS: Final = (IPXE, SIGNED)
BIOS_LOADER: Final = "undionly.kpxe"
UEFI_LOADER: Final = "ipxe.efi"
UEFI_SNP_LOADER: Final = "snponly.efi"
ARM64_LOADERS: Final = ("arm64-efi/ipxe.efi", "ipxe-arm64.efi")
IA32_LOADERS: Final = ("i386-efi/ipxe.efi", "ipxe-ia32.efi")
IPXE_LOADERS: Final = frozenset(
    (BIOS_LOADER, UEFI_LOADER, UEFI_SNP_LOADER, *ARM64_LOADERS, *IA32_LOADERS, "snponly.efi", "ipxe.pxe")
)


@dataclass(frozen=True, slots=True)
class SignedNames:
    """The signed chain's files on one CPU: shim's name for GRUB is compiled into shim."""

    shim: str  # what DHCP names (any name: the firmware loads what it is told)
    grub: str  # what shim asks for next, beside itself
    grub_platform: str  # GRUB's platform directory ($prefix/x86_64-efi/...)


SIGNED_NAMES: Final = {
    X86_64: SignedNames("shimx64.efi", "grubx64.efi", "x86_64-efi"),
    ARM64: SignedNames("shimaa64.efi", "grubaa64.efi", "arm64-efi"),
}


@dataclass(frozen=True, slots=True)
class ClientArch:
    code: int  # DHCP option 93
    name: str  # the registry's name, shown to the operator
    firmware: str  # BIOS or UEFI
    http_boot: bool  # UEFI HTTP Boot: the boot file is a URL, fetched without TFTP
    cpu: str  # what the processor runs
    buildarch: str  # the iPXE build that runs on this firmware
    fits: tuple[str, ...]  # profile arches this PC can start
    loaders: tuple[str, ...]  # iPXE loader files that serve it, best first
    loader_kinds: tuple[str, ...] = (IPXE,)  # what can boot there: ipxe, signed (shim + GRUB)

    @property
    def label(self) -> str:
        """`BIOS`, `UEFI` or `UEFI-HTTP`: the firmware column of the machine table."""
        if self.firmware == BIOS:
            return "BIOS"
        return "UEFI-HTTP" if self.http_boot else "UEFI"


def _row(
    code: int, name: str, firmware: str, http: bool, cpu: str, fits: tuple[str, ...], loaders: tuple[str, ...]
) -> ClientArch:
    # x86 BIOS runs the i386 undionly.kpxe, which starts 32- and 64-bit kernels alike.
    buildarch = I386 if firmware == BIOS else cpu
    kinds = (IPXE, SIGNED) if firmware == UEFI and cpu in SIGNED_NAMES else (IPXE,)
    return ClientArch(code, name, firmware, http, cpu, buildarch, fits, loaders, kinds)


ARCHES: Final[dict[int, ClientArch]] = {
    row.code: row
    for row in (
        _row(0, "x86 BIOS", BIOS, False, X86_64, (X86_64, I386), (BIOS_LOADER,)),
        _row(6, "x86 UEFI", UEFI, False, I386, (I386,), IA32_LOADERS),
        _row(7, "x64 UEFI", UEFI, False, X86_64, (X86_64,), (UEFI_LOADER,)),
        _row(9, "x64 UEFI", UEFI, False, X86_64, (X86_64,), (UEFI_LOADER,)),
        _row(10, "ARM32 UEFI", UEFI, False, ARM32, (), ()),
        _row(11, "ARM64 UEFI", UEFI, False, ARM64, (ARM64,), ARM64_LOADERS),
        _row(15, "x86 UEFI HTTP", UEFI, True, I386, (I386,), IA32_LOADERS),
        _row(16, "x64 UEFI HTTP", UEFI, True, X86_64, (X86_64,), (UEFI_LOADER,)),
        _row(18, "ARM32 UEFI HTTP", UEFI, True, ARM32, (), ()),
        _row(19, "ARM64 UEFI HTTP", UEFI, True, ARM64, (ARM64,), ARM64_LOADERS),
    )
}
HTTP_BOOT_CODES: Final = frozenset(code for code, row in ARCHES.items() if row.http_boot)

# iPXE's ${platform} -> firmware kind, for the menu a running iPXE asks for.
_PLATFORM_FIRMWARE: Final = {"pcbios": BIOS, "efi": UEFI}


def client_arch(code: int | None) -> ClientArch | None:
    return ARCHES.get(code) if code is not None else None


def firmware_label(code: int | None) -> str:
    """`BIOS`, `UEFI`, `UEFI-HTTP`; empty when the PC did not say. Unregistered codes are UEFI."""
    if code is None:
        return ""
    row = ARCHES.get(code)
    return row.label if row is not None else "UEFI"


def arch_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    row = ARCHES.get(code)
    return f"{code} ({row.name if row else 'unregistered'})"


def is_http_boot(code: int) -> bool:
    return code in HTTP_BOOT_CODES


def loader_candidates(code: int, snponly: bool = False) -> tuple[str, ...]:
    """The loader files that would serve option-93 `code`, best first (none: unknown code)."""
    row = ARCHES.get(code)
    if row is None:
        return ()
    if snponly:
        return tuple(UEFI_SNP_LOADER if name == UEFI_LOADER else name for name in row.loaders)
    return row.loaders


def signed_names(code: int | None) -> SignedNames | None:
    """The signed chain's file names for option-93 `code`; None where no signed chain boots."""
    row = ARCHES.get(code) if code is not None else None
    if row is None or SIGNED not in row.loader_kinds:
        return None
    return SIGNED_NAMES.get(row.cpu)


def is_ipxe_loader(name: str) -> bool:
    """Whether a served loader file is iPXE (what a Secure Boot PC refuses), by its name."""
    return name in IPXE_LOADERS or name.rsplit("/", 1)[-1] in IPXE_LOADERS


def expected_loader(code: int, snponly: bool = False) -> str:
    """The loader file to name when none serves `code`."""
    candidates = loader_candidates(code, snponly)
    if candidates:
        return candidates[0]
    return f"a loader for this architecture (pxetui knows none for arch {code})"


def fits(code: int | None, arches: Iterable[str], firmwares: Iterable[str]) -> bool:
    """Whether a PC announcing option-93 `code` can boot a profile of these arches and firmwares.

    A PC that did not say (or sent an unregistered code) fits everything: the operator knows it.
    """
    row = ARCHES.get(code) if code is not None else None
    if row is None:
        return True
    return row.firmware in firmwares and any(a in row.fits for a in arches)


def ipxe_fits(
    buildarch: str, platform: str, long_mode: bool, arches: Iterable[str], firmwares: Iterable[str]
) -> bool:
    """The same question asked by a running iPXE, which knows its ${buildarch} and ${platform}.

    BIOS iPXE is an i386 build; on a CPU with long mode (`cpuid --ext 29`) it starts x86_64 too.
    """
    runs = {buildarch} if buildarch else None
    if runs is not None and long_mode and I386 in runs:
        runs.add(X86_64)
    firmware = _PLATFORM_FIRMWARE.get(platform)
    arch_ok = runs is None or bool(runs & set(arches))
    return arch_ok and (firmware is None or firmware in firmwares)
