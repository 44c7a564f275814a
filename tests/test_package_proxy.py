"""The package proxy: real apt clients on the lab fetch through pxetui's squid.

An "internet" namespace serves a small real repository (tests/package_lab.py) behind the laptop
namespace's default route; DNS there maps the mirror names to it, so nothing reaches a real
mirror. Three client namespaces run `apt-get update` and `apt-get download` through the proxy,
one after the other and then twenty at once: all succeed, the upstream log shows each .deb
fetched exactly once, and the service's proxy.stats counts it; anything else is refused with 403.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from lab import Lab
from package_lab import PACKAGES, apt, apt_dir, build_repo, internet, proxy_cache, service_context, wait_for

from pxetui.boot.profiles import parse_profile
from pxetui.boot.unattended import InstallSettings
from pxetui.errors import UsageError
from pxetui.services.context import ServiceSettings
from pxetui.services.proxy.config import LogCounts, SquidPlaces, allowed_hosts, parse_line, squid_conf
from pxetui.services.proxy.server import ProxyService, RunAs, remove_stale_work_dirs
from pxetui.services.proxy.uplink import has_uplink

ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def route(iface: str, dest: str = "00000000", mask: str = "00000000", flags: str = "0003") -> str:
    return f"{iface}\t{dest}\t010200C0\t{flags}\t0\t0\t0\t{mask}\t0\t0\t0\n"


def test_uplink_is_a_default_route_through_another_interface() -> None:
    assert has_uplink("eth1", ROUTE_HEADER + route("wlan0"))
    # The only default route leaves through the lab interface: no way to the internet.
    assert not has_uplink("eth1", ROUTE_HEADER + route("eth1"))
    assert not has_uplink("eth1", ROUTE_HEADER + route("wlan0", dest="000012C6", mask="0000FEFF"))
    assert not has_uplink("eth1", ROUTE_HEADER + route("wlan0", flags="0002"))  # not up
    v6 = "00000000000000000000000000000000 00 " + "0" * 32 + " 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     wlan0\n"
    assert has_uplink("eth1", ROUTE_HEADER, v6)
    assert not has_uplink("eth1", "", "garbage\n")


def test_the_generated_config_is_closed_and_on_the_lab_address(tmp_path: Path) -> None:
    places = SquidPlaces(cache_dir=tmp_path / "c", cache_mb=2000, log_dir=tmp_path / "l", pid_file=tmp_path / "l" / "p")
    text = squid_conf(address="198.18.0.1", port=3142, places=places, hosts=["deb.debian.org", "mirror.example.org"])
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("http_port")] == ["http_port 198.18.0.1:3142"]
    for off in ("icp_port 0", "htcp_port 0", "snmp_port 0", "pinger_enable off", "via off", "forwarded_for delete"):
        assert off in lines
    assert "collapsed_forwarding on" in lines  # a room downloads each package once
    assert "acl pxetui_hosts dstdomain -n deb.debian.org mirror.example.org" in lines
    access = [line for line in lines if line.startswith("http_access")]
    assert access[0] == "http_access deny !pxetui_hosts" and access[-1] == "http_access deny all"
    assert access[-2] == "http_access allow pxetui_hosts"
    assert "http_access deny to_localhost" in access and "http_access deny CONNECT !pxetui_port_https" in access
    assert f"cache_dir ufs {tmp_path / 'c'} 2000 16 256" in lines
    # No host allowed: nothing is forwarded at all.
    closed = squid_conf(address="198.18.0.1", port=3142, places=places, hosts=[]).splitlines()
    assert [line for line in closed if line.startswith("http_access")] == ["http_access deny all"]


def test_index_files_are_revalidated_and_packages_kept() -> None:
    import re

    places = SquidPlaces(cache_dir=Path("/c"), cache_mb=2000, log_dir=Path("/l"), pid_file=Path("/l/p"))
    patterns = []
    for line in squid_conf(address="198.18.0.1", port=3142, places=places, hosts=["h"]).splitlines():
        if line.startswith("refresh_pattern"):
            words = [w for w in line.split() if w != "-i"]  # all of ours but "." are -i
            patterns.append((re.compile(words[1], re.I), int(words[2]), words[5:]))

    def rule(url: str) -> tuple[int, list[str]]:
        """(minimum minutes fresh, options) of the first pattern matching url, as squid picks it."""
        return next((m, o) for p, m, o in patterns if p.search(url))

    for url in ("http://h/debian/dists/bookworm/InRelease", "http://h/debian/dists/stable/Release",
                "http://h/debian/dists/stable/main/binary-amd64/Packages.xz",
                "http://h/debian/dists/stable/main/source/Sources.gz",
                "http://h/pub/rocky/9/BaseOS/x86_64/os/repodata/repomd.xml",
                "http://h/pub/rocky/9/BaseOS/x86_64/os/.treeinfo", "http://h/some/other/file"):  # fmt: skip
        assert rule(url) == (0, ["refresh-ims"]), url
    for url in ("http://h/debian/pool/main/a/a_1.0_all.deb", "http://h/debian/pool/main/d/d_1_amd64.udeb",
                "http://h/pub/9/BaseOS/x86_64/os/Packages/b/bash-5.1-6.el9.x86_64.rpm",
                "http://h/debian/dists/stable/main/binary-amd64/by-hash/SHA256/0a1b2c"):  # fmt: skip
        assert rule(url)[0] >= 60 * 24 * 30, url


def test_log_lines_are_counted_and_refusals_told_apart() -> None:
    stats = LogCounts()
    # Real lines of squid 5.7 in pxetui's log format (a miss, a hit, a joined download, refusals).
    lines = [
        "1796182060.123 198.18.0.10 TCP_MISS/200 1745 1515 GET http://deb.debian.org/debian/dists/stable/Release",
        "1796182061.001 198.18.0.10 TCP_REFRESH_UNMODIFIED/200 1744 0 GET http://deb.debian.org/debian/dists/stable/Release",
        "1796182061.200 198.18.0.11 TCP_HIT/200 301380 - GET http://deb.debian.org/debian/pool/main/a.deb",
        "1796182061.300 198.18.0.12 TCP_CF_MISS/200 301380 - GET http://deb.debian.org/debian/pool/main/a.deb",
        "1796182061.310 198.18.0.13 TCP_MISS/200 301380 - GET http://deb.debian.org/debian/pool/main/a.deb",
        "1796182061.320 198.18.0.13 TCP_MISS/503 4100 - GET http://deb.debian.org/debian/pool/main/b.deb",
        "1796182061.400 198.18.0.11 TCP_DENIED/403 3810 - GET http://198.19.1.2/debian/pool/main/a.deb",
        "1796182061.500 198.18.0.11 TCP_DENIED/403 3800 - CONNECT office.example:443",
    ]  # fmt: skip
    results = [stats.add_line(line) for line in lines]
    assert results == [None] * 6 + ["GET http://198.19.1.2/debian/pool/main/a.deb", "CONNECT office.example:443"]
    assert stats.add_line("1796182062.000 198.18.0.1 NONE_NONE/000 0 - - error:transaction-end-before-headers") is None
    assert stats.add_line("not a line") is None and stats.add_line("1.0 a TCP_MISS/200 many 0 GET http://x/") is None
    assert (stats.upstream_bytes, stats.refused, stats.hits) == (1515, 2, 4)
    assert stats.served_bytes == 1745 + 1744 + 3 * 301380 + 4100
    # squid's marks, not served minus upstream: a hit, or a miss that read another's download.
    assert stats.cache_served_bytes == 1744 + 3 * 301380
    assert stats.per_client == {
        "198.18.0.10": 1745 + 1744, "198.18.0.11": 301380, "198.18.0.12": 301380, "198.18.0.13": 301380 + 4100
    }  # fmt: skip
    entry = parse_line("1.0 198.18.0.10 TCP_MISS/200 10 5 GET http://h/a b")  # a space in the URL
    assert entry is not None and entry.url == "http://h/a b" and entry.received == 5


def test_a_cache_squid_cannot_reach_or_another_session_holds_is_said(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    user = RunAs("nobody", nobody.pw_uid, nobody.pw_gid)
    closed = tmp_path / "closed"
    (closed / "cache").mkdir(parents=True)
    closed.chmod(0o700)
    assert user.cannot_reach(closed / "cache" / "proxy") in (closed, *closed.parents)
    service = ProxyService(service_context(ServiceSettings(cache_dir=closed / "cache")))
    why = service._claim_cache(user)
    assert "squid runs as user nobody, who may not enter" in why and "--cache" in why, why
    with proxy_cache() as opened:
        assert user.cannot_reach(opened / "proxy") is None
        first = ProxyService(service_context(ServiceSettings(cache_dir=opened)))
        second = ProxyService(service_context(ServiceSettings(cache_dir=opened)))
        assert first._claim_cache(user) == ""
        # One squid per cache directory: a second session is told, not let in to corrupt it.
        assert second._claim_cache(user) == f"its cache {opened}/proxy/squid is in use by another pxetui (pid {os.getpid()})"
        first._release_cache()
        assert second._claim_cache(user) == ""
        second._release_cache()


def test_allowed_hosts_are_the_profiles_package_hosts_plus_the_operators() -> None:
    def prof(name: str, template: str, cmdline: str = "") -> Any:
        data = {"name": name, "title": "T", "kernel": {"path": "k"}, "template": template, "cmdline": cmdline}
        return parse_profile(Path(f"/p/{name}.yaml"), data)

    profiles = [
        prof("deb", "preseed"),
        prof("ks", "kickstart", "ip=dhcp inst.repo=https://dl.rockylinux.example/pub/9/ inst.ks=x"),
        parse_profile(Path("/p/m.yaml"), {"name": "m", "title": "T", "kernel": {"path": "k"}}),
    ]
    hosts = allowed_hosts(profiles, InstallSettings(mirror_host="ftp.de.debian.org"), ["mirror.lab.example"])
    assert hosts == ("dl.rockylinux.example", "ftp.de.debian.org", "mirror.lab.example", "security.debian.org")


def test_a_killed_sessions_directory_is_removed_at_the_next_start(tmp_path: Path) -> None:
    dead = tmp_path / "pxetui-proxy-dead"
    dead.mkdir()
    (dead / "owner").write_text("999999999\n")  # above pid_max: no such process
    alive = tmp_path / "pxetui-proxy-alive"
    alive.mkdir()
    (alive / "owner").write_text("1\n")
    unknown = tmp_path / "pxetui-proxy-unknown"
    unknown.mkdir()
    assert remove_stale_work_dirs(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and unknown.exists()


def test_settings_are_checked_when_built() -> None:
    with pytest.raises(UsageError, match="--package-proxy must be one of"):
        ServiceSettings(package_proxy="maybe")
    with pytest.raises(UsageError, match="--allow-upstream 'http://x.example/'"):
        ServiceSettings(allow_upstream=("http://x.example/",))
    with pytest.raises(UsageError, match="cannot be a router or DNS"):
        ServiceSettings(dns=(ipaddress.IPv4Address("224.0.0.1"),))
    with pytest.raises(UsageError, match="--router 198.18.8.1 is not a host address of the served subnet"):
        service_context(ServiceSettings(router=ipaddress.IPv4Address("198.18.8.1")))
    with pytest.raises(UsageError, match="this machine's own address"):
        service_context(ServiceSettings(router=ipaddress.IPv4Address("198.18.7.1")))
    assert service_context(ServiceSettings(router=ipaddress.IPv4Address("198.18.7.254"))).settings.router


# -- with real clients --------------------------------------------------------------------------


def proxy_facts(proc: Any) -> dict[str, Any]:
    ready = proc.wait_event("service.ready", timeout=40)
    return dict(ready["services"]["proxy"])


@pytest.fixture
def cache() -> Iterator[Path]:
    with proxy_cache() as made:
        yield made


def test_a_room_downloads_each_package_once_and_nothing_else(
    lab: Lab, run_pxetui: Any, tmp_path: Path, cache: Path
) -> None:
    need_tools("squid", "nginx", "dnsmasq", "dpkg-scanpackages", "apt-ftparchive", "apt-get")
    before = set(Path(tempfile.gettempdir()).glob("pxetui-proxy-*"))
    with internet(lab, tmp_path / "internet") as net:
        pools = build_repo(net.work / "www")
        addresses = [str(lab.subnet.network_address + 10 + n) for n in range(3)]
        clients = [lab.add_client(address=f"{a}/24") for a in addresses]
        proc = run_pxetui(
            "--mode", "full", "--package-proxy", "on", "--cache", str(cache),
            "--allow-upstream", "mirror.lab.example",
        )  # fmt: skip
        facts = proxy_facts(proc)
        assert facts["state"] == "running", facts
        assert facts["uplink"] is True
        proxy = facts["url"]
        assert proxy == f"http://{lab.server_ip}:3142"
        assert "deb.debian.org" in facts["upstream"] and "mirror.lab.example" in facts["upstream"]
        for n, client in enumerate(clients):
            root = apt_dir(tmp_path / f"apt{n}", "http://deb.debian.org/debian", proxy)
            done = apt(client, root, "update")
            assert done.returncode == 0 and "Err:" not in done.stdout, done.stdout + done.stderr
            done = apt(client, root, "download", *PACKAGES)
            assert done.returncode == 0, done.stdout + done.stderr
            assert sorted(p.name for p in (root / "out").iterdir()) == sorted(Path(p).name for p in pools)
        # Once for the room: each .deb went upstream exactly once, whole.
        for pool in pools:
            size = (net.work / "www" / pool.lstrip("/")).stat().st_size
            assert net.transfers(pool) == [(200, size)], (pool, net.transfers(pool))
        one_copy = sum((net.work / "www" / p.lstrip("/")).stat().st_size for p in pools)
        # Index files went upstream for every PC: revalidated (304 when unchanged), never kept.
        release = net.transfers("/dists/stable/Release ")  # the request line: path, space, HTTP/1.1
        assert len(release) >= len(clients) and {status for status, _ in release} <= {200, 304}, release
        # The service counted it (proxy.stats, what the TUI header and details show): each
        # client got every package, the upstream sent them once, the rest came from the cache.

        def counted(e: dict[str, Any]) -> bool:
            got = e.get("clients") or {}
            return (
                e.get("event") == "proxy.stats" and all(got.get(a, 0) >= one_copy for a in addresses)
                and e["cache_bytes"] >= one_copy and e.get("upstream_ok") is True
            )  # fmt: skip

        stats = wait_for(proc, counted, "proxy.stats counting the three clients' packages", timeout=30)
        assert stats["url"] == proxy and stats["uplink"] is True and "warning" not in stats
        assert stats["served_bytes"] >= 3 * one_copy
        body = sum(n for _, n in net.transfers(""))  # nginx logs body bytes, as squid's %<bs counts
        assert stats["upstream_bytes"] == body, (stats, net.transfers(""))
        # Served from the cache, by squid's own marks: the second and third PCs' packages.
        assert 2 * one_copy <= stats["from_cache"] <= stats["served_bytes"] - one_copy, stats
        upstream_before = len(net.transfers(""))
        # Not an open door: another host (here the repository by address), and https elsewhere.
        for url in (f"http://{net.address}{pools[0]}", "http://office.example/debian/dists/stable/Release",
                    f"http://deb.debian.org:8080{pools[0]}", f"http://127.0.0.1:3142{pools[0]}"):  # fmt: skip
            code = client_curl(clients[0], proxy, url)
            assert code == "403", url
        assert client_curl(clients[0], proxy, "https://office.example/") == "403"
        assert len(net.transfers("")) == upstream_before  # the refused ones never left the laptop
        refused = wait_error(proc, "package proxy refused")
        assert refused["count"] >= 1 and "--allow-upstream" in refused["reason"]
        later = wait_for(proc, lambda e: e.get("event") == "proxy.stats" and e["refused"] >= 5, "5 refusals")
        assert later["refused"] == 5, later
        stored = [f for f in (cache / "proxy" / "squid").rglob("*") if f.is_file()]
        assert any(b"pxt-alpha_1.0_all.deb" in f.read_bytes()[:4096] for f in stored)  # squid's object header
        assert proc.stop() == 0
    # Stopped with the rest: no squid left in the namespace, no private directory left.
    assert not {"squid", "unlinkd"} & set(namespace_commands(lab))
    assert not ours(set(Path(tempfile.gettempdir()).glob("pxetui-proxy-*")) - before, str(cache))


def test_twenty_pcs_at_once_download_each_package_once_and_the_cache_outlives_the_session(
    lab: Lab, run_pxetui: Any, tmp_path: Path, cache: Path
) -> None:
    # apt-cacher-ng 3.7.4 sent 1.07-1.44 copies upstream here (10 of 10 runs, CPU loaded): each
    # client connection had its own downloader. squid's collapsed_forwarding joins them.
    need_tools("squid", "nginx", "dnsmasq", "dpkg-scanpackages", "apt-ftparchive", "apt-get")
    count = 20
    with internet(lab, tmp_path / "internet") as net:
        pools = build_repo(net.work / "www", size=8_000_000)
        clients = [lab.add_client(address=f"{lab.subnet.network_address + 10 + n}/24") for n in range(count)]
        proc = run_pxetui("--mode", "full", "--package-proxy", "on", "--cache", str(cache))
        proxy = proxy_facts(proc)["url"]
        roots = [apt_dir(tmp_path / f"apt{n}", "http://deb.debian.org/debian", proxy) for n in range(count)]
        for client, root in zip(clients, roots, strict=True):
            done = apt(client, root, "update")
            assert done.returncode == 0 and "Err:" not in done.stdout, done.stdout + done.stderr

        def download(pair: tuple[Any, Path]) -> subprocess.CompletedProcess[str]:
            return apt(pair[0], pair[1], "download", *PACKAGES, timeout=300)

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            results = list(pool.map(download, zip(clients, roots, strict=True)))
        for done in results:
            assert done.returncode == 0, done.stdout + done.stderr
        sizes = {p: (net.work / "www" / p.lstrip("/")).stat().st_size for p in pools}
        for pool_path, size in sizes.items():
            assert net.transfers(pool_path) == [(200, size)], (pool_path, net.transfers(pool_path))
        # Counted from squid's log: one copy from upstream, nineteen from the cache (joined).
        one_copy = sum(sizes.values())

        def all_served(e: dict[str, Any]) -> bool:
            got = e.get("clients") or {}
            return e.get("event") == "proxy.stats" and len(got) == count and min(got.values()) >= one_copy

        stats = wait_for(proc, all_served, "proxy.stats counting twenty clients' packages", timeout=30)
        assert stats["upstream_bytes"] == sum(n for _, n in net.transfers("")), stats
        assert stats["from_cache"] >= (count - 1) * one_copy, stats
        assert proc.stop() == 0
        # The next session on the same cache: the packages come from it, not upstream.
        proc = run_pxetui("--mode", "full", "--package-proxy", "on", "--cache", str(cache))
        proxy = proxy_facts(proc)["url"]
        root = apt_dir(tmp_path / "again", "http://deb.debian.org/debian", proxy)
        assert apt(clients[0], root, "update").returncode == 0
        done = apt(clients[0], root, "download", *PACKAGES)
        assert done.returncode == 0, done.stdout + done.stderr
        for pool_path, size in sizes.items():
            assert net.transfers(pool_path) == [(200, size)], (pool_path, net.transfers(pool_path))
        assert proc.stop() == 0


def ours(directories: set[Path], cache: str) -> list[Path]:
    """The proxy directories of this test's pxetui (other engineers' tests run meanwhile)."""
    found = []
    for directory in directories:
        try:
            if cache in (directory / "squid.conf").read_text():
                found.append(directory)
        except OSError:
            continue
    return found


def namespace_processes(lab: Lab) -> list[tuple[int, str]]:
    """(pid, command) of every process in the lab's server namespace (ps would show the host's)."""
    found = []
    for pid in subprocess.run(["ip", "netns", "pids", lab.server_ns], capture_output=True, text=True).stdout.split():
        try:
            found.append((int(pid), Path(f"/proc/{pid}/comm").read_text().strip()))
        except OSError:
            continue
    return found


def namespace_commands(lab: Lab) -> list[str]:
    return [comm for _, comm in namespace_processes(lab)]


def wait_error(proc: Any, text: str, timeout: float = 10) -> dict[str, Any]:
    """The first `error` event whose reason contains `text` (waiting for it up to `timeout`)."""
    return wait_for(proc, lambda e: e.get("event") == "error" and text in str(e.get("reason")), text, timeout)


def client_curl(client: Any, proxy: str, url: str) -> str:
    """The proxy's status for `url` (for https: its answer to the CONNECT)."""
    code = "%{http_connect}" if url.startswith("https:") else "%{http_code}"
    done = client.run("curl", "-s", "-o", "/dev/null", "-w", code, "-x", proxy, "--max-time", "10", url)
    out: str = done.stdout.strip()
    return out.split()[-1] if out else ""


def test_a_crash_of_the_child_is_an_error_event(lab: Lab, run_pxetui: Any, cache: Path) -> None:
    need_tools("squid")
    proc = run_pxetui("--mode", "full", "--package-proxy", "on", "--cache", str(cache))
    facts = proxy_facts(proc)
    assert facts["state"] == "running"
    assert facts["uplink"] is False and "no route to the internet" in facts["warning"]
    pids = [pid for pid, comm in namespace_processes(lab) if comm == "squid"]
    assert len(pids) == 1
    assert Path(f"/proc/{pids[0]}").stat().st_uid == pwd.getpwnam("proxy").pw_uid  # never root
    os.kill(pids[0], 9)
    event = wait_error(proc, "squid exited")
    assert "restart pxetui" in event["reason"]
    assert proc.stop() == 0


def test_a_killed_pxetui_leaves_no_proxy_open(lab: Lab, run_pxetui: Any, cache: Path) -> None:
    need_tools("squid")
    proc = run_pxetui("--mode", "full", "--package-proxy", "on", "--cache", str(cache))
    assert proxy_facts(proc)["state"] == "running"
    assert "squid" in namespace_commands(lab)
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while {"squid", "unlinkd"} & set(namespace_commands(lab)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {"squid", "unlinkd"} & set(namespace_commands(lab))


def test_a_taken_port_is_said_at_start(lab: Lab, run_pxetui: Any, cache: Path) -> None:
    need_tools("squid")
    holder = lab.popen(lab.server_ns, sys.executable, "-c", HOLD_PORT.format(address=lab.server_ip, port=3142),
                       stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "listening"
        proc = run_pxetui("--mode", "full", "--package-proxy", "on", "--cache", str(cache))
        fatal = wait_for(proc, lambda e: e.get("event") == "error" and "package proxy" in str(e.get("reason")),
                         "the proxy's start error", timeout=40)  # fmt: skip
        assert f"cannot listen on {lab.server_ip}:3142" in fatal["reason"], fatal
        proc.proc.wait(20)
        assert "squid" not in namespace_commands(lab)
    finally:
        holder.kill()
        holder.wait()


HOLD_PORT = """import socket, time
s = socket.socket(); s.bind(("{address}", {port})); s.listen(); print("listening", flush=True); time.sleep(60)
"""


def test_auto_is_off_in_proxy_mode_and_the_answer_files_say_nothing(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    proc = run_pxetui("--mode", "proxy", "--cache", str(tmp_path / "cache"))
    facts = proxy_facts(proc)
    assert facts["state"] == "off" and "proxy mode" in facts["reason"]
    assert "squid" not in namespace_commands(lab)
    assert proc.stop() == 0


def test_the_debian_installers_network_questions_are_answered_on_its_kernel_command_line() -> None:
    # d-i asks them before it has its preseed (seen in QEMU: tests/e2e/test_debian_installer.py).
    from pxetui.boot.unattended import MachineContext, Renderer

    machine = MachineContext(mac="52:54:00:00:00:01", hostname="pc-01", token="t" * 32, profile="d",
                             base_url="http://198.18.0.1:8080")  # fmt: skip

    def line(template: str, cmdline: str) -> list[str]:
        data = {"name": "d", "title": "T", "kernel": {"path": "k"}, "template": template, "cmdline": cmdline}
        return Renderer().cmdline(parse_profile(Path("/p/d.yaml"), data), machine).split()

    words = line("preseed", "auto=true url={{ machine.url }}/preseed.cfg")
    assert words[:2] == ["auto=true", "url=http://198.18.0.1:8080/config/52-54-00-00-00-01/preseed.cfg"]
    assert words[2:] == ["netcfg/no_default_route=true", "netcfg/get_nameservers="]
    # A profile's own answer stays the only one; other installers get none.
    own = line("preseed", "auto=true netcfg/get_nameservers=198.18.0.53")
    assert [w for w in own if w.startswith("netcfg/get_nameservers")] == ["netcfg/get_nameservers=198.18.0.53"]
    assert not [w for w in line("kickstart", "inst.ks=x") if w.startswith("netcfg/")]
