"""Where a backfill's time goes: wall and CPU seconds per stage of the write path.

    python benchmarks/breakdown.py backfill-seq --count 1000000
    mkfifo /tmp/ctl && perf record -F 999 -D -1 --control fifo:/tmp/ctl -o seq.data -- \
        python benchmarks/breakdown.py backfill-seq --perf-control /tmp/ctl

The workload of benchmarks/backfill.py (same seeded batches, relaxed sync; backfill-engaged
with its engagement rules and untimed set-up), with the
stage boundaries taken from the write path's fault-injection points
(pointsledger.store.faults.hook: "flush", each "putmulti", "commit", "committed"), which
the write path passes in production too (one None test each). A stage's time is
from one point to the next:

- engine: from the start of `Ledger.purchases` to "flush" (transaction begin,
  cache check, then the engine's `apply_purchases`: validation, pricing, member
  state, journal and order values);
- journal, members, orders: each sub-database's `putmulti` (for members this
  includes encoding each record as LMDB asks for it; orders only when the batch
  has orders, which a backfill always has). With the C put (store_put, issue 15:
  every sub-database in one put, the hook met per segment after it) "journal" is
  the encoding of all the records and the whole put, "members" and "orders" ~0, and
  "other puts" the one put of the counters and meta (write_rest); POINTSLEDGER_PUTMULTI=1
  gives the per-sub-database split back;
- rest of flush: days, expiry, meta totals;
- commit: `txn.commit()` (LMDB writes the dirty pages; no fsync, relaxed sync);
- results: from "committed" to the return of `Ledger.purchases` (the BatchResult);
- sync: the one `env.sync` at the end.

Prints one JSON line: per stage wall and CPU seconds, and their totals. What
perf adds (the split inside the engine) is in benchmarks/README.md.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import backfill  # noqa: E402
import workload  # noqa: E402
from pointsledger import Ledger  # noqa: E402
from pointsledger.store import faults  # noqa: E402

PUT_STAGES = ("journal", "members", "orders")


class Stages:
    """Adds up wall and CPU seconds between consecutive marks."""

    def __init__(self):
        self.wall = {}
        self.cpu = {}
        self.last = None
        self.puts = 0

    def mark(self, stage):
        """Close the stage running since the last mark, named `stage`."""
        now = (time.perf_counter(), time.thread_time())
        if self.last is not None and stage is not None:
            self.wall[stage] = self.wall.get(stage, 0.0) + now[0] - self.last[0]
            self.cpu[stage] = self.cpu.get(stage, 0.0) + now[1] - self.last[1]
        self.last = now

    def hook(self, point):
        if point == "flush":
            self.mark("engine")
            self.puts = 0
        elif point == "putmulti":
            self.mark(PUT_STAGES[self.puts] if self.puts < len(PUT_STAGES) else "other puts")
            self.puts += 1
        elif point == "commit":
            self.mark("rest of flush")
        elif point == "committed":
            self.mark("commit")


def perf_command(path, command):
    """Tell `perf record --control fifo:path` to start or stop sampling (no-op without a path)."""
    if path:
        with open(path, "w", encoding="ascii") as control:
            control.write(command + "\n")


def run(workload_name, count, batch_size, seed, scratch_directory, perf_control=None):
    engaged = workload_name == "backfill-engaged"
    order_ids = "seq" if engaged else workload_name.rsplit("-", 1)[1]
    stages = Stages()
    # Made before timing (and before perf samples), so the profile is the write path's alone.
    batches = [[batch[name] for name in workload.COLUMNS]
               for batch in workload.iter_backfill_batches(count, batch_size, seed=seed, order_ids=order_ids)]
    with tempfile.TemporaryDirectory(prefix="pointsledger-breakdown-", dir=scratch_directory) as scratch:
        ledger = Ledger(os.path.join(scratch, "ledger"), sync=False, engine="cython")
        try:
            ledger.set_program(dict(backfill.backfill_program(), **(backfill.ENGAGEMENT_RULES if engaged else {})))
            if engaged:
                backfill.set_up_engagement(ledger)  # untimed, as in benchmarks/backfill.py
            faults.hook = stages.hook
            perf_command(perf_control, "enable")
            try:
                for columns in batches:
                    stages.mark(None)
                    ledger.purchases(*columns)
                    stages.mark("results")
                stages.mark(None)
                ledger.sync()
                stages.mark("sync")
            finally:
                faults.hook = None
                perf_command(perf_control, "disable")
        finally:
            ledger.close()
    line = {"workload": workload_name, "count": count, "batch_size": batch_size,
            "machine": backfill.machine_description(), "load_average": os.getloadavg()}
    for stage in stages.wall:
        line[stage] = {"wall_s": round(stages.wall[stage], 4), "cpu_s": round(stages.cpu[stage], 4)}
    line["total"] = {"wall_s": round(sum(stages.wall.values()), 4), "cpu_s": round(sum(stages.cpu.values()), 4)}
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=("backfill-seq", "backfill-rand", "backfill-engaged"))
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=backfill.BATCH_SIZE_DEFAULT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scratch-dir", default=None)
    parser.add_argument("--perf-control", default=None,
                        help="the FIFO of `perf record -D -1 --control fifo:FIFO`: sample the timed part only")
    arguments = parser.parse_args(argv)
    print(json.dumps(run(arguments.workload, arguments.count, arguments.batch_size, arguments.seed,
                         arguments.scratch_dir, arguments.perf_control)), flush=True)


if __name__ == "__main__":
    main()
