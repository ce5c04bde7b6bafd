"""Revenue and contract liability under IFRS 15 / ASC 606 (SPEC §19), over both engines.

Every expected figure is worked by hand in the comments (money in minor units).
"""

import decimal
from fractions import Fraction

import pytest

from pointsledger import store_format as fmt
from pointsledger.errors import AlreadyExists, FailedPrecondition, InvalidArgument

Y1 = 1_767_225_600  # 2026-01-01T00:00:00Z
Y2 = 1_798_761_600  # 2027-01-01T00:00:00Z
Y3 = 1_830_297_600  # 2028-01-01T00:00:00Z
DAY = 86_400

# IFRS 15 IE267-IE270: 1 point per 10.00, point value 1.00, no expiry.
IFRS_PROGRAM = {
    "currency": "USD",
    "earn": {"points": 1, "per_minor_units": 1000},
    "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1}],
    "point_value": "1.00",
    "effective_from": Y1,
}


def ifrs_example(ledger):
    """100,000.00 of purchases earning 10,000 points in year 1; 4,500 redeemed in year 1, 4,000 in year 2."""
    ledger.set_program(IFRS_PROGRAM)
    for index in range(10):  # ten members each buy 10,000.00 (1,000 points) on 2026-02-01
        ledger.purchase(f"o-{index}", f"m-{index}", 1_000_000, "goods", Y1 + 31 * DAY)
    ledger.set_redemption_estimate("e-1", Y1, "0.95")
    ledger.set_redemption_estimate("e-2", Y2, "0.97")
    for index in range(9):  # 4,500 in year 1: 500 each from m-0 .. m-8
        ledger.redeem(f"r1-{index}", f"m-{index}", 500, Y1 + 200 * DAY)
    for index in range(8):  # 4,000 in year 2: 500 each from m-0 .. m-7
        ledger.redeem(f"r2-{index}", f"m-{index}", 500, Y2 + 100 * DAY)


def test_the_standards_example(ledger):
    ifrs_example(ledger)
    # D = A S / (A + S): A = 10,000,000; S = 10,000 x 100 x 0.95 = 950,000;
    # D = 9.5e12 / 10,950,000 = 867,579.9087 -> 867,580 (8,675.80).
    year1 = ledger.revenue(Y1, Y2)
    (cohort,) = year1.cohorts
    assert (cohort.cohort, cohort.amount_minor, cohort.points, cohort.rate) == ("2026", 10_000_000, 10_000,
                                                                                decimal.Decimal("0.95"))
    assert cohort.allocated_minor == 867_580
    # Year 1: r(end of year 1) = 0.95 (0.97 is effective at, not before, 2027-01-01);
    # X = 9,500; revenue = D x 4,500 / 9,500 = 410,958.86 -> 410,959 (4,109.59).
    assert cohort.revenue_minor == 410_959
    assert (cohort.liability_from_minor, cohort.liability_to_minor) == (0, 456_621)  # 4,566.21
    assert (cohort.estimate_from, cohort.estimate_to) == (decimal.Decimal("0.95"), decimal.Decimal("0.95"))
    assert cohort.redeemed == 4_500
    # Year 2: r = 0.97, X = 9,700, R = 8,500: Rev = D x 8,500 / 9,700 = 760,250.7 ... less 410,958.86.
    year2 = ledger.revenue(Y2, Y3)
    (cohort,) = year2.cohorts
    assert cohort.revenue_minor == 349_292  # 3,492.92
    assert (cohort.liability_from_minor, cohort.liability_to_minor) == (456_621, 107_329)  # 1,073.29
    assert cohort.estimate_to == decimal.Decimal("0.97")
    assert year2.total.revenue_minor == 349_292
    assert year2.observed is None  # the cohort still holds 1,500 points
    assert ledger.verify().ok


def test_without_an_estimate_revenue_is_a_failed_precondition(ledger):
    ledger.set_program(IFRS_PROGRAM)
    with pytest.raises(FailedPrecondition):
        ledger.revenue(Y1, Y2)


def test_estimates_are_idempotent_and_checked(ledger):
    first = ledger.set_redemption_estimate("e-1", Y1, "0.95")
    assert (first.status, first.rate, first.rate_bp) == ("APPLIED", decimal.Decimal("0.95"), 9500)
    assert ledger.set_redemption_estimate("e-1", Y1, "0.9500").status == "DUPLICATE"
    with pytest.raises(AlreadyExists):
        ledger.set_redemption_estimate("e-1", Y1, "0.96")
    with pytest.raises(FailedPrecondition) as refused:
        ledger.set_redemption_estimate("e-0", Y1 - DAY, "0.9")
    assert refused.value.field == "effective_from_s"
    for bad in ("1.0001", "-0.1", "0.12345", 0.5, True, "x"):
        with pytest.raises(InvalidArgument) as refused:
            ledger.set_redemption_estimate("e-2", Y2, bad)
        assert refused.value.field == "rate"
    assert [(each.estimate_id, each.effective_from_s, each.rate) for each in ledger.redemption_estimates()] == [
        ("e-1", Y1, decimal.Decimal("0.95"))]


def test_from_and_to_are_utc_midnights(ledger):
    ledger.set_redemption_estimate("e-1", Y1, "0.95")
    for from_s, to_s, field in ((Y1 + 1, Y2, "from_s"), (Y1, Y2 + 1, "to_s"), (Y2, Y1, "to_s"), (Y1, Y1, "to_s")):
        with pytest.raises(InvalidArgument) as refused:
            ledger.revenue(from_s, to_s)
        assert refused.value.field == field
    with pytest.raises(InvalidArgument) as refused:
        ledger.revenue(Y1, Y2, cohort="week")
    assert refused.value.field == "cohort"
