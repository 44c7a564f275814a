"""Debian's InRelease is believed only with a good signature from Debian's archive keyring.

`upstream_samples/recorded/` holds a real InRelease (bookworm, 12.15) as apt downloaded it
from deb.debian.org onto this machine, signatures and all; gpgv checks it against the real
keyring (/usr/share/keyrings/debian-archive-keyring.gpg, package debian-archive-keyring).
Every tampered copy must be refused. No network: the Getter is a dict.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from conftest import need_tools
from debian_signing import KEYRING_ENV, signing_key

from pxetui.boot.profiles import load_profiles
from pxetui.boot.upstream import UpstreamError, UpstreamNotFound, resolve
from pxetui.boot.upstream.debian import DEBIAN_KEYRING, verified_inrelease
from pxetui.boot.upstream.sums import inrelease_fields

RECORDED = (
    Path(__file__).resolve().parent
    / "upstream_samples"
    / "recorded"
    / "deb.debian.org-debian-bookworm-InRelease"
)
INRELEASE = "https://deb.debian.org/debian/dists/bookworm/InRelease"
SUMS = "https://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/SHA256SUMS"
SUMS_KEY = "main/installer-amd64/current/images/SHA256SUMS"
REAL_SUMS_SHA = "8e0a94d8488f7c60f5fe6723e69b450ec5d7000f592ccdb169481f4bfe863b62"
FAKE_SUMS = (
    "0" * 64
    + "  ./netboot/debian-installer/amd64/linux\n"
    + "1" * 64
    + "  ./netboot/debian-installer/amd64/initrd.gz\n"
)


@pytest.fixture(autouse=True)
def real_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    need_tools("gpgv")
    assert DEBIAN_KEYRING.is_file(), f"install debian-archive-keyring (RUN_DEBS): no {DEBIAN_KEYRING}"
    monkeypatch.delenv(KEYRING_ENV, raising=False)


def recorded() -> str:
    return RECORDED.read_text(encoding="utf-8")


def resolve_bookworm(files: dict[str, str]):  # type: ignore[no-untyped-def]
    async def get(url: str) -> str:
        if url not in files:
            raise UpstreamNotFound(f"{url}: HTTP 404")
        return files[url]

    spec = load_profiles()["debian-12"].release
    assert spec is not None
    return asyncio.run(resolve(spec, get, None))


def test_the_recorded_inrelease_verifies_and_only_its_signed_part_is_read() -> None:
    content = verified_inrelease(recorded(), INRELEASE, DEBIAN_KEYRING)
    fields, listed = inrelease_fields(content)
    assert fields["Codename"] == "bookworm" and fields["Version"] == "12.15"
    assert listed[SUMS_KEY] == REAL_SUMS_SHA
    # Text outside the signed message is never read, whatever it claims.
    smuggled = "Version: 99.0\nSHA256:\n " + "f" * 64 + " 1 " + SUMS_KEY + "\n\n" + recorded()
    fields, listed = inrelease_fields(verified_inrelease(smuggled, INRELEASE, DEBIAN_KEYRING))
    assert fields["Version"] == "12.15" and listed[SUMS_KEY] == REAL_SUMS_SHA


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t.replace(REAL_SUMS_SHA, "f" * 64), id="a hash changed"),
        pytest.param(lambda t: t.replace("Version: 12.15", "Version: 12.16"), id="the version changed"),
        pytest.param(lambda t: t.split("-----BEGIN PGP SIGNATURE-----")[0], id="signature cut off"),
        pytest.param(lambda t: signing_key().resign(t), id="signed by another key"),
    ],
)
def test_a_tampered_copy_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        UpstreamError, match=r"InRelease: its PGP signature does not verify against .*debian-archive-keyring"
    ):
        verified_inrelease(tamper(recorded()), INRELEASE, DEBIAN_KEYRING)


def test_resolving_believes_the_signed_hash_not_the_mirror() -> None:
    # The real InRelease vouches for the real SHA256SUMS only: a mirror's own SUMS is refused.
    with pytest.raises(UpstreamError, match="SHA256SUMS does not match the hash .*InRelease gives it"):
        resolve_bookworm({INRELEASE: recorded(), SUMS: FAKE_SUMS})
    # A mirror that edits InRelease to vouch for its SUMS breaks the signature: refused too.
    forged = recorded().replace(REAL_SUMS_SHA, hashlib.sha256(FAKE_SUMS.encode()).hexdigest())
    with pytest.raises(UpstreamError, match="PGP signature does not verify"):
        resolve_bookworm({INRELEASE: forged, SUMS: FAKE_SUMS})
    # And one that serves no InRelease at all vouches for nothing.
    with pytest.raises(UpstreamError, match="InRelease is missing"):
        resolve_bookworm({SUMS: FAKE_SUMS})


def test_a_missing_keyring_or_gpgv_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match="apt install debian-archive-keyring, or PXETUI_DEBIAN_KEYRING"):
        verified_inrelease(recorded(), INRELEASE, tmp_path / "no-keyring.gpg")
