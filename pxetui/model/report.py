"""The session report: one row per machine (planned or seen), written as CSV and JSON.

It answers "which PCs installed what, when, and which failed" after the session. Times are
ISO 8601 in UTC so reports from different laptops compare. Text that came off the network
(error reasons) is neutralised for spreadsheets: a cell never starts a formula.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from pxetui.errors import UsageError
from pxetui.model.plan import Plan
from pxetui.model.registry import Registry, Stage
from pxetui.model.state import atomic_write_bytes

REPORT_NAME = "pxetui-report"
STAGE_COLUMNS = tuple(f"t_{stage.value}" for stage in Stage if stage is not Stage.WAITING)
REPORT_COLUMNS = (
    "mac",
    "vendor",
    "hostname",
    "profile",
    "ip",
    "firmware",
    "stage",
    "result",
    "boots",
    "first_seen",
    *STAGE_COLUMNS,
    "elapsed_s",
    "error",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def iso_utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def result_of(stage: Stage) -> str:
    if stage is Stage.DONE:
        return "done"
    if stage is Stage.FAILED:
        return "failed"
    if stage is Stage.WAITING:
        return "not booted"
    return "in progress"


def report_rows(registry: Registry, plan: Plan) -> list[dict[str, Any]]:
    """Every machine of the plan and of the registry, sorted by MAC."""
    rows = []
    for mac in sorted(set(registry.machines) | set(plan.entries)):
        machine = registry.machines.get(mac)
        entry = plan.get(mac)
        row: dict[str, Any] = dict.fromkeys(REPORT_COLUMNS)
        row["mac"] = mac
        row["hostname"] = entry.hostname if entry else None
        # An installed machine keeps its profile in the report; only the next boot is the disk's.
        local = entry is not None and entry.boot_local and entry.installed is None
        row["profile"] = ("local disk" if local else entry.profile) if entry else None
        if machine is None:
            row["stage"], row["result"], row["boots"] = Stage.WAITING.value, result_of(Stage.WAITING), 0
        else:
            row["vendor"] = machine.vendor or None
            row["ip"] = machine.ip
            row["firmware"] = machine.firmware or None
            row["stage"] = machine.stage.value
            row["result"] = result_of(machine.stage)
            row["boots"] = machine.boots
            if machine.stage is not Stage.WAITING:
                row["first_seen"] = iso_utc(machine.first_seen)
                for column in STAGE_COLUMNS:
                    row[column] = iso_utc(machine.stage_times.get(column[2:]))
                elapsed = machine.elapsed
                row["elapsed_s"] = round(elapsed, 1) if elapsed is not None else None
            row["error"] = machine.last_error
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def report_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in REPORT_COLUMNS])
    return out.getvalue()


def report_json(rows: list[dict[str, Any]], generated: float) -> str:
    doc = {"version": 1, "generated": iso_utc(generated), "machines": rows}
    return json.dumps(doc, indent=1) + "\n"


def write_report(
    directory: Path, registry: Registry, plan: Plan, now: float | None = None
) -> tuple[Path, Path]:
    """Write DIRECTORY/pxetui-report.csv and .json atomically; returns both paths."""
    if not directory.is_dir():
        raise UsageError(
            f"cannot write the report: {directory} is not a directory; create it or pick another"
        )
    rows = report_rows(registry, plan)
    csv_path = directory / f"{REPORT_NAME}.csv"
    json_path = directory / f"{REPORT_NAME}.json"
    try:
        atomic_write_bytes(csv_path, report_csv(rows).encode())
        atomic_write_bytes(json_path, report_json(rows, time.time() if now is None else now).encode())
    except OSError as exc:
        raise UsageError(f"cannot write the report in {directory}: {exc.strerror or exc}") from exc
    return csv_path, json_path
