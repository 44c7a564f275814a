"""The boot loaders pxetui hands to firmware, and which one each architecture gets.

iPXE loaders come from `--boot-files DIR`, else Debian's `ipxe` package. The set of files is
read once at start into a catalog (name -> real path); TFTP serves only names in the catalog,
so a request can never name anything else. Debian ships /usr/lib/ipxe/ipxe.efi as a symlink to
/boot/ipxe.efi: links made by the operator or the package are trusted at start, nothing a
client sends is resolved.

Beside iPXE, the Secure Boot chains (`SignedChain`: shim, the GRUB it loads, the directory
GRUB reads its grub.cfg from) are found where Debian installs them, without options: the d-i
netboot image (`debian-installer-12-netboot-amd64`: bootnetx64.efi + grubx64.efi, GRUB's
prefix /debian-installer/amd64/grub), else `shim-signed` + `grub-efi-amd64-signed`
(grubnetx64.efi, prefix /grub); the arm64 pairs likewise. GRUB's prefix and whether it has
the `http` module are read from the GRUB image itself (its module headers), not assumed:
Debian 12's signed GRUB has TFTP only, and under Secure Boot it cannot load modules.

A profile may bring its own loaders (`secure_boot: {vendor, shim, grub}`, fetched and verified
like its kernel): "the first shim decides which vendor may boot", so a Fedora kernel needs
Fedora's shim. `profile_chain` makes a chain of them once both are verified, served under
`profiles/NAME/` (shimx64.efi, grubx64.efi: the names shim asks for); its GRUB reads grub.cfg
under its compiled-in prefix or, as Red Hat's GRUB does on the network, beside itself.
`BootFiles.chain_for` is the one question the DHCP answer asks: the assigned profile's own
chain, else the chain of its vendor, else the default one.

iPXE 2.x's own signed build (`IpxeShim`) is used when the operator puts it in --boot-files:
iPXE's Microsoft-signed shim `ipxe-shimx64.efi` (arm64 `ipxe-shimaa64.efi`) loads only the
iPXE-signed loader named by its own name without `-shim<arch>` (`ipxe.efi`) from the same
directory (ipxe/shim), so the pair must sit side by side: in `x86_64-sb/` / `arm64-sb/` as
iPXE's `ipxeboot.tar.gz` lays them out (looked for first), or at the top of the directory.
A signed iPXE cannot embed a script: it fetches `autoexec.ipxe` from the directory it was
loaded from (iPXE `efi_autoexec.c`), which pxetui renders (`is_autoexec`). Debian does not
package the signed build; nothing is looked for outside --boot-files.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pxetui.boot import firmware
from pxetui.boot.cache import verified_path
from pxetui.boot.firmware import ARM64, BIOS_LOADER, SIGNED_NAMES, UEFI_LOADER, UEFI_SNP_LOADER, X86_64
from pxetui.boot.profiles import Profile
from pxetui.errors import UsageError

DEBIAN_IPXE_DIR = Path("/usr/lib/ipxe")
DEBIAN_VENDOR = "debian"  # a profile's `secure_boot: debian` boots behind Debian's shim
DI_IMAGES = Path("/usr/lib/debian-installer/images")
DEBIAN_ARCHES = {X86_64: ("amd64", "x64"), ARM64: ("arm64", "aa64")}  # cpu -> (Debian arch, EFI suffix)
SHIM_DIR = Path("/usr/lib/shim")
GRUB_SIGNED_DIRS = {
    X86_64: Path("/usr/lib/grub/x86_64-efi-signed"),
    ARM64: Path("/usr/lib/grub/arm64-efi-signed"),
}
# GRUB's image keeps its compiled-in prefix as a module of type 3 (OBJ_TYPE_PREFIX): a header
# {type, size} with the size 8-aligned, then the NUL-terminated path.
_GRUB_PREFIX = re.compile(rb"\x03\x00\x00\x00(.{4})(/[\x21-\x7e]*)\x00", re.S)
_GRUB_HTTP = b"User-Agent: GRUB"  # in GRUB's http module only (grub-core/net/http.c)
MAX_GRUB_BYTES = 64 << 20
PROFILE_LOADERS = "profiles"  # TFTP: profiles/NAME/shimx64.efi, profiles/NAME/grubx64.efi
IPXE_SHIM_SUFFIX = {X86_64: "x64", ARM64: "aa64"}  # ipxe-shim<suffix>.efi (ipxe/shim's names)
IPXE_SB_DIRS = {X86_64: "x86_64-sb", ARM64: "arm64-sb"}  # ipxeboot.tar.gz's directories
AUTOEXEC = "autoexec.ipxe"  # what a signed iPXE fetches beside itself (it cannot embed one)


@dataclass(frozen=True, slots=True)
class IpxeShim:
    """iPXE's signed shim and the signed iPXE it loads, side by side (catalog names)."""

    cpu: str
    shim: str  # what DHCP names: ipxe-shimx64.efi
    loader: str  # what that shim loads from its own directory: ipxe.efi

    @property
    def directory(self) -> str:
        """The catalog directory both live in ("" at the top), where autoexec.ipxe is asked."""
        return self.shim.rpartition("/")[0]

    @property
    def autoexec(self) -> str:
        return f"{self.directory}/{AUTOEXEC}" if self.directory else AUTOEXEC

    def describe(self) -> dict[str, object]:
        return {"cpu": self.cpu, "shim": self.shim, "loader": self.loader, "autoexec": self.autoexec}


@dataclass(frozen=True, slots=True)
class SignedChain:
    """One vendor's Secure Boot chain: shim, the GRUB beside it, where that GRUB reads grub.cfg.

    `shim` and `grub` are catalog names (what DHCP names, what shim asks for next);
    `grub_prefix` is GRUB's compiled-in $prefix without its leading "/", relative to the TFTP
    root, where it asks for `grub.cfg`. `http`: the GRUB can read files over HTTP.
    """

    vendor: str
    cpu: str
    shim: str
    grub: str
    grub_prefix: str
    http: bool = False
    origin: str = ""  # where the files came from, for the operator
    profile: str | None = None  # a profile's own loaders (`secure_boot.shim`); None: a package's

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Where this GRUB asks for grub.cfg: its prefix; a profile's also beside itself."""
        if self.profile is None:
            return (self.grub_prefix,)
        beside = self.grub.rsplit("/", 1)[0]
        return (self.grub_prefix,) if beside == self.grub_prefix else (self.grub_prefix, beside)

    def describe(self) -> dict[str, object]:
        return {
            "vendor": self.vendor,
            "cpu": self.cpu,
            "shim": self.shim,
            "grub": self.grub,
            "grub_prefix": self.grub_prefix,
            "http": self.http,
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class BootFiles:
    root: Path
    catalog: dict[str, Path]  # name as requested over TFTP/HTTP -> regular file on disk
    uefi_loader: str = UEFI_LOADER
    chains: tuple[SignedChain, ...] = field(default=())  # Secure Boot chains, the default first
    ipxe_shims: tuple[IpxeShim, ...] = field(default=())  # iPXE's signed build, one per CPU

    def path(self, name: str) -> Path | None:
        return self.catalog.get(name)

    def loader_for_arch(self, arch: int) -> str | None:
        """The iPXE file a PXE client of option-93 `arch` should load, or None if there is none."""
        candidates = firmware.loader_candidates(arch, snponly=self.snponly)
        return next((c for c in candidates if c in self.catalog), None)

    def chain_for_arch(self, arch: int, vendor: str | None = None) -> SignedChain | None:
        """The signed chain for option-93 `arch` (of `vendor`, else the default one), if any."""
        names = firmware.signed_names(arch)
        if names is None:
            return None
        cpu = firmware.ARCHES[arch].cpu
        return next(
            (c for c in self.chains if c.cpu == cpu and (vendor is None or c.vendor == vendor)),
            None,
        )

    def chain_for(self, arch: int, profile: Profile | None, cache_dir: Path) -> SignedChain | None:
        """The chain a PC of option-93 `arch` assigned `profile` gets (None: none boots it).

        A profile with its own loaders gets those or nothing: another vendor's shim would
        refuse its kernel, so falling back to the default chain would only fail later.
        """
        if profile is not None and profile.own_loaders:
            if firmware.signed_names(arch) is None:
                return None
            chain = profile_chain(profile, cache_dir)
            return chain if chain is not None and chain.cpu == firmware.ARCHES[arch].cpu else None
        return self.chain_for_arch(arch, profile.secure_boot if profile is not None else None)

    def ipxe_shim_for_arch(self, arch: int) -> IpxeShim | None:
        """iPXE's signed shim for option-93 `arch` (a UEFI x64/arm64 PC), if the operator gave it."""
        if firmware.signed_names(arch) is None:
            return None
        cpu = firmware.ARCHES[arch].cpu
        return next((s for s in self.ipxe_shims if s.cpu == cpu), None)

    def is_autoexec(self, name: str) -> bool:
        """`name` is the autoexec.ipxe a signed iPXE asks for beside itself (pxetui renders it)."""
        return any(name == s.autoexec for s in self.ipxe_shims)

    def chain_of(self, name: str) -> SignedChain | None:
        """The chain a served file belongs to (its shim or its GRUB), by catalog name."""
        return next((c for c in self.chains if name in (c.shim, c.grub)), None)

    @property
    def grub_prefixes(self) -> frozenset[str]:
        """Where the chains' GRUBs ask for grub.cfg (catalog-relative directories)."""
        return frozenset(c.grub_prefix for c in self.chains)

    def expected_loader(self, arch: int) -> str:
        """The loader file name that would serve `arch`, to name it when it is missing."""
        return firmware.expected_loader(arch, snponly=self.snponly)

    @property
    def snponly(self) -> bool:
        return self.uefi_loader == UEFI_SNP_LOADER


def grub_facts(path: Path) -> tuple[str | None, bool]:
    """GRUB's compiled-in prefix (None: not a GRUB image) and whether it has the http module."""
    try:
        if path.stat().st_size > MAX_GRUB_BYTES:
            return None, False
        data = path.read_bytes()
    except OSError:
        return None, False
    for match in _GRUB_PREFIX.finditer(data):
        (size,) = struct.unpack("<I", match.group(1))
        prefix = match.group(2)
        if size == (8 + len(prefix) + 1 + 7) // 8 * 8:
            return prefix.decode("ascii"), _GRUB_HTTP in data
    return None, False


_GRUB_FACTS: dict[tuple[Path, int, int], tuple[str | None, bool]] = {}


def _grub_facts_cached(path: Path) -> tuple[str | None, bool]:
    """grub_facts once per file version: the DHCP answer asks on every request of a PC."""
    try:
        st = path.stat()
    except OSError:
        return None, False
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _GRUB_FACTS:
        if len(_GRUB_FACTS) > 256:
            _GRUB_FACTS.clear()
        _GRUB_FACTS[key] = grub_facts(path)
    return _GRUB_FACTS[key]


def profile_chain(profile: Profile, cache_dir: Path) -> SignedChain | None:
    """The chain of `profile`'s own shim and GRUB, once both are verified; None before.

    A GRUB whose prefix cannot be read (not a GRUB image, or one without a prefix) is asked
    for grub.cfg beside itself only.
    """
    if not profile.own_loaders or profile.secure_boot is None:
        return None
    cpu = profile.arch[0]
    names = SIGNED_NAMES.get(cpu)
    shim = verified_path(profile, "shim", cache_dir)
    grub = verified_path(profile, "grub", cache_dir)
    if names is None or shim is None or grub is None:
        return None
    base = f"{PROFILE_LOADERS}/{profile.name}"
    prefix, http = _grub_facts_cached(grub)
    return SignedChain(
        vendor=profile.secure_boot,
        cpu=cpu,
        shim=f"{base}/{names.shim}",
        grub=f"{base}/{names.grub}",
        grub_prefix=(prefix or "").strip("/") or base,
        http=http,
        origin=f"profile {profile.name}: {shim} + {grub}",
        profile=profile.name,
    )


def _chain(
    vendor: str, cpu: str, shim: tuple[str, Path], grub: tuple[str, Path], origin: str
) -> SignedChain | None:
    """A chain from these files, or None when one is missing or GRUB's prefix cannot be read."""
    if not shim[1].is_file() or not grub[1].is_file():
        return None
    prefix, http = grub_facts(grub[1])
    if prefix is None or not prefix.strip("/"):
        return None
    return SignedChain(vendor, cpu, shim[0], grub[0], prefix.strip("/"), http, origin)


def _installer_chains(images: Path) -> Iterable[tuple[SignedChain, dict[str, Path]]]:
    """Debian's d-i netboot images (newest release first): shim bootnetx64.efi + grubx64.efi."""
    releases = sorted((p for p in images.glob("*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for cpu, (deb_arch, suffix) in DEBIAN_ARCHES.items():
        for release in releases:
            home = release / deb_arch / "text" / "debian-installer" / deb_arch
            base = f"debian-installer/{deb_arch}"
            shim = (f"{base}/bootnet{suffix}.efi", home / f"bootnet{suffix}.efi")
            grub = (f"{base}/{SIGNED_NAMES[cpu].grub}", home / SIGNED_NAMES[cpu].grub)
            chain = _chain(DEBIAN_VENDOR, cpu, shim, grub, str(home))
            if chain is not None:
                yield chain, {shim[0]: shim[1].resolve(), grub[0]: grub[1].resolve()}
                break


def _package_chains(
    shim_dir: Path, grub_dirs: dict[str, Path]
) -> Iterable[tuple[SignedChain, dict[str, Path]]]:
    """`shim-signed` + `grub-efi-*-signed`: shimx64.efi.signed + grubnetx64.efi.signed."""
    for cpu, (_, suffix) in DEBIAN_ARCHES.items():
        names = SIGNED_NAMES[cpu]
        shim = (f"debian/{names.shim}", shim_dir / f"shim{suffix}.efi.signed")
        grub = (f"debian/{names.grub}", grub_dirs[cpu] / f"grubnet{suffix}.efi.signed")
        chain = _chain(DEBIAN_VENDOR, cpu, shim, grub, f"{shim[1]} + {grub[1]}")
        if chain is not None:
            yield chain, {shim[0]: shim[1].resolve(), grub[0]: grub[1].resolve()}


def find_ipxe_shims(catalog: dict[str, Path], snponly: bool = False) -> tuple[IpxeShim, ...]:
    """iPXE's signed shims in the catalog whose signed iPXE lies beside them, one per CPU.

    `x86_64-sb/ipxe-shimx64.efi` (iPXE's release layout) before a top-level one, then any
    other directory; `snponly-shim*.efi` before `ipxe-shim*.efi` under --snponly.
    """
    found: list[IpxeShim] = []
    preferred = ("snponly", "ipxe") if snponly else ("ipxe", "snponly")
    for cpu, suffix in IPXE_SHIM_SUFFIX.items():
        tail = f"-shim{suffix}.efi"
        candidates: list[tuple[tuple[int, int, str], IpxeShim]] = []
        for name in catalog:
            directory, _, base = name.rpartition("/")
            if not base.endswith(tail) or len(base) == len(tail):
                continue
            stem = base[: -len(tail)]
            loader = f"{directory}/{stem}.efi" if directory else f"{stem}.efi"
            if loader not in catalog:
                continue  # the shim would find nothing to load
            where = 0 if directory == IPXE_SB_DIRS[cpu] else 1 if not directory else 2
            rank = preferred.index(stem) if stem in preferred else len(preferred)
            candidates.append(((where, rank, name), IpxeShim(cpu, name, loader)))
        if candidates:
            found.append(min(candidates, key=lambda c: c[0])[1])
    return tuple(found)


def find_signed_chains(
    images: Path = DI_IMAGES, shim_dir: Path = SHIM_DIR, grub_dirs: dict[str, Path] | None = None
) -> tuple[tuple[SignedChain, ...], dict[str, Path]]:
    """Debian's Secure Boot chains where its packages put them, the d-i image's first per CPU."""
    chains: list[SignedChain] = []
    files: dict[str, Path] = {}
    found = [*_installer_chains(images), *_package_chains(shim_dir, grub_dirs or GRUB_SIGNED_DIRS)]
    for chain, chain_files in found:
        chains.append(chain)
        files.update(chain_files)
    return tuple(chains), files


def find_boot_files(
    directory: Path | None,
    snponly: bool = False,
    chains: tuple[tuple[SignedChain, ...], dict[str, Path]] | None = None,
) -> BootFiles:
    """The catalog: iPXE loaders (from `directory`, else Debian's) and the signed chains.

    `chains` defaults to what `find_signed_chains()` finds on this machine.
    """
    signed, signed_files = chains if chains is not None else find_signed_chains()
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
    ipxe_shims = find_ipxe_shims(catalog, snponly)
    if BIOS_LOADER not in catalog and uefi not in catalog and not ipxe_shims:
        raise UsageError(
            f"{root} has neither {BIOS_LOADER} nor {uefi}: install Debian's `ipxe` package"
            " or put the iPXE loaders there"
        )
    for name, path in signed_files.items():
        catalog.setdefault(name, path)  # a file of the operator's own of that name wins
    return BootFiles(root=root, catalog=catalog, uefi_loader=uefi, chains=signed, ipxe_shims=ipxe_shims)
