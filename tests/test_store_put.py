"""A flush's records go in with one GIL-free C put (store/put.py, store/_lmdb_batch.pyx) or with putmulti:
the same store either way, in both engines, and every failure of the C put handled as
putmulti's was (a stored order id, a full map, a py-lmdb whose layout is not the known one)."""

import os
import random

import pytest

import pointsledger
from pointsledger.store import put as store_put, store as store_module
from support import T_2026_03_01, T_2026_03_10, dump_ledger, example_program, simple_program

# Under POINTSLEDGER_REQUIRE_EXTENSION=1 (CI) a missing _lmdb_batch fails these instead.
needs_c_put = pytest.mark.skipif(
    store_put._lmdb_batch is None and os.environ.get("POINTSLEDGER_REQUIRE_EXTENSION") != "1",
    reason="the _lmdb_batch extension is not built")


def workload(ledger):
    """Sequential and random order ids, new and known members, a refund, a redemption, an
    adjustment, a resent order: every sub-database the flush writes, appended or not."""
    rng = random.Random(15)
    ledger.set_program(example_program())
    outcomes = []
    for batch in range(3):
        orders = [f"s{batch}-{index:05d}" for index in range(700)]
        orders += [f"r{rng.randrange(10**9):09d}" for _ in range(300)]
        members = [f"m{rng.randrange(400):04d}" for _ in orders]
        amounts = [rng.randrange(100, 50_000) for _ in orders]
        categories = [rng.choice(["grocery", "fuel", "travel"]) for _ in orders]
        times = [T_2026_03_01 + batch * 86_400 + index for index in range(len(orders))]
        outcomes.append([tuple(raw[:4]) for raw in ledger.purchases(orders, members, amounts, categories, times).raw])
    outcomes.append(repr(ledger.refund("f1", "s0-00003", 100, T_2026_03_10)))
    outcomes.append(repr(ledger.redeem("d1", "m0001", 1, T_2026_03_10)))
    outcomes.append(repr(ledger.adjust("a1", "m0002", 25, "goodwill", T_2026_03_10)))
    resent = ledger.purchases(["s0-00001", "n1"], ["m0001", "m0001"], [100, 200], ["fuel", "fuel"],
                              [T_2026_03_10, T_2026_03_10])
    outcomes.append([item.status for item in resent])
    return outcomes


def run(tmp_path, name, engine_name, monkeypatch, force_putmulti, without_extension=False):
    with monkeypatch.context() as patch:
        patch.setattr(store_put, "FORCE_PUTMULTI", force_putmulti)
        if without_extension:  # a build without _lmdb_batch: lists and putmulti
            patch.setattr(store_put, "_lmdb_batch", None)
        with pointsledger.Ledger(tmp_path / name, engine=engine_name, sync=False) as ledger:
            outcomes = workload(ledger)
            report = ledger.verify()
            assert report.ok, report.problems
            return outcomes, dump_ledger(ledger)


def test_c_put_and_putmulti_write_the_same_store(tmp_path, engine_name, monkeypatch):
    with_c = run(tmp_path, "c", engine_name, monkeypatch, False)
    with_putmulti = run(tmp_path, "putmulti", engine_name, monkeypatch, True)
    with_lists = run(tmp_path, "lists", engine_name, monkeypatch, False, without_extension=True)
    assert with_c == with_putmulti == with_lists
    outcomes, dump = with_c
    assert outcomes[-1] == ["ALREADY_EXISTS", "APPLIED"]  # other amount and time: not a resend
    assert len(dump[b"orders"]) == 3_001 and len(dump[b"journal"]) == 3_004


@needs_c_put
def test_the_c_put_is_what_a_write_uses(tmp_path, monkeypatch):
    seen = []
    original = store_put._lmdb_batch.Records.put

    def spy(txn, env, dbs, records, modes):
        seen.append((store_put.c_put_usable(txn, env), isinstance(records, store_put._lmdb_batch.Records)))
        return put_records(txn, env, dbs, records, modes)

    put_records = store_put.put_records
    monkeypatch.setattr(store_put, "put_records", spy)
    with pointsledger.Ledger(tmp_path / "l", engine="cython") as ledger:
        ledger.set_program(example_program())
        ledger.purchases(["o1"], ["m1"], [1000], ["grocery"], [T_2026_03_01])
    assert seen == [(True, True)] * 4  # two writes, each: the records, then counters and meta
    assert original is store_put._lmdb_batch.Records.put


@needs_c_put
def test_a_stored_order_id_met_by_the_c_put_is_a_conflict_then_a_duplicate(tmp_path):
    with pointsledger.Ledger(tmp_path / "l", engine="cython") as ledger:
        ledger.set_program(example_program())
        ledger.purchases(["k5", "a2"], ["m1", "m2"], [1000, 2000], ["grocery"] * 2, [T_2026_03_01] * 2)
        # Random ids: not appended, so the unchecked ones go in with MDB_NOOVERWRITE.
        result = ledger.purchases(["c7", "a2", "b1"], ["m3", "m2", "m4"], [500, 2000, 700], ["grocery"] * 3,
                                  [T_2026_03_10, T_2026_03_01, T_2026_03_10])
        assert [item.status for item in result] == ["APPLIED", "DUPLICATE", "APPLIED"]
        assert ledger.store.careful_writes_left == store_module.CAREFUL_WRITES_AFTER_CONFLICT
        assert ledger.last_seq() == 4


@needs_c_put
def test_an_unknown_py_lmdb_layout_falls_back_to_putmulti(tmp_path, monkeypatch):
    monkeypatch.setattr(store_put._lmdb_batch, "SUPPORTED_VERSION", "0.0.0")
    with pointsledger.Ledger(tmp_path / "l", engine="cython") as ledger:
        with ledger.store.env.begin(write=True) as txn:
            assert not store_put.c_put_usable(txn, ledger.store.env)
        ledger.set_program(simple_program())
        result = ledger.purchases(["o1", "o2"], ["m1", "m1"], [1000, 2000], ["grocery"] * 2, [T_2026_03_01] * 2)
        # 1 point per 100 cents, multiplier 1: 10 and 20 points.
        assert [(item.status, item.seq, item.points, item.balance) for item in result] == [
            ("APPLIED", 1, 10, 10), ("APPLIED", 2, 20, 30)]
        assert ledger.balance("m1", T_2026_03_10).balance == 30


def test_a_full_map_in_the_put_grows_the_map_and_writes_the_batch(tmp_path, engine_name):
    with pointsledger.Ledger(tmp_path / "l", engine=engine_name, map_size_bytes=1 << 20, sync=False) as ledger:
        ledger.set_program(simple_program())
        count = 20_000
        result = ledger.purchases([f"o{index:06d}" for index in range(count)], [f"m{index % 5000}" for index in range(count)],
                                  [1000] * count, ["grocery"] * count, [T_2026_03_01] * count)
        assert ledger.store.env.info()["map_size"] > 1 << 20
        assert result[-1].seq == count and ledger.last_seq() == count
        assert ledger.balance("m7", T_2026_03_10).balance == 40  # 4 purchases of 10 points
        assert ledger.verify().ok


@needs_c_put
def test_packed_records_that_overrun_their_buffer_are_refused_by_the_c_put(tmp_path):
    """A packed segment whose records do not end exactly at its buffer's end (a bug in its
    producer) is refused before any read past the end; the records before it are the caller's
    to abort, as for any failed put."""
    import lmdb
    env = lmdb.open(str(tmp_path / "env"), max_dbs=2)
    try:
        db = env.open_db(b"x")
        record = (3).to_bytes(4, "little") + (2).to_bytes(4, "little") + b"keyvv"
        for packed, count in ((record + record[:-1], 2), (record, 2)):
            txn = env.begin(write=True)
            try:
                records = store_put._lmdb_batch.Records()
                records.add_packed(b"x", packed, count)
                with pytest.raises(RuntimeError, match="packed records"):
                    store_put.put_records(txn, env, {b"x": db}, records, [store_put.PLAIN])
            finally:
                txn.abort()
        with env.begin(db=db) as txn:
            assert list(txn.cursor()) == []
    finally:
        env.close()


@needs_c_put
def test_a_fallback_to_putmulti_is_said_once_and_shown_by_info(tmp_path, monkeypatch, caplog):
    assert store_put.c_put_problem() is None  # this build, this py-lmdb: the C put
    monkeypatch.setattr(store_put._lmdb_batch, "SUPPORTED_VERSION", "0.0.0")
    monkeypatch.setattr(store_put, "_fallback_logged", False)
    problem = store_put.c_put_problem()
    assert f"py-lmdb {store_put.lmdb.__version__} is installed" in problem and "0.0.0" in problem
    with caplog.at_level("WARNING", logger="pointsledger"), \
            pointsledger.Ledger(tmp_path / "l", engine="cython") as ledger:
        ledger.set_program(simple_program())
        for number in range(3):
            ledger.purchases([f"o{number}"], ["m1"], [1000], ["grocery"], [T_2026_03_01])
        assert ledger.balance("m1", T_2026_03_10).balance == 30
    warnings = [record.getMessage() for record in caplog.records if "putmulti" in record.getMessage()]
    assert len(warnings) == 1 and "needs py-lmdb 0.0.0" in warnings[0]
    from pointsledger.cli import store_commands

    shown = []
    monkeypatch.setattr(store_commands, "emit", lambda arguments, info: shown.append(info))
    store_commands.cmd_info(type("Arguments", (), {"data": str(tmp_path / "l")})())
    assert shown[0]["store_put"] == "putmulti" and shown[0]["store_put_problem"] == problem


def test_putmulti_forced_or_without_the_extension_is_named(monkeypatch):
    monkeypatch.setattr(store_put, "FORCE_PUTMULTI", True)
    assert store_put.c_put_problem() in ("POINTSLEDGER_PUTMULTI=1", "the _lmdb_batch extension is not built")
    monkeypatch.setattr(store_put, "_lmdb_batch", None)
    assert store_put.c_put_problem() == "the _lmdb_batch extension is not built"
