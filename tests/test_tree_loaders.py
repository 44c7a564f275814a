"""Issues 15/16: a Red Hat tree's Secure Boot loaders come out of its checksummed efiboot.img.

Fedora, Rocky and AlmaLinux list `images/efiboot.img` in `.treeinfo` [checksums] but not the
`EFI/BOOT/BOOTX64.EFI` (shim) and `grubx64.efi` inside it. The built-in profiles therefore
name the image as a release item and the loaders as files inside it (`from_image`). Here a
real FAT image (mkfs.vfat + mcopy) holding Debian's signed shim and GRUB as stand-ins is
served by the fake upstream in the lab namespace, its hash written into the sample
.treeinfo; `pxetui fetch` must verify it, take the loaders out, pin their SHA-256, and the
profile must then have a Secure Boot chain of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from efiboot import GRUB_NET, SHIM, build_efiboot, stand_in_loaders
from lab import NetnsLoop
from test_fetch import Mirror, RecordingProgress, sha
from test_releases import _serve_tree, upstream  # noqa: F401  (upstream: a fixture)

from pxetui.boot.bootfiles import profile_chain
from pxetui.boot.cache import is_servable, marker_path, verified_path, verify_files
from pxetui.boot.fat_image import FatImageError, extract_from_fat
from pxetui.boot.profiles import load_profiles
from pxetui.boot.upstream import read_pin
from pxetui.boot.upstream.mirror import Mirrors
from pxetui.commands.fetch import ChecksumMismatch, FetchError, fetch_profiles

ROCKY10 = "download.rockylinux.org/pub/rocky/10/BaseOS/x86_64/os/"
FEDORA45 = "download.fedoraproject.org/pub/fedora/linux/releases/45/Server/x86_64/os/"


def test_a_trees_loaders_are_taken_out_of_its_verified_efiboot_img(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
) -> None:
    nl, mirror, mirrors = upstream
    served = _serve_tree(mirror, ROCKY10, "10.1", tmp_path)
    cache = tmp_path / "cache"
    profile = load_profiles(cache_dir=cache)["rocky-10"]
    assert profile_chain(profile, cache) is None  # nothing fetched: no chain
    results = nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    by_role = {r.role: r for r in results}
    assert by_role["image"].status == "downloaded" and by_role["shim"].status == "extracted"
    home = cache / "rocky-10" / "10.1"
    assert (home / "BOOTX64.EFI").read_bytes() == SHIM.read_bytes()
    assert (home / "grubx64.efi").read_bytes() == GRUB_NET.read_bytes()
    # The pin says what each served loader must be, though upstream never checksummed them.
    pin = read_pin(cache / "rocky-10")
    assert pin is not None and pin.files["shim"].sha256 == sha(SHIM.read_bytes())
    assert pin.files["grub"].sha256 == sha(served["EFI/BOOT/grubx64.efi"])
    assert pin.files["image"].sha256 == sha(served["images/efiboot.img"])
    assert is_servable(profile, cache)
    chain = profile_chain(profile, cache)
    assert chain is not None
    assert (chain.vendor, chain.shim, chain.grub) == (
        "rocky",
        "profiles/rocky-10/shimx64.efi",  # the names shim asks for, under the profile's directory
        "profiles/rocky-10/grubx64.efi",
    )
    assert chain.grub_prefix == "grub"  # read from the GRUB image that came out (grubnetx64: /grub)
    # A loader whose marker is lost is re-checked against the pin, not trusted or refused blindly.
    marker_path(home / "grubx64.efi").unlink()
    assert verified_path(profile, "grub", cache) is None
    checks = {v.role: v for v in verify_files(profile, cache)}
    assert checks["grub"].ok and "sha256 matches" in checks["grub"].message
    assert verified_path(profile, "grub", cache) == home / "grubx64.efi"
    # A second fetch of the same release keeps what is verified.
    again = nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert {r.role: r.status for r in again}["shim"] == "already verified"


def test_a_tampered_efiboot_img_gives_no_loaders(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
) -> None:
    nl, mirror, mirrors = upstream
    _serve_tree(mirror, FEDORA45, "45", tmp_path)
    # Other bytes than .treeinfo lists: a loader swapped on the mirror (here a GRUB posing as shim).
    swapped = build_efiboot(
        tmp_path / "evil.img", {"EFI/BOOT/BOOTX64.EFI": GRUB_NET.read_bytes(), "EFI/BOOT/grubx64.efi": b"x"}
    )
    mirror.files[FEDORA45 + "images/efiboot.img"] = swapped.read_bytes()
    cache = tmp_path / "cache"
    profile = load_profiles(cache_dir=cache)["fedora-server"]
    with pytest.raises(ChecksumMismatch, match=r"fedora-server image: checksum mismatch for .*efiboot\.img"):
        nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert read_pin(cache / "fedora-server") is None
    assert profile_chain(profile, cache) is None
    assert not list(cache.rglob("BOOTX64.EFI")) and not list(cache.rglob("*.part"))


def test_an_image_without_the_loader_says_which_file_is_missing(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
) -> None:
    nl, mirror, mirrors = upstream
    served = _serve_tree(mirror, ROCKY10, "10.1", tmp_path)
    shim_only = build_efiboot(
        tmp_path / "shim-only.img", {"EFI/BOOT/BOOTX64.EFI": served["EFI/BOOT/BOOTX64.EFI"]}
    )
    data = shim_only.read_bytes()
    mirror.files[ROCKY10 + "images/efiboot.img"] = data
    text = mirror.files[ROCKY10 + ".treeinfo"].decode()
    text = re.sub(
        r"^images/efiboot.img = sha256:[0-9a-f]{64}$",
        f"images/efiboot.img = sha256:{sha(data)}",
        text,
        flags=re.M,
    )
    mirror.files[ROCKY10 + ".treeinfo"] = text.encode()
    cache = tmp_path / "cache"
    profile = load_profiles(cache_dir=cache)["rocky-10"]
    with pytest.raises(FetchError, match=r"^rocky-10 grub: .*efiboot\.img has no file EFI/BOOT/grubx64\.efi"):
        nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert read_pin(cache / "rocky-10") is None  # nothing half-fetched is served


def test_without_mtools_the_error_says_what_to_install(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nl, mirror, mirrors = upstream
    _serve_tree(mirror, ROCKY10, "10.1", tmp_path)
    cache = tmp_path / "cache"
    profile = load_profiles(cache_dir=cache)["rocky-10"]
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FetchError) as err:
        nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert str(err.value) == (
        "rocky-10 shim: cannot take EFI/BOOT/BOOTX64.EFI out of efiboot.img: mcopy is not installed"
        " (sudo apt-get install mtools)"
    )


def test_fat_names_match_without_case_and_a_directory_is_no_file(tmp_path: Path) -> None:
    image = build_efiboot(tmp_path / "efiboot.img", stand_in_loaders())
    dest = tmp_path / "out" / "grubx64.efi"
    got = extract_from_fat(image, "efi/boot/GRUBX64.EFI", dest)
    assert got == sha(GRUB_NET.read_bytes()) and dest.read_bytes() == GRUB_NET.read_bytes()
    with pytest.raises(FatImageError, match=r"has no file EFI/BOOT"):
        extract_from_fat(image, "EFI/BOOT", tmp_path / "out" / "BOOT")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".grubx64.efi.verified", "grubx64.efi"]
