"""Per-machine tokens: the secret an installer sends back with its completion report.

A token appears only in the files rendered for that one machine (its preseed, its kernel
command line when the profile asks for it), so a host that knows another's MAC still cannot
mark that machine done. Tokens survive a restart (saved in the state directory), because an
install started before a restart reports after it.

A token is made only for a MAC pxetui knows (`known`: it booted through pxetui or is in the
plan), and the table has a cap: requests naming random MACs must not grow the state file
(5000 of them once did) or slow every later save.
"""

from __future__ import annotations

import concurrent.futures
import hmac
import logging
import secrets
from collections.abc import Callable

from pxetui.model.state import StateDir

STATE_NAME = "tokens"
TOKEN_BYTES = 16
MAX_TOKENS = 10_000  # far above a room of PCs; a flood of made-up MACs stops here
_log = logging.getLogger(__name__)


class TokenRefused(Exception):
    """No token for this MAC: pxetui does not know it, or the table is full."""


class Tokens:
    def __init__(
        self, state: StateDir, known: Callable[[str], bool] | None = None, *, background: bool = False
    ) -> None:
        """`known(mac)`: whether a token may be made for `mac` (None: for every MAC).

        `background`: save on a thread of its own (in order), not in `for_mac`. The services
        ask for tokens on the event loop while rendering a PC's boot script, and the two
        fsyncs of a save took ~6 ms each there: 100 PCs asking at once held every DHCP
        answer of the room behind them (bench/room). `flush()` waits for what is pending.
        """
        self._state = state
        self._known = known
        self._tokens: dict[str, str] = {}
        self._loaded = False
        self._saver: concurrent.futures.ThreadPoolExecutor | None = None
        if background:
            self._saver = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pxetui-tokens")
        self._pending: concurrent.futures.Future[None] | None = None

    def _load(self) -> None:
        if self._loaded:
            return
        doc = self._state.load(STATE_NAME) or {}
        saved = doc.get("tokens", {}) if isinstance(doc, dict) else {}
        self._tokens = {str(k): str(v) for k, v in saved.items()}
        self._loaded = True

    def for_mac(self, mac: str) -> str:
        """The token of `mac`, made (and saved) the first time it is asked for.

        Raises TokenRefused for a MAC that is not `known`, or when MAX_TOKENS are made.
        """
        if self._known is not None and not self._known(mac):
            raise TokenRefused(f"{mac} did not boot through pxetui and is not in the plan: no token for it")
        self._load()
        token = self._tokens.get(mac)
        if token is None:
            if len(self._tokens) >= MAX_TOKENS:
                raise TokenRefused(f"{MAX_TOKENS} tokens made already: no token for {mac}")
            token = secrets.token_urlsafe(TOKEN_BYTES)
            self._tokens[mac] = token
            self._save()
        return token

    def _save(self) -> None:
        document = {"version": 1, "tokens": dict(self._tokens)}  # a snapshot: the dict goes on changing
        if self._saver is None:
            self._state.save(STATE_NAME, document)
            return
        self._pending = self._saver.submit(self._state.save, STATE_NAME, document)
        self._pending.add_done_callback(_report_failure)

    def flush(self) -> None:
        """Wait until every token made so far is on disk (a background save's error is logged)."""
        pending = self._pending
        if pending is not None:
            concurrent.futures.wait([pending])

    def check(self, mac: str, token: str) -> bool:
        """True only for the token handed out to `mac` (constant-time compare)."""
        self._load()
        expected = self._tokens.get(mac)
        if expected is None or not token:
            return False
        return hmac.compare_digest(expected.encode(), token.encode())


def _report_failure(done: concurrent.futures.Future[None]) -> None:
    exc = done.exception()
    if exc is not None:
        _log.error("cannot save %s: %s", STATE_NAME, exc)
