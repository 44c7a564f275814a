"""`pxetui import-iso PATH`: boot an installer ISO over the network without mounting it.

pycdlib reads the ISO's directory tree; we look for the kernel and initrd of the common
layouts, copy them into the cache, and write a profile YAML that boots them. An ISO the
installer downloads itself (casper) is copied into the cache too: the profile must not depend
on a file in the operator's Downloads folder that may be gone by the time the lab starts.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pycdlib
import yaml
from pycdlib.pycdlibexception import PyCdlibException

from pxetui.boot.cache import part_path, write_marker
from pxetui.boot.profiles import (
    builtin_profiles_dir,
    default_cache_dir,
    is_valid_name,
    load_profile,
    load_profiles,
)
from pxetui.commands.options import add_cache_option
from pxetui.errors import UsageError


class IsoError(UsageError):
    pass


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one family of installers keeps its network-bootable kernel and initrd."""

    family: str
    kernels: tuple[str, ...]  # candidates, best first; lower-case paths inside the ISO
    initrds: tuple[str, ...]
    template: str
    needs_iso: bool  # whether the installer fetches the ISO itself over HTTP
    cmdline: str
    note: str


LAYOUTS = (
    Layout(
        family="ubuntu-live (casper/)",
        kernels=("casper/vmlinuz", "casper/vmlinuz.efi"),
        initrds=("casper/initrd", "casper/initrd.gz", "casper/initrd.lz"),
        template="autoinstall",
        needs_iso=True,
        # casper downloads the ISO named by url= into RAM and boots from it.
        cmdline="ip=dhcp url={{ machine.base_url }}/files/{{ machine.profile }}/iso autoinstall"
        " ds=nocloud;s={{ machine.url }}/ cloud-config-url=/dev/null",
        note="casper fetches the whole ISO over HTTP into RAM: give the PCs 4 GB or more.",
    ),
    Layout(
        family="debian-installer (install.amd/)",
        kernels=("install.amd/vmlinuz",),
        initrds=("install.amd/initrd.gz",),
        template="preseed",
        needs_iso=False,
        cmdline="auto=true priority=critical url={{ machine.url }}/preseed.cfg"
        " hostname={{ machine.hostname }} domain=lab",
        note="This is the CD flavour of the installer initrd: it looks for the CD itself."
        " For network installs the debian-12 / debian-13 netboot profiles are the better fit.",
    ),
    Layout(
        family="anaconda (images/pxeboot/)",
        kernels=("images/pxeboot/vmlinuz",),
        initrds=("images/pxeboot/initrd.img",),
        template="kickstart",
        # Anaconda's inst.repo / inst.stage2 take an installable tree, not an ISO over HTTP:
        # point it at the release's tree on the distribution's mirror (see anaconda_tree_url).
        needs_iso=False,
        cmdline="ip=dhcp inst.repo={repo} inst.ks={{{{ machine.url }}}}/ks.cfg",
        note="Anaconda cannot install from an ISO over HTTP; it loads the installer and packages"
        " from the release's tree on the mirror named by inst.repo.",
    ),
)


def _normalize(iso9660_name: str) -> str:
    """ISO 9660 names are upper-case with ';1' versions; compare them as plain lower-case paths."""
    name = iso9660_name.split(";", 1)[0].rstrip(".")
    return name.lower()


class IsoReader:
    """An open ISO and a map from lower-case path to the name the ISO really uses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._iso = pycdlib.PyCdlib()
        try:
            self._iso.open(str(path))
        except (OSError, PyCdlibException) as exc:
            raise IsoError(f"{path}: not a readable ISO 9660 image ({exc})") from exc
        if self._iso.has_rock_ridge():
            self._facade = "rr_path"
        elif self._iso.has_joliet():
            self._facade = "joliet_path"
        else:
            self._facade = "iso_path"
        self.files: dict[str, str] = {}
        for dirpath, _dirs, names in self._iso.walk(**{self._facade: "/"}):
            for name in names:
                real = f"{dirpath.rstrip('/')}/{name}"
                key = real.lstrip("/") if self._facade != "iso_path" else _normalize(real.lstrip("/"))
                self.files.setdefault(key.lower(), real)

    @property
    def volume_id(self) -> str:
        pvd = self._iso.pvds[0] if getattr(self._iso, "pvds", None) else None
        raw = getattr(pvd, "volume_identifier", b"") if pvd is not None else b""
        return raw.decode("ascii", "replace").strip() if isinstance(raw, bytes) else ""

    def find(self, inner: str) -> str | None:
        return self.files.get(inner.strip("/").lower())

    def read(self, inner: str) -> bytes:
        real = self.find(inner)
        if real is None:
            raise IsoError(f"{self.path}: has no {inner}")
        out = io.BytesIO()
        self._iso.get_file_from_iso_fp(out, **{self._facade: real})
        return out.getvalue()

    def extract(self, inner: str, dest: Path) -> str:
        """Copy `inner` to `dest` (via dest.part, then rename); mark it verified; return its sha256."""
        real = self.find(inner)
        if real is None:
            raise IsoError(f"{self.path}: has no {inner}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(dest)
        digest = hashlib.sha256()
        with part.open("wb") as out:
            with self._iso.open_file_from_iso(**{self._facade: real}) as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, dest)
        sha = digest.hexdigest()
        # The ISO was verified (or is the operator's own): what came out of it is as good.
        write_marker(dest, sha, f"iso:{inner}")
        return sha

    def close(self) -> None:
        self._iso.close()

    def __enter__(self) -> IsoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy_verified(src: Path, dest: Path) -> str:
    """Copy `src` into the cache via dest.part, hashing on the way; mark it; return its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    digest = hashlib.sha256()
    with src.open("rb") as inp, part.open("wb") as out:
        while chunk := inp.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, dest)
    sha = digest.hexdigest()
    write_marker(dest, sha, str(src))
    return sha


def builtin_names() -> set[str]:
    return {p.name for p in load_profiles().values() if p.source.parent == builtin_profiles_dir()}


def extract_from_iso(iso: Path, inner: str, dest: Path) -> str:
    with IsoReader(iso) as reader:
        return reader.extract(inner, dest)


def detect_layout(reader: IsoReader) -> tuple[Layout, str, str]:
    for layout in LAYOUTS:
        kernel = next((k for k in layout.kernels if reader.find(k)), None)
        initrd = next((i for i in layout.initrds if reader.find(i)), None)
        if kernel and initrd:
            return layout, kernel, initrd
    wanted = "; ".join(f"{lay.kernels[0]} + {lay.initrds[0]}" for lay in LAYOUTS)
    raise IsoError(f"{reader.path}: no network-bootable kernel and initrd found (looked for {wanted})")


# Where each distribution publishes the installable tree matching an ISO's .treeinfo.
TREE_URLS = {
    "fedora": "https://download.fedoraproject.org/pub/fedora/linux/releases/{version}/{variant}/{arch}/os/",
    "rocky linux": "https://download.rockylinux.org/pub/rocky/{version}/BaseOS/{arch}/os/",
    "almalinux": "https://repo.almalinux.org/almalinux/{version}/BaseOS/{arch}/os/",
}


def anaconda_tree_url(treeinfo: str) -> str | None:
    """The mirror's installable tree for the release an ISO's .treeinfo describes, if known."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(treeinfo)
    except configparser.Error:
        return None
    family = parser.get("release", "name", fallback=parser.get("general", "family", fallback=""))
    version = parser.get("release", "version", fallback=parser.get("general", "version", fallback=""))
    arch = parser.get("tree", "arch", fallback=parser.get("general", "arch", fallback=""))
    variant = parser.get("general", "variant", fallback="Server") or "Server"
    template = TREE_URLS.get(family.strip().lower())
    if not template or not version or not arch:
        return None
    return template.format(version=version.strip(), variant=variant.strip(), arch=arch.strip())


def profile_name_for(iso: Path) -> str:
    stem = re.sub(r"[^a-z0-9._-]+", "-", iso.stem.lower()).strip("-._")[:64]
    return stem or "imported-iso"


@dataclass(frozen=True, slots=True)
class ImportResult:
    name: str
    family: str
    profile_file: Path
    kernel: Path
    initrd: Path


def import_iso(
    iso: Path, cache_dir: Path, out_dir: Path, name: str | None = None, force: bool = False
) -> ImportResult:
    iso = iso.resolve()
    if not iso.is_file():
        raise IsoError(f"{iso}: no such file")
    name = name or profile_name_for(iso)
    if not is_valid_name(name):
        raise IsoError(f"--name {name!r} must be lower-case letters, digits, '.', '_' or '-' (64 at most)")
    profile_file = out_dir / f"{name}.yaml"
    if profile_file.exists() and not force:
        raise IsoError(f"{profile_file} exists; pick another --name or add --force to replace it")
    # CACHE/profiles is read at every start (load_profiles); another directory where named.
    shadows = (
        "in every session"
        if out_dir == default_profiles_out(cache_dir)
        else f"wherever --profiles {out_dir} is used"
    )
    if name in builtin_names() and not force:
        raise IsoError(
            f"{name!r} is a built-in profile; this import would replace it {shadows}:"
            " pick another --name or add --force"
        )
    with IsoReader(iso) as reader:
        layout, kernel_inner, initrd_inner = detect_layout(reader)
        target = cache_dir / name
        kernel = target / PurePosixPath(kernel_inner).name
        initrd = target / PurePosixPath(initrd_inner).name
        cmdline = layout.cmdline
        if "{repo}" in cmdline:
            raw = reader.read(".treeinfo") if reader.find(".treeinfo") else b""
            repo = anaconda_tree_url(raw.decode("utf-8", "replace"))
            if repo is None:
                raise IsoError(
                    f"{iso}: an Anaconda ISO of a release whose installable tree pxetui does not know"
                    f" (known: {', '.join(TREE_URLS)}); write a profile by hand with"
                    " inst.repo=<tree URL> in its cmdline"
                )
            cmdline = cmdline.format(repo=repo)
        kernel_sha = reader.extract(kernel_inner, kernel)
        initrd_sha = reader.extract(initrd_inner, initrd)
        volume = reader.volume_id
    doc: dict[str, object] = {
        "name": name,
        "title": f"{volume or iso.name} (imported ISO)",
        "description": f"Imported by `pxetui import-iso` from {iso} ({layout.family}). {layout.note}",
        "arch": ["x86_64"],
        "firmware": ["bios", "uefi"],
        "kernel": {"path": str(kernel), "sha256": kernel_sha},
        "initrd": {"path": str(initrd), "sha256": initrd_sha},
    }
    if layout.needs_iso:
        iso_copy = target / iso.name
        doc["iso"] = {"path": str(iso_copy), "sha256": copy_verified(iso, iso_copy)}
    doc["cmdline"] = cmdline
    doc["template"] = layout.template
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = profile_file.with_name(profile_file.name + ".tmp")
    tmp.write_text(
        f"# written by pxetui import-iso from {iso}\n" + yaml.safe_dump(doc, sort_keys=False), "utf-8"
    )
    load_profile(tmp)  # what we write must load; a bug here must not leave a broken profile behind
    os.replace(tmp, profile_file)
    return ImportResult(name, layout.family, profile_file, kernel, initrd)


def default_profiles_out(cache_dir: Path) -> Path:
    return cache_dir / "profiles"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxetui import-iso",
        description="Copy the kernel and initrd out of an installer ISO (no mounting) and write"
        " a profile that boots it.",
    )
    p.add_argument("iso", type=Path, metavar="PATH", help="the installer ISO")
    p.add_argument("--name", help="profile name (default: from the file name)")
    add_cache_option(p, "where the kernel and initrd (and a casper ISO) go")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where the profile YAML goes (default: CACHE/profiles, read at every start;"
        " another DIR is named with --profiles)",
    )
    p.add_argument("--force", action="store_true", help="replace a profile of the same name")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cache = args.cache or default_cache_dir()
    out = args.out or default_profiles_out(cache)
    result = import_iso(args.iso, cache, out, args.name, args.force)
    print(f"found {result.family}: kernel -> {result.kernel}, initrd -> {result.initrd}")
    print(f"wrote profile {result.name!r} to {result.profile_file}")
    # CACHE/profiles is read at every start (load_profiles); another --out must be named.
    where = f" --cache {cache}" if args.cache else ""
    where += "" if out == default_profiles_out(cache) else f" --profiles {out}"
    print(f"serve it with: sudo pxetui IFACE{where}")
    return 0
