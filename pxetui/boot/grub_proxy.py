"""Whether a signed GRUB started through pxetui's proxyDHCP finds its config, and the fix if not.

In proxy mode the lab's own DHCP server (the router) gives the PC its address and pxetui only
names the boot file. Shim reads pxetui's proxy offer and fetches its GRUB from pxetui, but
upstream GRUB (Debian's and Ubuntu's signed builds, 2.06 and 2.12) configures its network from
the firmware's cached DHCP ACK only, which is the router's. It takes its TFTP server from that
ACK in this order (`grub_net_process_dhcp_ack` in grub-core/net/bootp.c): the `siaddr` field
(next-server), then option 66, then the `sname` field; with none of them it has no server at
all. It then asks that server for `$prefix/x86_64-efi/command.lst` and `$prefix/grub.cfg` and,
when nothing answers, stops at `grub>`. Red Hat's GRUB (Fedora, Rocky, Alma) carries the
downstream patch "efinet: Add DHCP proxy support" and reads the proxy offer instead.

Seen in this lab (packet trace): dnsmasq as the router puts its own address in `siaddr`
(its manual: "the address set to the address of the machine running dnsmasq") and Debian 12's
GRUB sent its RRQs to it. The cure is on the router: next-server (siaddr) set to pxetui's
address (Kea's and ISC dhcpd's `next-server`), or option 66 where the router leaves `siaddr`
empty. dnsmasq fills `siaddr` with a next-server only together with a boot file
(`dhcp-boot`), which takes the boot choice away from pxetui: not advised here. pxetui cannot
answer in the router's name, so it says so.

Pure: the DHCP service calls it with what the router's reply named, the registry and the
views only carry the sentence.
"""

from __future__ import annotations


def grub_tftp_server(siaddr: str | None, option_66: str | None, sname: str | None) -> str | None:
    """The TFTP server upstream GRUB takes from a DHCP ACK with these fields (None: none)."""
    for candidate in (siaddr, option_66, sname):
        if candidate and candidate != "0.0.0.0":
            return candidate
    return None


def proxy_grub_advice(grub_server: str | None, ours: str, router: str) -> str | None:
    """What the operator must change on `router` (the DHCP server handing out addresses) so
    that Debian's and Ubuntu's signed GRUB, started through pxetui at `ours`, reads its
    config from pxetui; None when its ACK already names pxetui."""
    if grub_server == ours:
        return None
    where = f"asks {grub_server}" if grub_server else "has no server to ask"
    return (
        f"Debian/Ubuntu signed GRUB ignores proxyDHCP and {where} for grub.cfg"
        f" (the next-server in {router}'s DHCP answers), not pxetui: set next-server"
        f" to {ours} on {router} (Kea, ISC dhcpd: next-server),"
        " or run pxetui --mode full on a switch of its own"
    )
