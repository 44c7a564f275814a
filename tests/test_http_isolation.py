"""One PC cannot read or change another over HTTP: curl from several lab namespaces.

Each client namespace has its own address on the lab bridge. The registry learns which
machine holds an address as pxetui's DHCP tells it (a `dhcp.ack`), and, in the last test,
from pxetui's real DHCP service and udhcpc. An address no machine holds stands for a host
with a static address, or any device in proxy mode that pxetui never saw.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from http_lab import HttpLab, start_http_lab
from lab import Client, Lab, NetnsLoop

from pxetui.boot.profiles import load_profiles
from pxetui.model.events import Event
from pxetui.model.tokens import STATE_NAME as TOKENS_STATE

pytestmark = pytest.mark.lab

PC_A = "52:54:00:00:0a:01"
PC_B = "52:54:00:00:0b:01"
RANDOM = "02:00:5e:12:34:56"
TOKEN = re.compile(r"token=([\w-]+)")


@pytest.fixture
def http(lab: Lab, tmp_path: Path) -> Iterator[HttpLab]:
    need_tools("curl")
    with NetnsLoop(lab.server_ns) as loop:
        hl = start_http_lab(lab, tmp_path, loop)
        try:
            yield hl
        finally:
            loop.run(hl.service.stop())


def add_token_profile(http: HttpLab) -> None:
    """A profile whose kernel command line carries the machine's token (as tests/e2e's does)."""
    folder = http.tmp / "token-profiles"
    folder.mkdir()
    (folder / "tokened.yaml").write_text(
        "name: tokened\ntitle: Token OS\narch: [x86_64]\n"
        f"kernel: {{path: {http.tmp / 'os' / 'kernel'}}}\n"
        'cmdline: "pxetui.token={{ machine.token }} url={{ machine.url }}/preseed.cfg"\n'
        "template: preseed\n"
    )
    http.session.profiles.update(load_profiles([folder]))


def token_of(http: HttpLab, mac: str, via: Client | None = None) -> str:
    code, preseed = http.get(f"/config/{mac}/preseed.cfg", via=via)
    found = TOKEN.search(preseed)
    assert code == 200 and found, (code, preseed)
    return found.group(1)


def saved_tokens(http: HttpLab) -> dict[str, str]:
    path = http.session.state.file(TOKENS_STATE)
    if not path.exists():
        return {}
    tokens: dict[str, str] = json.loads(path.read_text())["tokens"]
    return tokens


def wait_kernels_done(http: HttpLab, count: int) -> list[Event]:
    deadline = time.monotonic() + 10
    while True:
        kernels = [e for e in http.named("http.done") if e.fields["kind"] == "kernel"]
        if len(kernels) >= count or time.monotonic() > deadline:
            assert len(kernels) == count, kernels
            return kernels
        time.sleep(0.05)


def test_install_files_go_only_to_the_address_that_holds_the_mac(http: HttpLab) -> None:
    http.assign(PC_A, "tiny", "pc-a")
    http.lease(PC_A)
    static = http.add_client(50)  # no machine holds .50: a static address
    code, body = http.get(f"/config/{PC_A}/preseed.cfg", via=static)
    assert code == 403 and "token" not in body and "pc-a" not in body
    refused = [e for e in http.named("error") if "no machine holds" in str(e.fields.get("reason"))]
    assert refused and refused[0].mac is None and refused[0].fields["client"] == http.ip_of(static)
    assert not [e for e in http.named("http.request") if e.fields["kind"] == "config"]

    code, preseed = http.get(f"/config/{PC_A}/preseed.cfg")
    assert code == 200 and "pc-a" in preseed and TOKEN.search(preseed)


def test_done_and_failed_only_from_the_machines_address_with_its_token(http: HttpLab) -> None:
    http.assign(PC_A, "tiny", "pc-a")
    http.assign(PC_B, "tiny", "pc-b")
    pc_b = http.add_client(11)
    static = http.add_client(50)
    http.lease(PC_A)
    http.lease(PC_B, pc_b)
    token = token_of(http, PC_A)
    # The right MAC and the right token, from another PC's address, or from one nobody holds.
    for via in (pc_b, static):
        for report in ("done", "failed"):
            code, _ = http.get(f"/{report}?mac={PC_A}&token={token}", via=via)
            assert code == 403, (report, http.ip_of(via))
    assert not http.named("install.done") and not http.named("install.failed")
    assert http.session.registry.machines[PC_A].stage.value != "done"
    assert any("/done report of" in e.fields["reason"] for e in http.named("error", PC_B))

    code, _ = http.get(f"/done?mac={PC_A}&token={token}")
    assert code == 200 and http.wait_event("install.done").mac == PC_A


def test_boot_script_and_menu_choice_of_another_machine_are_refused(http: HttpLab) -> None:
    add_token_profile(http)
    http.assign(PC_A, "tokened", "pc-a")
    http.lease(PC_A)
    pc_b = http.add_client(11)
    http.lease(PC_B, pc_b)
    token = token_of(http, PC_A)

    code, body = http.get(f"/boot.ipxe?mac={PC_A}&arch=x86_64&platform=efi", via=pc_b)
    assert code == 403 and token not in body
    code, body = http.get(f"/select?mac={PC_A}&profile=tokened", via=pc_b)
    assert code == 403 and token not in body
    assert not http.named("menu.select")
    reasons = [e.fields["reason"] for e in http.named("error", PC_B)]
    assert any("boot script of" in r for r in reasons) and any("menu choice of" in r for r in reasons)
    assert not [e for e in http.named("http.request", PC_A) if e.fields["kind"] == "script"]

    # Its own address gets the script with its token in the kernel command line.
    code, own = http.get(f"/boot.ipxe?mac={PC_A}&arch=x86_64&platform=efi")
    assert code == 200 and f"pxetui.token={token}" in own


def test_an_address_no_machine_holds_gets_the_boot_script_without_the_token(http: HttpLab) -> None:
    """In proxy mode iPXE's first request can come before pxetui has seen its address: it is
    answered, but the token goes only to the machine's own address."""
    add_token_profile(http)
    http.assign(PC_A, "tokened", "pc-a")
    http.lease(PC_A)
    token = token_of(http, PC_A)
    unseen = http.add_client(50)
    code, script = http.get(f"/boot.ipxe?mac={PC_A}&arch=x86_64&platform=efi", via=unseen)
    assert code == 200 and "kernel --name kernel" in script and "hostname" not in script
    assert token not in script and "pxetui.token= " in script
    code, chosen = http.get(f"/select?mac={PC_A}&profile=tokened", via=unseen)
    assert code == 200 and token not in chosen
    # ... and the install files still go only to the machine's own address.
    assert http.get(f"/config/{PC_A}/preseed.cfg", via=unseen)[0] == 403


def test_an_address_that_moves_belongs_to_the_new_holder(http: HttpLab) -> None:
    http.assign(PC_A, "tiny", "pc-a")
    http.assign(PC_B, "tiny", "pc-b")
    http.lease(PC_A)
    token_of(http, PC_A)
    http.lease(PC_B)  # A's lease expired; its address now belongs to B
    registry = http.session.registry
    assert registry.mac_for_ip(http.client_ip) == PC_B
    assert registry.machines[PC_A].ip is None and registry.machines[PC_B].ip == http.client_ip

    code, preseed = http.get(f"/config/{PC_B}/preseed.cfg")
    assert code == 200 and "pc-b" in preseed
    code, body = http.get(f"/config/{PC_A}/preseed.cfg")
    assert code == 403 and "pc-a" not in body
    assert http.get(f"/boot.ipxe?mac={PC_A}&arch=x86_64")[0] == 403

    # Its transfers are B's, even when the URL still names A.
    for query in ("", f"?mac={PC_A}"):
        done = http.curl("-o", "/dev/null", "-w", "%{http_code}", f"{http.base}/files/tiny/kernel{query}")
        assert done.stdout == "200", done.stderr
    kernels = wait_kernels_done(http, 2)
    assert {e.mac for e in kernels} == {PC_B}
    a_transfer, b_transfer = registry.machines[PC_A].transfer, registry.machines[PC_B].transfer
    assert b_transfer is not None and b_transfer.file == "kernel"
    assert a_transfer is not None and a_transfer.file == "preseed.cfg"  # its last, before the move


def test_requests_naming_made_up_macs_create_no_machine_and_no_token(http: HttpLab) -> None:
    http.assign(PC_A, "tiny", "pc-a")
    http.lease(PC_A)
    token_of(http, PC_A)
    before = set(http.session.registry.machines)
    tokens_before = saved_tokens(http)
    stranger = http.add_client(50)
    macs = [f"02:00:5e:00:{i // 256:02x}:{i % 256:02x}" for i in range(40)] + [RANDOM]
    for mac in macs:
        assert http.get(f"/boot.ipxe?mac={mac}&arch=x86_64", via=stranger)[0] == 404, mac
    expected = {
        f"/select?mac={RANDOM}&profile=tiny": 404,  # no such machine
        f"/config/{RANDOM}/preseed.cfg": 403,  # only ever to the machine's own address
        f"/done?mac={RANDOM}&token=x": 403,
        f"/failed?mac={RANDOM}&token=x": 403,
        f"/files/tiny/kernel?mac={RANDOM}": 200,  # files are no secret; credited to no machine
    }
    for path, code in expected.items():
        assert http.get(path, via=stranger)[0] == code, path
    # From a machine's own address, naming another, unknown MAC changes nothing either.
    for path in expected:
        assert http.get(path)[0] in (200, 403), path
    assert set(http.session.registry.machines) == before
    assert saved_tokens(http) == tokens_before and RANDOM not in saved_tokens(http)
    assert not [e for e in list(http.events) if e.mac is not None and e.mac not in before]
    # Reported with no MAC, and not one event per request.
    unknown = [e for e in http.named("error") if "does not know" in str(e.fields.get("reason"))]
    assert unknown and all(e.mac is None for e in unknown) and len(unknown) < len(macs)
    assert http.service.describe()["refused_unknown"] >= len(macs)
    # The next real PC is numbered by the machines that booted, not by the requests.
    assert http.session.hostname_for("52:54:00:00:0c:01") == "pc-02"


# -- with pxetui's own DHCP service and real DHCP clients ---------------------------------------


def udhcpc_bound(client: Client, tmp_path: Path, udhcpc: str) -> str:
    """udhcpc in `client` until bound; its hook puts the address on eth0. Returns the address."""
    out = tmp_path / "udhcpc.out"
    hook = tmp_path / "udhcpc.sh"
    hook.write_text(
        "#!/bin/sh\n"
        '[ "$1" = bound ] || exit 0\n'
        'ip addr flush dev "$interface"\n'
        'ip addr add "$ip/24" dev "$interface"\n'
        f'echo "$ip" > {out}\n'
    )
    hook.chmod(0o755)
    done = client.run(udhcpc, "-f", "-q", "-n", "-t", "4", "-T", "2", "-i", "eth0", "-s", str(hook))
    assert done.returncode == 0, done.stderr
    return out.read_text().strip()


def dhclient(client: Client, tmp_path: Path, binary: str, *args: str) -> str:
    """dhclient in `client` (-1: until bound, -r: release); its hook sets or clears eth0's address."""
    out = tmp_path / "dhclient.out"
    hook = tmp_path / "dhclient.sh"
    hook.write_text(
        "#!/bin/sh\n"
        'case "$reason" in\n'
        '  BOUND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/24" dev "$interface"\n'
        f'    echo "$new_ip_address" > {out} ;;\n'
        '  RELEASE|STOP|EXPIRE) ip addr flush dev "$interface" ;;\n'
        "esac\n"
    )
    hook.chmod(0o755)
    files = ("-lf", str(tmp_path / "dhclient.leases"), "-pf", str(tmp_path / "dhclient.pid"))
    done = client.run(binary, "-4", *args, "-sf", str(hook), *files, "eth0", timeout=60)
    assert done.returncode == 0, done.stderr
    return out.read_text().strip()


def test_a_reused_lease_serves_the_new_holder_with_real_dhcp(
    lab: Lab, run_pxetui: Any, tmp_path: Path
) -> None:
    """A pool of one address: A (dhclient) takes it and releases it, then B (udhcpc) gets it. From that address,
    B's install files are served and A's are refused (today the registry keeps A's old address
    and names A as its holder)."""
    tools = need_tools("udhcpc", "dhclient", "curl")
    prefix = lab.server_ip.rsplit(".", 1)[0]
    plan = tmp_path / "plan.csv"
    with plan.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["mac", "profile", "hostname"])
        writer.writerow([PC_A, "debian-12-local", "lab-a"])
        writer.writerow([PC_B, "debian-12-local", "lab-b"])
    proc = run_pxetui("--mode", "full", "--range", f"{prefix}.150-{prefix}.150", "--plan", str(plan))
    proc.wait_event("service.ready")
    base = f"http://{lab.server_ip}:8080"
    pc_a = lab.add_client(mac=PC_A)
    pc_b = lab.add_client(mac=PC_B)

    def config(client: Client, mac: str) -> tuple[str, str]:
        done = client.run("curl", "-sS", "-w", "\n%{http_code}", f"{base}/config/{mac}/preseed.cfg")
        body, _, code = done.stdout.rpartition("\n")
        return code, body

    assert dhclient(pc_a, tmp_path, tools["dhclient"], "-1") == f"{prefix}.150"
    code, body = config(pc_a, PC_A)
    assert code == "200" and "lab-a" in body
    dhclient(pc_a, tmp_path, tools["dhclient"], "-r")  # A leaves: its lease goes back to the pool

    assert udhcpc_bound(pc_b, tmp_path, tools["udhcpc"]) == f"{prefix}.150"
    proc.wait_event("dhcp.ack", mac=PC_B)
    code, body = config(pc_b, PC_B)
    assert code == "200" and "lab-b" in body
    code, body = config(pc_b, PC_A)
    assert code == "403" and "lab-a" not in body
    assert proc.stop() == 0
