"""Engagement rules (SPEC §14, §17) as worked examples, over both engines.

Every programme here earns 1 point per 100 cents with one tier of multiplier 1
(support.simple_program) unless it says otherwise, so each EARN is the amount
in cents divided by 100, rounded down; the numbers are written out by hand.
"""

from decimal import Decimal
from fractions import Fraction

import pytest

import pointsledger
from pointsledger import Bonus
from pointsledger.engine import _engine_py
from support import (
    T_2026_01_15, T_2026_03_01, T_2026_03_15, T_2026_03_25, T_2026_04_01, T_2026_05_01, T_2027_01_01,
    T_2027_01_15, T_MIN, always_on_promotion, entries, simple_program, snapshot,
)

T_2026_01_01 = 1_767_225_600  # 2026-01-01T00:00:00Z

REFERRAL = {"referrer_points": 500, "referee_points": 250, "min_purchase_minor": 2000}


def engaged(ledger, **rules):
    ledger.set_program(simple_program(**rules))
    return ledger


# --- welcome -------------------------------------------------------------------------------


def test_the_welcome_bonus_is_paid_once_on_the_first_purchase(ledger):
    engaged(ledger, welcome_bonus=100)
    first = ledger.purchase("o-1", "m", 12_345, "any", T_2026_03_15)
    assert (first.status, first.seq, first.points, first.balance) == ("APPLIED", 1, 123, 223)
    assert first.bonuses == (Bonus("m", "welcome", 100),)
    second = ledger.purchase("o-2", "m", 5_000, "any", T_2026_03_15)
    assert (second.seq, second.points, second.balance, second.bonuses) == (3, 50, 273, ())
    assert entries(ledger) == [
        (1, "EARN", "m", "o-1", 123, 123, T_2026_03_15, 1),
        (2, "BONUS", "m", "welcome", 100, 223, T_2026_03_15, 1),
        (3, "EARN", "m", "o-2", 50, 273, T_2026_03_15, 1),
    ]
    balance = ledger.balance("m", T_2026_03_15)
    assert (balance.balance, balance.earned, balance.bonus) == (273, 173, 100)
    assert ledger.verify().ok


def test_a_resent_purchase_reports_its_bonuses_and_the_balance_after_them(ledger):
    engaged(ledger, welcome_bonus=100)
    ledger.purchase("o-1", "m", 12_345, "any", T_2026_03_15)
    ledger.purchase("o-2", "m", 5_000, "any", T_2026_03_15)
    again = ledger.purchase("o-1", "m", 12_345, "any", T_2026_03_15)
    assert (again.status, again.seq, again.points, again.balance) == ("DUPLICATE", 1, 123, 223)
    assert again.bonuses == (Bonus("m", "welcome", 100),)


def test_a_welcome_bonus_of_zero_writes_no_entry(ledger):
    engaged(ledger, welcome_bonus=0, milestones=[{"id": "one", "purchases": 1, "bonus_points": 0}])
    result = ledger.purchase("o-1", "m", 1_000, "any", T_2026_03_15)
    assert (result.points, result.balance, result.bonuses) == (10, 10, ())
    assert [kind for _, kind, *_ in entries(ledger)] == ["EARN"]
    # A milestone worth 0 is still reached.
    assert ledger.balance("m", T_2026_03_15).milestones[0].reached is True


def test_a_bonus_pays_debt_first_and_expires_with_the_purchase(ledger):
    # expiry 1 month: points of 2026-01-15 expire at 2026-03-01.
    engaged(ledger, welcome_bonus=0, expiry_months=1,
            milestones=[{"id": "second", "purchases": 2, "bonus_points": 40}])
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_01_15)  # 100
    ledger.redeem("rd-1", "m", 100, T_2026_01_15)  # 0 left
    ledger.refund("r-1", "o-1", 10_000, T_2026_01_15)  # claws 100 back: debt 100
    second = ledger.purchase("o-2", "m", 3_000, "any", T_2026_01_15)  # 30 pays debt, then 40 bonus
    assert (second.points, second.balance, second.bonuses) == (30, -30, (Bonus("m", "milestone:second", 40),))
    balance = ledger.balance("m", T_2026_01_15)
    assert (balance.balance, balance.debt, balance.available) == (-30, 30, -30)
    ledger.adjust("a-1", "m", 100, "goodwill", T_2026_01_15)  # pays the 30 of debt, 70 in the bucket
    assert ledger.balance("m", T_2026_01_15).available == 70
    assert ledger.verify().ok


# --- milestones -----------------------------------------------------------------------------


COUNT_AND_SPEND = [
    {"id": "three-orders", "purchases": 3, "bonus_points": 300},
    {"id": "big-spender", "spend_minor": 100_000, "bonus_points": 1000},
]


def progress(ledger, member_id, as_of_s):
    return [(each.milestone_id, each.kind, each.target, each.progress, each.reached)
            for each in ledger.balance(member_id, as_of_s).milestones]


def test_a_milestone_by_count_once_per_year_and_again_the_next_year(ledger):
    engaged(ledger, milestones=COUNT_AND_SPEND[:1])
    results = [ledger.purchase(f"o-{index}", "m", 1_000, "any", T_2026_03_15) for index in (1, 2, 3, 4)]
    assert [each.bonuses for each in results] == [(), (), (Bonus("m", "milestone:three-orders", 300),), ()]
    assert [each.balance for each in results] == [10, 20, 330, 340]
    assert progress(ledger, "m", T_2026_03_15) == [("three-orders", "purchases", 3, 4, True)]
    # The next tier year starts from 0 (as_of in 2027, before any 2027 purchase).
    assert progress(ledger, "m", T_2027_01_15) == [("three-orders", "purchases", 3, 0, False)]
    later = [ledger.purchase(f"n-{index}", "m", 1_000, "any", T_2027_01_15) for index in (1, 2, 3)]
    assert [each.bonuses for each in later] == [(), (), (Bonus("m", "milestone:three-orders", 300),)]
    assert later[-1].balance == 340 + 10 + 10 + 10 + 300
    # A late purchase of 2026 counts towards no year and reaches nothing.
    late = ledger.purchase("late", "m", 1_000, "any", T_2026_03_15)
    assert late.bonuses == ()
    assert progress(ledger, "m", T_2027_01_15) == [("three-orders", "purchases", 3, 3, True)]
    assert ledger.verify().ok


def test_a_milestone_by_spend_is_not_taken_back_by_a_refund_nor_paid_again(ledger):
    engaged(ledger, milestones=COUNT_AND_SPEND)
    ledger.purchase("o-1", "m", 60_000, "any", T_2026_03_15)  # 600
    reached = ledger.purchase("o-2", "m", 40_000, "any", T_2026_03_15)  # 400; spend 100,000
    assert reached.bonuses == (Bonus("m", "milestone:big-spender", 1000),)
    assert reached.balance == 600 + 400 + 1000
    refund = ledger.refund("r-1", "o-2", 20_000, T_2026_03_25)  # floor(400 × 20,000 / 40,000) = 200
    assert (refund.points, refund.balance) == (-200, 1800)  # the bonus stays
    assert progress(ledger, "m", T_2026_03_25) == [
        ("three-orders", "purchases", 3, 2, False), ("big-spender", "spend_minor", 100_000, 80_000, True)]
    # Spend back at 100,000 and the third purchase: only the count milestone pays.
    third = ledger.purchase("o-3", "m", 20_000, "any", T_2026_04_01)
    assert third.bonuses == (Bonus("m", "milestone:three-orders", 300),)
    assert third.balance == 1800 + 200 + 300
    assert ledger.verify().ok


def test_milestones_pay_in_document_order_after_the_earn(ledger):
    engaged(ledger, welcome_bonus=5, milestones=[
        {"id": "spend", "spend_minor": 1_000, "bonus_points": 7},
        {"id": "first", "purchases": 1, "bonus_points": 3},
    ])
    result = ledger.purchase("o-1", "m", 1_000, "any", T_2026_03_15)
    assert result.bonuses == (Bonus("m", "welcome", 5), Bonus("m", "milestone:spend", 7),
                              Bonus("m", "milestone:first", 3))
    assert [(kind, ref, points, balance) for _, kind, _, ref, points, balance, *_ in entries(ledger)] == [
        ("EARN", "o-1", 10, 10), ("BONUS", "welcome", 5, 15), ("BONUS", "milestone:spend", 7, 22),
        ("BONUS", "milestone:first", 3, 25)]


def test_purchases_before_the_milestone_rule_count_towards_it(ledger, open_ledger):
    ledger.set_program(simple_program())
    ledger.purchase("o-1", "m", 1_000, "any", T_2026_01_15)
    ledger.purchase("o-2", "m", 1_000, "any", T_2026_01_15)
    ledger.set_program(simple_program(effective_from=T_2026_03_01, milestones=COUNT_AND_SPEND[:1]))
    third = ledger.purchase("o-3", "m", 1_000, "any", T_2026_03_15)
    assert third.bonuses == (Bonus("m", "milestone:three-orders", 300),)
    assert ledger.verify().ok


# --- referrals ------------------------------------------------------------------------------


def referral_programme(ledger):
    return engaged(ledger, welcome_bonus=100, referral=REFERRAL,
                   milestones=[{"id": "first-order", "purchases": 1, "bonus_points": 20}])


def test_a_referral_settles_on_the_first_qualifying_purchase_in_the_order_of_17(ledger):
    referral_programme(ledger)
    ledger.purchase("o-1", "alice", 10_000, "any", T_2026_03_15)  # 100 + welcome 100 + first-order 20
    registered = ledger.register_referral("ref-1", "alice", "bob", T_2026_03_15)
    assert (registered.status, registered.settled, registered.order_id) == ("APPLIED", False, None)
    # Below min_purchase_minor (2,000): bob's first purchase leaves it open.
    small = ledger.purchase("o-2", "bob", 1_000, "any", T_2026_03_25)
    assert small.bonuses == (Bonus("bob", "welcome", 100), Bonus("bob", "milestone:first-order", 20))
    assert ledger.get_referral("ref-1").settled is False
    settling = ledger.purchase("o-3", "bob", 5_000, "any", T_2026_04_01)
    assert (settling.points, settling.balance) == (50, 430)
    assert settling.bonuses == (Bonus("bob", "referral:ref-1", 250), Bonus("alice", "referral:ref-1", 500))
    assert entries(ledger, from_seq=7) == [
        (7, "EARN", "bob", "o-3", 50, 180, T_2026_04_01, 1),
        (8, "BONUS", "bob", "referral:ref-1", 250, 430, T_2026_04_01, 1),
        (9, "BONUS", "alice", "referral:ref-1", 500, 720, T_2026_04_01, 1),
    ]
    # Settled once: the next purchase pays nothing more.
    assert ledger.purchase("o-4", "bob", 5_000, "any", T_2026_04_01).bonuses == ()
    settled = ledger.get_referral("ref-1")
    assert (settled.referrer_id, settled.referee_id, settled.time_s, settled.settled, settled.order_id) == (
        "alice", "bob", T_2026_03_15, True, "o-3")
    # The reports: earned 100 + 10 + 50 + 50 = 210; bonus 120 + 120 + 250 + 500 = 990.
    liability = ledger.liability(T_2026_04_01)
    assert (liability.earned, liability.bonus, liability.issued, liability.outstanding) == (210, 990, 1200, 1200)
    assert ledger.balance("alice", T_2026_04_01).balance + ledger.balance("bob", T_2026_04_01).balance == 1200
    report = ledger.rollforward(T_2026_03_01, T_2026_05_01)
    assert (report.opening, report.earned, report.bonus, report.expired, report.closing) == (0, 210, 990, 0, 1200)
    assert (report.breakage.expired, report.breakage.credited, report.breakage.decimal) == (0, 1200, Decimal("0.000000"))
    assert ledger.verify().ok


def test_a_purchase_before_the_registration_time_does_not_settle(ledger):
    referral_programme(ledger)
    ledger.purchase("o-1", "alice", 10_000, "any", T_2026_03_15)
    ledger.register_referral("ref-1", "alice", "bob", T_2026_04_01)
    assert ledger.purchase("o-2", "bob", 5_000, "any", T_2026_03_25).bonuses == (
        Bonus("bob", "welcome", 100), Bonus("bob", "milestone:first-order", 20))
    assert ledger.get_referral("ref-1").settled is False


def test_the_referrers_due_points_expire_before_its_bonus(ledger):
    # Points of 2026-01-15 expire at 2026-03-01 (expiry_months 1).
    engaged(ledger, referral=REFERRAL, expiry_months=1)
    ledger.purchase("o-1", "alice", 10_000, "any", T_2026_01_15)
    ledger.register_referral("ref-1", "alice", "bob", T_2026_01_15)
    ledger.purchase("o-2", "bob", 3_000, "any", T_2026_03_15)
    assert entries(ledger, from_seq=2) == [
        (2, "EARN", "bob", "o-2", 30, 30, T_2026_03_15, 1),
        (3, "BONUS", "bob", "referral:ref-1", 250, 280, T_2026_03_15, 1),
        (4, "EXPIRE", "alice", "o-2", -100, 0, T_2026_03_15, 1),
        (5, "BONUS", "alice", "referral:ref-1", 500, 500, T_2026_03_15, 1),
    ]
    assert ledger.verify().ok


def test_referral_refusals_name_the_field_and_change_nothing(ledger):
    referral_programme(ledger)
    ledger.purchase("o-1", "alice", 10_000, "any", T_2026_03_15)
    ledger.purchase("o-2", "bob", 10_000, "any", T_2026_03_15)
    ledger.register_referral("ref-1", "alice", "carol", T_2026_03_15)
    before = snapshot(ledger)
    cases = [
        (("ref-2", "alice", "alice", T_2026_03_15), "INVALID_ARGUMENT", "referee_id"),  # self-referral
        (("", "alice", "dave", T_2026_03_15), "INVALID_ARGUMENT", "referral_id"),
        (("ref-2", "a\x00", "dave", T_2026_03_15), "INVALID_ARGUMENT", "referrer_id"),
        (("ref-2", "alice", "x" * 65, T_2026_03_15), "INVALID_ARGUMENT", "referee_id"),
        (("ref-2", "alice", "dave", T_MIN - 1), "INVALID_ARGUMENT", "time_s"),
        (("ref-2", "alice", "dave", True), "INVALID_ARGUMENT", "time_s"),
        (("ref-1", "bob", "carol", T_2026_03_15), "ALREADY_EXISTS", "referral_id"),
        (("ref-2", "zed", "dave", T_2026_03_15), "NOT_FOUND", "referrer_id"),  # unknown referrer
        (("ref-2", "alice", "bob", T_2026_03_15), "FAILED_PRECONDITION", "referee_id"),  # already a member
        (("ref-2", "bob", "carol", T_2026_03_15), "FAILED_PRECONDITION", "referee_id"),  # referred twice
    ]
    for arguments, code, field in cases:
        with pytest.raises(pointsledger.LedgerError) as refused:
            ledger.register_referral(*arguments)
        assert (refused.value.code, refused.value.field) == (code, field), arguments
    assert snapshot(ledger) == before
    again = ledger.register_referral("ref-1", "alice", "carol", T_2026_03_15)
    assert (again.status, again.referee_id) == ("DUPLICATE", "carol")
    with pytest.raises(pointsledger.NotFound):
        ledger.get_referral("ref-9")


# --- birthdays ------------------------------------------------------------------------------


def test_the_birthday_multiplier_is_inside_the_product_before_the_cap(ledger):
    engaged(ledger, birthday={"multiplier": 2}, max_points_per_purchase=150,
            promotions=[always_on_promotion("p", bonus_points=7)])
    assert ledger.set_member_profile("m", "03-20").birthday == "03-20"  # before the first purchase
    # March: floor(5,000 × 2 / 100) + 7 = 107 (the promotion's 7 is not doubled).
    assert ledger.purchase("o-1", "m", 5_000, "any", T_2026_03_15).points == 107
    # March: floor(10,000 × 2 / 100) + 7 = 207, capped at 150.
    assert ledger.purchase("o-2", "m", 10_000, "any", T_2026_03_25).points == 150
    # April: 50 + 7.
    assert ledger.purchase("o-3", "m", 5_000, "any", T_2026_04_01).points == 57
    # Cleared: March earns 57 again; the profile is still known.
    ledger.set_member_profile("m", None)
    assert ledger.purchase("o-4", "m", 5_000, "any", T_2026_03_15).points == 57
    assert ledger.get_member_profile("m").birthday is None
    assert ledger.verify().ok


def test_a_profile_applies_to_purchases_applied_after_it_whatever_their_time(ledger):
    engaged(ledger, birthday={"multiplier": Decimal("1.5")})
    assert ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_15).points == 100
    ledger.set_member_profile("m", "03-01")
    # A late purchase of January 2026 applied now: not March, 100; a March one: 150.
    assert ledger.purchase("o-2", "m", 10_000, "any", T_2026_01_15).points == 100
    assert ledger.purchase("o-3", "m", 10_000, "any", T_2026_03_25).points == 150
    assert ledger.get_member_profile("m").birthday == "03-01"
    assert [points for _, _, _, _, points, *_ in entries(ledger)] == [100, 100, 150]


@pytest.mark.parametrize("birthday", ["02-30", "13-01", "00-10", "3-20", "03/20", "0320", 320, "０３-２０", ""])
def test_a_bad_birthday_is_refused_naming_it(ledger, birthday):
    ledger.set_program(simple_program())
    before = snapshot(ledger)
    with pytest.raises(pointsledger.InvalidArgument) as refused:
        ledger.set_member_profile("m", birthday)
    assert refused.value.field == "birthday"
    assert snapshot(ledger) == before
    with pytest.raises(pointsledger.NotFound):
        ledger.get_member_profile("m")


def test_february_29_is_a_birthday_and_a_bad_member_id_is_refused(ledger):
    assert ledger.set_member_profile("m", "02-29").birthday == "02-29"
    assert ledger.get_member_profile("m").birthday == "02-29"
    with pytest.raises(pointsledger.InvalidArgument) as refused:
        ledger.set_member_profile("", "02-29")
    assert refused.value.field == "member_id"


# --- reports ---------------------------------------------------------------------------------


def test_breakage_counts_bonuses_in_its_denominator(ledger):
    # Points of January 2026 expire at 2026-03-01 (expiry_months 1).
    engaged(ledger, welcome_bonus=100, expiry_months=1)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_01_15)  # 100 + welcome 100
    ledger.adjust("a-1", "m", 100, "goodwill", T_2026_01_15)
    ledger.redeem("rd-1", "m", 50, T_2026_01_15)
    ledger.expire(T_2026_03_01)  # 250 expire
    report = ledger.rollforward(T_2026_01_01, T_2026_04_01)
    assert (report.opening, report.earned, report.bonus, report.adjusted, report.redeemed, report.expired,
            report.closing) == (0, 100, 100, 100, 50, 250, 0)
    # 250 ÷ (100 + 100 + 100) = 5/6 = 0.8333333… → 0.833333
    assert report.breakage_rate == Fraction(5, 6)
    assert (report.breakage.expired, report.breakage.credited, report.breakage.decimal) == (
        250, 300, Decimal("0.833333"))
    empty = ledger.rollforward(T_2027_01_01, T_2027_01_15)
    assert (empty.breakage.expired, empty.breakage.credited, empty.breakage.decimal) == (0, 0, None)
    liability = ledger.liability(T_2026_03_01)
    assert (liability.earned, liability.bonus, liability.adjusted_positive, liability.issued,
            liability.outstanding) == (100, 100, 100, 300, 0)


@pytest.mark.parametrize(("arguments", "field"), [
    ((T_2026_01_01 + 1, T_2026_04_01), "from_s"), ((T_2026_01_01, T_2026_04_01 - 1), "to_s")])
def test_the_rollforward_takes_utc_midnights(ledger, arguments, field):
    with pytest.raises(pointsledger.InvalidArgument) as refused:
        ledger.rollforward(*arguments)
    assert refused.value.field == field


# --- int64 ----------------------------------------------------------------------------------


def test_a_bonus_past_int64_refuses_the_purchase_whole_naming_balance(ledger):
    engaged(ledger, welcome_bonus=0, milestones=[{"id": "one", "purchases": 2, "bonus_points": 10}])
    ledger.purchase("o-1", "m", 1_000, "any", T_2026_03_15)
    ledger.adjust("a-1", "m", 9_223_372_036_854_775_807 - 25, "top up", T_2026_03_15)
    before = snapshot(ledger)
    with pytest.raises(pointsledger.InvalidArgument) as refused:
        ledger.purchase("o-2", "m", 1_000, "any", T_2026_03_15)  # 10 fits; its bonus does not
    assert refused.value.field == "balance"
    assert snapshot(ledger) == before


# --- pending points ---------------------------------------------------------------------------

T_2026_03_31 = 1_774_915_200  # 2026-03-31T00:00:00Z: 30 days after 2026-03-01
T_2026_04_14 = 1_776_124_800  # 2026-04-14T00:00:00Z: 30 days after 2026-03-15


def pending_at(ledger, member_id, as_of_s):
    balance = ledger.balance(member_id, as_of_s)
    return (balance.balance, balance.available, balance.pending, balance.next_release_s,
            balance.next_release_points, balance.debt)


def test_points_are_pending_for_the_return_window_then_available(ledger):
    engaged(ledger, pending_days=30)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_01)
    assert pending_at(ledger, "m", T_2026_03_15) == (100, 0, 100, T_2026_03_31, 100, 0)
    assert pending_at(ledger, "m", T_2026_03_31) == (100, 100, 0, None, 0, 0)
    before = snapshot(ledger)
    with pytest.raises(pointsledger.FailedPrecondition) as refused:
        ledger.redeem("rd-1", "m", 50, T_2026_03_15)
    assert (refused.value.field, refused.value.available) == ("points", 0)
    assert "has 0 points available" in str(refused.value)
    with pytest.raises(pointsledger.FailedPrecondition) as refused:
        ledger.adjust("a-1", "m", -10, "fix", T_2026_03_15)
    assert (refused.value.field, refused.value.available) == ("points", 0)
    assert snapshot(ledger) == before
    # A positive adjustment is not pending.
    ledger.adjust("a-2", "m", 30, "goodwill", T_2026_03_15)
    assert pending_at(ledger, "m", T_2026_03_15) == (130, 30, 100, T_2026_03_31, 100, 0)
    assert ledger.redeem("rd-2", "m", 130, T_2026_04_01).balance == 0
    assert ledger.verify().ok


def test_a_refund_inside_the_window_takes_the_pending_points_and_makes_no_debt(ledger):
    engaged(ledger, pending_days=30, welcome_bonus=100)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_01)  # 100 + welcome 100, both pending
    assert pending_at(ledger, "m", T_2026_03_15) == (200, 0, 200, T_2026_03_31, 200, 0)
    refund = ledger.refund("r-1", "o-1", 10_000, T_2026_03_15)  # claws back 100 from the lot
    assert (refund.points, refund.balance) == (-100, 100)
    # The welcome bonus stays, still pending with the purchase.
    assert pending_at(ledger, "m", T_2026_03_15) == (100, 0, 100, T_2026_03_31, 100, 0)
    assert ledger.liability(T_2026_03_15).pending == 100
    assert ledger.verify().ok


def test_a_refund_outside_the_window_makes_debt(ledger):
    engaged(ledger, pending_days=30)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_01)
    ledger.redeem("rd-1", "m", 100, T_2026_04_01)  # released at 2026-03-31
    refund = ledger.refund("r-1", "o-1", 10_000, T_2026_04_01)
    assert (refund.points, refund.balance) == (-100, -100)
    assert pending_at(ledger, "m", T_2026_04_01) == (-100, -100, 0, None, 0, 100)
    # The next purchase pays the debt first: only the rest is pending.
    ledger.purchase("o-2", "m", 15_000, "any", T_2026_04_01)
    assert pending_at(ledger, "m", T_2026_04_01) == (50, 0, 50, T_2026_04_01 + 30 * 86_400, 50, 0)
    assert ledger.verify().ok


def test_the_clawback_order_of_17(ledger):
    engaged(ledger, pending_days=30)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_01)  # lot of 100, released 2026-03-31
    ledger.purchase("o-2", "m", 5_000, "any", T_2026_03_15)  # lot of 50, released 2026-04-14
    # On 2026-04-01 o-1's points are released; o-2's are pending. Half of o-1 (50):
    # its own lot is gone, so released points first (never-expiring), not o-2's lot.
    assert ledger.refund("r-1", "o-1", 5_000, T_2026_04_01).balance == 100
    assert pending_at(ledger, "m", T_2026_04_01) == (100, 50, 50, T_2026_04_14, 50, 0)
    # Half of o-2 (25) comes from its own lot, still pending.
    assert ledger.refund("r-2", "o-2", 2_500, T_2026_04_01).balance == 75
    assert pending_at(ledger, "m", T_2026_04_01) == (75, 50, 25, T_2026_04_14, 25, 0)
    # The rest of o-1 (50): released 50 first, then nothing else is needed.
    assert ledger.refund("r-3", "o-1", 5_000, T_2026_04_01).balance == 25
    assert pending_at(ledger, "m", T_2026_04_01) == (25, 0, 25, T_2026_04_14, 25, 0)
    assert ledger.liability(T_2026_04_01).pending == 25
    assert ledger.verify().ok


def test_pending_points_expire_as_usual(ledger):
    # expiry_months 1: points of 2026-03-15 expire at 2026-05-01; 60 days pending is past it.
    engaged(ledger, pending_days=60, expiry_months=1)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_15)
    assert ledger.expire(T_2026_05_01).points == 100
    assert pending_at(ledger, "m", T_2026_05_01) == (0, 0, 0, None, 0, 0)
    assert ledger.verify().ok


def test_a_clawback_takes_another_orders_pending_lot_before_making_debt(ledger):
    engaged(ledger, pending_days=30)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_01)  # 100, released 2026-03-31
    ledger.purchase("o-2", "m", 5_000, "any", T_2026_03_15)  # 50, pending until 2026-04-14
    ledger.redeem("rd-1", "m", 100, T_2026_04_01)  # every released point
    # 100 to claw back: none released, o-2's lot 50, the rest is debt.
    assert ledger.refund("r-1", "o-1", 10_000, T_2026_04_01).balance == -50
    assert pending_at(ledger, "m", T_2026_04_01) == (-50, -50, 0, None, 0, 50)
    assert ledger.verify().ok


# --- more of §17 ------------------------------------------------------------------------------


def test_a_referral_waits_for_a_version_with_the_rule_and_a_rule_worth_zero_settles_it(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("o-1", "alice", 10_000, "any", T_2026_01_15)
    ledger.register_referral("ref-1", "alice", "bob", T_2026_01_15)
    assert ledger.purchase("o-2", "bob", 10_000, "any", T_2026_01_15).bonuses == ()
    assert ledger.get_referral("ref-1").settled is False
    ledger.set_program(simple_program(effective_from=T_2026_03_01,
                                      referral={"referrer_points": 0, "referee_points": 0}))
    settling = ledger.purchase("o-3", "bob", 10_000, "any", T_2026_03_15)
    assert (settling.bonuses, settling.balance) == ((), 200)
    assert (ledger.get_referral("ref-1").settled, ledger.get_referral("ref-1").order_id) == (True, "o-3")
    assert [kind for _, kind, *_ in entries(ledger)] == ["EARN", "EARN", "EARN"]


def test_the_welcome_bonus_is_for_the_purchase_that_creates_the_member_only(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("o-1", "m", 1_000, "any", T_2026_01_15)
    ledger.set_program(simple_program(effective_from=T_2026_03_01, welcome_bonus=100))
    assert ledger.purchase("o-2", "m", 1_000, "any", T_2026_03_15).bonuses == ()
    assert ledger.purchase("o-3", "n", 1_000, "any", T_2026_03_15).bonuses == (Bonus("n", "welcome", 100),)


def test_milestone_progress_before_the_tier_year_is_the_current_years(ledger):
    engaged(ledger, milestones=COUNT_AND_SPEND)
    ledger.purchase("o-1", "m", 30_000, "any", T_2027_01_15)
    # as_of in 2026, before the member's tier year 2027: 2027's progress (§15, §17).
    assert progress(ledger, "m", T_2026_03_15) == [
        ("three-orders", "purchases", 3, 1, False), ("big-spender", "spend_minor", 100_000, 30_000, False)]
    assert progress(ledger, "m", T_2027_01_15) == progress(ledger, "m", T_2026_03_15)
    # A later year starts from nothing.
    assert progress(ledger, "m", 1_830_297_600) == [  # 2028-01-01T00:00:00Z
        ("three-orders", "purchases", 3, 0, False), ("big-spender", "spend_minor", 100_000, 0, False)]


def test_lookups_by_a_bad_id_name_the_field(ledger):
    for call, field in ((lambda: ledger.get_referral(""), "referral_id"),
                        (lambda: ledger.get_referral("r\x01"), "referral_id"),
                        (lambda: ledger.get_member_profile("x" * 65), "member_id"),
                        (lambda: ledger.set_member_profile(7, "03-20"), "member_id")):
        with pytest.raises(pointsledger.InvalidArgument) as refused:
            call()
        assert refused.value.field == field


def test_a_profile_alone_makes_no_member_and_no_entry(ledger):
    ledger.set_program(simple_program(birthday={"multiplier": 2}))
    ledger.set_member_profile("m", "03-20")
    assert entries(ledger) == []
    with pytest.raises(pointsledger.NotFound):
        ledger.balance("m", T_2026_03_15)
    with pytest.raises(pointsledger.NotFound):
        ledger.redeem("rd-1", "m", 1, T_2026_03_15)
    assert ledger.verify().ok


def test_members_keep_the_record_of_the_release_before_until_a_rule_needs_their_state(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("o-1", "old", 1_000, "any", T_2026_01_15)
    ledger.set_program(simple_program(effective_from=T_2026_03_01, welcome_bonus=100))
    ledger.purchase("o-2", "old", 1_000, "any", T_2026_03_15)  # no bonus for it: no state
    ledger.purchase("o-3", "new", 1_000, "any", T_2026_03_15)  # its welcome is kept in its state
    with ledger.store.read() as txn:
        members = ledger.store.dbs[pointsledger.store.format.DB_MEMBERS]
        # Format 4 (§19): versions 3 and 4 are versions 1 and 2 with issue months.
        assert txn.get(b"old", db=members)[0] == pointsledger.store.format.MEMBER_RECORD_VERSION_LOTS == 3
        assert txn.get(b"new", db=members)[0] == pointsledger.store.format.MEMBER_RECORD_VERSION_LOTS_ENGAGED == 4


def test_verify_finds_a_referral_without_its_index_entry(ledger):
    referral_programme(ledger)
    ledger.purchase("o-1", "alice", 10_000, "any", T_2026_03_15)
    ledger.register_referral("ref-1", "alice", "bob", T_2026_03_15)
    assert ledger.verify().ok
    with ledger.store.env.begin(write=True) as txn:
        txn.delete(b"bob", db=ledger.store.dbs[pointsledger.store.format.DB_REFEREES])
    assert ledger.verify().problems == ["referral 'ref-1': its referee 'bob' is not indexed to it"]


# --- verify() on the engagement records: one corruption per check, the exact report ------------------


def _corrupt(ledger, change):
    fmt = pointsledger.store.format
    with ledger.store.env.begin(write=True) as txn:
        change(txn, fmt, ledger.store.dbs)
    ledger.store.forget()  # the caches would answer from before the corruption


def _referred_and_settled(ledger):
    """alice (welcome 100 + first-order 20 on 2026-03-15) refers bob, whose o-2 settles it."""
    referral_programme(ledger)
    ledger.purchase("o-1", "alice", 10_000, "any", T_2026_03_15)
    ledger.register_referral("ref-1", "alice", "bob", T_2026_03_15)
    ledger.register_referral("ref-2", "alice", "carol", T_2026_03_15)
    ledger.purchase("o-2", "bob", 10_000, "any", T_2026_03_25)
    assert ledger.verify().ok


def test_verify_finds_the_bonus_total_and_a_bonus_day_counter_off(ledger):
    _referred_and_settled(ledger)
    with ledger.store.read() as txn:
        total = pointsledger.store.format.I64.unpack(
            txn.get(pointsledger.store.format.META_BONUS_TOTAL, db=ledger.store.dbs[pointsledger.store.format.DB_META]))[0]
    _corrupt(ledger, lambda txn, fmt, dbs: txn.put(fmt.META_BONUS_TOTAL, fmt.I64.pack(total + 1), db=dbs[fmt.DB_META]))
    assert ledger.verify().problems == [f"totals: bonus {total + 1}, the journal says {total}"]
    _corrupt(ledger, lambda txn, fmt, dbs: txn.put(fmt.META_BONUS_TOTAL, fmt.I64.pack(total), db=dbs[fmt.DB_META]))
    day = T_2026_03_25 // 86_400

    def one_more_on_the_25th(txn, fmt, dbs):
        stored = fmt.I64.unpack(txn.get(fmt.I32.pack(day), db=dbs[fmt.DB_BONUS_DAYS]))[0]
        txn.put(fmt.I32.pack(day), fmt.I64.pack(stored + 1), db=dbs[fmt.DB_BONUS_DAYS])

    _corrupt(ledger, one_more_on_the_25th)
    # bob's welcome 100 + first-order 20 + referee 250, alice's referrer 500: 870 on 2026-03-25.
    assert ledger.verify().problems == ["bonus counter of 2026-03-25: 871, the journal says 870"]


def test_verify_finds_referral_records_that_do_not_hold_together(ledger):
    _referred_and_settled(ledger)
    # ref-1 (settled by o-2) loses its order but keeps its seq; ref-2 (open) becomes undecodable;
    # an index entry for dave names a referral nobody has.
    def corrupt(txn, fmt, dbs):
        time_s, seq, referrer, referee, order = fmt.decode_referral(txn.get(b"ref-1", db=dbs[fmt.DB_REFERRALS]))
        assert (referee, order) == (b"bob", b"o-2") and seq > 0
        txn.put(b"ref-1", fmt.encode_referral(time_s, seq, referrer, referee, b""), db=dbs[fmt.DB_REFERRALS])
        txn.put(b"ref-2", b"\x00\x01", db=dbs[fmt.DB_REFERRALS])
        txn.put(b"dave", b"ref-9", db=dbs[fmt.DB_REFEREES])

    _corrupt(ledger, corrupt)
    problems = ledger.verify().problems
    assert problems[0].startswith("referral 'ref-1': settled by seq ") and problems[0].endswith(" with order b''")
    assert problems[1].startswith("referral 'ref-2': undecodable record (")
    assert problems[2:] == ["referees: 'carol' names no referral", "referees: 'dave' names no referral"]


def test_verify_finds_a_pending_lot_that_is_not_positive(ledger):
    engaged(ledger, pending_days=30)
    ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_01)  # 100 points pending until 2026-03-31
    assert ledger.verify().ok

    def split_the_lot(txn, fmt, dbs):
        # 100 pending become 101 and -1 in two lots of the same instants and month: every sum
        # (balance, expiry totals, cohorts) still holds; only the lot itself is wrong.
        state = _engine_py.MemberState.decode(txn.get(b"m", db=dbs[fmt.DB_MEMBERS]))
        [lot] = state.engagement.lots
        assert lot[2] == 100
        state.engagement.lots = split = [lot[:2] + [101] + lot[3:], lot[:2] + [-1] + lot[3:]]
        txn.put(b"m", state.encode(), db=dbs[fmt.DB_MEMBERS])
        written.extend(split)

    written = []
    _corrupt(ledger, split_the_lot)
    assert ledger.verify().problems == [f"member 'm': a pending lot that is not positive: {written}"]
    assert [lot[2] for lot in written] == [101, -1] and written[0][1] == written[1][1]
