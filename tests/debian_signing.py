"""A PGP key of the tests' own that signs the fake upstream's Debian InRelease files.

pxetui checks an InRelease's signature with gpgv (boot/upstream/debian.py). The recorded
samples in upstream_samples/ were written by hand, so their signature blocks are not real; the
fake upstream serves them signed with this key instead, and the tests point
$PXETUI_DEBIAN_KEYRING at its public keyring, as an operator would for a re-signed mirror.

The key lives in a temporary GnuPG home made once per test process; its gpg-agent is stopped
and the home removed at exit. Generating an ed25519 key takes well under a second.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pxetui.boot.upstream.debian import KEYRING_ENV

__all__ = ["KEYRING_ENV", "SigningKey", "cleartext", "signed_samples", "signing_key"]

_GPG = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]


@dataclass(frozen=True)
class SigningKey:
    home: Path
    keyring: Path  # the public key, as gpgv --keyring reads it

    def clearsign(self, text: str) -> str:
        done = subprocess.run(
            [*_GPG, "--homedir", str(self.home), "--digest-algo", "SHA256", "--clearsign", "--output", "-"],
            input=text.encode("utf-8"),
            capture_output=True,
            check=True,
            timeout=30,
        )
        return done.stdout.decode("utf-8")

    def resign(self, signed: str) -> str:
        """The same content, signed by this key (after the test edited it)."""
        return self.clearsign(cleartext(signed))


def cleartext(signed: str) -> str:
    """The content of a clear-signed message: after its Hash header, before the signature."""
    lines = signed.splitlines(keepends=True)
    if not lines or not lines[0].startswith("-----BEGIN PGP SIGNED MESSAGE"):
        return signed
    start = next(i for i, line in enumerate(lines) if not line.strip()) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN PGP SIGNATURE"))
    body = [line[2:] if line.startswith("- ") else line for line in lines[start:end]]  # dash-escaping
    return "".join(body)


@functools.cache
def signing_key() -> SigningKey:
    home = Path(tempfile.mkdtemp(prefix="pxetui-test-gpg-"))
    home.chmod(0o700)
    atexit.register(_remove, home)
    subprocess.run(
        [
            *_GPG,
            "--homedir",
            str(home),
            "--quick-gen-key",
            "pxetui tests <tests@pxetui.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    keyring = home / "test-archive-keyring.gpg"
    exported = subprocess.run(
        ["gpg", "--homedir", str(home), "--export"], check=True, capture_output=True, timeout=30
    )
    keyring.write_bytes(exported.stdout)
    return SigningKey(home, keyring)


def signed_samples(samples: dict[str, bytes]) -> dict[str, bytes]:
    """`samples` (HOST/PATH -> bytes) with every InRelease signed by the test key."""
    key = signing_key()
    return {
        path: key.resign(data.decode("utf-8")).encode("utf-8") if path.endswith("/InRelease") else data
        for path, data in samples.items()
    }


def _remove(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
    )
    shutil.rmtree(home, ignore_errors=True)
