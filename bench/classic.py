"""The classic stack pxetui is measured against: dnsmasq (DHCP + TFTP) and nginx (HTTP),
configured for the same chain (firmware -> ipxe.efi / undionly.kpxe -> HTTP script -> kernel,
initrd), running inside a lab namespace.

`signed=True` is the Secure Boot chain as a hand-built lab serves it (LAB-NOTES.md, "Secure
Boot in QEMU"): dnsmasq alone, over TFTP, Debian's d-i netboot shim (`bootnetx64.efi`), its
GRUB (which shim asks for at the TFTP root), one grub.cfg under GRUB's prefix, and the signed
installer kernel and initrd. Debian 12's signed GRUB has no http module, so nginx has nothing
to do there either way."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from pxetui.lab.netns import Lab

DI = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")


def signed_tftp_root(work: Path, kernel: Path, initrd: Path) -> Path:
    """A TFTP root with Debian's signed chain laid out as its shim and GRUB ask for it."""
    root = work / "tftp"
    amd64 = root / "debian-installer" / "amd64"
    (amd64 / "grub").mkdir(parents=True, exist_ok=True)
    links = {
        amd64 / "bootnetx64.efi": DI / "bootnetx64.efi",
        amd64 / "grubx64.efi": DI / "grubx64.efi",
        root / "grubx64.efi": DI / "grubx64.efi",  # shim 15.7 asks at the root, not beside itself
        amd64 / "linux": kernel,
        amd64 / "initrd.gz": initrd,
    }
    for link, target in links.items():
        if not link.exists():
            link.symlink_to(target)
    # No menu, no timeout: the same straight line pxetui's per-MAC grub.cfg takes.
    (amd64 / "grub" / "grub.cfg").write_text(
        "set pager=0\n"
        "linux /debian-installer/amd64/linux console=ttyS0\n"
        "initrd /debian-installer/amd64/initrd.gz\n"
        "boot\n"
    )
    return root


def dnsmasq_conf(
    lab: Lab, work: Path, http_port: int, first: int = 100, last: int = 250, signed_root: Path | None = None
) -> Path:
    net = lab.subnet.network_address
    conf = work / "dnsmasq.conf"
    # The same server either way; only where TFTP serves from and which boot file differ.
    common = f"""port=0
interface={lab.bridge}
bind-interfaces
dhcp-range={net + first},{net + last},1h
no-ping
enable-tftp
"""
    if signed_root is not None:
        chain = f"""tftp-root={signed_root}
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:efi64,debian-installer/amd64/bootnetx64.efi
log-facility={work}/dnsmasq-times.log
log-dhcp
"""
    else:
        chain = f"""tftp-root=/usr/lib/ipxe
dhcp-match=set:ipxe,175
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi
dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe
dhcp-boot=tag:ipxe,http://{lab.server_ip}:{http_port}/boot.ipxe
"""
    conf.write_text(
        common
        + chain
        + f"""dhcp-leasefile={work}/dnsmasq.leases
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
    (or any other kernel and initrd: bench/room serves its own ~50 MB pair); `signed`: dnsmasq
    alone serving Debian's shim -> GRUB -> kernel chain over TFTP."""

    def __init__(
        self,
        lab: Lab,
        work: Path,
        http_port: int = 8081,
        dhcp: bool = True,
        kernel: Path = DI / "linux",
        initrd: Path = DI / "initrd.gz",
        signed: bool = False,
    ) -> None:
        self.lab, self.work, self.http_port, self.dhcp, self.signed = lab, work, http_port, dhcp, signed
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
        if not self.signed:
            nginx = nginx_conf(self.lab, self.work, self.http_port, www)
            self.procs.append(self.lab.popen(self.lab.server_ns, "nginx", "-c", str(nginx), "-g", "daemon off;"))
        if self.dhcp:
            signed_root = None
            if self.signed:
                signed_root = signed_tftp_root(self.work, self.files["linux"], self.files["initrd.gz"])
            conf = dnsmasq_conf(self.lab, self.work, self.http_port, signed_root=signed_root)
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
