"""The pure part of the package proxy: allowed hosts, squid's configuration, its access log.

squid does the caching. The switches that make it a package cache for one room, and a closed
door, are all in `squid_conf` (measured in tests/test_package_proxy.py):

- `collapsed_forwarding on`: PCs asking for a file that is still downloading wait for that one
  download instead of starting their own, so a room downloads each package once even when
  twenty PCs ask at the same moment (apt-cacher-ng 3.7.4, used before, did not: see server.py);
- index files (Release, InRelease, Packages*, Sources*, repomd.xml, .treeinfo ...) are stale at
  once and revalidated with the package host on every request; package files (.deb, .udeb,
  .rpm ...) are kept for 90 days however new they are, up to MAX_OBJECT in size;
- only the allowed hosts (`dstdomain -n`: by name, no reverse lookup) on port 80, or CONNECT to
  their port 443 (https repositories, tunnelled, not cached); nothing to this machine's own
  addresses; everything else gets 403 and an access log line, which pxetui counts;
- no Via or X-Forwarded-For (the lab's addresses stay in the lab), no version string, no
  cache manager, no ICP/HTCP/SNMP ports, no pinger: one listening socket, on the lab address.

Its access log is written in pxetui's own format (LOG_FORMAT: client, squid's status such as
TCP_MISS/200, bytes sent to the client, body bytes received from the package host, method,
URL), which is all pxetui reads back: squid says for each request whether it was served from
the cache, so "from cache" is counted, not estimated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pxetui.boot.profiles import Profile
from pxetui.boot.unattended import InstallSettings, kickstart_repo

# The archives the installers of each template kind fetch from, besides the mirror they are told.
TEMPLATE_HOSTS: dict[str, tuple[str, ...]] = {
    "preseed": ("security.debian.org",),  # d-i's apt-setup adds the security suite
    "autoinstall": ("archive.ubuntu.com", "security.ubuntu.com"),
    "kickstart": (),
}
LOG_FORMAT_NAME = "pxetui"
# client status/code bytes-to-client body-bytes-from-upstream method url (the URL last: it is
# the one field a client chooses, and a space in it cannot shift the others).
LOG_FORMAT = "%ts.%03tu %>a %Ss/%03>Hs %<st %<bs %rm %ru"
MAX_OBJECT = "1 GB"  # a package file bigger than this is passed through, not cached
KEEP_MINUTES = 129600  # 90 days: a package file's name changes with its content
# Fresh for KEEP_MINUTES even when just published: without it squid's Last-Modified heuristic
# (fresh for as long as the file had existed when fetched) wins over the minimum, and a .deb
# built an hour ago is revalidated an hour later (measured: a 304 in the next session).
KEEP = "override-lastmod"
# Files whose content changes under the same name: revalidated on every request.
INDEX_PATTERN = (
    r"/(Release|Release\.gpg|InRelease|Packages|Sources|Contents-[^/]*|Translation-[^/]*|Index"
    r"|repomd\.xml|\.treeinfo|treeinfo|\.discinfo)(\.(gz|bz2|xz|lzma|zst|asc))?$"
)
# Package files: a new build gets a new name. (Installer images, ISOs, install.img are not:
# some mirrors replace them under the same name at a point release; they are revalidated.)
PACKAGE_PATTERN = r"\.(deb|udeb|ddeb|rpm|drpm|dsc|diff\.gz|tar\.(gz|xz|bz2|zst))$"
BY_HASH_PATTERN = r"/by-hash/"  # apt's by-hash index files: named by their content, kept
REPO_DATA_PATTERN = r"/repodata/[0-9a-f]{16,}-"  # dnf's metadata files named by their checksum


def profile_hosts(profile: Profile, install: InstallSettings) -> set[str]:
    """The package hosts an unattended install of `profile` downloads from."""
    if profile.template is None or profile.mirror is not None:
        return set()  # nothing to install, or a local mirror pxetui serves itself
    hosts = set(TEMPLATE_HOSTS.get(profile.template, ()))
    if profile.template == "preseed":
        hosts.add(install.mirror_host)
    repo = kickstart_repo(profile)
    if repo:
        host = urlsplit(repo).hostname
        if host:
            hosts.add(host)
    return {h.lower() for h in hosts}


def allowed_hosts(
    profiles: Iterable[Profile], install: InstallSettings, extra: Iterable[str]
) -> tuple[str, ...]:
    hosts: set[str] = {h.lower() for h in extra}
    for profile in profiles:
        hosts |= profile_hosts(profile, install)
    return tuple(sorted(hosts))


@dataclass(frozen=True, slots=True, kw_only=True)
class SquidPlaces:
    """Where one session's squid keeps its files (all pxetui's, none of the system squid's)."""

    cache_dir: Path  # the disk cache, kept between sessions
    cache_mb: int  # its size limit
    log_dir: Path  # access.log, cache.log; writable by `user`
    pid_file: Path
    user: str = "proxy"  # Debian's squid drops root to this user (its compiled-in default)


def squid_conf(*, address: str, port: int, places: SquidPlaces, hosts: Iterable[str]) -> str:
    """The whole squid.conf pxetui runs squid with (`squid -N -f FILE`)."""
    hosts = list(hosts)
    lines = [
        "# generated by pxetui for one session; see pxetui/services/proxy/config.py",
        f"http_port {address}:{port}",  # the lab address only: squid's default is every address
        "icp_port 0",
        "htcp_port 0",
        "snmp_port 0",
        "pinger_enable off",
        f"cache_effective_user {places.user}",
        f"pid_filename {places.pid_file}",
        f"cache_dir ufs {places.cache_dir} {places.cache_mb} 16 256",
        f"coredump_dir {places.log_dir}",
        f"logformat {LOG_FORMAT_NAME} {LOG_FORMAT}",
        f"access_log stdio:{places.log_dir / 'access.log'} {LOG_FORMAT_NAME}",
        f"cache_log {places.log_dir / 'cache.log'}",
        "cache_store_log none",
        "logfile_rotate 0",
        "buffered_logs off",  # a line per request as it ends, so the counts are current
        "visible_hostname pxetui",
        "httpd_suppress_version_string on",
        "via off",
        "forwarded_for delete",
        "shutdown_lifetime 1 second",  # at stop, PCs still downloading are cut after 1 s
        "collapsed_forwarding on",
        f"maximum_object_size {MAX_OBJECT}",
        "cache_mem 64 MB",
        "maximum_object_size_in_memory 1 MB",
        "negative_ttl 0 seconds",
        # -- what is forwarded --------------------------------------------------------------------
        "acl pxetui_port_http port 80",
        "acl pxetui_port_https port 443",
        "acl CONNECT method CONNECT",
        "acl pxetui_link_local dst 169.254.0.0/16 fe80::/10",
    ]
    if hosts:
        lines.append(f"acl pxetui_hosts dstdomain -n {' '.join(hosts)}")
        lines += [
            "http_access deny !pxetui_hosts",
            "http_access deny CONNECT !pxetui_port_https",
            "http_access deny !CONNECT !pxetui_port_http",
            "http_access deny to_localhost",
            "http_access deny pxetui_link_local",
            "http_access allow pxetui_hosts",
        ]
    lines += [
        "http_access deny all",
        "icp_access deny all",
        "htcp_access deny all",
        # -- what is kept --------------------------------------------------------------------------
        f"refresh_pattern -i {INDEX_PATTERN} 0 0% 0 refresh-ims",
        f"refresh_pattern -i {BY_HASH_PATTERN} {KEEP_MINUTES} 100% {KEEP_MINUTES} {KEEP}",
        f"refresh_pattern -i {REPO_DATA_PATTERN} {KEEP_MINUTES} 100% {KEEP_MINUTES} {KEEP}",
        f"refresh_pattern -i {PACKAGE_PATTERN} {KEEP_MINUTES} 100% {KEEP_MINUTES} {KEEP}",
        "refresh_pattern . 0 0% 0 refresh-ims",  # anything else: revalidated, like an index
    ]
    return "\n".join(lines) + "\n"


# squid's statuses for a response whose body the package host did not send for this request: a
# hit, a revalidated hit, one joined to another PC's download of the same file (CF: collapsed).
_FROM_CACHE = ("HIT", "_CF_", "REFRESH_UNMODIFIED", "REFRESH_FAIL_OLD", "REFRESH_IGNORED")


@dataclass
class LogLine:
    client: str
    status: str  # squid's, e.g. TCP_MISS
    code: int  # HTTP status sent to the client
    sent: int  # bytes sent to the client, headers included
    received: int | None  # body bytes from the package host for this request; None: none asked
    method: str
    url: str

    @property
    def refused(self) -> bool:
        if self.status.startswith("TCP_DENIED"):
            return True
        return self.status.startswith("NONE") and 400 <= self.code < 500  # a request it could not parse

    @property
    def from_cache(self) -> bool:
        """Sent from the cache: a hit, or a miss that asked nothing upstream itself.

        A PC asking for a file another PC's request is downloading reads that download; squid
        logs it TCP_MISS (or TCP_CF_MISS) with no upstream bytes ("-"): measured, 48 of the 57
        .deb misses of 20 PCs at once were such.
        """
        if self.code not in (200, 206, 304):
            return False  # an error squid made up (no answer from upstream, ...): not a hit
        return self.received is None or any(mark in self.status for mark in _FROM_CACHE)


def parse_line(line: str) -> LogLine | None:
    """One access log line in LOG_FORMAT, or None when it is not one."""
    parts = line.rstrip("\n").split(" ", 6)
    if len(parts) != 7:
        return None
    _, client, status_code, sent, received, method, url = parts
    status, _, code = status_code.partition("/")
    try:
        return LogLine(
            client=client,
            status=status,
            code=int(code),
            sent=int(sent),
            received=None if received == "-" else int(received),
            method=method,
            url=url,
        )
    except ValueError:
        return None


@dataclass
class LogCounts:
    """Counts read back from squid's access log."""

    upstream_bytes: int = 0  # body bytes taken from the package hosts
    served_bytes: int = 0  # sent to the lab PCs (hits and misses, headers included)
    cache_served_bytes: int = 0  # of those, sent from the cache (squid's hit statuses)
    files_served: int = 0
    hits: int = 0
    refused: int = 0
    per_client: dict[str, int] = field(default_factory=dict)  # client address -> bytes served
    last_refused: str = ""  # what the last refused request asked for

    def add_line(self, line: str) -> str | None:
        """Count one log line; returns the refused URL when the line is a refusal."""
        entry = parse_line(line)
        if entry is None:
            return None
        if entry.code == 0:
            return None  # a connection closed before it asked anything (pxetui's own readiness probe)
        if entry.refused:
            self.refused += 1
            self.last_refused = f"{entry.method} {entry.url}"
            return self.last_refused
        self.upstream_bytes += entry.received or 0
        self.served_bytes += entry.sent
        self.files_served += 1
        if entry.from_cache:
            self.hits += 1
            self.cache_served_bytes += entry.sent
        self.per_client[entry.client] = self.per_client.get(entry.client, 0) + entry.sent
        return None

    def as_dict(self) -> dict[str, object]:
        return {
            "upstream_bytes": self.upstream_bytes,
            "served_bytes": self.served_bytes,
            "from_cache": self.cache_served_bytes,
            "files_served": self.files_served,
            "hits": self.hits,
            "refused": self.refused,
        }
