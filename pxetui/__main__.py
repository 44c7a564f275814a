"""The pxetui command line."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pxetui import __version__
from pxetui.commands.options import add_cache_option, add_profiles_option
from pxetui.errors import PxetuiError, UsageError
from pxetui.host.limits import raise_open_file_limit
from pxetui.model.events import Error
from pxetui.services.context import MODES
from pxetui.session import Session, SessionConfig

SUBCOMMANDS = ("profiles", "fetch", "import-iso", "import-bundle", "demo")

DESCRIPTION = """\
Install an OS on a room full of PCs over the network. pxetui runs temporary DHCP, TFTP and
HTTP services on ONE interface (the one plugged into the lab switch), shows every PC that
network-boots, and boots each into the OS you assigned to its MAC address (or a menu).
Nothing is left behind when it stops.
"""

EPILOG = """\
subcommands:
  pxetui profiles         list OS profiles and whether their files are present
  pxetui fetch NAME...    download profiles' files into the cache (resumable, SHA-256 verified)
  pxetui import-iso PATH  copy kernel + initrd out of an installer ISO and write a profile for it
  pxetui import-bundle F  put a bundle from `pxetui fetch NAME... --bundle F` into the cache (offline)
  pxetui demo [--vms N]   try it: a private network with N QEMU PCs booting from pxetui

examples:
  sudo pxetui eth1                          TUI on eth1 (auto: proxyDHCP if another DHCP server answers)
  sudo pxetui eth1 --address 198.18.0.1/24  give eth1 a temporary address (removed on exit)
  sudo pxetui eth1 --headless --json        one JSON object per event on stdout
  sudo pxetui eth1 --plan lab.csv           assign OSes by MAC from a mac,profile,hostname CSV

exit status: 0 after a clean stop (Ctrl-C / SIGTERM), 2 for a problem with the command line,
the interface or the plan (the message says how to fix it), 1 for other errors.
"""


def _pool(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    try:
        first, last = (ipaddress.IPv4Address(p.strip()) for p in text.split("-", 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range like 198.18.0.100-198.18.0.200") from exc
    if last < first:
        raise argparse.ArgumentTypeError(f"{text!r}: the range ends before it starts")
    return first, last


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from exc
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def _ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from exc


def _seconds(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from exc
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{seconds} seconds: give 0 (wait forever) or more")
    return seconds


def _timezone(text: str) -> str:
    """A zone the installed machines know (tz database name): a typo would install UTC or fail."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time zone: use a tz database name such as Europe/Berlin or Etc/UTC"
        ) from exc
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxetui",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "iface",
        nargs="?",
        metavar="IFACE",
        help="interface to serve on (e.g. eth1); without it, the TUI lets you pick one",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="full: serve addresses; proxy: only boot info next to an existing DHCP"
        " server; auto (default): proxy if another DHCP server answers, else full",
    )
    p.add_argument("--headless", action="store_true", help="no TUI: print one line per event")
    p.add_argument("--json", action="store_true", help="with --headless: JSON lines (see README)")
    p.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="state directory for the plan, leases and machine timelines"
        " (default /var/lib/pxetui as root, else $XDG_STATE_HOME/pxetui)",
    )
    add_profiles_option(p)
    add_cache_option(p)
    p.add_argument(
        "--boot-files",
        type=Path,
        metavar="DIR",
        help="directory with ipxe.efi / undionly.kpxe (default: /usr/lib/ipxe); iPXE's signed"
        " build goes in DIR/x86_64-sb/ (ipxe-shimx64.efi + its signed ipxe.efi; arm64-sb/"
        " ipxe-shimaa64.efi): Secure Boot PCs then get it, with autoexec.ipxe rendered beside it",
    )
    p.add_argument(
        "--snponly",
        action="store_true",
        help="give UEFI PCs snponly.efi instead of ipxe.efi (drives the NIC through the firmware)",
    )
    p.add_argument(
        "--secure-boot",
        choices=("auto", "signed", "ipxe"),
        default="auto",
        help="which chain UEFI PCs get: iPXE, the signed shim + GRUB chain (Secure Boot), or auto"
        " (default): iPXE first, the signed chain for a PC whose firmware refused iPXE",
    )
    p.add_argument(
        "--http-port",
        type=_port,
        default=8080,
        metavar="N",
        help="HTTP port for iPXE scripts and OS files (default 8080)",
    )
    p.add_argument(
        "--range",
        type=_pool,
        metavar="A-B",
        dest="pool",
        help="addresses to hand out in full mode, e.g. 198.18.0.100-198.18.0.200",
    )
    p.add_argument(
        "--address", metavar="CIDR", help="add this address to IFACE for the session (removed on exit)"
    )
    p.add_argument(
        "--plan",
        type=Path,
        metavar="FILE.csv",
        help="import a mac,profile,hostname CSV into the plan at start",
    )
    p.add_argument(
        "--menu-timeout",
        type=_seconds,
        default=30,
        metavar="S",
        help="seconds the menu of an unassigned PC waits before booting its local disk (0: forever)",
    )
    p.add_argument(
        "--templates",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="your own iPXE / preseed / autoinstall / kickstart templates (override the built-ins by name)",
    )
    p.add_argument(
        "--ssh-key",
        type=Path,
        metavar="FILE",
        help="public key(s) installed for the lab user on every machine (e.g. ~/.ssh/id_ed25519.pub)",
    )
    p.add_argument(
        "--hostname-pattern",
        default="pc-{n:02}",
        metavar="PATTERN",
        help="hostname of machines the plan names none for, numbered in boot order (default pc-{n:02})",
    )
    p.add_argument(
        "--timezone",
        type=_timezone,
        default="Etc/UTC",
        metavar="TZ",
        help="installed machines' time zone, a tz database name (default Etc/UTC)",
    )
    p.add_argument("--locale", default="en_US.UTF-8", help="installed machines' locale (default en_US.UTF-8)")
    p.add_argument("--keyboard", default="us", help="installed machines' keyboard layout (default us)")
    p.add_argument(
        "--password",
        action="store_true",
        help="ask once for a password for the lab user (stored only as a SHA-512 crypt hash)",
    )
    p.add_argument(
        "--package-proxy",
        choices=("auto", "on", "off"),
        default="auto",
        help="the package cache on the lab address (squid) the installers download through;"
        " auto (default): on in full mode, off in proxy mode",
    )
    p.add_argument(
        "--allow-upstream",
        action="append",
        default=[],
        metavar="HOST",
        help="a host the package proxy may forward to, besides the profiles' mirrors (may be repeated)",
    )
    p.add_argument(
        "--router",
        type=_ipv4,
        metavar="ADDR",
        help="default gateway handed out in full mode (DHCP option 3); in the served subnet",
    )
    p.add_argument(
        "--dns",
        type=_ipv4,
        action="append",
        default=[],
        metavar="ADDR",
        help="DNS server handed out in full mode (DHCP option 6; may be repeated)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="serve full DHCP even though another DHCP server answered (dangerous)",
    )
    p.add_argument("--version", action="version", version=f"pxetui {__version__}")
    return p


def config_from_args(args: argparse.Namespace) -> SessionConfig:
    from pxetui.boot.unattended import InstallSettings, default_ssh_keys, numbered_hostname, read_ssh_keys
    from pxetui.host import netif

    config = SessionConfig(interface=args.iface or "", mode=args.mode)
    if args.state is not None:
        config.state_dir = args.state
    if args.cache is not None:
        config.cache_dir = args.cache
    config.profile_dirs = list(args.profiles)
    config.boot_files = args.boot_files
    config.http_port = args.http_port
    config.pool = args.pool
    config.address = netif.parse_cidr(args.address) if args.address else None
    config.plan_csv = args.plan
    config.force = args.force
    config.snponly = args.snponly
    config.secure_boot = args.secure_boot
    config.menu_timeout = args.menu_timeout
    config.template_dirs = list(args.templates)
    numbered_hostname(args.hostname_pattern, 1)  # a bad pattern is an error now, not at the first boot
    config.install = InstallSettings(
        ssh_keys=read_ssh_keys(args.ssh_key) if args.ssh_key else default_ssh_keys(),
        password_hash=_ask_password() if args.password else "",
        hostname_pattern=args.hostname_pattern,
        timezone=args.timezone,
        locale=args.locale,
        keyboard=args.keyboard,
    )
    config.package_proxy = args.package_proxy
    config.allow_upstream = list(args.allow_upstream)
    config.router = args.router
    config.dns = list(args.dns)
    return config


def _ask_password() -> str:
    """Asked once on the terminal; only its hash is kept."""
    import getpass

    from pxetui.boot.unattended import hash_password

    if not sys.stdin.isatty():
        raise UsageError("--password asks on the terminal: run pxetui from one")
    return hash_password(getpass.getpass("password for the lab user on installed machines: "))


def _fail(message: str, code: int, json_lines: bool) -> int:
    if json_lines:
        print(Error(reason=message, fatal=True).to_json(), flush=True)
    print(f"pxetui: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and not args.headless:
        parser.error("--json goes with --headless (the TUI shows events itself)")
    try:
        from pxetui.host import netif

        # Before anything is created: a user without root gets the one fix, not a state
        # directory in their home (or a permission error on /var/lib/pxetui) first.
        netif.check_root()
        raise_open_file_limit()
        config = config_from_args(args)
        if not args.headless:
            from pxetui.tui.launch import run_tui

            return run_tui(config)
        if not args.iface:
            raise UsageError("--headless needs an interface: pxetui IFACE --headless")
        from pxetui.headless import run_headless

        return asyncio.run(run_headless(Session(config), args.json))
    except PxetuiError as exc:
        return _fail(str(exc), exc.exit_code, args.json)
    except KeyboardInterrupt:
        return 0


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, built by the function its `main` builds it with (for --help checks)."""
    from pxetui.commands import bundle, demo, fetch, import_iso, profiles

    return {
        "profiles": profiles.build_parser(),
        "fetch": fetch.build_parser(),
        "import-iso": import_iso.build_parser(),
        "import-bundle": bundle.build_parser(),
        "demo": demo.build_parser(),
    }


def run_subcommand(name: str, argv: list[str]) -> int:
    from pxetui.commands import demo, profiles

    try:
        if name == "profiles":
            return profiles.main(argv)
        if name == "fetch":
            from pxetui.commands import fetch

            return fetch.main(argv)
        if name == "import-iso":
            from pxetui.commands import import_iso

            return import_iso.main(argv)
        if name == "import-bundle":
            from pxetui.commands import bundle

            return bundle.main(argv)
        if name == "demo":
            return demo.main(argv)
    except PxetuiError as exc:
        print(f"pxetui {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    raise AssertionError(name)


def entry_point() -> None:
    try:
        code = main()
    except BrokenPipeError:
        # `pxetui profiles | head`: the reader left; that is not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
