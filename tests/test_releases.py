"""Profiles that follow a release line (issue 16), against recorded upstream metadata samples.

tests/upstream_samples/HOST/PATH holds one file of each upstream format (simplestreams JSON,
Debian SHA256SUMS + InRelease, Fedora releases.json, .treeinfo), served by the fake upstream of
test_fetch in the lab's server namespace. The profiles reach it through a mirror
(`Mirrors(root=...)`, what `--mirror URL` / PXETUI_MIRROR give): nothing here reaches the
internet, and the built-in profiles are the ones tested.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_signing import KEYRING_ENV, signed_samples, signing_key
from efiboot import DI_AMD64, build_efiboot, build_tarball, stand_in_loaders
from lab import Lab, NetnsLoop
from test_fetch import KERNEL, PORT, Mirror, RecordingProgress, blob, sha, write_profile
from test_isoimport import build_iso

from pxetui.boot.bootfiles import profile_chain
from pxetui.boot.cache import verified_path
from pxetui.boot.profiles import Profile, load_profiles
from pxetui.boot.upstream import Release, read_pin
from pxetui.boot.upstream.mirror import Mirrors, parse_mirrors
from pxetui.commands.fetch import (
    Fetcher,
    FetchError,
    MultiProgress,
    fetch_all,
    fetch_profiles,
    http_session,
)
from pxetui.commands.profiles import check_upstream

REPO = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "upstream_samples"
STREAM = "releases.ubuntu.com/streams/v1/com.ubuntu.releases:ubuntu-server.json"
NOBLE = "releases.ubuntu.com/noble/"
NOBLE_ISO = NOBLE + "ubuntu-24.04.4-live-server-amd64.iso"
ROCKY9 = "download.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/"
VAULT96 = "dl.rockylinux.org/vault/rocky/9.6/BaseOS/x86_64/os/"
TRIXIE = "deb.debian.org/debian/dists/trixie/"
TRIXIE_IMAGES = TRIXIE + "main/installer-amd64/current/images/"

# What each built-in release line resolves to against the samples: version and file URLs.
EXPECTED = {
    "ubuntu-24.04": ("24.04.4", {"iso": "https://" + NOBLE_ISO}),
    "ubuntu-26.04": (
        "26.04.1",
        {"iso": "https://releases.ubuntu.com/resolute/ubuntu-26.04.1-live-server-amd64.iso"},
    ),
    "debian-12": (
        "12.12",
        {
            "kernel": "https://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/netboot/debian-installer/amd64/linux"
        },
    ),
    "debian-13": ("13.2", {"initrd": f"https://{TRIXIE_IMAGES}netboot/debian-installer/amd64/initrd.gz"}),
    # releases.json also lists "46 Beta": never the latest release.
    "fedora-server": (
        "45",
        {
            "kernel": "https://download.fedoraproject.org/pub/fedora/linux/releases/45/Server/x86_64/os/images/pxeboot/vmlinuz"
        },
    ),
    "rocky-9": ("9.7", {"initrd": f"https://{ROCKY9}images/pxeboot/initrd.img"}),
    "rocky-10": (
        "10.1",
        {"kernel": "https://download.rockylinux.org/pub/rocky/10/BaseOS/x86_64/os/images/pxeboot/vmlinuz"},
    ),
    "almalinux-9": (
        "9.7",
        {"kernel": "https://repo.almalinux.org/almalinux/9/BaseOS/x86_64/os/images/pxeboot/vmlinuz"},
    ),
    "almalinux-10": (
        "10.1",
        {"kernel": "https://repo.almalinux.org/almalinux/10/BaseOS/x86_64/os/images/pxeboot/vmlinuz"},
    ),
}


def samples() -> dict[str, bytes]:
    return {str(p.relative_to(SAMPLES)): p.read_bytes() for p in SAMPLES.rglob("*") if p.is_file()}


@pytest.fixture
def upstream(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[NetnsLoop, Mirror, Mirrors]]:
    # Debian's InRelease files signed by the tests' own key, which pxetui is told to trust.
    monkeypatch.setenv(KEYRING_ENV, str(signing_key().keyring))
    with NetnsLoop(lab.server_ns) as nl:
        mirror = Mirror(lab.server_ip)
        mirror.files.update(signed_samples(samples()))
        nl.run(mirror.start())
        try:
            yield nl, mirror, Mirrors(root=mirror.base + "/")
        finally:
            nl.run(mirror.stop())


async def resolve_with(mirrors: Mirrors, profile: Profile, version: str | None = None) -> Release:
    async with http_session() as http:
        fetcher = Fetcher(Path("/nonexistent"), http, RecordingProgress(), mirrors=mirrors)
        return await fetcher.resolve(profile, version)


def sample_of(url: str) -> str:
    return (SAMPLES / url.removeprefix("https://")).read_text()


def listed_sha(source: str, name: str, release: Release) -> None:
    """Independently of the resolver: the sample lists this SHA-256 for this file."""
    text = sample_of(source)
    for role, f in release.files.items():
        if source.endswith(".json") and f.name.endswith(".tar.gz"):
            # Ubuntu's netboot tarball: not in the stream, in the SHA256SUMS beside the ISO.
            assert f"{f.sha256} *{f.name}" in sample_of(f.urls[0].rsplit("/", 1)[0] + "/SHA256SUMS"), role
        elif source.endswith(".json"):
            assert f'"sha256": "{f.sha256}"' in text, role
        else:
            line = next(line for line in text.splitlines() if f.sha256 in line)
            assert f.name in line, (name, role, line)


def test_every_builtin_release_line_resolves_against_its_upstream_sample(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],
) -> None:
    nl, mirror, mirrors = upstream
    profiles = load_profiles()
    assert {n for n, p in profiles.items() if p.release is not None} == set(EXPECTED)
    for name, (version, urls) in EXPECTED.items():
        release = nl.run(resolve_with(mirrors, profiles[name]))
        assert release.version == version, name
        for role, url in urls.items():
            assert release.files[role].urls[0] == url, (name, role)
        listed_sha(release.source, name, release)
    # Every metadata request went to the mirror, as HOST/PATH: the real hosts were never asked.
    asked = {path for path, _range in mirror.requests}
    assert STREAM in asked and TRIXIE + "InRelease" in asked and "fedoraproject.org/releases.json" in asked


def test_older_point_releases_come_from_where_upstream_moves_them(
    upstream: tuple[NetnsLoop, Mirror, Mirrors],
) -> None:
    nl, _mirror, mirrors = upstream
    profiles = load_profiles()
    old = nl.run(resolve_with(mirrors, profiles["ubuntu-24.04"], "24.04.3"))
    assert old.files["iso"].urls == (
        "https://old-releases.ubuntu.com/releases/24.04.3/ubuntu-24.04.3-live-server-amd64.iso",
    )
    assert old.files["iso"].sha256 == "d3a6c719df875fc5f0adcacf004cb378b0c4a530eb1d01d848fb739b3fe3e931"
    # The newest is listed with the archive as its second URL: it still downloads once it moves.
    new = nl.run(resolve_with(mirrors, profiles["ubuntu-24.04"]))
    assert new.files["iso"].urls[1].startswith("https://old-releases.ubuntu.com/releases/24.04.4/")
    vault = nl.run(resolve_with(mirrors, profiles["rocky-9"], "9.6"))
    assert vault.tree == "https://" + VAULT96
    assert vault.files["kernel"].urls == (f"https://{VAULT96}images/pxeboot/vmlinuz",)
    for name, version, message in (
        ("ubuntu-24.04", "24.04.9", "Ubuntu 24.04.9 is neither in"),
        ("ubuntu-24.04", "22.04.5", "22.04.5 is not a release of Ubuntu 24.04"),
        ("rocky-9", "9.1", "9.1 is neither the current release (9.7) nor in"),
        ("debian-13", "13.1", "keeps only the current point release of trixie (13.2), not 13.1"),
    ):
        with pytest.raises(FetchError, match=re.escape(message)):
            nl.run(resolve_with(mirrors, profiles[name], version))


def _serve_ubuntu(mirror: Mirror, iso: bytes, version: str, old_sha: str) -> None:
    """Make the stream's `version` entry describe `iso` (a small ISO built by the test)."""
    text = mirror.files[STREAM].decode().replace(old_sha, sha(iso))
    mirror.files[STREAM] = text.encode()


def serve_in_sums(mirror: Mirror, directory: str, name: str, data: bytes) -> None:
    """Serve `data` as DIRECTORY/NAME and make DIRECTORY/SHA256SUMS list its hash (as Ubuntu's do)."""
    mirror.files[directory + name] = data
    sums = mirror.files.get(directory + "SHA256SUMS", b"").decode()
    line = f"{sha(data)} *{name}"
    sums, found = re.subn(rf"^[0-9a-f]{{64}} \*{re.escape(name)}$", line, sums, flags=re.M)
    mirror.files[directory + "SHA256SUMS"] = (sums if found else sums + line + "\n").encode()


def serve_netboot(mirror: Mirror, directory: str, version: str, files: dict[str, bytes], work: Path) -> bytes:
    """Ubuntu's ubuntu-VERSION-netboot-amd64.tar.gz holding `files`, served and listed in DIRECTORY."""
    data = build_tarball(work / f"netboot-{version}.tar.gz", files).read_bytes()
    serve_in_sums(mirror, directory, f"ubuntu-{version}-netboot-amd64.tar.gz", data)
    return data


def test_a_fetched_release_is_pinned_and_keeps_booting_after_upstream_moves_it(
    upstream: tuple[NetnsLoop, Mirror, Mirrors], tmp_path: Path
) -> None:
    nl, mirror, mirrors = upstream
    files = {"casper/vmlinuz": KERNEL, "casper/initrd": b"initrd 24.04.4"}
    iso = build_iso(tmp_path / "noble.iso", files).read_bytes()
    stream_sha = "47072ddbe41d9e99d52428ba781ee7ba7b279bb734aeef63c6a02401eba68320"
    _serve_ubuntu(mirror, iso, "24.04.4", stream_sha)
    serve_in_sums(mirror, NOBLE, "ubuntu-24.04.4-live-server-amd64.iso", iso)
    loaders = {"amd64/bootx64.efi": b"shim 24.04.4", "amd64/grubx64.efi": b"grub 24.04.4"}
    tarball = serve_netboot(mirror, NOBLE, "24.04.4", loaders, tmp_path)
    cache = tmp_path / "cache"
    profile = load_profiles()["ubuntu-24.04"]
    results = nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert [(r.role, r.status, r.version) for r in results] == [
        ("iso", "downloaded", "24.04.4"),
        ("archive", "downloaded", "24.04.4"),
        ("kernel", "extracted", "24.04.4"),
        ("initrd", "extracted", "24.04.4"),
        ("shim", "extracted", "24.04.4"),
        ("grub", "extracted", "24.04.4"),
    ]
    home = cache / "ubuntu-24.04"
    pin = read_pin(home)
    assert pin is not None and pin.version == "24.04.4"
    assert pin.files["iso"].urls[0] == "https://" + NOBLE_ISO and pin.files["iso"].sha256 == sha(iso)
    assert verified_path(profile, "iso", cache) == home / "24.04.4" / "ubuntu-24.04.4-live-server-amd64.iso"
    assert verified_path(profile, "kernel", cache) == home / "24.04.4" / "vmlinuz"
    assert (home / "24.04.4" / "vmlinuz").read_bytes() == KERNEL
    # Ubuntu's shim and network GRUB come out of the verified netboot tarball, and the pin
    # records what they must be.
    assert verified_path(profile, "shim", cache) == home / "24.04.4" / "bootx64.efi"
    assert pin.files["archive"].sha256 == sha(tarball)
    assert (home / "24.04.4" / "grubx64.efi").read_bytes() == b"grub 24.04.4"
    assert pin.files["grub"].sha256 == sha(b"grub 24.04.4") and pin.files["grub"].urls == ()

    # Upstream moves on: 24.04.5 appears, 24.04.4 leaves releases.ubuntu.com.
    del mirror.files[NOBLE_ISO]
    mirror.files[STREAM] = mirror.files[STREAM].replace(b"24.04.4", b"24.04.5")
    serve_netboot(mirror, NOBLE, "24.04.5", loaders, tmp_path)
    assert verified_path(profile, "iso", cache) is not None  # still served, no network asked
    lines = nl.run(check_upstream([profile], cache, mirrors))
    assert lines == {"ubuntu-24.04": "cached 24.04.4, upstream 24.04.5 (get it: pxetui fetch ubuntu-24.04)"}

    # The ISO is lost from the cache: the pinned point release comes back from old-releases.
    (home / "24.04.4" / "ubuntu-24.04.4-live-server-amd64.iso").unlink()
    old = "old-releases.ubuntu.com/releases/24.04.4/"
    mirror.files[old + "SHA256SUMS"] = (
        f"{sha(iso)} *ubuntu-24.04.4-live-server-amd64.iso\n{sha(tarball)} *ubuntu-24.04.4-netboot-amd64.tar.gz\n"
    ).encode()
    mirror.files[old + "ubuntu-24.04.4-live-server-amd64.iso"] = iso
    again = nl.run(
        fetch_profiles(
            [profile], cache, RecordingProgress(), versions={"ubuntu-24.04": "24.04.4"}, mirrors=mirrors
        )
    )
    assert ("iso", "downloaded") in [(r.role, r.status) for r in again]
    assert (old + "ubuntu-24.04.4-live-server-amd64.iso", None) in mirror.requests
    assert verified_path(profile, "iso", cache) is not None
    assert not list(home.rglob("*.lock")) and not list(home.rglob("*.part"))


def _serve_tree(mirror: Mirror, tree: str, version: str, work: Path | None = None) -> dict[str, bytes]:
    """Kernel and initrd blobs for `tree`, a real FAT efiboot.img with stand-in loaders (in
    `work`), and its .treeinfo rewritten to list their hashes."""
    blobs = {
        item: blob(f"{tree}{item}", 200_000)
        for item in ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img")
    }
    if work is not None:
        loaders = stand_in_loaders()
        image = build_efiboot(work / f"{version}-efiboot.img", loaders)
        blobs["images/efiboot.img"] = image.read_bytes()
        blobs.update(loaders)  # what must come out of it (not served on its own)
    text = mirror.files[tree + ".treeinfo"].decode()
    for item, data in blobs.items():
        if item.startswith("EFI/"):
            continue
        text = re.sub(
            rf"^{re.escape(item)} = sha256:[0-9a-f]{{64}}$", f"{item} = sha256:{sha(data)}", text, flags=re.M
        )
        mirror.files[tree + item] = data
    mirror.files[tree + ".treeinfo"] = text.encode()
    assert f"version = {version}" in text
    return blobs


def test_rocky_pins_a_minor_and_its_installer_tree_follows_the_pin(
    upstream: tuple[NetnsLoop, Mirror, Mirrors], tmp_path: Path
) -> None:
    nl, mirror, mirrors = upstream
    current = _serve_tree(mirror, ROCKY9, "9.7", tmp_path)
    vault = _serve_tree(mirror, VAULT96, "9.6", tmp_path)
    cache = tmp_path / "cache"
    profile = load_profiles(cache_dir=cache)["rocky-9"]
    nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert (cache / "rocky-9" / "9.7" / "vmlinuz").read_bytes() == current["images/pxeboot/vmlinuz"]
    assert (cache / "rocky-9" / "9.7" / "BOOTX64.EFI").read_bytes() == current["EFI/BOOT/BOOTX64.EFI"]
    assert f"inst.repo=https://{ROCKY9} " in profile.cmdline
    nl.run(
        fetch_profiles([profile], cache, RecordingProgress(), versions={"rocky-9": "9.6"}, mirrors=mirrors)
    )
    # The pin moved: the vault's kernel is served and Anaconda is sent to the vault's tree.
    assert verified_path(profile, "kernel", cache) == cache / "rocky-9" / "9.6" / "vmlinuz"
    assert (cache / "rocky-9" / "9.6" / "vmlinuz").read_bytes() == vault["images/pxeboot/vmlinuz"]
    # Its loaders came out of the vault's own efiboot.img (the one its .treeinfo checksums).
    assert verified_path(profile, "grub", cache) == cache / "rocky-9" / "9.6" / "grubx64.efi"
    assert (f"{VAULT96}images/efiboot.img", None) in mirror.requests
    assert f"inst.repo=https://{VAULT96} " in profile.cmdline
    assert not (cache / "rocky-9" / "9.7").exists()  # not served any more: its space is freed


def test_debian_sha256sums_is_checked_against_the_suite_inrelease(
    upstream: tuple[NetnsLoop, Mirror, Mirrors], tmp_path: Path
) -> None:
    nl, mirror, mirrors = upstream
    sums_path, inrelease_path = TRIXIE_IMAGES + "SHA256SUMS", TRIXIE + "InRelease"
    old_sums = mirror.files[sums_path]
    new_sums = old_sums.decode()
    # The loaders are Debian's real d-i pair (shim + GRUB with prefix /debian-installer/amd64/grub).
    loaders = {name: (DI_AMD64 / name).read_bytes() for name in ("bootnetx64.efi", "grubx64.efi")}
    for name in ("linux", "initrd.gz", *loaders):
        data = loaders.get(name) or blob(name, 100_000)
        mirror.files[f"{TRIXIE_IMAGES}netboot/debian-installer/amd64/{name}"] = data
        new_sums = re.sub(
            rf"^[0-9a-f]{{64}}(  \./netboot/debian-installer/amd64/{re.escape(name)})$",
            rf"{sha(data)}\1",
            new_sums,
            flags=re.M,
        )
    mirror.files[sums_path] = new_sums.encode()
    good = hashlib.sha256(new_sums.encode()).hexdigest()
    edited = mirror.files[inrelease_path].decode().replace(sha(old_sums), good)
    mirror.files[inrelease_path] = signing_key().resign(edited).encode()
    cache = tmp_path / "cache"
    profile = load_profiles()["debian-13"]
    results = nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert {r.version for r in results} == {"13.2"} and len(results) == 4
    assert verified_path(profile, "initrd", cache) == cache / "debian-13" / "13.2" / "initrd.gz"
    # Debian's shim and GRUB: from the same InRelease-checked SHA256SUMS as the kernel.
    assert verified_path(profile, "shim", cache) == cache / "debian-13" / "13.2" / "bootnetx64.efi"
    chain = profile_chain(profile, cache)
    assert chain is not None and chain.vendor == "debian" and chain.profile == "debian-13"
    assert (chain.shim, chain.grub_prefix) == (
        "profiles/debian-13/shimx64.efi",
        "debian-installer/amd64/grub",
    )
    # A SHA256SUMS that is not the one InRelease names is refused, and the pinned 13.2 stays.
    mirror.files[sums_path] = new_sums.replace("./netboot/mini.iso", "./netboot/evil.iso").encode()
    with pytest.raises(
        FetchError,
        match=r"SHA256SUMS does not match the hash .*InRelease gives it.*the cached 13.2 stays in use",
    ):
        nl.run(fetch_profiles([profile], cache, RecordingProgress(), mirrors=mirrors))
    assert verified_path(profile, "kernel", cache) is not None


class BoardRecorder:
    """A MultiProgress stand-in: one bar per profile, all events in one ordered list."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def bar(self, name: str) -> RecordingProgress:
        board = self

        class Bar(RecordingProgress):
            def start(self, label: str, total: int | None, offset: int) -> None:
                board.events.append((name, "start"))

            def finish(self, note: str) -> None:
                board.events.append((name, note))

        return Bar()


def test_several_profiles_fetch_at_once_and_one_failure_stops_no_other(
    upstream: tuple[NetnsLoop, Mirror, Mirrors], tmp_path: Path
) -> None:
    nl, mirror, _mirrors = upstream
    for n in ("a", "b"):
        mirror.files[f"{n}/linux"] = blob(n, 3_000_000)
    # Cut once each: a sequential fetch would finish one before the other starts.
    mirror.cut_after = {"a/linux": [100_000], "b/linux": [100_000]}
    profiles = [
        write_profile(
            tmp_path,
            f"name: {n}\ntitle: {n}\nkernel: {{url: '{mirror.url(n + '/linux')}', sha256: {sha(blob(n, 3_000_000))}}}\n",
            n,
        )
        for n in ("a", "b")
    ]
    profiles.append(
        write_profile(
            tmp_path,
            f"name: gone\ntitle: G\nkernel: {{url: '{mirror.url('gone/linux')}', sha256: {'a' * 64}}}\n",
            "gone",
        )
    )
    board = BoardRecorder()
    cache = tmp_path / "cache"
    outcomes = nl.run(fetch_all(profiles, cache, board))  # type: ignore[arg-type]
    by_name = {o.profile: o for o in outcomes}
    assert by_name["gone"].error is not None and "HTTP 404" in str(by_name["gone"].error)
    assert by_name["a"].error is None and by_name["b"].error is None
    assert verified_path(profiles[0], "kernel", cache) and verified_path(profiles[1], "kernel", cache)
    starts = [i for i, (n, e) in enumerate(board.events) if e == "start"]
    done = {n: i for i, (n, e) in enumerate(board.events) if e == "verified sha256"}
    assert len(starts) >= 3 and max(starts[:3]) < min(done.values())  # all started before any ended
    # On a terminal: one line per profile, each labelled, redrawn in place.
    out = io.StringIO()
    (cache / "a" / "linux").unlink()
    (cache / "b" / "linux").unlink()
    nl.run(fetch_all(profiles[:2], cache, MultiProgress(out, tty=True)))
    text = out.getvalue()
    assert "\x1b[2A" in text and "a kernel [" in text and "b kernel [" in text
    assert "?" * 10 not in text


def test_offline_errors_say_what_to_do(upstream: tuple[NetnsLoop, Mirror, Mirrors], tmp_path: Path) -> None:
    nl, _mirror, _mirrors = upstream
    # 198.19.255.1: in the lab's /15 but on no link the namespace has: "no route", as offline.
    nowhere = Mirrors(root=f"http://198.19.255.1:{PORT}/")
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as err:
        nl.run(fetch_profiles([load_profiles()["debian-13"]], cache, RecordingProgress(), mirrors=nowhere))
    assert str(err.value) == (
        "debian-13: no route to 198.19.255.1 (offline?): copy a bundle made with `pxetui fetch --bundle`"
        " on a connected machine, or use `pxetui import-iso`"
    )
    direct = write_profile(
        tmp_path,
        f"name: far\ntitle: F\nkernel: {{url: 'http://198.19.255.1:{PORT}/linux', sha256: {'a' * 64}}}\n",
        "far",
    )
    with pytest.raises(
        FetchError, match=r"^far kernel: no route to 198.19.255.1 \(offline\?\): copy a bundle"
    ):
        nl.run(fetch_profiles([direct], cache, RecordingProgress()))
    assert "Cannot connect to host" not in str(err.value)


def test_fetch_and_check_from_the_command_line(
    upstream: tuple[NetnsLoop, Mirror, Mirrors], lab: Lab, tmp_path: Path
) -> None:
    _nl, mirror, mirrors = upstream
    _serve_tree(mirror, "repo.almalinux.org/almalinux/9/BaseOS/x86_64/os/", "9.7", tmp_path)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PXETUI_MIRROR": str(mirrors.root)}
    # rocky-9's files are not on the mirror: it fails, almalinux-9 is fetched all the same.
    cmd = [sys.executable, "-m", "pxetui", "fetch", "rocky-9", "almalinux-9", "--cache", str(cache)]
    done = lab.exec(lab.server_ns, *cmd, timeout=60, env=env, cwd=REPO)
    assert done.returncode == 1, done.stderr
    assert "almalinux-9 kernel: downloaded (release 9.7)" in done.stdout
    # The FAT image first (the loaders come out of it), so that is the 404 it stops at.
    assert "pxetui fetch: rocky-9 failed: rocky-9 image: http" in done.stderr and "HTTP 404" in done.stderr
    assert "1 of 2 profile(s) failed; the others are fetched" in done.stderr
    assert "almalinux-9 kernel: verified sha256" in done.stderr  # labelled progress lines
    assert not list(cache.rglob("*.lock"))
    check = lab.exec(
        lab.server_ns,
        sys.executable,
        "-m",
        "pxetui",
        "profiles",
        "--check",
        "--cache",
        str(cache),
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[0] == f"cache: {cache}"
    assert "almalinux-9: cached 9.7, upstream 9.7 (current)" in lines
    assert "rocky-9: not cached, upstream 9.7 (get it: pxetui fetch rocky-9)" in lines
    assert "ubuntu-24.04: not cached, upstream 24.04.4 (get it: pxetui fetch ubuntu-24.04)" in lines
    listing = subprocess.run(
        [sys.executable, "-m", "pxetui", "profiles", "--cache", str(cache)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    row = next(line for line in listing.stdout.splitlines() if line.startswith("almalinux-9 "))
    assert "9.7: present kernel,initrd,shim,grub,image (" in row


def test_one_cache_whoever_runs_it(tmp_path: Path) -> None:
    """Not root: the same /var/cache/pxetui as `sudo pxetui`, and a fetch that cannot write it says so."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }
    nobody = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        sys.executable,
        "-m",
        "pxetui",
    ]
    listing = subprocess.run(
        [*nobody, "profiles"], capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False
    )
    assert listing.returncode == 0, listing.stderr
    assert "cache: /var/cache/pxetui (the directory looked in" in listing.stdout
    if os.access("/var/cache/pxetui", os.W_OK) and Path("/var/cache/pxetui").stat().st_uid == 65534:
        pytest.skip("nobody owns /var/cache/pxetui here")
    fetch = subprocess.run(
        [*nobody, "fetch", "debian-13"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert fetch.returncode == 1
    assert (
        "cannot write the cache /var/cache/pxetui, which `sudo pxetui` serves: run this fetch with sudo"
        in fetch.stderr
    )
    assert not (tmp_path / "xdg" / "pxetui").exists()


def test_mirror_option_forms() -> None:
    both = parse_mirrors(["http://198.18.0.1:8080/m", "deb.debian.org=http://198.18.0.2/debian"], env="")
    assert (
        both.rewrite("https://releases.ubuntu.com/streams/v1/x.json")
        == "http://198.18.0.1:8080/m/releases.ubuntu.com/streams/v1/x.json"
    )
    assert (
        both.rewrite("https://deb.debian.org/debian/dists/trixie/InRelease")
        == "http://198.18.0.2/debian/debian/dists/trixie/InRelease"
    )
    assert parse_mirrors([], env="").rewrite("https://a.example/x") == "https://a.example/x"
    with pytest.raises(Exception, match="not an http"):
        parse_mirrors(["ftp://x"], env="")


def test_a_pin_that_could_leave_the_cache_is_no_pin(tmp_path: Path) -> None:
    doc = {
        "version": "../../etc",
        "files": {"kernel": {"name": "vmlinuz", "sha256": "a" * 64, "urls": ["https://x/v"]}},
    }
    (tmp_path / "release.json").write_text(json.dumps(doc))
    assert read_pin(tmp_path) is None
    doc["version"] = "9.7"
    doc["files"]["kernel"]["name"] = "../vmlinuz"  # type: ignore[index]
    (tmp_path / "release.json").write_text(json.dumps(doc))
    assert read_pin(tmp_path) is None


def test_a_bundle_carries_fetched_releases_to_an_offline_machine(
    upstream: tuple[NetnsLoop, Mirror, Mirrors], tmp_path: Path
) -> None:
    from pxetui.commands.bundle import BundleError, import_bundle, write_bundle

    nl, mirror, mirrors = upstream
    served = _serve_tree(mirror, ROCKY9, "9.7", tmp_path)
    online, offline = tmp_path / "online", tmp_path / "offline"
    profile = load_profiles()["rocky-9"]
    nl.run(fetch_profiles([profile], online, RecordingProgress(), mirrors=mirrors))
    bundle = tmp_path / "lab.tar"
    assert write_bundle(bundle, [profile, load_profiles()["debian-13"]], online) == ["rocky-9"]
    # On the lab laptop: no network at all, only the file.
    cmd = [sys.executable, "-m", "pxetui", "import-bundle", str(bundle), "--cache", str(offline)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert "rocky-9: release 9.7 5 file(s) verified" in done.stdout  # kernel, initrd, image, shim, grub
    assert verified_path(profile, "shim", offline) == offline / "rocky-9" / "9.7" / "BOOTX64.EFI"
    assert verified_path(profile, "kernel", offline) == offline / "rocky-9" / "9.7" / "vmlinuz"
    assert (offline / "rocky-9" / "9.7" / "vmlinuz").read_bytes() == served["images/pxeboot/vmlinuz"]
    assert f"inst.repo=https://{ROCKY9} " in load_profiles(cache_dir=offline)["rocky-9"].cmdline
    # A damaged copy is refused and nothing of it is served.
    data = bytearray(bundle.read_bytes())
    at = data.index(served["images/pxeboot/vmlinuz"][:64])
    data[at] ^= 0xFF
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"rocky-9/9.7/\S+: sha256 .* the copy is damaged"):
        import_bundle(tmp_path / "bad.tar", tmp_path / "third")
    assert read_pin(tmp_path / "third" / "rocky-9") is None
