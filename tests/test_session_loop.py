"""The services' own loop thread: coroutines and operator actions land there, errors come back.

Everything here runs without a network: the session is opened, never started, and its bus is
bound to the SessionLoop the way Session.start binds it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tui_scenario as sc
from textual.widgets import DataTable, OptionList

from pxetui.errors import UsageError
from pxetui.host.mac import MacError
from pxetui.model.events import PlanEvent
from pxetui.session import Session
from pxetui.session_loop import SessionLoop
from pxetui.tui.app import PxetuiApp
from pxetui.tui.screens.forms import FormScreen
from pxetui.tui.screens.main import MainScreen


@pytest.fixture
def services() -> Iterator[SessionLoop]:
    with SessionLoop() as loop:
        yield loop


def bind(session: Session, services: SessionLoop) -> None:
    async def bind_here() -> None:
        session.bus.bind_loop(asyncio.get_running_loop())

    services.run_sync(bind_here(), timeout=5)


def test_coroutines_run_on_the_loop_thread_and_errors_come_back(services: SessionLoop) -> None:
    async def where() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    async def fails() -> None:
        raise UsageError("port 67 is taken")

    assert services.run_sync(where(), timeout=5) == services.thread_id != threading.get_ident()
    with pytest.raises(UsageError, match="port 67 is taken"):
        services.run_sync(fails(), timeout=5)

    async def from_another_loop() -> int:
        return await services.run(where())

    assert asyncio.run(from_another_loop()) == services.thread_id


def test_close_cancels_what_is_left_and_refuses_more_work() -> None:
    services = SessionLoop()
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def start_forever() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    services.run_sync(start_forever(), timeout=5)
    services.close()
    services.close()  # twice is fine
    assert cancelled.is_set() and not services.running
    with pytest.raises(RuntimeError, match="closed"):
        services.run_sync(asyncio.sleep(0))


def test_operator_actions_from_another_thread_run_on_the_loop_thread(
    tmp_path: Path, services: SessionLoop
) -> None:
    session = sc.open_session(tmp_path / "state")
    bind(session, services)
    changed_on: list[tuple[str, int]] = []
    plan_changed = session._plan_changed

    def record(event: PlanEvent) -> None:
        changed_on.append((event.name.removeprefix("plan."), threading.get_ident()))
        plan_changed(event)

    session._plan_changed = record  # type: ignore[method-assign]

    session.add_machine("52-54-00-AA-BB-01", "lab-pc-01")
    session.assign("52:54:00:aa:bb:01", "debian-12-local")
    session.set_boot_local("52:54:00:aa:bb:01")
    # The plan changed on the loop thread, each action finished before the call returned.
    assert changed_on == [(a, services.thread_id) for a in ("add", "assign", "boot_local")]
    entry = session.plan.get("52:54:00:aa:bb:01")
    assert entry is not None and entry.profile == "debian-12-local" and entry.boot_local
    assert session.registry.get("52:54:00:aa:bb:01") is not None

    # The action's own error reaches the caller's thread, and the plan is unchanged.
    with pytest.raises(UsageError, match="unknown profile 'windows-11'"):
        session.assign("52:54:00:aa:bb:01", "windows-11")
    with pytest.raises(MacError):
        session.add_machine("52:54:00:zz:bb:01")
    assert entry.profile == "debian-12-local" and len(session.plan.entries) == 1


def test_an_action_while_the_loop_is_stuck_says_so(
    tmp_path: Path, services: SessionLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pxetui.session as session_module

    monkeypatch.setattr(session_module, "ACTION_TIMEOUT", 0.2)
    session = sc.open_session(tmp_path / "state")
    bind(session, services)
    services.loop.call_soon_threadsafe(time.sleep, 1.0)  # a loop that does not turn for 1 s
    with pytest.raises(Exception, match="did not take add_machine within"):
        session.add_machine("52:54:00:aa:bb:02")


async def test_the_tui_shows_events_from_the_loop_thread_and_assigns_through_it(
    tmp_path: Path, services: SessionLoop
) -> None:
    session = sc.open_session(tmp_path / "state")
    bind(session, services)
    app = PxetuiApp(
        session,
        start_session=False,
        list_interfaces=sc.fake_interfaces,
        clock=lambda: sc.NOW,
        session_loop=services,
    )
    async with app.run_test(size=sc.SIZE) as pilot:
        delivered: list[int] = []

        async def boot_on_the_loop() -> None:
            session.bus.subscribe(lambda e: delivered.append(threading.get_ident()))
            sc.boot_events(session)

        await services.run(boot_on_the_loop())
        app.flush_updates()
        await pilot.pause()
        assert set(delivered) == {services.thread_id}
        screen = app.screen
        assert isinstance(screen, MainScreen)
        table = screen.query_one("#machines", DataTable)
        assert table.row_count == 5
        assert "198.18.0.100" in " ".join(str(c) for c in table.get_row(sc.PC_UEFI))

        table.move_cursor(row=table.get_row_index(sc.PC_HTTPBOOT))
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, FormScreen)
        choices = form.query_one("#choices", OptionList)
        ids = [choices.get_option_at_index(i).id for i in range(choices.option_count)]
        choices.focus()
        choices.highlighted = ids.index("debian-12-local")
        await pilot.press("enter")
        await pilot.pause()
        entry = session.plan.get(sc.PC_HTTPBOOT)
        assert entry is not None and entry.profile == "debian-12-local"
        app.flush_updates()
        await pilot.pause()
        assert "debian-12-local" in " ".join(str(c) for c in table.get_row(sc.PC_HTTPBOOT))
        assert any("plan.assign" in line and sc.PC_HTTPBOOT in line for line in screen.log_lines)
