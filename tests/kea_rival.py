"""A lab router whose DHCP is Kea: on its own host (namespace) on the lab bridge, handing out
addresses, optionally naming a next-server (siaddr) the way an operator sets it for PXE."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from conftest import need_tools
from lab import Lab, prefix


class KeaRouter:
    def __init__(self, lab: Lab, tmp_path: Path, *, next_server: str | None = None) -> None:
        tool = need_tools("kea-dhcp4")["kea-dhcp4"]
        self.ip = f"{prefix(lab)}.3"
        self.client = lab.add_client(mac="52:54:00:d0:00:03", address=f"{self.ip}/24")
        subnet: dict[str, object] = {
            "id": 1,
            "subnet": f"{prefix(lab)}.0/24",
            "pools": [{"pool": f"{prefix(lab)}.100 - {prefix(lab)}.140"}],
            "option-data": [{"name": "routers", "data": self.ip}],
        }
        if next_server is not None:
            subnet["next-server"] = next_server
        config = {
            "Dhcp4": {
                "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "raw"},
                "lease-database": {"type": "memfile", "persist": False},
                "valid-lifetime": 3600,
                "subnet4": [subnet],
                "loggers": [
                    {"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "stderr"}]}
                ],
            }
        }
        conf = tmp_path / "kea-dhcp4.json"
        conf.write_text(json.dumps(config))
        env = ("env", f"KEA_PIDFILE_DIR={tmp_path}", f"KEA_LOCKFILE_DIR={tmp_path}")
        self.proc = lab.popen(
            self.client.netns, *env, tool, "-c", str(conf),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self._listening(lab):
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            time.sleep(0.1)

    def _listening(self, lab: Lab) -> bool:
        return f":{67:04X} " in lab.exec(self.client.netns, "cat", "/proc/net/udp").stdout

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
