"""The CLI defects of the independent review of main (items 1, 2, 5, 7): each runs the real command,
as tests/test_cli.py does.
"""

import os

import pytest

from pointsledger import program
from pointsledger.ledger import EXAMPLE_PROGRAM
from test_cli import SCRATCH_CACHE, run, run_json


@pytest.fixture(scope="module", autouse=True)
def scratch_cache(tmp_path_factory):
    SCRATCH_CACHE["path"] = str(tmp_path_factory.mktemp("cache"))

T_2026_01_01 = 1_767_225_600


# --- item 1: a write refused for want of a ledger leaves no ledger behind ------------------------------


@pytest.mark.parametrize("command", [
    ("redeem", "x", "m1", "1"),
    ("refund", "r", "o", "5"),
    ("adjust", "a", "m", "5", "--reason", "x"),
    ("referral", "register", "r", "a", "b"),
    ("expire",),
    ("profile", "set", "m1", "03-20"),
])
def test_a_write_command_without_a_ledger_is_refused_and_creates_nothing(tmp_path, command):
    data = tmp_path / "new"
    completed = run(*command, data=data, check=1)
    assert completed.stdout == ""
    assert completed.stderr == (f"pointsledger: NOT_FOUND: no ledger at {data} "
                                "(`pointsledger ingest` or `serve` creates one)\n")
    assert not os.path.exists(data)


def test_program_set_is_the_set_up_step_that_creates_a_ledger(tmp_path):
    data = tmp_path / "new"
    document = tmp_path / "programme.json"
    document.write_text(program.canonical_json(dict(EXAMPLE_PROGRAM, effective_from=T_2026_01_01)))
    # The new ledger gets the example programme (version 1), then the one set (version 2).
    assert run_json("program", "set", document, data=data, check=0) == {"version": 2,
                                                                         "effective_from_s": T_2026_01_01}
    assert os.path.exists(data / "data.mdb")
    assert "creates the ledger with the example programme when there is none" in " ".join(
        run("program", "set", "--help", check=0).stdout.split())


@pytest.mark.parametrize("text, problems", [
    ('{"currency": "USD"}', "invalid programme, 3 problems: earn: required; tiers: required; point_value: required"),
    ("{not json", None),
])
def test_program_set_refused_on_a_new_ledger_creates_nothing(tmp_path, text, problems):
    data = tmp_path / "new"
    document = tmp_path / "programme.json"
    document.write_text(text)
    completed = run("program", "set", document, data=data, check=1)
    (line,) = completed.stderr.splitlines()
    assert line.startswith("pointsledger: INVALID_ARGUMENT: ")
    if problems is not None:
        assert line == f"pointsledger: INVALID_ARGUMENT: {problems}"
    assert not os.path.exists(data)


# --- item 2: a bad argument value for profile set / referral register is exit 2 -------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample") / "ledger"
    run("ingest", "--sample", "--quiet", data=data, check=0)
    return data


@pytest.mark.parametrize("command,error", [
    (("profile", "set", "m1", "13-40"),
     "pointsledger profile set: error: argument MM-DD: birthday must be a date that exists (MM-DD) (got '13-40')"),
    (("profile", "set", "m1", "1-1"),
     "pointsledger profile set: error: argument MM-DD: birthday must be MM-DD (or --clear to remove it) "
     "(got '1-1')"),
    (("referral", "register", "ref9", "m1", "m1"),
     "pointsledger: error: referee_id: a member cannot refer itself (got 'm1')"),
    (("referral", "register", "", "m1", "m2"),
     "pointsledger referral register: error: argument referral_id: must be 1 to 64 bytes of UTF-8 (got '')"),
])
def test_a_bad_engagement_argument_is_a_usage_error_that_changes_nothing(sample, command, error):
    before = run("export", data=sample, check=0).stdout
    completed = run(*command, data=sample, check=2)
    assert completed.stdout == ""
    assert completed.stderr.splitlines()[-1] == error
    assert run("export", data=sample, check=0).stdout == before


@pytest.mark.parametrize("command", ["referral", "profile"])
def test_referral_and_profile_help_state_the_exit_status_rule(command):
    help_text = run(command, "--help", check=0).stdout
    assert help_text.endswith(
        "exit status: 0 done; 1 the ledger refused or the command failed; 2 bad usage or a bad argument\n"
        "value (found before the ledger is touched); 3 an ingest finished with rejected rows; 130 interrupted\n")


# --- item 5: the rollforward can cover the last day of the range; an empty period is the API's rule -------

T_2099_12_31 = 4_102_358_400
T_2100_01_01 = 4_102_444_800
T_2026_02_01 = 1_769_904_000


def test_rollforward_covers_the_last_day_of_the_event_time_range(sample):
    report = run_json("report", "rollforward", "--from", "2099-12-31", "--to", "2100-01-01", data=sample, check=0)
    assert (report["first_day"], report["last_day"], report["days"]) == ("2099-12-31", "2099-12-31", 1)
    assert (report["from_s"], report["to_s"], report["opening"], report["earned"], report["closing"]) == (
        T_2099_12_31, T_2100_01_01, 577_808, 0, 577_808)
    beyond = run("report", "rollforward", "--from", "2099-12-31", "--to", "2100-01-02", data=sample, check=2)
    assert beyond.stderr.splitlines()[-1] == (
        "pointsledger report: error: argument --to: '2100-01-02' is outside 2000-01-01 to 2100-01-01")
    late_start = run("report", "rollforward", "--from", "2100-01-01", "--to", "2100-01-01", data=sample, check=2)
    assert late_start.stderr.splitlines()[-1] == (
        "pointsledger report: error: argument --from: '2100-01-01' is outside 2000-01-01 to 2099-12-31")


def test_rollforward_of_an_empty_period_is_all_zero_as_in_the_api(sample):
    report = run_json("report", "rollforward", "--from", "2026-02-01", "--to", "2026-02-01", data=sample, check=0)
    assert report == {
        "from_s": T_2026_02_01, "to_s": T_2026_02_01, "first_day": None, "last_day": None, "days": 0,
        "opening": 98_091, "earned": 0, "adjusted": 0, "clawed_back": 0, "redeemed": 0, "expired": 0,
        "closing": 98_091, "bonus": 0,
        "breakage": {"expired": 0, "credited": 0, "decimal": None},
    }
    text = run("report", "rollforward", "--from", "2026-02-01", "--to", "2026-02-01", data=sample, check=0)
    assert text.stdout.splitlines()[0] == (
        "Points rollforward for an empty period (0 days: 2026-02-01T00:00:00Z up to 2026-02-01T00:00:00Z)")


# --- item 7: liability --json values, a directory or a file where the other is wanted, export's seq range ----


def test_liability_json_gives_every_totals_money_value(sample):
    report = run_json("report", "liability", "--as-of", "2026-06-01", data=sample, check=0)
    assert report["point_value"] == "0.01"
    assert report["all_time"] == {
        "earned": 577_808, "earned_value": "5778.08", "issued": 577_808, "issued_value": "5778.08",
        "outstanding": 577_808, "outstanding_value": "5778.08",
        "adjusted_positive": 0, "adjusted_positive_value": "0.00",
        "adjusted_negative": 0, "adjusted_negative_value": "0.00",
        "clawed_back": 0, "clawed_back_value": "0.00", "redeemed": 0, "redeemed_value": "0.00",
        "expired": 0, "expired_value": "0.00", "bonus": 0, "bonus_value": "0.00",
        "outstanding_by_tier": {"gold": 563_008, "member": 6_975, "silver": 7_825},
        "outstanding_by_tier_value": {"gold": "5630.08", "member": "69.75", "silver": "78.25"},
    }
    assert report["as_of"] == {
        "expiring_30_days": 0, "expiring_30_days_value": "0.00", "expiring_60_days": 0,
        "expiring_60_days_value": "0.00", "expiring_90_days": 0, "expiring_90_days_value": "0.00",
        "overdue": 0, "overdue_value": "0.00", "pending": 0, "pending_value": "0.00",
    }


def test_a_directory_given_as_an_input_file_is_a_usage_error(sample, tmp_path):
    before = run("export", data=sample, check=0).stdout
    ingest = run("ingest", tmp_path, data=sample, check=2)
    assert ingest.stderr.splitlines()[-1] == f"pointsledger: error: {tmp_path}: a directory, not a file of purchases"
    program_set = run("program", "set", tmp_path, data=sample, check=2)
    assert program_set.stderr.splitlines()[-1] == (
        f"pointsledger: error: {tmp_path}: a directory, not a programme (JSON) file")
    assert run("export", data=sample, check=0).stdout == before


@pytest.mark.parametrize("command", [("balance", "m1"), ("ingest", "--sample"), ("redeem", "x", "m1", "1")])
def test_data_naming_a_file_is_a_usage_error(tmp_path, command):
    not_a_directory = tmp_path / "ledger"
    not_a_directory.write_text("not a ledger")
    completed = run(*command, data=not_a_directory, check=2)
    assert completed.stderr.splitlines()[-1] == (
        f"pointsledger: error: --data {not_a_directory}: not a directory (the ledger is a directory)")
    assert not_a_directory.read_text() == "not a ledger"


def test_export_refuses_a_to_seq_before_the_from_seq(sample):
    completed = run("export", "--from-seq", "10", "--to-seq", "5", data=sample, check=2)
    assert completed.stdout == ""
    assert completed.stderr.splitlines()[-1] == (
        "pointsledger: error: --to-seq 5 is before --from-seq 10: nothing to export")
    one = run("export", "--from-seq", "10", "--to-seq", "10", data=sample, check=0)
    assert one.stdout.splitlines()[1:] == ["10,EARN,member-004,sample-00010,238,300,1767286607,1"]


# --- a usage mistake is one line on stderr (README: "Errors are one line on stderr") -------------


@pytest.mark.parametrize("arguments, line", [
    (("redeem", "x", "m1", "0"),
     "pointsledger redeem: error: argument points: 0 is not between 1 and 9,223,372,036,854,775,807"),
    (("history", "m1", "--limit", "0"), "pointsledger history: error: argument --limit: 0 is not between 1 and 10,000"),
    (("program",), "pointsledger program: error: the following arguments are required: ACTION"),
    (("estimate", "set", "e-2", "--from", "2027-01-01", "--rate", "1.5"),
     "pointsledger estimate set: error: argument --rate: must be between 0 and 1 (got '1.5')"),
    (("balance", "m1", "--no-such-option"), "pointsledger: error: unrecognized arguments: --no-such-option"),
])
def test_a_usage_mistake_is_one_line_and_exit_2(tmp_path, arguments, line):
    data = tmp_path / "new"
    completed = run(*arguments, data=data, check=2)
    assert completed.stderr == line + "\n"  # argparse's usage block is not printed: --help has it
    assert completed.stdout == ""
    assert not os.path.exists(data)
