"""A large batch reads the profiles and referees indexes once (engagement.prepare_lookups).

Over both engines: a batch of at least limits.lookup_scan_items_min purchases
loads every profile and every referee key before it starts, and then finds a
member without a profile or a referral without a store read. These tests prove
the outcome is the one of small batches (which read the store per member),
byte for byte, and that a profile or referral recorded after the load is seen.
Programme: 1 point per 100 cents (support.simple_program), birthday x2,
referral 500 to the referrer and 250 to the referee for 20.00 or more.
"""

from pointsledger import Bonus, limits
from support import T_2026_03_15, dump_ledger, entries, simple_program

REFERRAL = {"referrer_points": 500, "referee_points": 250, "min_purchase_minor": 2000}
BATCH = 1_200  # above limits.lookup_scan_items_min


def set_up(ledger):
    ledger.set_program(simple_program(birthday={"multiplier": 2}, referral=REFERRAL))
    ledger.purchase("o-r", "r", 1_000, "any", T_2026_03_15)  # the referrer: 10 points
    ledger.set_member_profile("m-0007", "03-01")  # March: the purchases below are doubled
    ledger.set_member_profile("m-0008", "07-04")  # July: not doubled
    ledger.register_referral("ref-1", "r", "m-0011", T_2026_03_15)


def contents(ledger):
    """The journal and every store key and value but the commit count (one commit per batch)."""
    store = dump_ledger(ledger)
    store[b"meta"] = [(key, value) for key, value in store[b"meta"] if key != b"commit_count"]
    return entries(ledger), ledger.verify().problems, store


def batch(first, count, prefix="o"):
    members = [f"m-{index:04d}" for index in range(first, first + count)]
    return ([f"{prefix}-{member}" for member in members], members, [5_000] * count,
            ["any"] * count, [T_2026_03_15] * count)


def apply(ledger, columns, size):
    results = []
    for start in range(0, len(columns[0]), size):
        results.extend(ledger.purchases(*(column[start:start + size] for column in columns)))
    return results


def test_a_large_batch_loads_the_indexes_and_prices_as_small_batches_do(open_ledger):
    assert BATCH >= limits.lookup_scan_items_min
    large, small = open_ledger("large"), open_ledger("small")
    for ledger in (large, small):
        set_up(ledger)
    by_one_batch = apply(large, batch(0, BATCH), BATCH)
    by_small_batches = apply(small, batch(0, BATCH), 100)
    assert large.store.profiles_complete and large.store.referee_keys == {b"m-0011"}
    assert not small.store.profiles_complete and small.store.referee_keys is None
    assert by_one_batch == by_small_batches
    assert [(result.points, result.bonuses) for result in by_one_batch[6:12]] == [
        (50, ()), (100, ()), (50, ()), (50, ()), (50, ()),
        (50, (Bonus("m-0011", "referral:ref-1", 250), Bonus("r", "referral:ref-1", 500))),
    ]
    assert large.balance("r", T_2026_03_15).balance == 510
    assert contents(large) == contents(small)


def test_a_profile_or_referral_recorded_after_the_load_is_seen(open_ledger):
    large, small = open_ledger("large"), open_ledger("small")
    for ledger in (large, small):
        set_up(ledger)
        apply(ledger, batch(0, BATCH), BATCH if ledger is large else 100)
        ledger.set_member_profile("m-2000", "03-31")
        ledger.set_member_profile("m-0007", None)  # cleared: no longer doubled
        ledger.register_referral("ref-2", "r", "m-2001", T_2026_03_15)
    assert large.store.profiles_complete and large.store.referee_keys == {b"m-0011", b"m-2001"}
    second = batch(2000, BATCH, prefix="p")
    second = tuple(column + extra for column, extra in zip(second, (["p-m-0007"], ["m-0007"], [5_000], ["any"],
                                                                        [T_2026_03_15])))
    results = apply(large, second, len(second[0]))
    assert results == apply(small, second, 100)
    assert [(result.points, result.bonuses) for result in (results[0], results[1], results[-1])] == [
        (100, ()),
        (50, (Bonus("m-2001", "referral:ref-2", 250), Bonus("r", "referral:ref-2", 500))),
        (50, ()),
    ]
    assert large.balance("r", T_2026_03_15).balance == 1_010
    assert contents(large) == contents(small)
