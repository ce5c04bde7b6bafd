"""Differential property test: the Cython engine and the pure-Python twin, fed the same
random operations, give identical results and byte-identical stores (SPEC §1).

Random sequences mix purchase batches (with duplicates, conflicts and bad items),
refunds, redemptions, adjustments, expiry runs and programme versions, over a
programme with tiers, promotions and expiry, with event times out of order
(late events) and across tier years.
"""

import calendar
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pointsledger
from support import (
    T_2026_01_01, T_2026_01_15, T_2026_03_15, T_2026_06_01, T_2026_12_15, T_2027_02_01,
    T_2027_06_01, T_2028_06_01, T_2100, T_MIN, dump_ledger, entries,
)

T_2028_06_15 = 1_844_640_000  # 2028-06-15T00:00:00Z

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
MEMBERS = ["m0", "m1", "m2", "é", "Z"]
CATEGORIES = ["a", "b", "c", "zz"]

times = st.one_of(st.sampled_from(TIME_POOL), st.integers(T_2026_01_01, T_2028_06_01))
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


purchase_items = st.tuples(small_ids("o"), members, amounts, st.sampled_from(CATEGORIES), times)


@st.composite
def batches(draw):
    """A batch, sometimes with an exact repeat of one of its items (a duplicate) and
    sometimes with a bad item."""
    items = draw(st.lists(purchase_items, min_size=1, max_size=8))
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), items[draw(st.integers(0, len(items) - 1))])
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(BAD_FIELDS)))
        position = ("order_id", "member_id", "amount_minor", "category", "time_s").index(field)
        bad = list(draw(purchase_items))
        bad[position] = BAD_FIELDS[field]
        items.insert(draw(st.integers(0, len(items))), tuple(bad))
    return items


operations = st.one_of(
    st.tuples(st.just("purchases"), batches(), st.booleans()),
    st.tuples(st.just("purchases"), batches(), st.booleans()),
    st.tuples(st.just("purchase"), purchase_items),
    st.tuples(st.just("resend"), st.integers(0, 40)),  # an earlier operation again, as is
    st.tuples(st.just("resend"), st.integers(0, 40)),
    st.tuples(st.just("refund"), small_ids("r"), small_ids("o"),
              st.one_of(st.sampled_from([1, 50, 100, 1_000, 12_345]), st.integers(1, 60_000)), times),
    st.tuples(st.just("redeem"), small_ids("rd"), members, st.integers(1, 3_000), times),
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

scenarios = st.tuples(programs(), st.lists(operations, min_size=5, max_size=30))


def normalise(result):
    if isinstance(result, pointsledger.results.BatchResult):
        return [
            (item.status, item.seq, item.points, item.balance,
             None if item.error is None else (type(item.error).__name__, item.error.code, item.error.field),
             item.bonuses)
            for item in result
        ]
    if isinstance(result, pointsledger.results.ExpireResult):
        return (result.as_of_s, result.members, result.points)
    if isinstance(result, pointsledger.results.OperationResult):
        return (result.status, result.seq, result.points, result.balance, result.bonuses)
    return result


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


@SETTINGS
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
            assert dump_ledger(cython_ledger) == dump_ledger(python_ledger)


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
        ("APPLIED", 1, 600, 600, None, ()),
        ("APPLIED", 3, 190, 190, None, ()),
        ("DUPLICATE", 1, 600, 600, None, ()),
        ("ALREADY_EXISTS", 0, 0, 0, ("AlreadyExists", "ALREADY_EXISTS", None), ()),
        ("INVALID_ARGUMENT", 0, 0, 0, ("InvalidArgument", "INVALID_ARGUMENT", "member_id"), ()),
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
    assert outcomes["python"][5] == ("ok", ("APPLIED", 10, -200, 350, ()))
