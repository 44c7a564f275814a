"""Secure Boot: the signed chain (shim -> GRUB -> signed kernel) beside iPXE.

Pure parts first (the firmware table, finding the chains, which loader DHCP names, the
"iPXE refused" rule, grub.cfg names and text, a profile's own shim + GRUB), then the TFTP
service answering GRUB with a real TFTP client (tftp-hpa) in a lab namespace, and `pxetui
fetch` verifying a profile's loaders from a lab mirror. tests/e2e/test_secure_boot.py boots
OVMF's Secure Boot firmware through all of it, tests/e2e/test_arm64.py AAVMF's.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import need_tools
from dhcp_client import ZERO_UUID, pxe_vendor_class
from lab import Lab, NetnsLoop
from scapy.layers.dhcp import BOOTP, DHCP
from test_fetch import Mirror, RecordingProgress, mirror_loop, sha  # noqa: F401  (mirror_loop: a fixture)
from tftp_lab import TftpServer, lab_service_context, running_tftp

from pxetui.boot import firmware
from pxetui.boot.bootfiles import (
    BootFiles,
    SignedChain,
    find_boot_files,
    find_signed_chains,
    grub_facts,
    profile_chain,
)
from pxetui.boot.grub_config import GrubRenderer, cmdline_words, grub_word, parse_name
from pxetui.boot.profiles import Profile, ProfileError, load_profile, parse_profile
from pxetui.commands.fetch import ChecksumMismatch, fetch_profiles
from pxetui.errors import UsageError
from pxetui.lab.qemu import AAVMF_CODE, AAVMF_SB_VARS, OVMF_SB_CODE, VmSpec, qemu_command
from pxetui.model.events import DhcpDiscover, Event, HttpDone, TftpDone, TftpStart
from pxetui.model.registry import IPXE_REFUSED, Registry, Stage, needs_signed_chain
from pxetui.services.context import ServiceSettings
from pxetui.services.dhcp import codec
from pxetui.services.dhcp.answer import ServerFacts, answer, chain_kind
from pxetui.services.dhcp.leases import LeasePool
from pxetui.session import SessionConfig

MAC = "52:54:00:5b:00:01"
OTHER = "52:54:00:5b:00:02"
SERVER = ipaddress.IPv4Interface("198.18.9.1/24")
HTTP = "http://198.18.9.1:8080"
DI_AMD64 = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")


def fake_grub(prefix: str, http: bool = False) -> bytes:
    """Bytes shaped like a GRUB image: a config module, then the prefix module (type 3)."""
    config = b"normal (memdisk)/grub.cfg\n\x00"
    prefix_bytes = prefix.encode() + b"\x00"
    size = (8 + len(prefix_bytes) + 7) // 8 * 8
    body = b"MZ" + b"\x00" * 64 + struct.pack("<II", 2, 8 + len(config)) + config
    body += struct.pack("<II", 3, size) + prefix_bytes.ljust(size - 8, b"\x00")
    return body + (b"User-Agent: GRUB 2.12\r\n" if http else b"") + b"\x00" * 64


def debian_layout(root: Path, *, installer: bool = True, packages: bool = True) -> dict[str, Path]:
    """Debian's places for the chains, under `root`: the d-i image and shim-signed + grub-*-signed."""
    paths = {
        "images": root / "images",
        "shim": root / "shim",
        "grub": root / "grub-x86_64-efi-signed",
        "grub_arm": root / "grub-arm64-efi-signed",
    }
    for path in paths.values():
        path.mkdir(parents=True)
    if installer:
        home = paths["images"] / "12" / "amd64" / "text" / "debian-installer" / "amd64"
        home.mkdir(parents=True)
        (home / "bootnetx64.efi").write_bytes(b"MZ shim")
        (home / "grubx64.efi").write_bytes(fake_grub("/debian-installer/amd64/grub"))
    if packages:
        (paths["shim"] / "shimx64.efi.signed").write_bytes(b"MZ shim")
        (paths["grub"] / "grubnetx64.efi.signed").write_bytes(fake_grub("/grub"))
    return paths


def chains_in(paths: dict[str, Path]) -> tuple[tuple[SignedChain, ...], dict[str, Path]]:
    return find_signed_chains(
        paths["images"], paths["shim"], {firmware.X86_64: paths["grub"], firmware.ARM64: paths["grub_arm"]}
    )


def loaders(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "loaders"
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"MZ loader")
    return root


# -- the firmware table and the chains ------------------------------------------------------


def test_the_table_lists_the_signed_chain_for_x64_and_arm64_uefi_only() -> None:
    for code in (7, 9, 16):
        names = firmware.signed_names(code)
        assert names is not None and (names.grub, names.grub_platform) == ("grubx64.efi", "x86_64-efi")
        assert firmware.ARCHES[code].loader_kinds == (firmware.IPXE, firmware.SIGNED)
    for code in (11, 19):
        names = firmware.signed_names(code)
        assert names is not None and names.grub == "grubaa64.efi"
    for code in (0, 6, 10, 15, 18, 4242, None):
        assert firmware.signed_names(code) is None  # BIOS, ia32 and arm32 have no signed chain
    assert firmware.is_ipxe_loader("ipxe.efi") and firmware.is_ipxe_loader("arm64-efi/ipxe.efi")
    assert not firmware.is_ipxe_loader("debian-installer/amd64/bootnetx64.efi")


def test_grub_prefix_and_http_module_are_read_from_the_image(tmp_path: Path) -> None:
    image = tmp_path / "grub.efi"
    image.write_bytes(fake_grub("/EFI/ubuntu", http=True))
    assert grub_facts(image) == ("/EFI/ubuntu", True)
    image.write_bytes(b"MZ" + b"\x03\x00\x00\x00\x40\x00\x00\x00/not/a/prefix\x00")  # size does not fit
    assert grub_facts(image) == (None, False)
    assert grub_facts(tmp_path / "missing.efi") == (None, False)
    if (DI_AMD64 / "grubx64.efi").is_file():  # Debian's own signed GRUB: TFTP only
        assert grub_facts(DI_AMD64 / "grubx64.efi") == ("/debian-installer/amd64/grub", False)


def test_chains_are_found_where_debian_installs_them_installer_image_first(tmp_path: Path) -> None:
    paths = debian_layout(tmp_path / "debian")
    chains, files = chains_in(paths)
    assert [(c.shim, c.grub, c.grub_prefix, c.vendor) for c in chains] == [
        (
            "debian-installer/amd64/bootnetx64.efi",
            "debian-installer/amd64/grubx64.efi",
            "debian-installer/amd64/grub",
            "debian",
        ),
        ("debian/shimx64.efi", "debian/grubx64.efi", "grub", "debian"),
    ]
    assert all(not c.http for c in chains)
    boot = find_boot_files(loaders(tmp_path, "ipxe.efi", "debian/shimx64.efi"), chains=(chains, files))
    assert boot.chain_for_arch(7) == chains[0] and boot.chain_for_arch(16) == chains[0]
    assert boot.chain_for_arch(0) is None and boot.chain_for_arch(11) is None  # no arm64 chain here
    assert boot.chain_for_arch(7, "fedora") is None  # the first shim decides the vendor
    assert boot.catalog["debian-installer/amd64/grubx64.efi"] == files["debian-installer/amd64/grubx64.efi"]
    assert (
        boot.catalog["debian/shimx64.efi"] == tmp_path / "loaders" / "debian/shimx64.efi"
    )  # the operator's wins
    assert boot.grub_prefixes == {"debian-installer/amd64/grub", "grub"}
    # Without the d-i image, the packages' pair; without either, no chain at all.
    assert [c.grub_prefix for c in chains_in(debian_layout(tmp_path / "p", installer=False))[0]] == ["grub"]
    assert chains_in(debian_layout(tmp_path / "none", installer=False, packages=False)) == ((), {})


# -- which loader DHCP names ----------------------------------------------------------------


def test_chain_kind_rules() -> None:
    assert chain_kind("ipxe", True, True, True) == "ipxe"  # the operator said iPXE
    assert chain_kind("ipxe", False, False, True) is None
    assert chain_kind("auto", False, True, True) == "ipxe"  # iPXE first
    assert chain_kind("auto", True, True, True) == "signed"  # its firmware refused iPXE
    assert chain_kind("auto", True, True, False) == "ipxe"  # no chain: nothing better to give
    assert chain_kind("auto", False, False, True) == "signed"  # no iPXE for it (Debian arm64)
    assert chain_kind("signed", False, True, True) == "signed"
    assert chain_kind("signed", False, True, False) == "ipxe"  # BIOS, ia32: iPXE still


def pxe_discover(arch: int, vendor: bytes | None = None, mac: str = MAC) -> codec.Packet:
    options = [
        ("message-type", "discover"),
        (93, arch.to_bytes(2, "big")),
        (60, vendor or pxe_vendor_class(arch)),
        (97, ZERO_UUID),
        "end",
    ]
    raw = bytes(
        BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=7, flags=0x8000) / DHCP(options=options)
    )
    return codec.decode(raw)


def facts(tmp_path: Path, mode: str, refused: bool, *, http: bool = False, ipxe: bool = True) -> ServerFacts:
    root = loaders(tmp_path, "undionly.kpxe", *(("ipxe.efi",) if ipxe else ()))
    chain = SignedChain("debian", firmware.X86_64, "debian/shimx64.efi", "debian/grubx64.efi", "grub", http)
    boot = BootFiles(root=root, catalog=find_boot_files(root).catalog, chains=(chain,))
    return boot_facts(boot, mode, refused)


def boot_facts(boot: BootFiles, mode: str, refused: bool) -> ServerFacts:
    """What the DHCP service knows, for `boot`'s loaders; `refused`: the PC refused iPXE."""

    def ipxe_shim(arch: int) -> str | None:
        shim = boot.ipxe_shim_for_arch(arch)
        return shim.shim if shim else None

    return ServerFacts(
        mode="full",
        server_ip=SERVER.ip,
        network=SERVER.network,
        http_base=HTTP,
        loader_for_arch=boot.loader_for_arch,
        expected_loader=boot.expected_loader,
        secure_boot=mode,
        signed_loader=lambda mac, arch: (c.shim, c.http) if (c := boot.chain_for_arch(arch)) else None,
        needs_signed=lambda mac: refused,
        ipxe_shim=ipxe_shim,
    )


def offered(packet: codec.Packet, server_facts: ServerFacts) -> str | None:
    pool = LeasePool(ipaddress.IPv4Address("198.18.9.100"), ipaddress.IPv4Address("198.18.9.200"))
    result = answer(packet, 67, server_facts, pool)
    assert result.kind == "offer", result
    return result.file


def test_the_dhcp_answer_names_the_shim_to_a_pc_that_refused_ipxe(tmp_path: Path) -> None:
    uefi = pxe_discover(7)
    assert offered(uefi, facts(tmp_path / "a", "auto", refused=False)) == "ipxe.efi"
    assert offered(uefi, facts(tmp_path / "b", "auto", refused=True)) == "debian/shimx64.efi"
    assert offered(uefi, facts(tmp_path / "c", "signed", refused=False)) == "debian/shimx64.efi"
    assert offered(uefi, facts(tmp_path / "d", "ipxe", refused=True)) == "ipxe.efi"
    # A BIOS PC has no signed chain: iPXE in every mode.
    assert offered(pxe_discover(0), facts(tmp_path / "e", "signed", refused=True)) == "undionly.kpxe"
    # UEFI HTTP boot: shim by URL would fetch a GRUB that reads TFTP only, so the chain as a
    # disk image (boot/ramdisk.py); a GRUB with http gets the shim's URL; not refused: iPXE.
    http_boot = pxe_discover(16, b"HTTPClient:Arch:00016:UNDI:003000")
    image = f"{HTTP}/ramdisk/debian/shimx64.efi.img"
    assert offered(http_boot, facts(tmp_path / "f", "auto", refused=True)) == image
    assert offered(http_boot, facts(tmp_path / "f2", "auto", refused=False)) == f"{HTTP}/loaders/ipxe.efi"
    with_http = facts(tmp_path / "g", "auto", refused=True, http=True)
    assert offered(http_boot, with_http) == f"{HTTP}/loaders/debian/shimx64.efi"
    # No iPXE for the PC at all: the signed chain is the way, even in auto.
    assert offered(uefi, facts(tmp_path / "h", "auto", refused=False, ipxe=False)) == "debian/shimx64.efi"


def test_secure_boot_mode_is_checked() -> None:
    assert ServiceSettings(secure_boot="signed").secure_boot == "signed"
    with pytest.raises(UsageError, match="--secure-boot must be one of auto, signed, ipxe"):
        ServiceSettings(secure_boot="on")


# -- "Secure Boot: iPXE refused" ------------------------------------------------------------


def feed(registry: Registry, *events: Event) -> None:
    for event in events:
        registry.apply(event)


def pxe(arch: int = 7, *, ipxe: bool = False, vendor: str | None = None) -> DhcpDiscover:
    return DhcpDiscover(
        mac=MAC,
        arch=arch,
        vendor_class=vendor or ("iPXE" if ipxe else pxe_vendor_class(arch).decode()),
        user_class="iPXE" if ipxe else None,
        ipxe=True if ipxe else None,
    )


def loader_done(file: str = "ipxe.efi", *, probe: bool = False) -> TftpDone:
    return TftpDone(
        mac=MAC,
        file=file,
        client="198.18.9.100",
        bytes=10,
        total=10,
        rate=1.0,
        ok=True,
        reason="",
        probe=probe or None,
    )


def test_a_pc_back_without_ipxe_after_fetching_it_is_marked_and_stays_marked() -> None:
    registry = Registry()
    feed(registry, pxe(), loader_done(probe=True), loader_done())
    machine = registry.get(MAC)
    assert machine is not None and machine.secure_boot is None
    assert needs_signed_chain(machine)  # asked while its next DISCOVER is being answered
    feed(registry, pxe(16, vendor="HTTPClient:Arch:00016:UNDI:003000"))  # the firmware's next try
    assert machine.secure_boot == IPXE_REFUSED and "iPXE refused" in (machine.last_error or "")
    assert "secure-boot" in [step for _, step, _ in machine.timeline]
    # The signed chain boots; later boots keep the mark (saved with the machine).
    feed(registry, pxe(), loader_done("debian-installer/amd64/bootnetx64.efi"), pxe())
    assert needs_signed_chain(machine)
    restored = Registry()
    restored.load_document(registry.to_document())
    assert needs_signed_chain(restored.get(MAC))


def test_a_pc_whose_ipxe_runs_is_not_marked() -> None:
    registry = Registry()
    feed(registry, pxe(), loader_done(), pxe(ipxe=True), pxe())  # iPXE spoke, then a reboot
    assert not needs_signed_chain(registry.get(MAC))
    # A size probe alone is no fetch; HTTP boot's loader counts like TFTP's.
    other = Registry()
    feed(other, pxe(), loader_done(probe=True), pxe())
    assert not needs_signed_chain(other.get(MAC))
    by_http = HttpDone(
        mac=MAC, path="/loaders/ipxe.efi", kind="loader", file="ipxe.efi", bytes=1, total=1, rate=0, ok=True
    )
    feed(other, pxe(16, vendor="HTTPClient:Arch:00016:UNDI:003000"), by_http, pxe())
    assert other.get(MAC).secure_boot == IPXE_REFUSED  # type: ignore[union-attr]


def test_tftp_kinds_move_the_stages_as_http_kinds_do() -> None:
    registry = Registry()
    feed(registry, pxe())

    def start(file: str, kind: str | None) -> Stage:
        feed(
            registry, TftpStart(mac=MAC, file=file, client="c", total=1, blksize=512, windowsize=1, kind=kind)
        )
        return registry.get(MAC).stage  # type: ignore[union-attr]

    assert start("debian-installer/amd64/bootnetx64.efi", None) is Stage.LOADER
    assert start("debian-installer/amd64/grub/grub.cfg", "script") is Stage.MENU
    assert start("files/debian-12-local/kernel", "kernel") is Stage.KERNEL
    assert start("files/debian-12-local/initrd", "initrd") is Stage.INITRD
    assert (
        TftpStart(mac=MAC, file="x", client="c", total=1, blksize=512, windowsize=1).to_json().count("kind")
        == 0
    )


# -- grub.cfg names and text ----------------------------------------------------------------


def test_grub_names_are_split_never_joined() -> None:
    prefixes = {"debian-installer/amd64/grub", "grub"}
    assert parse_name("debian-installer/amd64/grub/grub.cfg", prefixes).what == "bootstrap"  # type: ignore[union-attr]
    machine = parse_name(f"grub/grub.cfg-{MAC.upper()}", prefixes)
    assert machine is not None and (machine.what, machine.mac, machine.prefix) == ("machine", MAC, "grub")
    select = parse_name(f"grub/select/{MAC}/debian-12-local", prefixes)
    assert select is not None and (select.what, select.mac, select.choice) == (
        "select",
        MAC,
        "debian-12-local",
    )
    kernel = parse_name("files/debian-12-local/kernel", prefixes)
    assert kernel is not None and (kernel.what, kernel.profile, kernel.role) == (
        "file",
        "debian-12-local",
        "kernel",
    )
    for name in (
        "grub/grub.cfg-not-a-mac",
        "files/debian-12-local/../../etc/passwd",
        "files/debian-12-local/secret",
        "other/grub.cfg",
        f"grub/select/{MAC}/",
        "grub/x86_64-efi/command.lst",
    ):
        assert parse_name(name, prefixes) is None, name


def test_grub_text_is_quoted_word_by_word() -> None:
    assert grub_word("it's $HOME") == "'it'\\''s $HOME'"
    assert grub_word("two\nlines") == "'two lines'"
    assert cmdline_words('auto=true "a b" url=http://x/y') == ["auto=true", "a b", "url=http://x/y"]
    profile = parse_profile(
        Path("/p/x.yaml"),
        {"name": "deb", "title": "Deb's installer", "kernel": {"path": "/k"}, "initrd": {"path": "/i"}},
    )
    text = GrubRenderer().boot(profile, MAC, "pc-01", "auto=true url=http://h:8080/config/x $oops")
    linux = next(line for line in text.splitlines() if line.startswith("linux "))
    assert linux == "linux /files/deb/kernel 'auto=true' 'url=http://h:8080/config/x' '$oops'"
    assert "initrd /files/deb/initrd" in text and "\nboot\n" in text
    menu = GrubRenderer().menu(MAC, "debian", [profile], timeout_seconds=0)
    assert "set timeout=-1" in menu and "set default=local" in menu
    assert f'configfile "$prefix/select/{MAC}/-local"' in menu
    assert f'configfile "$prefix/select/{MAC}/deb"' in menu and "'Deb'\\''s installer'" in menu


def test_secure_boot_profile_key() -> None:
    doc = {"name": "d", "title": "D", "kernel": {"path": "/k"}, "secure_boot": "debian"}
    assert parse_profile(Path("/p/d.yaml"), doc).secure_boot == "debian"
    with pytest.raises(ProfileError, match="'secure_boot' must name the vendor"):
        parse_profile(Path("/p/d.yaml"), {**doc, "secure_boot": ["debian"]})
    with pytest.raises(ProfileError, match="needs a 'kernel'"):
        parse_profile(
            Path("/p/d.yaml"), {"name": "l", "title": "L", "action": "local", "secure_boot": "debian"}
        )


def own_loaders_doc(home: Path, name: str = "fedora-own", **loaders: object) -> dict[str, object]:
    """A profile with its own Secure Boot loaders (fake files under `home`, `path:` refs)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "BOOTX64.EFI").write_bytes(b"MZ fedora shim")
    (home / "grubx64.efi").write_bytes(fake_grub("/EFI/fedora"))
    (home / "vmlinuz").write_bytes(b"fedora kernel")
    secure_boot = {
        "vendor": "fedora",
        "shim": {"path": str(home / "BOOTX64.EFI")},
        "grub": {"path": str(home / "grubx64.efi")},
        **loaders,
    }
    return {
        "name": name,
        "title": "Fedora with its own shim",
        "arch": ["x86_64"],
        "firmware": ["uefi"],
        "kernel": {"path": str(home / "vmlinuz")},
        "secure_boot": secure_boot,
    }


def test_a_profile_names_its_own_shim_and_grub_checked_like_its_files(tmp_path: Path) -> None:
    source = tmp_path / "p.yaml"
    profile = parse_profile(source, own_loaders_doc(tmp_path))
    assert profile.secure_boot == "fedora" and profile.own_loaders
    assert profile.files["shim"].path == str(tmp_path / "BOOTX64.EFI")  # fetched and verified as files
    shim = {"url": "https://dl.example/os/EFI/BOOT/BOOTX64.EFI", "sha256": "ab" * 32}
    assert parse_profile(source, own_loaders_doc(tmp_path, shim=shim)).files["shim"].url == shim["url"]
    assert not parse_profile(source, {**own_loaders_doc(tmp_path), "secure_boot": "fedora"}).own_loaders
    for change, error in (
        ({"grub": None}, "needs 'shim' and 'grub'"),
        ({"vendor": None}, "'secure_boot.vendor' is missing"),
        ({"mok": {"path": "/m"}}, "unknown key 'secure_boot.mok'"),
        ({"shim": {"url": "ftp://x/shim.efi"}}, "'secure_boot.shim.url' must be an http"),
        ({"shim": {"path": "/a/vmlinuz"}, "grub": {"url": "https://x/vmlinuz", "sha256": "ab" * 32}}, None),
    ):
        doc = own_loaders_doc(tmp_path)
        loaders = {k: v for k, v in {**doc["secure_boot"], **change}.items() if v is not None}  # type: ignore[dict-item]
        doc["secure_boot"] = loaders
        if error is None:
            parse_profile(source, doc)  # paths may share a basename: they are not in the cache
            continue
        with pytest.raises(ProfileError, match=error):
            parse_profile(source, doc)
    with pytest.raises(ProfileError, match="exactly one 'arch'"):
        parse_profile(source, {**own_loaders_doc(tmp_path), "arch": ["x86_64", "arm64"]})
    kernel_url = {"url": "https://x/grubx64.efi", "sha256": "cd" * 32}
    grub_url = {"url": "https://y/grubx64.efi", "sha256": "ab" * 32}
    with pytest.raises(ProfileError, match="share one name in the cache"):
        parse_profile(source, {**own_loaders_doc(tmp_path, grub=grub_url), "kernel": kernel_url})


def fedora_profile(tmp_path: Path, **loaders: object) -> Profile:
    return parse_profile(tmp_path / "fedora-own.yaml", own_loaders_doc(tmp_path / "fedora", **loaders))


def test_a_profile_with_its_own_loaders_gets_its_chain_or_none(tmp_path: Path) -> None:
    paths = debian_layout(tmp_path / "debian")
    boot = find_boot_files(loaders(tmp_path, "ipxe.efi"), chains=chains_in(paths))
    cache = tmp_path / "cache"
    fedora = fedora_profile(tmp_path)
    chain = boot.chain_for(7, fedora, cache)
    assert chain is not None and chain == profile_chain(fedora, cache)
    assert (chain.vendor, chain.shim, chain.grub, chain.profile) == (
        "fedora",
        "profiles/fedora-own/shimx64.efi",  # the names shim asks for, under the profile's own directory
        "profiles/fedora-own/grubx64.efi",
        "fedora-own",
    )
    # Its GRUB's compiled-in prefix, and beside itself (Red Hat's GRUB reads grub.cfg there).
    assert chain.prefixes == ("EFI/fedora", "profiles/fedora-own")
    assert boot.chain_for(9, fedora, cache) == chain and boot.chain_for(16, fedora, cache) == chain
    assert boot.chain_for(11, fedora, cache) is None and boot.chain_for(0, fedora, cache) is None
    # Not verified yet (a URL never fetched): no chain at all, not Debian's, whose shim would
    # refuse the Fedora kernel.
    unfetched = fedora_profile(
        tmp_path / "u", shim={"url": "https://dl.example/EFI/BOOT/BOOTX64.EFI", "sha256": "ab" * 32}
    )
    assert boot.chain_for(7, unfetched, cache) is None
    # A profile without loaders of its own: its vendor's chain; unassigned: the default.
    debian = parse_profile(
        tmp_path / "d.yaml", {"name": "d", "title": "D", "kernel": {"path": "/k"}, "secure_boot": "debian"}
    )
    assert boot.chain_for(7, debian, cache) == boot.chains[0] == boot.chain_for(7, None, cache)


def test_a_profiles_loaders_are_fetched_and_verified_like_its_kernel(
    mirror_loop: tuple[NetnsLoop, Mirror],  # noqa: F811  (the fixture imported from test_fetch)
    tmp_path: Path,
) -> None:
    nl, mirror = mirror_loop
    files = {
        "os/images/pxeboot/vmlinuz": b"a signed kernel",
        "os/EFI/BOOT/BOOTX64.EFI": b"MZ the vendor's shim",
        "os/EFI/BOOT/grubx64.efi": fake_grub("/EFI/fedora"),
    }
    mirror.files.update(files)
    wrong = sha(b"not this grub")

    def profile(grub_sha: str) -> Profile:
        source = tmp_path / "profiles" / "fedora-net.yaml"
        source.parent.mkdir(exist_ok=True)
        source.write_text(
            "name: fedora-net\ntitle: Fedora\narch: [x86_64]\n"
            f"kernel: {{url: '{mirror.url('os/images/pxeboot/vmlinuz')}', sha256: {sha(files['os/images/pxeboot/vmlinuz'])}}}\n"
            "secure_boot:\n  vendor: fedora\n"
            f"  shim: {{url: '{mirror.url('os/EFI/BOOT/BOOTX64.EFI')}', sha256: {sha(files['os/EFI/BOOT/BOOTX64.EFI'])}}}\n"
            f"  grub: {{url: '{mirror.url('os/EFI/BOOT/grubx64.efi')}', sha256: {grub_sha}}}\n"
        )
        return load_profile(source)

    cache = tmp_path / "cache"
    bad = profile(wrong)
    assert profile_chain(bad, cache) is None  # nothing fetched: no chain
    with pytest.raises(ChecksumMismatch, match="fedora-net grub: checksum mismatch"):
        nl.run(fetch_profiles([bad], cache, RecordingProgress()))
    assert profile_chain(bad, cache) is None  # a GRUB that fails its checksum is never served
    good = profile(sha(files["os/EFI/BOOT/grubx64.efi"]))
    results = nl.run(fetch_profiles([good], cache, RecordingProgress()))
    assert {r.role for r in results} == {"kernel", "shim", "grub"}
    chain = profile_chain(good, cache)
    assert chain is not None and chain.prefixes == ("EFI/fedora", "profiles/fedora-net")
    assert (cache / "fedora-net" / "BOOTX64.EFI").read_bytes() == files["os/EFI/BOOT/BOOTX64.EFI"]


def test_the_dhcp_answer_names_the_assigned_profiles_own_shim(tmp_path: Path) -> None:
    paths = debian_layout(tmp_path / "debian")
    root = loaders(tmp_path, "ipxe.efi")
    boot = find_boot_files(root, chains=chains_in(paths))
    cache = tmp_path / "cache"
    assigned = {MAC: fedora_profile(tmp_path)}

    def signed_loader(mac: str, arch: int) -> tuple[str, bool] | None:
        chain = boot.chain_for(arch, assigned.get(mac), cache)  # as services/dhcp/server.py asks
        return (chain.shim, chain.http) if chain is not None else None

    server_facts = ServerFacts(
        mode="full",
        server_ip=SERVER.ip,
        network=SERVER.network,
        http_base=HTTP,
        loader_for_arch=boot.loader_for_arch,
        expected_loader=boot.expected_loader,
        secure_boot="signed",
        signed_loader=signed_loader,
    )
    assert offered(pxe_discover(7), server_facts) == "profiles/fedora-own/shimx64.efi"
    assert offered(pxe_discover(7, mac=OTHER), server_facts) == "debian-installer/amd64/bootnetx64.efi"


# -- TFTP answers GRUB (a real client in a lab namespace) -----------------------------------


@pytest.fixture
def chain_server(lab: Lab, tmp_path: Path) -> Iterator[TftpServer]:
    """pxetui's TFTP service with one Debian chain made of files in tmp_path."""
    need_tools("tftp")
    chains = chains_in(debian_layout(tmp_path / "debian", packages=False))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "fedora-own.yaml").write_text(yaml.safe_dump(own_loaders_doc(tmp_path / "fedora")))
    config = SessionConfig(
        interface=lab.bridge, state_dir=tmp_path / "state", menu_timeout=7, profile_dirs=[profiles]
    )
    boot = find_boot_files(loaders(tmp_path, "ipxe.efi"), chains=chains)
    session, context = lab_service_context(lab, config, None, boot_files=boot)
    if not session.profiles["debian-12-local"].file_path("kernel", session.config.cache_dir).is_file():
        pytest.skip("needs Debian's debian-installer-12-netboot-amd64 (make deps-test)")
    with running_tftp(lab, session, context) as server:
        yield server


def test_grub_gets_its_per_mac_answers_menu_choice_and_kernel_over_tftp(
    lab: Lab, chain_server: TftpServer, tmp_path: Path
) -> None:
    server = chain_server
    client = lab.add_client(mac=MAC, address=f"{lab.subnet.network_address + 30}/24")
    ip = str(lab.subnet.network_address + 30)
    server.loop.call(lambda: server.session.registry.set_ip(MAC, ip))  # what its dhcp.ack records
    prefix = "debian-installer/amd64/grub"

    def get(name: str) -> tuple[bool, bytes]:
        out = tmp_path / "got"
        out.unlink(missing_ok=True)
        # tftp-hpa reads HOST:FILE; the host first, as GRUB's names hold the MAC's colons.
        done = client.run("tftp", "-m", "binary", server.ip, "-c", "get", f"{server.ip}:{name}", str(out))
        ok = done.returncode == 0 and "Error" not in done.stdout + done.stderr and out.is_file()
        return ok, out.read_bytes() if ok else b""

    ok, bootstrap = get(f"/{prefix}/grub.cfg")
    assert ok and b'configfile "$prefix/grub.cfg-$net_default_mac"' in bootstrap
    ok, menu = get(f"{prefix}/grub.cfg-{MAC}")
    assert ok and b"set timeout=7" in menu and b"set default=local" in menu
    assert f"$prefix/select/{MAC}/debian-12-local".encode() in menu  # signed by Debian
    assert b"/select/" + MAC.encode() + b"/memtest86plus" not in menu  # not signed: not offered
    ok, chosen = get(f"{prefix}/select/{MAC}/debian-12-local")
    assert ok and b"linux /files/debian-12-local/kernel 'auto=true'" in chosen
    assert f"'url=http://{lab.server_ip}:8080/config/{MAC.replace(':', '-')}/preseed.cfg'".encode() in chosen
    assert server.wait(lambda: bool(server.named("menu.select", mac=MAC, choice="debian-12-local")))
    kernel_path = server.session.profiles["debian-12-local"].file_path(
        "kernel", server.session.config.cache_dir
    )
    ok, kernel = get("files/debian-12-local/kernel")
    assert ok and kernel == kernel_path.read_bytes()
    assert server.wait(lambda: bool(server.named("tftp.done", file="files/debian-12-local/kernel", ok=True)))
    (script,) = server.named("tftp.start", file=f"{prefix}/grub.cfg-{MAC}")
    assert script.mac == MAC and script.fields["kind"] == "script" and script.fields["answer"] == "menu"
    assert server.named("tftp.start", file="files/debian-12-local/kernel")[0].fields["kind"] == "kernel"
    assert server.session.registry.get(MAC).stage is Stage.KERNEL  # type: ignore[union-attr]

    # Another machine's answer is not this address's; a made-up MAC names no machine.
    server.loop.call(lambda: server.session.registry.ensure(OTHER))
    assert get(f"{prefix}/grub.cfg-{OTHER}") == (False, b"")
    assert server.wait(
        lambda: any("asked for the grub.cfg of" in str(e.fields.get("reason")) for e in server.named("error"))
    )
    assert get(f"{prefix}/grub.cfg-52:54:00:99:99:99") == (False, b"")
    assert server.session.registry.get("52:54:00:99:99:99") is None
    # That refusal's tftp.done may still be on its way: count from after it.
    assert server.wait(
        lambda: any("99:99:99" in str(e.fields.get("reason")) for e in server.named("tftp.done"))
    )
    # What shim and GRUB ask for on the way and do without is refused without an event.
    before = len(server.named("tftp.done"))
    assert get("debian-installer/amd64/revocations_sbat.efi") == (False, b"")
    assert get(f"{prefix}/x86_64-efi/command.lst") == (False, b"")
    assert len(server.named("tftp.done")) == before and server.stats()["optional_absent"] == 2

    # Assigned: the PC boots its profile at once; done: its local disk.
    server.session.assign(MAC, "debian-12-local")
    ok, boot = get(f"{prefix}/grub.cfg-{MAC}")
    assert ok and b"linux /files/debian-12-local/kernel" in boot and b"menuentry" not in boot
    server.session.set_boot_local(MAC)
    ok, local = get(f"{prefix}/grub.cfg-{MAC}")
    assert ok and b"\nexit\n" in local and b"linux" not in local


def test_a_profiles_own_shim_and_grub_are_served_and_its_grub_is_answered(
    lab: Lab, chain_server: TftpServer, tmp_path: Path
) -> None:
    server = chain_server
    client = lab.add_client(mac=MAC, address=f"{lab.subnet.network_address + 31}/24")
    ip = str(lab.subnet.network_address + 31)
    server.loop.call(lambda: server.session.registry.set_ip(MAC, ip))
    server.session.assign(MAC, "fedora-own")

    def get(name: str) -> bytes | None:
        out = tmp_path / "got"
        out.unlink(missing_ok=True)
        done = client.run("tftp", "-m", "binary", server.ip, "-c", "get", f"{server.ip}:{name}", str(out))
        ok = done.returncode == 0 and "Error" not in done.stdout + done.stderr and out.is_file()
        return out.read_bytes() if ok else None

    fedora = tmp_path / "fedora"
    assert get("profiles/fedora-own/shimx64.efi") == (fedora / "BOOTX64.EFI").read_bytes()
    # Shim asks for GRUB at the root: this address got Fedora's shim, so Fedora's GRUB.
    assert get("grubx64.efi") == (fedora / "grubx64.efi").read_bytes()
    assert get("profiles/fedora-own/grubx64.efi") == (fedora / "grubx64.efi").read_bytes()
    for prefix in ("EFI/fedora", "profiles/fedora-own"):  # its prefix, and beside itself
        bootstrap = get(f"{prefix}/grub.cfg")
        assert bootstrap is not None and b"grub.cfg-$net_default_mac" in bootstrap
    answer = get(f"EFI/fedora/grub.cfg-{MAC}")
    assert answer is not None and b"linux /files/fedora-own/kernel" in answer
    assert get("files/fedora-own/kernel") == (fedora / "vmlinuz").read_bytes()
    # Only loader names are served from a profile; nothing else under profiles/.
    for name in (
        "profiles/fedora-own/vmlinuz",
        "profiles/fedora-own/../debian-12-local/shimx64.efi",
        "profiles/debian-12-local/shimx64.efi",
        "profiles/nope/shimx64.efi",
    ):
        assert get(name) is None, name
    starts = server.named("tftp.start", file="profiles/fedora-own/shimx64.efi")
    assert starts and starts[0].mac == MAC and starts[0].fields.get("kind") is None  # a loader
    # Another address that got Debian's shim still gets Debian's GRUB at the root.
    other = lab.add_client(mac=OTHER, address=f"{lab.subnet.network_address + 32}/24")
    out = tmp_path / "other"
    for name in ("debian-installer/amd64/bootnetx64.efi", "grubx64.efi"):
        other.run("tftp", "-m", "binary", server.ip, "-c", "get", f"{server.ip}:{name}", str(out))
    assert out.read_bytes() == fake_grub("/debian-installer/amd64/grub")


def test_the_command_line_takes_secure_boot() -> None:
    from pxetui.__main__ import build_parser, config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["eth1"])).secure_boot == "auto"
    config = config_from_args(parser.parse_args(["eth1", "--secure-boot", "signed"]))
    assert config.secure_boot == "signed" and config.service_settings().secure_boot == "signed"
    with pytest.raises(SystemExit):
        parser.parse_args(["eth1", "--secure-boot", "maybe"])


def test_the_lab_builds_secure_boot_arm64_and_http_boot_pcs(tmp_path: Path) -> None:
    log, variables = tmp_path / "serial.log", tmp_path / "vars.fd"
    secure = qemu_command(VmSpec("sb", MAC, "tap0", secure_boot=True), log, variables)
    assert "q35,smm=on" in secure and f"if=pflash,format=raw,unit=0,file={OVMF_SB_CODE},readonly=on" in secure
    arm = qemu_command(VmSpec("arm", MAC, "tap0", cpu="arm64", secure_boot=True), log, variables)
    assert arm[0] == "qemu-system-aarch64" and "virt" in arm and f"file={AAVMF_CODE}" in " ".join(arm)
    assert VmSpec("arm", MAC, "tap0", cpu="arm64", secure_boot=True).flash == (AAVMF_CODE, AAVMF_SB_VARS)
    http = qemu_command(VmSpec("http", MAC, "tap0", network_boot="http"), log)
    assert "name=opt/org.tianocore/IPv4PXESupport,string=no" in http and "-bios" in http
    assert "-fw_cfg" not in qemu_command(VmSpec("pxe", MAC, "tap0"), log)
    with pytest.raises(UsageError, match="own copy"):
        qemu_command(VmSpec("sb", MAC, "tap0", secure_boot=True), log)  # the store is per guest
    for bad in (
        {"firmware": "bios", "cpu": "arm64"},
        {"cpu": "arm64", "network_boot": "http"},
        {"cpu": "riscv"},
    ):
        with pytest.raises(UsageError):
            VmSpec("bad", MAC, "tap0", **bad)  # type: ignore[arg-type]
