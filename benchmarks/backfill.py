"""The backfill and ceiling benchmarks of SPEC §13, one workload per run.

    python benchmarks/backfill.py backfill-seq --engine cython --count 1000000
    python benchmarks/backfill.py ceiling-rand --count 1000000

Prints one JSON line: workload, engine, count, seconds, rate (purchases/s),
cpu_seconds and cpu_rate (the same, in this process's CPU time), bytes_per_purchase
(store on disk), peak_rss_mib (of this process), machine.
Run each workload in its own process (benchmarks/run.py does) so peak RSS is
that workload's alone.

backfill-*: the seeded workload through Ledger.purchases in batches of 50,000,
relaxed sync, one sync at the end. Only the purchases() calls and the final
sync are timed; making the next batch's columns is not.

ceiling-*: the physical limit of writing what that backfill writes. A ledger
backfill is run first (untimed) into a scratch store; every sub-database is
read back, and the same records are written into a fresh LMDB environment with
plain `putmulti`, one write transaction per ledger batch, same sync policy, no
ledger logic. Each transaction gets what the ledger's batch touched:
- orders: the order ids of that batch, so random ids land at random places in
  the tree exactly as the ledger's inserts do (appending every order in sorted
  slices would make ceiling-rand a sequential write and the ratio meaningless);
- members: every member the batch bought for, as the ledger rewrites each
  touched record once per batch (the final record is written each time);
- meta: all of it, as the ledger rewrites its totals every batch;
- every other sub-database (journal, days, expiry, …): an equal share of its
  records in key order; their keys ascend through the backfill.
Only the write transactions and the final sync are timed.
"""

import argparse
import collections
import copy
import itertools
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

import lmdb

import workload
from pointsledger import EXAMPLE_PROGRAM, Ledger
from pointsledger.store import format as store_format

BATCH_SIZE_DEFAULT = 50_000
COUNT_DEFAULT = 1_000_000
# Sparse: LMDB only takes the disk it writes. Big enough that a 10 M backfill
# never grows the map, which would be a cost of the ledger, not of the disk.
CEILING_MAP_SIZE_BYTES = 8 << 30
MAX_DBS = len(store_format.ALL_DBS)  # every sub-database of the store (19 with the cohort counters and their values by version, §19)
PROGRAM_EFFECTIVE_FROM_S = 946684800  # 2000-01-01: version 1 covers every backfilled purchase

WORKLOADS = ("backfill-seq", "backfill-rand", "ceiling-seq", "ceiling-rand", "backfill-engaged")
# backfill-engaged (issue 11): backfill-seq's purchases under a programme with all five
# engagement rules of SPEC §14 on: welcome 100, pending 30 days, a milestone by count and
# one by spend, birthday x2 for the members with a profile (one in four), and one member
# in ten referred. Profiles, referrals and the referrers' first purchases are set up
# before the timed backfill.
ENGAGEMENT_RULES = {
    "welcome_bonus": 100,
    "pending_days": 30,
    "milestones": [{"id": "ten-orders", "purchases": 10, "bonus_points": 500},
                   {"id": "big-spender", "spend_minor": 100_000, "bonus_points": 1000}],
    "birthday": {"multiplier": 2},
    "referral": {"referrer_points": 500, "referee_points": 250, "min_purchase_minor": 2000},
}
ENGINES = ("cython", "python")
COLUMNS = ("order_ids", "member_ids", "amounts_minor", "categories", "times_s")


def machine_description():
    return f"{platform.system()}-{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}"


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def disk_bytes(directory):
    """Bytes the store's data file takes on disk (allocated blocks: the map is sparse)."""
    return os.stat(os.path.join(directory, "data.mdb")).st_blocks * 512


class Clock:
    """Adds up the wall and CPU seconds (this process) of the `with` blocks it times.

    CPU seconds are what the smoke checks compare: on a shared machine another
    process's load stretches wall time, not this process's CPU time.
    """

    def __init__(self):
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.thread_cpu_seconds = 0.0  # the calling thread's alone (the pipeline's writer thread excluded)

    def __enter__(self):
        self.started = (time.perf_counter(), time.process_time(), time.thread_time())
        return self

    def __exit__(self, *_):
        self.seconds += time.perf_counter() - self.started[0]
        self.cpu_seconds += time.process_time() - self.started[1]
        self.thread_cpu_seconds += time.thread_time() - self.started[2]
        return False


def backfill_program():
    document = copy.deepcopy(EXAMPLE_PROGRAM)
    document["effective_from"] = PROGRAM_EFFECTIVE_FROM_S
    return document


def set_up_engagement(ledger, members=workload.MEMBERS_DEFAULT):
    """Untimed: profiles for one member in four, and one member in ten referred by its neighbour."""
    referrers = [workload.member_id(number + 1) for number in range(0, members - 1, 10)]
    count = len(referrers)
    # The set-up's order ids sort before backfill-seq's ("o000…"), so the timed orders are
    # appended (MDB_APPEND) as in backfill-seq; ids after them ("setup-…") made every batch
    # insert into the tree (about +0.4 CPU-s of orders and +0.5 of commit per million).
    ledger.purchases([f"a-setup-{index}" for index in range(count)], referrers, [1_000] * count,
                     ["grocery"] * count, [workload.START_TIME_S - 86_400] * count)
    for number in range(0, members - 1, 10):
        ledger.register_referral(f"ref-{number}", workload.member_id(number + 1), workload.member_id(number),
                                 workload.START_TIME_S - 86_400)
    for number in range(0, members, 4):
        ledger.set_member_profile(workload.member_id(number), f"{number % 12 + 1:02d}-01")


def run_backfill(directory, engine, count, order_ids, batch_size, seed, engaged=False, serial=False):
    """Backfill the workload into a new ledger at `directory`; return its measurements."""
    ledger = Ledger(directory, sync=False, engine=engine)
    try:
        ledger.set_program(dict(backfill_program(), **(ENGAGEMENT_RULES if engaged else {})))
        if engaged:
            set_up_engagement(ledger)
        clock = Clock()
        applied = 0
        batches = 0
        columns = (tuple(batch[name] for name in COLUMNS)
                   for batch in workload.iter_backfill_batches(count, batch_size, seed=seed, order_ids=order_ids))
        if serial:
            for batch in columns:
                with clock:
                    result = ledger.purchases(*batch)
                applied += result.applied
                batches += 1
        if not serial:
            # Ledger.purchase_batches, fed from batches made while it waits for the caller to
            # take a result: then no batch is being written (the pipeline hands batch k+1 to
            # its writer thread only after result k is taken), so making them untimed, as the
            # serial loop does, hides none of the pipeline's work. It reads two ahead.
            made = collections.deque(itertools.islice(columns, 2))

            def feed():
                while made and made[0] is not None:
                    yield made.popleft()

            results = ledger.purchase_batches(feed())
            while True:
                with clock:
                    result = next(results, None)
                if result is None:
                    break
                applied += result.applied
                batches += 1
                made.append(next(columns, None))
        with clock:
            ledger.sync()
    finally:
        ledger.close()
    return {"seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds, "thread_cpu_seconds": clock.thread_cpu_seconds,
            "applied": applied, "batches": batches}


def read_store(directory):
    """{sub-database name: (flags, [(key, value), ...] in key order)} of an LMDB environment."""
    env = lmdb.open(directory, readonly=True, max_dbs=MAX_DBS, lock=False)
    try:
        contents = {}
        with env.begin() as txn:
            # Named sub-databases are the keys of the main database.
            names = [name for name, _ in txn.cursor()]
            for name in names:
                db = env.open_db(name, txn=txn, create=False)
                contents[name] = (db.flags(txn), list(txn.cursor(db=db)))
        return contents
    finally:
        env.close()


def equal_share(items, batch_index, batches):
    return items[len(items) * batch_index // batches:len(items) * (batch_index + 1) // batches]


def items_for_keys(items_by_key, keys):
    """Sorted (key, value) of distinct `keys`, or None if any is not in the store."""
    try:
        return [(key, items_by_key[key]) for key in sorted(set(keys))]
    except KeyError:
        return None


def ceiling_plan(contents, count, order_ids, batch_size, seed):
    """The ceiling's write transactions: one {name: sorted items} per ledger batch."""
    batch_columns = [
        (batch["order_ids"], batch["member_ids"])
        for batch in workload.iter_backfill_batches(count, batch_size, seed=seed, order_ids=order_ids)
    ]
    batches = len(batch_columns)
    lookups = {
        name: dict(contents[name][1])
        for name in (store_format.DB_ORDERS, store_format.DB_MEMBERS) if name in contents
    }
    plan = [{} for _ in range(batches)]
    for name, (_, items) in contents.items():
        for batch_index, (batch_order_ids, batch_member_ids) in enumerate(batch_columns):
            share = None
            if name == store_format.DB_META:
                share = items
            elif name in lookups:
                ids = batch_order_ids if name == store_format.DB_ORDERS else batch_member_ids
                share = items_for_keys(lookups[name], [text.encode("utf-8") for text in ids])
                if share is None:
                    print(f"warning: {name!r} keys are not the raw ids; splitting it evenly",
                          file=sys.stderr)
                    del lookups[name]
            if share is None:
                share = equal_share(items, batch_index, batches)
            if share:
                plan[batch_index][name] = share
    return plan


def write_ceiling(directory, contents, plan):
    """Write the plan into a fresh environment at `directory`; return the Clock that timed it."""
    env = lmdb.open(directory, map_size=CEILING_MAP_SIZE_BYTES, max_dbs=MAX_DBS,
                    sync=False, metasync=False, writemap=False)
    try:
        with env.begin(write=True) as txn:
            dbs = {name: env.open_db(name, txn=txn, **flags) for name, (flags, _) in contents.items()}
        last_key = {name: None for name in contents}  # the greatest key written so far
        clock = Clock()
        for transaction in plan:
            with clock, env.begin(write=True) as txn:
                for name, items in transaction.items():
                    # append=True is only valid for keys after everything in the db.
                    append = last_key[name] is None or items[0][0] > last_key[name]
                    cursor = txn.cursor(db=dbs[name])
                    consumed, _ = cursor.putmulti(items, append=append,
                                                  dupdata=contents[name][0]["dupsort"])
                    if consumed != len(items):
                        raise RuntimeError(f"putmulti into {name!r} took {consumed} of {len(items)} items")
                    if last_key[name] is None or items[-1][0] > last_key[name]:
                        last_key[name] = items[-1][0]
        with clock:
            env.sync(True)
        return clock
    finally:
        env.close()


def result_line(workload_name, engine, count, seconds, cpu_seconds, store_directory, batch_size, **extra):
    return {
        "workload": workload_name,
        "engine": engine,
        "count": count,
        "seconds": round(seconds, 4),
        "rate": round(count / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 4),
        "cpu_rate": round(count / max(cpu_seconds, 1e-9), 1),
        "bytes_per_purchase": round(disk_bytes(store_directory) / count, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "machine": machine_description(),
        "batch_size": batch_size,
        **extra,
    }


def run_workload(workload_name, engine, count, batch_size, seed, scratch_directory, source_engine, serial=False):
    engaged = workload_name == "backfill-engaged"
    order_ids = "seq" if engaged else workload_name.rsplit("-", 1)[1]  # "seq" or "rand"
    with tempfile.TemporaryDirectory(prefix="pointsledger-bench-", dir=scratch_directory) as scratch:
        ledger_directory = os.path.join(scratch, "ledger")
        if workload_name.startswith("backfill-"):
            run = run_backfill(ledger_directory, engine, count, order_ids, batch_size, seed, engaged, serial)
            return result_line(workload_name, engine, count, run["seconds"], run["cpu_seconds"],
                               ledger_directory, batch_size, applied=run["applied"],
                               method="purchases" if serial else "purchase_batches")
        run = run_backfill(ledger_directory, source_engine, count, order_ids, batch_size, seed)
        contents = read_store(ledger_directory)
        plan = ceiling_plan(contents, count, order_ids, batch_size, seed)
        if len(plan) != run["batches"]:
            raise RuntimeError(f"ceiling has {len(plan)} transactions, the ledger ran {run['batches']}")
        ceiling_directory = os.path.join(scratch, "ceiling")
        clock = write_ceiling(ceiling_directory, contents, plan)
        shutil.rmtree(ledger_directory)
        return result_line(workload_name, "lmdb", count, clock.seconds, clock.cpu_seconds, ceiling_directory,
                           batch_size, ledger_engine=source_engine)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--engine", choices=ENGINES, default="cython",
                        help="engine of a backfill workload")
    parser.add_argument("--source-engine", choices=ENGINES, default="cython",
                        help="engine of the untimed ledger run that a ceiling copies")
    parser.add_argument("--count", type=int, default=COUNT_DEFAULT)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE_DEFAULT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scratch-dir", default=None,
                        help="where the scratch stores go (default: the system temp dir); "
                             "put it on the disk you mean to measure")
    parser.add_argument("--serial", action="store_true",
                        help="backfill-*: Ledger.purchases per batch, not the pipeline (purchase_batches)")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    line = run_workload(arguments.workload, arguments.engine, arguments.count, arguments.batch_size,
                        arguments.seed, arguments.scratch_dir, arguments.source_engine, arguments.serial)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
