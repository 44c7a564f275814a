"""Tokens saved off the caller's thread (the event loop), in order, and on disk after flush()."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pxetui.model.state import StateDir
from pxetui.model.tokens import Tokens


def test_background_tokens_are_saved_on_another_thread_and_flushed(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.open()
    savers: list[threading.Thread] = []
    save = state.save

    def recording_save(name: str, document: Any) -> None:
        savers.append(threading.current_thread())
        save(name, document)

    state.save = recording_save  # type: ignore[method-assign]
    tokens = Tokens(state, background=True)
    made = [tokens.for_mac(f"52:54:00:00:01:{i:02x}") for i in range(20)]
    tokens.flush()
    assert len(savers) == 20 and threading.current_thread() not in savers  # never on the caller's thread
    again = Tokens(StateDir(tmp_path / "state"))  # what a restart reads: every token, the last included
    assert all(again.check(f"52:54:00:00:01:{i:02x}", token) for i, token in enumerate(made))
