"""The plan: CSV import names every bad line and applies nothing from a bad file."""

from pathlib import Path

import pytest

from pxetui.model.plan import Plan, PlanError, parse_plan_csv

PROFILES = {"debian-12", "ubuntu-24.04"}


def test_csv_rows_become_entries_with_normalised_macs() -> None:
    text = "mac,profile,hostname\n52-54-00-12-34-01,debian-12,lab-01\n# a comment\n\n5254.0012.3402,,\n"
    entries = parse_plan_csv(text, "lab.csv", PROFILES)
    assert [(e.mac, e.profile, e.hostname) for e in entries] == [
        ("52:54:00:12:34:01", "debian-12", "lab-01"),
        ("52:54:00:12:34:02", None, None),
    ]


def test_every_bad_row_is_named_by_line() -> None:
    text = (
        "mac,profile,hostname\n"
        "52:54:00:12:34:01,debian-12,lab-01\n"
        "not-a-mac,debian-12,lab-02\n"
        "52:54:00:12:34:03,windows-95,lab-03\n"
        "52:54:00:12:34:04,debian-12,-bad-\n"
        "52:54:00:12:34:01,ubuntu-24.04,lab-05\n"
        "52:54:00:12:34:06,debian-12,lab-06,extra\n"
    )
    with pytest.raises(PlanError) as err:
        parse_plan_csv(text, "lab.csv", PROFILES)
    problems = err.value.problems
    assert problems[0].startswith("lab.csv:3: 'not-a-mac' is not a MAC address")
    assert problems[1].startswith("lab.csv:4: unknown profile 'windows-95' (known: debian-12, ubuntu-24.04)")
    assert problems[2].startswith("lab.csv:5: hostname '-bad-' is not valid")
    assert problems[3] == "lab.csv:6: 52:54:00:12:34:01 is already on line 2"
    assert problems[4] == "lab.csv:7: 4 fields, the header has 3"
    assert len(problems) == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lab.csv: empty; expected the header 'mac,profile,hostname'"),
        (
            "52:54:00:12:34:01,debian-12\n",
            "lab.csv:1: the header must be 'mac,profile,hostname' (unknown column",
        ),
        ("mac,os\n", "lab.csv:1: the header must be 'mac,profile,hostname' (unknown column 'os')"),
        ("profile,hostname\n", "lab.csv:1: the header must be 'mac,profile,hostname' (no 'mac' column)"),
    ],
)
def test_bad_headers(text: str, message: str) -> None:
    with pytest.raises(PlanError) as err:
        parse_plan_csv(text, "lab.csv", PROFILES)
    assert err.value.problems[0].startswith(message)


def test_unknown_machine_policy_gives_the_next_n_a_profile() -> None:
    plan = Plan()
    plan.unknown.profile, plan.unknown.remaining = "debian-12", 2
    plan.assign("52:54:00:00:00:09", "ubuntu-24.04")
    assert plan.take_for_unknown("52:54:00:00:00:09") is None  # planned machines keep their plan
    first = plan.take_for_unknown("52:54:00:00:00:01")
    second = plan.take_for_unknown("52:54:00:00:00:02")
    assert first is not None and second is not None
    assert (first.profile, second.profile) == ("debian-12", "debian-12")
    assert plan.take_for_unknown("52:54:00:00:00:03") is None
    assert plan.unknown.profile is None


def test_plan_round_trips_and_exports_csv(tmp_path: Path) -> None:
    plan = Plan()
    plan.assign("52:54:00:00:00:02", "debian-12", "lab-02")
    plan.set_boot_local("52:54:00:00:00:01", True)
    copy = Plan()
    copy.load_document(plan.to_document())
    assert copy.entries == plan.entries
    assert copy.to_csv() == "mac,profile,hostname\n52:54:00:00:00:01,,\n52:54:00:00:00:02,debian-12,lab-02\n"
    again = parse_plan_csv(copy.to_csv(), "export.csv", PROFILES)
    assert [e.mac for e in again] == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
