"""State files are replaced atomically: a crash between write and rename keeps the old file."""

import json
import os
from pathlib import Path

import pytest

from pxetui.errors import UsageError
from pxetui.model.state import StateDir
from pxetui.session import Session, SessionConfig


def test_crash_between_write_and_rename_keeps_the_old_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path)
    state.open()
    state.save("plan", {"machines": ["old"]})

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt("power cut between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        state.save("plan", {"machines": ["new"]})
    monkeypatch.undo()
    assert state.load("plan") == {"machines": ["old"]}
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_a_temp_file_left_by_kill_9_is_removed_on_open(tmp_path: Path) -> None:
    (tmp_path / ".tmp-plan.json.abc").write_text('{"half": ')
    (tmp_path / "plan.json").write_text('{"machines": []}')
    state = StateDir(tmp_path)
    state.open()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
    assert state.load("plan") == {"machines": []}


def test_a_damaged_file_is_kept_aside_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text("{not json")
    state = StateDir(tmp_path)
    state.open()
    with pytest.raises(UsageError, match="is not valid JSON.*moved to"):
        state.load("plan")
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("plan.json.corrupt-")]
    assert len(kept) == 1 and kept[0].read_text() == "{not json"


def test_unwritable_state_dir_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot create the state directory .*--state DIR"):
        StateDir(blocker / "state").open()


def test_every_session_action_is_on_disk_before_it_returns(tmp_path: Path) -> None:
    session = Session(SessionConfig(interface="unused", state_dir=tmp_path))
    session.open()
    session.assign("52-54-00-12-34-01", "debian-12-local", "lab-01")
    on_disk = json.loads((tmp_path / "plan.json").read_text())
    assert on_disk["machines"][0]["profile"] == "debian-12-local"
    session.set_boot_local("52:54:00:12:34:02")
    session.set_unknown_policy("local-disk", 3)
    reopened = Session(SessionConfig(interface="unused", state_dir=tmp_path))
    reopened.open()
    assert reopened.plan.entries == session.plan.entries
    assert (reopened.plan.unknown.profile, reopened.plan.unknown.remaining) == ("local-disk", 3)
    assert set(reopened.registry.machines) == {"52:54:00:12:34:01", "52:54:00:12:34:02"}


def test_session_refuses_unknown_profiles_and_bad_hostnames(tmp_path: Path) -> None:
    session = Session(SessionConfig(interface="unused", state_dir=tmp_path))
    session.open()
    with pytest.raises(UsageError, match="unknown profile 'nope' .*pxetui profiles"):
        session.assign("52:54:00:12:34:01", "nope")
    with pytest.raises(UsageError, match="hostname 'a_b' is not valid"):
        session.assign("52:54:00:12:34:01", "local-disk", "a_b")
    with pytest.raises(UsageError, match="number of unknown machines"):
        session.set_unknown_policy("local-disk", 0)
    assert session.plan.entries == {}


def test_bad_plan_csv_changes_nothing(tmp_path: Path) -> None:
    session = Session(SessionConfig(interface="unused", state_dir=tmp_path / "s"))
    session.open()
    session.assign("52:54:00:12:34:01", "local-disk")
    csv = tmp_path / "lab.csv"
    csv.write_text("mac,profile,hostname\n52:54:00:12:34:02,local-disk,a\n52:54:00:12:34:03,nope,b\n")
    before = (tmp_path / "s" / "plan.json").read_text()
    with pytest.raises(UsageError, match="lab.csv:3: unknown profile 'nope'"):
        session.import_plan_csv(csv)
    assert list(session.plan.entries) == ["52:54:00:12:34:01"]
    assert (tmp_path / "s" / "plan.json").read_text() == before


def test_unplanned_machines_are_named_by_the_pattern_in_boot_order(tmp_path: Path) -> None:
    from pxetui.boot.unattended import InstallSettings
    from pxetui.model.events import DhcpDiscover

    config = SessionConfig(
        interface="unused", state_dir=tmp_path, install=InstallSettings(hostname_pattern="lab-{n:02}")
    )
    session = Session(config)
    session.open()
    session.assign("52:54:00:00:00:09", "local-disk", "teacher")
    for i, mac in enumerate(["52:54:00:00:00:03", "52:54:00:00:00:01", "52:54:00:00:00:09"]):
        session.bus.publish(DhcpDiscover(mac=mac, arch=7, vendor_class="PXEClient", ts=100.0 + i))
    assert session.hostname_for("52:54:00:00:00:03") == "lab-01"
    assert session.hostname_for("52:54:00:00:00:01") == "lab-02"
    assert session.hostname_for("52:54:00:00:00:09") == "teacher"


def test_bad_ssh_key_or_pattern_is_a_usage_error_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    key = tmp_path / "key.pub"
    key.write_text("hello\n")
    for args in (["--ssh-key", str(key)], ["--hostname-pattern", "pc-{x}"]):
        done = subprocess.run(
            [sys.executable, "-m", "pxetui", "eth9", "--headless", "--state", str(tmp_path), *args],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, done.stderr
        assert ("not an SSH public key" in done.stderr) or ("hostname pattern" in done.stderr)


def test_state_writer_saves_in_order_off_the_callers_thread_and_reports_errors(tmp_path: Path) -> None:
    import threading

    from pxetui.model.state import StateWriter

    state = StateDir(tmp_path / "s")
    state.open()
    errors: list[tuple[str, str]] = []
    writer = StateWriter(state, lambda name, exc: errors.append((name, str(exc))), "test-writer")
    threads: list[str] = []
    save = state.save

    def recording_save(name: str, document: object) -> None:
        threads.append(threading.current_thread().name)
        save(name, document)

    state.save = recording_save  # type: ignore[method-assign]
    for n in range(50):
        writer.save("machines", {"n": n})
    writer.close()
    assert state.load("machines") == {"n": 49}  # the last one handed over is the one on disk
    assert threads and all(t.startswith("test-writer") for t in threads)

    def disk_full(name: str, document: object) -> None:
        raise OSError(28, "No space left on device")

    state.save = disk_full  # type: ignore[method-assign]
    writer = StateWriter(state, lambda name, exc: errors.append((name, str(exc))), "test-writer")
    writer.save("plan", {"x": 1})
    writer.close()
    assert errors == [("plan", "[Errno 28] No space left on device")]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("plan", '["a", "list"]'),
        ("plan", '{"machines": "not a table"}'),
        ("plan", '{"machines": [{"mac": "52:54:00:00:00:01", "colour": "red"}]}'),
        ("machines", '{"machines": [17]}'),
        ("machines", '"just a string"'),
    ],
)
def test_valid_json_of_the_wrong_shape_is_damaged_like_bad_json(tmp_path: Path, name: str, content: str) -> None:
    """Every damaged state file gets the same treatment at start: kept aside, one clear message."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / f"{name}.json").write_text(content)
    session = Session(SessionConfig(interface="unused", state_dir=state_dir))
    with pytest.raises(UsageError, match=rf"{name}.json is not a pxetui {name} file .*moved to .*corrupt"):
        session.open()
    assert not (state_dir / f"{name}.json").exists()
    assert [p.read_text() for p in state_dir.glob(f"{name}.json.corrupt-*")] == [content]
    again = Session(SessionConfig(interface="unused", state_dir=state_dir))
    again.open()  # the next start begins with an empty one
