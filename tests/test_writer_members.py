"""Writer.member reads LMDB for a member only when the member cache may lack it.

A key not in a complete cache (one holding every stored member) is a new member: no read.
That read mattered to the service, where each LMDB call lets the GIL go and the group
commit waited to get it back once per purchase of a new member (`ledger._tier_before`).
"""

import pytest

from pointsledger import Ledger, engine as engines
from pointsledger.store.writer import Writer
from support import T_2026_03_01, example_program


class CountingTxn:
    """A write transaction that counts its reads of the members sub-database."""

    def __init__(self, txn, members_db):
        self.txn = txn
        self.members_db = members_db
        self.member_reads = []

    def get(self, key, default=None, db=None):
        if db is self.members_db:
            self.member_reads.append(bytes(key))
        return self.txn.get(key, default, db=db)

    def __getattr__(self, name):
        return getattr(self.txn, name)


def _writer(ledger):
    store = ledger.store
    txn = CountingTxn(store.env.begin(write=True), store.dbs[b"members"])
    store.refresh(txn.txn)
    return Writer(store, txn), txn


def test_a_complete_cache_answers_a_new_member_without_a_read(tmp_path, engine_name):
    with Ledger(tmp_path / "l", engine=engine_name) as ledger:
        ledger.set_program(example_program())
        ledger.purchases(["o1", "o2", "o3"], ["m1", "m2", "m3"], [1_000, 2_000, 3_000], ["grocery"] * 3,
                         [T_2026_03_01] * 3)
        writer, txn = _writer(ledger)
        try:
            assert writer.members_complete()
            assert writer.member(b"m-new") is None
            assert writer.member(b"m2").balance == 20
            assert txn.member_reads == []
        finally:
            txn.txn.abort()


def test_an_incomplete_cache_reads_the_store(tmp_path, engine_name):
    with Ledger(tmp_path / "l", engine=engine_name) as ledger:
        ledger.set_program(example_program())
        ledger.purchases(["o1", "o2"], ["m1", "m2"], [1_000, 2_000], ["grocery"] * 2, [T_2026_03_01] * 2)
        ledger.store.member_cache.clear()  # as after a failed write: the store holds members the cache lacks
        writer, txn = _writer(ledger)
        try:
            assert not writer.members_complete()
            assert writer.member(b"m1").balance == 10  # read, then cached
            assert writer.member(b"m-new") is None
            assert writer.member(b"m1").balance == 10
            assert txn.member_reads == [b"m1", b"m-new"]
        finally:
            txn.txn.abort()


@pytest.mark.skipif("cython" not in engines.ENGINES, reason="the compiled engine is not built")
def test_unary_purchases_of_new_members_match_across_engines(tmp_path):
    """The service's path (apply_group, tiers read before each run) gives the same results and
    store with the read skipped, in both engines."""
    from support import dump_ledger

    results = {}
    for engine_name in ("python", "cython"):
        with Ledger(tmp_path / engine_name, engine=engine_name) as ledger:
            ledger.set_program(example_program())
            outcomes = ledger.apply_group([("purchase", (f"o{number}", f"m{number % 7}", 1_000 + number, "grocery",
                                                         T_2026_03_01 + number)) for number in range(40)])
            outcomes += ledger.apply_group([("purchase", (f"p{number}", f"n{number}", 5_000, "electronics",
                                                          T_2026_03_01 + 100)) for number in range(5)])
            results[engine_name] = ([(outcome.status, outcome.points, outcome.balance, outcome.tier)
                                     for outcome in outcomes], dump_ledger(ledger))
    assert results["python"] == results["cython"]
    assert len(results["python"][0]) == 45 and all(item[0] == "APPLIED" for item in results["python"][0])
