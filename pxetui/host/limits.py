"""Process limits pxetui raises for itself at start.

A room of PCs downloading at once holds, per PC, a socket, the open file and the sendfile
worker's duplicates of both. Debian's default soft limit of 1024 open files would run out near
250 PCs; the hard limit (usually 524288 under systemd) is what the soft one may be raised to
without privileges, so pxetui asks for that, as nginx's worker_rlimit_nofile does.
"""

from __future__ import annotations

import resource

WANTED_OPEN_FILES = 65536


def raise_open_file_limit(wanted: int = WANTED_OPEN_FILES) -> int:
    """Lift the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft  # a container may forbid it; pxetui still runs, with fewer PCs at once
        return target
    return soft
