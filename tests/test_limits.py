"""pxetui lifts its own open-file limit, within what the hard limit allows."""

from __future__ import annotations

import resource
import subprocess
import sys

PROBE = (
    "import resource, sys; from pxetui.host.limits import raise_open_file_limit;"
    " got = raise_open_file_limit(*map(int, sys.argv[1:]));"
    " print(got, *resource.getrlimit(resource.RLIMIT_NOFILE))"
)
# Even root may not raise a hard limit without CAP_SYS_RESOURCE, so the tests stay below it.
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def run_with_limit(soft: int, hard: int, *wanted: int) -> list[int]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    done = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, wanted)],
        preexec_fn=lower,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [int(x) for x in done.stdout.split()]


def test_debians_default_1024_is_raised_to_what_pxetui_wants() -> None:
    assert run_with_limit(1024, 4000, 3000) == [3000, 3000, 4000]


def test_never_above_the_hard_limit() -> None:
    assert run_with_limit(256, 3000) == [3000, 3000, 3000]  # wants 65536
    assert run_with_limit(1024, HARD) == [min(65536, HARD), min(65536, HARD), HARD]


def test_a_soft_limit_already_high_enough_is_left_alone() -> None:
    assert run_with_limit(3000, 3000) == [3000, 3000, 3000]
    assert run_with_limit(3500, 4000, 3000) == [3500, 3500, 4000]
