"""pointsledger report revenue and estimate set | list (SPEC §19): output, --json, exit codes."""

import json

import pytest

from test_cli import run, run_json, scratch_cache  # noqa: F401 (the module's scratch $XDG_CACHE_HOME)

PROGRAM = {"currency": "USD", "earn": {"points": 1, "per_minor_units": 100},
           "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1}],
           "point_value": "1.00", "effective_from": "2026-01-01T00:00:00Z"}


def ledger_with_sales(tmp_path):
    data = tmp_path / "ledger"
    (tmp_path / "programme.json").write_text(json.dumps(PROGRAM), encoding="utf-8")
    (tmp_path / "sales.csv").write_text(
        "order_id,member_id,amount_minor,category,time_s\n"
        "o-1,m-1,10000,goods,1767916800\n"  # 2026-01-09: 100 points
        "o-2,m-2,20000,goods,1775001600\n",  # 2026-04-01: 200 points
        encoding="utf-8")
    run("program", "set", tmp_path / "programme.json", data=data, check=0)
    run("ingest", tmp_path / "sales.csv", "--quiet", data=data, check=0)
    return data


def test_revenue_as_json_and_by_quarter(tmp_path):
    data = ledger_with_sales(tmp_path)
    estimate = run_json("estimate", "set", "e-1", "--from", "2026-01-01", "--rate", "0.5", data=data, check=0)
    assert estimate == {"status": "APPLIED", "estimate_id": "e-1", "effective_from_s": 1767225600, "rate": "0.5000"}
    again = run_json("estimate", "set", "e-1", "--from", "2026-01-01", "--rate", "0.50", data=data, check=0)
    assert again["status"] == "DUPLICATE"
    run("redeem", "x-1", "m-1", "25", "--time", "2026-05-01", data=data, check=0)
    report = run_json("report", "revenue", "--from", "2026-01-01", "--to", "2027-01-01", "--cohort", "quarter",
                      data=data, check=0)
    # In minor units. Q1: A 10,000, S = 100 x 100 x 0.5 = 5,000, D = 3,333.33; X = 50, R = 25:
    # revenue 1,666.67 (16.67 USD). Q2: A 20,000, S = 10,000, D = 6,666.67; nothing redeemed.
    q1, q2 = report["cohorts"]
    assert (q1["cohort"], q1["allocated_minor"], q1["revenue_minor"], q1["revenue_value"], q1["liability_to_value"]) == (
        "2026-Q1", 3_333, 1_667, "16.67", "16.67")
    assert (q2["cohort"], q2["allocated_minor"], q2["revenue_minor"], q2["liability_to_minor"]) == (
        "2026-Q2", 6_667, 0, 6_667)
    assert (report["total"]["revenue_minor"], report["currency"], report["observed"]) == (1_667, "USD", None)
    listed = run_json("estimate", "list", data=data, check=0)
    assert listed == [{"status": "APPLIED", "estimate_id": "e-1", "effective_from_s": 1767225600, "rate": "0.5000"}]


@pytest.mark.parametrize("option,value", [("--from", "2026-01-01T12:00:00Z"), ("--to", "1767312000")])
def test_revenue_refuses_a_boundary_inside_a_day_in_its_own_words(tmp_path, option, value):
    given = {"--from": "2026-01-01", "--to": "2027-01-01", option: value}
    completed = run("report", "revenue", "--from", given["--from"], "--to", given["--to"], data=tmp_path / "d",
                    check=2)
    assert completed.stdout == ""
    assert completed.stderr.splitlines()[-1] == (
        f"pointsledger report: error: argument {option}: {value!r} is not a date: give YYYY-MM-DD (revenue "
        "positions are known only at UTC midnights: --from and --to are UTC days)")


def test_operator_mistakes_are_one_line(tmp_path):
    data = ledger_with_sales(tmp_path)
    missing = run("report", "revenue", "--from", "2026-01-01", "--to", "2027-01-01", data=data, check=1)
    assert missing.stderr.strip() == (
        "pointsledger: FAILED_PRECONDITION: no redemption estimate is set: set one before asking for revenue")
    bad_rate = run("estimate", "set", "e-1", "--from", "2026-01-01", "--rate", "1.5", data=data, check=2)
    assert bad_rate.stderr.strip().endswith("argument --rate: must be between 0 and 1 (got '1.5')")
    run("estimate", "set", "e-1", "--from", "2026-06-01", "--rate", "0.5", data=data, check=0)
    earlier = run("estimate", "set", "e-2", "--from", "2026-01-01", "--rate", "0.5", data=data, check=1)
    assert earlier.stderr.count("\n") == 1 and "before the previous estimate's" in earlier.stderr
    backwards = run("report", "revenue", "--from", "2027-01-01", "--to", "2026-01-01", data=data, check=2)
    assert "--to must be a later date than --from" in backwards.stderr
    assert "--cohort belongs to `report revenue`" in run("report", "liability", "--cohort", "year", data=data,
                                                         check=2).stderr
    for stderr in (missing.stderr, bad_rate.stderr, earlier.stderr, backwards.stderr):
        assert "Traceback" not in stderr
