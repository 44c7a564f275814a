"""Every profile validation error names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxetui.boot.profiles import ProfileError, load_profile, load_profiles

GOOD = "name: demo\ntitle: Demo\nkernel: {path: linux}\ninitrd: {path: initrd.gz}\n"
SHA = "a" * 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "a profile must be a YAML mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        (GOOD + "colour: blue\n", "unknown key 'colour' (known: name, title"),
        ("title: T\nkernel: {path: x}\n", "missing required key 'name'"),
        ("name: demo\nkernel: {path: x}\n", "missing required key 'title'"),
        ("name: Demo OS\ntitle: T\nkernel: {path: x}\n", "name 'Demo OS' must be lower-case"),
        (
            "name: d\ntitle: T\nkernel: {path: x, size: 3}\n",
            "unknown key 'kernel.size' (known: url, path, sha256, from_iso)",
        ),
        ("name: d\ntitle: T\nkernel: linux\n", "'kernel' must be a mapping"),
        ("name: d\ntitle: T\nkernel: {}\n", "'kernel' needs exactly one of 'url' or 'path'"),
        ("name: d\ntitle: T\nkernel: {path: a, url: 'http://x/a'}\n", "needs exactly one of"),
        (
            "name: d\ntitle: T\nkernel: {url: 'ftp://x/a'}\n",
            "'kernel.url' must be an http:// or https:// URL",
        ),
        ("name: d\ntitle: T\nkernel: {url: 'http://x/a', sha256: abc}\n", "'kernel.sha256' must be 64 hex"),
        ("name: d\ntitle: T\nkernel: {path: ''}\n", "'kernel.path' must be a file path"),
        (
            "name: d\ntitle: T\n",
            "a profile boots exactly one way: 'kernel' (with 'initrd'), 'chain' or 'action'; it has none",
        ),
        ("name: d\ntitle: T\naction: local\nchain: 'http://x/'\n", "it has chain, action"),
        ("name: d\ntitle: T\naction: dance\n", "'action' is 'dance'; allowed: local, shell, reboot"),
        ("name: d\ntitle: T\nchain: netboot.xyz\n", "'chain' must be an http:// or https:// URL"),
        ("name: d\ntitle: T\naction: local\ninitrd: {path: x}\n", "'initrd' and 'iso' need a 'kernel'"),
        (GOOD + "template: answers\n", "'template' is 'answers'; allowed: preseed, autoinstall, kickstart"),
        (GOOD + "cmdline: [a]\n", "'cmdline' must be a string"),
        (GOOD + "sha256sums: SHA256SUMS\n", "'sha256sums' must be an http:// or https:// URL"),
        (GOOD + "description: [a]\n", "'description' must be a string"),
        (GOOD + "arch: [sparc]\n", "'arch' has 'sparc'; allowed: x86_64, i386, arm64"),
        (GOOD + "arch: []\n", "'arch' must be a list of: x86_64, i386, arm64"),
        (GOOD + "firmware: [coreboot]\n", "'firmware' has 'coreboot'; allowed: bios, uefi"),
    ],
)
def test_each_error_names_file_and_problem(tmp_path: Path, text: str, message: str) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(source)
    assert str(err.value).startswith(f"{source}: ")
    assert message in str(err.value)


def test_a_good_profile_resolves_relative_paths_next_to_itself(tmp_path: Path) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(GOOD + f"arch: x86_64\niso: {{url: 'https://m/os.iso', sha256: {SHA.upper()}}}\n")
    profile = load_profile(source)
    assert profile.arch == ("x86_64",)
    assert profile.file_path("kernel", tmp_path / "cache") == tmp_path / "linux"
    assert profile.file_path("iso", tmp_path / "cache") == tmp_path / "cache" / "demo" / "os.iso"
    assert profile.files["iso"].sha256 == SHA
    assert profile.missing_files(tmp_path / "cache") == ["kernel", "initrd", "iso"]
    (tmp_path / "linux").write_bytes(b"k")
    assert profile.missing_files(tmp_path / "cache") == ["initrd", "iso"]


def test_operator_directory_overrides_builtins_and_rejects_duplicates(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("name: local-disk\ntitle: My local disk\naction: local\n")
    assert load_profiles([tmp_path])["local-disk"].title == "My local disk"
    (tmp_path / "again.yaml").write_text("name: local-disk\ntitle: Again\naction: local\n")
    with pytest.raises(ProfileError, match="name 'local-disk' is already used by"):
        load_profiles([tmp_path])
    with pytest.raises(ProfileError, match="no such profiles directory"):
        load_profiles([tmp_path / "absent"])


def test_builtin_profiles_are_all_valid() -> None:
    profiles = load_profiles()
    assert {"debian-12", "debian-12-local", "local-disk", "ipxe-shell", "reboot"} <= set(profiles)


RELEASE = "name: d\ntitle: T\nrelease: {format: treeinfo, url: 'https://m/os/', files: {kernel: images/pxeboot/vmlinuz}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: d\ntitle: T\nrelease: [a]\n", "'release' must be a mapping with 'format', 'url' and 'files'"),
        (
            "name: d\ntitle: T\nrelease: {format: rpm, url: 'https://m/', files: {kernel: k}}\n",
            "'release.format' is 'rpm'; allowed: ubuntu-simplestreams, debian-installer, fedora-releases, treeinfo",
        ),
        (RELEASE.replace("url:", "colour: blue, url:"), "unknown key 'release.colour'"),
        (
            RELEASE.replace("'https://m/os/'", "'ftp://m/'"),
            "'release.url' must be an http:// or https:// URL",
        ),
        (RELEASE.replace("{kernel: images/pxeboot/vmlinuz}", "{}"), "'release.files' must map roles"),
        (
            RELEASE.replace("kernel:", "shim:"),
            "'release.files' has role 'shim'; allowed: kernel, initrd, iso",
        ),
        (RELEASE + "kernel: {path: k}\n", "'kernel' is given twice: by 'release.files' and by 'kernel:'"),
        (
            "name: d\ntitle: T\nrelease: {format: ubuntu-simplestreams, url: 'https://m/', files: {iso: iso}}\n",
            "a ubuntu-simplestreams release needs 'release.line'",
        ),
        (RELEASE + "sha256sums: 'https://m/SUMS'\n", "'sha256sums' and 'release' exclude each other"),
        (
            GOOD + "cmdline: 'inst.repo={{ release.tree }}'\n",
            "'cmdline' uses {{ release.* }} but the profile has no 'release'",
        ),
        (
            RELEASE.replace("url:", "line: 9.6, url:").replace("treeinfo", "fedora-releases"),
            "needs 'release.tree'",
        ),
    ],
)
def test_release_lines_are_checked_like_the_rest(tmp_path: Path, text: str, message: str) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(source)
    assert str(err.value).startswith(f"{source}: ")
    assert message in str(err.value)


def test_a_release_profile_is_missing_until_a_pin_names_its_version(tmp_path: Path) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(RELEASE)
    profile = load_profile(source)
    assert profile.files["kernel"].release == "images/pxeboot/vmlinuz"
    assert profile.missing_files(tmp_path / "cache") == ["kernel"]
    assert (
        profile.file_path("kernel", tmp_path / "cache") == tmp_path / "cache" / "d" / "unpinned" / "vmlinuz"
    )
