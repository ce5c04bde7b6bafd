"""The what-if (SPEC §16, §17): Ledger.simulate against hand-worked numbers, on both engines.

Every expected figure below is worked by hand from §3/§4/§6 and written out.
"""

import copy
import decimal
import os
import random
import threading

import pytest

from pointsledger import InvalidArgument, Ledger
from pointsledger.errors import InvalidProgram
from support import (
    T_2025_06_01, T_2026_01_01, T_2026_03_10, T_2026_03_15, T_2026_03_25, T_2026_06_01, T_2026_07_01,
    T_2027_01_01, T_2027_01_15, T_MIN, simple_program,
)

T_2024_01_01 = 1_704_067_200  # 2024-01-01T00:00:00Z
T_2025_01_01 = 1_735_689_600  # 2025-01-01T00:00:00Z
T_2025_07_01 = 1_751_328_000  # 2025-07-01T00:00:00Z
T_2026_08_01 = 1_785_542_400  # 2026-08-01T00:00:00Z
DAY_S = 86_400


def two_tiers(silver_min_spend, silver_multiplier=2, **overrides):
    """member ×1 from 0, silver ×silver_multiplier from silver_min_spend; 1 point per 100 cents."""
    return simple_program(tiers=[
        {"name": "member", "min_spend_minor": 0, "multiplier": 1},
        {"name": "silver", "min_spend_minor": silver_min_spend, "multiplier": silver_multiplier},
    ], **overrides)


def figures(side):
    return (side.earned, side.bonus, side.clawed_back, side.net, side.value)


def test_doubling_one_category(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("p1", "m1", 10_000, "electronics", T_2026_03_10)  # 100
    ledger.purchase("p2", "m1", 5_050, "food", T_2026_03_15)  # 50
    ledger.purchase("p3", "m2", 2_599, "electronics", T_2026_06_01)  # 25
    ledger.purchase("p4", "m2", 20_000, "electronics", T_2025_06_01)  # replayed, before `from`: not counted
    ledger.purchase("p5", "m1", 3_000, "electronics", T_2027_01_15)  # after `to`: not replayed
    ledger.refund("r1", "p1", 2_500, T_2026_03_25)  # claws back floor(100 × 2500 / 10000) = 25

    result = ledger.simulate(simple_program(category_multipliers={"electronics": 2}), T_2026_01_01, T_2027_01_01)

    # Draft: p1 10000 × 2 / 100 = 200; p2 50; p3 floor(2599 × 2 / 100) = 51; r1 floor(200 × 2500 / 10000) = 50.
    assert figures(result.total.draft) == (301, 0, 50, 251, decimal.Decimal("2.51"))
    assert figures(result.total.recorded) == (175, 0, 25, 150, decimal.Decimal("1.50"))
    assert result.total.difference == 101
    assert result.total.difference_value == decimal.Decimal("1.01")
    assert (result.purchases, result.refunds, result.refused) == (3, 1, 0)
    electronics, food = result.categories["electronics"], result.categories["food"]
    assert figures(electronics.draft) == (251, 0, 50, 201, decimal.Decimal("2.01"))
    assert figures(electronics.recorded) == (125, 0, 25, 100, decimal.Decimal("1.00"))
    assert electronics.difference == 101
    assert figures(food.draft) == figures(food.recorded) == (50, 0, 0, 50, decimal.Decimal("0.50"))
    assert food.difference == 0
    assert sorted(result.categories) == ["electronics", "food"]
    assert {name: each.net for name, each in result.draft_tiers.items()} == {"member": 251}
    assert {name: each.net for name, each in result.recorded_tiers.items()} == {"member": 150}
    assert result.replay_from_s == T_2025_01_01
    assert result.engine == ledger.engine_name


def test_a_lower_threshold_moves_members_up_and_their_later_purchases_earn_more(ledger):
    ledger.set_program(two_tiers(50_000))
    # m1: 300 at member; its 30,000 spend is short of 50,000 but past the draft's 20,000.
    ledger.purchase("a1", "m1", 30_000, "food", T_2026_03_10)
    ledger.purchase("a2", "m1", 10_000, "food", T_2026_06_01)  # recorded 100 (member); draft silver: 200
    # m2: 25,000 in 2025 (the replay's first year) carries silver into 2026 under the draft only.
    ledger.purchase("b1", "m2", 25_000, "food", T_2025_06_01)
    ledger.purchase("b2", "m2", 10_000, "food", T_2026_03_15)  # recorded 100 (member); draft carried silver: 200

    result = ledger.simulate(two_tiers(20_000), T_2026_01_01, T_2027_01_01)

    assert figures(result.total.recorded) == (500, 0, 0, 500, decimal.Decimal("5.00"))
    assert figures(result.total.draft) == (700, 0, 0, 700, decimal.Decimal("7.00"))
    assert result.total.difference == 200
    assert {name: each.earned for name, each in result.recorded_tiers.items()} == {"member": 500, "silver": 0}
    assert {name: each.earned for name, each in result.draft_tiers.items()} == {"member": 300, "silver": 400}
    assert result.purchases == 3


def test_a_period_that_starts_in_the_middle_of_a_tier_year(ledger):
    ledger.set_program(two_tiers(50_000))
    ledger.purchase("p1", "m1", 60_000, "food", T_2026_03_10)  # before `from`: silver from here on
    ledger.purchase("p2", "m1", 10_000, "food", T_2026_07_01)  # silver: recorded ×2 = 200, draft ×3 = 300

    result = ledger.simulate(two_tiers(50_000, silver_multiplier=3), T_2026_06_01, T_2027_01_01)

    assert result.purchases == 1
    assert figures(result.total.recorded) == (200, 0, 0, 200, decimal.Decimal("2.00"))
    assert figures(result.total.draft) == (300, 0, 0, 300, decimal.Decimal("3.00"))
    assert {name: each.earned for name, each in result.recorded_tiers.items()} == {"member": 0, "silver": 200}
    assert {name: each.earned for name, each in result.draft_tiers.items()} == {"member": 0, "silver": 300}


def test_a_redemption_rolls_the_tier_year_in_the_replay(ledger):
    """A recorded redemption is not replayed, but it rolls the member's year (§17), so a late 2025
    purchase after it counts towards no year and carries nothing into 2026."""
    ledger.set_program(two_tiers(50_000))
    ledger.purchase("p1", "m1", 10_000, "food", T_2025_06_01)  # 100
    ledger.redeem("x1", "m1", 10, T_2026_01_01 + DAY_S)  # rolls m1 to 2026: carried member (10,000)
    ledger.purchase("p2", "m1", 60_000, "food", T_2025_07_01)  # late: counts towards no year
    ledger.purchase("p3", "m1", 10_000, "food", T_2026_03_10)  # member: 100 on both sides

    result = ledger.simulate(two_tiers(50_000, silver_multiplier=3), T_2026_01_01, T_2027_01_01)

    assert result.purchases == 1
    assert figures(result.total.draft) == figures(result.total.recorded) == (100, 0, 0, 100, decimal.Decimal("1.00"))


def test_the_welcome_bonus_is_paid_only_on_the_purchase_that_created_the_member(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("p1", "old", 1_000, "food", T_2024_01_01)  # before the replay: "old" exists already
    ledger.purchase("p2", "old", 1_000, "food", T_2026_03_10)  # 10
    ledger.purchase("p3", "new", 1_000, "food", T_2026_03_15)  # 10, creates "new"

    result = ledger.simulate(simple_program(welcome_bonus=100), T_2026_01_01, T_2027_01_01)

    assert figures(result.total.draft) == (20, 100, 0, 120, decimal.Decimal("1.20"))
    assert figures(result.total.recorded) == (20, 0, 0, 20, decimal.Decimal("0.20"))


def test_referrals_and_profiles_are_replayed_as_recorded(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("p1", "referrer", 1_000, "food", T_2025_06_01)
    ledger.register_referral("ref1", "referrer", "friend", T_2026_01_01)
    ledger.set_member_profile("friend", "03-01")
    ledger.purchase("p2", "friend", 5_000, "food", T_2026_03_10)  # 50; March: the birthday month
    ledger.set_member_profile("friend", "07-01")  # from here on: July
    ledger.purchase("p3", "friend", 5_000, "food", T_2026_03_15)  # 50, no longer the birthday month

    draft = simple_program(birthday={"multiplier": 2},
                           referral={"referrer_points": 500, "referee_points": 250})
    result = ledger.simulate(draft, T_2026_01_01, T_2027_01_01)

    # Draft: p2 50 × 2 (birthday) = 100, bonuses 250 (friend) + 500 (referrer) under p2; p3 50.
    assert figures(result.total.draft) == (150, 750, 0, 900, decimal.Decimal("9.00"))
    assert figures(result.total.recorded) == (100, 0, 0, 100, decimal.Decimal("1.00"))


def test_recorded_points_are_valued_at_their_versions_point_value(ledger):
    ledger.set_program(simple_program())
    ledger.set_program(simple_program(point_value="0.02", effective_from=T_2026_06_01))
    ledger.purchase("p1", "m1", 10_000, "food", T_2026_03_10)  # 100 at 0.01
    ledger.purchase("p2", "m1", 10_000, "food", T_2026_07_01)  # 100 at 0.02

    result = ledger.simulate(simple_program(point_value="0.005"), T_2026_01_01, T_2027_01_01)

    assert result.total.recorded.value == decimal.Decimal("3.00")
    assert result.total.draft.value == decimal.Decimal("1.000")
    assert result.total.difference == 0
    assert result.total.difference_value == decimal.Decimal("-2.000")


T_2026_02_01 = 1_769_904_000  # 2026-02-01T00:00:00Z
T_2026_03_01 = 1_772_323_200  # 2026-03-01T00:00:00Z


def test_a_clawback_counts_under_its_purchases_tier_when_a_later_version_renames_the_tiers(ledger):
    """§17: clawbacks count under the tier of the purchase they come from, each side under its own
    tier names; the money of an entry is at its own version's point value. Version 2 has one tier
    ("basic"), so version 1's "gold" exists only in version 1 (this used to raise IndexError)."""
    gold = two_tiers(50_000)
    gold["tiers"][1]["name"] = "gold"
    ledger.set_program(gold)
    ledger.set_program(simple_program(tiers=[{"name": "basic", "min_spend_minor": 0, "multiplier": 1}],
                                      point_value="0.02", effective_from=T_2026_07_01))
    ledger.purchase("p1", "m1", 60_000, "food", T_2026_02_01)  # member: 600 (v1)
    ledger.purchase("p2", "m1", 10_000, "food", T_2026_03_01)  # gold (60,000 spent) x2: 200 (v1)
    ledger.refund("f2", "p2", 10_000, T_2026_08_01)  # all of it, under v2: 200 clawed back

    result = ledger.simulate(gold, T_2026_01_01, T_2027_01_01)

    assert list(result.recorded_tiers) == ["member", "gold", "basic"]
    assert figures(result.recorded_tiers["member"]) == (600, 0, 0, 600, decimal.Decimal("6.00"))
    # 200 x 0.01 earned under v1, less 200 x 0.02 clawed back under v2
    assert figures(result.recorded_tiers["gold"]) == (200, 0, 200, 0, decimal.Decimal("-2.00"))
    assert figures(result.recorded_tiers["basic"]) == (0, 0, 0, 0, decimal.Decimal("0.00"))
    assert figures(result.draft_tiers["gold"]) == (200, 0, 200, 0, decimal.Decimal("0.00"))
    assert figures(result.total.recorded) == (800, 0, 200, 600, decimal.Decimal("4.00"))
    assert figures(result.total.draft) == (800, 0, 200, 600, decimal.Decimal("6.00"))


# --- a seeded random workload: the recorded programme as draft gives exactly 0 ---------------


V3_RULES = {
    "welcome_bonus": 100,
    "pending_days": 30,
    "milestones": [{"id": "five", "purchases": 5, "bonus_points": 50},
                   {"id": "big", "spend_minor": 100_000, "bonus_points": 200}],
    "birthday": {"multiplier": 2},
    "referral": {"referrer_points": 500, "referee_points": 250, "min_purchase_minor": 2_000},
}


def v3_program():
    program = two_tiers(60_000, silver_multiplier=decimal.Decimal("1.5"), category_multipliers={"toys": 3, "food": decimal.Decimal("0.5")},
                        expiry_months=12, effective_from=T_2026_01_01, **copy.deepcopy(V3_RULES))
    program["tiers"].append({"name": "gold", "min_spend_minor": 200_000, "multiplier": 2})
    return program


def build_random_store(ledger, seed=7):
    """Two years and a half of purchases, partial refunds, redemptions, adjustments, profiles and
    referrals under three programme versions (the last, with every §14 rule, from 2026-01-01)."""
    rng = random.Random(seed)
    v1 = two_tiers(60_000, category_multipliers={"toys": 2}, expiry_months=12)
    v1["tiers"].append({"name": "gold", "min_spend_minor": 200_000, "multiplier": 3})
    v2 = copy.deepcopy(v1)
    v2["effective_from"] = T_2025_07_01
    v2["promotions"] = [{"id": "summer", "start": T_2025_07_01, "end": T_2025_07_01 + 60 * DAY_S,
                         "multiplier": 2, "bonus_points": 5}]
    ledger.set_program(v1)
    ledger.set_program(v2)
    ledger.set_program(v3_program())
    members = [f"m{number}" for number in range(40)]
    categories = ["toys", "food", "books", "garden"]
    times = sorted(rng.randrange(T_2024_01_01, T_2026_08_01) for _ in range(1_500))
    purchases = []
    for index, time_s in enumerate(times):
        if index % 100 == 0:
            # Referrals under the version with the rule: one registered earlier would be settled by an
            # earlier purchase in the replay, where the draft is the only programme (§17).
            if purchases and time_s >= T_2026_01_01:
                referee = f"new{index}"
                ledger.register_referral(f"ref{index}", rng.choice(purchases)[1], referee, time_s)
                members.append(referee)
            ledger.set_member_profile(rng.choice(members), f"{rng.randrange(1, 13):02d}-15")
        member = rng.choice(members)
        if index % 97 == 5:  # now and then a late purchase, up to a year back
            time_s = max(T_2024_01_01, time_s - rng.randrange(365 * DAY_S))
        amount = rng.randrange(100, 40_000)
        order_id = f"p{index}"
        result = ledger.purchases([order_id], [member], [amount], [rng.choice(categories)], [time_s])
        if result.applied:
            purchases.append((order_id, member, amount, time_s))
        if rng.random() < 0.12 and purchases:
            order_id, _, order_amount, order_time = rng.choice(purchases[-50:])
            refund_time = max(order_time, time_s)
            # A refund across 2026-01-01 would re-price a 2025 purchase under the draft: not here.
            if not order_time < T_2026_01_01 <= refund_time:
                try:
                    ledger.refund(f"r{index}", order_id, rng.randrange(1, order_amount // 2 + 2), refund_time)
                except Exception:  # refunded in full already: the workload moves on
                    pass
        if rng.random() < 0.03:
            try:
                ledger.redeem(f"x{index}", member, 10, time_s)
            except Exception:  # too few points available
                pass
        if rng.random() < 0.02:
            ledger.adjust(f"a{index}", member, 25, "goodwill", time_s)


def test_the_recorded_programme_as_draft_gives_exactly_zero(open_ledger):
    ledger = open_ledger("random", sync=False)
    build_random_store(ledger)

    result = ledger.simulate(v3_program(), T_2026_01_01, T_2027_01_01)

    assert result.purchases > 300 and result.refunds > 20
    assert result.total.recorded.bonus > 0
    assert result.total.draft == result.total.recorded
    assert result.total.difference == 0 and result.total.difference_value == 0
    assert result.draft_tiers == result.recorded_tiers
    assert set(result.draft_tiers) == {"member", "silver", "gold"}
    assert all(comparison.draft == comparison.recorded for comparison in result.categories.values())
    assert sorted(result.categories) == ["books", "food", "garden", "toys"]


def test_both_engines_give_identical_results(tmp_path):
    path = tmp_path / "ledger"
    with Ledger(path, engine="cython", sync=False) as ledger:
        build_random_store(ledger, seed=3)
    draft = v3_program()
    draft["tiers"][1]["min_spend_minor"] = 30_000  # a second replay for the recorded tiers
    draft["category_multipliers"]["books"] = 4
    results = {}
    for engine in ("python", "cython"):
        with Ledger(path, engine=engine) as ledger:
            results[engine] = ledger.simulate(draft, T_2025_07_01, T_2027_01_01).to_dict()
    assert results["python"]["engine"] == "python" and results["cython"]["engine"] == "cython"
    results["python"].pop("engine"), results["cython"].pop("engine")
    assert results["python"] == results["cython"]
    assert results["cython"]["total"]["difference"] != 0


# --- it never touches the ledger --------------------------------------------------------------


def store_files(path):
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


def test_the_ledger_files_are_byte_identical_after_a_simulation(tmp_path, engine_name):
    path = tmp_path / "ledger"
    with Ledger(path, engine=engine_name, sync=False) as ledger:
        build_random_store(ledger, seed=5)
    with Ledger(path, engine=engine_name, readonly=True) as ledger:
        ledger.balance("m1")  # a reader's visit, as the simulation makes one (LMDB's lock file notes readers)
    before = store_files(path)
    with Ledger(path, engine=engine_name, readonly=True) as ledger:
        ledger.simulate(v3_program(), T_2026_01_01, T_2027_01_01)
    assert store_files(path) == before


def test_writers_are_not_blocked_and_the_result_is_of_the_snapshot(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("p1", "m1", 10_000, "food", T_2026_03_10)
    written = []

    def write_meanwhile(seq_read, last_seq):
        writer = threading.Thread(target=lambda: written.append(
            ledger.purchase("p2", "m1", 10_000, "food", T_2026_03_15)))
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive(), "the write waited for the simulation"

    result = ledger.simulate(simple_program(), T_2026_01_01, T_2027_01_01, progress=write_meanwhile)

    assert written[0].status == "APPLIED" and ledger.has_order("p2")
    assert result.purchases == 1 and result.total.recorded.earned == 100


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_the_scratch_space_is_removed_after_a_failure_or_an_interrupt(ledger, tmp_path, failure):
    ledger.set_program(simple_program())
    ledger.purchase("p1", "m1", 10_000, "food", T_2026_03_10)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    seen = []

    def fail(seq_read, last_seq):
        seen.append(sorted(os.listdir(scratch)))
        raise failure("stop")

    with pytest.raises(failure):
        ledger.simulate(two_tiers(10_000), T_2026_01_01, T_2027_01_01, progress=fail, scratch_dir=scratch)
    assert len(seen[0]) == 2  # the draft's replay and the recorded one were there
    assert os.listdir(scratch) == []
    ledger.simulate(simple_program(), T_2026_01_01, T_2027_01_01, scratch_dir=scratch)
    assert os.listdir(scratch) == []


# --- refusals ---------------------------------------------------------------------------------


def test_an_invalid_draft_lists_every_problem(ledger):
    ledger.set_program(simple_program())
    draft = simple_program(default_multiplier=-1)
    del draft["currency"]
    with pytest.raises(InvalidProgram) as refused:
        ledger.simulate(draft, T_2026_01_01, T_2027_01_01)
    assert refused.value.code == "INVALID_ARGUMENT"
    assert len(refused.value.problems) == 2
    assert any("currency" in problem for problem in refused.value.problems)
    assert any("default_multiplier" in problem for problem in refused.value.problems)


@pytest.mark.parametrize("from_s, to_s, field", [
    (T_MIN - 1, T_2027_01_01, "from_s"),
    (T_2026_01_01, 4_102_444_800, "to_s"),
    (T_2027_01_01, T_2026_01_01, "to_s"),
    (T_2026_01_01, T_2026_01_01, "to_s"),
    ("2026-01-01", T_2027_01_01, "from_s"),
])
def test_bad_dates_name_the_field(ledger, from_s, to_s, field):
    ledger.set_program(simple_program())
    with pytest.raises(InvalidArgument) as refused:
        ledger.simulate(simple_program(), from_s, to_s)
    assert refused.value.field == field


def test_a_bad_draft_and_a_bad_date_name_the_draft_first(ledger):
    """§15: several bad fields name the first in the argument order: simulate(draft, from, to)."""
    ledger.set_program(simple_program())
    with pytest.raises(InvalidProgram) as refused:
        ledger.simulate("{", T_MIN - 1, T_2027_01_01)
    assert refused.value.field == "document"


def test_the_drafts_effective_from_is_ignored(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("p1", "m1", 10_000, "food", T_2026_03_10)
    result = ledger.simulate(simple_program(effective_from=T_2027_01_15), T_2026_01_01, T_2027_01_01)
    assert result.total.draft.earned == 100


# --- the engines' part: writer.tier_ranks ------------------------------------------------------


@pytest.mark.parametrize("rules", [{}, {"welcome_bonus": 10, "milestones": [
    {"id": "two", "purchases": 2, "bonus_points": 5}]}], ids=["plain", "engaged"])
def test_both_engines_note_the_tier_each_applied_purchase_earned_at(ledger, rules):
    ledger.set_program(two_tiers(50_000, **rules))

    def apply(writer):
        writer.tier_ranks = []
        results = ledger.engine.apply_purchases(
            writer, ["a", "b", "c", "d", "e"], ["m1", "m1", "m1", "m2", "m1"],
            [40_000, 20_000, 1_000, 1_000, 0], ["food"] * 5,
            [T_2026_03_10, T_2026_03_15, T_2026_06_01, T_2026_06_01, T_2026_07_01])
        return [result[0] for result in results], writer.tier_ranks

    statuses, ranks = ledger.store.write(apply)
    # m1: member before a (0 spent) and b (40,000), silver before c (60,000); m2 new: member;
    # e is refused (amount 0) and notes nothing.
    assert statuses == ["APPLIED"] * 4 + ["INVALID_ARGUMENT"]
    assert ranks == [0, 0, 1, 0]


def test_an_interrupt_inside_a_scratch_write_stays_an_interrupt_and_the_scratch_goes(ledger, tmp_path, monkeypatch):
    from pointsledger.store import faults

    ledger.set_program(simple_program())
    ledger.purchase("p1", "m1", 10_000, "food", T_2026_03_10)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    flushes = []

    def interrupt_the_replay(point):
        if point == "flush":
            flushes.append(point)
            if len(flushes) == 2:  # the first is the scratch's programme, the second its first batch
                raise KeyboardInterrupt()

    monkeypatch.setattr(faults, "hook", interrupt_the_replay)
    with pytest.raises(KeyboardInterrupt):
        ledger.simulate(simple_program(), T_2026_01_01, T_2027_01_01, scratch_dir=scratch)
    assert len(flushes) == 2 and os.listdir(scratch) == []
