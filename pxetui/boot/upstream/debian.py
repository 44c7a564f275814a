"""Debian: the installer's `dists/<suite>/main/installer-<arch>/current/images/SHA256SUMS`.

The suite's InRelease names that SHA256SUMS's own hash (checked here) and the point release
(`Version: 13.2`), which is what pxetui calls the version. The mirror keeps only the current
point release of a suite under `current/`: an older one cannot be fetched again.

InRelease is what makes the chain trustworthy whatever mirror served it: its PGP signature is
checked with gpgv against Debian's archive keyring (package debian-archive-keyring), and only
the part the signature covers is read. A mirror signed with its own key (a re-signed local
mirror, the tests' fake upstream) names that keyring in $PXETUI_DEBIAN_KEYRING.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urljoin

from pxetui.boot.upstream import Getter, Release, ReleaseFile, ReleaseSpec, UpstreamError, UpstreamNotFound
from pxetui.boot.upstream.sums import inrelease_fields, parse_checksums

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
KEYRING_ENV = "PXETUI_DEBIAN_KEYRING"
GPGV_SECONDS = 30


def archive_keyring() -> Path:
    """Debian's archive keyring, or the one $PXETUI_DEBIAN_KEYRING names."""
    return Path(os.environ.get(KEYRING_ENV) or DEBIAN_KEYRING)


def verified_inrelease(text: str, url: str, keyring: Path) -> str:
    """The part of an InRelease its signature covers, once gpgv says a key of `keyring` made it.

    Anything outside the signed part (text before the armour, a second message after it) is
    never read: gpgv writes out exactly what it verified.
    """
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise UpstreamError(f"cannot check the signature of {url}: gpgv is not installed (apt install gpgv)")
    if not keyring.is_file():
        raise UpstreamError(
            f"cannot check the signature of {url}: no keyring at {keyring} (apt install"
            f" debian-archive-keyring, or {KEYRING_ENV}=FILE for a mirror signed with its own key)"
        )
    with tempfile.TemporaryDirectory(prefix="pxetui-gpgv-") as tmp:
        signed, content = Path(tmp) / "InRelease", Path(tmp) / "content"
        signed.write_bytes(text.encode("utf-8"))
        try:
            done = subprocess.run(
                [
                    gpgv,
                    "--homedir",
                    tmp,
                    "--keyring",
                    str(keyring.absolute()),
                    "--output",
                    str(content),
                    str(signed),
                ],
                capture_output=True,
                timeout=GPGV_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UpstreamError(f"cannot check the signature of {url}: gpgv: {exc}") from exc
        said = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        if done.returncode != 0 or not content.is_file():
            reason = said[-1].removeprefix("gpgv: ") if said else f"gpgv exit status {done.returncode}"
            raise UpstreamError(
                f"{url}: its PGP signature does not verify against {keyring} ({reason}): a tampered or"
                " broken mirror? nothing from it is used; try again later or another mirror (--mirror)"
            )
        return content.read_text(encoding="utf-8", errors="replace")


async def resolve(spec: ReleaseSpec, get: Getter, version: str | None) -> Release:
    suite, arch = spec.get("suite"), spec.get("arch")
    images = urljoin(spec.url, f"dists/{suite}/main/installer-{arch}/current/images/")
    sums_url = urljoin(images, "SHA256SUMS")
    inrelease_url = urljoin(spec.url, f"dists/{suite}/InRelease")
    sums_text = await get(sums_url)
    try:
        inrelease = await get(inrelease_url)
    except UpstreamNotFound as exc:
        raise UpstreamError(
            f"{inrelease_url} is missing: without the suite's signed InRelease nothing vouches for {sums_url}"
        ) from exc
    signed = await asyncio.to_thread(verified_inrelease, inrelease, inrelease_url, archive_keyring())
    fields, listed = inrelease_fields(signed)
    digest = hashlib.sha256(sums_text.encode("utf-8")).hexdigest()
    key = f"main/installer-{arch}/current/images/SHA256SUMS"
    if key not in listed:
        raise UpstreamError(f"{inrelease_url} lists no {key}: nothing vouches for {sums_url}")
    if listed[key] != digest:
        raise UpstreamError(
            f"{sums_url} does not match the hash {inrelease_url} gives it (a mirror mid-update?"
            " try again later, or another mirror)"
        )
    current = fields.get("Version") or f"{suite}-{digest[:12]}"
    if version and version != current:
        raise UpstreamError(
            f"the Debian mirror keeps only the current point release of {suite} ({current}), not {version}"
        )
    sums = parse_checksums(sums_text)
    files: dict[str, ReleaseFile] = {}
    for role, item in spec.files.items():
        name = item.strip("/").removeprefix("./")
        if name not in sums:
            raise UpstreamError(f"{sums_url} lists no ./{name}")
        files[role] = ReleaseFile(name.rsplit("/", 1)[-1], sums[name], (urljoin(images, name),))
    return Release(current, files, images, sums_url)
