"""The HTTP service on a lab bridge, driven by curl (and raw sockets) from a client namespace."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tools
from http_lab import KERNEL_SIZE, PORT, HttpLab, start_http_lab
from lab import Lab, NetnsLoop

from pxetui.boot.cache import sha256_file, write_marker
from pxetui.boot.profiles import load_profiles
from pxetui.errors import UsageError
from pxetui.model.registry import Stage
from pxetui.services.http import sendfile_pool
from pxetui.services.http.server import HttpService

pytestmark = pytest.mark.lab

ASSIGNED = "52:54:00:00:00:01"
UNASSIGNED = "52:54:00:00:00:02"
LOCAL = "52:54:00:00:00:03"
IDLE_TIMEOUT = 1.5
STALL_TIMEOUT = 1.5


@pytest.fixture
def http(lab: Lab, tmp_path: Path) -> Iterator[HttpLab]:
    need_tools("curl")
    with NetnsLoop(lab.server_ns) as loop:
        hl = start_http_lab(
            lab,
            tmp_path,
            loop,
            idle_timeout=IDLE_TIMEOUT,
            stall_timeout=STALL_TIMEOUT,
            progress_interval=0.2,
        )
        try:
            yield hl
        finally:
            loop.run(hl.service.stop())


def kernel_bytes(http: HttpLab) -> bytes:
    return (http.tmp / "os" / "kernel").read_bytes()


def test_probe_then_assigned_unassigned_and_local_machines(http: HttpLab) -> None:
    http.assign(ASSIGNED, "tiny", "pc1")
    http.set_boot_local(LOCAL)
    http.seen(UNASSIGNED)  # it network-booted through pxetui: known, though in no plan

    code, probe = http.get("/boot.ipxe")
    assert code == 200 and probe.startswith("#!ipxe")
    assert f"chain {http.base}/boot.ipxe?mac=${{net0/mac:hexhyp}}&arch=${{buildarch:uristring}}" in probe

    code, assigned = http.get(f"/boot.ipxe?mac={ASSIGNED}&arch=x86_64&platform=efi")
    assert code == 200
    kernel = next(line for line in assigned.splitlines() if line.startswith("kernel "))
    assert f"{http.base}/files/tiny/kernel?mac=52%3A54%3A00%3A00%3A00%3A01" in kernel
    assert f"url={http.base}/config/52-54-00-00-00-01/preseed.cfg hostname=pc1" in kernel
    assert "menu" not in assigned.split()

    # Unassigned: a menu of the profiles fitting its arch and firmware, plus the extras.
    code, menu = http.get(f"/boot.ipxe?mac={UNASSIGNED}&arch=x86_64&platform=efi")
    assert code == 200
    choices = re.findall(r"^item (\S+)", menu, re.M)
    assert "tiny" in choices and "debian-12-local" in choices and "armos" not in choices
    assert {"ipxe-shell", "local-disk", "reboot"} <= set(choices)
    code, arm_menu = http.get(f"/boot.ipxe?mac={UNASSIGNED}&arch=arm64&platform=efi")
    arm_choices = re.findall(r"^item (\S+)", arm_menu, re.M)
    assert "armos" in arm_choices and "tiny" not in arm_choices
    # BIOS iPXE is an i386 build: with lm=1 (64-bit CPU) the x86_64 profiles are offered.
    _, bios_menu = http.get(f"/boot.ipxe?mac={UNASSIGNED}&arch=i386&platform=pcbios&lm=1")
    assert "tiny" in re.findall(r"^item (\S+)", bios_menu, re.M)
    _, bios32_menu = http.get(f"/boot.ipxe?mac={UNASSIGNED}&arch=i386&platform=pcbios&lm=0")
    assert "tiny" not in re.findall(r"^item (\S+)", bios32_menu, re.M)

    code, local = http.get(f"/boot.ipxe?mac={LOCAL.replace(':', '-')}&arch=x86_64&platform=pcbios")
    assert code == 200 and "sanboot --no-describe --drive 0x80" in local and "kernel" not in local

    code, _ = http.get("/boot.ipxe?mac=not-a-mac")
    assert code == 400

    answers = {(e.mac, e.fields.get("answer")) for e in http.named("http.request")}
    assert {(ASSIGNED, "tiny"), (UNASSIGNED, "menu"), (LOCAL, "local")} <= answers
    request = next(e for e in http.named("http.request", ASSIGNED))
    assert request.fields["kind"] == "script" and request.fields["client"] == http.client_ip
    assert request.fields["client_info"]["platform"] == "efi"
    assert http.session.registry.machines[ASSIGNED].stage is Stage.MENU


def test_menu_select_reports_the_choice_and_returns_its_script(http: HttpLab) -> None:
    http.lease(UNASSIGNED)  # the client's address is this PC's (its install files go only there)
    code, script = http.get(f"/select?mac={UNASSIGNED}&profile=tiny")
    assert code == 200 and "kernel --name kernel" in script
    event = http.wait_event("menu.select")
    assert event.mac == UNASSIGNED and event.fields["choice"] == "tiny"
    assert http.session.registry.machines[UNASSIGNED].menu_choice == "tiny"
    # The chosen profile's install file is now rendered for that machine.
    code, preseed = http.get(f"/config/{UNASSIGNED}/preseed.cfg")
    assert code == 200 and "late_command" in preseed

    code, local = http.get(f"/select?mac={UNASSIGNED}&profile=-local")
    assert code == 200 and "sanboot" in local
    code, _ = http.get(f"/select?mac={UNASSIGNED}&profile=nosuch")
    assert code == 404
    assert any("nosuch" in e.fields["reason"] for e in http.named("error", UNASSIGNED))


def test_head_range_and_resumed_download(http: HttpLab) -> None:
    http.seen(ASSIGNED)  # transfers are credited only to a MAC pxetui knows
    data = kernel_bytes(http)
    url = f"{http.base}/files/tiny/kernel?mac={ASSIGNED}"
    head = http.curl("-I", url).stdout
    assert re.search(rf"^Content-Length: {KERNEL_SIZE}\r?$", head, re.M | re.I)
    assert re.search(r"^Accept-Ranges: bytes\r?$", head, re.M | re.I)

    out = http.tmp / "range.bin"
    assert http.curl("-r", "1000-1999", "-o", str(out), "-w", "%{http_code}", url).stdout == "206"
    assert out.read_bytes() == data[1000:2000]
    tail = http.tmp / "tail.bin"
    http.curl("-r", "-100", "-o", str(tail), url)
    assert tail.read_bytes() == data[-100:]

    # Resume: a download cut after 1 MiB + 5 bytes is finished with `curl -C -`.
    resumed = http.tmp / "resumed.bin"
    resumed.write_bytes(data[: 1024 * 1024 + 5])
    done = http.curl("-C", "-", "-o", str(resumed), "-w", "%{http_code}", url)
    assert done.stdout == "206", done.stderr
    assert hashlib.sha256(resumed.read_bytes()).digest() == hashlib.sha256(data).digest()

    code, _ = http.get("/files/tiny/kernel", "-r", f"{KERNEL_SIZE + 10}-")
    assert code == 416

    finished = [e for e in http.named("http.done", ASSIGNED) if e.fields["kind"] == "kernel"]
    assert finished and all(e.fields["ok"] for e in finished)
    assert any(e.fields["bytes"] == KERNEL_SIZE - (1024 * 1024 + 5) for e in finished)
    # Every body byte went out through the sendfile workers, none through the services' thread.
    bodies = 1000 + 100 + KERNEL_SIZE - (1024 * 1024 + 5)
    assert http.service.describe()["sent_by_workers"] == bodies


def test_body_goes_out_by_the_loop_when_no_descriptor_is_left(
    http: HttpLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(fd: int) -> int:  # what EMFILE from dup() turns into
        raise sendfile_pool.SendfileUnavailable(
            24, "cannot hand the transfer to a worker: Too many open files"
        )

    monkeypatch.setattr(sendfile_pool, "_dup", exhausted)
    out = http.tmp / "kernel.bin"
    done = http.curl("-o", str(out), "-w", "%{http_code}", f"{http.base}/files/tiny/kernel?mac={ASSIGNED}")
    assert done.stdout == "200", done.stderr
    assert out.read_bytes() == kernel_bytes(http)
    described = http.service.describe()
    assert described["responses_by_loop"] == 1 and described["sent_by_workers"] == 0
    finished = http.wait_event("http.done", kind="kernel")
    assert finished.fields["ok"] is True and finished.fields["bytes"] == KERNEL_SIZE


def test_loaders_by_catalog_name(http: HttpLab) -> None:
    out = http.tmp / "ipxe.efi"
    done = http.curl("-o", str(out), "-w", "%{http_code}", f"{http.base}/loaders/ipxe.efi")
    assert done.stdout == "200"
    assert out.read_bytes() == (http.tmp / "boot" / "ipxe.efi").read_bytes()
    event = http.wait_event("http.done", kind="loader")
    assert event.fields["ok"] and event.fields["bytes"] == 100_000


TRAVERSAL = [
    "/loaders/../../../../etc/passwd",
    "/loaders/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/loaders/..%2f..%2f..%2fetc%2fpasswd",
    "/loaders/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/loaders//etc/passwd",
    "/loaders/%2fetc%2fpasswd",
    "/loaders/ipxe.efi%00",
    "/loaders/..\\..\\etc\\passwd",
    "/files/tiny/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/files/%2e%2e/kernel",
    "/files/tiny/kernel/../../../../etc/passwd",
    "/files/tiny/%2e%2e%2f%2e%2e%2fos%2fkernel",
    "/files/cached/kernel",  # the cache holds a symlink to /etc/passwd
    "/config/52:54:00:00:00:01/..%2f..%2f..%2fetc%2fpasswd",
    "/config/52:54:00:00:00:01/%2e%2e",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/",
    "/loaders/",
    "/files/",
    "/files/tiny/",
    "/config/",
    "/etc/passwd",
]


def test_traversal_corpus_and_listings_are_404(http: HttpLab) -> None:
    http.assign(ASSIGNED, "tiny")
    for path in TRAVERSAL:
        code, body = http.get(path)
        assert code == 404, f"{path}: {code}"
        assert "root:" not in body, path
    # Nothing was sent from outside the served tables, and the service still serves.
    assert not [e for e in http.named("http.request") if e.fields.get("kind") in ("kernel", "loader")]
    assert http.get("/loaders/ipxe.efi")[0] == 200
    assert http.service.describe()["rejected"] >= len(TRAVERSAL)


def test_tokens_guard_done_and_failed(http: HttpLab) -> None:
    other = "52:54:00:00:00:04"
    http.assign(ASSIGNED, "tiny", "pc1")
    http.assign(other, "tiny", "pc4")
    # Each PC at its own address: install files and reports are answered only there.
    other_pc = http.add_client(11)
    http.lease(ASSIGNED)
    http.lease(other, other_pc)
    _, preseed = http.get(f"/config/{ASSIGNED}/preseed.cfg")
    token = re.search(r"token=([\w-]+)", preseed)
    assert token, preseed
    _, other_preseed = http.get(f"/config/{other}/preseed.cfg", via=other_pc)
    other_token = re.search(r"token=([\w-]+)", other_preseed)
    assert other_token and other_token.group(1) != token.group(1)
    assert token.group(1) not in http.get(f"/boot.ipxe?mac={other}&arch=x86_64")[1]
    code, other_script = http.get(f"/boot.ipxe?mac={other}&arch=x86_64", via=other_pc)
    assert code == 200 and token.group(1) not in other_script

    for query in (
        f"mac={ASSIGNED}&token=wrong",
        f"mac={ASSIGNED}&token={other_token.group(1)}",
        f"mac={ASSIGNED}",
    ):
        code, _ = http.get(f"/done?{query}")
        assert code == 403, query
    assert not http.named("install.done")
    assert len([e for e in http.named("error", ASSIGNED) if "wrong token" in e.fields["reason"]]) == 3
    assert http.session.registry.machines[ASSIGNED].stage is not Stage.DONE

    code, _ = http.get(f"/done?mac={ASSIGNED}&token={token.group(1)}")
    assert code == 200
    assert http.wait_event("install.done").mac == ASSIGNED
    assert http.session.registry.machines[ASSIGNED].stage is Stage.DONE
    assert http.session.registry.machines[other].stage is not Stage.DONE

    code, _ = http.get(f"/failed?mac={other}&token={token.group(1)}&reason=disk")
    assert code == 403 and not http.named("install.failed")
    code, _ = http.get(f"/failed?mac={other}&token={token.group(1)}&reason=disk", via=other_pc)
    assert code == 403 and not http.named("install.failed")
    code, _ = http.get(f"/failed?mac={other}&token={other_token.group(1)}&reason=no%20disk", via=other_pc)
    assert code == 200
    failed = http.wait_event("install.failed")
    assert failed.mac == other and failed.fields["reason"] == "no disk"
    assert http.session.registry.machines[other].stage is Stage.FAILED


def test_config_of_another_leased_machine_is_refused(http: HttpLab) -> None:
    http.assign(ASSIGNED, "tiny")
    # The registry knows the client's address as the lease of UNASSIGNED (as DHCP would tell it).
    http.lease(UNASSIGNED)  # a network-boot client's ACK (a phone's would make no machine)
    code, body = http.get(f"/config/{ASSIGNED}/preseed.cfg")
    assert code == 403 and "token" not in body
    assert any("install files of" in e.fields["reason"] for e in http.named("error", UNASSIGNED))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _tasks(http: HttpLab) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks() - {asyncio.current_task()})

    return http.loop.run(count())


def test_progress_events_and_no_leak_when_client_vanishes(http: HttpLab) -> None:
    http.seen(ASSIGNED)  # transfers are credited only to a MAC pxetui knows
    http.curl("-o", "/dev/null", f"{http.base}/loaders/ipxe.efi")  # warm up executor threads
    time.sleep(0.3)
    fds, tasks = _open_fds(), _tasks(http)
    curl = subprocess.Popen(
        [
            *("ip", "netns", "exec", http.client.netns, "curl", "-sS", "--limit-rate", "20M"),
            *("-o", "/dev/null", f"{http.base}/files/tiny/initrd?mac={ASSIGNED}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = http.wait_event("http.progress", kind="initrd", timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            later = [e for e in http.named("http.progress") if e.fields["bytes"] > first.fields["bytes"]]
            if later:
                break
            time.sleep(0.1)
        assert later, "progress did not advance"
        assert later[-1].fields["total"] == 512 * 1024 * 1024 and later[-1].fields["rate"] > 0
        assert later[-1].mac == ASSIGNED
        assert http.service.describe()["active"] == 1
    finally:
        curl.send_signal(signal.SIGKILL)
        curl.wait(10)
    done = http.wait_event("http.done", kind="initrd", timeout=10)
    assert done.fields["ok"] is False and 0 < done.fields["bytes"] < done.fields["total"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (_open_fds() > fds or _tasks(http) > tasks):
        time.sleep(0.1)
    assert _open_fds() <= fds, "a file or socket was left open"
    assert _tasks(http) <= tasks, "a task was left behind"
    assert http.service.describe()["active"] == 0


RAW_CLIENT = """
import socket, sys, time
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, port))
if mode == "partial":
    s.sendall(b"GET /boot.ipxe HTTP/1.1\\r\\nHost: x\\r\\n")
elif mode == "stall":
    s.sendall(b"GET /files/tiny/initrd HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    time.sleep(float(sys.argv[4]))  # never read: the server's buffers fill and it must give up
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
start = time.monotonic()
s.settimeout(20)
try:
    while s.recv(1 << 16):
        pass
except OSError:
    pass
print(round(time.monotonic() - start, 2))
"""


@pytest.mark.parametrize("mode", ["idle", "partial"])
def test_idle_and_slow_header_connections_time_out(http: HttpLab, mode: str) -> None:
    done = http.client.run("python3", "-c", RAW_CLIENT, mode, http.lab.server_ip, str(PORT), timeout=30)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < IDLE_TIMEOUT + 3, done.stdout


def test_client_that_stops_reading_is_cut_off(http: HttpLab) -> None:
    done = http.client.run(
        "python3",
        "-c",
        RAW_CLIENT,
        "stall",
        http.lab.server_ip,
        str(PORT),
        str(STALL_TIMEOUT + 3),
        timeout=40,
    )
    assert done.returncode == 0, done.stderr
    event = http.wait_event("http.done", kind="initrd", timeout=10)
    assert event.fields["ok"] is False and event.fields["reason"] == "client stopped reading"
    assert http.service.describe()["stalled"] == 1 and http.service.describe()["active"] == 0


def test_port_in_use_is_a_usage_error_naming_the_fix(http: HttpLab) -> None:
    second = HttpService(http.context)
    with pytest.raises(UsageError, match=rf"port {PORT} .* --http-port"):
        http.loop.run(second.start())


def test_stop_mid_transfer_is_prompt_and_leaves_no_task(http: HttpLab) -> None:
    curl = subprocess.Popen(
        [
            *("ip", "netns", "exec", http.client.netns, "curl", "-sS", "--limit-rate", "10M"),
            *("-o", "/dev/null", f"{http.base}/files/tiny/initrd?mac={ASSIGNED}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        http.wait_event("http.progress", kind="initrd", timeout=10)
        started = time.monotonic()
        http.loop.run(http.service.stop())
        assert time.monotonic() - started < 5
        assert curl.wait(10) != 0  # the client saw the transfer cut, not a complete file
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait(10)
    done = http.wait_event("http.done", kind="initrd", timeout=5)
    assert done.fields["ok"] is False
    assert _tasks(http) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("pxetui-sendfile")]


def test_a_cached_file_is_served_only_once_verified(http: HttpLab) -> None:
    profiles = http.tmp / "extra-profiles"
    profiles.mkdir()
    (profiles / "fetched.yaml").write_text(
        "name: fetched\ntitle: Fetched OS\narch: [x86_64]\nkernel: {url: https://files.invalid/vmlinuz}\n"
    )
    http.session.profiles.update(load_profiles([profiles]))
    cached = http.session.config.cache_dir / "fetched" / "vmlinuz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"downloaded but never checked")
    assert http.get("/files/fetched/kernel")[0] == 404
    assert any("missing or unverified" in str(e.fields.get("reason")) for e in http.named("error"))
    write_marker(cached, sha256_file(cached), "https://files.invalid/vmlinuz")
    code, body = http.get("/files/fetched/kernel")
    assert (code, body) == (200, "downloaded but never checked")
    cached.write_bytes(b"changed after the check")
    assert http.get("/files/fetched/kernel")[0] == 404
