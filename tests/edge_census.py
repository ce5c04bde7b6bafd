"""How often the random scenarios of test_engines_differential reach the edges that matter.

Not a test module: run `python tests/edge_census.py [examples]` (default 60) from the
repository root. It draws scenarios with the differential test's own strategy, runs each
on the Python engine and counts, per edge, the scenarios that reached it at least once
and the times it happened in all. The figures are quoted in docs/design.md.
"""

import collections
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

import pointsledger
from pointsledger import calendar
from pointsledger.store import format as fmt

sys.path.insert(0, str(Path(__file__).parent))
import test_engines_differential as differential  # noqa: E402
from support import entries  # noqa: E402

EDGES = (
    "funded redemption", "member in debt", "debt then credit", "purchase at a promotion start",
    "purchase at a promotion end", "promotion end that matters", "event at an expiry instant",
    "tier year rolled", "event at a year's first or last second", "refund in several parts",
    "duplicate inside a batch", "conflict inside a batch",
)


def bucket_instants(ledger):
    with ledger.store.read() as txn:
        return {
            bytes(key).decode(): {instant for instant, _ in ledger.store.engine.MemberState.decode(value).buckets}
            for key, value in txn.cursor(db=ledger.store.dbs[fmt.DB_MEMBERS])
        }


def purchase_items(operation):
    if operation[0] == "purchases":
        return operation[1]
    if operation[0] == "purchase":
        return [operation[1]]
    return []


def promotion_end_matters(promotion, item):
    """A purchase at the end that the promotion would change if its end were inclusive
    (tier filters aside)."""
    _, _, amount, category, _ = item
    return (
        (promotion.get("categories") is None or category in promotion["categories"])
        and amount >= promotion.get("min_amount_minor", 0)
        and (Decimal(promotion["multiplier"]) != 1 or promotion.get("bonus_points", 0) > 0)
    )


def census_of(program, operations_list):
    """{edge: times reached} of one scenario."""
    hits = collections.Counter()
    promotions = list(program["promotions"])
    with tempfile.TemporaryDirectory() as directory, \
            pointsledger.Ledger(Path(directory) / "ledger", engine="python") as ledger:
        differential.apply(ledger, ("program", program))
        last_balance, last_year = {}, {}
        for operation in operations_list:
            instants = bucket_instants(ledger)
            first_new = len(entries(ledger)) + 1
            outcome = differential.apply(ledger, operation)
            if operation[0] == "program" and outcome[0] == "ok":
                promotions += operation[1]["promotions"]
            _count_items(hits, operation, outcome, promotions)
            for _, kind, member, _, points, balance, time_s, _ in entries(ledger, first_new):
                year = calendar.year_of(time_s)
                hits["funded redemption"] += kind == "REDEEM"
                hits["member in debt"] += kind == "CLAWBACK" and balance < 0
                hits["debt then credit"] += points > 0 and last_balance.get(member, 0) < 0
                hits["event at an expiry instant"] += time_s in instants.get(member, ())
                hits["tier year rolled"] += year > last_year.get(member, year) and kind != "EXPIRE"
                hits["event at a year's first or last second"] += (
                    time_s == calendar.year_start(year) or time_s == calendar.year_start(year + 1) - 1)
                last_balance[member] = balance
                last_year[member] = max(year, last_year.get(member, year))
        with ledger.store.read() as txn:
            refunds = collections.Counter(
                fmt.decode_tail(fmt.REFUND_HEAD, value)[1]
                for _, value in txn.cursor(db=ledger.store.dbs[fmt.DB_REFUNDS]))
        hits["refund in several parts"] = sum(count >= 2 for count in refunds.values())
    return hits


def _count_items(hits, operation, outcome, promotions):
    items = purchase_items(operation)
    statuses = outcome[1] if operation[0] == "purchases" and outcome[0] == "ok" else None
    if operation[0] == "purchase":
        statuses = [(outcome[1][0],)] if outcome[0] == "ok" else [("REFUSED",)]
    applied_before = set()
    for item, status in zip(items, statuses or []):
        if status[0] == "APPLIED":
            for promotion in promotions:
                hits["purchase at a promotion start"] += item[4] == _seconds(promotion["start"])
                at_end = item[4] == _seconds(promotion["end"])
                hits["purchase at a promotion end"] += at_end
                hits["promotion end that matters"] += at_end and promotion_end_matters(promotion, item)
        if operation[0] == "purchases" and item[0] in applied_before:
            hits["duplicate inside a batch"] += status[0] == "DUPLICATE"
            hits["conflict inside a batch"] += status[0] == "ALREADY_EXISTS"
        if status[0] == "APPLIED":
            applied_before.add(item[0])


def _seconds(value):
    return value if isinstance(value, int) else calendar.parse_utc(value)


def run(examples):
    reached, times = collections.Counter(), collections.Counter()

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(differential.scenarios)
    def sample(scenario):
        program, operations_list = scenario
        hits = census_of(program, differential.resolve(operations_list))
        for edge in EDGES:
            reached[edge] += hits[edge] > 0
            times[edge] += hits[edge]

    sample()
    print(f"{examples} scenarios: edge, scenarios reaching it, times in all")
    for edge in EDGES:
        print(f"  {edge:40s} {reached[edge]:4d} {times[edge]:6d}")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
