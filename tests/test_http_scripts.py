"""iPXE scripts, install files and tokens, rendered without any network."""

from __future__ import annotations

from pathlib import Path

from pxetui.boot.ipxe_scripts import ScriptRenderer, ipxe_line
from pxetui.boot.profiles import load_profile, parse_profile
from pxetui.boot.unattended import MachineContext
from pxetui.model.state import StateDir
from pxetui.model.tokens import Tokens

BASE = "http://198.18.9.1:8080"


def machine_context(mac: str, hostname: str = "pc7", token: str = "T0K") -> MachineContext:
    return MachineContext(mac=mac, hostname=hostname, token=token, profile="tiny", base_url=BASE)


def _profile(tmp_path: Path, **doc: object):  # type: ignore[no-untyped-def]
    doc.setdefault("name", "tiny")
    doc.setdefault("title", "Tiny OS")
    return parse_profile(tmp_path / f"{doc['name']}.yaml", doc)


def test_probe_chains_to_itself_with_every_identity_field() -> None:
    script = ScriptRenderer().probe(BASE)
    assert script.startswith("#!ipxe\n")
    chain = next(line for line in script.splitlines() if line.startswith("chain "))
    url = chain.split()[1]
    assert url.startswith(f"{BASE}/boot.ipxe?mac=${{net0/mac:hexhyp}}&arch=${{buildarch:uristring}}")
    for name, setting in [
        ("platform", "platform"),
        ("serial", "serial"),
        ("manufacturer", "manufacturer"),
        ("product", "product"),
    ]:
        assert f"&{name}=${{{setting}:uristring}}" in url
    assert "&uuid=${uuid}&" in url  # typed settings print URL-safe already


def test_kernel_script_renders_cmdline_with_machine_fields(tmp_path: Path) -> None:
    profile = _profile(
        tmp_path,
        kernel={"path": "k"},
        initrd={"path": "i"},
        cmdline="url={{ machine.url }}/preseed.cfg hostname={{ machine.hostname }}\n tok={{ machine.token }}",
    )
    machine = machine_context("52:54:00:aa:bb:01")
    cmdline = "url=U/preseed.cfg hostname=pc7\n tok=T0K"  # as rendered, with a folded-YAML newline
    script = ScriptRenderer().boot(profile, BASE, machine, cmdline, retry_url=f"{BASE}/boot.ipxe")
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert f"{BASE}/files/tiny/kernel?mac=52%3A54%3A00%3Aaa%3Abb%3A01" in kernel
    # The folded YAML newline must not split the command into two iPXE lines.
    assert kernel.endswith(" initrd=initrd url=U/preseed.cfg hostname=pc7 tok=T0K || goto failed")
    assert any(
        line.startswith(f"initrd --name initrd {BASE}/files/tiny/initrd?") for line in script.splitlines()
    )


def test_menu_lists_systems_then_actions_and_adds_missing_extras(tmp_path: Path) -> None:
    tiny = _profile(tmp_path, kernel={"path": "k"})
    shell = _profile(tmp_path, name="ipxe-shell", title="iPXE shell", action="shell")
    machine = machine_context("52:54:00:aa:bb:01")
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
    assert "choose --default -local choice" in script  # never installs unless someone picks it
    timed = ScriptRenderer().menu(BASE, machine, [tiny], [shell], timeout_seconds=30)
    assert "choose --timeout 30000 --default -local choice" in timed
    assert "/select?mac=" in script and "&profile=${choice:uristring}" in script


def test_titles_cannot_inject_ipxe_commands() -> None:
    assert ipxe_line("Evil\nshell\r\n  reboot") == "Evil shell reboot"


def test_builtin_profiles_render(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent / "profiles"
    machine = machine_context("52:54:00:aa:bb:01")
    for source in sorted(root.glob("*.yaml")):
        script = ScriptRenderer().boot(load_profile(source), BASE, machine, "quiet", retry_url=BASE)
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
