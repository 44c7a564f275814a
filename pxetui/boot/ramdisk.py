"""A FAT disk image holding one signed chain, for Secure Boot PCs that boot by UEFI HTTP Boot.

Debian 12's signed GRUB has no `http` module, so a shim served by URL (HTTP Boot, arch 16/19)
would ask for its GRUB over HTTP and stop. EDK II's HttpBootDxe has another way: a file served
as `application/vnd.efi-img` becomes a RAM disk, and the firmware boots the disk's removable-
media loader, `\\EFI\\BOOT\\BOOTX64.EFI` (`BOOTAA64.EFI` on arm64), verified like any loader.
So the image holds shim under that name and the chain's GRUB beside it (shim loads it from the
disk it came from); the GRUB finds its `$prefix/grub.cfg` on the disk too, which asks for an
address with `net_bootp` and reads pxetui's per-MAC grub.cfg over TFTP from then on, as the PXE
chain does. A Secure Boot PC whose firmware refused iPXE over PXE thus boots the signed chain
in the same power-on, on the firmware's next option (HTTPv4), instead of at its next one.

GRUB started from a disk knows no boot server and, after `net_bootp`, no default interface:
the image names the server's address, and sets `net_default_interface` to the first card that
got one, so `$net_default_mac` (which the bootstrap grub.cfg reads) is that card's MAC. (GRUB
names the interface `efinet0:dhcp` but its variables `net_efinet0_dhcp_mac`, ':' made '_', and
`$net_default_mac` reads `net_${net_default_interface}_mac`: hence the `_dhcp`. It is
exported: `configfile` starts a new context, which sees only exported variables.)

Images are made with mtools (`mformat`, `mmd`, `mcopy`: Debian's `mtools`, as fat_image.py),
once per chain, loader contents and server address, into a directory of pxetui's own; a name is
the hash of what went in, so a changed loader makes a new image and nothing stale is served.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from pxetui.boot.firmware import ARM64

CONTENT_TYPE = "application/vnd.efi-img"  # HttpBootDxe: a virtual disk (RFC-registered type)
URL_PREFIX = "/ramdisk/"
SUFFIX = ".img"
TOOLS = ("mformat", "mmd", "mcopy")
INSTALL_HINT = "sudo apt-get install mtools"
SLACK_KIB = 1024  # room for the FAT itself and the grub.cfg beside the two loaders
CARDS = 8  # efinet0..7: the cards the image's GRUB tries, in order
TOOL_TIMEOUT = 60.0


class RamdiskError(RuntimeError):
    """The image could not be made (a tool missing or failing): said to the operator."""


@dataclass(frozen=True, slots=True)
class ImageInputs:
    """What one image is made of: the chain's loaders (files on disk) and where pxetui is."""

    cpu: str
    shim: Path
    grub: Path
    grub_prefix: str  # GRUB's compiled-in $prefix, relative ("debian-installer/amd64/grub")
    server: str  # the address the image's GRUB reads TFTP from

    @property
    def removable_names(self) -> tuple[str, str]:
        """(shim, GRUB) names on the disk: the firmware's default loader, and what shim asks for."""
        if self.cpu == ARM64:
            return "BOOTAA64.EFI", "grubaa64.efi"
        return "BOOTX64.EFI", "grubx64.efi"


def url_path(shim: str) -> str:
    """The HTTP path that serves the image of the chain whose shim is catalog name `shim`."""
    return URL_PREFIX + shim + SUFFIX


def shim_of(name: str) -> str | None:
    """The shim catalog name a `/ramdisk/NAME` request names (None: not an image name)."""
    if not name.endswith(SUFFIX) or len(name) == len(SUFFIX):
        return None
    return name[: -len(SUFFIX)]


def grub_cfg(inputs: ImageInputs) -> str:
    """The grub.cfg on the disk: an address, then pxetui's own bootstrap over TFTP."""
    cards = " ".join(f"efinet{i}" for i in range(CARDS))
    server = inputs.server
    return f"""# pxetui: GRUB started from the RAM disk pxetui served by UEFI HTTP Boot.
# Everything from here on comes over TFTP from {server}, as on the PXE chain.
set pager=0
echo "pxetui: signed GRUB from the HTTP Boot RAM disk; asking for an address"
net_bootp
for card in {cards}; do
  set net_default_interface="${{card}}_dhcp"
  if [ -n "$net_default_mac" ]; then break; fi
done
export net_default_interface
echo "pxetui: this PC is $net_default_mac ($net_default_ip)"
set root=(tftp,{server})
set prefix=(tftp,{server})/{inputs.grub_prefix}
configfile $prefix/grub.cfg
echo "pxetui: no answer from {server} over TFTP: back to the firmware in 10 s"
sleep 10
exit
"""


def image_name(inputs: ImageInputs) -> str:
    """The file name of this image: a hash of everything in it, so a changed loader shows."""
    digest = hashlib.sha256()
    for part in (inputs.cpu, grub_cfg(inputs)):
        digest.update(part.encode() + b"\0")
    for path in (inputs.shim, inputs.grub):
        digest.update(path.read_bytes())
    return f"chain-{digest.hexdigest()[:24]}{SUFFIX}"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _run(*command: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or exc.stdout).strip()[-300:]
        raise RamdiskError(f"{' '.join(command)} failed: {said}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RamdiskError(f"{command[0]}: {exc}") from exc


class RamdiskImages:
    """The images made so far, in `directory`; one at a time is made, each once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        # The name per inputs and loader file versions: every HTTP Boot PC asks, and hashing
        # both loaders (megabytes) for each would redo the same work.
        self._names: dict[tuple[ImageInputs, tuple[int, int], tuple[int, int]], str] = {}

    def image(self, inputs: ImageInputs) -> Path:
        """The image for `inputs`, made now if it is not there yet (blocking: call off the loop)."""
        missing = missing_tools()
        if missing:
            raise RamdiskError(
                f"cannot make the HTTP Boot disk image: {', '.join(missing)} missing;"
                f" install them with `{INSTALL_HINT}`"
            )
        try:
            name = self._name(inputs)
        except OSError as exc:
            raise RamdiskError(f"cannot read the chain's loaders: {exc}") from exc
        target = self.directory / name
        with self._lock:
            if target.is_file():
                return target
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RamdiskError(f"cannot create {self.directory}: {exc}") from exc
            self._make(inputs, target)
        return target

    def _name(self, inputs: ImageInputs) -> str:
        shim, grub = inputs.shim.stat(), inputs.grub.stat()
        key = (inputs, (shim.st_size, shim.st_mtime_ns), (grub.st_size, grub.st_mtime_ns))
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = image_name(inputs)
        return name

    def _make(self, inputs: ImageInputs, target: Path) -> None:
        size_kib = (inputs.shim.stat().st_size + inputs.grub.stat().st_size) // 1024 + SLACK_KIB
        fd, scratch_name = tempfile.mkstemp(prefix=".making-", suffix=SUFFIX, dir=self.directory)
        scratch = Path(scratch_name)
        try:
            os.ftruncate(fd, size_kib * 1024)  # mformat lays the FAT out over the file's size
        finally:
            os.close(fd)
        try:
            with tempfile.TemporaryDirectory(prefix="pxetui-ramdisk-") as tmp:
                cfg = Path(tmp) / "grub.cfg"
                cfg.write_text(grub_cfg(inputs))
                on = ("-i", str(scratch))
                _run("mformat", *on, "-v", "PXETUI", "::")
                prefix_parts = [p for p in inputs.grub_prefix.split("/") if p]
                dirs = ["::/EFI", "::/EFI/BOOT"]
                dirs += ["::/" + "/".join(prefix_parts[: i + 1]) for i in range(len(prefix_parts))]
                _run("mmd", *on, *dict.fromkeys(dirs))
                shim_name, grub_name = inputs.removable_names
                _run("mcopy", *on, str(inputs.shim), f"::/EFI/BOOT/{shim_name}")
                _run("mcopy", *on, str(inputs.grub), f"::/EFI/BOOT/{grub_name}")
                _run("mcopy", *on, str(cfg), "::/" + "/".join([*prefix_parts, "grub.cfg"]))
            scratch.replace(target)
        finally:
            scratch.unlink(missing_ok=True)
