"""Wake-on-LAN: the packet's bytes, and real frames caught in a lab namespace.

The receiver is a raw socket in a client namespace on the lab bridge; the sender is
pxetui.host.wol (and the TUI's `w` key, through a real Session started on the lab bridge).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab import Lab, NetnsLoop

from pxetui.host.mac import MacError
from pxetui.host.wol import ETH_P_WOL, WOL_UDP_PORT, magic_payload, send_wake, wol_frame

TARGET = "52:54:00:de:ad:01"

# Runs inside the client namespace: print "ready", then one line per magic packet seen for
# the MAC in argv[1]: "ether" for an EtherType 0x0842 frame, "udp PORT" for a UDP datagram.
RECEIVER = r"""
import socket, struct, sys, time
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
magic = b"\xff" * 6 + mac * 16
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.settimeout(0.2)
print("ready", flush=True)
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        frame = s.recv(2048)
    except socket.timeout:
        continue
    ethertype = struct.unpack("!H", frame[12:14])[0]
    if ethertype == 0x0842 and frame[14:14 + 102] == magic:
        print("ether", frame[6:12].hex(), flush=True)
    elif ethertype == 0x0800 and frame[23] == 17:
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl:]
        if udp[8:8 + 102] == magic:
            print("udp", struct.unpack("!H", udp[2:4])[0], socket.inet_ntoa(frame[30:34]), flush=True)
"""


def test_magic_payload_and_frame_bytes() -> None:
    payload = magic_payload("52-54-00-DE-AD-01")
    assert len(payload) == 102
    assert payload[:6] == b"\xff" * 6
    assert payload[6:] == bytes.fromhex("525400dead01") * 16
    frame = wol_frame(TARGET, "02:00:00:00:00:01")
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("020000000001")
    assert int.from_bytes(frame[12:14], "big") == ETH_P_WOL
    assert frame[14:] == payload
    with pytest.raises(MacError):
        magic_payload("52:54:00:de:ad")


def test_send_wake_to_nobody_sends_nothing() -> None:
    assert send_wake("no-such-if0", "02:00:00:00:00:01", []) == 0


def start_receiver(lab: Lab, seconds: float = 20) -> tuple[subprocess.Popen[str], str]:
    client = lab.add_client()
    proc = lab.popen(
        client.netns, sys.executable, "-c", RECEIVER, TARGET, str(seconds), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc, client.netns


def received(proc: subprocess.Popen[str]) -> list[str]:
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    return out.splitlines()


def wait_bridge_up(lab: Lab, timeout: float = 10) -> None:
    """A bridge is operationally up a moment after its first port: pxetui refuses a down link."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = lab.exec(lab.server_ns, "cat", f"/sys/class/net/{lab.bridge}/operstate").stdout.strip()
        if state == "up":
            return
        time.sleep(0.1)
    raise AssertionError(f"{lab.bridge} did not come up")


def bridge_mac(lab: Lab) -> str:
    return lab.exec(lab.server_ns, "cat", f"/sys/class/net/{lab.bridge}/address").stdout.strip()


@pytest.mark.lab
def test_send_wake_reaches_the_lab_segment_as_ethernet_and_udp(lab: Lab) -> None:
    proc, _ = start_receiver(lab)
    source = bridge_mac(lab)
    with NetnsLoop(lab.server_ns) as nl:
        count = nl.call(
            lambda: send_wake(lab.bridge, source, [TARGET], ipaddress.IPv4Interface(lab.server_cidr))
        )
    assert count == 1
    time.sleep(0.5)
    lines = received(proc)
    broadcast = str(ipaddress.IPv4Interface(lab.server_cidr).network.broadcast_address)
    assert f"ether {source.replace(':', '')}" in lines, lines
    assert f"udp {WOL_UDP_PORT} {broadcast}" in lines, lines


@pytest.mark.lab
def test_send_wake_on_a_missing_interface_is_a_clear_error(lab: Lab) -> None:
    from pxetui.host.wol import WakeError

    with NetnsLoop(lab.server_ns) as nl, pytest.raises(WakeError, match="ip link show eth9"):
        nl.call(lambda: send_wake("eth9", "02:00:00:00:00:01", [TARGET]))


@pytest.mark.lab
def test_tui_picks_the_lab_bridge_starts_the_session_and_wakes_a_machine(lab: Lab, tmp_path: Path) -> None:
    """The whole path for real, in the lab: interface picker (real interface list), Session.start
    on the bridge, add a MAC with `n`, wake it with `w`, quit with `q` (services stopped, state saved)."""
    proc, _ = start_receiver(lab, seconds=60)
    wait_bridge_up(lab)
    state = tmp_path / "state"
    done = lab.exec(
        lab.server_ns,
        sys.executable,
        str(Path(__file__).with_name("tui_lab_driver.py")),
        lab.bridge,
        TARGET,
        str(state),
        "18080",
        timeout=120,
    )
    lines = received(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert lab.bridge in result["interfaces"] and "eth0" not in result["interfaces"]  # lab only
    assert result["started"], result["notes"]
    assert result["address"] == lab.server_ip
    assert any("wol.sent" in line and TARGET in line for line in result["log"]), result["log"]
    assert any(line.startswith("ether ") for line in lines), lines
    assert result["return_code"] == 0 and result["services_after_quit"] == 0
    assert TARGET in (state / "plan.json").read_text()
