"""Ledger.purchase_batches (pipeline.py): batch k written on a second thread while batch k+1 is
applied detached. The same results and every key and value of the store as `purchases` batch
after batch, in both engines; each fallback to the serial path (a batch that needs the store,
a stored order id, a failed write, the putmulti put) keeps that; a SIGKILL leaves a committed
prefix holding every acknowledged batch."""

import mmap
import os
import random
import signal
import sys
import threading
import time

import lmdb
import pytest

import pointsledger
from pointsledger import InvalidArgument, limits, pipeline
from pointsledger.store import faults, format as store_format, put as store_put, store as store_module
from support import T_2026_03_01, dump_ledger, simple_program
import test_random_kills as kills

T = T_2026_03_01


def columns(index, size=300, order_ids="seq", categories=("grocery", "fuel"), members=120):
    rng = random.Random(index)
    if order_ids == "seq":
        orders = [f"s{index:03d}-{item:05d}" for item in range(size)]
    else:
        orders = [f"r{rng.randrange(10**9):09d}" for _ in range(size)]
    return (orders, [f"m{rng.randrange(members):04d}" for _ in range(size)],
            [rng.randrange(100, 90_000) for _ in range(size)], [rng.choice(categories) for _ in range(size)],
            [T + index * 3_600 + item for item in range(size)])


def mixed_batches():
    """Detached batches, and each kind that must fall back, in one run."""
    batches = [columns(index) for index in range(3)]
    batches.append(columns(3, order_ids="rand"))
    batches.append(([], [], [], [], []))  # empty: no transaction
    batches.append(columns(4, categories=("grocery", "books")))  # a new category: detached too
    refused = columns(5, order_ids="rand")
    refused[2][7] = -5  # a refused item (its fields are checked before its order id: no store read)
    batches.append(refused)
    resent = columns(6, order_ids="rand")
    for column, stored in zip(resent, columns(1)):
        column[3] = stored[10]  # batch 1's item 10, every field
    batches += [columns(7), columns(8)]
    batches.append(resent)  # a stored order id, resent: OrdersConflict on the writer thread, then DUPLICATE
    batches.append(columns(9))
    return batches


def plain(raw):
    return [tuple(item[:4]) + ((item[4].code, item[4].field) if item[4] is not None else (None,),) for item in raw]


def serial_run(path, engine_name, batches):
    with pointsledger.Ledger(path, engine=engine_name, sync=False) as ledger:
        ledger.set_program(simple_program())
        results = [plain(ledger.purchases(*batch).raw) for batch in batches]
        return results, dump_ledger(ledger)


def pipelined_run(path, engine_name, batches):
    with pointsledger.Ledger(path, engine=engine_name, sync=False) as ledger:
        ledger.set_program(simple_program())
        results = [plain(result.raw) for result in ledger.purchase_batches(iter(batches))]
        report = ledger.verify()
        assert report.ok, report.problems
        pipelined_run.careful_writes_left = ledger.store.careful_writes_left
        return results, dump_ledger(ledger)


@pytest.fixture
def detached(monkeypatch):
    """[batches applied detached, batches that needed the store]."""
    counts = [0, 0]
    original = pipeline._apply_detached

    def spy(*arguments):
        applied = original(*arguments)
        counts[applied is None] += 1
        return applied

    monkeypatch.setattr(pipeline, "_apply_detached", spy)
    return counts


def test_pipelined_batches_give_the_serial_results_and_store(tmp_path, engine_name, detached):
    batches = mixed_batches()
    serial = serial_run(tmp_path / "serial", engine_name, batches)
    interval = sys.getswitchinterval()
    pipelined = pipelined_run(tmp_path / "pipelined", engine_name, batches)
    assert pipelined == serial
    assert sys.getswitchinterval() == interval  # lowered while the pipeline ran, restored
    results, dump = serial
    assert [len(result) for result in results] == [300] * 4 + [0] + [300] * 6
    assert results[6][7] == ("INVALID_ARGUMENT", 0, 0, 0, ("INVALID_ARGUMENT", "amount_minor"))
    assert results[9][3][0] == "DUPLICATE"
    assert len(dump[b"journal"]) == 10 * 300 - 2 and len(dump[b"categories"]) == 3
    if engine_name == "cython":
        # New categories (batch 0's, the later "books") are carried from batch to batch: every
        # batch applies detached; the resent batch's write met the stored id (OrdersConflict on
        # the writer thread): it and the batch after it ran again serially, the careful way.
        assert detached == [10, 0]
        assert pipelined_run.careful_writes_left == store_module.CAREFUL_WRITES_AFTER_CONFLICT - 1
    else:  # the twin looks every order id up: every batch needs the store
        assert detached[0] == 0


def test_the_putmulti_put_in_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.setattr(store_put, "FORCE_PUTMULTI", True)
    batches = [columns(index) for index in range(4)] + [columns(4, order_ids="rand")]
    assert pipelined_run(tmp_path / "p", "cython", batches) == serial_run(tmp_path / "s", "cython", batches)


def fail_the_first_writer_thread_commit(monkeypatch):
    """A full map at the first commit on the pipeline's writer thread (not set_program's, on the
    main thread, which Store.write's map growth would absorb); returns the list of failures made."""
    failures = []

    def full_once(point):
        if point == "commit" and not failures and threading.current_thread().name == "pointsledger-pipeline-writer":
            failures.append(point)
            raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL: injected")

    monkeypatch.setattr(faults, "hook", full_once)
    return failures


def test_a_failed_write_on_the_writer_thread_is_redone_serially(tmp_path, engine_name, monkeypatch):
    batches = [columns(index) for index in range(5)]
    expected = serial_run(tmp_path / "serial", engine_name, batches)
    failures = fail_the_first_writer_thread_commit(monkeypatch)
    assert pipelined_run(tmp_path / "pipelined", engine_name, batches) == expected
    assert failures == (["commit"] if engine_name == "cython" else [])  # the twin never applies detached


def test_a_batch_refused_whole_raises_after_the_results_before_it(tmp_path, engine_name):
    batches = [columns(0), columns(1), (["o1"], [], [], [], [])]
    with pointsledger.Ledger(tmp_path / "l", engine=engine_name, sync=False) as ledger:
        ledger.set_program(simple_program())
        results = ledger.purchase_batches(iter(batches))
        assert [len(next(results)), len(next(results))] == [300, 300]
        with pytest.raises(InvalidArgument) as refused:
            next(results)
        assert refused.value.field == "member_ids"
        assert ledger.last_seq() == 600
        assert ledger.verify().ok


def pipelined_writer(path, engine_name, sync, seed, shared):
    """test_random_kills' writer, through purchase_batches: acknowledged = results received."""
    def mark(point):
        if point == "commit":
            kills.PHASE.pack_into(shared, 0, kills.PHASE_IN_COMMIT, kills.PHASE.unpack_from(shared)[1])

    faults.hook = mark
    ledger = pointsledger.Ledger(path, engine=engine_name, sync=sync)

    def batches():
        index = 0
        while True:
            yield kills.batch(seed, index)[0]
            index += 1

    acknowledged = 0
    kills.PHASE.pack_into(shared, 0, kills.PHASE_WRITING, 0)
    for _ in ledger.purchase_batches(batches()):
        acknowledged += 1
        kills.PHASE.pack_into(shared, 0, kills.PHASE_ACKNOWLEDGED, acknowledged)


@pytest.mark.parametrize("sync", [True, False], ids=["synced", "relaxed"])
def test_a_kill_mid_pipeline_leaves_a_committed_prefix_with_every_acknowledged_batch(tmp_path, engine_name, sync):
    for seed in range(3):
        path = tmp_path / f"ledger-{seed}"
        with pointsledger.Ledger(path, engine=engine_name, sync=False) as ledger:
            ledger.set_program(simple_program())
        shared = mmap.mmap(-1, kills.PHASE.size)
        child = os.fork()
        if child == 0:  # the child never returns into pytest
            try:
                pipelined_writer(path, engine_name, sync, seed, shared)
            finally:
                os._exit(3)
        deadline = time.monotonic() + 30
        while kills.PHASE.unpack_from(shared)[1] < 2 and time.monotonic() < deadline:
            time.sleep(0.002)  # a few batches in: the pipeline is running
        time.sleep(random.Random(seed).uniform(0, 0.05))
        os.kill(child, signal.SIGKILL)
        _, status = os.waitpid(child, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        _, acknowledged = kills.PHASE.unpack_from(shared)
        assert acknowledged >= 2
        # At most one batch past the acknowledged ones, as with purchases(): the pipeline hands
        # batch k+1 to its writer thread only after the caller has taken batch k's result.
        kills.check_committed_prefix(path, engine_name, seed, acknowledged)


ENGAGED = {
    "welcome_bonus": 100,
    "pending_days": 30,
    "milestones": [{"id": "three-orders", "purchases": 3, "bonus_points": 500},
                   {"id": "big-spender", "spend_minor": 100_000, "bonus_points": 1000}],
    "birthday": {"multiplier": 2},
    "referral": {"referrer_points": 500, "referee_points": 250, "min_purchase_minor": 2000},
}
DAY = 86_400


def engaged_batches():
    """Six batches ten days apart (pending lots of 30 days are released), 40 members."""
    batches = []
    for index in range(6):
        orders, members, amounts, categories, _ = columns(index, size=80, members=40)
        batches.append((orders, members, amounts, categories, [T + index * 10 * DAY + item for item in range(80)]))
    return batches


def engaged_run(path, engine_name, batches, pipelined, between=None):
    """Under all five engagement rules: m0000-m0004 bought before; each refers m0010+i, and
    one member in three has a profile, born in March, April or May."""
    with pointsledger.Ledger(path, engine=engine_name, sync=False) as ledger:
        ledger.set_program(simple_program(**ENGAGED))
        referrers = [f"m{number:04d}" for number in range(5)]
        ledger.purchases([f"setup-{number}" for number in range(5)], referrers, [1_000] * 5,
                         ["grocery", "fuel", "grocery", "fuel", "grocery"], [T - DAY] * 5)
        for number in range(5):
            ledger.register_referral(f"ref-{number}", referrers[number], f"m{number + 10:04d}", T - DAY)
        for number in range(0, 40, 3):
            ledger.set_member_profile(f"m{number:04d}", f"{number % 3 + 3:02d}-01")
        results = []
        outcomes = ledger.purchase_batches(iter(batches)) if pipelined else (ledger.purchases(*batch) for batch in batches)
        for result in outcomes:
            results.append(plain(result.raw))
            if between is not None:  # the caller's own writes between two results
                between(ledger, len(results))
        if pipelined:
            report = ledger.verify()
            assert report.ok, report.problems
        return results, dump_ledger(ledger)


def bonus_refs(dump):
    """The rule of every BONUS entry in the journal, counted (welcome, referral:*, milestone:*)."""
    counted = {}
    for _, value in dump[b"journal"]:
        kind, _, _, _, _, _, _, ref = store_format.decode_entry(value)
        if kind == store_format.KIND_BONUS:
            rule = bytes(ref).split(b":")[0]
            counted[rule] = counted.get(rule, 0) + 1
    return counted


def test_stored_categories_not_cached_are_read_before_the_first_batch(tmp_path, detached):
    # Reopened: the category cache is empty. The first batch's categories are all stored, so
    # they are cached from a read before it, and it applies detached like the rest.
    batches = [columns(index) for index in range(3)]
    path = tmp_path / "ledger"
    with pointsledger.Ledger(path, engine="cython", sync=False) as ledger:
        ledger.set_program(simple_program())
        ledger.purchases(*columns(99, size=10))
    with pointsledger.Ledger(path, engine="cython", sync=False) as ledger:
        assert ledger.store.category_codes == {}
        results = [plain(result.raw) for result in ledger.purchase_batches(iter(batches))]
        assert set(ledger.store.category_codes) == {b"grocery", b"fuel"}
    assert detached == [3, 0]
    serial_path = tmp_path / "serial"
    with pointsledger.Ledger(serial_path, engine="cython", sync=False) as ledger:
        ledger.set_program(simple_program())
        ledger.purchases(*columns(99, size=10))
        assert results == [plain(ledger.purchases(*batch).raw) for batch in batches]
        serial_dump = dump_ledger(ledger)
    with pointsledger.Ledger(path, engine="cython", sync=False) as ledger:
        assert dump_ledger(ledger) == serial_dump


def test_under_engagement_rules_the_batches_run_detached(tmp_path, engine_name, detached):
    batches = engaged_batches()
    serial = engaged_run(tmp_path / "serial", engine_name, batches, pipelined=False)
    pipelined = engaged_run(tmp_path / "pipelined", engine_name, batches, pipelined=True)
    assert pipelined == serial
    results, dump = serial
    members = {member for batch in batches for member in batch[1]}
    referees_paid = {batch[1][item] for batch in batches for item in range(80)
                     if batch[1][item] in {f"m{number + 10:04d}" for number in range(5)} and batch[2][item] >= 2000}
    counted = bonus_refs(dump)
    # Welcome: each of the 40 members once (the five referrers on their set-up purchase); a
    # referral pays the referee and its referrer once, on the referee's first purchase of 20.00+.
    assert counted[b"welcome"] == len(members) == 40
    assert counted[b"referral"] == 2 * len(referees_paid) and referees_paid
    assert counted[b"milestone"] > 0 and len(dump[b"referrals"]) == 5
    if engine_name == "cython":
        assert detached == [6, 0]  # every batch, the caches complete and the referrals carried
    else:  # the twin looks every order id up: every batch needs the store
        assert detached[0] == 0


def test_an_engaged_batch_needing_the_store_falls_back(tmp_path, monkeypatch, detached):
    # The referral records are not carried and the referee keys not loaded (over the bound):
    # a referee's purchase reads the store, so its batch runs serially, with the same outcome.
    monkeypatch.setattr(pipeline, "CARRIED_REFERRAL_RECORDS_MAX", 4)
    batches = engaged_batches()
    serial = engaged_run(tmp_path / "serial", "cython", batches, pipelined=False)
    assert engaged_run(tmp_path / "pipelined", "cython", batches, pipelined=True) == serial
    assert detached == [0, 3]  # every batch has a referee's purchase: after three tries, the rest serially


def test_profiles_and_referrals_changed_between_results(tmp_path, monkeypatch, detached):
    # A caller may write between two results (nothing is in flight then); the batch applied
    # detached before that write is applied again serially (StoreMoved), from the new profile
    # and referral, and the pipeline carries on from there.
    def between(ledger, taken):
        if taken == 2:
            ledger.set_member_profile("m0001", "03-01")  # born in March: its purchases in batch 3 (March 31) x2
            ledger.register_referral("ref-late", "m0002", "n0001", T + 25 * DAY)

    moved = []
    original = pipeline._WriterThread._write

    def write(self, job):
        try:
            original(self, job)
        except pipeline.StoreMoved:
            moved.append(job.expected_commit_count)
            raise

    monkeypatch.setattr(pipeline._WriterThread, "_write", write)
    batches = engaged_batches()
    serial = engaged_run(tmp_path / "serial", "cython", batches, pipelined=False, between=between)
    assert engaged_run(tmp_path / "pipelined", "cython", batches, pipelined=True, between=between) == serial
    assert len(serial[1][b"referrals"]) == 6
    assert detached == [6, 0]
    assert len(moved) == 1  # batch 3, applied before the caller's writes, then run again serially

def test_carried_referral_tables_take_each_batch_s_writes():
    # Carried.after: the referral records a batch settled are what the next batch reads (the
    # C engine's member state remembers a settled referral, so its purchases rarely show it).
    class Batch:
        next_seq, totals, new_member_count = 8, [0] * len(store_format.COUNTER_FIELDS), 0
        new_categories = {b"books": 2}
        overlay = {store_format.DB_REFERRALS: {b"r1": b"settled"}, store_format.DB_REFEREES: {}}

        def stored_bonus_total(self):
            return 750

        def has_changes(self):
            return True

    before = pipeline.Carried()
    before.member_count, before.orders_last_key, before.commit_count = 3, b"", 4
    before.category_count, before.categories = 2, {b"fuel": 1}
    before.tables = {store_format.DB_REFERRALS: {b"r1": b"open", b"r2": b"open"}, store_format.DB_REFEREES: None}
    after = before.after(Batch(), (None, [], []))
    assert after.tables == {store_format.DB_REFERRALS: {b"r1": b"settled", b"r2": b"open"}, store_format.DB_REFEREES: None}
    assert before.tables[store_format.DB_REFERRALS] == {b"r1": b"open", b"r2": b"open"}  # left whole
    assert (after.last_seq, after.bonus_total, after.commit_count) == (7, 750, 5)
    assert (after.category_count, after.categories, before.categories) == (3, {b"fuel": 1, b"books": 2}, {b"fuel": 1})


def test_a_category_of_a_failed_write_is_not_kept(tmp_path, engine_name, monkeypatch, detached):
    # Batch 1 (detached) takes "books" from batch 0, still in flight, and caches its code; batch
    # 0's write then fails: both run again serially, and "books" is written, with batch 0, once.
    batches = [columns(0, categories=("grocery", "books")), columns(1, categories=("books", "fuel")),
               columns(2, categories=("toys",))]
    expected = serial_run(tmp_path / "serial", engine_name, batches)
    failures = fail_the_first_writer_thread_commit(monkeypatch)  # batch 0's
    assert pipelined_run(tmp_path / "pipelined", engine_name, batches) == expected
    assert failures == (["commit"] if engine_name == "cython" else [])  # the twin never applies detached
    dump = expected[1]
    assert sorted(name for name, _ in dump[b"categories"]) == [b"books", b"fuel", b"grocery", b"toys"]
    if engine_name == "cython":
        assert detached == [3, 0]  # then 0 and 1 again serially


def test_a_member_s_purchase_count_read_from_its_journal_falls_back(tmp_path, detached):
    # Members who bought under a plain programme have no engagement counts: their first
    # purchase under the milestones counts their EARN entries in the journal, a read of the
    # store, so that batch runs serially, with the serial run's outcome.
    batches = engaged_batches()[:3]
    outcomes = {}
    for name, pipelined in (("serial", False), ("pipelined", True)):
        with pointsledger.Ledger(tmp_path / name, engine="cython", sync=False) as ledger:
            ledger.set_program(simple_program())
            ledger.purchases(["old-0", "old-1"], ["m0001", "m0002"], [5_000, 5_000], ["grocery", "fuel"], [T - DAY] * 2)
            ledger.set_program(simple_program(**ENGAGED, effective_from=T - DAY + 1))
            if pipelined:
                results = [plain(result.raw) for result in ledger.purchase_batches(iter(batches))]
            else:
                results = [plain(ledger.purchases(*batch).raw) for batch in batches]
            outcomes[name] = results, dump_ledger(ledger)
    assert outcomes["pipelined"] == outcomes["serial"]
    # Batch 0 (m0002's first engaged purchase) and batch 1 (m0001's) needed the store; after
    # two misses in a row batch 2 ran serially without a try.
    assert detached == [0, 2]


def test_a_fresh_store_s_large_first_batch_applies_detached(tmp_path, detached):
    # A batch of lookup_scan_items_min purchases or more loads the profile and referee lookups
    # first (engagement.prepare_lookups), with or without engagement rules: they are filled before
    # it, so it applies detached rather than failing and running again serially.
    size = limits.lookup_scan_items_min
    batches = [columns(index, size=size) for index in range(2)]
    with pointsledger.Ledger(tmp_path / "ledger", engine="cython", sync=False) as ledger:
        ledger.set_program(simple_program())
        assert [result.applied for result in ledger.purchase_batches(iter(batches))] == [size, size]
    assert detached == [2, 0]
