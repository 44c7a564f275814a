"""iPXE scripts, install files and tokens, rendered without any network."""

from __future__ import annotations

import re
from pathlib import Path

from pxetui.boot.ipxe_scripts import MenuPoll, ScriptRenderer, ipxe_line
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


# -- the PC-side menu: what it offers, the question before an install, asking the server again --

IPXE_COMMANDS = frozenset(
    {"menu", "item", "choose", "chain", "goto", "echo", "prompt", "iseq", "sleep", "set", "cpuid"}
    | {"exit", "sanboot", "kernel", "initrd", "boot", "shell", "reboot"}
)


def check_ipxe(script: str) -> None:
    """The structure iPXE needs (https://ipxe.org/cmd): known commands, every `goto` target a
    label, and no label compared first in `iseq` (iPXE's getopt reads a leading '-' as an option)."""
    lines = [line.strip() for line in script.splitlines()[1:] if line.strip() and not line.startswith("#")]
    labels = {line[1:] for line in lines if line.startswith(":")}
    for line in lines:
        if line.startswith(":"):
            continue
        for command in re.split(r"\s+(?:&&|\|\|)\s*", line):
            if not command:
                continue
            words = command.split()
            assert words[0] in IPXE_COMMANDS, line
            if words[0] == "goto":
                assert words[1] in labels, line
            if words[0] == "iseq":
                assert not words[1].startswith("-"), line


def _menu_profiles(tmp_path: Path):  # type: ignore[no-untyped-def]
    tiny = _profile(tmp_path, kernel={"path": "k"}, template="preseed")  # an unattended install
    tool = _profile(tmp_path, name="memtest", title="Memtest", kernel={"path": "m"})
    local = _profile(tmp_path, name="local-disk", title="Boot from the local disk", action="local")
    return tiny, tool, local


def test_an_unattended_install_says_it_erases_the_disk_and_asks_first(tmp_path: Path) -> None:
    tiny, tool, local = _menu_profiles(tmp_path)
    machine = machine_context("52:54:00:aa:bb:01")
    script = ScriptRenderer().menu(BASE, machine, [tiny, tool], [local], timeout_seconds=30)
    check_ipxe(script)
    assert "item tiny Tiny OS - ERASES THE DISK" in script.splitlines()
    assert "item memtest Memtest" in script.splitlines()  # a tool erases nothing: no question
    lines = script.splitlines()
    # Choosing tiny goes to its question, before the generic chain to /select.
    to_question = lines.index("iseq tiny ${choice} && goto erase-tiny ||")
    generic = next(i for i, line in enumerate(lines) if "&profile=${choice:uristring}" in line)
    assert to_question < generic
    question = lines[lines.index(":erase-tiny") :]
    assert question[1] == "menu Erase the disk of this PC and install Tiny OS?"
    assert (
        "item back Back to the menu" in question
        and "item install Erase the disk and install Tiny OS" in question
    )
    # Left alone, the question goes back (default and timeout), never to the install.
    choose = next(line for line in question if line.startswith("choose "))
    assert choose == "choose --timeout 30000 --default back confirm || goto menu"
    install = next(i for i, line in enumerate(question) if "/select?" in line)
    assert question[install - 1] == "iseq ${confirm} install || goto menu"
    assert question[install].startswith(f"chain {BASE}/select?mac=52%3A54%3A00%3Aaa%3Abb%3A01&profile=tiny&shim=${{pxetui_shim}} ")
    assert "erase-memtest" not in script


def test_a_menu_with_a_poll_waits_for_the_operator_then_asks_again(tmp_path: Path) -> None:
    tiny, _, local = _menu_profiles(tmp_path)
    machine = machine_context("52:54:00:aa:bb:01")
    url = f"{BASE}/boot.ipxe?mac=52%3A54%3A00%3Aaa%3Abb%3A01&waited=10"
    script = ScriptRenderer().menu(
        BASE, machine, [tiny], [local], timeout_seconds=30, poll=MenuPoll(url=url, interval=10, remaining=25)
    )
    check_ipxe(script)
    lines = script.splitlines()
    prompt = next(line for line in lines if line.startswith("prompt "))
    # No key within the interval: ask the server again (replacing this script); a key: the menu.
    assert prompt.startswith("prompt --timeout 10000 ")
    assert prompt.endswith(f" || chain --replace {url} || goto menu")
    assert lines.index(prompt) < lines.index(":menu")
    assert "echo Waiting for the operator; the local disk boots in 25 s otherwise." in lines
    # Once someone is at the menu, it is the menu as before: local disk after the timeout.
    assert "choose --timeout 30000 --default local-disk choice || goto menu" in lines
    forever = ScriptRenderer().menu(
        BASE, machine, [tiny], [local], poll=MenuPoll(url=url, interval=10, remaining=None)
    )
    check_ipxe(forever)
    assert "echo Waiting for the operator." in forever.splitlines()
    assert "prompt " not in ScriptRenderer().menu(BASE, machine, [tiny], [local], timeout_seconds=30)


def test_every_builtin_script_uses_known_commands_and_existing_labels(tmp_path: Path) -> None:
    renderer = ScriptRenderer()
    machine = machine_context("52:54:00:aa:bb:01")
    scripts = [renderer.probe(BASE)]
    scripts += [renderer.action(action, BASE, machine) for action in ("local", "shell", "reboot")]
    root = Path(__file__).resolve().parent.parent / "profiles"
    scripts += [
        renderer.boot(load_profile(p), BASE, machine, "quiet", BASE) for p in sorted(root.glob("*.yaml"))
    ]
    for script in scripts:
        check_ipxe(script)
