"""A profile's local mirror (`mirror: {path: DIR}`, issue 14): a Debian mirror copied onto a USB
disk, served by pxetui's own HTTP service, so installs work with no uplink at all.

The schema is checked at load; the answer files point the installer at pxetui instead of the
upstream mirror and the proxy; a real apt-get in a lab namespace installs from the served copy
(built by tests/package_lab.py with dpkg-scanpackages and apt-ftparchive) while the laptop
namespace has no route out; and curl cannot get out of the directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import need_tools
from lab import Lab
from package_lab import PACKAGES, apt, apt_dir, build_repo

from pxetui.boot.profiles import ProfileError, load_profile, parse_profile
from pxetui.boot.unattended import InstallSettings, MachineContext, Renderer
from pxetui.services.proxy.config import allowed_hosts

BASE = "http://198.18.0.1:8080"
MACHINE = MachineContext(mac="52:54:00:00:00:01", hostname="lab-01", token="a" * 32, profile="usb", base_url=BASE)


def mirror_dir(root: Path) -> Path:
    (root / "dists").mkdir(parents=True, exist_ok=True)
    (root / "pool").mkdir(exist_ok=True)
    return root


def usb_profile(source: Path, template: str = "preseed", mirror: Any = None, **extra: Any) -> Any:
    doc = {"name": "usb", "title": "Debian from the USB disk", "kernel": {"path": "k"}, "template": template}
    doc["mirror"] = {"path": str(mirror_dir(source.parent / "usb" / "debian"))} if mirror is None else mirror
    return parse_profile(source, {**doc, **extra})


def test_the_mirror_key_is_checked_at_load(tmp_path: Path) -> None:
    source = tmp_path / "usb.yaml"
    profile = usb_profile(source)
    assert profile.mirror == (tmp_path / "usb" / "debian").resolve()
    # Relative to the profile's file, like its files' paths.
    assert usb_profile(source, mirror={"path": "usb/debian"}).mirror == profile.mirror
    cases = [
        ({"path": str(tmp_path / "gone")}, "no such directory (is the disk mounted?)"),
        ({"path": str(tmp_path)}, "has no dists/: name the directory that holds dists/ and pool/"),
        ({"path": str(profile.mirror), "url": "http://x"}, "unknown key 'mirror.url' (known: path)"),
        ("/media/usb", "'mirror' must be a mapping"),
        ({"path": ""}, "'mirror.path' must be the directory of a local mirror"),
    ]
    for value, message in cases:
        with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            usb_profile(source, mirror=value)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "bad", "title": "T", "kernel": {"path": "k"},
                                                       "mirror": {"path": "nowhere"}}))  # fmt: skip
    with pytest.raises(ProfileError, match=f"{tmp_path / 'bad.yaml'}: 'mirror.path' {tmp_path / 'nowhere'}"):
        load_profile(tmp_path / "bad.yaml")


def test_answer_files_name_the_local_mirror_and_no_proxy(tmp_path: Path) -> None:
    renderer = Renderer(settings=InstallSettings(), proxy=lambda: "http://198.18.0.1:3142")
    preseed = renderer.render(usb_profile(tmp_path / "usb.yaml"), "preseed.cfg", MACHINE)
    assert preseed is not None
    lines = preseed.splitlines()
    assert "d-i mirror/http/hostname string 198.18.0.1:8080" in lines
    assert "d-i mirror/http/directory string /mirror/usb" in lines
    assert "d-i mirror/http/proxy string" in lines  # the proxy runs, but not for this profile
    assert "d-i apt-setup/services-select multiselect" in lines  # no security suite offline
    assert "3142" not in preseed and "deb.debian.org" not in preseed
    user_data = renderer.render(usb_profile(tmp_path / "usb.yaml", "autoinstall"), "user-data", MACHINE)
    assert user_data is not None
    auto = yaml.safe_load(user_data)["autoinstall"]
    assert auto["apt"]["primary"] == [{"arches": ["default"], "uri": f"{BASE}/mirror/usb"}] and "proxy" not in auto
    ks_profile = usb_profile(tmp_path / "usb.yaml", "kickstart", cmdline="inst.repo=http://dl.example/9/")
    ks = renderer.render(ks_profile, "ks.cfg", MACHINE)
    assert ks is not None and f"url --url={BASE}/mirror/usb\n" in ks and "--proxy" not in ks
    assert "inst.proxy" not in renderer.cmdline(ks_profile, MACHINE)
    # A profile without a mirror still goes through the proxy; the mirror's hosts are not forwarded.
    plain = parse_profile(tmp_path / "d.yaml", {"name": "d", "title": "T", "kernel": {"path": "k"}, "template": "preseed"})
    assert "d-i mirror/http/proxy string http://198.18.0.1:3142" in (renderer.render(plain, "preseed.cfg", MACHINE) or "")
    assert allowed_hosts([usb_profile(tmp_path / "usb.yaml")], InstallSettings(), []) == ()


# -- with real clients --------------------------------------------------------------------------


def curl_status(client: Any, url: str) -> str:
    done = client.run("curl", "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url)
    return str(done.stdout.strip())


def test_apt_installs_from_the_served_mirror_and_nothing_else_is_reachable(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    need_tools("dpkg-scanpackages", "apt-ftparchive", "apt-get", "curl")
    usb = tmp_path / "usb"
    pools = build_repo(usb)  # usb/debian/{dists,pool}
    (usb / "secret.txt").write_text("not in the mirror\n")
    os.symlink("../../../secret.txt", usb / "debian" / "pool" / "main" / "leak.deb")
    os.symlink("/etc/passwd", usb / "debian" / "dists" / "passwd")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "usb.yaml").write_text(yaml.safe_dump({
        "name": "debian-usb", "title": "Debian from the USB disk", "kernel": {"path": "k"}, "initrd": {"path": "i"},
        "template": "preseed", "mirror": {"path": str(usb / "debian")},
    }))  # fmt: skip
    proc = run_pxetui(
        "--mode", "full", "--package-proxy", "off", "--profiles", str(profiles), "--cache", str(tmp_path / "cache")
    )  # fmt: skip
    ready = proc.wait_event("service.ready", timeout=40)
    base = f"http://{lab.server_ip}:{ready['http_port']}"
    mirror = f"{base}/mirror/debian-usb"
    client = lab.add_client(address=f"{lab.subnet.network_address + 20}/24")
    root = apt_dir(tmp_path / "apt", mirror, None)
    done = apt(client, root, "update")
    assert done.returncode == 0 and "Err:" not in done.stdout, done.stdout + done.stderr
    done = apt(client, root, "download", *PACKAGES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (root / "out").iterdir()) == sorted(Path(p).name for p in pools)
    for pool in pools:
        got = (root / "out" / Path(pool).name).read_bytes()
        assert got == (usb / pool.lstrip("/")).read_bytes()
    proc.wait_event("http.request", kind="mirror", file=Path(pools[-1]).name)  # takes the events so far
    served = [e for e in proc.events if e.get("event") == "http.request" and e.get("kind") == "mirror"]
    assert {e["file"] for e in served} >= {Path(p).name for p in pools} | {"Release"}
    # Read-only and no way out of the directory, whatever the path says.
    assert curl_status(client, f"{mirror}/dists/stable/Release") == "200"
    for path in (
        "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/dists/%2e%2e/%2e%2e/secret.txt",
        "/dists/../../secret.txt", "/..%2fsecret.txt", "/pool/main/leak.deb", "/dists/passwd",
        "/", "/dists/", "/dists", "//etc/passwd", "/dists/stable/Release%00.txt", "/./dists/stable/Release",
    ):  # fmt: skip
        assert curl_status(client, mirror + path) == "404", path
    assert curl_status(client, f"{base}/mirror/nobody/dists/stable/Release") == "404"
    post = client.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--data", "x",
                      f"{mirror}/dists/stable/Release")  # fmt: skip
    assert post.stdout.strip() == "405"
    assert proc.stop() == 0
