"""Revenue and contract liability under IFRS 15 / ASC 606 (SPEC §19), over both engines.

Every expected figure is worked by hand in the comments (money in minor units).
"""

import decimal
from fractions import Fraction

import pytest

from pointsledger.store import format as fmt
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


@pytest.mark.parametrize("bad", ["\u0660.\u0665", " 0.5", "0.5 ", "+0.5", "1e-4", "0.50000", "0.", ".5", "",
                                 "0,5", "NaN", decimal.Decimal("0.00001"), decimal.Decimal("0.50000")])
def test_an_estimate_rate_is_plain_ascii_with_at_most_four_places(ledger, bad):
    # Like point_value: ASCII digits, an optional point and 1-4 places; a fifth place is
    # refused even when it is a zero. The error names the field and the value; nothing is stored.
    with pytest.raises(InvalidArgument) as refused:
        ledger.set_redemption_estimate("e-1", Y1, bad)
    assert refused.value.field == "rate"
    assert repr(bad) in str(refused.value)
    assert ledger.redemption_estimates() == []
    good = ledger.set_redemption_estimate("e-1", Y1, "0.5")
    assert (good.rate, good.rate_bp) == (decimal.Decimal("0.5"), 5000)


def test_from_and_to_are_utc_midnights(ledger):
    ledger.set_redemption_estimate("e-1", Y1, "0.95")
    for from_s, to_s, field in ((Y1 + 1, Y2, "from_s"), (Y1, Y2 + 1, "to_s"), (Y2, Y1, "to_s"), (Y1, Y1, "to_s")):
        with pytest.raises(InvalidArgument) as refused:
            ledger.revenue(from_s, to_s)
        assert refused.value.field == field
    with pytest.raises(InvalidArgument) as refused:
        ledger.revenue(Y1 + 12 * 3600, Y2)
    assert str(refused.value) == (
        "from_s: must be a UTC midnight: revenue positions are known only at UTC midnights (the cohort counters "
        "are kept per UTC day), and 2026-01-01T12:00:00Z is inside 2026-01-01 (got 1767268800)")
    with pytest.raises(InvalidArgument) as refused:
        ledger.revenue(Y1, Y2, cohort="week")
    assert refused.value.field == "cohort"


# A simple programme for the hand-computed cases: 1 point per 1.00, a point worth 1.00
# (100 minor units), no expiry unless given.
SIMPLE = {
    "currency": "USD",
    "earn": {"points": 1, "per_minor_units": 100},
    "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1}],
    "point_value": "1.00",
    "effective_from": Y1,
}
FEB_1 = Y1 + 31 * DAY  # 2026-02-01
MAR_1 = FEB_1 + 28 * DAY  # 2026-03-01
APR_1 = MAR_1 + 31 * DAY  # 2026-04-01
JUN_1 = APR_1 + 61 * DAY  # 2026-06-01
JUL_1 = JUN_1 + 30 * DAY  # 2026-07-01
AUG_1 = JUL_1 + 31 * DAY  # 2026-08-01


def test_two_cohorts_with_different_estimates(ledger):
    ledger.set_program(SIMPLE)
    ledger.set_redemption_estimate("e-1", Y1, "0.5")
    ledger.set_redemption_estimate("e-2", Y2, "0.8")
    ledger.purchase("o-1", "m-1", 10_000, "goods", Y1 + 10 * DAY)  # 100 points, cohort 2026
    ledger.purchase("o-2", "m-2", 20_000, "goods", Y2 + 10 * DAY)  # 200 points, cohort 2027
    ledger.redeem("r-1", "m-1", 25, Y2 + 20 * DAY)
    ledger.redeem("r-2", "m-2", 80, Y2 + 20 * DAY)
    report = ledger.revenue(Y2, Y3)
    first, second = report.cohorts
    # 2026: r_c 0.5; S = 100 x 100 x 0.5 = 5,000; D = 10,000 x 5,000 / 15,000 = 3,333.33.
    # At 2028-01-01 r = 0.8: X = 80, R = 25: Rev = 3,333.33 x 25 / 80 = 1,041.67; L = 2,291.67.
    assert (first.cohort, first.rate, first.allocated_minor) == ("2026", decimal.Decimal("0.5"), 3_333)
    assert (first.revenue_minor, first.liability_from_minor, first.liability_to_minor) == (1_042, 3_333, 2_292)
    assert first.exact["revenue"] == Fraction(10_000 * 5_000, 15_000) * Fraction(25, 80)
    # 2027: r_c 0.8 (effective at its first instant); S = 200 x 100 x 0.8 = 16,000;
    # D = 20,000 x 16,000 / 36,000 = 8,888.89; X = 160, R = 80: Rev = 4,444.44 = L.
    assert (second.cohort, second.rate, second.allocated_minor) == ("2027", decimal.Decimal("0.8"), 8_889)
    assert (second.revenue_minor, second.liability_from_minor, second.liability_to_minor) == (4_444, 0, 4_444)
    # Totals are sums of the rounded figures.
    total = report.total
    assert (total.allocated_minor, total.revenue_minor, total.liability_to_minor) == (12_222, 5_486, 6_736)
    assert (total.amount_minor, total.points, total.redeemed) == (30_000, 300, 105)


def test_a_refund_lowers_the_amount_and_the_points(ledger):
    ledger.set_program(SIMPLE)
    ledger.set_redemption_estimate("e-1", Y1, "0.5")
    ledger.purchase("o-1", "m-1", 10_000, "goods", Y1 + 10 * DAY)  # 100 points
    ledger.refund("f-1", "o-1", 4_000, Y1 + 20 * DAY)  # claws back floor(100 x 4,000 / 10,000) = 40
    ledger.redeem("r-1", "m-1", 15, Y1 + 30 * DAY)
    (cohort,) = ledger.revenue(Y1, Y2).cohorts
    # A = 6,000; P = 60; S = 60 x 100 x 0.5 = 3,000; D = 6,000 x 3,000 / 9,000 = 2,000;
    # X = 30, R = 15: Rev = 1,000, L = 1,000.
    assert (cohort.amount_minor, cohort.points, cohort.allocated_minor) == (6_000, 60, 2_000)
    assert (cohort.revenue_minor, cohort.liability_to_minor) == (1_000, 1_000)
    assert ledger.verify().ok


def test_a_cohort_whose_points_all_expire_recognises_all_of_D(ledger):
    ledger.set_program(dict(SIMPLE, expiry_months=1))
    ledger.set_redemption_estimate("e-1", Y1, "0.5")
    ledger.purchase("o-1", "m-1", 10_000, "goods", Y1 + 9 * DAY)  # 100 points, expire 2026-03-01
    ledger.redeem("r-1", "m-1", 20, Y1 + 19 * DAY)
    assert ledger.expire(MAR_1).points == 80
    # D = 10,000 x 5,000 / 15,000 = 3,333.33. On 2026-02-01: X = 50, R = 20: Rev = 1,333.33.
    # Once the points are gone (2026-03-01) the whole D is revenue.
    assert ledger.revenue(Y1, FEB_1).cohorts[0].revenue_minor == 1_333
    (cohort,) = ledger.revenue(FEB_1, APR_1).cohorts
    assert (cohort.revenue_minor, cohort.liability_from_minor, cohort.liability_to_minor) == (2_000, 2_000, 0)
    assert (cohort.expired, cohort.redeemed) == (80, 20)
    report = ledger.revenue(Y1, Y2)
    assert report.cohorts[0].revenue_minor == 3_333
    assert (report.observed, report.observed_decimal) == (Fraction(20, 100), decimal.Decimal("0.200000"))
    assert ledger.verify().ok


def test_an_estimate_change_mid_period_catches_up_in_that_period(ledger):
    ledger.set_program(SIMPLE)
    ledger.set_redemption_estimate("e-1", Y1, "0.5")
    ledger.purchase("o-1", "m-1", 10_000, "goods", Y1 + 10 * DAY)
    ledger.redeem("r-1", "m-1", 30, Y1 + 20 * DAY)
    ledger.set_redemption_estimate("e-2", JUL_1, "0.6")
    # D = 3,333.33 (r_c stays 0.5). Up to 2026-07-01 r = 0.5: X = 50, Rev = 3,333.33 x 30 / 50 = 2,000.
    june = ledger.revenue(JUN_1, JUL_1).cohorts[0]
    assert (june.revenue_minor, june.estimate_from, june.estimate_to) == (0, decimal.Decimal("0.5"),
                                                                           decimal.Decimal("0.5"))
    # After it, r = 0.6: X = 60, Rev = 1,666.67: July takes the catch-up of -333.33.
    july = ledger.revenue(JUL_1, AUG_1).cohorts[0]
    assert (july.revenue_minor, july.estimate_to, july.allocated_minor) == (-333, decimal.Decimal("0.6"), 3_333)
    assert (july.liability_from_minor, july.liability_to_minor) == (1_333, 1_667)


def test_quarter_and_month_cohorts(ledger):
    ledger.set_program(SIMPLE)
    ledger.set_redemption_estimate("e-1", Y1, "0.5")
    ledger.purchase("o-1", "m-1", 1_000, "goods", Y1 + 5 * DAY)  # January: 10 points
    ledger.purchase("o-2", "m-1", 2_000, "goods", FEB_1 + 5 * DAY)  # February: 20 points
    ledger.purchase("o-3", "m-2", 4_000, "goods", APR_1 + 5 * DAY)  # April: 40 points
    ledger.redeem("r-1", "m-1", 15, APR_1)  # 10 of January's, then 5 of February's
    months = ledger.revenue(Y1, Y2, cohort="month").cohorts
    assert [(each.cohort, each.amount_minor, each.points, each.redeemed) for each in months] == [
        ("2026-01", 1_000, 10, 10), ("2026-02", 2_000, 20, 5), ("2026-04", 4_000, 40, 0)]
    quarters = ledger.revenue(Y1, Y2, cohort="quarter").cohorts
    assert [(each.cohort, each.amount_minor, each.points, each.redeemed) for each in quarters] == [
        ("2026-Q1", 3_000, 30, 15), ("2026-Q2", 4_000, 40, 0)]
    # January's points are all gone: all of its D = 1,000 x 500 / 1,500 = 333.33 is revenue.
    assert months[0].revenue_minor == 333
    assert ledger.revenue(Y1, Y2, cohort="month").observed == Fraction(10, 10)
    with ledger.store.read() as txn:
        stored = {fmt.COHORT_KEY.unpack(key): fmt.COHORT.unpack(value)
                  for key, value in txn.cursor(db=ledger.store.dbs[fmt.DB_COHORTS])}
    jan, feb, apr = 2026 * 12, 2026 * 12 + 1, 2026 * 12 + 3
    day = lambda time_s: time_s // DAY
    assert stored == {
        (jan, day(Y1 + 5 * DAY)): (1_000, 10, 0, 0, 0), (feb, day(FEB_1 + 5 * DAY)): (2_000, 20, 0, 0, 0),
        (apr, day(APR_1 + 5 * DAY)): (4_000, 40, 0, 0, 0), (jan, day(APR_1)): (0, 0, 10, 0, 0),
        (feb, day(APR_1)): (0, 0, 5, 0, 0),
    }


def test_a_currency_without_minor_units(ledger):
    # JPY has exponent 0: a point worth "1" is 1 minor unit (1 yen), not 100.
    ledger.set_program(dict(SIMPLE, currency="JPY", point_value="1"))
    ledger.set_redemption_estimate("e-1", Y1, "0.5")
    ledger.purchase("o-1", "m-1", 10_000, "goods", Y1 + 10 * DAY)  # 100 points
    ledger.redeem("r-1", "m-1", 10, Y1 + 20 * DAY)
    report = ledger.revenue(Y1, Y2)
    (cohort,) = report.cohorts
    # S = 100 x 1 x 0.5 = 50; D = 10,000 x 50 / 10,050 = 49.75; X = 50: Rev = 9.95; L = 39.80.
    assert (report.currency, report.exponent) == ("JPY", 0)
    assert (cohort.allocated_minor, cohort.revenue_minor, cohort.liability_to_minor) == (50, 10, 40)


@pytest.mark.parametrize("currency", ["CLF", "UYW"])
def test_a_currency_with_four_decimal_places(ledger, currency):
    # ISO 4217 gives CLF and UYW exponent 4: 100.0000 is 1,000,000 minor units, and a point
    # worth "0.01" is 100 minor units (not 1). 1 point per 100.0000: 100 points.
    ledger.set_program(dict(SIMPLE, currency=currency, point_value="0.01", earn={"points": 1, "per_minor_units": 10_000}))
    ledger.set_redemption_estimate("e-1", Y1, "1")
    ledger.purchase("o-1", "m-1", 1_000_000, "goods", MAR_1)
    report = ledger.revenue(Y1, Y2)
    (cohort,) = report.cohorts
    # S = 100 x 100 x 1 = 10,000; D = 1,000,000 x 10,000 / 1,010,000 = 9,900.99 -> 9,901.
    assert (report.currency, report.exponent) == (currency, 4)
    assert (cohort.points, cohort.allocated_minor) == (100, 9_901)


def test_credits_are_valued_at_the_version_they_were_applied_under(ledger):
    # v1 (point 1.00 = 100 minor units) from 2026-01-01; v2 (2.00 = 200) from noon of 2026-03-01.
    ledger.set_program(SIMPLE)
    ledger.set_program(dict(SIMPLE, point_value="2.00", effective_from=MAR_1 + 12 * 3600))
    ledger.set_redemption_estimate("e-1", Y1, "1")
    # One commit, one day, both versions: 1,000 points at 06:00 under v1, 1,000 at 18:00 under v2.
    ledger.purchases(["o-1", "o-2"], ["m-1", "m-2"], [100_000, 100_000], ["goods", "goods"],
                     [MAR_1 + 6 * 3600, MAR_1 + 18 * 3600])
    # 500 points adjusted in under v2 on 2026-03-02 (a positive ADJUST is a credit).
    ledger.adjust("a-1", "m-1", 500, "goodwill", MAR_1 + DAY + 3600)
    assert [entry.program_version for entry in ledger.journal(1, 10)] == [1, 2, 2]
    (cohort,) = ledger.revenue(Y1, Y2).cohorts
    # A = 200,000; S = (1,000 x 100 + 1,000 x 200 + 500 x 200) x 1 = 400,000;
    # D = 200,000 x 400,000 / 600,000 = 133,333.33 -> 133,333 (the day's midnight value, 100, gave 100,000).
    assert (cohort.amount_minor, cohort.points, cohort.allocated_minor) == (200_000, 2_500, 133_333)
    assert ledger.verify().ok


def test_points_taken_back_are_valued_at_the_version_of_the_entry_that_takes_them(ledger):
    # v1 (1.00 = 100) from 2026-01-01; v2 (2.00 = 200) from 2026-06-01.
    ledger.set_program(SIMPLE)
    ledger.set_program(dict(SIMPLE, point_value="2.00", effective_from=JUN_1))
    ledger.set_redemption_estimate("e-1", Y1, "1")
    ledger.purchase("o-1", "m-1", 100_000, "goods", FEB_1)  # 1,000 points under v1
    ledger.refund("f-1", "o-1", 100_000, MAR_1)  # all taken back under v1
    ledger.purchase("o-2", "m-2", 100_000, "goods", JUL_1)  # 1,000 points under v2
    (cohort,) = ledger.revenue(Y1, Y2).cohorts
    # A = 200,000 - 100,000 = 100,000; S = 100,000 + 200,000 - 100,000 = 200,000;
    # D = 100,000 x 200,000 / 300,000 = 66,666.67 -> 66,667 (the cohort's mean value, 150, gave 60,000).
    assert (cohort.amount_minor, cohort.points, cohort.allocated_minor) == (100_000, 1_000, 66_667)
    # 250 of m-2's points adjusted out on 2026-08-01 under v2: taken back at 200 each.
    ledger.adjust("a-1", "m-2", -250, "correction", AUG_1)
    (cohort,) = ledger.revenue(Y1, Y2).cohorts
    # S = 200,000 - 250 x 200 = 150,000; D = 100,000 x 150,000 / 250,000 = 60,000.
    assert (cohort.points, cohort.allocated_minor) == (750, 60_000)
    assert ledger.verify().ok


def test_verify_checks_the_cohort_values(ledger):
    ledger.set_program(SIMPLE)
    ledger.purchase("o-1", "m-1", 10_000, "goods", FEB_1)  # 100 points under v1
    assert ledger.verify().ok
    key = fmt.COHORT_VALUE_KEY.pack(2026 * 12 + 1, FEB_1 // DAY, 1)
    db = ledger.store.dbs[fmt.DB_COHORT_VALUES]
    with ledger.store.env.begin(write=True) as txn:
        assert fmt.COHORT_VALUE.unpack(txn.get(key, db=db)) == (100, 0)
        txn.delete(key, db=db)
        txn.put(fmt.COHORT_VALUE_KEY.pack(2026 * 12 + 1, FEB_1 // DAY, 2), fmt.COHORT_VALUE.pack(100, 0), db=db)
    assert ledger.verify().problems == [
        "cohort values of day 2026-02-01, version 1: credited 0, the journal says 100",
        "cohort values of day 2026-02-01, version 2: credited 100, the journal says 0",
    ]
    with ledger.store.env.begin(write=True) as txn:
        txn.put(fmt.COHORT_VALUE_KEY.pack(2026 * 12 + 1, FEB_1 // DAY, 2), fmt.COHORT_VALUE.pack(100, 3), db=db)
    assert "cohort values 2026-02 day 2026-02-01: credited, taken back (100, 3), the cohort counters say (100, 0)" in (
        ledger.verify().problems)


def test_verify_finds_cohort_values_without_a_cohort_row(ledger):
    ledger.set_program(SIMPLE)
    ledger.purchase("o-1", "m-1", 10_000, "goods", FEB_1)  # 100 points under v1, cohort 2026-02
    march_1 = FEB_1 + 28 * DAY
    with ledger.store.env.begin(write=True) as txn:  # 5 points taken back from a cohort day that has no row
        txn.put(fmt.COHORT_VALUE_KEY.pack(2026 * 12 + 2, march_1 // DAY, 1), fmt.COHORT_VALUE.pack(0, 5),
                db=ledger.store.dbs[fmt.DB_COHORT_VALUES])
    assert ledger.verify().problems == ["cohort values 2026-03 day 2026-03-01: (0, 5) without a cohort counter row"]


def test_verify_checks_the_cohort_counters(ledger):
    ledger.set_program(SIMPLE)
    ledger.purchase("o-1", "m-1", 10_000, "goods", Y1 + 10 * DAY)  # 100 points, January 2026
    ledger.redeem("r-1", "m-1", 30, FEB_1)
    assert ledger.verify().ok
    jan = 2026 * 12
    key = fmt.COHORT_KEY.pack(jan, FEB_1 // DAY)
    db = ledger.store.dbs[fmt.DB_COHORTS]
    with ledger.store.env.begin(write=True) as txn:
        assert fmt.COHORT.unpack(txn.get(key, db=db)) == (0, 0, 30, 0, 0)
        txn.put(key, fmt.COHORT.pack(0, 0, 31, 0, 0), db=db)
    assert ledger.verify().problems == [
        "cohort 2026-01: counters leave 69 points, the members' buckets and lots of that issue month hold 70",
        "cohort counters of day 2026-02-01: redeemed 31, the journal says 30",
    ]
    with ledger.store.env.begin(write=True) as txn:
        txn.put(key, fmt.COHORT.pack(5, 0, 30, 0, 0), db=db)
    assert ledger.verify().problems == ["cohort 2026-01: amount 10005, its orders less refunds are 10000"]
    with ledger.store.env.begin(write=True) as txn:
        txn.put(key, fmt.COHORT.pack(0, 7, 30, 7, 0), db=db)  # credits on a day of another month
    assert ledger.verify().problems == [
        "cohort 2026-01 day 2026-02-01: credits 7 outside their issue month",
        "cohort counters of day 2026-02-01: credited 7, the journal says 0",
        "cohort counters: taken back 7, the journal's clawbacks and negative adjustments less the members' "
        "debt 0 are 0",
        "cohort values 2026-01 day 2026-02-01: credited, taken back (0, 0), the cohort counters say (7, 7)",
    ]
