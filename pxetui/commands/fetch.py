"""`pxetui fetch NAME[@VERSION]...`: download profiles' files into the cache, resumably and verified.

Each file goes to NAME.part; an interrupted download (cut connection, Ctrl-C, crash) resumes
from the .part with an HTTP Range request. The whole file is hashed and compared with the
profile's `sha256`, the upstream checksum file (`sha256sums:`) or the release metadata before
it is renamed into place and marked verified. A mismatch deletes the .part and says which
file, which checksum, and where each came from.

A profile with a `release:` line is resolved first (`boot/upstream/`): the newest release, or
the version asked for. Its files go to CACHE/NAME/VERSION/ and the pin moves to that version
only once every file is verified, so what is served never changes half-way.

Files inside another file (`from_iso`: casper/vmlinuz in the ISO; `from_image`: a Red Hat
tree's shim and GRUB in its FAT images/efiboot.img, which is what .treeinfo checksums;
`from_archive`: Ubuntu's network shim and GRUB in its netboot tarball, which is what its
SHA256SUMS lists) are taken out only after that container is verified, and the pin records
their SHA-256 too.

Several profiles download at once, each with its own labelled progress bar; one that fails
does not stop the others. No lock file is left behind: the lock is on the directory itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable
from urllib.parse import urljoin, urlsplit

import aiohttp

from pxetui import __version__
from pxetui.boot.cache import forget, is_verified, part_path, read_marker, sha256_file, write_marker
from pxetui.boot.fat_image import extract_from_fat
from pxetui.boot.profiles import (
    CONTAINERS,
    DEFAULT_CACHE,
    IMAGE_ROLE,
    FileRef,
    Profile,
    default_cache_dir,
    load_profiles,
)
from pxetui.boot.tar_archive import extract_from_tar
from pxetui.boot.upstream import (
    Release,
    ReleaseFile,
    UpstreamError,
    UpstreamNotFound,
    check_version,
    read_pin,
    resolve,
    write_pin,
)
from pxetui.boot.upstream.mirror import MIRROR_ENV, Mirrors, parse_mirrors
from pxetui.boot.upstream.sums import parse_checksums
from pxetui.commands.options import add_cache_option, add_profiles_option
from pxetui.errors import PxetuiError

CHUNK = 256 * 1024
RETRIES = 4  # resumes after a cut connection, per file
SUMS_LIMIT = 16 << 20  # a checksum or metadata file is text; anything bigger is not one
OFFLINE_FIX = (
    "copy a bundle made with `pxetui fetch --bundle` on a connected machine, or use `pxetui import-iso`"
)
_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL}


class FetchError(PxetuiError):
    """A file could not be fetched; the message names the file, the URL and what to do."""


class ChecksumMismatch(FetchError):
    pass


class NotFoundError(FetchError):
    """HTTP 404/410: the file is not (or no longer) at that URL."""


class Progress(Protocol):
    def start(self, label: str, total: int | None, offset: int) -> None: ...

    def update(self, done: int) -> None: ...

    def finish(self, note: str) -> None: ...


@runtime_checkable
class ProgressBoard(Protocol):
    def bar(self, label: str) -> Progress: ...


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
        self.note = ""

    def start(self, label: str, total: int | None, offset: int) -> None:
        self._label, self._total, self._offset, self._done = label, total, offset, offset
        self._start = time.monotonic()
        self._drawn_at = 0.0
        self._logged_quarter = -1
        self.note = f"resuming at {offset / 1e6:.1f} MB" if offset else ""
        if offset and not self.tty:
            self.stream.write(f"{label}: {self.note}\n")
        self._draw(force=True)

    def update(self, done: int) -> None:
        self._done = done
        self._draw()

    def finish(self, note: str) -> None:
        self._draw(force=True)
        self.note = note
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
        # Size unknown (a file taken out of an ISO): say so instead of a bar of question marks.
        return f"{self._label} {self._done / 1e6:.1f} MB (size unknown) {rate / 1e6:.1f} MB/s"

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


class _BoardBar(TextProgress):
    """One profile's line on a MultiProgress terminal board."""

    def __init__(self, board: MultiProgress, label: str) -> None:
        super().__init__(board.stream, tty=True, width=board.width)
        self.board = board
        self._label = label
        self._start = time.monotonic()

    def finish(self, note: str) -> None:
        self.note = note
        self.board.redraw(force=True)

    def _draw(self, force: bool = False) -> None:
        self.board.redraw(force)

    def board_line(self) -> str:
        return self.line() + (f"  {self.note}" if self.note else "")


class MultiProgress:
    """One labelled bar per profile fetched in parallel.

    On a terminal the bars are lines redrawn in place (cursor up, rewrite); in a log each bar
    writes its own labelled lines, as TextProgress does.
    """

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self._bars: list[_BoardBar] = []
        self._drawn_lines = 0
        self._drawn_at = 0.0

    def bar(self, label: str) -> Progress:
        if not self.tty:
            return TextProgress(self.stream, tty=False, width=self.width)
        bar = _BoardBar(self, label)
        self._bars.append(bar)
        return bar

    def redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        out = f"\x1b[{self._drawn_lines}A" if self._drawn_lines else ""
        for bar in self._bars:
            out += "\r\x1b[K" + bar.board_line() + "\n"
        self._drawn_lines = len(self._bars)
        self.stream.write(out)
        self.stream.flush()


@dataclass
class FetchResult:
    profile: str
    role: str
    path: Path
    status: str  # downloaded | resumed | already verified | extracted
    sha256: str
    requests: int = 1
    version: str = ""  # the release version, for a profile that follows a line


@dataclass
class Outcome:
    """What happened to one profile: its files, or the error that stopped it."""

    profile: str
    results: list[FetchResult] = field(default_factory=list)
    error: PxetuiError | None = None
    version: str = ""


def parse_sums(text: str, sums_url: str) -> dict[str, str]:
    """{absolute file URL: sha256} from a SHA256SUMS, a BSD-style CHECKSUM or a .treeinfo.

    Names in all three are relative to the directory of the checksum file itself.
    """
    return {urljoin(sums_url, name): digest for name, digest in parse_checksums(text).items()}


def describe_connect_error(url: str, exc: BaseException) -> str:
    """A message a user can act on for a connection that never came up."""
    host = urlsplit(url).hostname or url
    os_error = getattr(exc, "os_error", None)
    code = getattr(os_error, "errno", None)
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(os_error, socket.gaierror):
        return f"no route to {host} (offline? its name does not resolve): {OFFLINE_FIX}"
    if code in _NO_ROUTE:
        return f"no route to {host} (offline?): {OFFLINE_FIX}"
    return f"{url}: cannot connect: {exc}"


class _TooBig(Exception):
    pass


class _HttpStatus(Exception):
    def __init__(self, status: int, reason: str | None) -> None:
        super().__init__(f"HTTP {status} {reason or ''}".strip())
        self.status = status


class Fetcher:
    def __init__(
        self,
        cache_dir: Path,
        http: aiohttp.ClientSession,
        progress: Progress,
        retries: int = RETRIES,
        mirrors: Mirrors | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.http = http
        self.progress = progress
        self.retries = retries
        self.mirrors = mirrors or Mirrors()
        self._sums: dict[str, dict[str, str]] = {}  # checksum files, fetched once per run

    # -- small text files: checksums and release metadata -----------------------------------

    async def _read_text(self, url: str) -> tuple[str, str]:
        """(text, final URL) of a small file; raises _HttpStatus, _TooBig or aiohttp's errors."""
        async with self.http.get(self.mirrors.rewrite(url)) as resp:
            if resp.status != 200:
                raise _HttpStatus(resp.status, resp.reason)
            if (resp.content_length or 0) > SUMS_LIMIT:
                raise _TooBig()
            raw = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                raw += chunk
                if len(raw) > SUMS_LIMIT:  # no Content-Length, or a wrong one
                    raise _TooBig()
            return raw.decode("utf-8", "replace"), str(resp.url)

    async def get_text(self, url: str) -> str:
        """The Getter for `boot.upstream.resolve`: upstream errors as UpstreamError."""
        real = self.mirrors.rewrite(url)
        try:
            text, _final = await self._read_text(url)
        except _HttpStatus as exc:
            kind = UpstreamNotFound if exc.status in (404, 410) else UpstreamError
            raise kind(f"{real}: {exc}") from exc
        except _TooBig as exc:
            raise UpstreamError(f"{real} is over {SUMS_LIMIT} bytes: not a metadata file") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError(describe_connect_error(real, exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"{real}: {exc or type(exc).__name__}") from exc
        return text

    async def _load_sums(self, url: str, name: str) -> dict[str, str]:
        if url not in self._sums:
            real = self.mirrors.rewrite(url)
            try:
                text, final = await self._read_text(url)
            except _HttpStatus as exc:
                raise FetchError(f"{name}: checksum file {real}: {exc}") from exc
            except _TooBig as exc:
                raise FetchError(f"{name}: checksum file {real} is over {SUMS_LIMIT} bytes") from exc
            except aiohttp.ClientConnectorError as exc:
                raise FetchError(f"{name}: checksum file: {describe_connect_error(real, exc)}") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise FetchError(f"{name}: checksum file {real}: {exc or type(exc).__name__}") from exc
            self._sums[url] = parse_sums(text, final if final and not self.mirrors else url)
            # A redirect (download.fedoraproject.org -> a mirror) must not break the name match.
            self._sums[url].update(parse_sums(text, url))
        return self._sums[url]

    # -- profiles ---------------------------------------------------------------------------

    async def fetch_profile(self, profile: Profile, version: str | None = None) -> list[FetchResult]:
        if profile.release is not None:
            return await self._fetch_release(profile, version)
        if version is not None:
            raise FetchError(
                f"{profile.name}: follows no release line (its files are fixed); fetch it without @{version}"
            )
        return await self._fetch_files(profile, None, None)

    async def resolve(self, profile: Profile, version: str | None = None) -> Release:
        assert profile.release is not None
        try:
            return await resolve(profile.release, self.get_text, version)
        except UpstreamError as exc:
            pin = read_pin(self.cache_dir / profile.name)
            kept = f"; the cached {pin.version} stays in use" if pin else ""
            raise FetchError(f"{profile.name}: {exc}{kept}") from exc

    async def _fetch_release(self, profile: Profile, version: str | None) -> list[FetchResult]:
        home = self.cache_dir / profile.name
        _mkdir(home)
        with _dir_lock(
            home, f"{profile.name}: another `pxetui fetch` is fetching {profile.name}; wait for it"
        ):
            release = await self.resolve(profile, version)
            concrete = pinned_profile(profile, release)
            results = await self._fetch_files(
                concrete, home / release.version, f"{release.source}, release {release.version}"
            )
            write_pin(home, with_extracted(release, profile, results))
            _drop_other_versions(home, release.version)
        return [replace(r, version=release.version) for r in results]

    def _dest(self, profile: Profile, role: str, files_dir: Path | None) -> Path:
        ref = profile.files[role]
        if files_dir is not None and not ref.path:
            return files_dir / ref.basename
        return profile.file_path(role, self.cache_dir)

    async def _fetch_files(
        self, profile: Profile, files_dir: Path | None, sha_source: str | None
    ) -> list[FetchResult]:
        if not profile.files:
            return []
        results: list[FetchResult] = []
        changed: set[str] = set()  # the ISO / FAT image / archive downloaded anew in this run
        # The ISO, the FAT image and the archive first: files taken out of them need them verified.
        roles = sorted(profile.files, key=lambda r: (profile.files[r].extracted, r not in CONTAINERS))
        for role in roles:
            ref = profile.files[role]
            dest = self._dest(profile, role, files_dir)
            if ref.path:
                if not dest.is_file():
                    raise FetchError(
                        f"{profile.name} {role}: {dest} does not exist; it is a local file named by"
                        f" 'path:' in {profile.source}, so fetch cannot download it"
                    )
                continue
            if ref.container is not None and ref.container in changed:
                forget(dest)  # taken out of the previous ISO, image or archive
            if is_verified(dest):
                sha = _marker_sha(dest)
                results.append(FetchResult(profile.name, role, dest, "already verified", sha, 0))
                continue
            if ref.container is not None:
                container = self._dest(profile, ref.container, files_dir)
                results.append(await self._extract(profile, role, container, dest))
                continue
            assert ref.url is not None
            expected, source = await self._expected_sha(profile, role, sha_source)
            results.append(await self._download_any(profile.name, role, ref, dest, expected, source))
            changed.add(role)
        return results

    async def _download_any(
        self, profile: str, role: str, ref: FileRef, dest: Path, expected: str, source: str
    ) -> FetchResult:
        """The first URL that has the file: upstream's, then where upstream moves old releases."""
        assert ref.url is not None
        urls = (ref.url, *ref.mirrors)
        for n, url in enumerate(urls):
            try:
                return await self.download(profile, role, url, dest, expected, source)
            except NotFoundError:
                if n == len(urls) - 1:
                    raise
        raise AssertionError("unreachable")

    async def _extract(self, profile: Profile, role: str, container: Path, dest: Path) -> FetchResult:
        """Take `role` out of the profile's verified ISO, FAT image or tar archive."""
        from pxetui.commands.import_iso import extract_from_iso

        ref = profile.files[role]
        inner, holder = ref.inner, ref.container
        assert inner is not None and holder is not None
        label = f"{profile.name} {role}"
        kind = {"iso": "ISO", IMAGE_ROLE: "image"}.get(holder, holder)
        if not (profile.files[holder].path or is_verified(container)):
            raise FetchError(f"{label}: {container} is not verified; {inner} is not taken out of it")
        self.progress.start(f"{label} (from {container.name}:{inner})", None, 0)
        forget(dest)
        try:
            if ref.from_iso:
                sha = await asyncio.to_thread(extract_from_iso, container, inner, dest)
            elif ref.from_image:
                sha = await asyncio.to_thread(extract_from_fat, container, inner, dest, f"image:{inner}")
            else:
                sha = await asyncio.to_thread(extract_from_tar, container, inner, dest, f"archive:{inner}")
        except PxetuiError as exc:
            self.progress.finish("failed")
            raise FetchError(f"{label}: {exc}") from exc
        self.progress.update(dest.stat().st_size)
        self.progress.finish(f"extracted from the verified {kind}")
        return FetchResult(profile.name, role, dest, "extracted", sha, 0)

    async def _expected_sha(self, profile: Profile, role: str, sha_source: str | None) -> tuple[str, str]:
        ref = profile.files[role]
        assert ref.url is not None
        if ref.sha256:
            return ref.sha256, sha_source or f"'{role}.sha256' in {profile.source}"
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

    # -- one file ---------------------------------------------------------------------------

    async def download(
        self, profile: str, role: str, url: str, dest: Path, expected: str, source: str
    ) -> FetchResult:
        """Download `url` to `dest` via dest.part, resuming it; verify; rename; mark verified."""
        _mkdir(dest.parent)
        label = f"{profile} {role}"
        with _dir_lock(dest.parent, f"{label}: another `pxetui fetch` is downloading {dest}; wait for it"):
            return await self._download_locked(label, profile, role, url, dest, expected, source)

    async def _download_locked(
        self, label: str, profile: str, role: str, url: str, dest: Path, expected: str, source: str
    ) -> FetchResult:
        forget(dest)  # an unverified leftover must not survive next to a fresh download
        part = part_path(dest)
        if part.is_symlink():
            part.unlink()  # never write through a link planted in the cache
        resumed = part.is_file() and part.stat().st_size > 0
        real = self.mirrors.rewrite(url)
        requests = 0
        while True:
            requests += 1
            try:
                got = await self._get_into(label, real, part)
                break
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing to resume
                self.progress.finish("failed")
                raise FetchError(f"{label}: {describe_connect_error(real, exc)}") from exc
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                # The connection was cut or stalled: keep the .part, continue it with a Range request.
                if requests > self.retries:
                    self.progress.finish(f"interrupted ({exc or type(exc).__name__})")
                    raise FetchError(
                        f"{label}: {real}: connection cut {requests} times ({exc or type(exc).__name__});"
                        f" the partial file {part} is kept and the next `pxetui fetch` resumes it"
                    ) from exc
                resumed = True
                await asyncio.sleep(min(0.2 * requests, 2.0))
            except aiohttp.ClientError as exc:
                self.progress.finish("failed")
                raise FetchError(f"{label}: {real}: {exc or type(exc).__name__}") from exc
            except OSError as exc:  # disk full, no permission: the cache, not the network
                self.progress.finish("failed")
                raise FetchError(
                    f"{label}: cannot write {part}: {exc}; free space or pick --cache DIR"
                ) from exc
        if got != expected:
            part.unlink(missing_ok=True)
            self.progress.finish("CHECKSUM MISMATCH")
            raise ChecksumMismatch(
                f"{label}: checksum mismatch for {real}: got sha256 {got}, expected {expected}"
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
                kind = NotFoundError if resp.status in (404, 410) else FetchError
                raise kind(f"{label}: {url}: HTTP {resp.status} {resp.reason}")
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


def with_extracted(release: Release, profile: Profile, results: Sequence[FetchResult]) -> Release:
    """The release plus the files taken out of its ISO, FAT image or archive, with their SHA-256.

    They have no URL of their own (`urls` empty: nothing downloads them), but the pin then
    says what every served file must be, for `verify` and for a bundle.
    """
    extracted = {
        r.role: ReleaseFile(r.path.name, r.sha256, (), r.path.stat().st_size)
        for r in results
        if profile.files[r.role].extracted and r.role not in release.files
    }
    return replace(release, files={**release.files, **extracted}) if extracted else release


def pinned_profile(profile: Profile, release: Release) -> Profile:
    """The profile with its release roles as exact URLs and SHA-256s: what fetch downloads."""
    files = dict(profile.files)
    for role in profile.files:
        pinned = release.files.get(role)
        if pinned is not None and profile.files[role].release:
            files[role] = FileRef(url=pinned.urls[0], sha256=pinned.sha256, mirrors=pinned.urls[1:])
    return replace(profile, files=files, release=None)


def _mkdir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the cache directory {directory}: {exc}; use --cache DIR") from exc


def _drop_other_versions(home: Path, keep: str) -> None:
    """The pin moved to `keep`: older versions' files (gigabytes of ISO) are not served any more."""
    for child in home.iterdir():
        if child.is_dir() and not child.is_symlink() and child.name != keep:
            shutil.rmtree(child, ignore_errors=True)


def _hash_prefix(path: Path, length: int, digest: hashlib._Hash) -> None:
    with path.open("rb") as fh:
        while length > 0 and (chunk := fh.read(min(1 << 20, length))):
            digest.update(chunk)
            length -= len(chunk)


@contextlib.contextmanager
def _dir_lock(directory: Path, busy: str) -> Iterator[None]:
    """One fetch at a time per directory: two appending to one .part would corrupt it.

    The lock is on the directory itself (flock on its descriptor), so nothing is left behind.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FetchError(busy) from exc
        yield
    finally:
        os.close(fd)


def _marker_sha(path: Path) -> str:
    doc = read_marker(path) or {}
    return str(doc.get("sha256", ""))


def _bars(progress: Progress | ProgressBoard) -> Callable[[str], Progress]:
    """One bar per profile from a board (MultiProgress); a single Progress is shared."""
    if isinstance(progress, ProgressBoard):
        return progress.bar
    return lambda _label: progress


@contextlib.asynccontextmanager
async def http_session(timeout: aiohttp.ClientTimeout | None = None) -> AsyncIterator[aiohttp.ClientSession]:
    # No overall limit (an ISO on a slow link takes long), but a stalled connection fails.
    timeout = timeout or aiohttp.ClientTimeout(total=None, connect=30, sock_read=60)
    # identity: the bytes hashed must be the bytes upstream checksummed, never a gzip of them.
    headers = {"Accept-Encoding": "identity", "User-Agent": f"pxetui/{__version__}"}
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False, headers=headers) as http:
        yield http


async def fetch_all(
    profiles: Sequence[Profile],
    cache_dir: Path,
    progress: Progress | ProgressBoard,
    timeout: aiohttp.ClientTimeout | None = None,
    retries: int = RETRIES,
    versions: Mapping[str, str] | None = None,
    mirrors: Mirrors | None = None,
) -> list[Outcome]:
    """Fetch every profile at once; each gets its own Outcome, whatever the others do."""
    bar = _bars(progress)
    async with http_session(timeout) as http:

        async def one(profile: Profile) -> Outcome:
            fetcher = Fetcher(cache_dir, http, bar(profile.name), retries, mirrors)
            try:
                results = await fetcher.fetch_profile(profile, (versions or {}).get(profile.name))
            except PxetuiError as exc:
                return Outcome(profile.name, error=exc)
            return Outcome(profile.name, results, version=next((r.version for r in results), ""))

        return list(await asyncio.gather(*(one(p) for p in profiles)))


async def fetch_profiles(
    profiles: Sequence[Profile],
    cache_dir: Path,
    progress: Progress | ProgressBoard,
    timeout: aiohttp.ClientTimeout | None = None,
    retries: int = RETRIES,
    versions: Mapping[str, str] | None = None,
    mirrors: Mirrors | None = None,
) -> list[FetchResult]:
    """Like fetch_all, but raises the first profile's error once all have finished."""
    outcomes = await fetch_all(profiles, cache_dir, progress, timeout, retries, versions, mirrors)
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [r for o in outcomes for r in o.results]


def split_name(text: str) -> tuple[str, str | None]:
    """`ubuntu-24.04@24.04.3` -> (name, version); a bare name takes the newest."""
    name, sep, version = text.partition("@")
    if sep:
        return name, check_version(version, f"{text}")
    return name, None


def check_cache_writable(cache: Path, given: bool) -> str | None:
    """Refuse early (with the fix) where the run would fail at the first file; else a note."""
    probe = cache
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.geteuid() != 0 and not os.access(probe, os.W_OK | os.X_OK):
        raise FetchError(
            f"cannot write the cache {cache}, which `sudo pxetui` serves: run this fetch with sudo,"
            " or fetch into a directory of yours with --cache DIR and serve that with"
            " `sudo pxetui IFACE --cache DIR`"
        )
    if given and os.geteuid() != 0 and cache.resolve() != DEFAULT_CACHE:
        return (
            f"fetching into {cache} (not {DEFAULT_CACHE}): serve it with `sudo pxetui IFACE --cache {cache}`"
        )
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxetui fetch",
        description="Download profiles' files into the cache: resumable, SHA-256 verified, several at once.",
    )
    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME[@VERSION]",
        help="profile names (see `pxetui profiles`); NAME@VERSION pins a release (ubuntu-24.04@24.04.3)",
    )
    add_profiles_option(p)
    add_cache_option(p, "where the files go")
    p.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL|HOST=URL",
        help=f"fetch upstream files from a local mirror (also ${MIRROR_ENV}):"
        " URL/HOST/PATH for every host, or HOST=URL for one",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        metavar="FILE",
        help="also write what these profiles need into FILE, for `pxetui import-bundle FILE` offline",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cache = args.cache or default_cache_dir()
    mirrors = parse_mirrors(args.mirror)
    known = load_profiles(args.profiles, cache)
    wanted = dict(split_name(n) for n in args.names)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise FetchError(f"unknown profile(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    chosen = [known[n] for n in wanted]
    for name in [pr.name for pr in chosen if not pr.files]:
        print(f"{name}: nothing to download (it boots no files)")
    note = check_cache_writable(cache, args.cache is not None)
    if note:
        print(note, file=sys.stderr)
    versions = {n: v for n, v in wanted.items() if v}
    try:
        outcomes = asyncio.run(
            fetch_all(
                [pr for pr in chosen if pr.files], cache, MultiProgress(), versions=versions, mirrors=mirrors
            )
        )
    except KeyboardInterrupt:
        print("\ninterrupted: the partial files are kept; run the same command to resume", file=sys.stderr)
        return 130
    failed = 0
    for outcome in outcomes:
        for r in outcome.results:
            release = f" (release {r.version})" if r.version else ""
            print(f"{r.profile} {r.role}: {r.status}{release} {r.path} sha256 {r.sha256}")
        if outcome.error is not None:
            failed += 1
            print(f"pxetui fetch: {outcome.profile} failed: {outcome.error}", file=sys.stderr)
    print(f"cache: {cache}")
    if args.bundle is not None:
        from pxetui.commands.bundle import write_bundle

        good = [known[o.profile] for o in outcomes if o.error is None]
        names = write_bundle(args.bundle, good, cache)
        print(
            f"bundle: {args.bundle} ({', '.join(names) or 'nothing'});"
            f" on the lab machine: pxetui import-bundle {args.bundle}"
        )
    if failed:
        print(f"{failed} of {len(outcomes)} profile(s) failed; the others are fetched", file=sys.stderr)
        return 1
    return 0


async def newest_releases(
    profiles: Sequence[Profile],
    cache_dir: Path,
    mirrors: Mirrors | None = None,
    timeout: aiohttp.ClientTimeout | None = None,
) -> dict[str, str | PxetuiError]:
    """{name: the newest version upstream offers, or why it is unknown} per release profile."""
    tracked = [p for p in profiles if p.release is not None]
    async with http_session(timeout) as http:
        fetcher = Fetcher(cache_dir, http, TextProgress(tty=False), mirrors=mirrors)

        async def one(profile: Profile) -> tuple[str, str | PxetuiError]:
            try:
                return profile.name, (await fetcher.resolve(profile)).version
            except PxetuiError as exc:
                return profile.name, exc

        return dict(await asyncio.gather(*(one(p) for p in tracked)))
