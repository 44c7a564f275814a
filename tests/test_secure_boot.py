"""Secure Boot: the signed chain (shim -> GRUB -> signed kernel) beside iPXE.

Pure parts first (the firmware table, finding the chains, which loader DHCP names, the
"iPXE refused" rule, grub.cfg names and text), then the TFTP service answering GRUB with a
real TFTP client (tftp-hpa) in a lab namespace. tests/e2e/test_secure_boot.py boots OVMF's
Secure Boot firmware through all of it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tools
from dhcp_client import ZERO_UUID, pxe_vendor_class
from lab import Lab, NetnsLoop
from scapy.layers.dhcp import BOOTP, DHCP
from tftp_lab import TftpServer

from pxetui.boot import firmware
from pxetui.boot.bootfiles import BootFiles, SignedChain, find_boot_files, find_signed_chains, grub_facts
from pxetui.boot.grub_config import GrubRenderer, cmdline_words, grub_word, parse_name
from pxetui.boot.profiles import ProfileError, parse_profile
from pxetui.errors import UsageError
from pxetui.host.netif import InterfaceInfo
from pxetui.model.events import DhcpDiscover, Event, HttpDone, TftpDone, TftpStart
from pxetui.model.registry import IPXE_REFUSED, Registry, Stage, needs_signed_chain
from pxetui.services.context import ServiceContext, ServiceSettings
from pxetui.services.dhcp import codec
from pxetui.services.dhcp.answer import ServerFacts, answer, chain_kind
from pxetui.services.dhcp.leases import LeasePool
from pxetui.services.tftp.server import TftpService
from pxetui.session import Session, SessionConfig

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
    # UEFI HTTP boot: shim would fetch a GRUB that reads TFTP only, so iPXE's URL (refused at
    # once, the firmware goes on); a GRUB with http gets the shim's URL.
    http_boot = pxe_discover(16, b"HTTPClient:Arch:00016:UNDI:003000")
    assert offered(http_boot, facts(tmp_path / "f", "auto", refused=True)) == f"{HTTP}/loaders/ipxe.efi"
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


# -- TFTP answers GRUB (a real client in a lab namespace) -----------------------------------


@pytest.fixture
def chain_server(lab: Lab, tmp_path: Path) -> Iterator[TftpServer]:
    """pxetui's TFTP service with one Debian chain made of files in tmp_path."""
    need_tools("tftp")
    chains = chains_in(debian_layout(tmp_path / "debian", packages=False))
    session = Session(SessionConfig(interface=lab.bridge, state_dir=tmp_path / "state", menu_timeout=7))
    session.open()
    if not session.profiles["debian-12-local"].file_path("kernel", session.config.cache_dir).is_file():
        pytest.skip("needs Debian's debian-installer-12-netboot-amd64 (make deps-test)")
    context = ServiceContext(
        interface=InterfaceInfo(name=lab.bridge, up=True, mtu=1500, speed_mbps=0, mac=""),
        address=ipaddress.IPv4Interface(lab.server_cidr),
        boot_files=find_boot_files(loaders(tmp_path, "ipxe.efi"), chains=chains),
        state=session.state,
        profiles=session.profiles,
        booter=session,
        emit=session.emit,
        settings=session.settings,
    )
    with NetnsLoop(lab.server_ns) as nl:
        service = TftpService(context)
        server = TftpServer(lab=lab, session=session, service=service, loop=nl)
        session.bus.subscribe(server.events.append)

        async def go() -> None:
            session.bus.bind_loop(asyncio.get_running_loop())
            await service.start()

        nl.run(go())
        try:
            yield server
        finally:
            nl.run(service.stop())


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


def test_the_command_line_takes_secure_boot() -> None:
    from pxetui.__main__ import build_parser, config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["eth1"])).secure_boot == "auto"
    config = config_from_args(parser.parse_args(["eth1", "--secure-boot", "signed"]))
    assert config.secure_boot == "signed" and config.service_settings().secure_boot == "signed"
    with pytest.raises(SystemExit):
        parser.parse_args(["eth1", "--secure-boot", "maybe"])
