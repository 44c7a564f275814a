"""What the end-to-end boot tests read from pxetui's JSON events and state: the steps one
PC went through, in order, and the plan that assigns it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The Secure Boot chain as pxetui sees it, over TFTP from end to end.
SIGNED_CHAIN = [
    "dhcp.discover",
    "dhcp.ack",
    "tftp.start:loader",  # shim (bootnetx64.efi), then its GRUB
    "tftp.start:script",  # grub.cfg, then grub.cfg-MAC
    "tftp.start:kernel",
    "tftp.start:initrd",
]


def steps(events: list[dict[str, Any]], mac: str) -> list[str]:
    seen: list[str] = []
    for e in events:
        if e.get("mac") != mac:
            continue
        name = e["event"]
        if name == "tftp.start":
            name = f"tftp.start:{e.get('kind') or 'loader'}"
        elif name == "http.request":
            name = f"http.request:{e.get('kind')}"
        if not seen or seen[-1] != name:
            seen.append(name)
    return seen


def in_order(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(step in it for step in wanted)


def machine_state(tmp_path: Path, mac: str) -> dict[str, Any]:
    """The machine as pxetui saved it (state/machines.json)."""
    document = json.loads((tmp_path / "state" / "machines.json").read_text())
    return next(m for m in document["machines"] if m["mac"] == mac)


def planned(tmp_path: Path, mac: str, profile: str = "debian-12-local") -> str:
    plan = tmp_path / "plan.csv"
    plan.write_text(f"mac,profile,hostname\n{mac},{profile},pc-sb\n")
    return str(plan)
