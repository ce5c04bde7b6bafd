"""A hypothesis state machine over the Ledger: both engines in lockstep.

Each rule applies one operation to a Python-engine ledger and a Cython-engine ledger and
requires the same outcome; after every step the invariants hold: each member's balance
is the sum of its journal entries (and the sum of all balances the sum of all entries),
verify() is clean on both, and the two journals and stores are byte for byte the same.
A rule reopens both stores with the engines swapped, so each continues the other's store
with cold caches. Times come from pools that hit the edges: a promotion's start, last
second and end, expiry instants (the first instant of a month), a year's last and first
second.
"""

import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

import pointsledger
from support import (
    T_2026_01_15, T_2026_03_01, T_2026_04_01, T_2026_05_01, T_2027_01_01, T_2028_01_01, T_MIN, dump_ledger,
    entries,
)
from test_engines_differential import apply  # the one runner of operations

T_2026_12_31_LAST = T_2027_01_01 - 1  # 2026-12-31T23:59:59Z
T_2027_06_01 = 1_811_808_000  # 2027-06-01T00:00:00Z

PROGRAM = {
    "currency": "USD", "earn": {"points": 1, "per_minor_units": 100},
    "category_multipliers": {"a": 2, "b": Decimal("1.2345")},
    "tiers": [{"name": "t0", "min_spend_minor": 0, "multiplier": 1},
              {"name": "t1", "min_spend_minor": 30_000, "multiplier": Decimal("1.25")}],
    "promotions": [{"id": "march", "start": T_2026_03_01, "end": T_2026_04_01, "multiplier": 2,
                    "bonus_points": 5, "categories": ["a", "c"]}],
    "expiry_months": 1, "point_value": "0.01", "effective_from": T_MIN,
}
# A later version (from 2027-01-01): no promotion, expiry 2 months, 3 points per 100 cents.
PROGRAM_2027 = dict(PROGRAM, earn={"points": 3, "per_minor_units": 100}, promotions=[], expiry_months=2,
                    effective_from=T_2027_01_01)

EDGE_TIMES = [
    T_2026_03_01, T_2026_04_01 - 1, T_2026_04_01,  # the promotion's start, last second, end
    T_2026_04_01, T_2026_05_01, T_2027_06_01,  # expiry instants
    T_2026_12_31_LAST, T_2027_01_01, T_2028_01_01 - 1, T_2028_01_01,  # year edges
]
times = st.one_of(st.sampled_from(EDGE_TIMES), st.integers(T_2026_01_15, T_2028_01_01))
members = st.sampled_from(["m0", "m1", "m2"])
categories = st.sampled_from(["a", "b", "c"])
amounts = st.one_of(st.integers(1, 60_000), st.sampled_from([100, 30_000, 10_000]))


class LedgerMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self):
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.paths = {name: Path(self.directory.name) / name for name in ("first", "second")}
        self.engines = {"first": "python", "second": "cython"}
        self.ledgers = {name: pointsledger.Ledger(path, engine=self.engines[name])
                        for name, path in self.paths.items()}
        self.serial = 0
        self.last_operation = None

    def next_id(self, prefix):
        self.serial += 1
        return f"{prefix}{self.serial}"

    def both(self, operation):
        """Apply to both ledgers; the outcomes must be the same. Returns it."""
        outcomes = [apply(ledger, operation) for ledger in self.ledgers.values()]
        assert outcomes[0] == outcomes[1], (operation, outcomes)
        self.last_operation = operation
        return outcomes[0]

    @initialize()
    def set_programs(self):
        assert self.both(("program", PROGRAM)) == ("ok", 1)

    @rule(target=orders, member=members, amount=amounts, category=categories, time_s=times)
    def purchase(self, member, amount, category, time_s):
        order_id = self.next_id("o")
        self.both(("purchase", (order_id, member, amount, category, time_s)))
        return (order_id, amount)

    @rule(items=st.lists(st.tuples(members, amounts, categories, times), min_size=1, max_size=5),
          repeat=st.booleans(), conflict=st.booleans())
    def batch(self, items, repeat, conflict):
        batch = [(self.next_id("o"), member, amount, category, time_s) for member, amount, category, time_s in items]
        if repeat:
            batch.append(batch[0])  # a duplicate inside the batch
        if conflict:
            order_id, member, amount, category, time_s = batch[0]
            batch.append((order_id, member, amount + 1, category, time_s))  # a conflict inside the batch
        self.both(("purchases", batch, False))

    @rule(order=orders, share=st.sampled_from([1, 3, 2]), time_s=times)
    def refund(self, order, share, time_s):
        """A third, a half or all of the order's amount (several parts add up; too much is refused)."""
        order_id, amount = order
        self.both(("refund", self.next_id("r"), order_id, max(1, amount // share), time_s))

    @rule(member=members, percent=st.sampled_from([1, 50, 100]), time_s=times)
    def redeem(self, member, percent, time_s):
        self.both(("redeem_share", self.next_id("rd"), member, percent, time_s))

    @rule(member=members, points=st.integers(-500, 500).filter(bool), time_s=times)
    def adjust(self, member, points, time_s):
        self.both(("adjust", self.next_id("adj"), member, points, "state machine", time_s))

    @rule(time_s=times)
    def expire(self, time_s):
        self.both(("expire", time_s))

    @rule()
    def resend(self):
        if self.last_operation is not None:
            self.both(self.last_operation)

    @rule()
    def second_version(self):
        self.both(("program", PROGRAM_2027))

    @rule()
    def reopen_with_the_engines_swapped(self):
        for ledger in self.ledgers.values():
            ledger.close()
        self.engines = {"first": self.engines["second"], "second": self.engines["first"]}
        self.ledgers = {name: pointsledger.Ledger(path, engine=self.engines[name])
                        for name, path in self.paths.items()}

    @invariant()
    def balances_are_the_sums_of_their_entries(self):
        for ledger in self.ledgers.values():
            sums = {}
            for _, _, member, _, points, balance, _, _ in entries(ledger):
                sums[member] = sums.get(member, 0) + points
                assert balance == sums[member]
            for member, total in sums.items():
                assert ledger.balance(member, T_2028_01_01).balance == total
            with ledger.store.read() as txn:
                stored = [ledger.store.engine.MemberState.decode(value).balance
                          for _, value in txn.cursor(db=ledger.store.dbs[b"members"])]
            assert sum(stored) == sum(sums.values())

    @invariant()
    def verify_is_clean(self):
        for ledger in self.ledgers.values():
            assert ledger.verify().problems == []

    @invariant()
    def the_engines_are_identical(self):
        first, second = self.ledgers.values()
        assert entries(first) == entries(second)
        assert dump_ledger(first) == dump_ledger(second)

    def teardown(self):
        for ledger in self.ledgers.values():
            ledger.close()
        self.directory.cleanup()


LedgerMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
test_ledger_state_machine = LedgerMachine.TestCase
