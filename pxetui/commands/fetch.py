"""`pxetui fetch NAME...`: download a profile's files into the cache, resumably and verified.

Each file goes to NAME.part; an interrupted download (cut connection, Ctrl-C, crash) resumes
from the .part with an HTTP Range request. The whole file is hashed and compared with the
profile's `sha256` or the upstream checksum file (`sha256sums:`) before it is renamed into
place and marked verified. A mismatch deletes the .part and says which file, which checksum,
and where each came from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO
from urllib.parse import urljoin

import aiohttp

from pxetui import __version__
from pxetui.boot.cache import forget, is_verified, part_path, read_marker, sha256_file, write_marker
from pxetui.boot.profiles import Profile, default_cache_dir, load_profiles
from pxetui.errors import PxetuiError

CHUNK = 256 * 1024
RETRIES = 4  # resumes after a cut connection, per file
SUMS_LIMIT = 16 << 20  # a checksum file is text; anything bigger is not one
_GNU_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+[*]?(.+?)\s*$")  # sha256sum: HASH  name
_BSD_LINE = re.compile(r"^SHA256\s*\((.+)\)\s*=\s*([0-9a-fA-F]{64})\s*$")  # Fedora/Rocky CHECKSUM
_TREEINFO_LINE = re.compile(r"^(\S[^=]*?)\s*=\s*sha256:([0-9a-fA-F]{64})\s*$")  # .treeinfo [checksums]


class FetchError(PxetuiError):
    """A file could not be fetched; the message names the file, the URL and what to do."""


class ChecksumMismatch(FetchError):
    pass


class Progress(Protocol):
    def start(self, label: str, total: int | None, offset: int) -> None: ...

    def update(self, done: int) -> None: ...

    def finish(self, note: str) -> None: ...


class TextProgress:
    """A plain-text progress bar per file: redrawn in place on a terminal, a few lines otherwise."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self._label = ""
        self._total: int | None = None
        self._start = 0.0
        self._offset = 0
        self._done = 0
        self._drawn_at = 0.0
        self._logged_quarter = -1

    def start(self, label: str, total: int | None, offset: int) -> None:
        self._label, self._total, self._offset, self._done = label, total, offset, offset
        self._start = time.monotonic()
        self._drawn_at = 0.0
        self._logged_quarter = -1
        if offset:
            self.stream.write(f"{label}: resuming at {offset / 1e6:.1f} MB\n")
        self._draw(force=True)

    def update(self, done: int) -> None:
        self._done = done
        self._draw()

    def finish(self, note: str) -> None:
        self._draw(force=True)
        self.stream.write((" " if self.tty else f"{self._label}: ") + note + "\n")
        self.stream.flush()

    def line(self) -> str:
        total = self._total
        rate = (self._done - self._offset) / max(time.monotonic() - self._start, 1e-3)
        if total:
            frac = min(self._done / total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            size = f"{self._done / 1e6:.1f}/{total / 1e6:.1f} MB"
            return f"{self._label} [{bar}] {frac * 100:3.0f}% {size} {rate / 1e6:.1f} MB/s"
        return f"{self._label} [{'?' * self.width}] {self._done / 1e6:.1f} MB {rate / 1e6:.1f} MB/s"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self._drawn_at >= 0.1:
                self.stream.write("\r" + self.line())
                self.stream.flush()
                self._drawn_at = now
            return
        # Not a terminal (a log, a pipe): one line per quarter, so logs stay short.
        quarter = int(4 * self._done / self._total) if self._total else 0
        if (force and self._logged_quarter < 0) or quarter > self._logged_quarter:
            self._logged_quarter = quarter
            self.stream.write(self.line() + "\n")


@dataclass
class FetchResult:
    profile: str
    role: str
    path: Path
    status: str  # downloaded | resumed | already verified | extracted
    sha256: str
    requests: int = 1


@dataclass
class _SumsCache:
    """Upstream checksum files, fetched once per run: URL -> {file URL: sha256}."""

    by_url: dict[str, dict[str, str]] = field(default_factory=dict)


def parse_sums(text: str, sums_url: str) -> dict[str, str]:
    """{absolute file URL: sha256} from a SHA256SUMS, a BSD-style CHECKSUM or a .treeinfo.

    Names in all three are relative to the directory of the checksum file itself.
    """
    sums: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        if m := _GNU_LINE.match(line):
            digest, name = m.group(1), m.group(2)
        elif (m := _BSD_LINE.match(line)) or (m := _TREEINFO_LINE.match(line)):
            name, digest = m.group(1), m.group(2)
        else:
            continue
        sums[urljoin(sums_url, name.strip())] = digest.lower()
    return sums


class Fetcher:
    def __init__(
        self, cache_dir: Path, http: aiohttp.ClientSession, progress: Progress, retries: int = RETRIES
    ) -> None:
        self.cache_dir = cache_dir
        self.http = http
        self.progress = progress
        self.retries = retries
        self._sums = _SumsCache()

    async def fetch_profile(self, profile: Profile) -> list[FetchResult]:
        if not profile.files:
            return []
        results: list[FetchResult] = []
        iso_changed = False
        # The ISO first: files taken out of it (from_iso) need it verified.
        roles = sorted(profile.files, key=lambda r: (profile.files[r].from_iso is not None, r != "iso"))
        for role in roles:
            ref = profile.files[role]
            dest = profile.file_path(role, self.cache_dir)
            if ref.path:
                if not dest.is_file():
                    raise FetchError(
                        f"{profile.name} {role}: {dest} does not exist; it is a local file named by"
                        f" 'path:' in {profile.source}, so fetch cannot download it"
                    )
                continue
            if ref.from_iso and iso_changed:
                forget(dest)  # taken out of the previous ISO
            if is_verified(dest):
                sha = _marker_sha(dest)
                results.append(FetchResult(profile.name, role, dest, "already verified", sha, 0))
                continue
            if ref.from_iso:
                results.append(await self._extract(profile, role, dest))
                continue
            assert ref.url is not None
            expected, source = await self._expected_sha(profile, role)
            results.append(await self.download(profile.name, role, ref.url, dest, expected, source))
            iso_changed = iso_changed or role == "iso"
        return results

    async def _extract(self, profile: Profile, role: str, dest: Path) -> FetchResult:
        from pxetui.commands.import_iso import extract_from_iso

        inner = profile.files[role].from_iso
        assert inner is not None
        iso = profile.file_path("iso", self.cache_dir)
        label = f"{profile.name} {role}"
        self.progress.start(f"{label} (from {iso.name}:{inner})", None, 0)
        forget(dest)
        sha = await asyncio.to_thread(extract_from_iso, iso, inner, dest)
        self.progress.update(dest.stat().st_size)
        self.progress.finish("extracted from the verified ISO")
        return FetchResult(profile.name, role, dest, "extracted", sha, 0)

    async def _expected_sha(self, profile: Profile, role: str) -> tuple[str, str]:
        ref = profile.files[role]
        assert ref.url is not None
        if ref.sha256:
            return ref.sha256, f"'{role}.sha256' in {profile.source}"
        if not profile.sha256sums:
            raise FetchError(
                f"{profile.name} {role}: no checksum to verify {ref.url} against; add '{role}.sha256'"
                f" or 'sha256sums' to {profile.source}"
            )
        sums = await self._load_sums(profile.sha256sums, profile.name)
        digest = sums.get(ref.url)
        if digest is None:
            raise FetchError(
                f"{profile.name} {role}: {profile.sha256sums} lists no checksum for {ref.url};"
                f" add '{role}.sha256' to {profile.source}"
            )
        return digest, profile.sha256sums

    async def _load_sums(self, url: str, name: str) -> dict[str, str]:
        if url not in self._sums.by_url:
            try:
                async with self.http.get(url) as resp:
                    if resp.status != 200:
                        raise FetchError(f"{name}: checksum file {url}: HTTP {resp.status} {resp.reason}")
                    if (resp.content_length or 0) > SUMS_LIMIT:
                        raise FetchError(f"{name}: checksum file {url} is over {SUMS_LIMIT} bytes")
                    raw = bytearray()
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        raw += chunk
                        if len(raw) > SUMS_LIMIT:  # no Content-Length, or a wrong one
                            raise FetchError(f"{name}: checksum file {url} is over {SUMS_LIMIT} bytes")
                    text = raw.decode("utf-8", "replace")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise FetchError(f"{name}: checksum file {url}: {exc or type(exc).__name__}") from exc
            self._sums.by_url[url] = parse_sums(text, str(resp.url) if resp.url else url)
            # A redirect (download.fedoraproject.org -> a mirror) must not break the name match.
            self._sums.by_url[url].update(parse_sums(text, url))
        return self._sums.by_url[url]

    async def download(
        self, profile: str, role: str, url: str, dest: Path, expected: str, source: str
    ) -> FetchResult:
        """Download `url` to `dest` via dest.part, resuming it; verify; rename; mark verified."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FetchError(
                f"cannot create the cache directory {dest.parent}: {exc}; use --cache DIR"
            ) from exc
        label = f"{profile} {role}"
        with _exclusive(dest, label):
            return await self._download_locked(label, profile, role, url, dest, expected, source)

    async def _download_locked(
        self, label: str, profile: str, role: str, url: str, dest: Path, expected: str, source: str
    ) -> FetchResult:
        forget(dest)  # an unverified leftover must not survive next to a fresh download
        part = part_path(dest)
        if part.is_symlink():
            part.unlink()  # never write through a link planted in the cache
        resumed = part.is_file() and part.stat().st_size > 0
        requests = 0
        while True:
            requests += 1
            try:
                got = await self._get_into(label, url, part)
                break
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing to resume
                self.progress.finish("failed")
                raise FetchError(f"{label}: {url}: cannot connect: {exc}") from exc
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                # The connection was cut or stalled: keep the .part, continue it with a Range request.
                if requests > self.retries:
                    self.progress.finish(f"interrupted ({exc or type(exc).__name__})")
                    raise FetchError(
                        f"{label}: {url}: connection cut {requests} times ({exc or type(exc).__name__});"
                        f" the partial file {part} is kept and the next `pxetui fetch` resumes it"
                    ) from exc
                resumed = True
                await asyncio.sleep(min(0.2 * requests, 2.0))
            except aiohttp.ClientError as exc:
                self.progress.finish("failed")
                raise FetchError(f"{label}: {url}: {exc or type(exc).__name__}") from exc
            except OSError as exc:  # disk full, no permission: the cache, not the network
                self.progress.finish("failed")
                raise FetchError(
                    f"{label}: cannot write {part}: {exc}; free space or pick --cache DIR"
                ) from exc
        if got != expected:
            part.unlink(missing_ok=True)
            self.progress.finish("CHECKSUM MISMATCH")
            raise ChecksumMismatch(
                f"{label}: checksum mismatch for {url}: got sha256 {got}, expected {expected}"
                f" (from {source}); deleted the partial file {part}"
            )
        part.replace(dest)
        write_marker(dest, got, url)
        self.progress.finish("verified sha256")
        return FetchResult(profile, role, dest, "resumed" if resumed else "downloaded", got, requests)

    async def _get_into(self, label: str, url: str, part: Path) -> str:
        """Continue `part` from `url`; return the SHA-256 of the whole .part file.

        The hash is computed while the bytes arrive (one pass over a multi-GB ISO, not two);
        after a resume the bytes already on disk are hashed first.
        """
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        digest = hashlib.sha256()
        if offset:
            # Before the request, not after: bytes that arrive while we are busy hashing can be
            # lost if the connection then breaks (aiohttp drops its buffer on the error).
            await asyncio.to_thread(_hash_prefix, part, offset, digest)
        async with self.http.get(url, headers=headers) as resp:
            if resp.status == 416 and offset:
                # Nothing left to send: the .part is already whole (or bigger than the file,
                # which the checksum then rejects).
                self.progress.start(label, offset, offset)
                return await asyncio.to_thread(sha256_file, part)
            if resp.status == 200:
                offset = 0  # the server ignored Range: start over
                digest = hashlib.sha256()
            elif resp.status != 206 or not offset:
                self.progress.finish(f"HTTP {resp.status}")
                raise FetchError(f"{label}: {url}: HTTP {resp.status} {resp.reason}")
            elif not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                part.unlink()  # a range we did not ask for: start over on the retry
                raise aiohttp.ClientPayloadError(
                    f"asked for bytes {offset}-, got {resp.headers.get('Content-Range')}"
                )
            total = resp.content_length + offset if resp.content_length is not None else None
            self.progress.start(label, total, offset)
            done = offset
            with part.open("r+b" if offset else "wb") as out:
                out.seek(offset)
                out.truncate()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    self.progress.update(done)
            if total is not None and done < total:
                raise aiohttp.ClientPayloadError(f"got {done} of {total} bytes")
            return digest.hexdigest()


def _hash_prefix(path: Path, length: int, digest: hashlib._Hash) -> None:
    with path.open("rb") as fh:
        while length > 0 and (chunk := fh.read(min(1 << 20, length))):
            digest.update(chunk)
            length -= len(chunk)


@contextlib.contextmanager
def _exclusive(dest: Path, label: str) -> Iterator[None]:
    """One download of a file at a time: two fetches appending to one .part would corrupt it."""
    lock = dest.with_name("." + dest.name + ".lock")
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FetchError(f"{label}: another `pxetui fetch` is downloading {dest}; wait for it") from exc
        yield


def _marker_sha(path: Path) -> str:
    doc = read_marker(path) or {}
    return str(doc.get("sha256", ""))


async def fetch_profiles(
    profiles: Sequence[Profile],
    cache_dir: Path,
    progress: Progress,
    timeout: aiohttp.ClientTimeout | None = None,
    retries: int = RETRIES,
) -> list[FetchResult]:
    # No overall limit (an ISO on a slow link takes long), but a stalled connection fails.
    timeout = timeout or aiohttp.ClientTimeout(total=None, connect=30, sock_read=60)
    # identity: the bytes hashed must be the bytes upstream checksummed, never a gzip of them.
    headers = {"Accept-Encoding": "identity", "User-Agent": f"pxetui/{__version__}"}
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False, headers=headers) as http:
        fetcher = Fetcher(cache_dir, http, progress, retries)
        results: list[FetchResult] = []
        for profile in profiles:
            results.extend(await fetcher.fetch_profile(profile))
        return results


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="pxetui fetch",
        description="Download profiles' files into the cache: resumable, SHA-256 verified.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="profile names (see `pxetui profiles`)")
    p.add_argument("--profiles", type=Path, action="append", default=[], metavar="DIR")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR")
    args = p.parse_args(argv)
    cache = args.cache or default_cache_dir()
    known = load_profiles(args.profiles)
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise FetchError(f"unknown profile(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    chosen = [known[n] for n in args.names]
    nothing = [pr.name for pr in chosen if not pr.files]
    for name in nothing:
        print(f"{name}: nothing to download (it boots no files)")
    try:
        results = asyncio.run(fetch_profiles([pr for pr in chosen if pr.files], cache, TextProgress()))
    except KeyboardInterrupt:
        print("\ninterrupted: the partial files are kept; run the same command to resume", file=sys.stderr)
        return 130
    for r in results:
        print(f"{r.profile} {r.role}: {r.status} {r.path} sha256 {r.sha256}")
    print(f"cache: {cache}")
    return 0
