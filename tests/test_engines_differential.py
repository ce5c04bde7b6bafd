"""Differential property test: the Cython engine and the pure-Python twin, fed the same
random operations, give identical results and byte-identical stores (SPEC §1).

Random sequences mix purchase batches (with duplicates, conflicts and bad items),
refunds, redemptions, adjustments, expiry runs and programme versions, over a
programme with tiers, promotions and expiry, with event times out of order
(late events) and across tier years. Short "stories" make the edges common: a
redemption funded by what the member holds, debt then credit, events exactly at
a promotion's start and end and at an expiry instant, the last and first second
of a year, a refund in several parts, a batch repeating its own order ids; each
edge is also pinned by an @example. `python tests/edge_census.py` counts how
often the drawn scenarios reach each edge (figures in docs/design.md).
"""

import calendar
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pointsledger
from pointsledger import calendar as ledger_calendar
from support import (
    T_2026_01_01, T_2026_01_15, T_2026_01_31, T_2026_02_01, T_2026_03_01, T_2026_03_15, T_2026_04_01, T_2026_06_01, T_2026_12_15,
    T_2027_01_01, T_2027_02_01, T_2027_06_01, T_2028_01_01, T_2028_06_01, T_2100, T_MAX, T_MIN, dump_ledger, entries,
)

T_2028_06_15 = 1_844_640_000  # 2028-06-15T00:00:00Z
T_2026_12_31_LAST = T_2027_01_01 - 1  # 2026-12-31T23:59:59Z
T_2027_12_31_LAST = T_2028_01_01 - 1  # 2027-12-31T23:59:59Z

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)

MULTIPLIERS = [0, 1, 2, 100, Decimal("1.25"), Decimal("1.5"), Decimal("1.2345"), Decimal("0.57"),
               Decimal("3.3333"), Decimal("0.0001")]
# The 1st and the 15th of every month from 2026-01 to 2028-06: events often fall exactly
# on an expiry instant (the first instant of a month) and on both sides of year ends.
TIME_POOL = [calendar.timegm((2026 + month // 12, month % 12 + 1, day, 0, 0, 0))
             for month in range(30) for day in (1, 15)]
assert TIME_POOL[0] == T_2026_01_01 and TIME_POOL[-1] == T_2028_06_15
YEAR_EDGES = [T_2026_12_31_LAST, T_2027_01_01, T_2027_12_31_LAST, T_2028_01_01]
TIME_POOL += [T_2026_12_31_LAST, T_2027_12_31_LAST]
MEMBERS = ["m0", "m1", "m2", "é", "Z"]
CATEGORIES = ["a", "b", "c", "zz"]

members = st.sampled_from(MEMBERS)
amounts = st.one_of(st.integers(1, 200_000), st.sampled_from([1, 99, 100, 12_345, 50_000, 10**12]))
# Refused on purpose: one bad field of an otherwise good item or call.
BAD_FIELDS = {"member_id": "", "amount_minor": 0, "time_s": T_MIN - 1, "category": "x" * 33}


def small_ids(prefix, pool=8):
    return st.integers(0, pool - 1).map(lambda index: f"{prefix}{index}")


@st.composite
def promotions(draw, index, tier_names):
    start = draw(st.sampled_from([T_MIN] + TIME_POOL))
    end = draw(st.sampled_from([value for value in TIME_POOL + [T_2100] if value > start]))
    promotion = {
        "id": f"p{index}",
        "start": start,
        "end": end,
        "multiplier": draw(st.sampled_from(MULTIPLIERS)),
        "bonus_points": draw(st.sampled_from([0, 0, 7, 50])),
        "min_amount_minor": draw(st.sampled_from([0, 0, 5_000])),
    }
    categories = draw(st.sampled_from([None, ["a"], ["a", "zz"]]))
    if categories is not None:
        promotion["categories"] = categories
    tiers = draw(st.sampled_from([None, [tier_names[-1]], [tier_names[0]]]))
    if tiers is not None:
        promotion["tiers"] = tiers
    return promotion


@st.composite
def programs(draw, effective_from=T_MIN):
    tier_count = draw(st.integers(1, 3))
    tier_names = [f"t{index}" for index in range(tier_count)]
    thresholds = [0, 30_000, 120_000]
    tiers = [
        {"name": tier_names[index], "min_spend_minor": thresholds[index],
         "multiplier": draw(st.sampled_from([1, Decimal("1.25"), Decimal("1.5"), Decimal("1.2345")]))}
        for index in range(tier_count)
    ]
    promotion_count = draw(st.integers(0, 2))
    document = {
        "currency": "USD",
        "earn": {"points": draw(st.sampled_from([1, 3])),
                 "per_minor_units": draw(st.sampled_from([1, 7, 100]))},
        "default_multiplier": draw(st.sampled_from([1, Decimal("0.5")])),
        "category_multipliers": {"a": draw(st.sampled_from(MULTIPLIERS)),
                                 "b": draw(st.sampled_from(MULTIPLIERS))},
        "tiers": tiers,
        "promotions": [draw(promotions(index, tier_names)) for index in range(promotion_count)],
        "max_points_per_purchase": draw(st.sampled_from([0, 0, 500])),
        "expiry_months": draw(st.sampled_from([0, 1, 2, 12])),
        "point_value": "0.01",
        "effective_from": effective_from,
    }
    if draw(st.booleans()):
        document.update(draw(engagement_rules()))
    return document


@st.composite
def engagement_rules(draw):
    """Some of the §14 rules, each present or absent (absent: off)."""
    rules = {}
    if draw(st.booleans()):
        rules["welcome_bonus"] = draw(st.sampled_from([0, 100, 7]))
    if draw(st.booleans()):
        rules["referral"] = {"referrer_points": draw(st.sampled_from([0, 500])),
                             "referee_points": draw(st.sampled_from([0, 250])),
                             "min_purchase_minor": draw(st.sampled_from([0, 2_000, 50_000]))}
    if draw(st.booleans()):
        rules["milestones"] = draw(st.sampled_from([
            [], [{"id": "two", "purchases": 2, "bonus_points": 30}],
            [{"id": "spend", "spend_minor": 40_000, "bonus_points": 100},
             {"id": "three", "purchases": 3, "bonus_points": 0}],
        ]))
    if draw(st.booleans()):
        rules["birthday"] = {"multiplier": draw(st.sampled_from([2, Decimal("1.5"), 0]))}
    if draw(st.booleans()):
        rules["pending_days"] = draw(st.sampled_from([0, 10, 30, 365]))
    return rules


def promotion_edges(program):
    """Each promotion's start, last second and end that fall in the event range."""
    edges = set()
    for promotion in program["promotions"]:
        edges.update({promotion["start"], promotion["end"] - 1, promotion["end"]})
    return sorted(edge for edge in edges if T_MIN <= edge <= T_MAX)


def times_for(program):
    """Event times: the pool (1sts of months are expiry instants), the year edges, the
    programme's promotion edges, and any second."""
    pools = [st.sampled_from(TIME_POOL), st.sampled_from(YEAR_EDGES), st.integers(T_2026_01_01, T_2028_06_01)]
    if promotion_edges(program):
        pools.append(st.sampled_from(promotion_edges(program)))
    return st.one_of(pools)


def purchase_items(times):
    return st.tuples(small_ids("o"), members, amounts, st.sampled_from(CATEGORIES), times)


@st.composite
def batches(draw, times):
    """A batch, sometimes with an exact repeat of one of its items (a duplicate), a
    different purchase under an id it already holds (a conflict), or a bad item."""
    items = draw(st.lists(purchase_items(times), min_size=1, max_size=8))
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), items[draw(st.integers(0, len(items) - 1))])
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(BAD_FIELDS)))
        position = ("order_id", "member_id", "amount_minor", "category", "time_s").index(field)
        bad = list(draw(purchase_items(times)))
        bad[position] = BAD_FIELDS[field]
        items.insert(draw(st.integers(0, len(items))), tuple(bad))
    return items


@st.composite
def batch_repeating_itself(draw, times):
    """An item, later in the same batch its exact repeat (a duplicate) and the same id
    with another amount (a conflict)."""
    first = draw(purchase_items(times))
    others = draw(st.lists(purchase_items(times), max_size=3))
    conflict = (first[0], first[1], first[2] + 1, first[3], first[4])
    return [("purchases", [first] + others + [first, conflict], draw(st.booleans()))]


def operations_for(times):
    """One operation (as a one-item list, like the stories below)."""
    single = st.one_of(
        st.tuples(st.just("purchases"), batches(times), st.booleans()),
        st.tuples(st.just("purchases"), batches(times), st.booleans()),
        st.tuples(st.just("purchase"), purchase_items(times)),
        st.tuples(st.just("resend"), st.integers(0, 40)),  # an earlier operation again, as is
        st.tuples(st.just("resend"), st.integers(0, 40)),
        st.tuples(st.just("refund"), small_ids("r"), small_ids("o"),
                  st.one_of(st.sampled_from([1, 50, 100, 1_000, 12_345]), st.integers(1, 60_000)), times),
        st.tuples(st.just("redeem"), small_ids("rd"), members, st.integers(1, 3_000), times),
        # points: a share (percent) of what the member has available then (see apply)
        st.tuples(st.just("redeem_share"), small_ids("rd"), members, st.sampled_from([1, 50, 100]), times),
        st.tuples(st.just("adjust"), small_ids("adj"), members, st.integers(-3_000, 3_000),
                  st.sampled_from(["goodwill", "fix"]), times),
        # refused calls: zero amounts and points, an empty reason, a time out of range
        st.one_of(
            st.tuples(st.just("refund"), small_ids("r"), small_ids("o"), st.just(0), times),
            st.tuples(st.just("redeem"), small_ids("rd"), members, st.just(0), times),
            st.tuples(st.just("adjust"), small_ids("adj"), members, st.integers(-3, 3), st.just(""), times),
            st.tuples(st.just("redeem"), small_ids("rd"), members, st.integers(1, 10), st.just(T_MIN - 1)),
        ),
        st.tuples(st.just("expire"), times),
        st.tuples(st.just("program"), st.sampled_from(TIME_POOL).flatmap(programs)),
        st.tuples(st.just("register_referral"), small_ids("ref", 4), members, members, times),
        st.tuples(st.just("set_member_profile"), members,
                  st.sampled_from(["01-15", "03-01", "06-30", "02-29", None, "13-01"])),
    )
    return single.map(lambda operation: [operation])


# --- stories: a few operations that reach one edge together ------------------------------------
# Each story's ids carry its place in the scenario (`tag`), so that they apply (a resend
# still repeats them).

DAYS = st.integers(0, 40).map(lambda days: days * 86_400)


@st.composite
def debt_then_credit(draw, tag, times):
    """Earn, redeem everything, refund the purchase in full (a debt), then a credit pays it."""
    member, time_s = draw(members), draw(times)
    amount = draw(st.integers(10_000, 200_000))
    refund_s = time_s + draw(DAYS)
    credit_s = refund_s + draw(DAYS)
    credit = draw(st.one_of(
        st.tuples(st.just("purchase"), st.tuples(st.just(f"so{tag}b"), st.just(member),
                                                 st.integers(1, 200_000), st.just("c"), st.just(credit_s))),
        st.tuples(st.just("adjust"), st.just(f"sadj{tag}"), st.just(member), st.integers(1, 3_000),
                  st.just("goodwill"), st.just(credit_s)),
    ))
    return [
        ("purchase", (f"so{tag}", member, amount, "c", time_s)),
        ("redeem_share", f"srd{tag}", member, 100, time_s),
        ("refund", f"sr{tag}", f"so{tag}", amount, refund_s),
        credit,
    ]


@st.composite
def refund_in_parts(draw, tag, times):
    """A purchase refunded in two to four parts, sometimes in full, sometimes one part too many."""
    time_s = draw(times)
    amount = draw(st.integers(3, 200_000))
    cuts = sorted(draw(st.lists(st.integers(1, amount - 1), min_size=1, max_size=3, unique=True)))
    if draw(st.booleans()):
        cuts = cuts[:-1] + [amount]  # the last part ends before the amount: something left
    else:
        cuts.append(amount)
    parts = [high - low for low, high in zip([0] + cuts, cuts)]
    if draw(st.booleans()):
        parts.append(draw(st.integers(1, amount)))  # over the rest: refused
    operations = [("purchase", (f"so{tag}", draw(members), amount, draw(st.sampled_from(CATEGORIES)), time_s))]
    for index, part in enumerate(parts):
        time_s += draw(DAYS)
        operations.append(("refund", f"sr{tag}-{index}", f"so{tag}", part, time_s))
    return operations


@st.composite
def at_promotion_edges(draw, tag, program, times):
    """Purchases at a promotion's start, last second and end, in its category and amount."""
    if not program["promotions"]:
        return draw(refund_in_parts(tag, times))
    promotion = draw(st.sampled_from(program["promotions"]))
    member = draw(members)
    category = draw(st.sampled_from(promotion.get("categories") or CATEGORIES))
    amount = promotion.get("min_amount_minor", 0) + draw(st.integers(0, 50_000))
    edges = [edge for edge in (promotion["start"], promotion["end"] - 1, promotion["end"]) if edge <= T_MAX]
    items = [(f"so{tag}-{index}", member, amount, category, edge) for index, edge in enumerate(edges)]
    return [("purchases", items, draw(st.booleans()))]


@st.composite
def at_expiry_instant(draw, tag, program, times):
    """Earn at t, then an event exactly at the instant its points expire (sometimes one a second before)."""
    months = program["expiry_months"] or 1
    member, time_s = draw(members), draw(times)
    instant = ledger_calendar.expiry_instant(time_s, months)
    amount = draw(st.integers(1_000, 200_000))
    operations = [("purchase", (f"so{tag}", member, amount, draw(st.sampled_from(CATEGORIES)), time_s))]
    if draw(st.booleans()):
        operations.append(("adjust", f"sadj{tag}-before", member, 1, "goodwill", instant - 1))
    at = instant
    operations.append(draw(st.sampled_from([
        ("purchase", (f"so{tag}b", member, 10_000, "c", at)),
        ("adjust", f"sadj{tag}", member, 5, "goodwill", at),
        ("refund", f"sr{tag}", f"so{tag}", amount // 2, at),
        ("expire", at),
        # refused when the points expiring at `at` are all the member has (§15: instant ≤ t)
        ("redeem_share", f"srd{tag}", member, 50, at),
        ("adjust", f"sadj{tag}", member, -1, "fix", at),
    ])))
    return operations


@st.composite
def across_a_year_end(draw, tag, times):
    """Purchases at a year's last second and the next year's first, then a refund of the first."""
    member = draw(members)
    last_second = draw(st.sampled_from([T_2026_12_31_LAST, T_2027_12_31_LAST]))
    first_amount = draw(st.sampled_from([30_000, 120_000, 29_999]))
    return [
        ("purchase", (f"so{tag}", member, first_amount, "c", last_second)),
        ("purchase", (f"so{tag}b", member, draw(amounts), "c", last_second + 1)),
        ("refund", f"sr{tag}", f"so{tag}", draw(st.integers(1, first_amount)), last_second + 1),
    ]


@st.composite
def scenario_of(draw):
    """A programme, then every story once and some single operations, in a drawn order.

    Every scenario tells each story (left to a random choice, hypothesis reached each edge
    in only a few of 60 scenarios, and in none in some runs)."""
    program = draw(programs())
    times = times_for(program)
    stories = (debt_then_credit(0, times), refund_in_parts(1, times), at_promotion_edges(2, program, times),
               at_expiry_instant(3, program, times), across_a_year_end(4, times), batch_repeating_itself(times))
    groups = [draw(story) for story in stories]
    groups += draw(st.lists(operations_for(times), min_size=2, max_size=14))
    order = draw(st.permutations(range(len(groups))))
    return program, [operation for index in order for operation in groups[index]]


scenarios = scenario_of()


def normalise(result):
    if isinstance(result, pointsledger.results.BatchResult):
        return [
            (item.status, item.seq, item.points, item.balance,
             None if item.error is None else (type(item.error).__name__, item.error.code, item.error.field))
            + ((item.bonuses,) if item.bonuses else ())  # bonuses only where a rule paid (§17)
            for item in result
        ]
    if isinstance(result, pointsledger.results.ExpireResult):
        return (result.as_of_s, result.members, result.points)
    if isinstance(result, pointsledger.results.OperationResult):
        return (result.status, result.seq, result.points, result.balance) + ((result.bonuses,) if result.bonuses else ())
    return result


def share_of_available(ledger, member_id, percent, time_s):
    """percent of the member's available points at time_s, at least 1 (1 for an unknown member).

    Each engine's ledger answers for itself: were they to differ, so would the outcomes."""
    try:
        available = ledger.balance(member_id, time_s).available
    except pointsledger.NotFound:
        return 1
    return max(1, available * percent // 100)


def apply(ledger, operation):
    """Apply one operation; its outcome as plain data (refusals by class, code and field)."""
    kind = operation[0]
    try:
        if kind == "purchases":
            _, items, as_numpy = operation
            columns = [list(column) for column in zip(*items)]
            if as_numpy:
                # Integer columns as int64 arrays; huge values stay in range (≤ 10^12).
                columns[2] = numpy.array(columns[2], dtype=numpy.int64)
                columns[4] = numpy.array(columns[4], dtype=numpy.int64)
            result = ledger.purchases(*columns)
        elif kind == "purchase":
            result = ledger.purchase(*operation[1])
        elif kind == "program":
            result = ledger.set_program(operation[1])
        elif kind == "redeem_share":
            _, redemption_id, member_id, percent, time_s = operation
            result = ledger.redeem(redemption_id, member_id, share_of_available(ledger, member_id, percent, time_s),
                                   time_s)
        else:
            result = getattr(ledger, kind)(*operation[1:])
    except pointsledger.LedgerError as error:
        return ("refused", type(error).__name__, error.code, error.field)
    return ("ok", normalise(result))


def observe(ledger):
    """Everything the queries say, for members that exist."""
    seen = {}
    for member in MEMBERS:
        try:
            seen[member] = (
                ledger.balance(member, T_2026_06_01), ledger.balance(member, T_2028_06_01),
                ledger.history(member, limit=3),
            )
        except pointsledger.NotFound:
            seen[member] = None
    liability = ledger.liability(T_2027_06_01)
    rollforward = ledger.rollforward(T_2026_01_01, T_2027_06_01)
    engagement = []
    for index in range(4):
        try:
            engagement.append(ledger.get_referral(f"ref{index}"))
        except pointsledger.NotFound:
            engagement.append(None)
    for member in MEMBERS:
        try:
            engagement.append(ledger.get_member_profile(member))
        except pointsledger.NotFound:
            engagement.append(None)
    return seen, liability, rollforward, entries(ledger), ledger.verify(), engagement


def resolve(operations_list):
    """Replace each ("resend", n) by a copy of the n-th earlier operation (modulo)."""
    resolved = []
    for operation in operations_list:
        if operation[0] == "resend":
            operation = resolved[operation[1] % len(resolved)] if resolved else ("expire", T_2026_06_01)
        resolved.append(operation)
    return resolved


def run(ledger, program, operations_list):
    outcomes = [apply(ledger, ("program", program))]
    outcomes += [apply(ledger, operation) for operation in operations_list]
    return outcomes


# --- each edge pinned: these scenarios run on every run, whatever hypothesis draws ----------

PINNED_PROGRAM = {
    "currency": "USD", "earn": {"points": 1, "per_minor_units": 100}, "default_multiplier": 1,
    "category_multipliers": {"a": 2, "b": Decimal("1.2345")},
    "tiers": [{"name": "t0", "min_spend_minor": 0, "multiplier": 1},
              {"name": "t1", "min_spend_minor": 30_000, "multiplier": Decimal("1.25")}],
    # p0 covers March 2026: [2026-03-01, 2026-04-01)
    "promotions": [{"id": "p0", "start": T_2026_03_01, "end": T_2026_04_01, "multiplier": 2, "bonus_points": 5,
                    "min_amount_minor": 0}],
    "max_points_per_purchase": 0, "expiry_months": 1, "point_value": "0.01", "effective_from": T_MIN,
}
PINS = {
    # 50,000 → 500 points; all 500 redeemed; the full refund claws 500 back: debt 500; the
    # purchase of 10,000 (100) pays 100 of it, the adjustment of 1,000 the last 400.
    "funded redemption, debt then credit": [
        ("purchase", ("o0", "m0", 50_000, "c", T_2026_01_15)),
        ("redeem_share", "rd0", "m0", 100, T_2026_01_15),
        ("refund", "r0", "o0", 50_000, T_2026_01_31),
        ("purchase", ("o1", "m0", 10_000, "c", T_2026_02_01)),
        ("adjust", "adj0", "m0", 1_000, "goodwill", T_2026_02_01),
    ],
    # At p0's start: ×2 + 5; a second before its end: the same; at its end: not any more.
    "promotion start and end": [
        ("purchases", [("o0", "m0", 10_000, "c", T_2026_03_01), ("o1", "m0", 10_000, "c", T_2026_04_01 - 1),
                       ("o2", "m0", 10_000, "c", T_2026_04_01)], False),
    ],
    # Earned 2026-01-15, expiring 2026-03-01: a purchase, a refused redemption and an expiry
    # run exactly at the instants.
    "expiry instants": [
        ("purchase", ("o0", "m0", 10_000, "c", T_2026_01_15)),
        ("redeem", "rd0", "m1", 1, T_2026_03_01),
        ("purchase", ("o1", "m1", 10_000, "c", T_2026_01_15)),
        ("redeem", "rd1", "m1", 1, T_2026_03_01),
        ("purchase", ("o2", "m0", 10_000, "c", T_2026_03_01)),
        ("expire", T_2026_03_01),
        ("expire", T_2026_04_01),
    ],
    # 30,000 at 2026's last second earns t1 for 2027; the first second of 2027 earns at t1;
    # a refund of the 2026 purchase in 2027 lowers no spend.
    "across a year end": [
        ("purchase", ("o0", "m0", 30_000, "c", T_2026_12_31_LAST)),
        ("purchase", ("o1", "m0", 10_000, "c", T_2027_01_01)),
        ("refund", "r0", "o0", 10_000, T_2027_01_01),
        ("purchase", ("o2", "m0", 10_000, "c", T_2027_12_31_LAST)),
        ("purchase", ("o3", "m0", 10_000, "c", T_2028_01_01)),
    ],
    # 3,333 + 3,333 + 3,334 of 10,000 (100 points: 33, 33, 34 clawed back), then one cent too many.
    "refund in parts": [
        ("purchase", ("o0", "m0", 10_000, "c", T_2026_01_15)),
        ("refund", "r0", "o0", 3_333, T_2026_01_15),
        ("refund", "r1", "o0", 3_333, T_2026_01_31),
        ("refund", "r2", "o0", 3_334, T_2026_01_31),
        ("refund", "r3", "o0", 1, T_2026_02_01),
    ],
    # o0, then o0 again as is (a duplicate) and with another amount (a conflict), in one batch.
    "a batch repeating itself": [
        ("purchases", [("o0", "m0", 100, "a", T_2026_01_15), ("o1", "m1", 200, "b", T_2026_01_15),
                       ("o0", "m0", 100, "a", T_2026_01_15), ("o0", "m0", 101, "a", T_2026_01_15)], True),
    ],
}


def pinned(test):
    for operations_list in PINS.values():
        test = example((PINNED_PROGRAM, operations_list))(test)
    return test


@SETTINGS
@pinned
@given(scenarios)
def test_engines_agree(scenario):
    program, operations_list = scenario
    operations_list = resolve(operations_list)
    with tempfile.TemporaryDirectory() as directory:
        with pointsledger.Ledger(Path(directory) / "py", engine="python") as python_ledger, \
                pointsledger.Ledger(Path(directory) / "c", engine="cython") as cython_ledger:
            python_outcomes = run(python_ledger, program, operations_list)
            cython_outcomes = run(cython_ledger, program, operations_list)
            assert cython_outcomes == python_outcomes
            assert observe(cython_ledger) == observe(python_ledger)
            assert python_ledger.verify().ok, python_ledger.verify().problems
            assert cython_ledger.verify().ok, cython_ledger.verify().problems
            assert dump_ledger(cython_ledger) == dump_ledger(python_ledger)


@pytest.mark.parametrize("pin", sorted(PINS))
def test_pinned_edges_reach_their_edge(pin):
    """Each pin does reach its edge (hand-worked), so the @example above is not idle."""
    with tempfile.TemporaryDirectory() as directory, \
            pointsledger.Ledger(Path(directory) / "py", engine="python") as ledger:
        outcomes = run(ledger, PINNED_PROGRAM, PINS[pin])
        assert outcomes[1:] == PINNED_OUTCOMES[pin]


PINNED_OUTCOMES = {
    "funded redemption, debt then credit": [
        ("ok", ("APPLIED", 1, 500, 500)), ("ok", ("APPLIED", 2, -500, 0)), ("ok", ("APPLIED", 3, -500, -500)),
        ("ok", ("APPLIED", 4, 100, -400)), ("ok", ("APPLIED", 5, 1_000, 600)),
    ],
    # 10,000 × 2 / 100 + 5 = 205 twice, then 100.
    "promotion start and end": [
        ("ok", [("APPLIED", 1, 205, 205, None), ("APPLIED", 2, 205, 410, None), ("APPLIED", 3, 100, 510, None)]),
    ],
    # m1 unknown first (NOT_FOUND); m1's 100 expire at 2026-03-01, so at that instant it has
    # nothing to redeem (refused, no EXPIRE written); m0's purchase at the instant first expires
    # its 100 (seq 3), then earns 10,000 × 2 / 100 + 5 = 205 (p0), expiring 2026-05-01; the run
    # at 03-01 expires m1's 100 (seq 5), the run at 04-01 finds nothing due.
    "expiry instants": [
        ("ok", ("APPLIED", 1, 100, 100)),
        ("refused", "NotFound", "NOT_FOUND", "member_id"),
        ("ok", ("APPLIED", 2, 100, 100)),
        ("refused", "FailedPrecondition", "FAILED_PRECONDITION", "points"),
        ("ok", ("APPLIED", 4, 205, 205)),
        ("ok", (T_2026_03_01, 1, 100)),
        ("ok", (T_2026_04_01, 0, 0)),
    ],
    # o0 at 2026's last second: 300 at t0, expiring 2027-02-01; 2026 spend 30,000.
    # o1 at 2027's first second: t1 carried, 10,000 × 1.25 / 100 = 125, expiring 2027-03-01.
    # r0 of a third of o0: floor(300 × 10,000 / 30,000) = 100 (o0 is of 2026: spend unchanged).
    # o2 at 2027's last second: first 200 + 125 expire (EXPIRE seq 4), then t1 still: 125.
    # o3 at 2028's first second: 2027 spend 20,000 < 30,000 → t0: 100.
    "across a year end": [
        ("ok", ("APPLIED", 1, 300, 300)), ("ok", ("APPLIED", 2, 125, 425)), ("ok", ("APPLIED", 3, -100, 325)),
        ("ok", ("APPLIED", 5, 125, 125)), ("ok", ("APPLIED", 6, 100, 225)),
    ],
    "refund in parts": [
        ("ok", ("APPLIED", 1, 100, 100)), ("ok", ("APPLIED", 2, -33, 67)), ("ok", ("APPLIED", 3, -33, 34)),
        ("ok", ("APPLIED", 4, -34, 0)), ("refused", "FailedPrecondition", "FAILED_PRECONDITION", "amount_minor"),
    ],
    # o0 100 × 2 / 100 = 2; o1 200 × 1.2345 / 100 = 2.469 → 2.
    "a batch repeating itself": [
        ("ok", [("APPLIED", 1, 2, 2, None), ("APPLIED", 2, 2, 2, None), ("DUPLICATE", 1, 2, 2, None),
                ("ALREADY_EXISTS", 0, 0, 0, ("AlreadyExists", "ALREADY_EXISTS", "order_id"))]),
    ],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios, st.integers(0, 25))
def test_a_store_continued_by_the_other_engine_is_the_same(scenario, split):
    program, operations_list = scenario
    operations_list = resolve(operations_list)
    split = min(split, len(operations_list))
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        dumps, outcomes = {}, {}
        for name, (first, second) in {
            "python": ("python", "python"),
            "cython": ("cython", "cython"),
            "python-then-cython": ("python", "cython"),
            "cython-then-python": ("cython", "python"),
        }.items():
            with pointsledger.Ledger(root / name, engine=first) as ledger:
                before = run(ledger, program, operations_list[:split])
            # Reopened: caches start empty, the other engine decodes what the first wrote.
            with pointsledger.Ledger(root / name, engine=second) as ledger:
                after = [apply(ledger, operation) for operation in operations_list[split:]]
                outcomes[name] = before + after
                dumps[name] = dump_ledger(ledger)
                assert ledger.verify().ok, ledger.verify().problems
        assert outcomes["python-then-cython"] == outcomes["python"]
        assert outcomes["cython-then-python"] == outcomes["python"]
        assert outcomes["cython"] == outcomes["python"]
        assert dumps["python-then-cython"] == dumps["python"]
        assert dumps["cython-then-python"] == dumps["python"]
        assert dumps["cython"] == dumps["python"]


def test_engines_agree_on_a_worked_scenario(tmp_path):
    """A fixed sequence touching every path once, so a failure here reads without hypothesis."""
    program = {
        "currency": "USD", "earn": {"points": 1, "per_minor_units": 100},
        "category_multipliers": {"a": 2, "b": Decimal("1.2345")},
        "tiers": [{"name": "t0", "min_spend_minor": 0, "multiplier": 1},
                  {"name": "t1", "min_spend_minor": 30_000, "multiplier": Decimal("1.25")}],
        "promotions": [{"id": "p", "start": T_2026_12_15, "end": T_2027_02_01, "multiplier": 2,
                        "bonus_points": 5, "tiers": ["t1"]}],
        "expiry_months": 1, "point_value": "0.01", "effective_from": T_MIN,
    }
    operations_list = [
        ("purchases", [("o0", "m0", 30_000, "a", T_2026_01_15), ("o1", "m0", 12_345, "b", T_2026_03_15),
                       ("o0", "m0", 30_000, "a", T_2026_01_15), ("o0", "m1", 1, "a", T_2026_01_15),
                       ("o2", "", 1, "a", T_2026_01_15)], True),
        ("redeem", "rd0", "m0", 100, T_2026_03_15),
        ("refund", "r0", "o1", 12_345, T_2026_06_01),
        ("adjust", "adj0", "m0", -50, "fix", T_2026_06_01),
        ("purchase", ("o3", "m0", 10_000, "zz", T_2026_12_15)),
        ("expire", T_2027_06_01),
        ("purchase", ("o4", "m0", 10_000, "a", T_2026_03_15)),
        ("redeem", "rd1", "m0", 1, T_2028_06_01),
    ]
    outcomes = {}
    dumps = {}
    for engine in ("python", "cython"):
        with pointsledger.Ledger(tmp_path / engine, engine=engine) as ledger:
            outcomes[engine] = run(ledger, program, operations_list)
            dumps[engine] = dump_ledger(ledger)
            assert ledger.verify().ok
    assert outcomes["cython"] == outcomes["python"]
    assert dumps["cython"] == dumps["python"]
    # Hand-worked expectations for the first batch (expiry 1 month, t1 from 30,000):
    # o0 (2026-01-15): 30,000 × 2 / 100 = 600 at t0, bucket 2026-03-01.
    # o1 (2026-03-15): first the 600 expire (EXPIRE entry, seq 2), then at t1 (spend 30,000):
    #   12,345 × 1.2345 × 1.25 / 100 = 190.49... → 190 (seq 3, balance 190);
    # then a duplicate of o0, a conflict (o0 for another member) and a bad member id.
    assert outcomes["python"][1] == ("ok", [
        ("APPLIED", 1, 600, 600, None),
        ("APPLIED", 3, 190, 190, None),
        ("DUPLICATE", 1, 600, 600, None),
        ("ALREADY_EXISTS", 0, 0, 0, ("AlreadyExists", "ALREADY_EXISTS", "order_id")),
        ("INVALID_ARGUMENT", 0, 0, 0, ("InvalidArgument", "INVALID_ARGUMENT", "member_id")),
    ])


def test_engines_agree_on_a_worked_engagement_scenario(tmp_path):
    """Every engagement rule once, on both engines, with hand-worked bonuses."""
    program = {
        "currency": "USD", "earn": {"points": 1, "per_minor_units": 100},
        "tiers": [{"name": "t0", "min_spend_minor": 0, "multiplier": 1}],
        "expiry_months": 1, "point_value": "0.01", "effective_from": T_MIN,
        "welcome_bonus": 100, "birthday": {"multiplier": 2},
        "referral": {"referrer_points": 500, "referee_points": 250},
        "milestones": [{"id": "two", "purchases": 2, "bonus_points": 30}],
    }
    operations_list = [
        ("set_member_profile", "m1", "03-01"),
        ("purchase", ("o0", "m0", 10_000, "a", T_2026_01_15)),
        ("register_referral", "ref0", "m0", "m1", T_2026_01_15),
        ("purchases", [("o1", "m1", 10_000, "a", T_2026_03_15), ("o2", "m0", 1_000, "a", T_2026_03_15),
                       ("o1", "m1", 10_000, "a", T_2026_03_15)], False),
        ("refund", "r0", "o1", 10_000, T_2026_03_15),
        ("expire", T_2027_06_01),
    ]
    outcomes, dumps = {}, {}
    for engine in ("python", "cython"):
        with pointsledger.Ledger(tmp_path / engine, engine=engine) as ledger:
            outcomes[engine] = run(ledger, program, operations_list)
            dumps[engine] = dump_ledger(ledger)
            assert ledger.verify().ok, ledger.verify().problems
    assert outcomes["cython"] == outcomes["python"]
    assert dumps["cython"] == dumps["python"]
    Bonus = pointsledger.Bonus
    # o0: 100 + welcome 100 (m0 200). o1 in m1's birthday month: 10,000 × 2 / 100 = 200, then
    # m1's welcome 100 and referral 250; m0's 200 of January expired at 2026-03-01 (seq 6), then
    # its 500. o2 (seq 8) is m0's second purchase: milestone two.
    assert outcomes["python"][4] == ("ok", [
        ("APPLIED", 3, 200, 550, None, (Bonus("m1", "welcome", 100), Bonus("m1", "referral:ref0", 250),
                                        Bonus("m0", "referral:ref0", 500))),
        ("APPLIED", 8, 10, 540, None, (Bonus("m0", "milestone:two", 30),)),
        ("DUPLICATE", 3, 200, 550, None, (Bonus("m1", "welcome", 100), Bonus("m1", "referral:ref0", 250),
                                          Bonus("m0", "referral:ref0", 500))),
    ])
    # The refund claws the 200 back; the bonuses stay: 550 − 200 = 350.
    assert outcomes["python"][5] == ("ok", ("APPLIED", 10, -200, 350))
