"""The real Debian installer (debian-installer-12-netboot-amd64) in QEMU on an isolated lab
switch (issue 14): assigned by plan, it gets its per-machine preseed from pxetui, passes the
network step without the "no default route" question (pxetui hands out no router in full
mode) and reaches the mirror step, either through pxetui's package proxy or, for a profile
with a local mirror (`mirror: {path: DIR}`), from pxetui's own /mirror/NAME/ with no proxy and
no route out of the laptop at all.

The mirror host the preseed names (deb.debian.org) is the test's own "internet" namespace
(tests/package_lab.py: nginx with a small repository, DNS there answering for the mirror
names), reached only by pxetui's squid in the laptop namespace; the installer itself has no
route anywhere but the lab switch. Proof that it got to the mirror step: the suite's Release
file asked for in nginx's access log (through the proxy) or in pxetui's own http.request
events (local mirror). Nothing reaches a real mirror. It gives up after
GIVE_UP seconds; run it under `flock /tmp/work/vm.lock` like every VM test.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import need_tools
from lab import Lab
from package_lab import build_repo, internet, proxy_cache, wait_for

from pxetui.lab.qemu import Vm, VmSpec

pytestmark = [pytest.mark.lab, pytest.mark.e2e]

GIVE_UP = 240.0  # seconds from power-on: ~30 s to the kernel under TCG, the rest is d-i
INSTALLER = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/linux")
PROFILES = Path(__file__).resolve().parents[2] / "profiles"
NO_ROUTE_QUESTION = "without a default route"


_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[()][0-9A-Za-z])")


def readable(serial: str) -> str:
    """The installer's serial console without its terminal escapes and box drawing, for a report."""
    text = _ESCAPES.sub(" ", serial)
    return re.sub(r"[ \t]{2,}", " ", re.sub(r"\s*\n\s*", "\n", text))


def release_requests(net: Any) -> list[str]:
    return [p for p in net.requests("/dists/") if p.endswith("/Release") or p.endswith("/InRelease")]


def test_the_debian_installer_reaches_the_mirror_through_the_proxy(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_tools(
        "qemu-system-x86_64", "squid", "nginx", "dnsmasq", "dpkg-scanpackages", "apt-ftparchive"
    )
    if not INSTALLER.is_file():
        pytest.skip("debian-installer-12-netboot-amd64 is not installed")
    mac = "52:54:00:e2:14:01"
    with internet(lab, tmp_path / "internet") as net, proxy_cache() as cache:
        build_repo(net.work / "www", size=10_000, packages=("pxt-alpha",))
        dists = net.work / "www" / "debian" / "dists"
        os.symlink("stable", dists / "bookworm")  # the installer asks for its codename's suite
        plan = tmp_path / "plan.csv"
        plan.write_text(f"mac,profile,hostname\n{mac},debian-12-local,pc-di\n")
        pxetui = run_pxetui(
            "--mode", "full", "--package-proxy", "on", "--plan", str(plan), "--cache", str(cache)
        )  # fmt: skip
        ready = pxetui.wait_event("service.ready", timeout=40)
        proxy = ready["services"]["proxy"]
        assert proxy["state"] == "running" and "deb.debian.org" in proxy["upstream"], proxy
        vm = Vm(VmSpec(name="di", mac=mac, tap=lab.add_tap("tap0"), firmware="bios"), lab.server_ns, tmp_path)
        vm.start()
        try:
            deadline = time.monotonic() + GIVE_UP
            while not release_requests(net) and time.monotonic() < deadline and vm.running():
                assert NO_ROUTE_QUESTION not in vm.serial(), readable(vm.serial())[-3000:]
                time.sleep(2)
            serial = vm.serial()
        finally:
            vm.stop()
        asked = release_requests(net)
        assert asked, (
            f"no Release request upstream within {GIVE_UP:.0f} s; serial:\n{readable(serial)[-4000:]}"
        )
        assert any("/debian/dists/" in p for p in asked), asked
        # Through the proxy: nginx saw the laptop's uplink address, never the PC's.
        fetchers = {line.split()[0] for line in net.access_log.read_text().splitlines() if "Release" in line}
        assert fetchers == {f"198.19.{net.net}.1"}, fetchers
        assert NO_ROUTE_QUESTION not in serial
        pxetui.wait_event("http.request", mac=mac, kind="config", timeout=5)  # its own preseed
        lease = pxetui.wait_event("dhcp.ack", mac=mac, timeout=5)
        # The proxy counted what this PC fetched, under the address pxetui leased it.
        wait_for(
            pxetui, lambda e: e.get("event") == "proxy.stats" and (e.get("clients") or {}).get(lease["ip"], 0) > 0,
            f"proxy.stats crediting {lease['ip']}", timeout=10,
        )  # fmt: skip
        assert pxetui.stop() == 0


def mirror_requests(pxetui: Any) -> list[dict[str, Any]]:
    """The Release/InRelease files pxetui's HTTP service served from a local mirror."""
    return [
        e for e in pxetui.events
        if e.get("event") == "http.request" and e.get("kind") == "mirror" and e.get("file") in ("Release", "InRelease")
    ]  # fmt: skip


def suite_requests(pxetui: Any, suite: str = "bookworm") -> list[dict[str, Any]]:
    # d-i's choose-mirror asks for dists/stable/ first, then for its own codename's suite.
    return [e for e in mirror_requests(pxetui) if f"/dists/{suite}/" in e["path"]]


def test_the_debian_installer_reaches_a_local_mirror_with_no_way_out(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_tools("qemu-system-x86_64", "dpkg-scanpackages", "apt-ftparchive")
    if not INSTALLER.is_file():
        pytest.skip("debian-installer-12-netboot-amd64 is not installed")
    mac = "52:54:00:e2:14:02"
    usb = tmp_path / "usb"
    build_repo(usb, size=10_000, packages=("pxt-alpha",))  # usb/debian/{dists,pool}
    os.symlink("stable", usb / "debian" / "dists" / "bookworm")  # the suite d-i asks for
    # debian-12-local as shipped, plus the mirror copied onto the "USB disk".
    profile = yaml.safe_load((PROFILES / "debian-12-local.yaml").read_text())
    profile.update(name="debian-12-usb", mirror={"path": str(usb / "debian")})
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "debian-12-usb.yaml").write_text(yaml.safe_dump(profile))
    plan = tmp_path / "plan.csv"
    plan.write_text(f"mac,profile,hostname\n{mac},debian-12-usb,pc-usb\n")
    # No internet namespace: the laptop namespace has no default route (nothing to leave by).
    routes = lab.exec(lab.server_ns, "ip", "route", "show", "default").stdout
    assert not routes.strip(), routes
    pxetui = run_pxetui(
        "--mode", "full", "--package-proxy", "off", "--profiles", str(profiles), "--plan", str(plan),
        "--cache", str(tmp_path / "cache"),
    )  # fmt: skip
    ready = pxetui.wait_event("service.ready", timeout=40)
    assert ready["services"]["proxy"]["uplink"] is False, ready["services"]["proxy"]
    vm = Vm(VmSpec(name="usb", mac=mac, tap=lab.add_tap("tap0"), firmware="bios"), lab.server_ns, tmp_path)
    vm.start()
    try:
        deadline = time.monotonic() + GIVE_UP
        while not suite_requests(pxetui) and time.monotonic() < deadline and vm.running():
            assert NO_ROUTE_QUESTION not in vm.serial(), readable(vm.serial())[-3000:]
            with contextlib.suppress(AssertionError):
                pxetui.wait_event("<nothing>", timeout=2)  # takes the events that came meanwhile
        serial = vm.serial()
    finally:
        vm.stop()
    asked = mirror_requests(pxetui)
    assert suite_requests(pxetui), (
        f"no bookworm Release request on /mirror/ within {GIVE_UP:.0f} s (got {[e['path'] for e in asked]});"
        f" serial:\n{readable(serial)[-4000:]}"
    )
    assert all(e["path"].startswith("/mirror/debian-12-usb/dists/") for e in asked), asked
    lease = pxetui.wait_event("dhcp.ack", mac=mac, timeout=5)
    assert {e["client"] for e in asked} == {lease["ip"]}  # the PC itself, straight to pxetui
    assert NO_ROUTE_QUESTION not in serial
    config = pxetui.wait_event("http.request", mac=mac, kind="config", timeout=5)  # its own preseed
    assert config["file"] == "preseed.cfg", config
    assert pxetui.stop() == 0
