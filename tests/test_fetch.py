"""`pxetui fetch` against a local "mirror" (aiohttp) serving fake upstream files and checksums.

The mirror and the fetch both run on a NetnsLoop thread inside the lab's server namespace, on
the lab bridge address: nothing here touches the host's interfaces or the internet.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from lab import Lab, NetnsLoop
from test_isoimport import build_iso

from pxetui.boot.cache import FileState, file_status, is_verified, part_path, verified_path
from pxetui.boot.profiles import Profile, load_profile
from pxetui.commands.fetch import ChecksumMismatch, FetchError, TextProgress, fetch_profiles, parse_sums

REPO = Path(__file__).resolve().parent.parent
PORT = 8099


def blob(seed: str, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes of `size`."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Mirror:
    """Fake upstream: /dists/... files with Range support, checksum files, and cut connections."""

    ip: str
    files: dict[str, bytes] = field(default_factory=dict)  # path -> content
    cut_after: dict[str, list[int]] = field(default_factory=dict)  # path -> byte counts, one per request
    ignore_range: set[str] = field(default_factory=set)
    wrong_range: set[str] = field(default_factory=set)  # answer 206 but from byte 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    encodings: set[str] = field(default_factory=set)  # Accept-Encoding headers seen
    runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://{self.ip}:{PORT}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.+}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.ip, PORT).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        rng = request.headers.get("Range")
        self.requests.append((path, rng))
        self.encodings.add(request.headers.get("Accept-Encoding", ""))
        data = self.files.get(path)
        if data is None:
            raise web.HTTPNotFound()
        start = 0
        resp = web.StreamResponse(status=200)
        if rng and path not in self.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if path in self.wrong_range:
                self.wrong_range.discard(path)
                start = 0
            if start >= len(data):
                raise web.HTTPRequestRangeNotSatisfiable()
            resp.set_status(206)
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        resp.content_length = len(body)
        await resp.prepare(request)
        cuts = self.cut_after.get(path)
        if cuts:
            cut = cuts.pop(0)
            await resp.write(body[:cut])
            # Let the client read what was sent: aiohttp drops unread bytes once the
            # connection breaks, which would make "how far did it get" a race.
            await asyncio.sleep(0.3)
            # The link drops mid-file: headers promised more, then the connection ends. (close,
            # not abort: an RST would make the client's kernel discard bytes it had not read.)
            assert request.transport is not None
            request.transport.close()
            return resp
        for i in range(0, len(body), 65536):
            await resp.write(body[i : i + 65536])
            if path.endswith("SUMS"):
                await asyncio.sleep(0.01)  # arrives in several reads, as from a far mirror
        await resp.write_eof()
        return resp


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def start(self, label: str, total: int | None, offset: int) -> None:
        self.events.append(("start", (label, total, offset)))

    def update(self, done: int) -> None:
        self.events.append(("update", done))

    def finish(self, note: str) -> None:
        self.events.append(("finish", note))

    def updates(self) -> list[int]:
        return [int(str(v)) for k, v in self.events if k == "update"]


@pytest.fixture
def mirror_loop(lab: Lab) -> Iterator[tuple[NetnsLoop, Mirror]]:
    with NetnsLoop(lab.server_ns) as nl:
        mirror = Mirror(lab.server_ip)
        nl.run(mirror.start())
        try:
            yield nl, mirror
        finally:
            nl.run(mirror.stop())


KERNEL = blob("kernel", 300_000)
INITRD = blob("initrd", 1_200_000)


def write_profile(tmp_path: Path, text: str, name: str = "demo") -> Profile:
    source = tmp_path / "profiles" / f"{name}.yaml"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(text)
    return load_profile(source)


def demo_profile(tmp_path: Path, mirror: Mirror, kernel_sha: str | None = None) -> Profile:
    """Kernel checked against the profile's sha256, initrd against an upstream SHA256SUMS."""
    mirror.files["dists/os/images/netboot/amd64/linux"] = KERNEL
    mirror.files["dists/os/images/netboot/amd64/initrd.gz"] = INITRD
    mirror.files["dists/os/images/cdrom/initrd.gz"] = b"another initrd.gz in the same SHA256SUMS"
    filler = "".join(f"{sha(str(i).encode())}  ./hd-media/file{i}\n" for i in range(3000))
    mirror.files["dists/os/images/SHA256SUMS"] = (
        filler + f"{sha(b'another initrd.gz in the same SHA256SUMS')}  ./cdrom/initrd.gz\n"
        f"{sha(INITRD)}  ./netboot/amd64/initrd.gz\n"
        f"{sha(KERNEL)}  ./netboot/amd64/linux\n"
    ).encode()
    return write_profile(
        tmp_path,
        f"name: demo\ntitle: Demo\n"
        f"kernel: {{url: '{mirror.url('dists/os/images/netboot/amd64/linux')}',"
        f" sha256: {kernel_sha or sha(KERNEL)}}}\n"
        f"initrd: {{url: '{mirror.url('dists/os/images/netboot/amd64/initrd.gz')}'}}\n"
        f"sha256sums: {mirror.url('dists/os/images/SHA256SUMS')}\n",
    )


def test_fetch_downloads_verifies_and_shows_progress(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    cache = tmp_path / "cache"
    assert verified_path(profile, "kernel", cache) is None
    progress = RecordingProgress()
    results = nl.run(fetch_profiles([profile], cache, progress))
    assert {(r.role, r.status) for r in results} == {("kernel", "downloaded"), ("initrd", "downloaded")}
    assert (cache / "demo" / "linux").read_bytes() == KERNEL
    assert (cache / "demo" / "initrd.gz").read_bytes() == INITRD
    assert verified_path(profile, "initrd", cache) == cache / "demo" / "initrd.gz"
    assert not part_path(cache / "demo" / "linux").exists()
    starts = [v for k, v in progress.events if k == "start"]
    assert ("demo initrd", len(INITRD), 0) in starts and ("demo kernel", len(KERNEL), 0) in starts
    assert [v for k, v in progress.events if k == "finish"] == ["verified sha256", "verified sha256"]
    ups = progress.updates()
    assert len(ups) >= 4 and len(INITRD) in ups and len(KERNEL) in ups
    assert mirror.encodings == {"identity"}  # hashed bytes are upstream's bytes, never re-encoded
    # A second run downloads nothing: both files are already verified.
    before = len(mirror.requests)
    again = nl.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert [r.status for r in again] == ["already verified", "already verified"]
    assert len(mirror.requests) == before


def test_text_progress_bar_draws_per_file(mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path) -> None:
    nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    for tty in (False, True):
        out = io.StringIO()
        nl.run(fetch_profiles([profile], tmp_path / f"cache{tty}", TextProgress(out, tty=tty)))
        text = out.getvalue()
        assert "demo kernel [" in text and "demo initrd [" in text
        assert "] 100% 0.3/0.3 MB" in text and "] 100% 1.2/1.2 MB" in text
        assert text.count("verified sha256") == 2
        if tty:
            assert "\r" in text  # redrawn in place on a terminal
        else:
            assert "\r" not in text and "]   0%" in text


def test_resume_after_a_cut_connection(mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path) -> None:
    nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    path = "dists/os/images/netboot/amd64/initrd.gz"
    mirror.cut_after[path] = [400_000, 300_000]  # two cuts, then a whole response
    results = nl.run(fetch_profiles([profile], tmp_path / "cache", RecordingProgress()))
    initrd = next(r for r in results if r.role == "initrd")
    assert initrd.status == "resumed" and initrd.requests == 3
    ranges = [r for p, r in mirror.requests if p == path]
    assert ranges[0] is None
    offsets = [int(r.removeprefix("bytes=").rstrip("-")) for r in ranges[1:] if r]
    assert len(offsets) == 2 and 0 < offsets[0] <= 400_000 and offsets[0] < offsets[1] <= 700_000
    assert (tmp_path / "cache" / "demo" / "initrd.gz").read_bytes() == INITRD
    assert is_verified(tmp_path / "cache" / "demo" / "initrd.gz")


def test_resume_a_partial_file_from_an_earlier_run_and_restart_when_range_is_ignored(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    cache = tmp_path / "cache"
    part = part_path(cache / "demo" / "initrd.gz")
    part.parent.mkdir(parents=True)
    part.write_bytes(INITRD[:123_456])
    assert file_status(profile, "initrd", cache).state is FileState.PARTIAL
    assert file_status(profile, "initrd", cache).size == 123_456
    progress = RecordingProgress()
    results = nl.run(fetch_profiles([profile], cache, progress))
    assert next(r for r in results if r.role == "initrd").status == "resumed"
    assert ("dists/os/images/netboot/amd64/initrd.gz", "bytes=123456-") in mirror.requests
    assert ("start", ("demo initrd", len(INITRD), 123_456)) in progress.events
    assert (cache / "demo" / "initrd.gz").read_bytes() == INITRD
    # A server that ignores Range answers 200 with the whole file: start over, still correct.
    cache2 = tmp_path / "cache2"
    part2 = part_path(cache2 / "demo" / "linux")
    part2.parent.mkdir(parents=True)
    part2.write_bytes(b"garbage that is not the start of the kernel")
    mirror.ignore_range.add("dists/os/images/netboot/amd64/linux")
    nl.run(fetch_profiles([profile], cache2, RecordingProgress()))
    assert (cache2 / "demo" / "linux").read_bytes() == KERNEL
    # A server that answers 206 with another range than asked: drop the .part, start over.
    cache3 = tmp_path / "cache3"
    part3 = part_path(cache3 / "demo" / "initrd.gz")
    part3.parent.mkdir(parents=True)
    part3.write_bytes(INITRD[:1000])
    mirror.wrong_range.add("dists/os/images/netboot/amd64/initrd.gz")
    results = nl.run(fetch_profiles([profile], cache3, RecordingProgress()))
    assert next(r for r in results if r.role == "initrd").requests == 2
    assert (cache3 / "demo" / "initrd.gz").read_bytes() == INITRD


def test_too_many_cuts_keep_the_partial_file_and_say_so(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    mirror.cut_after["dists/os/images/netboot/amd64/linux"] = [50_000, 50_000, 50_000]
    with pytest.raises(FetchError) as err:
        nl.run(fetch_profiles([profile], tmp_path / "cache", RecordingProgress(), retries=2))
    message = str(err.value)
    assert "demo kernel:" in message and "connection cut 3 times" in message
    assert "the next `pxetui fetch` resumes it" in message
    status = file_status(profile, "kernel", tmp_path / "cache")
    assert status.state is FileState.PARTIAL and 0 < status.size <= 150_000
    assert verified_path(profile, "kernel", tmp_path / "cache") is None


def test_checksum_mismatch_deletes_the_partial_file_and_names_file_sum_and_source(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    wrong = "f" * 64
    profile = demo_profile(tmp_path, mirror, kernel_sha=wrong)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch) as err:
        nl.run(fetch_profiles([profile], cache, RecordingProgress()))
    message = str(err.value)
    assert (
        f"demo kernel: checksum mismatch for {mirror.url('dists/os/images/netboot/amd64/linux')}" in message
    )
    assert f"got sha256 {sha(KERNEL)}, expected {wrong}" in message
    assert f"(from 'kernel.sha256' in {profile.source})" in message
    assert f"deleted the partial file {part_path(cache / 'demo' / 'linux')}" in message
    assert not (cache / "demo" / "linux").exists() and not part_path(cache / "demo" / "linux").exists()
    assert file_status(profile, "kernel", cache).state is FileState.MISSING
    # Against the upstream SHA256SUMS: the message names that file as the source.
    good = demo_profile(tmp_path, mirror)
    mirror.files["dists/os/images/netboot/amd64/initrd.gz"] = INITRD[:-1] + b"!"
    with pytest.raises(ChecksumMismatch) as err2:
        nl.run(fetch_profiles([good], cache, RecordingProgress()))
    assert f"expected {sha(INITRD)} (from {mirror.url('dists/os/images/SHA256SUMS')})" in str(err2.value)
    assert verified_path(good, "initrd", cache) is None
    assert verified_path(good, "kernel", cache) is not None  # the good file before it stays


def test_404_and_bad_checksum_sources_are_clear_errors(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    cache = tmp_path / "cache"
    missing = write_profile(
        tmp_path,
        f"name: gone\ntitle: Gone\nkernel: {{url: '{mirror.url('nope/linux')}', sha256: {'a' * 64}}}\n",
    )
    with pytest.raises(FetchError, match=r"gone kernel: http://.*/nope/linux: HTTP 404 Not Found"):
        nl.run(fetch_profiles([missing], cache, RecordingProgress()))
    assert not (cache / "gone" / "linux").exists() and not part_path(cache / "gone" / "linux").exists()
    nosums = write_profile(
        tmp_path,
        f"name: nosums\ntitle: N\nkernel: {{url: '{mirror.url('a/linux')}'}}\n"
        f"sha256sums: {mirror.url('a/SHA256SUMS')}\n",
        name="nosums",
    )
    with pytest.raises(FetchError, match=r"nosums: checksum file http://.*/a/SHA256SUMS: HTTP 404"):
        nl.run(fetch_profiles([nosums], cache, RecordingProgress()))
    mirror.files["a/SHA256SUMS"] = b"x" * (17 << 20)  # not a checksum file: refused, not read whole
    with pytest.raises(FetchError, match=r"checksum file http://.*/a/SHA256SUMS is over 16777216 bytes"):
        nl.run(fetch_profiles([nosums], cache, RecordingProgress()))
    mirror.files["a/SHA256SUMS"] = f"{'b' * 64}  other-file\n".encode()
    with pytest.raises(
        FetchError, match=r"SHA256SUMS lists no checksum for http://.*/a/linux; add 'kernel.sha256'"
    ):
        nl.run(fetch_profiles([nosums], cache, RecordingProgress()))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(
        FetchError, match=r"cannot create the cache directory .*blocker/gone.*use --cache DIR"
    ):
        nl.run(fetch_profiles([missing], blocker, RecordingProgress()))
    unsummed = write_profile(
        tmp_path, f"name: bare\ntitle: B\nkernel: {{url: '{mirror.url('a/linux')}'}}\n", name="bare"
    )
    with pytest.raises(
        FetchError, match=r"bare kernel: no checksum to verify .* add 'kernel.sha256' or 'sha256sums'"
    ):
        nl.run(fetch_profiles([unsummed], cache, RecordingProgress()))


def test_an_unverified_file_is_never_servable_until_fetch_verifies_it(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    cache = tmp_path / "cache"
    (cache / "demo").mkdir(parents=True)
    (cache / "demo" / "linux").write_bytes(KERNEL)  # right bytes, but nobody verified them
    assert file_status(profile, "kernel", cache).state is FileState.UNVERIFIED
    assert verified_path(profile, "kernel", cache) is None
    nl.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert verified_path(profile, "kernel", cache) == cache / "demo" / "linux"
    # Changed after verification (a hand edit, a truncated copy): unverified again.
    with (cache / "demo" / "linux").open("ab") as fh:
        fh.write(b"x")
    assert verified_path(profile, "kernel", cache) is None
    assert file_status(profile, "kernel", cache).state is FileState.UNVERIFIED


def test_kernel_and_initrd_taken_from_a_fetched_iso(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    iso = build_iso(tmp_path / "live.iso", {"casper/vmlinuz": KERNEL, "casper/initrd": INITRD})
    data = iso.read_bytes()
    mirror.files["releases/24.04/live-server.iso"] = data
    mirror.files["releases/24.04/SHA256SUMS"] = f"{sha(data)} *live-server.iso\n".encode()
    profile = write_profile(
        tmp_path,
        f"name: live\ntitle: Live\niso: {{url: '{mirror.url('releases/24.04/live-server.iso')}'}}\n"
        "kernel: {from_iso: casper/vmlinuz}\ninitrd: {from_iso: /casper/initrd}\n"
        f"sha256sums: {mirror.url('releases/24.04/SHA256SUMS')}\n",
        name="live",
    )
    cache = tmp_path / "cache"
    results = nl.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert [(r.role, r.status) for r in results] == [
        ("iso", "downloaded"),
        ("kernel", "extracted"),
        ("initrd", "extracted"),
    ]
    assert verified_path(profile, "kernel", cache) == cache / "live" / "vmlinuz"
    assert (cache / "live" / "vmlinuz").read_bytes() == KERNEL
    assert (cache / "live" / "initrd").read_bytes() == INITRD
    assert verified_path(profile, "iso", cache) == cache / "live" / "live-server.iso"
    # A new ISO upstream (a point release): its kernel and initrd replace the old ones.
    iso2 = build_iso(
        tmp_path / "live2.iso", {"casper/vmlinuz": b"new kernel", "casper/initrd": b"new initrd"}
    )
    mirror.files["releases/24.04/live-server.iso"] = iso2.read_bytes()
    mirror.files["releases/24.04/SHA256SUMS"] = f"{sha(iso2.read_bytes())} *live-server.iso\n".encode()
    (cache / "live" / "live-server.iso").unlink()
    nl.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert (cache / "live" / "vmlinuz").read_bytes() == b"new kernel"
    assert verified_path(profile, "initrd", cache) is not None


def test_fetch_command_line_in_the_lab(
    mirror_loop: tuple[NetnsLoop, Mirror], lab: Lab, tmp_path: Path
) -> None:
    _nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "pxetui",
        "fetch",
        "demo",
        "local-disk",
        "--cache",
        str(cache),
        "--profiles",
        str(profile.source.parent),
    ]
    done = lab.exec(lab.server_ns, *cmd, timeout=60, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "demo kernel: downloaded" in done.stdout and "demo initrd: downloaded" in done.stdout
    assert "local-disk: nothing to download" in done.stdout
    assert "] 100%" in done.stderr  # the progress bars go to stderr
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pxetui",
            "profiles",
            "--cache",
            str(cache),
            "--profiles",
            str(profile.source.parent),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    row = next(line for line in listed.stdout.splitlines() if line.startswith("demo "))
    assert "present kernel,initrd (1.5 MB)" in row
    bad = lab.exec(
        lab.server_ns, sys.executable, "-m", "pxetui", "fetch", "no-such-os", timeout=60, env=env, cwd=REPO
    )
    assert bad.returncode == 1
    assert "pxetui fetch: error: unknown profile(s) no-such-os (known:" in bad.stderr


def test_parse_sums_reads_gnu_bsd_and_treeinfo_formats() -> None:
    base = "https://mirror.example/os/images/SHA256SUMS"
    text = (
        f"{'A' * 64}  ./netboot/linux\n"
        f"{'b' * 64} *netboot/initrd.gz\n"
        f"SHA256 (Fedora-Server-netinst.iso) = {'c' * 64}\n"
        "[checksums]\n"
        f"images/pxeboot/vmlinuz = sha256:{'d' * 64}\n"
        "# a comment\nnot a checksum line\n"
    )
    assert parse_sums(text, base) == {
        "https://mirror.example/os/images/netboot/linux": "a" * 64,
        "https://mirror.example/os/images/netboot/initrd.gz": "b" * 64,
        "https://mirror.example/os/images/Fedora-Server-netinst.iso": "c" * 64,
        "https://mirror.example/os/images/images/pxeboot/vmlinuz": "d" * 64,
    }


def test_one_download_per_file_and_unreachable_servers(
    mirror_loop: tuple[NetnsLoop, Mirror], tmp_path: Path
) -> None:
    nl, mirror = mirror_loop
    profile = demo_profile(tmp_path, mirror)
    cache = tmp_path / "cache"
    (cache / "demo").mkdir(parents=True)
    # The lock is on the directory itself (issue 16: no .lock file left behind).
    held = os.open(cache / "demo", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as if another fetch were running
        with pytest.raises(FetchError, match=r"demo kernel: another `pxetui fetch` is downloading .*/linux"):
            nl.run(fetch_profiles([profile], cache, RecordingProgress()))
    finally:
        os.close(held)
    nl.run(fetch_profiles([profile], cache, RecordingProgress()))
    assert verified_path(profile, "kernel", cache) is not None
    assert not [p.name for p in (cache / "demo").iterdir() if p.name.endswith(".lock")]
    closed = write_profile(
        tmp_path,
        f"name: closed\ntitle: C\nkernel: {{url: 'http://{mirror.ip}:9/linux', sha256: {'a' * 64}}}\n",
        name="closed",
    )
    with pytest.raises(FetchError, match=r"closed kernel: http://.*:9/linux: cannot connect"):
        nl.run(fetch_profiles([closed], cache, RecordingProgress()))
