"""OS profiles: one YAML file per OS, validated strictly (unknown keys are errors).

A profile names its files by URL, by local path, as a file inside its ISO, or through a
`release:` line resolved from upstream metadata (`boot/upstream/`). Its Secure Boot loaders
may also be items of that release (Debian's bootnetx64.efi in SHA256SUMS: added to the
release's files, so they resolve like the kernel), files inside a FAT image the release
checksums (`from_image`: a Red Hat tree's EFI/BOOT/*.EFI in images/efiboot.img) or files inside
a tar archive it checksums (`from_archive`: Ubuntu's amd64/bootx64.efi + grubx64.efi in its
netboot tarball; the ISO's GRUB is a CD build that does not boot from the network). A release
profile's files
live in `CACHE/NAME/VERSION/` and the pin `CACHE/NAME/release.json` says which version is the
one to serve; every lookup reads the pin, so a `pxetui fetch` that moves it is seen at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from pxetui.boot.firmware import FIRMWARES, PROFILE_ARCHES
from pxetui.boot.resources import data_dir
from pxetui.boot.upstream import ReleaseSpec, UpstreamError, parse_spec, read_pin
from pxetui.errors import UsageError

TEMPLATES = ("preseed", "autoinstall", "kickstart")
ACTIONS = ("local", "shell", "reboot")
FILE_ROLES = ("kernel", "initrd", "iso")
KEYS = {
    "name": "id used in plans, URLs and the menu",
    "title": "what the menu shows",
    "description": "a longer note",
    "arch": "list of iPXE ${buildarch}: x86_64, i386, arm64",
    "firmware": "list: bios, uefi",
    "kernel": "{url, sha256} or {path}",
    "initrd": "{url, sha256} or {path}",
    "iso": "{url, sha256} or {path}",
    "sha256sums": "URL of an upstream SHA256SUMS file",
    "cmdline": "kernel command line (a template)",
    "template": "preseed | autoinstall | kickstart",
    "chain": "URL of an iPXE script to chain to (netboot.xyz)",
    "action": "local | shell | reboot, for entries that boot no OS",
    "release": "a release line resolved from upstream metadata: {format, url, files, ...}",
    "mirror": "{path: DIR}: a local Debian mirror (dists/ and pool/ in DIR) that pxetui serves itself",
    "secure_boot": "whose shim trusts the kernel (e.g. debian), or {vendor, shim, grub[, image | archive]}:"
    " the profile's own signed loaders, each {url, sha256} or {path} or {from_iso: PATH} (inside its iso) or"
    " {release: ITEM} (an item of its release, like netboot/debian-installer/amd64/bootnetx64.efi) or"
    " {from_image: PATH} (inside `image`, a verified FAT image such as a tree's images/efiboot.img:"
    " image: {release: images/efiboot.img}, shim: {from_image: EFI/BOOT/BOOTX64.EFI}) or"
    " {from_archive: PATH} (inside `archive`, a verified tar archive such as Ubuntu's netboot tarball:"
    " archive: {release: netboot}, shim: {from_archive: amd64/bootx64.efi})",
}
# `secure_boot: {vendor, shim, grub}`: the profile's own Secure Boot loaders, kept in `files`
# under these roles so they are fetched, verified and bundled like its kernel.
LOADER_ROLES = ("shim", "grub")
# `secure_boot.image`: a FAT image (a Red Hat tree's images/efiboot.img) the loaders are taken
# out of; the image is what upstream checksums, its EFI/BOOT/*.EFI files are not.
IMAGE_ROLE = "image"
# `secure_boot.archive`: a tar archive (Ubuntu's netboot tarball) the loaders are taken out of,
# for the same reason: upstream's SHA256SUMS lists the tarball, not its members.
ARCHIVE_ROLE = "archive"
# Each container role and the FileRef key that names a file inside it.
CONTAINERS = {"iso": "from_iso", IMAGE_ROLE: "from_image", ARCHIVE_ROLE: "from_archive"}
SECURE_BOOT_KEYS = ("vendor", *LOADER_ROLES, IMAGE_ROLE, ARCHIVE_ROLE)
FILE_KEYS = ("url", "path", "sha256", "from_iso")
# Only the Secure Boot files may name an item of the release or a file inside the FAT image or
# the tar archive: the kernel, initrd and iso of a release come from `release.files`.
LOADER_FILE_KEYS = (*FILE_KEYS, "release", "from_image", "from_archive")
# A path inside an ISO, a FAT image or a tar archive: plain names only. mtools expands * ? [ ]
# and reads a leading '-' as an option; '..' or an absolute path would name something else.
_INNER_PATH = re.compile(r"^[A-Za-z0-9_+~][A-Za-z0-9._+~-]*(/[A-Za-z0-9_+~][A-Za-z0-9._+~-]*)*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RELEASE_VAR = re.compile(r"\{\{\s*release\.(tree|version)\s*\}\}")
DEFAULT_CACHE = Path("/var/cache/pxetui")


class ProfileError(UsageError):
    pass


@dataclass(frozen=True, slots=True)
class FileRef:
    url: str | None = None
    path: str | None = None
    sha256: str | None = None
    # A file inside this profile's `iso` (e.g. casper/vmlinuz): `pxetui fetch` extracts it
    # into the cache once the ISO itself is verified.
    from_iso: str | None = None
    # An item of the profile's `release:` (its URL and sha256 come from the pin).
    release: str | None = None
    # A file inside the profile's `secure_boot.image` (a FAT image, e.g. EFI/BOOT/BOOTX64.EFI):
    # `pxetui fetch` copies it out once the image itself is verified.
    from_image: str | None = None
    # A member of the profile's `secure_boot.archive` (a tar archive, e.g. amd64/grubx64.efi):
    # `pxetui fetch` reads it out once the archive itself is verified.
    from_archive: str | None = None
    # Other URLs with the same bytes, tried in order when the first is gone (HTTP 404).
    mirrors: tuple[str, ...] = ()

    @property
    def basename(self) -> str:
        if self.path:
            return Path(self.path).name
        if self.from_iso:
            return PurePosixPath(self.from_iso).name
        if self.from_image:
            return PurePosixPath(self.from_image).name
        if self.from_archive:
            return PurePosixPath(self.from_archive).name
        if self.release:
            return PurePosixPath(self.release).name
        assert self.url is not None
        return PurePosixPath(urlsplit(self.url).path).name or "file"

    @property
    def container(self) -> str | None:
        """The role of the file this one is taken out of (iso, image, archive), if any."""
        if self.from_iso is not None:
            return "iso"
        if self.from_image is not None:
            return IMAGE_ROLE
        if self.from_archive is not None:
            return ARCHIVE_ROLE
        return None

    @property
    def inner(self) -> str | None:
        """Its path inside that container."""
        return self.from_iso or self.from_image or self.from_archive

    @property
    def extracted(self) -> bool:
        """Taken out of another verified file of the profile (its iso, FAT image or archive)."""
        return self.container is not None


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str
    source: Path
    arch: tuple[str, ...] = ("x86_64",)
    firmware: tuple[str, ...] = FIRMWARES
    description: str = ""
    files: Mapping[str, FileRef] = field(default_factory=dict)
    sha256sums: str | None = None
    cmdline_template: str = ""
    template: str | None = None
    chain: str | None = None
    action: str | None = None
    release: ReleaseSpec | None = None
    # The vendor whose Secure Boot chain (shim + GRUB) boots this kernel: "the first shim
    # decides which vendor may boot". None: the kernel is not known to be signed.
    secure_boot: str | None = None
    # The cache whose pin `{{ release.tree }}` / `{{ release.version }}` read (see load_profiles).
    cache_dir: Path | None = None
    # `mirror: {path: DIR}`: a local package mirror (a Debian mirror copied onto a USB disk)
    # that the HTTP service serves under /mirror/NAME/; the answer files point the installer at
    # it instead of the upstream mirror and the package proxy.
    mirror: Path | None = None

    def fits(self, arch: str | None) -> bool:
        return arch is None or arch in self.arch

    @property
    def own_loaders(self) -> bool:
        """Whether the profile brings its own Secure Boot shim and GRUB (`secure_boot.shim`)."""
        return all(role in self.files for role in LOADER_ROLES)

    @property
    def cmdline(self) -> str:
        """The kernel command line template, with the pinned release's tree and version in it."""
        text = self.cmdline_template
        if self.release is None or "release." not in text:
            return text
        pin = read_pin(self.cache_dir / self.name) if self.cache_dir is not None else None
        values = {
            "tree": pin.tree if pin else self.release.unbound_tree(),
            "version": pin.version if pin else self.release.line,
        }
        return _RELEASE_VAR.sub(lambda m: values[m.group(1)], text)

    def pinned_version(self, cache_dir: Path) -> str | None:
        pin = read_pin(cache_dir / self.name) if self.release is not None else None
        return pin.version if pin else None

    def file_path(self, role: str, cache_dir: Path) -> Path:
        """Where the file for `role` is on disk: its `path:`, else its place in the cache."""
        ref = self.files[role]
        if ref.path:
            p = Path(ref.path)
            return p if p.is_absolute() else (self.source.parent / p)
        if self.release is not None:
            home = cache_dir / self.name
            pin = read_pin(home)
            if pin is None:
                return home / "unpinned" / ref.basename  # nothing fetched yet: always missing
            pinned = pin.files.get(role)
            return home / pin.version / (pinned.name if pinned else ref.basename)
        return cache_dir / self.name / ref.basename

    def missing_files(self, cache_dir: Path) -> list[str]:
        return [r for r in self.files if not self.file_path(r, cache_dir).is_file()]


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def _fail(source: Path, message: str) -> ProfileError:
    return ProfileError(f"{source}: {message}")


def _str_list(source: Path, key: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise _fail(source, f"'{key}' must be a list of: {', '.join(allowed)}")
    for item in items:
        if item not in allowed:
            raise _fail(source, f"'{key}' has {item!r}; allowed: {', '.join(allowed)}")
    return tuple(items)


def _inner_path(source: Path, key: str, value: Any, where: str, example: str, relative: bool = False) -> str:
    """A path inside an ISO, FAT image or archive: relative, plain names, nothing that climbs out.

    `relative`: a leading '/' is refused, not dropped (a tar member named /x is another file
    than x, and one that tar itself would write outside the directory).
    """
    text = value.strip("/") if isinstance(value, str) and not relative else value
    if (
        not isinstance(text, str)
        or not _INNER_PATH.match(text)
        or any(part in (".", "..") for part in text.split("/"))
    ):
        raise _fail(
            source, f"'{key}' must be a path inside the {where}, like {example} (plain names), not {value!r}"
        )
    return text


def _file_ref(source: Path, role: str, value: Any, keys: tuple[str, ...] = FILE_KEYS) -> FileRef:
    if not isinstance(value, dict):
        raise _fail(source, f"'{role}' must be a mapping with 'url' (and 'sha256') or 'path'")
    for key in value:
        if key not in keys:
            raise _fail(source, f"unknown key '{role}.{key}' (known: {', '.join(keys)})")
    url, path, sha = value.get("url"), value.get("path"), value.get("sha256")
    inner, in_image, item = value.get("from_iso"), value.get("from_image"), value.get("release")
    in_archive = value.get("from_archive")
    if [url, path, inner, in_image, in_archive, item].count(None) != 5:
        others = "'from_iso': a file inside the profile's iso"
        if "from_image" in keys:
            others += (
                ", 'release': an item of its release, 'from_image': a file inside secure_boot.image,"
                " 'from_archive': a file inside secure_boot.archive"
            )
        raise _fail(source, f"'{role}' needs exactly one of 'url' or 'path' (or {others})")
    if inner is not None:
        if role == "iso":
            raise _fail(source, "'iso.from_iso' must be a path inside the iso: the iso itself is not in one")
        inner = _inner_path(source, f"{role}.from_iso", inner, "iso", "casper/vmlinuz")
    if in_image is not None:
        in_image = _inner_path(source, f"{role}.from_image", in_image, "image", "EFI/BOOT/BOOTX64.EFI")
    if in_archive is not None:
        in_archive = _inner_path(
            source, f"{role}.from_archive", in_archive, "archive", "amd64/grubx64.efi", relative=True
        )
    if item is not None and (not isinstance(item, str) or not item.strip("/")):
        raise _fail(source, f"'{role}.release' must name an item of the profile's release, like a path")
    if sha is not None and (item is not None or in_image is not None or in_archive is not None):
        raise _fail(
            source, f"'{role}.sha256' comes from the release or the verified image or archive: leave it out"
        )
    if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")):
        raise _fail(source, f"'{role}.url' must be an http:// or https:// URL, not {url!r}")
    if path is not None and (not isinstance(path, str) or not path):
        raise _fail(source, f"'{role}.path' must be a file path")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha.lower())):
        hint = " in quotes (YAML read it as a number)" if isinstance(sha, int | float) else ""
        raise _fail(source, f"'{role}.sha256' must be 64 hex digits{hint}")
    ref = FileRef(
        url=url,
        path=path,
        sha256=sha.lower() if sha else None,
        from_iso=inner,
        release=item.strip("/") if item else None,
        from_image=in_image,
        from_archive=in_archive,
    )
    if ref.basename in ("", ".", ".."):
        # The cache keeps a file under its last path component: it must name a file.
        raise _fail(source, f"'{role}' must name a file, not {url or path or inner or in_archive or item!r}")
    return ref


def parse_profile(source: Path, doc: Any) -> Profile:
    if not isinstance(doc, dict):
        raise _fail(source, "a profile must be a YAML mapping (key: value lines)")
    for key in doc:
        if key not in KEYS:
            raise _fail(source, f"unknown key '{key}' (known: {', '.join(KEYS)})")
    for key in ("name", "title"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise _fail(source, f"missing required key '{key}' ({KEYS[key]})")
    name = doc["name"]
    if not _NAME.match(name):
        raise _fail(source, f"name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    files = {role: _file_ref(source, role, doc[role]) for role in FILE_ROLES if role in doc}
    release = _release(source, doc, files)
    action, chain = doc.get("action"), doc.get("chain")
    if action is not None and action not in ACTIONS:
        raise _fail(source, f"'action' is {action!r}; allowed: {', '.join(ACTIONS)}")
    if chain is not None and (not isinstance(chain, str) or urlsplit(chain).scheme not in ("http", "https")):
        raise _fail(source, "'chain' must be an http:// or https:// URL")
    kinds = [
        k for k, present in (("kernel", "kernel" in files), ("chain", chain), ("action", action)) if present
    ]
    if len(kinds) != 1:
        raise _fail(
            source,
            "a profile boots exactly one way: 'kernel' (with 'initrd'), 'chain' or 'action'"
            + (f"; it has {', '.join(kinds)}" if kinds else "; it has none"),
        )
    if "kernel" not in files and ("initrd" in files or "iso" in files):
        raise _fail(source, "'initrd' and 'iso' need a 'kernel'")
    if any(ref.from_iso for ref in files.values()) and "iso" not in files:
        raise _fail(source, "'from_iso' needs an 'iso' to take the file from")
    basenames = [ref.basename for ref in files.values() if not ref.path and not ref.release]
    if len(set(basenames)) != len(basenames):
        raise _fail(source, f"two files would share one name in the cache: {', '.join(basenames)}")
    template = doc.get("template")
    if template is not None and template not in TEMPLATES:
        raise _fail(source, f"'template' is {template!r}; allowed: {', '.join(TEMPLATES)}")
    cmdline = doc.get("cmdline", "")
    if not isinstance(cmdline, str):
        raise _fail(source, "'cmdline' must be a string")
    sums = doc.get("sha256sums")
    if sums is not None and (not isinstance(sums, str) or urlsplit(sums).scheme not in ("http", "https")):
        raise _fail(source, "'sha256sums' must be an http:// or https:// URL")
    if sums is not None and release is not None:
        raise _fail(
            source, "'sha256sums' and 'release' exclude each other: a release brings its own checksums"
        )
    if _RELEASE_VAR.search(cmdline) and release is None:
        raise _fail(source, "'cmdline' uses {{ release.* }} but the profile has no 'release'")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, "'description' must be a string")
    # May add loaders to `files` and their release items to `release`.
    secure_boot, release = _secure_boot(source, doc.get("secure_boot"), files, doc.get("arch"), release)
    mirror = _mirror(source, doc.get("mirror"))
    return Profile(
        name=name,
        title=doc["title"].strip(),
        source=source,
        arch=_str_list(source, "arch", doc.get("arch", ["x86_64"]), PROFILE_ARCHES),
        firmware=_str_list(source, "firmware", doc.get("firmware", list(FIRMWARES)), FIRMWARES),
        description=description,
        files=files,
        sha256sums=sums,
        cmdline_template=cmdline,
        template=template,
        chain=chain,
        action=action,
        release=release,
        secure_boot=secure_boot,
        mirror=mirror,
    )


MIRROR_KEYS = ("path",)


def _mirror(source: Path, value: Any) -> Path | None:
    """`mirror: {path: DIR}`: checked at load, so a missing USB disk is said before any PC boots."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(source, "'mirror' must be a mapping: mirror: {path: /media/usb/debian}")
    for key in value:
        if key not in MIRROR_KEYS:
            raise _fail(source, f"unknown key 'mirror.{key}' (known: {', '.join(MIRROR_KEYS)})")
    path = value.get("path")
    if not isinstance(path, str) or not path:
        raise _fail(source, "'mirror.path' must be the directory of a local mirror (with dists/ and pool/)")
    directory = Path(path) if Path(path).is_absolute() else source.parent / path
    if not directory.is_dir():
        raise _fail(source, f"'mirror.path' {directory}: no such directory (is the disk mounted?)")
    if not (directory / "dists").is_dir():
        raise _fail(
            source,
            f"'mirror.path' {directory} has no dists/: name the directory that holds dists/ and pool/"
            " (for a copy of deb.debian.org/debian, the debian/ directory)",
        )
    return directory.resolve()


def _secure_boot(
    source: Path, value: Any, files: dict[str, FileRef], arch: Any, release: ReleaseSpec | None
) -> tuple[str | None, ReleaseSpec | None]:
    """`secure_boot: VENDOR`, or `{vendor, shim, grub[, image | archive]}`: the profile's own loaders.

    The loaders go into `files` (roles shim, grub, and image or archive: the FAT image or tar
    archive they come out of); those naming a release item are added to the release's files, so resolving the
    release gives their URLs and SHA-256s like the kernel's. One shim serves one CPU, so a
    profile with its own loaders names exactly one arch.
    """
    if not isinstance(value, dict):
        return _vendor(source, value, "kernel" in files), release
    for key in value:
        if key not in SECURE_BOOT_KEYS:
            raise _fail(source, f"unknown key 'secure_boot.{key}' (known: {', '.join(SECURE_BOOT_KEYS)})")
    if not all(role in value for role in LOADER_ROLES):
        raise _fail(source, "'secure_boot' as a mapping needs 'shim' and 'grub' (and 'vendor')")
    arches = [arch] if isinstance(arch, str) else arch if isinstance(arch, list) else ["x86_64"]
    if len(arches) != 1:
        raise _fail(
            source,
            "'secure_boot' with its own shim and grub needs exactly one 'arch': a shim runs on one CPU",
        )
    vendor = _vendor(source, value.get("vendor"), "kernel" in files)
    if vendor is None:
        raise _fail(source, "'secure_boot.vendor' is missing: the vendor whose shim this is, like fedora")
    for role in (*LOADER_ROLES, IMAGE_ROLE, ARCHIVE_ROLE):
        if role in value:
            files[role] = _file_ref(source, f"secure_boot.{role}", value[role], LOADER_FILE_KEYS)
    if any(files[role].from_iso for role in LOADER_ROLES) and "iso" not in files:
        raise _fail(source, "'from_iso' needs an 'iso' to take the file from")
    for container, what, example in (
        (IMAGE_ROLE, "the FAT image", "image: {release: images/efiboot.img}"),
        (ARCHIVE_ROLE, "the tar archive", "archive: {release: netboot}"),
    ):
        key = CONTAINERS[container]
        if container in files and files[container].extracted:
            raise _fail(
                source,
                f"'secure_boot.{container}' is the file the loaders come out of: a url, path or release item",
            )
        inside = [role for role in LOADER_ROLES if files[role].container == container]
        if inside and container not in files:
            raise _fail(
                source, f"'{key}' needs 'secure_boot.{container}' ({what} to take it from), like {example}"
            )
        if container in files and not inside:
            raise _fail(source, f"'secure_boot.{container}' is used by no '{key}': drop it")
    items = {role: ref.release for role, ref in files.items() if role in SECURE_BOOT_KEYS and ref.release}
    if items:
        if release is None:
            raise _fail(source, "'release' items in 'secure_boot' need the profile's 'release:'")
        release = replace(release, files={**release.files, **items})
    names = [ref.basename for ref in files.values() if not ref.path]
    if len(set(names)) != len(names):
        raise _fail(source, f"two files would share one name in the cache: {', '.join(names)}")
    return vendor, release


def _vendor(source: Path, value: Any, boots_kernel: bool) -> str | None:
    """`secure_boot: VENDOR`: the vendor whose shim trusts this profile's kernel."""
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.match(value):
        raise _fail(source, "'secure_boot' must name the vendor whose shim trusts the kernel, like debian")
    if not boots_kernel:
        raise _fail(source, "'secure_boot' needs a 'kernel': only a signed kernel boots behind shim")
    return value


def _release(source: Path, doc: dict[str, Any], files: dict[str, FileRef]) -> ReleaseSpec | None:
    """Parse `release:` and add a FileRef per role it provides to `files`."""
    if "release" not in doc:
        return None
    try:
        spec = parse_spec(doc["release"], str(source))
    except UpstreamError as exc:
        raise ProfileError(str(exc)) from exc
    for role, item in spec.files.items():
        if role not in FILE_ROLES:
            raise _fail(source, f"'release.files' has role {role!r}; allowed: {', '.join(FILE_ROLES)}")
        if role in files:
            raise _fail(source, f"'{role}' is given twice: by 'release.files' and by '{role}:'")
        files[role] = FileRef(release=item)
    return spec


def load_profile(source: Path) -> Profile:
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(source, f"cannot read: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(source, f"not valid YAML: {_yaml_problem(exc)}") from exc
    return parse_profile(source, doc)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message with the line and column, without its `in "<unicode string>"` noise."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return str(exc)


def builtin_profiles_dir() -> Path:
    return data_dir("profiles")


def imported_profiles_dir(cache_dir: Path) -> Path:
    """Where `pxetui import-iso` (and the TUI's import) write profiles: read at every start."""
    return cache_dir / "profiles"


def profile_dirs(extra_dirs: Iterable[Path] = (), cache_dir: Path | None = None) -> list[Path]:
    """The directories `load_profiles` reads, in order: built-ins, CACHE/profiles, --profiles DIRs.

    CACHE/profiles only when it exists (nothing was imported yet otherwise), and once: an
    operator told to pass `--profiles CACHE/profiles` before it was read by default still may.
    """
    dirs = [builtin_profiles_dir()]
    if cache_dir is not None and imported_profiles_dir(cache_dir).is_dir():
        dirs.append(imported_profiles_dir(cache_dir))
    for directory in extra_dirs:
        if not any(directory.resolve() == seen.resolve() for seen in dirs):
            dirs.append(directory)
    return dirs


def load_profiles(extra_dirs: Iterable[Path] = (), cache_dir: Path | None = None) -> dict[str, Profile]:
    """Built-in profiles, then the imported ones in CACHE/profiles, then each extra directory.

    A later directory overrides by name. `cache_dir`: the cache whose imported profiles are
    read, and that a release profile's command line reads its pin from (the Session's).
    """
    imported = imported_profiles_dir(cache_dir) if cache_dir is not None else None
    profiles: dict[str, Profile] = {}
    for directory in profile_dirs(extra_dirs, cache_dir):
        if not directory.is_dir():
            raise ProfileError(f"{directory}: no such profiles directory")
        names: dict[str, Path] = {}
        for source in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
            try:
                profile = load_profile(source)
                if profile.name in names:
                    raise _fail(source, f"name {profile.name!r} is already used by {names[profile.name]}")
            except ProfileError as exc:
                if directory != imported:
                    raise
                # A directory the operator never named on the command line: say why it is read.
                raise ProfileError(
                    f"{exc} (pxetui reads every profile in {directory}, where imported ISOs' profiles"
                    " go, at each start: fix or delete that file)"
                ) from exc
            names[profile.name] = source
            profiles[profile.name] = replace(profile, cache_dir=cache_dir)
    return profiles


def default_cache_dir() -> Path:
    """One cache whoever runs pxetui: `sudo pxetui` serves what `pxetui fetch` downloaded.

    A per-user default (~/.cache) made files fetched without sudo look missing to the server.
    """
    return DEFAULT_CACHE
