"""`pxetui import-iso`: kernel and initrd out of a real ISO 9660 image built here (pycdlib, xorriso)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pycdlib
import pytest
from conftest import need_tools

from pxetui.boot.cache import FileState, is_verified, profile_status, verified_path
from pxetui.boot.profiles import ProfileError, load_profile, load_profiles
from pxetui.commands.import_iso import IsoError, import_iso
from pxetui.session import Session, SessionConfig

REPO = Path(__file__).resolve().parent.parent


def _iso9660_name(part: str, is_dir: bool) -> str:
    name = part.upper().replace("-", "_")
    # ISO 9660 directory names have no dots (xorriso writes install.amd as INSTALL_AMD).
    return name.replace(".", "_") if is_dir else (name if "." in name else name + ".") + ";1"


def build_iso(path: Path, files: dict[str, bytes], volume: str = "TEST_OS", rock_ridge: bool = True) -> Path:
    """A small ISO with `files` ({"casper/vmlinuz": b"..."}): Rock Ridge + Joliet, or bare ISO 9660."""
    iso = pycdlib.PyCdlib()
    if rock_ridge:
        iso.new(interchange_level=3, rock_ridge="1.09", joliet=3, vol_ident=volume)
    else:
        iso.new(interchange_level=4, vol_ident=volume)
    made: set[str] = set()
    for inner, data in files.items():
        parts = inner.split("/")
        for depth in range(1, len(parts)):
            rel = "/".join(parts[:depth])
            if rel in made:
                continue
            made.add(rel)
            iso_path = "/" + "/".join(_iso9660_name(p, True) for p in parts[:depth])
            if rock_ridge:
                iso.add_directory(iso_path, rr_name=parts[depth - 1], joliet_path="/" + rel)
            else:
                iso.add_directory(iso_path)
        iso_path = "/" + "/".join(
            [_iso9660_name(p, True) for p in parts[:-1]] + [_iso9660_name(parts[-1], False)]
        )
        if rock_ridge:
            iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=parts[-1], joliet_path="/" + inner)
        else:
            iso.add_fp(io.BytesIO(data), len(data), iso_path)
    iso.write(str(path))
    iso.close()
    return path


def xorriso_iso(path: Path, files: dict[str, bytes], volume: str = "LAB_OS") -> Path:
    """The same, written by xorriso (what distributions build their ISOs with), not by pycdlib."""
    xorriso = need_tools("xorriso")["xorriso"]
    tree = path.with_suffix(".tree")
    for inner, data in files.items():
        (tree / inner).parent.mkdir(parents=True, exist_ok=True)
        (tree / inner).write_bytes(data)
    subprocess.run(
        [xorriso, "-as", "mkisofs", "-quiet", "-R", "-J", "-V", volume, "-o", str(path), str(tree)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def pxetui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pxetui", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# What Fedora 43 Server's netinst ISO carries (productmd format), trimmed.
TREEINFO = b"""[header]
type = productmd.treeinfo
version = 1.2

[release]
name = Fedora
short = Fedora
version = 43

[tree]
arch = x86_64
platforms = x86_64,xen

[general]
family = Fedora
variant = Server
version = 43
arch = x86_64
"""
KERNEL = b"\x4d\x5a fake kernel " * 5000  # ~80 KB, more than one ISO extent
INITRD = b"\x1f\x8b fake initrd " * 9000


@pytest.mark.parametrize(
    ("layout", "kernel", "initrd", "template", "serves_iso", "rock_ridge"),
    [
        ("ubuntu", "casper/vmlinuz", "casper/initrd", "autoinstall", True, True),
        ("debian", "install.amd/vmlinuz", "install.amd/initrd.gz", "preseed", False, True),
        ("fedora", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img", "kickstart", False, True),
        ("plain-iso9660", "casper/vmlinuz", "casper/initrd", "autoinstall", True, False),
    ],
)
def test_import_finds_layout_copies_files_and_writes_a_loadable_profile(
    tmp_path: Path,
    layout: str,
    kernel: str,
    initrd: str,
    template: str,
    serves_iso: bool,
    rock_ridge: bool,
) -> None:
    files = {kernel: KERNEL, initrd: INITRD, "README.txt": b"hello", "pool/a.deb": b"x" * 10}
    if template == "kickstart":
        files[".treeinfo"] = TREEINFO
    iso = build_iso(tmp_path / f"{layout}-test.iso", files, rock_ridge=rock_ridge)
    cache, out = tmp_path / "cache", tmp_path / "profiles"
    result = import_iso(iso, cache, out)
    assert result.name == f"{layout}-test"
    assert result.profile_file == out / f"{layout}-test.yaml"
    assert result.kernel.read_bytes() == KERNEL
    assert result.initrd.read_bytes() == INITRD
    assert result.kernel.parent == cache / result.name
    assert is_verified(result.kernel) and is_verified(result.initrd)
    profile = load_profile(result.profile_file)
    assert profile.title == "TEST_OS (imported ISO)"  # the ISO's volume id
    assert profile.template == template
    assert profile.files["kernel"].sha256 == sha(KERNEL)
    assert profile.files["initrd"].sha256 == sha(INITRD)
    assert ("iso" in profile.files) is serves_iso
    if serves_iso:
        # Issue 16: the ISO is copied into the cache, not served from where it was imported.
        copy = cache / result.name / iso.name
        assert verified_path(profile, "iso", cache) == copy and copy.read_bytes() == iso.read_bytes()
        assert "{{ machine.base_url }}/files/{{ machine.profile }}/iso" in profile.cmdline
    if template == "kickstart":
        tree = "https://download.fedoraproject.org/pub/fedora/linux/releases/43/Server/x86_64/os/"
        assert f"inst.repo={tree} " in profile.cmdline
    assert [s.state for s in profile_status(profile, cache)] == [FileState.PRESENT] * len(profile.files)
    # The directory it names is one --profiles can point at, next to the built-ins.
    assert result.name in load_profiles([out])


def test_import_refuses_an_iso_without_a_known_layout(tmp_path: Path) -> None:
    iso = build_iso(tmp_path / "data.iso", {"boot/linux": KERNEL, "docs/readme.txt": b"r"})
    with pytest.raises(IsoError, match=r"no network-bootable kernel and initrd found \(looked for casper/"):
        import_iso(iso, tmp_path / "cache", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_rejects_non_iso_bad_name_and_existing_profile(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"not an iso" * 1000)
    with pytest.raises(IsoError, match="not a readable ISO 9660 image"):
        import_iso(junk, tmp_path / "c", tmp_path / "o")
    with pytest.raises(IsoError, match="no such file"):
        import_iso(tmp_path / "absent.iso", tmp_path / "c", tmp_path / "o")
    iso = build_iso(tmp_path / "u.iso", {"casper/vmlinuz": KERNEL, "casper/initrd": INITRD})
    with pytest.raises(IsoError, match="--name 'Bad Name' must be lower-case"):
        import_iso(iso, tmp_path / "c", tmp_path / "o", name="Bad Name")
    import_iso(iso, tmp_path / "c", tmp_path / "o", name="lab-ubuntu")
    with pytest.raises(IsoError, match="exists; pick another --name or add --force"):
        import_iso(iso, tmp_path / "c", tmp_path / "o", name="lab-ubuntu")
    assert import_iso(iso, tmp_path / "c", tmp_path / "o", name="lab-ubuntu", force=True).name == "lab-ubuntu"
    # Issue 16: a built-in's name is not taken over by accident.
    with pytest.raises(
        IsoError, match="'ubuntu-24.04' is a built-in profile; .* pick another --name or add --force"
    ):
        import_iso(iso, tmp_path / "c", tmp_path / "o", name="ubuntu-24.04")
    assert (
        import_iso(iso, tmp_path / "c", tmp_path / "o", name="ubuntu-24.04", force=True).name
        == "ubuntu-24.04"
    )


def test_import_iso_command_line_says_where_the_profile_went(tmp_path: Path) -> None:
    iso = build_iso(
        tmp_path / "Fedora-Server-dvd.iso",
        {"images/pxeboot/vmlinuz": KERNEL, "images/pxeboot/initrd.img": INITRD, ".treeinfo": TREEINFO},
    )
    cache = tmp_path / "cache"
    done = subprocess.run(
        [sys.executable, "-m", "pxetui", "import-iso", str(iso), "--cache", str(cache)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (
        f"wrote profile 'fedora-server-dvd' to {cache / 'profiles' / 'fedora-server-dvd.yaml'}" in done.stdout
    )
    # CACHE/profiles is read at every start: nothing to add but the cache it used.
    assert f"serve it with: sudo pxetui IFACE --cache {cache}\n" in done.stdout
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pxetui",
            "profiles",
            "--cache",
            str(cache),
            "--profiles",
            str(cache / "profiles"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("fedora-server-dvd "))
    assert "present kernel,initrd (" in row
    bad = subprocess.run(
        [sys.executable, "-m", "pxetui", "import-iso", str(tmp_path / "nope.iso")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "pxetui import-iso: error:" in bad.stderr and "nope.iso: no such file" in bad.stderr


def test_anaconda_iso_of_an_unknown_release_is_refused_with_the_fix(tmp_path: Path) -> None:
    treeinfo = TREEINFO.replace(b"name = Fedora", b"name = Obscure Linux").replace(
        b"family = Fedora", b"family = Obscure Linux"
    )
    files = {"images/pxeboot/vmlinuz": KERNEL, "images/pxeboot/initrd.img": INITRD, ".treeinfo": treeinfo}
    iso = build_iso(tmp_path / "obscure.iso", files)
    with pytest.raises(IsoError, match=r"installable tree pxetui does not know .*inst.repo=<tree URL>"):
        import_iso(iso, tmp_path / "cache", tmp_path / "out")
    assert not (tmp_path / "out" / "obscure.yaml").exists()


# -- an imported profile is there next session (CACHE/profiles is read without --profiles) ---------


def test_an_iso_imported_on_the_command_line_is_loaded_next_session_without_profiles(tmp_path: Path) -> None:
    iso = xorriso_iso(
        tmp_path / "lab-debian.iso", {"install.amd/vmlinuz": KERNEL, "install.amd/initrd.gz": INITRD}
    )
    cache = tmp_path / "cache"
    done = pxetui("import-iso", str(iso), "--cache", str(cache))
    assert done.returncode == 0, done.stderr
    # A fresh load, as the next `sudo pxetui` does: the built-ins, then CACHE/profiles.
    profiles = load_profiles([], cache)
    assert profiles["lab-debian"].source == cache / "profiles" / "lab-debian.yaml"
    assert profiles["lab-debian"].title == "LAB_OS (imported ISO)" and "debian-12" in profiles
    session = Session(SessionConfig(interface="lab0", state_dir=tmp_path / "state", cache_dir=cache))
    session.open()
    session.assign("52:54:00:00:00:51", "lab-debian")  # known and servable: its files are in the cache
    # Named again with --profiles (as the old hint said): read once, no "name already used".
    assert load_profiles([cache / "profiles"], cache).keys() == profiles.keys()
    # Another cache has none of it: it is that cache's profile directory, not a global one.
    assert "lab-debian" not in load_profiles([], tmp_path / "other-cache")
    listed = pxetui("profiles", "--cache", str(cache))
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("lab-debian "))
    assert "present kernel,initrd (" in row
    assert f"profiles read from: {REPO / 'profiles'} (built-in), {cache / 'profiles'} (imported ISOs)" in (
        listed.stdout
    )
    empty = pxetui("profiles", "--cache", str(tmp_path / "other-cache"), "--profiles", str(tmp_path))
    assert f"{tmp_path / 'other-cache' / 'profiles'} (imported ISOs: none yet), {tmp_path} (--profiles)" in (
        empty.stdout
    )


def test_a_broken_profile_in_the_cache_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    broken = cache / "profiles" / "half-written.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("name: half-written\ntitle: [unclosed\n")
    with pytest.raises(ProfileError) as refused:
        load_profiles([], cache)
    message = str(refused.value)
    assert message.startswith(f"{broken}: not valid YAML") and "fix or delete that file" in message
    listed = pxetui("profiles", "--cache", str(cache))
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert (
        f"{broken}: not valid YAML" in listed.stderr and "where imported ISOs' profiles go" in listed.stderr
    )
    # `sudo pxetui` opens its Session before the screen or any service: the same error, exit 2.
    session = Session(SessionConfig(interface="lab0", state_dir=tmp_path / "state", cache_dir=cache))
    with pytest.raises(ProfileError, match="half-written.yaml: not valid YAML"):
        session.open()
