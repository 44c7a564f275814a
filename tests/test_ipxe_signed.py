"""iPXE 2.x's own signed build in --boot-files: `ipxe-shimx64.efi` + its signed `ipxe.efi`.

No real signed iPXE exists on this machine (Debian does not package it): stand-in files named
as iPXE's release names them are enough for what pxetui decides, which is by name. The DHCP
answer names the iPXE shim to a PC that gets the signed chain; tftp-hpa and curl fetch the
`autoexec.ipxe` pxetui renders beside it, which chains to the per-MAC script; the boot script
for a PC on signed iPXE hands a signed kernel to its distribution's shim (`shim URL`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_http_scripts
import yaml
from conftest import need_tools
from http_lab import PORT, HttpLab, serve_http_lab
from lab import Lab, NetnsLoop
from test_secure_boot import (
    HTTP,
    MAC,
    boot_facts,
    chains_in,
    debian_layout,
    offered,
    own_loaders_doc,
    pxe_discover,
)
from tftp_lab import TftpServer, lab_service_context, running_tftp

from pxetui.boot import firmware
from pxetui.boot.bootfiles import find_boot_files, find_ipxe_shims
from pxetui.session import SessionConfig

SB_SHIM = "x86_64-sb/ipxe-shimx64.efi"
SB_IPXE = "x86_64-sb/ipxe.efi"
DEBIAN_SHIM = "debian-installer/amd64/bootnetx64.efi"


def check_ipxe(script: str) -> None:
    """test_http_scripts' structure check, knowing the two commands these scripts add."""
    known = test_http_scripts.IPXE_COMMANDS
    test_http_scripts.IPXE_COMMANDS = known | {"dhcp", "shim"}
    try:
        test_http_scripts.check_ipxe(script)
    finally:
        test_http_scripts.IPXE_COMMANDS = known


def boot_dir(root: Path, *names: str) -> Path:
    for name in ("undionly.kpxe", "ipxe.efi", *names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"MZ " + name.encode() + os.urandom(64))
    return root


# -- finding the signed build ----------------------------------------------------------------


def test_the_ipxe_shim_is_found_beside_its_signed_ipxe_release_layout_first(tmp_path: Path) -> None:
    files = find_boot_files(boot_dir(tmp_path / "a", SB_SHIM, SB_IPXE, "ipxe-shimx64.efi"), chains=((), {}))
    (x64,) = files.ipxe_shims
    assert (x64.cpu, x64.shim, x64.loader, x64.autoexec) == (
        firmware.X86_64,
        SB_SHIM,
        SB_IPXE,
        "x86_64-sb/autoexec.ipxe",
    )
    assert files.ipxe_shim_for_arch(7) == x64 and files.ipxe_shim_for_arch(9) == x64
    assert files.ipxe_shim_for_arch(0) is None and files.ipxe_shim_for_arch(11) is None
    assert files.is_autoexec("x86_64-sb/autoexec.ipxe") and not files.is_autoexec("autoexec.ipxe")
    # At the top of the directory (ipxe.efi beside it: the signed one), and arm64's.
    flat = find_boot_files(
        boot_dir(tmp_path / "b", "ipxe-shimx64.efi", "arm64-sb/ipxe-shimaa64.efi", "arm64-sb/ipxe.efi"),
        chains=((), {}),
    )
    assert [(s.cpu, s.shim, s.autoexec) for s in flat.ipxe_shims] == [
        (firmware.X86_64, "ipxe-shimx64.efi", "autoexec.ipxe"),
        (firmware.ARM64, "arm64-sb/ipxe-shimaa64.efi", "arm64-sb/autoexec.ipxe"),
    ]
    # A shim with nothing to load beside it is no signed build; snponly first under --snponly.
    assert find_ipxe_shims({"x86_64-sb/ipxe-shimx64.efi": Path("/x")}) == ()
    both = {
        n: Path("/x") for n in (SB_SHIM, SB_IPXE, "x86_64-sb/snponly-shimx64.efi", "x86_64-sb/snponly.efi")
    }
    assert find_ipxe_shims(both)[0].shim == SB_SHIM
    assert find_ipxe_shims(both, snponly=True)[0].loader == "x86_64-sb/snponly.efi"
    # Only the signed build given: enough to start.
    only = tmp_path / "c"
    for name in (SB_SHIM, SB_IPXE):
        (only / name).parent.mkdir(parents=True, exist_ok=True)
        (only / name).write_bytes(b"MZ")
    assert find_boot_files(only, chains=((), {})).ipxe_shims


def test_the_dhcp_answer_names_the_ipxe_shim_before_shim_and_grub(tmp_path: Path) -> None:
    chains = chains_in(debian_layout(tmp_path / "debian", packages=False))
    with_sb = find_boot_files(boot_dir(tmp_path / "a", SB_SHIM, SB_IPXE), chains=chains)
    without = find_boot_files(boot_dir(tmp_path / "b"), chains=chains)
    uefi = pxe_discover(7)
    assert offered(uefi, boot_facts(with_sb, "auto", refused=True)) == SB_SHIM
    assert offered(uefi, boot_facts(with_sb, "signed", refused=False)) == SB_SHIM
    assert offered(uefi, boot_facts(without, "auto", refused=True)) == DEBIAN_SHIM  # as before
    assert offered(uefi, boot_facts(with_sb, "auto", refused=False)) == "ipxe.efi"  # not refused: iPXE
    assert offered(uefi, boot_facts(with_sb, "ipxe", refused=True)) == "ipxe.efi"
    assert offered(pxe_discover(0), boot_facts(with_sb, "signed", refused=True)) == "undionly.kpxe"
    # UEFI HTTP Boot: the signed iPXE would find no autoexec.ipxe there; the shim + GRUB image.
    http_boot = pxe_discover(16, b"HTTPClient:Arch:00016:UNDI:003000")
    assert offered(http_boot, boot_facts(with_sb, "signed", refused=True)) == f"{HTTP}/ramdisk/{DEBIAN_SHIM}.img"
    # Without any shim + GRUB chain on the machine, the iPXE shim alone serves.
    alone = find_boot_files(boot_dir(tmp_path / "c", SB_SHIM, SB_IPXE), chains=((), {}))
    assert offered(uefi, boot_facts(alone, "auto", refused=True)) == SB_SHIM


# -- autoexec.ipxe over TFTP (tftp-hpa) ------------------------------------------------------


@pytest.fixture
def sb_tftp(lab: Lab, tmp_path: Path) -> Iterator[TftpServer]:
    need_tools("tftp")
    boot = find_boot_files(boot_dir(tmp_path / "boot", SB_SHIM, SB_IPXE), chains=((), {}))
    config = SessionConfig(interface=lab.bridge, state_dir=tmp_path / "state")
    session, context = lab_service_context(lab, config, None, boot_files=boot)
    with running_tftp(lab, session, context) as server:
        yield server


def test_tftp_serves_autoexec_beside_the_ipxe_shim_chaining_to_the_per_mac_script(
    lab: Lab, sb_tftp: TftpServer, tmp_path: Path
) -> None:
    client = lab.add_client(mac=MAC, address=f"{lab.subnet.network_address + 30}/24")
    server = sb_tftp

    def get(name: str) -> tuple[bool, bytes]:
        out = tmp_path / "got"
        out.unlink(missing_ok=True)
        done = client.run("tftp", "-m", "binary", server.ip, "-c", "get", name, str(out))
        ok = done.returncode == 0 and "Error" not in done.stdout + done.stderr and out.is_file()
        return ok, out.read_bytes() if ok else b""

    ok, script = get("x86_64-sb/autoexec.ipxe")
    assert ok, script
    text = script.decode()
    check_ipxe(text)
    assert text.startswith("#!ipxe\n") and "\nset pxetui_shim 1\n" in text
    assert text.index("\ndhcp ") < text.index("\nchain ")  # no embedded DHCP: it asks first
    base = f"http://{lab.server_ip}:8080"
    assert f"chain {base}/boot.ipxe?mac=${{net0/mac:hexhyp}}&" in text and "&shim=${pxetui_shim}" in text
    (start,) = [
        e
        for e in server.events
        if e.name == "tftp.start" and e.fields.get("file") == "x86_64-sb/autoexec.ipxe"
    ]
    assert start.fields["kind"] == "script" and start.fields["answer"] == "autoexec"
    # The signed iPXE the shim loads beside itself is the operator's file; no autoexec elsewhere.
    ok, loader = get(SB_IPXE)
    assert ok and loader == (tmp_path / "boot" / SB_IPXE).read_bytes()
    assert get("autoexec.ipxe") == (False, b"")
    assert get("other/autoexec.ipxe") == (False, b"")


# -- the boot script's `shim` line (curl) ----------------------------------------------------


@pytest.fixture
def sb_http(lab: Lab, tmp_path: Path) -> Iterator[HttpLab]:
    os_dir = tmp_path / "os"
    os_dir.mkdir()
    (os_dir / "linux").write_bytes(b"debian kernel")
    (os_dir / "initrd.gz").write_bytes(b"debian initrd")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    common = {"arch": ["x86_64"], "firmware": ["uefi"], "initrd": {"path": str(os_dir / "initrd.gz")}}
    for name, extra in (("signedos", {"secure_boot": "debian"}), ("plainos", {})):
        doc = {"name": name, "title": name, "kernel": {"path": str(os_dir / "linux")}, **common, **extra}
        (profiles / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    (profiles / "fedora-own.yaml").write_text(yaml.safe_dump(own_loaders_doc(tmp_path / "fedora")))
    chains = chains_in(debian_layout(tmp_path / "debian", packages=False))
    config = SessionConfig(
        interface=lab.bridge,
        state_dir=tmp_path / "state",
        profile_dirs=[profiles],
        cache_dir=tmp_path / "cache",
        http_port=PORT,
        menu_timeout=0,
    )
    boot = find_boot_files(boot_dir(tmp_path / "boot", SB_SHIM, SB_IPXE), chains=chains)
    with NetnsLoop(lab.server_ns) as loop:
        web = serve_http_lab(lab, tmp_path, loop, config, boot, client_mac=MAC)
        try:
            yield web
        finally:
            loop.run(web.service.stop())


def shim_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("shim ")]


def test_a_signed_ipxe_pc_hands_a_signed_kernel_to_its_distributions_shim(sb_http: HttpLab) -> None:
    web = sb_http
    web.lease(MAC)
    base = web.base
    query = f"/boot.ipxe?mac={MAC}&arch=x86_64&platform=efi"

    status, autoexec = web.get("/loaders/x86_64-sb/autoexec.ipxe")
    assert status == 200 and "set pxetui_shim 1" in autoexec and f"chain {base}/boot.ipxe?mac=" in autoexec
    status, probe = web.get("/boot.ipxe")
    assert status == 200 and "&shim=${pxetui_shim}" in probe

    web.assign(MAC, "signedos")
    status, signed = web.get(query + "&shim=1")
    assert status == 200 and shim_lines(signed) == [f"shim {base}/loaders/{DEBIAN_SHIM} || goto failed"]
    assert signed.index("\ninitrd ") < signed.index("\nshim ") < signed.index("\nboot ")
    check_ipxe(signed)
    status, unsigned_ipxe = web.get(query + "&shim=")  # Debian's unsigned iPXE: no `shim` command
    assert status == 200 and "kernel --name kernel" in unsigned_ipxe and shim_lines(unsigned_ipxe) == []
    status, shim_bytes = web.get(f"/loaders/{DEBIAN_SHIM}")
    assert status == 200 and shim_bytes == "MZ shim"

    web.assign(MAC, "plainos")  # a kernel no distribution signed: nothing to hand it to
    status, plain = web.get(query + "&shim=1")
    assert status == 200 and "kernel --name kernel" in plain and shim_lines(plain) == []

    web.assign(MAC, "fedora-own")  # its own shim, served once verified
    status, own = web.get(query + "&shim=1")
    own_shim = "profiles/fedora-own/shimx64.efi"
    assert status == 200 and shim_lines(own) == [f"shim {base}/loaders/{own_shim} || goto failed"]
    status, fedora_shim = web.get(f"/loaders/{own_shim}")
    assert status == 200 and fedora_shim == "MZ fedora shim"
    assert web.get("/loaders/profiles/fedora-own/grubx64.efi")[0] == 404  # only what `shim` needs

    # Unassigned: the menu's choice and its poll keep saying the PC runs signed iPXE.
    web.loop.call(lambda: web.session.unassign(MAC))
    status, menu = web.get(query + "&shim=1")
    assert status == 200 and "&shim=${pxetui_shim}" in menu and "&shim=1&waited=" in menu
    status, chosen = web.get(f"/select?mac={MAC}&profile=signedos&shim=1")
    assert status == 200 and shim_lines(chosen) == [f"shim {base}/loaders/{DEBIAN_SHIM} || goto failed"]
    status, chosen_unsigned = web.get(f"/select?mac={MAC}&profile=signedos&shim=")
    assert status == 200 and shim_lines(chosen_unsigned) == []


def test_the_signed_build_is_named_in_the_help_and_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "x86_64-sb/ipxe-shimx64.efi" in readme and "autoexec.ipxe" in readme
    done = subprocess.run(
        [sys.executable, "-m", "pxetui", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "x86_64-sb/" in done.stdout and "ipxe-shimx64.efi" in done.stdout
