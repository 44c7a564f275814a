"""Built-in profiles, the extended schema (from_iso), file states and `pxetui profiles`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from pxetui.boot.cache import (
    FileState,
    file_status,
    part_path,
    require_servable,
    verified_path,
    write_marker,
)
from pxetui.boot.profiles import ProfileError, load_profile, load_profiles
from pxetui.boot.unattended import MachineContext, Renderer
from pxetui.boot.upstream.sums import parse_checksums
from pxetui.commands.profiles import profile_row
from pxetui.errors import UsageError
from pxetui.session import Session, SessionConfig

REPO = Path(__file__).resolve().parent.parent
SHA = "c" * 64
REQUIRED = {
    "ubuntu-24.04",
    "debian-12",
    "debian-13",
    "ubuntu-26.04",
    "fedora-server",
    "rocky-9",
    "rocky-10",
    "almalinux-9",
    "almalinux-10",
    "memtest86plus",
    "netboot-xyz",
    "local-disk",
    "ipxe-shell",
    "reboot",
    "debian-12-local",
}


def test_builtins_cover_the_issue_and_say_where_checksums_come_from() -> None:
    profiles = load_profiles()
    assert set(profiles) >= REQUIRED
    for profile in profiles.values():
        for role, ref in profile.files.items():
            if ref.url is None:
                continue
            assert urlsplit(ref.url).scheme == "https", (profile.name, role)
            assert ref.sha256 or profile.sha256sums, f"{profile.name} {role}: no checksum source"
            if profile.sha256sums and not ref.sha256:
                # Checksum files name files relative to their own directory: the file must be below it.
                assert ref.url.startswith(urljoin(profile.sha256sums, ".")), (profile.name, role)
        if any(ref.from_iso for ref in profile.files.values()):
            assert profile.files["iso"].url or profile.files["iso"].path or profile.files["iso"].release
        if any(ref.url or ref.release for ref in profile.files.values()):
            # Issue 16: every download follows a release line, none names a file that rots.
            assert profile.release is not None and all(
                r.release or r.extracted for r in profile.files.values()
            )
    assert profiles["ubuntu-24.04"].template == "autoinstall"
    assert profiles["ubuntu-24.04"].files["kernel"].from_iso == "casper/vmlinuz"
    assert {profiles[n].template for n in ("debian-12", "debian-13")} == {"preseed"}
    assert {profiles[n].template for n in ("fedora-server", "rocky-9", "almalinux-10")} == {"kickstart"}
    assert profiles["memtest86plus"].firmware == ("uefi",)
    # Issues 15/16: every built-in installer brings its own vendor's Secure Boot chain, so a
    # Secure Boot PC boots it on a laptop without Debian's shim packages.
    vendors = {
        "debian-12": "debian",
        "debian-13": "debian",
        "ubuntu-24.04": "ubuntu",
        "ubuntu-26.04": "ubuntu",
        "fedora-server": "fedora",
        "rocky-9": "rocky",
        "rocky-10": "rocky",
        "almalinux-9": "almalinux",
        "almalinux-10": "almalinux",
    }
    for name, vendor in vendors.items():
        assert profiles[name].own_loaders and profiles[name].secure_boot == vendor, name
    assert profiles["debian-13"].files["shim"].release == "netboot/debian-installer/amd64/bootnetx64.efi"
    # Ubuntu's network GRUB is in its netboot tarball: the ISO's is a CD build.
    assert profiles["ubuntu-26.04"].files["grub"].from_archive == "amd64/grubx64.efi"
    assert profiles["ubuntu-26.04"].files["archive"].release == "netboot"
    assert profiles["rocky-10"].files["shim"].from_image == "EFI/BOOT/BOOTX64.EFI"
    assert profiles["rocky-10"].files["image"].release == "images/efiboot.img"
    assert profiles["netboot-xyz"].chain == "https://boot.netboot.xyz"


@pytest.mark.parametrize(
    ("name", "sums_line"),
    [
        # The exact line shapes each upstream publishes, matched against the built-in items
        # (issue 16: the release line's metadata names the file, no fixed URL does).
        ("debian-13", f"{SHA}  ./netboot/debian-installer/amd64/linux"),
        ("fedora-server", f"images/pxeboot/vmlinuz = sha256:{SHA}"),
        ("rocky-9", f"images/pxeboot/vmlinuz = sha256:{SHA}"),
    ],
)
def test_builtin_kernel_items_match_their_upstream_checksum_lines(name: str, sums_line: str) -> None:
    profile = load_profiles()[name]
    assert profile.release is not None
    assert parse_checksums(sums_line + "\n") == {profile.release.files["kernel"]: SHA}


def test_ubuntu_names_a_release_line_not_a_point_release_file() -> None:
    profile = load_profiles()["ubuntu-24.04"]
    assert profile.release is not None and profile.release.line == "24.04"
    assert profile.files["iso"].url is None and profile.release.files == {"iso": "iso", "archive": "netboot"}
    assert "live-server-amd64.iso" not in profile.source.read_text()
    assert urlsplit(profile.release.get("archive")).hostname == "old-releases.ubuntu.com"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: d\ntitle: T\nkernel: {from_iso: casper/vmlinuz}\n", "'from_iso' needs an 'iso'"),
        (
            "name: d\ntitle: T\nkernel: {path: k}\niso: {from_iso: x.iso}\n",
            "'iso.from_iso' must be a path inside the iso",
        ),
        (
            "name: d\ntitle: T\nkernel: {from_iso: casper/vmlinuz, url: 'http://m/k'}\n",
            "'kernel' needs exactly one of 'url' or 'path' (or 'from_iso'",
        ),
        ("name: d\ntitle: T\nkernel: {url: 'http://m/os/..'}\n", "'kernel' must name a file"),
        (
            "name: d\ntitle: T\nkernel: {url: 'http://m/a/linux'}\ninitrd: {url: 'http://m/b/linux'}\n",
            "two files would share one name in the cache: linux, linux",
        ),
        (
            "name: d\ntitle: T\nkernel: {url: 'http://m/a/linux', sha256: 1234}\n",
            "'kernel.sha256' must be 64 hex digits in quotes (YAML read it as a number)",
        ),
        ("name: d\ntitle: T\nkernel: {url: 'http://m/a', chksum: x}\n", "unknown key 'kernel.chksum'"),
        ("name: d\ntitle: T\nkernel: {path: k}\nmirrors: x\n", "unknown key 'mirrors'"),
    ],
)
def test_schema_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    source = tmp_path / "bad.yaml"
    source.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(source)
    assert str(err.value).startswith(f"{source}: ")
    assert message in str(err.value)


def _mixed_profile(tmp_path: Path) -> Path:
    """A profile with one file in each state: present, unverified, partial, missing."""
    source = tmp_path / "profiles" / "mixed.yaml"
    source.parent.mkdir()
    source.write_text(
        "name: mixed\ntitle: Mixed\n"
        f"kernel: {{url: 'https://m/os/linux', sha256: {SHA}}}\n"
        f"initrd: {{url: 'https://m/os/initrd.gz', sha256: {SHA}}}\n"
        f"iso: {{url: 'https://m/os/os.iso', sha256: {SHA}}}\n"
    )
    return source


def test_file_states_and_the_profiles_listing(tmp_path: Path) -> None:
    source = _mixed_profile(tmp_path)
    profile = load_profile(source)
    cache = tmp_path / "cache"
    (cache / "mixed").mkdir(parents=True)
    (cache / "mixed" / "linux").write_bytes(b"k" * 2_000_000)
    write_marker(cache / "mixed" / "linux", SHA, "https://m/os/linux")
    (cache / "mixed" / "initrd.gz").write_bytes(b"i" * 500_000)  # no marker: unverified
    part_path(cache / "mixed" / "os.iso").write_bytes(b"p" * 1_000_000)
    states = {r: file_status(profile, r, cache).state for r in profile.files}
    assert states == {
        "kernel": FileState.PRESENT,
        "initrd": FileState.UNVERIFIED,
        "iso": FileState.PARTIAL,
    }
    row = profile_row(profile, cache)
    assert row.missing == ["initrd", "iso"] and row.unverified == ["initrd"]
    assert row.size == 3_500_000
    assert row.state == "present kernel; unverified initrd; partial iso (3.5 MB)"
    (cache / "mixed" / "os.iso.part").unlink()
    assert profile_row(profile, cache).state.endswith("missing iso (2.5 MB)")

    done = subprocess.run(
        [sys.executable, "-m", "pxetui", "profiles", "--cache", str(cache), "--profiles", str(source.parent)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ARCH", "FIRMWARE", "FILES", "TITLE"]
    mixed = next(line for line in lines if line.startswith("mixed "))
    assert "x86_64" in mixed and "bios,uefi" in mixed
    assert "present kernel; unverified initrd; missing iso (2.5 MB)" in mixed
    assert next(line for line in lines if line.startswith("local-disk ")).split()[3] == "action"
    assert next(line for line in lines if line.startswith("netboot-xyz ")).split()[3] == "chain"
    assert f"pxetui fetch NAME... --cache {cache}" in done.stdout
    as_json = subprocess.run(
        [
            sys.executable,
            "-m",
            "pxetui",
            "profiles",
            "--json",
            "--cache",
            str(cache),
            "--profiles",
            str(source.parent),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    docs = {d["name"]: d for d in map(json.loads, as_json.stdout.splitlines())}
    assert docs["mixed"]["files"]["initrd"]["state"] == "unverified"
    assert docs["mixed"]["files"]["kernel"]["origin"] == "https://m/os/linux"
    assert docs["ubuntu-24.04"]["files"]["kernel"]["origin"] == "iso:casper/vmlinuz"


def test_operator_path_files_count_as_verified_when_they_exist(tmp_path: Path) -> None:
    source = tmp_path / "mine.yaml"
    source.write_text("name: mine\ntitle: Mine\nkernel: {path: files/linux}\n")
    profile = load_profile(source)
    assert verified_path(profile, "kernel", tmp_path / "cache") is None
    assert file_status(profile, "kernel", tmp_path / "cache").state is FileState.MISSING
    with pytest.raises(
        UsageError, match=r"'mine' cannot boot yet: kernel missing .*install or copy the file"
    ):
        require_servable(profile, tmp_path / "cache")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "linux").write_bytes(b"k")
    assert verified_path(profile, "kernel", tmp_path / "cache") == tmp_path / "files" / "linux"
    require_servable(profile, tmp_path / "cache")


def test_session_refuses_to_assign_a_profile_that_cannot_boot(tmp_path: Path) -> None:
    source = _mixed_profile(tmp_path)
    cache = tmp_path / "cache"
    config = SessionConfig(interface="unused", state_dir=tmp_path / "state", cache_dir=cache)
    config.profile_dirs = [source.parent]
    session = Session(config)
    session.open()
    with pytest.raises(UsageError) as err:
        session.assign("52:54:00:12:34:01", "mixed", "lab-01")
    assert "profile 'mixed' cannot boot yet: kernel missing" in str(err.value)
    assert f"run: pxetui fetch mixed --cache {cache}" in str(err.value)
    assert "52:54:00:12:34:01" not in session.plan.entries
    with pytest.raises(UsageError, match="profile 'mixed' cannot boot yet"):
        session.set_unknown_policy("mixed", 3)
    assert session.plan.unknown.profile is None
    for name in ("linux", "initrd.gz", "os.iso"):
        path = cache / "mixed" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        write_marker(path, SHA, "test")
    assert session.assign("52:54:00:12:34:01", "mixed", "lab-01").profile == "mixed"
    session.set_unknown_policy("mixed", 3)
    assert (session.plan.unknown.profile, session.plan.unknown.remaining) == ("mixed", 3)
    assert session.assign("52:54:00:12:34:02", "local-disk").profile == "local-disk"


def test_builtin_command_lines_and_answer_files_render_for_a_machine() -> None:
    """With the renderer the HTTP service uses: no variable a machine does not have."""
    renderer = Renderer()
    for profile in load_profiles().values():
        machine = MachineContext(
            mac="52:54:00:12:34:01",
            hostname="lab-01",
            token="t" * 32,
            profile=profile.name,
            base_url="http://198.18.0.1:8080",
        )
        line = renderer.cmdline(profile, machine)
        assert "{{" not in line and "}}" not in line, profile.name
        for name in renderer.files_for(profile):
            assert renderer.render(profile, name, machine) is not None
        if profile.template == "preseed":
            assert "url=http://198.18.0.1:8080/config/52-54-00-12-34-01/preseed.cfg" in line
        if profile.template == "kickstart":
            assert "inst.ks=http://198.18.0.1:8080/config/52-54-00-12-34-01/ks.cfg" in line
        if profile.name == "ubuntu-24.04":
            assert "url=http://198.18.0.1:8080/files/ubuntu-24.04/iso " in line
            assert "ds=nocloud;s=http://198.18.0.1:8080/config/52-54-00-12-34-01/" in line
