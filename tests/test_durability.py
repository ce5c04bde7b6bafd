"""Durability (SPEC §9): a killed writer leaves a committed prefix, the map grows,
verify() finds corruption and says where.
"""

import os
import signal
import struct
import subprocess
import sys

import lmdb
import pytest

import pointsledger
from pointsledger.store import format as store_format
from support import T_2026_03_15, entries, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z
BATCH_SIZE = 25  # purchases per batch; each purchase writes exactly one EARN entry
ACKNOWLEDGED_BEFORE_KILL = 20

# The writer: ingests batch after batch until killed, printing how many batches have
# been committed (returned from purchases()) after each one.
WRITER = r"""
import sys
import pointsledger

path, engine = sys.argv[1], sys.argv[2]
sync, size, time_s = sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
ledger = pointsledger.Ledger(path, engine=engine, sync=sync)
batch = 0
while batch < 1_000_000:
    results = ledger.purchases(
        [f"b{batch}-{item}" for item in range(size)], [f"m{item}" for item in range(size)],
        [1_000] * size, ["x"] * size, [time_s] * size,
    )
    if results.applied != size:
        sys.exit(f"batch {batch}: {results.applied} applied")
    batch += 1
    print(batch, flush=True)
"""


def batch_columns(batch):
    return (
        [f"b{batch}-{item}" for item in range(BATCH_SIZE)], [f"m{item}" for item in range(BATCH_SIZE)],
        [1_000] * BATCH_SIZE, ["x"] * BATCH_SIZE, [T] * BATCH_SIZE,
    )


def kill_mid_ingest(path, engine_name, sync):
    """Run the writer, SIGKILL it after some acknowledged batches; return how many it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), engine_name, "1" if sync else "0",
         str(BATCH_SIZE), str(T)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    acknowledged = 0
    try:
        for line in child.stdout:
            acknowledged = int(line)
            if acknowledged >= ACKNOWLEDGED_BEFORE_KILL:
                break
        child.send_signal(signal.SIGKILL)
        rest, errors = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert acknowledged >= ACKNOWLEDGED_BEFORE_KILL, f"the writer stopped early: {errors}"
    # Lines printed before the kill landed are acknowledged too.
    for line in rest.split():
        acknowledged = int(line)
    assert child.returncode == -signal.SIGKILL
    return acknowledged


@pytest.mark.parametrize("sync", [True, False], ids=["synced", "relaxed"])
def test_kill_mid_ingest_leaves_a_committed_prefix(tmp_path, engine_name, sync):
    path = tmp_path / "ledger"
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())  # 1,000 cents → 10 points, no expiry
    acknowledged = kill_mid_ingest(path, engine_name, sync)

    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        report = ledger.verify()
        assert report.ok, report.problems
        committed_entries = ledger.last_seq()
        # Whole batches only, at least every acknowledged one.
        assert committed_entries % BATCH_SIZE == 0
        committed = committed_entries // BATCH_SIZE
        assert committed >= acknowledged
        journal = entries(ledger)
        assert [entry[0] for entry in journal] == list(range(1, committed_entries + 1))
        # The prefix is the batches in order: entry k is item k % size of batch k // size.
        assert [entry[3] for entry in journal] == [
            f"b{batch}-{item}" for batch in range(committed) for item in range(BATCH_SIZE)
        ]
        # Resend everything (and a few more batches): nothing counts twice.
        total = committed + 3
        duplicates = applied = 0
        for batch in range(total):
            results = ledger.purchases(*batch_columns(batch))
            duplicates += results.duplicates
            applied += results.applied
            assert results.rejected == 0
        assert duplicates == committed * BATCH_SIZE
        assert applied == 3 * BATCH_SIZE
        assert ledger.last_seq() == total * BATCH_SIZE
        # Each member got one purchase of 10 points per batch.
        assert ledger.balance("m0", T).balance == 10 * total
        assert ledger.balance(f"m{BATCH_SIZE - 1}", T).balance == 10 * total
        report = ledger.verify()
        assert report.ok, report.problems
        assert (report.entries, report.members) == (total * BATCH_SIZE, BATCH_SIZE)


def test_relaxed_sync_ledger_survives_close_and_reopen(tmp_path, engine_name):
    path = tmp_path / "ledger"
    with pointsledger.Ledger(path, engine=engine_name, sync=False) as ledger:
        ledger.set_program(simple_program())
        for batch in range(4):
            ledger.purchases(*batch_columns(batch))
        ledger.sync()
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        assert ledger.last_seq() == 4 * BATCH_SIZE
        assert ledger.balance("m0", T).balance == 40
        assert ledger.verify().ok


def test_map_grows_by_itself(tmp_path, engine_name):
    path = tmp_path / "ledger"
    small_bytes = 64 * 1024  # 16 pages of 4 KiB
    with pointsledger.Ledger(path, engine=engine_name, map_size_bytes=small_bytes) as ledger:
        ledger.set_program(simple_program())
        count = 3_000
        for batch in range(2):
            results = ledger.purchases(
                [f"o-{batch}-{index}" for index in range(count)],
                [f"member-with-a-longish-id-{index}" for index in range(count)],
                [1_000] * count, ["x"] * count, [T] * count,
            )
            assert results.applied == count
        assert ledger.store.env.info()["map_size"] > small_bytes
        assert ledger.last_seq() == 2 * count
        assert ledger.balance("member-with-a-longish-id-0", T).balance == 20
        assert ledger.verify().ok
    # Reopening with the same small size still works (LMDB keeps the larger file).
    with pointsledger.Ledger(path, engine=engine_name, map_size_bytes=small_bytes) as ledger:
        assert ledger.last_seq() == 2 * count
        ledger.purchase("one-more", "m", 1_000, "x", T)
        assert ledger.verify().ok


def open_raw(path):
    env = lmdb.open(str(path), max_dbs=32)
    dbs = {name: env.open_db(name) for name in store_format.ALL_DBS}
    return env, dbs


def make_small_ledger(path, engine_name):
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())
        ledger.purchase("o-1", "alice", 10_000, "x", T)  # 100
        ledger.purchase("o-2", "bob", 20_000, "x", T)  # 200
        ledger.purchase("o-3", "alice", 30_000, "x", T)  # 300 → alice 400
        report = ledger.verify()
        assert report.ok, report.problems
        assert (report.entries, report.members) == (3, 2)


def test_verify_names_a_member_whose_balance_is_wrong(tmp_path, engine_name):
    path = tmp_path / "ledger"
    make_small_ledger(path, engine_name)
    env, dbs = open_raw(path)
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(b"alice", db=dbs[store_format.DB_MEMBERS]))
        head = list(store_format.MEMBER_HEAD.unpack_from(value))
        assert head[1] == 400  # the balance field
        head[1] = 401
        store_format.MEMBER_HEAD.pack_into(value, 0, *head)
        txn.put(b"alice", bytes(value), db=dbs[store_format.DB_MEMBERS])
    env.close()
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        report = ledger.verify()
        assert not report.ok
        assert any("alice" in problem and "401" in problem for problem in report.problems), report.problems
        assert not any("bob" in problem for problem in report.problems), report.problems


def test_verify_finds_a_gap_in_seq(tmp_path, engine_name):
    path = tmp_path / "ledger"
    make_small_ledger(path, engine_name)
    env, dbs = open_raw(path)
    with env.begin(write=True) as txn:
        assert txn.delete(struct.pack(">Q", 2), db=dbs[store_format.DB_JOURNAL])
    env.close()
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        report = ledger.verify()
        assert not report.ok
        assert any("seq" in problem and "gap" in problem for problem in report.problems), report.problems


def test_verify_finds_a_wrong_running_total(tmp_path, engine_name):
    path = tmp_path / "ledger"
    make_small_ledger(path, engine_name)
    env, dbs = open_raw(path)
    with env.begin(write=True) as txn:
        stored = txn.get(store_format.META_TOTALS, db=dbs[store_format.DB_META])
        totals = list(store_format.COUNTERS.unpack(stored))
        assert totals[store_format.COUNTER_EARNED] == 600
        totals[store_format.COUNTER_EARNED] = 601
        txn.put(store_format.META_TOTALS, store_format.COUNTERS.pack(*totals), db=dbs[store_format.DB_META])
    env.close()
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        report = ledger.verify()
        assert not report.ok
        assert any("earned" in problem and "601" in problem for problem in report.problems), report.problems


OTHER_WRITER = r"""
import sys
import pointsledger

path, engine, time_s = sys.argv[1], sys.argv[2], int(sys.argv[3])
with pointsledger.Ledger(path, engine=engine) as ledger:
    ledger.purchase("child-1", "m", 10_000, "x", time_s)
    ledger.purchase("child-2", "n", 20_000, "new-category", time_s)
    ledger.set_program({
        "currency": "USD", "earn": {"points": 3, "per_minor_units": 100},
        "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1}],
        "point_value": "0.01", "effective_from": time_s,
    })
"""


def test_commits_of_another_process_are_seen(tmp_path, engine_name):
    """The in-memory caches (members, programmes, categories) follow other writers."""
    path = tmp_path / "ledger"
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())
        ledger.purchase("parent-1", "m", 10_000, "new-category", T - 1)  # 100
        assert ledger.balance("m", T).balance == 100
        done = subprocess.run([sys.executable, "-c", OTHER_WRITER, str(path), engine_name, str(T)],
                              capture_output=True, text=True, env=dict(os.environ), timeout=120)
        assert done.returncode == 0, done.stderr
        # m: 100 + 100 (child, v1) ; the child set v2 (3 per 100) from T.
        assert ledger.balance("m", T).balance == 200
        assert ledger.get_program().version == 2
        result = ledger.purchase("parent-2", "m", 10_000, "new-category", T)
        assert (result.seq, result.points, result.balance) == (4, 300, 500)
        assert ledger.purchase("parent-3", "n", 10_000, "x", T).balance == 200 + 300
        # The categories both processes created keep distinct codes: duplicates still match.
        assert ledger.purchase("child-2", "n", 20_000, "new-category", T).status == "DUPLICATE"
        assert ledger.purchase("parent-1", "m", 10_000, "new-category", T - 1).status == "DUPLICATE"
        report = ledger.verify()
        assert report.ok, report.problems


def test_a_map_grown_by_another_process_is_adopted(tmp_path, engine_name):
    # One process opens with a small map; another grows the same store's map far
    # beyond it. The first must adopt the new size and go on reading and writing.
    path = tmp_path / "ledger"
    small = pointsledger.Ledger(path, engine=engine_name, map_size_bytes=1 << 20)
    small.set_program(simple_program())
    small.purchase("o-0", "m", 1_000, "x", T)
    grower = (
        "import sys, pointsledger\n"
        "ledger = pointsledger.Ledger(sys.argv[1], engine=sys.argv[2], map_size_bytes=1 << 20)\n"
        "for batch in range(40):\n"
        "    size = 500\n"
        "    ledger.purchases([f'g{batch}-{i}' for i in range(size)], ['m'] * size, [1_000] * size,\n"
        "                     ['x'] * size, [int(sys.argv[3])] * size)\n"
        "ledger.close()\n"
    )
    subprocess.run([sys.executable, "-c", grower, str(path), engine_name, str(T)], check=True,
                   env=dict(os.environ), timeout=120)
    # 1 + 40 x 500 purchases of 1,000 cents at 1 point per 100 cents: 20,001 x 10.
    assert small.balance("m", T).balance == 200_010
    small.purchase("o-1", "m", 1_000, "x", T)
    assert small.verify().ok
    small.close()
