"""iPXE scripts, install files and tokens, rendered without any network."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxetui.ipxe_scripts import ScriptRenderer, TemplateError, ipxe_line, machine_context
from pxetui.profiles import load_profile, parse_profile
from pxetui.state import StateDir
from pxetui.tokens import Tokens

BASE = "http://198.18.9.1:8080"


def _profile(tmp_path: Path, **doc: object):  # type: ignore[no-untyped-def]
    doc.setdefault("name", "tiny")
    doc.setdefault("title", "Tiny OS")
    return parse_profile(tmp_path / f"{doc['name']}.yaml", doc)


def test_probe_chains_to_itself_with_every_identity_field() -> None:
    script = ScriptRenderer().probe(BASE)
    assert script.startswith("#!ipxe\n")
    chain = next(line for line in script.splitlines() if line.startswith("chain "))
    url = chain.split()[1]
    assert url.startswith(f"{BASE}/boot.ipxe?mac=${{net0/mac:uristring}}&arch=${{buildarch:uristring}}")
    for name, setting in [
        ("platform", "platform"),
        ("uuid", "uuid"),
        ("serial", "serial"),
        ("manufacturer", "manufacturer"),
        ("product", "product"),
    ]:
        assert f"&{name}=${{{setting}:uristring}}" in url


def test_kernel_script_renders_cmdline_with_machine_fields(tmp_path: Path) -> None:
    profile = _profile(
        tmp_path,
        kernel={"path": "k"},
        initrd={"path": "i"},
        cmdline="url={{ machine.url }}/preseed.cfg hostname={{ machine.hostname }}\n tok={{ machine.token }}",
    )
    machine = machine_context(BASE, "52:54:00:aa:bb:01", "pc7", "T0K", "198.18.9.50")
    script = ScriptRenderer().boot(profile, BASE, machine, retry_url=f"{BASE}/boot.ipxe")
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert f"{BASE}/files/tiny/kernel?mac=52%3A54%3A00%3Aaa%3Abb%3A01" in kernel
    # The folded YAML newline must not split the command into two iPXE lines.
    assert f"url={BASE}/config/52%3A54%3A00%3Aaa%3Abb%3A01/preseed.cfg hostname=pc7 tok=T0K" in kernel
    assert any(
        line.startswith(f"initrd --name initrd {BASE}/files/tiny/initrd?") for line in script.splitlines()
    )


def test_bad_cmdline_template_is_a_clear_error(tmp_path: Path) -> None:
    profile = _profile(tmp_path, kernel={"path": "k"}, cmdline="x={{ machine.nosuchfield }}")
    machine = machine_context(BASE, "52:54:00:aa:bb:01", None, "t", None)
    with pytest.raises(TemplateError, match=r"tiny.*cmdline"):
        ScriptRenderer().boot(profile, BASE, machine, retry_url=BASE)


def test_menu_lists_systems_then_actions_and_adds_missing_extras(tmp_path: Path) -> None:
    tiny = _profile(tmp_path, kernel={"path": "k"})
    shell = _profile(tmp_path, name="ipxe-shell", title="iPXE shell", action="shell")
    machine = machine_context(BASE, "52:54:00:aa:bb:01", None, "t", None)
    script = ScriptRenderer().menu(BASE, machine, [tiny], [shell])
    items = [
        line.split(None, 2)[1:]
        for line in script.splitlines()
        if line.startswith("item ") and "--gap" not in line
    ]
    assert items == [
        ["tiny", "Tiny OS"],
        ["ipxe-shell", "iPXE shell"],
        ["-local", "Boot from the local disk"],
        ["-reboot", "Reboot"],
    ]
    assert "choose --default tiny choice" in script
    assert "/select?mac=" in script and "&profile=${choice:uristring}" in script


def test_titles_cannot_inject_ipxe_commands() -> None:
    assert ipxe_line("Evil\nshell\r\n  reboot") == "Evil shell reboot"


def test_preseed_reports_done_with_the_machine_token(tmp_path: Path) -> None:
    profile = _profile(tmp_path, kernel={"path": "k"}, template="preseed")
    machine = machine_context(BASE, "52:54:00:aa:bb:01", "pc7", "SECRET", None)
    text = ScriptRenderer().config(profile, "preseed.cfg", machine)
    assert text is not None
    assert "d-i netcfg/get_hostname string pc7" in text
    late = next(line for line in text.splitlines() if line.startswith("d-i preseed/late_command"))
    assert f"{BASE}/done?mac=52%3A54%3A00%3Aaa%3Abb%3A01&token=SECRET" in late
    assert ScriptRenderer().config(profile, "../preseed.cfg", machine) is None


def test_builtin_profiles_render(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent / "profiles"
    machine = machine_context(BASE, "52:54:00:aa:bb:01", None, "t", None)
    for source in sorted(root.glob("*.yaml")):
        script = ScriptRenderer().boot(load_profile(source), BASE, machine, retry_url=BASE)
        assert script.startswith("#!ipxe\n"), source


def test_tokens_are_per_machine_and_survive_a_restart(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.open()
    tokens = Tokens(state)
    a, b = tokens.for_mac("52:54:00:00:00:01"), tokens.for_mac("52:54:00:00:00:02")
    assert a != b and len(a) >= 20
    assert tokens.for_mac("52:54:00:00:00:01") == a
    again = Tokens(state)
    assert again.check("52:54:00:00:00:01", a)
    assert not again.check("52:54:00:00:00:01", b)
    assert not again.check("52:54:00:00:00:01", "")
    assert not again.check("52:54:00:00:00:03", a)
