"""The CLI's engagement commands (SPEC §14, §17): referral, profile, balance progress bars."""

import pointsledger
from support import T_2026_03_15, simple_program
from test_cli import run, run_json, scratch_cache  # noqa: F401 (the module's scratch $XDG_CACHE_HOME)

PROGRAMME = simple_program(
    welcome_bonus=100, referral={"referrer_points": 500, "referee_points": 250},
    milestones=[{"id": "ten-orders", "purchases": 10, "bonus_points": 500},
                {"id": "big-spender", "spend_minor": 100_000, "bonus_points": 1000}],
    birthday={"multiplier": 2}, pending_days=30,
)


def ledger_with_purchases(path):
    """alice: 4 purchases of 10,000 on 2026-03-15 (100 each, welcome 100): balance 500, all pending."""
    with pointsledger.Ledger(path) as ledger:
        ledger.set_program(PROGRAMME)
        for index in range(4):
            ledger.purchase(f"o-{index}", "alice", 10_000, "grocery", T_2026_03_15)


def test_balance_prints_milestone_progress_as_bars_and_as_data(tmp_path):
    data = tmp_path / "ledger"
    ledger_with_purchases(data)
    # 4 of 10 purchases and 40,000 of 100,000: 8 of 20 cells each.
    shown = run("balance", "alice", "--as-of", "2026-03-20", data=data, check=0).stdout
    assert "  pending              500\n" in shown
    assert "  next_release_s       1776124800 (2026-04-14T00:00:00Z)\n" in shown
    assert "  milestones:\n    ten-orders   [########------------]  4/10 purchases\n" in shown
    assert "    big-spender  [########------------]  40,000/100,000 spent (minor units)\n" in shown
    assert "  bonus                100\n" in shown
    fields = run_json("balance", "alice", "--as-of", "2026-03-20", data=data, check=0)
    assert (fields["all_time"]["balance"], fields["as_of"]["available"], fields["as_of"]["pending"],
            fields["all_time"]["bonus"]) == (500, 0, 500, 100)
    assert fields["as_of"]["milestones"] == [
        {"milestone_id": "ten-orders", "kind": "purchases", "target": 10, "progress": 4, "reached": False},
        {"milestone_id": "big-spender", "kind": "spend_minor", "target": 100_000, "progress": 40_000,
         "reached": False},
    ]


def test_referral_and_profile_commands(tmp_path):
    data = tmp_path / "ledger"
    ledger_with_purchases(data)
    registered = run_json("referral", "register", "ref-1", "alice", "bob", "--time", "2026-03-15", data=data, check=0)
    assert (registered["status"], registered["settled"], registered["order_id"]) == ("APPLIED", False, None)
    again = run_json("referral", "register", "ref-1", "alice", "bob", data=data, check=0)
    assert again["status"] == "DUPLICATE"
    shown = run_json("referral", "show", "ref-1", data=data, check=0)
    assert (shown["referrer_id"], shown["referee_id"], shown["time_s"]) == ("alice", "bob", T_2026_03_15)
    # A bad argument value, found before the ledger is touched: exit status 2 (review item 2).
    self_referral = run("referral", "register", "ref-2", "alice", "alice", data=data, check=2)
    assert self_referral.stderr.splitlines()[-1] == (
        "pointsledger: error: referee_id: a member cannot refer itself (got 'alice')")
    assert run("referral", "show", "ref-9", data=data, check=1).stderr.startswith("pointsledger: NOT_FOUND:")

    assert run_json("profile", "set", "bob", "03-20", data=data, check=0) == {"member_id": "bob", "birthday": "03-20"}
    assert run_json("profile", "show", "bob", data=data, check=0)["birthday"] == "03-20"
    refused = run("profile", "set", "bob", "02-30", data=data, check=2)
    assert refused.stderr.splitlines()[-1] == (
        "pointsledger profile set: error: argument MM-DD: birthday must be a date that exists (MM-DD) (got '02-30')")
    run("profile", "set", "bob", data=data, check=2)  # neither a birthday nor --clear
    both = run("profile", "set", "bob", "04-01", "--clear", data=data, check=2)  # both: refused, nothing changed
    assert both.stderr.splitlines()[-1] == (
        "pointsledger: error: profile set takes a birthday or --clear, not both (got '04-01' and --clear)")
    assert run_json("profile", "show", "bob", data=data, check=0)["birthday"] == "03-20"
    assert run_json("profile", "set", "bob", "--clear", data=data, check=0)["birthday"] is None
    assert run("profile", "show", "carol", data=data, check=1).stderr.startswith("pointsledger: NOT_FOUND:")


def test_export_carries_bonus_entries(tmp_path):
    data = tmp_path / "ledger"
    ledger_with_purchases(data)
    rows = run("export", data=data, check=0).stdout.splitlines()
    assert rows[0] == "seq,kind,member_id,ref_id,points,balance,time_s,program_version"
    assert rows[1:3] == [f"1,EARN,alice,o-0,100,100,{T_2026_03_15},1", f"2,BONUS,alice,welcome,100,200,{T_2026_03_15},1"]


def test_reports_carry_the_bonus_line_pending_points_and_breakage(tmp_path):
    data = tmp_path / "ledger"
    ledger_with_purchases(data)  # earned 400, welcome 100, all pending on 2026-03-20
    report = run_json("report", "liability", "--as-of", "2026-03-20", data=data, check=0)
    assert (report["all_time"]["earned"], report["all_time"]["bonus"], report["all_time"]["issued"],
            report["as_of"]["pending"]) == (400, 100, 500, 500)
    text = run("report", "liability", "--as-of", "2026-03-20", data=data, check=0).stdout
    assert "    bonus                                        100                1.00\n" in text
    assert "    pending (return window)                      500                5.00\n" in text
    rolled = run_json("report", "rollforward", "--from", "2026-03-01", "--to", "2026-04-01", data=data, check=0)
    assert (rolled["earned"], rolled["bonus"], rolled["closing"]) == (400, 100, 500)
    assert rolled["breakage"] == {"expired": 0, "credited": 500, "decimal": "0.000000"}
    # In the text reports bonus follows earned: read top-down, the lines add up to the total.
    labels = [line.split()[0] for line in text.splitlines() if line.startswith("    ") and line.split()]
    assert labels[labels.index("earned") + 1] == "bonus"
    rolled_text = run("report", "rollforward", "--from", "2026-03-01", "--to", "2026-04-01", data=data,
                      check=0).stdout
    labels = [line.split()[0] for line in rolled_text.splitlines()[1:] if line.split()]
    assert labels[labels.index("earned") + 1] == "bonus", rolled_text
