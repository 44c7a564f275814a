"""Offline labs: `pxetui fetch NAME... --bundle FILE` and `pxetui import-bundle FILE`.

A lab laptop often has no internet. On a connected machine, fetch writes what the profiles need
into one tar file: every verified file at its cache path, the release pins, and a manifest of
SHA-256s. On the laptop, import-bundle copies each file into the cache through a .part file,
hashes it on the way, and marks it verified only when it matches the manifest; a release pin
is written only once all of that profile's files are in, so a torn copy never serves.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pxetui.boot.cache import forget, is_verified, part_path, profile_status, read_marker, write_marker
from pxetui.boot.profiles import Profile, default_cache_dir, is_valid_name
from pxetui.boot.upstream import PIN_NAME, read_pin
from pxetui.commands.options import add_cache_option
from pxetui.errors import UsageError

MANIFEST = "pxetui-bundle.json"
_CHUNK = 1 << 20


class BundleError(UsageError):
    pass


@dataclass(frozen=True, slots=True)
class Imported:
    profile: str
    version: str
    files: int


def _rel(path: Path, cache_dir: Path) -> str:
    return path.relative_to(cache_dir).as_posix()


def write_bundle(bundle: Path, profiles: list[Profile], cache_dir: Path) -> list[str]:
    """Write the verified cache files of `profiles` into `bundle`; return the names put in."""
    manifest: dict[str, dict[str, object]] = {}
    tmp = bundle.with_name(bundle.name + ".part")
    with tarfile.open(tmp, "w") as tar:
        for profile in profiles:
            files: dict[str, str] = {}
            for status in profile_status(profile, cache_dir):
                if profile.files[status.role].path or not is_verified(status.path):
                    continue  # the operator's own files, and anything not verified, stay out
                rel = _rel(status.path, cache_dir)
                files[rel] = str((read_marker(status.path) or {}).get("sha256", ""))
                tar.add(status.path, arcname=rel, recursive=False)
            if not files:
                continue
            pin = cache_dir / profile.name / PIN_NAME
            entry: dict[str, object] = {"files": files}
            if profile.release is not None and read_pin(cache_dir / profile.name) is not None:
                entry["pin"] = json.loads(pin.read_text(encoding="utf-8"))
            manifest[profile.name] = entry
        data = json.dumps({"format": 1, "profiles": manifest}, indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, bundle)
    return sorted(manifest)


def _safe_rel(rel: str, name: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2 or path.parts[0] != name:
        raise BundleError(f"bundle entry {rel!r} is not a file of profile {name}: refused")
    return path


def _copy_verified(tar: tarfile.TarFile, rel: str, expected: str, dest: Path) -> None:
    member = tar.getmember(rel)
    if not member.isfile():
        raise BundleError(f"bundle entry {rel} is not a regular file")
    src = tar.extractfile(member)
    assert src is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    part.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with part.open("wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != expected:
        part.unlink()
        raise BundleError(
            f"{rel}: sha256 {digest.hexdigest()} in the bundle, expected {expected}: the copy is damaged"
        )
    forget(dest)
    part.replace(dest)
    write_marker(dest, expected, f"bundle:{rel}")


def import_bundle(bundle: Path, cache_dir: Path) -> list[Imported]:
    try:
        tar = tarfile.open(bundle, "r")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{bundle}: not a readable pxetui bundle ({exc})") from exc
    with tar:
        return _import(tar, bundle, cache_dir)


def _import(tar: tarfile.TarFile, bundle: Path, cache_dir: Path) -> list[Imported]:
    try:
        doc = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
        profiles = doc["profiles"]
    except (KeyError, ValueError, AttributeError, TypeError) as exc:
        raise BundleError(
            f"{bundle}: has no {MANIFEST}; make it with `pxetui fetch NAME... --bundle FILE`"
        ) from exc
    done: list[Imported] = []
    for name, entry in sorted(profiles.items()):
        if not is_valid_name(name):
            raise BundleError(f"{bundle}: profile name {name!r} refused")
        files = entry.get("files", {})
        for rel, sha in files.items():
            _copy_verified(tar, rel, str(sha), cache_dir / Path(*_safe_rel(rel, name).parts))
        version = ""
        if isinstance(entry.get("pin"), dict):
            home = cache_dir / name
            tmp = home / (PIN_NAME + ".tmp")
            tmp.write_text(json.dumps(entry["pin"]), encoding="utf-8")
            os.replace(tmp, home / PIN_NAME)
            pin = read_pin(home)
            if pin is None:
                (home / PIN_NAME).unlink()
                raise BundleError(f"{bundle}: the release pin of {name} is not valid")
            version = pin.version
        done.append(Imported(name, version, len(files)))
    return done


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxetui import-bundle",
        description="Put a bundle made by `pxetui fetch NAME... --bundle FILE` into the cache,"
        " verifying every file.",
    )
    p.add_argument(
        "bundle", type=Path, metavar="FILE", help="the tar file `pxetui fetch NAME... --bundle FILE` wrote"
    )
    add_cache_option(p, "the cache the files go into")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cache = args.cache or default_cache_dir()
    for item in import_bundle(args.bundle, cache):
        release = f" release {item.version}" if item.version else ""
        print(f"{item.profile}:{release} {item.files} file(s) verified")
    print(f"cache: {cache}")
    return 0
