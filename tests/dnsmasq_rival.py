"""A rival DHCP server for tests: dnsmasq on its own host (namespace) on the lab bridge,
handing out addresses only, like the office router pxetui must live next to."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conftest import need_tools
from lab import Lab, prefix


class Dnsmasq:
    def __init__(self, lab: Lab, tmp_path: Path) -> None:
        tools = need_tools("dnsmasq")
        self.ip = f"{prefix(lab)}.2"
        self.client = lab.add_client(mac="52:54:00:d0:00:02", address=f"{self.ip}/24")
        conf = tmp_path / "dnsmasq.conf"
        conf.write_text(
            "\n".join(
                [
                    "port=0",
                    "interface=eth0",
                    "bind-interfaces",
                    f"dhcp-range={prefix(lab)}.50,{prefix(lab)}.90,255.255.255.0,1h",
                    f"dhcp-option=3,{self.ip}",
                    f"dhcp-leasefile={tmp_path / 'dnsmasq.leases'}",
                    f"pid-file={tmp_path / 'dnsmasq.pid'}",
                    "user=root",
                    "no-ping",
                    "",
                ]
            )
        )
        self.proc = lab.popen(
            self.client.netns,
            tools["dnsmasq"],
            "-d",
            "-C",
            str(conf),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
