"""Options 3 and 6 in full mode: handed out only when the operator names them (--router, --dns)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tools
from lab import Lab
from test_dhcp_answer import boot_dir, facts_for, pool, pxe, reply_of, request_bytes

from pxetui.services.dhcp import codec
from pxetui.services.dhcp.answer import SERVER_PORT, answer

ROUTER = ipaddress.IPv4Address("198.18.0.254")
DNS = (ipaddress.IPv4Address("198.18.0.253"), ipaddress.IPv4Address("198.18.0.252"))


def test_no_router_no_dns_unless_the_operator_names_them(tmp_path: Path) -> None:
    facts = facts_for(boot_dir(tmp_path, "ipxe.efi"))
    _, options = reply_of(answer(codec.decode(request_bytes(options=pxe(7))), SERVER_PORT, facts, pool()))
    assert codec.OPT_ROUTER not in options and codec.OPT_DNS not in options
    named = dataclasses.replace(facts, router=ROUTER, dns=DNS)
    _, options = reply_of(answer(codec.decode(request_bytes(options=pxe(7))), SERVER_PORT, named, pool()))
    assert options[codec.OPT_ROUTER] == ROUTER.packed
    assert options[codec.OPT_DNS] == DNS[0].packed + DNS[1].packed


@pytest.mark.lab
def test_udhcpc_gets_the_router_and_dns_the_operator_named(lab: Lab, run_pxetui: Any, tmp_path: Path) -> None:
    tools = need_tools("udhcpc")
    prefix = lab.server_ip.rsplit(".", 1)[0]
    router, dns = f"{prefix}.254", f"{prefix}.253"
    proc = run_pxetui("--mode", "full", "--package-proxy", "off", "--router", router, "--dns", dns)
    proc.wait_event("service.ready")
    pc = lab.add_client(mac="52:54:00:3d:00:01")
    out = tmp_path / "lease"
    script = tmp_path / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\necho "$1 router=$router dns=$dns" >> {out}\n')
    script.chmod(0o755)
    done = pc.run(tools["udhcpc"], "-f", "-q", "-n", "-t", "10", "-T", "2", "-i", "eth0", "-s", str(script), timeout=40)
    assert done.returncode == 0, done.stderr
    bound = [line for line in out.read_text().splitlines() if line.startswith("bound")]
    assert bound == [f"bound router={router} dns={dns}"]
