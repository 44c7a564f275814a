"""The session report (CSV + JSON): columns, results, stage times, spreadsheet safety."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import tui_scenario as sc

from pxetui.errors import UsageError
from pxetui.model.report import REPORT_COLUMNS, report_csv, report_rows, write_report


@pytest.fixture
def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = sc.open_session(tmp_path / "state")
    sc.plan_lab(s)
    sc.boot_events(s)
    return s


def test_rows_cover_plan_and_seen_machines_with_results(session) -> None:  # type: ignore[no-untyped-def]
    rows = {r["mac"]: r for r in report_rows(session.registry, session.plan)}
    assert set(rows) == {sc.PC_UEFI, sc.PC_BIOS, sc.PC_WAITING, sc.PC_HTTPBOOT, sc.PC_FAILED, sc.PC_LOADER}
    bios = rows[sc.PC_BIOS]
    assert (bios["result"], bios["profile"], bios["hostname"], bios["ip"]) == (
        "done",
        "debian-12-local",
        "lab-pc-02",
        "198.18.0.101",
    )
    assert bios["t_dhcp"] == "2027-01-15T08:00:02Z" and bios["t_done"] == "2027-01-15T08:01:00Z"
    assert bios["elapsed_s"] == 58.0 and bios["firmware"] == "BIOS"
    assert rows[sc.PC_FAILED]["result"] == "failed" and rows[sc.PC_FAILED]["error"] == "no disk found"
    assert rows[sc.PC_UEFI]["result"] == "in progress" and rows[sc.PC_UEFI]["t_kernel"] is not None
    waiting = rows[sc.PC_WAITING]
    assert waiting["result"] == "not booted" and waiting["first_seen"] is None and waiting["t_dhcp"] is None
    assert rows[sc.PC_HTTPBOOT]["profile"] is None


def test_boot_local_shows_as_local_disk(session) -> None:  # type: ignore[no-untyped-def]
    session.set_boot_local(sc.PC_BIOS)
    rows = {r["mac"]: r for r in report_rows(session.registry, session.plan)}
    assert rows[sc.PC_BIOS]["profile"] == "local disk"


def test_write_report_files_agree(session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv_path, json_path = session.export_report(tmp_path)
    table = list(csv.DictReader(csv_path.open()))
    assert tuple(table[0]) == REPORT_COLUMNS
    doc = json.loads(json_path.read_text())
    assert doc["version"] == 1 and len(doc["machines"]) == len(table) == 6
    assert [r["mac"] for r in table] == [m["mac"] for m in doc["machines"]] == sorted(r["mac"] for r in table)


def test_text_from_the_network_never_starts_a_spreadsheet_formula(session) -> None:  # type: ignore[no-untyped-def]
    sc.publish(session, 99, "install.failed", sc.PC_UEFI, reason='=HYPERLINK("http://x","click")', client="198.18.0.100")
    text = report_csv(report_rows(session.registry, session.plan))
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["mac"] == sc.PC_UEFI)
    assert row["error"] == '\'=HYPERLINK("http://x","click")'


def test_report_into_a_missing_directory_is_a_usage_error(session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="is not a directory"):
        write_report(tmp_path / "nope", session.registry, session.plan)
    assert not (tmp_path / "nope").exists()
