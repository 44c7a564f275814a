"""A tiny initramfs (busybox-static) that plays the installer: it brings up the NIC, reports
completion to pxetui's /done with the machine's token from the kernel command line, and powers off.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

DI_DIR = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
BUSYBOX = Path("/bin/busybox")
# virtio_net is a module in Debian's kernel; take it (and what it needs) from the installer's initrd.
# In load order.
MODULES = (
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
)

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  insmod /lib/$m.ko
done
sleep 1
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
url=$(arg pxetui.url); mac=$(arg pxetui.mac); token=$(arg pxetui.token)
ip link set eth0 up
udhcpc -i eth0 -s /udhcpc.sh -q -n -t 10 -T 2
echo "pxetui-e2e: reporting to $url/done for $mac"
if wget -q -O - "$url/done?mac=$mac&token=$token"; then echo "pxetui-e2e: reported"; fi
echo "pxetui-e2e: forged report: $(wget -q -O - "$url/done?mac=$mac&token=forged" 2>&1 || echo refused)"
sync
poweroff -f
"""

UDHCPC = """#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ifconfig "$interface" "$ip" netmask "$subnet" up
"""


def build_report_initramfs(work: Path) -> Path:
    root = work / "initramfs"
    if root.exists():
        shutil.rmtree(root)
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    (root / "udhcpc.sh").write_text(UDHCPC)
    (root / "udhcpc.sh").chmod(0o755)
    extract = work / "di-modules"
    extract.mkdir(exist_ok=True)
    patterns = [f"lib/modules/*/{m}" for m in MODULES]
    archive_in = gzip.decompress((DI_DIR / "initrd.gz").read_bytes())
    subprocess.run(
        ["cpio", "-idm", "--quiet", *patterns], input=archive_in, cwd=extract, capture_output=True, check=True
    )
    for module in MODULES:
        found = next(extract.glob(f"lib/modules/*/{module}"))
        shutil.copy2(found, root / "lib" / found.name)
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    archive = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"], input=files, cwd=root, capture_output=True, check=True
    ).stdout
    out = work / "report-initrd.gz"
    out.write_bytes(gzip.compress(archive))
    return out
