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
        ("name: [unclosed\n", "not valid YAML: line 2, column 1: while parsing a flow sequence"),
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


# Issue 15/16: a tree's loaders come out of its checksummed FAT image; Debian's are release items.
TREE_SB = (
    RELEASE
    + "secure_boot:\n  vendor: rocky\n  image: {release: images/efiboot.img}\n"
    + "  shim: {from_image: EFI/BOOT/BOOTX64.EFI}\n  grub: {from_image: EFI/BOOT/grubx64.efi}\n"
)


def test_secure_boot_loaders_from_a_release_item_or_inside_its_fat_image(tmp_path: Path) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(TREE_SB)
    profile = load_profile(source)
    assert profile.own_loaders and profile.secure_boot == "rocky"
    assert profile.files["shim"].from_image == "EFI/BOOT/BOOTX64.EFI" and profile.files["shim"].extracted
    assert profile.files["image"].release == "images/efiboot.img"
    # The image is an item of the release: resolving the release gives its URL and SHA-256.
    assert profile.release is not None and profile.release.files["image"] == "images/efiboot.img"
    assert "shim" not in profile.release.files  # taken out of the image, not downloaded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            TREE_SB.replace("  image: {release: images/efiboot.img}\n", ""),
            "'from_image' needs 'secure_boot.image' (the FAT image to take it from)",
        ),
        (
            TREE_SB.replace("EFI/BOOT/BOOTX64.EFI", "../../etc/shadow"),
            "'secure_boot.shim.from_image' must be a path inside the image",
        ),
        (
            TREE_SB.replace("EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/*.EFI"),
            "'secure_boot.shim.from_image' must be a path inside the image",
        ),
        (
            TREE_SB.replace("EFI/BOOT/BOOTX64.EFI", "-oEFI"),
            "'secure_boot.shim.from_image' must be a path inside the image",
        ),
        (
            TREE_SB.replace("EFI/BOOT/BOOTX64.EFI", "/EFI/./BOOTX64.EFI"),
            "must be a path inside the image",
        ),
        (
            TREE_SB.replace("{release: images/efiboot.img}", "{from_image: x.img}"),
            "'secure_boot.image' is the file the loaders come out of",
        ),
        (
            TREE_SB.replace("{from_image: EFI/BOOT/grubx64.efi}", "{path: /g.efi}"),
            "",
        ),
        (
            GOOD + "secure_boot:\n  vendor: debian\n  shim: {release: a/bootnetx64.efi}\n  grub: {path: g}\n",
            "'release' items in 'secure_boot' need the profile's 'release:'",
        ),
        (
            TREE_SB.replace(
                "{release: images/efiboot.img}", f"{{release: images/efiboot.img, sha256: '{SHA}'}}"
            ),
            "'secure_boot.image.sha256' comes from the release or the verified image",
        ),
        (
            "name: d\ntitle: T\nkernel: {release: images/pxeboot/vmlinuz}\n",
            "unknown key 'kernel.release' (known: url, path, sha256, from_iso)",
        ),
        (
            "name: d\ntitle: T\nkernel: {path: k}\ninitrd: {from_image: EFI/x}\n",
            "unknown key 'initrd.from_image'",
        ),
        (
            GOOD
            + "secure_boot:\n  vendor: d\n  shim: {path: s}\n  grub: {path: g}\n  image: {path: i.img}\n",
            "'secure_boot.image' is used by no 'from_image'",
        ),
    ],
)
def test_secure_boot_file_sources_are_checked(tmp_path: Path, text: str, message: str) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(text)
    if not message:  # a valid mix: one loader from the image, one the operator's own
        assert load_profile(source).files["grub"].path == "/g.efi"
        return
    with pytest.raises(ProfileError) as err:
        load_profile(source)
    assert str(err.value).startswith(f"{source}: ")
    assert message in str(err.value)


# Ubuntu's network loaders come out of its netboot tarball (the ISO's GRUB is a CD build).
UBUNTU_SB = (
    RELEASE
    + "secure_boot:\n  vendor: ubuntu\n  archive: {release: netboot}\n"
    + "  shim: {from_archive: amd64/bootx64.efi}\n  grub: {from_archive: amd64/grubx64.efi}\n"
)


def test_secure_boot_loaders_inside_a_release_tar_archive(tmp_path: Path) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(UBUNTU_SB)
    profile = load_profile(source)
    assert profile.own_loaders and profile.secure_boot == "ubuntu"
    grub = profile.files["grub"]
    assert grub.from_archive == "amd64/grubx64.efi" and grub.extracted and grub.container == "archive"
    assert profile.files["archive"].release == "netboot"
    # The archive is an item of the release; the loaders are read out of it, not downloaded.
    assert profile.release is not None and profile.release.files["archive"] == "netboot"
    assert "grub" not in profile.release.files


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            UBUNTU_SB.replace("  archive: {release: netboot}\n", ""),
            "'from_archive' needs 'secure_boot.archive' (the tar archive to take it from),"
            " like archive: {release: netboot}",
        ),
        (
            UBUNTU_SB.replace("amd64/grubx64.efi", "../x"),
            "'secure_boot.grub.from_archive' must be a path inside the archive, like amd64/grubx64.efi"
            " (plain names), not '../x'",
        ),
        (
            UBUNTU_SB.replace("amd64/grubx64.efi", "amd64/../../x"),
            "'secure_boot.grub.from_archive' must be a path inside the archive",
        ),
        # A tar member named /amd64/grubx64.efi is not amd64/grubx64.efi: refused, not stripped.
        (
            UBUNTU_SB.replace("amd64/grubx64.efi", "/amd64/grubx64.efi"),
            "'secure_boot.grub.from_archive' must be a path inside the archive",
        ),
        (
            UBUNTU_SB.replace("amd64/grubx64.efi", "./amd64/grubx64.efi"),
            "'secure_boot.grub.from_archive' must be a path inside the archive",
        ),
        (
            UBUNTU_SB.replace("{release: netboot}", "{from_archive: x.tar.gz}"),
            "'secure_boot.archive' is the file the loaders come out of",
        ),
        (
            UBUNTU_SB.replace(
                "{from_archive: amd64/grubx64.efi}", f"{{from_archive: amd64/grubx64.efi, sha256: '{SHA}'}}"
            ),
            "'secure_boot.grub.sha256' comes from the release or the verified image or archive",
        ),
        (
            "name: d\ntitle: T\nkernel: {path: k}\ninitrd: {from_archive: amd64/initrd}\n",
            "unknown key 'initrd.from_archive'",
        ),
        (
            GOOD
            + "secure_boot:\n  vendor: d\n  shim: {path: s}\n  grub: {path: g}\n  archive: {path: n.tar.gz}\n",
            "'secure_boot.archive' is used by no 'from_archive'",
        ),
        (
            UBUNTU_SB.replace(
                "{from_archive: amd64/bootx64.efi}", "{from_archive: amd64/bootx64.efi, path: s}"
            ),
            "'secure_boot.shim' needs exactly one of 'url' or 'path'",
        ),
    ],
)
def test_secure_boot_archive_sources_are_checked(tmp_path: Path, text: str, message: str) -> None:
    source = tmp_path / "demo.yaml"
    source.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(source)
    assert str(err.value).startswith(f"{source}: ")
    assert message in str(err.value)
