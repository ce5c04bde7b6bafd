"""revenue() against an independent reference, over both engines.

A seeded random history (purchases, refunds, redemptions, adjustments both ways,
debts (two in seed 14), an expiry of three months, two estimates) is recorded; the reference
rebuilds every cohort's position from the journal alone, with its own bucket
model (soonest instant, then oldest issue month; debt paid first by credits),
and computes §19's figures with Fractions. Every rounded figure of revenue()
must equal the reference's, for several periods and all three cohort kinds.
"""

import random
from fractions import Fraction

from pointsledger import calendar, limits

from test_revenue import DAY, SIMPLE, Y1, Y2

EXPIRY_MONTHS = 3
ESTIMATES = [(Y1, Fraction(6, 10)), (Y1 + 200 * DAY, Fraction(75, 100))]


def record_history(ledger, seed):
    rng = random.Random(seed)
    ledger.set_program(dict(SIMPLE, expiry_months=EXPIRY_MONTHS))
    ledger.set_redemption_estimate("e-1", ESTIMATES[0][0], "0.6")
    ledger.set_redemption_estimate("e-2", ESTIMATES[1][0], "0.75")
    amounts, refunds = {}, []
    orders = []
    time_s = Y1 + 3600
    for step in range(160):
        time_s += rng.randrange(1, 5) * DAY + rng.randrange(3600)
        member = f"m-{rng.randrange(4)}"
        action = rng.random()
        if action < 0.5 or not orders:
            amount = rng.randrange(100, 30_000)
            ledger.purchase(f"o-{step}", member, amount, "goods", time_s)
            amounts[f"o-{step}"] = (amount, time_s)
            orders.append(f"o-{step}")
        elif action < 0.65:
            order = rng.choice(orders)
            left = amounts[order][0] - sum(each for name, each, _ in refunds if name == order)
            if left:
                amount = rng.randrange(1, left + 1)
                ledger.refund(f"f-{step}", order, amount, time_s)
                refunds.append((order, amount, time_s))
        elif action < 0.85:
            available = ledger.balance(member, time_s).available if _known(ledger, member) else 0
            if available > 0:  # often all of it, so that a later refund makes a debt
                points = available if rng.random() < 0.5 else rng.randrange(1, available + 1)
                ledger.redeem(f"r-{step}", member, points, time_s)
        elif _known(ledger, member):
            points = rng.randrange(-50, 80) or 7
            available = ledger.balance(member, time_s).available
            if points > 0 or -points <= available:
                ledger.adjust(f"a-{step}", member, points, "test", time_s)
        if step % 40 == 39:
            ledger.expire(time_s)
    return amounts, refunds


def _known(ledger, member):
    try:
        ledger.balance(member, Y1)
        return True
    except Exception:
        return False


def reference_positions(ledger, amounts, refunds, at_s):
    """Per issue month: [amount, credited, redeemed, taken back, expired] of the events before at_s."""
    months, buckets, debt = {}, {}, {}

    def add(month, index, value):
        months.setdefault(month, [0] * 5)[index] += value

    def take(member, points, index):
        held = sorted(buckets.get(member, []))  # [instant, month, points]: soonest, then oldest month
        for bucket in held:
            used = min(bucket[2], points)
            bucket[2] -= used
            points -= used
            add(bucket[1], index, used)
        buckets[member] = [bucket for bucket in held if bucket[2]]
        return points

    for order, (amount, time_s) in amounts.items():
        if time_s < at_s:
            add(calendar.issue_month_of(time_s), 0, amount)
    for order, amount, time_s in refunds:
        if time_s < at_s:
            add(calendar.issue_month_of(amounts[order][1]), 0, -amount)
    for entry in ledger.journal(1, 10_000):
        if entry.time_s >= at_s:
            continue
        member = entry.member_id
        if entry.kind == "EXPIRE":
            due = [bucket for bucket in buckets.get(member, []) if bucket[0] <= entry.time_s]
            assert sum(bucket[2] for bucket in due) == -entry.points
            for bucket in due:
                add(bucket[1], 4, bucket[2])
            buckets[member] = [bucket for bucket in buckets[member] if bucket[0] > entry.time_s]
        elif entry.points > 0:  # EARN or a positive ADJUST
            month = calendar.issue_month_of(entry.time_s)
            add(month, 1, entry.points)
            paid = min(debt.get(member, 0), entry.points)
            debt[member] = debt.get(member, 0) - paid
            add(month, 3, paid)
            if entry.points > paid:
                buckets.setdefault(member, []).append(
                    [calendar.expiry_instant(entry.time_s, EXPIRY_MONTHS), month, entry.points - paid])
        elif entry.points < 0:
            index = 2 if entry.kind == "REDEEM" else 3
            uncovered = take(member, -entry.points, index)
            if entry.kind == "CLAWBACK":
                debt[member] = debt.get(member, 0) + uncovered
            else:
                assert uncovered == 0
    return months


def estimate_at(instant, strictly_before):
    rate = ESTIMATES[0][1]
    for start, each in ESTIMATES:
        if start < instant or (start == instant and not strictly_before):
            rate = each
    return rate


def cohort_label(month, kind):
    year, index = divmod(month, 12)
    return {"year": (f"{year:04d}", year * 12), "quarter": (f"{year:04d}-Q{index // 3 + 1}", year * 12 + index // 3 * 3),
            "month": (f"{year:04d}-{index + 1:02d}", month)}[kind]


def reference_revenue(positions, t, kind):
    """label -> (A, P, D, Rev) at t, exact."""
    grouped = {}
    for month, counters in positions.items():
        label, first_month = cohort_label(month, kind)
        entry = grouped.setdefault(label, [first_month, [0] * 5])
        entry[1] = [a + b for a, b in zip(entry[1], counters)]
    result = {}
    for label, (first_month, (amount, credited, redeemed, taken, expired)) in grouped.items():
        rate_c = estimate_at(calendar.month_start(first_month), False)
        points = credited - taken
        stand_alone = Fraction(points * 100) * rate_c  # point value 1.00 = 100 minor units
        allocated = Fraction(0) if amount + stand_alone == 0 else amount * stand_alone / (amount + stand_alone)
        if credited and points - redeemed - expired == 0:
            recognised = allocated
        else:
            expected = points * estimate_at(t, True)
            share = Fraction(1 if redeemed else 0) if expected <= 0 else min(Fraction(1), redeemed / expected)
            recognised = allocated * share
        result[label] = (amount, points, allocated, recognised, redeemed, expired)
    return result


def half_even(value):
    return round(value)  # Fraction.__round__ rounds half to even


def test_revenue_equals_the_reference(ledger):
    amounts, refunds = record_history(ledger, seed=14)
    assert ledger.verify().ok
    periods = [(Y1, Y1 + 90 * DAY), (Y1 + 90 * DAY, Y1 + 181 * DAY), (Y1, Y2), (Y1 + 181 * DAY, Y2 + 365 * DAY)]
    compared = 0
    for from_s, to_s in periods:
        before = reference_positions(ledger, amounts, refunds, from_s)
        after = reference_positions(ledger, amounts, refunds, to_s)
        for kind in ("year", "quarter", "month"):
            report = ledger.revenue(from_s, to_s, kind)
            at_from, at_to = reference_revenue(before, from_s, kind), reference_revenue(after, to_s, kind)
            assert [row.cohort for row in report.cohorts] == sorted(at_to)
            for row in report.cohorts:
                amount, points, allocated, recognised, redeemed, expired = at_to[row.cohort]
                _, _, allocated_from, recognised_from, _, _ = at_from.get(row.cohort, (0, 0, 0, 0, 0, 0))
                assert (row.amount_minor, row.points, row.redeemed, row.expired) == (amount, points, redeemed, expired)
                assert row.allocated_minor == half_even(allocated)
                assert row.revenue_minor == half_even(recognised - recognised_from)
                assert row.liability_from_minor == half_even(allocated_from - recognised_from)
                assert row.liability_to_minor == half_even(allocated - recognised)
                compared += 1
    assert compared > 40
    assert limits.never_expires_s  # the reference never meets a never-expiring bucket (expiry 3 months)
