"""Installer answers per machine: each differs in hostname and token and parses as its format."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import need_tools

from pxetui.boot.profiles import parse_profile
from pxetui.boot.unattended import (
    InstallSettings,
    MachineContext,
    Renderer,
    default_ssh_keys,
    hash_password,
    numbered_hostname,
    read_ssh_keys,
)
from pxetui.errors import UsageError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5Zm9ycHh0dWl0ZXN0c29ubHkxMjM0NTY3 op@laptop"
BASE = "http://198.18.0.1:8080"


def profile(template: str, cmdline: str = "") -> object:
    return parse_profile(
        Path(f"/p/{template}.yaml"),
        {
            "name": f"os-{template}",
            "title": "T",
            "kernel": {"path": "k"},
            "template": template,
            "cmdline": cmdline,
        },
    )


def machines() -> list[MachineContext]:
    return [
        MachineContext(
            mac="52:54:00:00:00:01", hostname="lab-01", token="a" * 32, profile="p", base_url=BASE
        ),
        MachineContext(
            mac="52:54:00:00:00:02", hostname="lab-02", token="b" * 32, profile="p", base_url=BASE
        ),
    ]


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(settings=InstallSettings(ssh_keys=(KEY,), timezone="Europe/Berlin", locale="de_DE.UTF-8"))


def test_preseed_per_machine_is_valid_debconf(renderer: Renderer, tmp_path: Path) -> None:
    need_tools("debconf-set-selections")
    p = profile("preseed")
    texts = [renderer.render(p, "preseed.cfg", m) for m in machines()]  # type: ignore[arg-type]
    assert texts[0] is not None and texts[1] is not None
    for text, m in zip(texts, machines(), strict=True):
        assert f"d-i netcfg/get_hostname string {m.hostname}\n" in text
        assert m.done_url in text
        assert "d-i time/zone string Europe/Berlin" in text
        assert KEY in text
        path = tmp_path / f"{m.hostname}.cfg"
        path.write_text(text)
        check = subprocess.run(
            ["debconf-set-selections", "--checkonly", str(path)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        assert check.stderr == ""
    assert "b" * 32 not in texts[0] and "a" * 32 not in texts[1]


def test_a_broken_preseed_is_caught_by_the_checker(tmp_path: Path) -> None:
    need_tools("debconf-set-selections")
    bad = tmp_path / "bad.cfg"
    bad.write_text("d-i netcfg/get_hostname\n")
    check = subprocess.run(
        ["debconf-set-selections", "--checkonly", str(bad)], capture_output=True, text=True
    )
    assert check.returncode != 0 or check.stderr


def test_autoinstall_user_data_is_yaml_with_the_machine_in_it(renderer: Renderer) -> None:
    p = profile("autoinstall", "autoinstall ds=nocloud-net;s={{ machine.url }}/")
    docs = []
    for m in machines():
        text = renderer.render(p, "user-data", m)  # type: ignore[arg-type]
        assert text is not None and text.startswith("#cloud-config\n")
        doc = yaml.safe_load(text)["autoinstall"]
        assert doc["identity"]["hostname"] == m.hostname
        assert doc["ssh"]["authorized-keys"] == [KEY]
        assert m.done_url in doc["late-commands"][0]
        assert m.failed_url in doc["error-commands"][0]
        meta = yaml.safe_load(renderer.render(p, "meta-data", m) or "")  # type: ignore[arg-type]
        assert meta["local-hostname"] == m.hostname
        docs.append(doc)
    assert docs[0] != docs[1]
    assert (
        renderer.cmdline(p, machines()[0]) == f"autoinstall ds=nocloud-net;s={BASE}/config/52-54-00-00-00-01/"
    )  # type: ignore[arg-type]
    assert renderer.render(p, "preseed.cfg", machines()[0]) is None  # type: ignore[arg-type]


def test_kickstart_passes_ksvalidator(renderer: Renderer, tmp_path: Path) -> None:
    tools = need_tools("ksvalidator")
    p = profile("kickstart")
    for m in machines():
        text = renderer.render(p, "ks.cfg", m)  # type: ignore[arg-type]
        assert text is not None
        assert f"--hostname={m.hostname}" in text and m.done_url in text
        path = tmp_path / f"{m.hostname}.ks"
        path.write_text(text)
        check = subprocess.run([tools["ksvalidator"], str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    broken = tmp_path / "broken.ks"
    broken.write_text("network --bootproto=sometimes\n")
    assert subprocess.run([tools["ksvalidator"], str(broken)], capture_output=True).returncode != 0


def test_operator_templates_override_builtins(tmp_path: Path) -> None:
    (tmp_path / "preseed.cfg.j2").write_text("# mine for {{ machine.hostname }}\n")
    mine = Renderer(template_dirs=[tmp_path])
    assert mine.render(profile("preseed"), "preseed.cfg", machines()[0]) == "# mine for lab-01\n"  # type: ignore[arg-type]


def test_template_errors_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "preseed.cfg.j2").write_text("{{ machine.nickname }}\n")
    with pytest.raises(UsageError, match="preseed.cfg.j2.*nickname"):
        Renderer(template_dirs=[tmp_path]).render(profile("preseed"), "preseed.cfg", machines()[0])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no such directory"):
        Renderer(template_dirs=[tmp_path / "absent"])


def test_hostname_pattern_and_ssh_keys(tmp_path: Path) -> None:
    assert numbered_hostname("lab-{n:02}", 7) == "lab-07"
    with pytest.raises(UsageError, match="hostname pattern"):
        numbered_hostname("lab-{m}", 1)
    keys = tmp_path / "id.pub"
    keys.write_text(f"# mine\n{KEY}\n")
    assert read_ssh_keys(keys) == (KEY,)
    keys.write_text("not a key\n")
    with pytest.raises(UsageError, match="is not an SSH public key"):
        read_ssh_keys(keys)


PROXY = "http://198.18.0.1:3142"


def proxied(settings: InstallSettings | None = None) -> Renderer:
    return Renderer(settings=settings or InstallSettings(ssh_keys=(KEY,)), proxy=lambda: PROXY)


def test_preseed_goes_through_the_proxy_and_past_the_default_route_question(tmp_path: Path) -> None:
    need_tools("debconf-set-selections")
    m = machines()[0]
    text = proxied().render(profile("preseed"), "preseed.cfg", m)  # type: ignore[arg-type]
    assert text is not None
    assert f"d-i mirror/http/proxy string {PROXY}\n" in text
    assert "d-i netcfg/no_default_route boolean true\n" in text
    # The completion report goes to pxetui itself, never through the proxy (which refuses it).
    assert f"http_proxy= wget -q -O /dev/null '{m.done_url}'" in text
    path = tmp_path / "p.cfg"
    path.write_text(text)
    check = subprocess.run(["debconf-set-selections", "--checkonly", str(path)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    # Without a running proxy the answer names none.
    plain = Renderer().render(profile("preseed"), "preseed.cfg", m)  # type: ignore[arg-type]
    assert plain is not None and "d-i mirror/http/proxy string\n" in plain


def test_autoinstall_and_kickstart_name_the_proxy(tmp_path: Path) -> None:
    m = machines()[0]
    doc = yaml.safe_load(proxied().render(profile("autoinstall"), "user-data", m) or "")["autoinstall"]  # type: ignore[arg-type]
    assert doc["proxy"] == PROXY
    assert "--noproxy '*'" in doc["late-commands"][0]
    assert "proxy" not in yaml.safe_load(Renderer().render(profile("autoinstall"), "user-data", m) or "")["autoinstall"]  # type: ignore[arg-type]
    repo = "https://dl.rockylinux.example/pub/rocky/9/BaseOS/x86_64/os/"
    ks = profile("kickstart", f"ip=dhcp inst.repo={repo} inst.ks={{{{ machine.url }}}}/ks.cfg")
    text = proxied().render(ks, "ks.cfg", m)  # type: ignore[arg-type]
    assert text is not None and f"url --url={repo} --proxy={PROXY}\n" in text
    assert proxied().cmdline(ks, m).endswith(f" inst.proxy={PROXY}")  # type: ignore[arg-type]
    assert "inst.proxy" not in Renderer().cmdline(ks, m)  # type: ignore[arg-type]
    tools = need_tools("ksvalidator")
    path = tmp_path / "p.ks"
    path.write_text(text)
    check = subprocess.run([tools["ksvalidator"], str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_password_is_stored_only_as_a_sha512_crypt_hash() -> None:
    need_tools("openssl")
    hashed = hash_password("correct horse")
    assert hashed.startswith("$6$") and "correct horse" not in hashed
    salt = hashed.split("$")[2]
    again = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input="correct horse\n", capture_output=True, text=True
    )
    assert again.stdout.strip() == hashed  # the hash verifies the password
    with pytest.raises(UsageError, match="--password"):
        hash_password("")
    text = Renderer(settings=InstallSettings(password_hash=hashed)).render(profile("autoinstall"), "user-data", machines()[0])  # type: ignore[arg-type]
    doc = yaml.safe_load(text or "")["autoinstall"]
    assert doc["identity"]["password"] == hashed and doc["ssh"]["allow-pw"] is True


def test_the_invoking_users_keys_are_the_default(tmp_path: Path) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519.pub").write_text(KEY + "\n")
    (ssh / "broken.pub").write_text("not a key\n")
    (ssh / "id_ed25519").write_text("PRIVATE\n")
    assert default_ssh_keys({"HOME": str(tmp_path)}) == (KEY,)
    assert default_ssh_keys({"HOME": str(tmp_path / "nobody")}) == ()
    # Under sudo the invoking user's home counts, not root's: an unknown user has none.
    assert default_ssh_keys({"HOME": str(tmp_path), "SUDO_USER": "no-such-user-pxetui"}) == ()
