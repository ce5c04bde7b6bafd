"""The CLI over a small sample worked by hand: every command's output, exact.

tests/test_cli.py runs the commands over the bundled 2,000-row sample, whose totals
nobody worked out by hand; here six purchases under the SPEC §3 example programme
(the one a new CLI ledger gets), each figure derived below from the rules:

  a1 ann 12,345 grocery     2026-03-15  member ×1: floor(123.45)          = 123   spend 12,345
  a2 ann 40,000 electronics 2026-03-16  ×2:        800                    = 800   spend 52,345 (silver from here)
  a3 ann 10,000 grocery     2026-03-17  silver ×1.25: 125                 = 125   spend 62,345
  a4 ann  5,000 gift_cards  2026-03-18  ×0                                = 0     spend 67,345
  a5 ann  9,999 grocery     2026-12-15  silver ×1.25, December ×2: floor(249.975) = 249   spend 77,344
  b1 bob 20,050 grocery     2026-12-31T23:59:59Z  December ×2 (its end is exclusive) = 401
ann 1,297 (expiring 2027-04-01: 1,048; 2028-01-01: 249), bob 401 (2028-01-01); 1,698 in all.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

PURCHASES_CSV = """order_id,member_id,amount_minor,category,time_s
a1,ann,12345,grocery,1773532800
a2,ann,40000,electronics,1773619200
a3,ann,10000,grocery,1773705600
a4,ann,5000,gift_cards,1773792000
a5,ann,9999,grocery,1797292800
b1,bob,20050,grocery,1798761599
"""
T_2026_12_31 = 1_798_675_200  # 2026-12-31T00:00:00Z
T_2027_01_10 = 1_799_539_200  # 2027-01-10T00:00:00Z
T_2027_03_01 = 1_803_859_200  # 2027-03-01T00:00:00Z
T_2027_04_01 = 1_806_537_600  # 2027-04-01T00:00:00Z
T_2028_01_01 = 1_830_297_600  # 2028-01-01T00:00:00Z


def run(data, *arguments, check=0):
    environment = {name: value for name, value in os.environ.items() if name != "POINTSLEDGER_DATA"}
    environment["XDG_CACHE_HOME"] = str(data.parent / "cache")
    if environment.get("PYTHONPATH"):
        environment["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(entry) for entry in environment["PYTHONPATH"].split(os.pathsep))
    completed = subprocess.run(
        [sys.executable, "-m", "pointsledger", "--data", str(data)] + [str(argument) for argument in arguments],
        cwd=data.parent, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == check, (arguments, completed.returncode, completed.stdout, completed.stderr)
    return completed


def run_json(data, *arguments):
    return json.loads(run(data, *arguments, "--json").stdout)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand-worked")
    (root / "purchases.csv").write_text(PURCHASES_CSV)
    data = root / "ledger"
    ingest = run_json(data, "ingest", root / "purchases.csv")
    assert {key: ingest[key] for key in ("rows", "applied", "duplicates", "rejected", "points")} == {
        "rows": 6, "applied": 6, "duplicates": 0, "rejected": 0, "points": 1_698}
    return data


@pytest.fixture
def ledger(sample, tmp_path):
    """A copy of the sample store for one test, beside its own purchases.csv."""
    data = tmp_path / "ledger"
    shutil.copytree(sample, data)
    (tmp_path / "purchases.csv").write_text(PURCHASES_CSV)
    return data


def test_ingest_again_changes_nothing(ledger):
    again = run_json(ledger, "ingest", ledger.parent / "purchases.csv")
    assert (again["applied"], again["duplicates"], again["rejected"], again["points"]) == (0, 6, 0, 0)
    assert run(ledger, "ingest", ledger.parent / "purchases.csv").stdout.startswith(
        "purchases.csv: 6 rows: 0 applied, 6 duplicates, 0 rejected, 0 points")


def test_balance(ledger):
    assert run_json(ledger, "balance", "ann", "--as-of", "2026-12-31") == {
        "member_id": "ann", "as_of_s": T_2026_12_31,
        "as_of": {"available": 1_297, "next_expiry_s": T_2027_04_01, "next_expiry_points": 1_048,
                  "tier": "silver", "tier_year": 2026, "spend_minor": 77_344,
                  "pending": 0, "next_release_s": None, "next_release_points": 0, "milestones": []},
        "all_time": {"balance": 1_297, "debt": 0, "earned": 1_297, "redeemed": 0, "expired": 0,
                     "clawed_back": 0, "adjusted": 0, "bonus": 0},
    }
    text = run(ledger, "balance", "bob", "--as-of", "2026-12-31").stdout.splitlines()
    assert "  balance             401" in text and "  tier                member" in text
    assert "  next_expiry_s       1830297600 (2028-01-01T00:00:00Z)" in text
    assert "  spend_minor         20,050" in text


def test_history(ledger):
    assert run_json(ledger, "history", "ann", "--limit", "2") == {
        "entries": [
            {"seq": 5, "kind": "EARN", "member_id": "ann", "ref_id": "a5", "points": 249, "balance": 1_297,
             "time_s": 1_797_292_800, "program_version": 1},
            {"seq": 4, "kind": "EARN", "member_id": "ann", "ref_id": "a4", "points": 0, "balance": 1_048,
             "time_s": 1_773_792_000, "program_version": 1},
        ],
        "next_before_seq": 4,
    }


def test_refund_and_its_duplicate(ledger):
    # 10,000 of a2's 40,000: floor(800 × 10,000 / 40,000) = 200 clawed back, from 1,297.
    assert run_json(ledger, "refund", "r1", "a2", "10000", "--time", "2027-01-10") == {
        "status": "APPLIED", "seq": 7, "points": -200, "balance": 1_097}
    assert run_json(ledger, "refund", "r1", "a2", "10000", "--time", "2027-01-10") == {
        "status": "DUPLICATE", "seq": 7, "points": -200, "balance": 1_097}


def test_redeem_adjust_expire(ledger):
    assert run_json(ledger, "redeem", "rd1", "ann", "100", "--time", "2027-01-10") == {
        "status": "APPLIED", "seq": 7, "points": -100, "balance": 1_197}
    assert run_json(ledger, "adjust", "adj1", "bob", "-1", "--reason", "typo", "--time", "2027-01-10") == {
        "status": "APPLIED", "seq": 8, "points": -1, "balance": 400}
    # ann's 2027-04-01 bucket: 1,048 − the 100 redeemed (soonest first) = 948.
    assert run_json(ledger, "expire", "--as-of", "2027-04-01") == {
        "as_of_s": T_2027_04_01, "members": 1, "points": 948}
    assert run_json(ledger, "verify") == {"entries": 9, "members": 2, "ok": True, "problems": []}


def test_reports(ledger):
    # As of 2027-03-01: ann's 1,048 expire 2027-04-01 (within 60 and 90 days, not 30).
    assert run_json(ledger, "report", "liability", "--as-of", "2027-03-01") == {
        "as_of_s": T_2027_03_01, "currency": "USD", "point_value": "0.01",
        "all_time": {"issued": 1_698, "earned": 1_698, "bonus": 0, "adjusted_positive": 0, "adjusted_negative": 0,
                     "clawed_back": 0, "redeemed": 0, "expired": 0, "outstanding": 1_698,
                     "outstanding_value": "16.98", "outstanding_by_tier": {"member": 401, "silver": 1_297, "gold": 0},
                     # each total's money value, points x 0.01 (review item 7)
                     "issued_value": "16.98", "earned_value": "16.98", "bonus_value": "0.00",
                     "adjusted_positive_value": "0.00", "adjusted_negative_value": "0.00",
                     "clawed_back_value": "0.00", "redeemed_value": "0.00", "expired_value": "0.00",
                     "outstanding_by_tier_value": {"member": "4.01", "silver": "12.97", "gold": "0.00"}},
        "as_of": {"overdue": 0, "expiring_30_days": 0, "expiring_60_days": 1_048, "expiring_90_days": 1_048,
                  "pending": 0, "overdue_value": "0.00", "expiring_30_days_value": "0.00",
                  "expiring_60_days_value": "10.48", "expiring_90_days_value": "10.48", "pending_value": "0.00"},
    }
    assert run_json(ledger, "report", "rollforward", "--from", "2026-01-01", "--to", "2027-01-01") == {
        "from_s": 1_767_225_600, "to_s": 1_798_761_600, "first_day": "2026-01-01", "last_day": "2026-12-31",
        "days": 365, "opening": 0, "earned": 1_698, "bonus": 0, "adjusted": 0, "clawed_back": 0, "redeemed": 0,
        "expired": 0, "closing": 1_698,
        "breakage": {"expired": 0, "credited": 1_698, "decimal": "0.000000"},
    }


def test_export_info_verify(ledger):
    run(ledger, "export", "--output", ledger.parent / "journal.csv")
    assert (ledger.parent / "journal.csv").read_text().splitlines() == [
        "seq,kind,member_id,ref_id,points,balance,time_s,program_version",
        "1,EARN,ann,a1,123,123,1773532800,1",
        "2,EARN,ann,a2,800,923,1773619200,1",
        "3,EARN,ann,a3,125,1048,1773705600,1",
        "4,EARN,ann,a4,0,1048,1773792000,1",
        "5,EARN,ann,a5,249,1297,1797292800,1",
        "6,EARN,bob,b1,401,401,1798761599,1",
    ]
    info = run_json(ledger, "info")
    counts = ("journal_entries", "members", "orders", "refunds", "redemptions", "adjustments", "categories",
              "programme_versions")
    assert {key: info[key] for key in counts} == {
        "journal_entries": 6, "members": 2, "orders": 6, "refunds": 0, "redemptions": 0, "adjustments": 0,
        "categories": 3, "programme_versions": 1}
    assert info["store_bytes"] == os.path.getsize(ledger / "data.mdb")
    assert run(ledger, "verify").stdout == "ok: 6 journal entries, 2 members, every invariant holds\n"
