"""Issues 15/16: Ubuntu's Secure Boot loaders come out of its verified netboot tarball, not its ISO.

The live-server ISO's `EFI/boot/grubx64.efi` is Ubuntu's CD GRUB (like Debian's gcdx64.efi,
prefix /boot/grub): booted as the GRUB of a Secure Boot netboot chain it never reached the
kernel. The network GRUB is in `ubuntu-<version>-netboot-amd64.tar.gz` (`amd64/bootx64.efi`
+ `amd64/grubx64.efi`), which the SHA256SUMS beside the ISO lists. Here the fake upstream
serves a small ISO whose GRUB is Debian's CD build and a tarball holding Debian's signed shim
and network GRUB as stand-ins; `pxetui fetch ubuntu-24.04` must verify the tarball, read the
two members out, pin their SHA-256, and the chain must be the network GRUB's (prefix /grub).
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest
from efiboot import GRUB_NET, SHIM, build_tarball, link_member, ubuntu_netboot_loaders
from lab import NetnsLoop
from test_fetch import KERNEL, Mirror, RecordingProgress, sha
from test_isoimport import build_iso
from test_releases import (  # noqa: F401  (upstream: a fixture)
    NOBLE,
    STREAM,
    resolve_with,
    serve_in_sums,
    serve_netboot,
    upstream,
)

from pxetui.boot.bootfiles import profile_chain
from pxetui.boot.cache import is_servable, verified_path, verify_files
from pxetui.boot.profiles import Profile, load_profiles
from pxetui.boot.tar_archive import TarArchiveError, extract_from_tar
from pxetui.boot.upstream import read_pin
from pxetui.boot.upstream.mirror import Mirrors
from pxetui.commands.fetch import ChecksumMismatch, FetchError, fetch_profiles

GRUB_CD = Path("/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed")  # prefix /boot/grub
OLD = "old-releases.ubuntu.com/releases/"
NOBLE_SHA = "47072ddbe41d9e99d52428ba781ee7ba7b279bb734aeef63c6a02401eba68320"  # the stream's 24.04.4


def _serve_noble_iso(mirror: Mirror, work: Path) -> bytes:
    """A small live-server ISO for 24.04.4 whose own GRUB is a CD build, as Ubuntu's is."""
    files = {
        "casper/vmlinuz": KERNEL,
        "casper/initrd": b"initrd 24.04.4",
        "EFI/boot/bootx64.efi": SHIM.read_bytes(),
        "EFI/boot/grubx64.efi": GRUB_CD.read_bytes() if GRUB_CD.is_file() else b"cd grub",
    }
    iso = build_iso(work / "noble.iso", files).read_bytes()
    mirror.files[STREAM] = mirror.files[STREAM].replace(NOBLE_SHA.encode(), sha(iso).encode())
    serve_in_sums(mirror, NOBLE, "ubuntu-24.04.4-live-server-amd64.iso", iso)
    return iso


def _ubuntu(cache: Path) -> Profile:
    return load_profiles(cache_dir=cache)["ubuntu-24.04"]


def test_ubuntu_loaders_come_out_of_the_verified_netboot_tarball(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
) -> None:
    nl, mirror, mirrors = upstream
    _serve_noble_iso(mirror, tmp_path)
    tarball = serve_netboot(mirror, NOBLE, "24.04.4", ubuntu_netboot_loaders(), tmp_path)
    cache = tmp_path / "cache"
    profile = _ubuntu(cache)
    assert profile_chain(profile, cache) is None  # nothing fetched: no chain
    results = nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    by_role = {r.role: r for r in results}
    assert by_role["archive"].status == "downloaded" and by_role["grub"].status == "extracted"
    assert (NOBLE + "ubuntu-24.04.4-netboot-amd64.tar.gz", None) in mirror.requests
    home = cache / "ubuntu-24.04" / "24.04.4"
    assert (home / "bootx64.efi").read_bytes() == SHIM.read_bytes()
    assert (home / "grubx64.efi").read_bytes() == GRUB_NET.read_bytes()
    pin = read_pin(cache / "ubuntu-24.04")
    assert pin is not None and pin.files["archive"].sha256 == sha(tarball)
    assert pin.files["archive"].name == "ubuntu-24.04.4-netboot-amd64.tar.gz"
    assert pin.files["shim"].sha256 == sha(SHIM.read_bytes()) and pin.files["shim"].urls == ()
    assert pin.files["grub"].sha256 == sha(GRUB_NET.read_bytes())
    assert is_servable(profile, cache)
    chain = profile_chain(profile, cache)
    assert chain is not None
    assert (chain.vendor, chain.shim, chain.grub) == (
        "ubuntu",
        "profiles/ubuntu-24.04/shimx64.efi",
        "profiles/ubuntu-24.04/grubx64.efi",
    )
    # The network GRUB's prefix, read from the file that came out: not the ISO's CD GRUB (boot/grub).
    assert chain.grub_prefix == "grub"
    checks = {v.role: v for v in verify_files(profile, cache)}
    assert checks["grub"].ok and checks["archive"].ok
    again = nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert {r.role: r.status for r in again}["shim"] == "already verified"


def test_a_tampered_netboot_tarball_gives_no_loaders(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
) -> None:
    nl, mirror, mirrors = upstream
    _serve_noble_iso(mirror, tmp_path)
    serve_netboot(mirror, NOBLE, "24.04.4", ubuntu_netboot_loaders(), tmp_path)
    # Other bytes than SHA256SUMS lists: the GRUB swapped on the mirror for the CD one.
    swapped = {**ubuntu_netboot_loaders(), "amd64/grubx64.efi": b"not the listed grub"}
    name = "ubuntu-24.04.4-netboot-amd64.tar.gz"
    mirror.files[NOBLE + name] = build_tarball(tmp_path / "evil.tar.gz", swapped).read_bytes()
    cache = tmp_path / "cache"
    profile = _ubuntu(cache)
    with pytest.raises(
        ChecksumMismatch, match=rf"ubuntu-24.04 archive: checksum mismatch for .*{re.escape(name)}"
    ):
        nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert read_pin(cache / "ubuntu-24.04") is None
    assert profile_chain(profile, cache) is None
    assert not list(cache.rglob("grubx64.efi")) and not list(cache.rglob("*.part"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # The named member is a link: tar would write (or read) another file than the one named.
        (
            link_member("./amd64/grubx64.efi", "../../../../etc/shadow"),
            "is a link to '../../../../etc/shadow'",
        ),
        (link_member("./amd64/grubx64.efi", "amd64/bootx64.efi", hard=True), "is a link to"),
        # A member that climbs out is never the one named: amd64/grubx64.efi is missing.
        (tarfile.TarInfo("../amd64/grubx64.efi"), "has no file amd64/grubx64.efi"),
    ],
)
def test_a_netboot_tarball_whose_member_is_a_link_or_climbs_out_is_refused(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
    extra: tarfile.TarInfo,
    message: str,
) -> None:
    nl, mirror, mirrors = upstream
    _serve_noble_iso(mirror, tmp_path)
    shim_only = {"amd64/bootx64.efi": SHIM.read_bytes()}
    data = build_tarball(tmp_path / "hostile.tar.gz", shim_only, (extra,)).read_bytes()
    serve_in_sums(mirror, NOBLE, "ubuntu-24.04.4-netboot-amd64.tar.gz", data)  # verified: its hash is listed
    cache = tmp_path / "cache"
    profile = _ubuntu(cache)
    with pytest.raises(FetchError, match=r"^ubuntu-24.04 grub: ") as err:
        nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert message in str(err.value)
    assert read_pin(cache / "ubuntu-24.04") is None  # nothing half-fetched is served
    assert verified_path(profile, "grub", cache) is None
    assert not list(cache.rglob("grubx64.efi")) and not list(cache.rglob(".tar-*"))
    assert not (tmp_path / "amd64").exists() and not (cache.parent / "etc").exists()


def test_an_older_point_release_finds_its_tarball_on_old_releases(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],  # noqa: F811
    tmp_path: Path,
) -> None:
    nl, mirror, mirrors = upstream
    profile = load_profiles()["ubuntu-24.04"]
    # The recorded samples: 24.04.3 is only in old-releases' SHA256SUMS, which lists its tarball.
    old = nl.run(resolve_with(mirrors, profile, "24.04.3"))
    assert old.files["archive"].urls == (f"https://{OLD}24.04.3/ubuntu-24.04.3-netboot-amd64.tar.gz",)
    assert old.files["archive"].sha256 == "0911eeabccfcbf52c07687a586ab83ab12ece160744f291efc3b9779c3c3daa5"
    # The newest: beside its ISO on releases.ubuntu.com, then where it goes once it moves.
    new = nl.run(resolve_with(mirrors, profile))
    assert new.files["archive"].urls == (
        f"https://{NOBLE}ubuntu-24.04.4-netboot-amd64.tar.gz",
        f"https://{OLD}24.04.4/ubuntu-24.04.4-netboot-amd64.tar.gz",
    )
    assert new.files["archive"].sha256 == "1e208f6a865345d142a209c735c59777d2c7162b1d17f3084b4466a736335a2d"
    # Fetched for real from old-releases: ISO and tarball from the 24.04.3 directory.
    iso = build_iso(tmp_path / "old.iso", {"casper/vmlinuz": KERNEL, "casper/initrd": b"i"}).read_bytes()
    serve_in_sums(mirror, OLD + "24.04.3/", "ubuntu-24.04.3-live-server-amd64.iso", iso)
    tarball = serve_netboot(mirror, OLD + "24.04.3/", "24.04.3", ubuntu_netboot_loaders(), tmp_path)
    cache = tmp_path / "cache"
    nl.run(
        fetch_profiles(
            [profile], cache, RecordingProgress(), versions={"ubuntu-24.04": "24.04.3"}, mirrors=mirrors
        )
    )
    pin = read_pin(cache / "ubuntu-24.04")
    assert pin is not None and pin.version == "24.04.3" and pin.files["archive"].sha256 == sha(tarball)
    assert (OLD + "24.04.3/ubuntu-24.04.3-netboot-amd64.tar.gz", None) in mirror.requests
    assert verified_path(profile, "grub", cache) == cache / "ubuntu-24.04" / "24.04.3" / "grubx64.efi"
    # A directory whose SHA256SUMS lists no tarball says which file it looked for, and where.
    mirror.files[OLD + "24.04.3/SHA256SUMS"] = f"{sha(iso)} *ubuntu-24.04.3-live-server-amd64.iso\n".encode()
    with pytest.raises(FetchError, match=r"24.04.3/SHA256SUMS lists no ubuntu-24.04.3-netboot-amd64.tar.gz"):
        nl.run(resolve_with(mirrors, profile, "24.04.3"))


def test_tar_members_are_read_only_when_plain_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tarfile.TarInfo("amd64/dev")
    dev.type = tarfile.CHRTYPE
    folder = tarfile.TarInfo("amd64/dir")
    folder.type = tarfile.DIRTYPE
    twice = tarfile.TarInfo("amd64/twice.efi")
    archive = build_tarball(
        tmp_path / "a.tar.gz", {"amd64/grubx64.efi": b"grub", "amd64/twice.efi": b""}, (dev, folder, twice)
    )
    out = tmp_path / "out"
    assert extract_from_tar(archive, "amd64/grubx64.efi", out / "grubx64.efi") == sha(b"grub")
    assert (out / "grubx64.efi").read_bytes() == b"grub"
    for inner, message in (
        ("amd64/dev", "is not a regular file"),
        ("amd64/dir", "is not a regular file"),
        ("amd64/twice.efi", "lists amd64/twice.efi 2 times"),
        ("amd64/missing.efi", "has no file amd64/missing.efi"),
    ):
        with pytest.raises(TarArchiveError, match=re.escape(message)):
            extract_from_tar(archive, inner, out / "x")
    monkeypatch.setattr("pxetui.boot.tar_archive.MAX_FILE_BYTES", 3)
    with pytest.raises(TarArchiveError, match="MB: not a boot loader"):
        extract_from_tar(archive, "amd64/grubx64.efi", out / "big")
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(TarArchiveError, match=r"cannot take amd64/grubx64.efi out of .*broken\.tar\.gz"):
        extract_from_tar(broken, "amd64/grubx64.efi", out / "y")
    assert sorted(p.name for p in out.iterdir()) == [".grubx64.efi.verified", "grubx64.efi"]
