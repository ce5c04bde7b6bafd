"""Refund, redeem, adjust; debt; idempotency; the check order (SPEC §6, §15).

Most tests use the §3 example programme (electronics ×2, expiry 12 months):
12,345 cents of electronics at member tier earn floor(12345 × 2 / 100) = 246.
"""

import pytest

import pointsledger
from support import (
    T_2026_01_15, T_2026_03_15, T_2026_06_01, T_2027_02_01, T_2027_04_01, dump_ledger,
    entries, example_program, simple_program,
)

T = T_2026_03_15  # 2026-03-15T00:00:00Z
T1 = T + 1
T2 = T + 2


@pytest.fixture
def example(ledger):
    ledger.set_program(example_program())
    return ledger


def check_refused(ledger, error_class, code, call):
    """The call is refused with `code` and the store is byte-for-byte unchanged."""
    before = dump_ledger(ledger)
    with pytest.raises(error_class) as error_info:
        call()
    assert error_info.value.code == code
    assert dump_ledger(ledger) == before
    assert ledger.verify().ok
    return error_info.value


# --- refunds ---------------------------------------------------------------------------


def test_partial_refunds_claw_back_proportionally(example):
    assert example.purchase("o-1", "m", 12_345, "electronics", T).points == 246
    # R = 5,000: floor(246 × 5000 / 12345) − 0 = floor(99.63) = 99
    first = example.refund("r-1", "o-1", 5_000, T1)
    assert (first.status, first.seq, first.points, first.balance) == ("APPLIED", 2, -99, 147)
    # R = 12,345: floor(246 × 12345 / 12345) − 99 = 147
    second = example.refund("r-2", "o-1", 7_345, T2)
    assert (second.status, second.seq, second.points, second.balance) == ("APPLIED", 3, -147, 0)
    assert entries(example) == [
        (1, "EARN", "m", "o-1", 246, 246, T, 1),
        (2, "CLAWBACK", "m", "r-1", -99, 147, T1, 1),
        (3, "CLAWBACK", "m", "r-2", -147, 0, T2, 1),
    ]
    balance = example.balance("m", T2)
    assert (balance.clawed_back, balance.earned, balance.spend_minor) == (246, 246, 0)
    assert example.verify().ok


def test_three_small_refunds_sum_to_the_whole(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)  # 246
    # R = 1: floor(246/12345) = 0 → 0; R = 2: floor(492/12345) = 0 → 0;
    # R = 12,345: 246 − 0 = 246.
    assert example.refund("r-1", "o-1", 1, T1).points == 0
    assert example.refund("r-2", "o-1", 1, T1).points == 0
    assert example.refund("r-3", "o-1", 12_343, T2).points == -246


def test_refund_over_the_amount_is_failed_precondition(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    example.refund("r-1", "o-1", 12_000, T1)
    # 12,000 + 346 > 12,345
    check_refused(example, pointsledger.FailedPrecondition, "FAILED_PRECONDITION",
                  lambda: example.refund("r-2", "o-1", 346, T2))
    # exactly the rest is fine: floor(246 × 12345/12345) − floor(246 × 12000/12345) = 246 − 239 = 7
    assert example.refund("r-2", "o-1", 345, T2).points == -7


def test_refund_of_an_unknown_order_is_not_found(example):
    check_refused(example, pointsledger.NotFound, "NOT_FOUND",
                  lambda: example.refund("r-1", "no-such-order", 100, T))


def test_refund_clawing_zero_still_writes_a_clawback_entry(example):
    example.purchase("o-1", "m", 12_345, "gift_cards", T)  # 0 points
    result = example.refund("r-1", "o-1", 12_345, T1)
    assert (result.status, result.seq, result.points, result.balance) == ("APPLIED", 2, 0, 0)
    assert entries(example)[-1] == (2, "CLAWBACK", "m", "r-1", 0, 0, T1, 1)


# --- debt ---------------------------------------------------------------------------------


def test_clawback_beyond_the_balance_makes_a_debt_paid_by_the_next_credit(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)  # +246 → 246
    example.redeem("rd-1", "m", 200, T)  # −200 → 46
    # Refund everything: claw back 246 from 46 → −200, a debt of 200.
    result = example.refund("r-1", "o-1", 12_345, T1)
    assert (result.points, result.balance) == (-246, -200)
    debt = example.balance("m", T1)
    assert (debt.balance, debt.available, debt.debt) == (-200, -200, 200)
    assert (debt.next_expiry_s, debt.next_expiry_points) == (None, 0)
    # 12,345 electronics again earns 246: one EARN entry of +246, paying the debt of
    # 200 first; 46 go to the 2027-04-01 bucket.
    paid = example.purchase("o-2", "m", 12_345, "electronics", T2)
    assert (paid.points, paid.balance) == (246, 46)
    assert entries(example)[-1] == (4, "EARN", "m", "o-2", 246, 46, T2, 1)
    after = example.balance("m", T2)
    assert (after.balance, after.available, after.debt) == (46, 46, 0)
    assert (after.next_expiry_s, after.next_expiry_points) == (T_2027_04_01, 46)
    assert example.verify().ok


def test_credit_smaller_than_the_debt_pays_part_of_it(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)  # 246
    example.redeem("rd-1", "m", 246, T)  # 0
    example.refund("r-1", "o-1", 12_345, T1)  # −246, debt 246
    # adjust +100: one ADJUST entry of +100, balance −146, debt 146, no bucket.
    result = example.adjust("adj-1", "m", 100, "goodwill", T2)
    assert (result.points, result.balance) == (100, -146)
    balance = example.balance("m", T2)
    assert (balance.debt, balance.available, balance.next_expiry_points) == (146, -146, 0)
    assert example.verify().ok


def test_member_in_debt_cannot_redeem_or_debit(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    example.redeem("rd-1", "m", 246, T)
    example.refund("r-1", "o-1", 12_345, T1)  # debt 246
    check_refused(example, pointsledger.FailedPrecondition, "FAILED_PRECONDITION",
                  lambda: example.redeem("rd-2", "m", 1, T2))
    check_refused(example, pointsledger.FailedPrecondition, "FAILED_PRECONDITION",
                  lambda: example.adjust("adj-1", "m", -1, "correction", T2))


# --- redemption ------------------------------------------------------------------------


def test_redemption_consumes_soonest_expiring_first(example):
    example.purchase("o-1", "m", 5_000, "books", T_2026_01_15)  # 50, instant 2027-02-01
    example.purchase("o-2", "m", 20_000, "books", T_2026_03_15)  # 200, instant 2027-04-01
    result = example.redeem("rd-1", "m", 30, T_2026_06_01)
    assert (result.status, result.seq, result.points, result.balance) == ("APPLIED", 3, -30, 220)
    balance = example.balance("m", T_2026_06_01)
    assert (balance.next_expiry_s, balance.next_expiry_points) == (T_2027_02_01, 20)
    # 20 left in February, then 30 of April's 200.
    example.redeem("rd-2", "m", 50, T_2026_06_01)
    balance = example.balance("m", T_2026_06_01)
    assert (balance.next_expiry_s, balance.next_expiry_points) == (T_2027_04_01, 170)
    assert (balance.balance, balance.redeemed) == (170, 80)
    assert entries(example, from_seq=3) == [
        (3, "REDEEM", "m", "rd-1", -30, 220, T_2026_06_01, 1),
        (4, "REDEEM", "m", "rd-2", -50, 170, T_2026_06_01, 1),
    ]


def test_redeem_more_than_available_is_refused_and_writes_nothing(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)  # 246
    error = check_refused(example, pointsledger.FailedPrecondition, "FAILED_PRECONDITION",
                          lambda: example.redeem("rd-1", "m", 247, T1))
    assert "247" in str(error)
    assert example.redeem("rd-1", "m", 246, T1).balance == 0


def test_redeem_counts_only_unexpired_points(example):
    example.purchase("o-1", "m", 5_000, "books", T_2026_01_15)  # 50, instant 2027-02-01
    example.purchase("o-2", "m", 20_000, "books", T_2026_03_15)  # 200, instant 2027-04-01
    # At 2027-02-01 the balance is 250 but only 200 are usable.
    check_refused(example, pointsledger.FailedPrecondition, "FAILED_PRECONDITION",
                  lambda: example.redeem("rd-1", "m", 201, T_2027_02_01))
    result = example.redeem("rd-1", "m", 200, T_2027_02_01)
    assert result.balance == 0
    assert entries(example, from_seq=3) == [
        (3, "EXPIRE", "m", "rd-1", -50, 200, T_2027_02_01, 1),
        (4, "REDEEM", "m", "rd-1", -200, 0, T_2027_02_01, 1),
    ]


@pytest.mark.parametrize("operation", ["redeem", "adjust"])
def test_unknown_member_is_not_found(example, operation):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    if operation == "redeem":
        call = lambda: example.redeem("x-1", "ghost", 1, T)  # noqa: E731
    else:
        call = lambda: example.adjust("x-1", "ghost", 1, "goodwill", T)  # noqa: E731
    error = check_refused(example, pointsledger.NotFound, "NOT_FOUND", call)
    assert "ghost" in str(error)


# --- adjustments ------------------------------------------------------------------------


def test_adjust_credit_and_debit(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)  # 246
    credit = example.adjust("adj-1", "m", 54, "goodwill", T1)
    assert (credit.status, credit.seq, credit.points, credit.balance) == ("APPLIED", 2, 54, 300)
    debit = example.adjust("adj-2", "m", -100, "correction", T2)
    assert (debit.status, debit.seq, debit.points, debit.balance) == ("APPLIED", 3, -100, 200)
    balance = example.balance("m", T2)
    assert (balance.adjusted, balance.balance, balance.available) == (-46, 200, 200)
    assert entries(example, from_seq=2) == [
        (2, "ADJUST", "m", "adj-1", 54, 300, T1, 1),
        (3, "ADJUST", "m", "adj-2", -100, 200, T2, 1),
    ]


def test_adjust_debit_beyond_the_balance_is_refused(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)  # 246
    check_refused(example, pointsledger.FailedPrecondition, "FAILED_PRECONDITION",
                  lambda: example.adjust("adj-1", "m", -247, "correction", T1))
    assert example.adjust("adj-1", "m", -246, "correction", T1).balance == 0


def test_adjust_with_an_empty_reason_is_refused(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    error = check_refused(example, pointsledger.InvalidArgument, "INVALID_ARGUMENT",
                          lambda: example.adjust("adj-1", "m", 10, "", T1))
    assert error.field == "reason"


# --- idempotency ------------------------------------------------------------------------


def test_purchase_duplicate_returns_the_original_result(example):
    first = example.purchase("o-1", "m", 12_345, "electronics", T)
    example.purchase("o-2", "m", 10_000, "books", T)  # +100, balance 346
    before = dump_ledger(example)
    again = example.purchase("o-1", "m", 12_345, "electronics", T)
    assert (again.status, again.seq, again.points, again.balance) == ("DUPLICATE", 1, 246, 246)
    assert again.duplicate and not first.duplicate
    assert dump_ledger(example) == before


PURCHASE_USED = "order_id 'o-1' was already used for a different purchase: "


@pytest.mark.parametrize(
    "changed, message, differences",
    [
        (("o-1", "other", 12_345, "electronics", T), "member_id stored 'm', sent 'other'",
         {"member_id": ("m", "other")}),
        (("o-1", "m", 12_346, "electronics", T), "amount_minor stored 12345, sent 12346",
         {"amount_minor": (12_345, 12_346)}),
        (("o-1", "m", 12_345, "books", T), "category stored 'electronics', sent 'books'",
         {"category": ("electronics", "books")}),
        (("o-1", "m", 12_345, "electronics", T1), "time_s stored 1773532800, sent 1773532801",
         {"time_s": (T, T1)}),  # only the time differs
        (("o-1", "n", 1, "electronics", T2),
         "member_id stored 'm', sent 'n'; amount_minor stored 12345, sent 1; time_s stored 1773532800, sent 1773532802",
         {"member_id": ("m", "n"), "amount_minor": (12_345, 1), "time_s": (T, T2)}),
    ],
    ids=["member", "amount", "category", "time", "three"],
)
def test_purchase_same_id_different_content_is_a_conflict_naming_what_differs(example, changed, message, differences):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    error = check_refused(example, pointsledger.AlreadyExists, "ALREADY_EXISTS",
                          lambda: example.purchase(*changed))
    assert str(error) == PURCHASE_USED + message
    assert error.differences == differences
    # In a batch, and against an order of the same batch (the overlay), the same words.
    in_batch = example.purchases(["o-2", "o-2", "o-1"], ["m", changed[1], changed[1]],
                                 [12_345, changed[2], changed[2]], ["electronics", changed[3], changed[3]],
                                 [T, changed[4], changed[4]])
    assert [each.status for each in in_batch] == ["APPLIED", "ALREADY_EXISTS", "ALREADY_EXISTS"]
    assert str(in_batch[1].error) == PURCHASE_USED.replace("o-1", "o-2") + message
    assert str(in_batch[2].error) == PURCHASE_USED + message


def test_refund_duplicate_and_conflicts(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    example.purchase("o-2", "m", 12_345, "electronics", T)
    example.refund("r-1", "o-1", 5_000, T1)  # −99, balance 393
    example.refund("r-2", "o-1", 1_000, T1)  # floor(246 × 6000/12345) − 99 = 119 − 99 = 20 → 373
    before = dump_ledger(example)
    again = example.refund("r-1", "o-1", 5_000, T1)
    assert (again.status, again.seq, again.points, again.balance) == ("DUPLICATE", 3, -99, 393)
    assert dump_ledger(example) == before
    used = "refund_id 'r-1' was already used for a different refund: "
    for changed, message in [
        (("r-1", "o-2", 5_000, T1), "order_id stored 'o-1', sent 'o-2'"),
        (("r-1", "o-1", 5_001, T1), "amount_minor stored 5000, sent 5001"),
        (("r-1", "o-1", 5_000, T2), "time_s stored 1773532801, sent 1773532802"),
        (("r-1", "o-2", 1, T), "order_id stored 'o-1', sent 'o-2'; amount_minor stored 5000, sent 1; "
                               "time_s stored 1773532801, sent 1773532800"),
    ]:
        error = check_refused(example, pointsledger.AlreadyExists, "ALREADY_EXISTS",
                              lambda: example.refund(*changed))
        assert str(error) == used + message


def test_redeem_duplicate_and_conflicts(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    example.purchase("o-2", "n", 12_345, "electronics", T)
    example.redeem("rd-1", "m", 100, T1)
    example.redeem("rd-2", "m", 100, T1)
    before = dump_ledger(example)
    # The duplicate is judged before the state: the member now has only 46 points.
    again = example.redeem("rd-1", "m", 100, T1)
    assert (again.status, again.seq, again.points, again.balance) == ("DUPLICATE", 3, -100, 146)
    assert dump_ledger(example) == before
    used = "redemption_id 'rd-1' was already used for a different redemption: "
    for changed, message, differences in [
        (("rd-1", "n", 100, T1), "member_id stored 'm', sent 'n'", {"member_id": ("m", "n")}),
        (("rd-1", "m", 101, T1), "points stored 100, sent 101", {"points": (100, 101)}),
        (("rd-1", "m", 100, T2), "time_s stored 1773532801, sent 1773532802", {"time_s": (T1, T2)}),
    ]:
        error = check_refused(example, pointsledger.AlreadyExists, "ALREADY_EXISTS",
                              lambda: example.redeem(*changed))
        assert str(error) == used + message
        assert error.differences == differences


def test_adjust_duplicate_and_conflicts(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    example.purchase("o-2", "n", 12_345, "electronics", T)
    example.adjust("adj-1", "m", 10, "goodwill", T1)
    example.adjust("adj-2", "m", 10, "goodwill", T1)
    before = dump_ledger(example)
    again = example.adjust("adj-1", "m", 10, "goodwill", T1)
    assert (again.status, again.seq, again.points, again.balance) == ("DUPLICATE", 3, 10, 256)
    assert dump_ledger(example) == before
    used = "adjustment_id 'adj-1' was already used for a different adjustment: "
    for changed, message in [
        (("adj-1", "n", 10, "goodwill", T1), "member_id stored 'm', sent 'n'"),
        (("adj-1", "m", 11, "goodwill", T1), "points stored 10, sent 11"),
        (("adj-1", "m", 10, "apology\nline two", T1), "reason stored 'goodwill', sent 'apology\\nline two'"),
        (("adj-1", "m", 10, "goodwill", T2), "time_s stored 1773532801, sent 1773532802"),
    ]:
        error = check_refused(example, pointsledger.AlreadyExists, "ALREADY_EXISTS",
                              lambda: example.adjust(*changed))
        assert str(error) == used + message


def test_each_kind_of_id_has_its_own_namespace(example):
    assert example.purchase("same", "m", 12_345, "electronics", T).status == "APPLIED"
    assert example.refund("same", "same", 5_000, T1).status == "APPLIED"
    assert example.redeem("same", "m", 10, T1).status == "APPLIED"
    assert example.adjust("same", "m", 10, "goodwill", T1).status == "APPLIED"
    assert [entry[1] for entry in entries(example)] == ["EARN", "CLAWBACK", "REDEEM", "ADJUST"]


def test_refused_requests_are_not_remembered(example):
    # A refused purchase, then the fixed retry under the same id applies.
    with pytest.raises(pointsledger.InvalidArgument):
        example.purchase("o-1", "m", 0, "electronics", T)
    assert example.purchase("o-1", "m", 12_345, "electronics", T).status == "APPLIED"
    # A refused redemption (too many points) is judged afresh after more points arrive.
    with pytest.raises(pointsledger.FailedPrecondition):
        example.redeem("rd-1", "m", 300, T1)
    example.purchase("o-2", "m", 10_000, "books", T1)  # +100 → 346
    assert example.redeem("rd-1", "m", 300, T1).status == "APPLIED"
    # A refused refund (over the amount), then the same id with a valid amount.
    with pytest.raises(pointsledger.FailedPrecondition):
        example.refund("r-1", "o-1", 12_346, T2)
    assert example.refund("r-1", "o-1", 12_345, T2).status == "APPLIED"
    # A refused adjustment (unknown member), then the same id for a known one.
    with pytest.raises(pointsledger.NotFound):
        example.adjust("adj-1", "ghost", 5, "goodwill", T2)
    assert example.adjust("adj-1", "m", 5, "goodwill", T2).status == "APPLIED"


# --- the check order (§15) ----------------------------------------------------------


def test_duplicate_id_with_an_invalid_field_is_invalid_argument(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    example.refund("r-1", "o-1", 100, T)
    example.redeem("rd-1", "m", 10, T)
    example.adjust("adj-1", "m", 10, "goodwill", T)
    cases = [
        (lambda: example.purchase("o-1", "m", 0, "electronics", T), "amount_minor"),
        (lambda: example.refund("r-1", "o-1", 0, T), "amount_minor"),
        (lambda: example.redeem("rd-1", "m", 0, T), "points"),
        (lambda: example.adjust("adj-1", "m", 0, "goodwill", T), "points"),
        (lambda: example.adjust("adj-1", "m", 10, "", T), "reason"),
    ]
    for call, field in cases:
        error = check_refused(example, pointsledger.InvalidArgument, "INVALID_ARGUMENT", call)
        assert error.field == field


def test_unknown_member_with_bad_points_is_invalid_argument(example):
    for call in (lambda: example.redeem("rd-1", "ghost", 0, T),
                 lambda: example.adjust("adj-1", "ghost", 0, "x", T)):
        error = check_refused(example, pointsledger.InvalidArgument, "INVALID_ARGUMENT", call)
        assert error.field == "points"


def test_unknown_order_with_bad_amount_is_invalid_argument(example):
    error = check_refused(example, pointsledger.InvalidArgument, "INVALID_ARGUMENT",
                          lambda: example.refund("r-1", "ghost-order", 0, T))
    assert error.field == "amount_minor"


def test_used_id_is_judged_before_existence(example):
    example.purchase("o-1", "m", 12_345, "electronics", T)
    example.redeem("rd-1", "m", 10, T)
    example.adjust("adj-1", "m", 10, "goodwill", T)
    example.refund("r-1", "o-1", 10, T)
    # Same ids for an unknown member / order: the id conflict is reported, not NOT_FOUND.
    check_refused(example, pointsledger.AlreadyExists, "ALREADY_EXISTS",
                  lambda: example.redeem("rd-1", "ghost", 10, T))
    check_refused(example, pointsledger.AlreadyExists, "ALREADY_EXISTS",
                  lambda: example.adjust("adj-1", "ghost", 10, "goodwill", T))
    check_refused(example, pointsledger.AlreadyExists, "ALREADY_EXISTS",
                  lambda: example.refund("r-1", "ghost-order", 10, T))


def test_existence_is_judged_before_state(example):
    # A redeem for an unknown member is NOT_FOUND even though it would also be
    # "fewer points than asked".
    example.purchase("o-1", "m", 12_345, "electronics", T)
    check_refused(example, pointsledger.NotFound, "NOT_FOUND",
                  lambda: example.redeem("rd-1", "ghost", 10**9, T))


def test_state_is_judged_before_int64_range(ledger):
    ledger.set_program(simple_program(earn={"points": 1_000_000, "per_minor_units": 1}))
    # 10^12 × 10^6 = 10^18 points; adjusting by int64 max would overflow the balance,
    # but a debit larger than the balance is a FAILED_PRECONDITION first.
    ledger.purchase("o-1", "m", 10**12, "x", T)
    check_refused(ledger, pointsledger.FailedPrecondition, "FAILED_PRECONDITION",
                  lambda: ledger.adjust("adj-1", "m", -(2**63), "x", T))
    error = check_refused(ledger, pointsledger.InvalidArgument, "INVALID_ARGUMENT",
                          lambda: ledger.adjust("adj-2", "m", 2**63 - 1, "x", T))
    assert error.field in ("balance", "points")


def test_clawback_after_the_points_expired_becomes_debt(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_15)  # 100, instant 2026-03-01
    # At 2026-03-15 the 100 expire first (EXPIRE with the refund's id), then the
    # clawback of floor(100 × 10000 / 10000) = 100 finds no points: debt 100.
    result = ledger.refund("r-1", "o-1", 10_000, T_2026_03_15)
    assert (result.points, result.balance) == (-100, -100)
    assert entries(ledger) == [
        (1, "EARN", "m", "o-1", 100, 100, T_2026_01_15, 1),
        (2, "EXPIRE", "m", "r-1", -100, 0, T_2026_03_15, 1),
        (3, "CLAWBACK", "m", "r-1", -100, -100, T_2026_03_15, 1),
    ]
    balance = ledger.balance("m", T_2026_03_15)
    assert (balance.debt, balance.available, balance.expired, balance.clawed_back) == (100, -100, 100, 100)
    assert ledger.verify().ok


def test_adjust_credit_goes_to_its_own_expiry_bucket(example):
    example.purchase("o-1", "m", 5_000, "books", T_2026_01_15)  # 50, instant 2027-02-01
    example.adjust("adj-1", "m", 70, "goodwill", T_2026_03_15)  # instant 2027-04-01
    balance = example.balance("m", T_2027_02_01)
    assert (balance.balance, balance.available) == (120, 70)
    assert (balance.next_expiry_s, balance.next_expiry_points) == (T_2027_04_01, 70)


# --- recorded operations, by id --------------------------------------------------------


def test_recorded_operations_are_found_by_id_with_their_original_results(example):
    from pointsledger.results import (
        OperationResult, RecordedAdjustment, RecordedOrder, RecordedRedemption, RecordedRefund,
    )

    example.purchase("o-1", "m", 12_345, "electronics", T)  # 246, balance 246
    example.refund("r-1", "o-1", 5_000, T1)  # floor(246 × 5000 / 12345) = 99 → 147
    example.redeem("rd-1", "m", 100, T1)  # → 47
    example.adjust("adj-1", "m", 10, "goodwill", T1)  # → 57
    example.purchase("o-2", "m", 1_000, "books", T2)  # 10 → 67 (the later balance is not o-1's)
    assert example.get_order("o-1") == RecordedOrder(
        "o-1", "m", 12_345, "electronics", T, 5_000, 99, OperationResult("APPLIED", 1, 246, 246))
    assert example.get_refund("r-1") == RecordedRefund(
        "r-1", "o-1", 5_000, T1, OperationResult("APPLIED", 2, -99, 147))
    assert example.get_redemption("rd-1") == RecordedRedemption(
        "rd-1", "m", 100, T1, OperationResult("APPLIED", 3, -100, 47))
    assert example.get_adjustment("adj-1") == RecordedAdjustment(
        "adj-1", "m", 10, "goodwill", T1, OperationResult("APPLIED", 4, 10, 57))
    # A resend answers with the same entry, marked duplicate.
    again = example.refund("r-1", "o-1", 5_000, T1)
    assert again == OperationResult("DUPLICATE", 2, -99, 147)


def test_an_unrecorded_or_bad_id_is_refused_by_name(example):
    for lookup, id_field in [(example.get_order, "order_id"), (example.get_refund, "refund_id"),
                             (example.get_redemption, "redemption_id"),
                             (example.get_adjustment, "adjustment_id")]:
        with pytest.raises(pointsledger.NotFound) as missing:
            lookup("x-9")
        assert str(missing.value) == f"{id_field} 'x-9': none recorded"
        with pytest.raises(pointsledger.InvalidArgument) as bad:
            lookup("")
        assert bad.value.field == id_field
