"""The classic stack pxetui is measured against: dnsmasq (DHCP + TFTP) and nginx (HTTP),
configured for the same chain (firmware -> ipxe.efi / undionly.kpxe -> HTTP script -> kernel,
initrd), running inside a lab namespace."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from pxetui.lab.netns import Lab

DI = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")


def dnsmasq_conf(lab: Lab, work: Path, http_port: int, first: int = 100, last: int = 250) -> Path:
    net = lab.subnet.network_address
    conf = work / "dnsmasq.conf"
    conf.write_text(
        f"""port=0
interface={lab.bridge}
bind-interfaces
dhcp-range={net + first},{net + last},1h
no-ping
enable-tftp
tftp-root=/usr/lib/ipxe
dhcp-match=set:ipxe,175
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi
dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe
dhcp-boot=tag:ipxe,http://{lab.server_ip}:{http_port}/boot.ipxe
dhcp-leasefile={work}/dnsmasq.leases
pid-file={work}/dnsmasq.pid
"""
    )
    return conf


def nginx_conf(lab: Lab, work: Path, http_port: int, root: Path) -> Path:
    conf = work / "nginx.conf"
    conf.write_text(
        f"""user root;  # the files sit in the bench's private temporary directory
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx.error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  server {{ listen {lab.server_ip}:{http_port}; root {root}; }}
}}
"""
    )
    return conf


class ClassicStack:
    """dnsmasq + nginx serving the Debian installer kernel to every PC, like a hand-built lab
    (or any other kernel and initrd: bench/room serves its own ~50 MB pair)."""

    def __init__(
        self,
        lab: Lab,
        work: Path,
        http_port: int = 8081,
        dhcp: bool = True,
        kernel: Path = DI / "linux",
        initrd: Path = DI / "initrd.gz",
    ) -> None:
        self.lab, self.work, self.http_port, self.dhcp = lab, work, http_port, dhcp
        self.files = {"linux": kernel, "initrd.gz": initrd}  # what the boot script names -> served file
        self.procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> ClassicStack:
        www = self.work / "www"
        www.mkdir(parents=True, exist_ok=True)
        for name, target in self.files.items():
            link = www / name
            if not link.exists():
                link.symlink_to(target)
        ip = self.lab.server_ip
        (www / "boot.ipxe").write_text(
            f"#!ipxe\nkernel http://{ip}:{self.http_port}/linux console=ttyS0\n"
            f"initrd http://{ip}:{self.http_port}/initrd.gz\nboot\n"
        )
        nginx = nginx_conf(self.lab, self.work, self.http_port, www)
        self.procs.append(self.lab.popen(self.lab.server_ns, "nginx", "-c", str(nginx), "-g", "daemon off;"))
        if self.dhcp:
            conf = dnsmasq_conf(self.lab, self.work, self.http_port)
            log = (self.work / "dnsmasq.log").open("w")
            self.procs.append(
                self.lab.popen(
                    self.lab.server_ns, "dnsmasq", "-d", "-C", str(conf), stdout=log, stderr=subprocess.STDOUT
                )
            )
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
