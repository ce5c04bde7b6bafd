"""The main thread of a pipelined backfill, in CPU seconds per stage (issue 11's critical path).

    python benchmarks/main_thread.py backfill-engaged --count 1000000
    PYTHONPATH=/tmp/main/src python benchmarks/main_thread.py backfill-seq   # another tree

The workload of benchmarks/backfill.py run through `Ledger.purchase_batches` (batches made
before timing). `time.thread_time()` of the main thread around: the engine's apply of a
detached batch, `Writer.encode_records`, `Carried.after`, the commit bookkeeping
(`Writer.committed`), and the whole of each `next()` on the pipeline ("main total": the
rest is the pipeline's own code and the waits' CPU). The writer thread's CPU is the
process's CPU less the main thread's. Counts the batches applied detached and serially.
On a shared machine these CPU figures move little with the other load, unlike wall time.
Prints one JSON line. With --perf-control, perf samples the timed part only:

    mkfifo /tmp/ctl && perf record -F 999 -g -D -1 --control fifo:/tmp/ctl -o engaged.data -- \
        python benchmarks/main_thread.py backfill-engaged --perf-control /tmp/ctl
    perf report -i engaged.data --tid MAIN_TID --no-children --sort dso,sym
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import backfill  # noqa: E402
import breakdown  # noqa: E402
import workload  # noqa: E402
from pointsledger import Ledger, pipeline  # noqa: E402
from pointsledger.store.writer import Writer  # noqa: E402


class Timer:
    """CPU seconds of the main thread per wrapped call; a call inside another timed one
    (encode_records inside a serial batch) counts as the outer one's only."""

    def __init__(self):
        self.cpu = {}
        self.depth = 0

    def wrap(self, name, function):
        def timed(*args, **kwargs):
            if self.depth or threading.current_thread() is not threading.main_thread():
                return function(*args, **kwargs)
            self.depth += 1
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
                self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - started
        return timed


def run(workload_name, count, batch_size, seed, scratch_directory, perf_control=None):
    engaged = workload_name == "backfill-engaged"
    batches = [tuple(batch[name] for name in workload.COLUMNS)
               for batch in workload.iter_backfill_batches(count, batch_size, seed=seed, order_ids="seq")]
    timer = Timer()
    saved = (pipeline._apply_detached, Writer.encode_records, pipeline.Carried.after, Writer.committed,
             pipeline._fill_lookups, pipeline._fill_member_cache, Ledger._apply_batch, pipeline.Carried.__dict__["read"])
    with tempfile.TemporaryDirectory(prefix="pointsledger-main-thread-", dir=scratch_directory) as scratch:
        ledger = Ledger(os.path.join(scratch, "ledger"), sync=False, engine="cython")
        try:
            ledger.set_program(dict(backfill.backfill_program(), **(backfill.ENGAGEMENT_RULES if engaged else {})))
            if engaged:
                backfill.set_up_engagement(ledger)
            apply = ledger.engine.apply_purchases

            class Engine:  # the module with apply_purchases timed
                def __getattr__(self, name):
                    return getattr(saved_engine, name)

            saved_engine = ledger.engine
            engine = Engine()
            engine.apply_purchases = timer.wrap("apply", apply)
            engine.ENGINE_NAME = saved_engine.ENGINE_NAME
            detached = [0]

            def apply_detached(ledger_, columns, carried):
                ledger_.engine = engine
                try:
                    applied = saved[0](ledger_, columns, carried)
                finally:
                    ledger_.engine = saved_engine
                detached[0] += applied is not None
                return applied

            pipeline._apply_detached = apply_detached
            Writer.encode_records = timer.wrap("encode_records", saved[1])
            pipeline.Carried.after = timer.wrap("carried_after", saved[2])
            Writer.committed = timer.wrap("committed", saved[3])
            pipeline._fill_lookups = timer.wrap("fill_lookups", saved[4])
            pipeline._fill_member_cache = timer.wrap("fill_member_cache", saved[5])
            Ledger._apply_batch = timer.wrap("serial_batch", saved[6])
            pipeline.Carried.read = classmethod(timer.wrap("carried_read", saved[7].__func__))
            main_cpu = 0.0
            process_started, wall_started = time.process_time(), time.perf_counter()
            faults_started = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            process_faults_started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            breakdown.perf_command(perf_control, "enable")
            results = ledger.purchase_batches(iter(batches))
            applied = 0
            while True:
                started = time.thread_time()
                result = next(results, None)
                main_cpu += time.thread_time() - started
                if result is None:
                    break
                applied += result.applied
            ledger.sync()
            breakdown.perf_command(perf_control, "disable")
            main_faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults_started
            process_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - process_faults_started
            process_cpu, wall = time.process_time() - process_started, time.perf_counter() - wall_started
        finally:
            (pipeline._apply_detached, Writer.encode_records, pipeline.Carried.after, Writer.committed,
             pipeline._fill_lookups, pipeline._fill_member_cache, Ledger._apply_batch) = saved[:7]
            pipeline.Carried.read = saved[7]
            ledger.close()
    line = {"workload": workload_name, "count": count, "applied": applied, "batches": len(batches),
            "detached": detached[0], "load_average": os.getloadavg(), "wall_s": round(wall, 3),
            "process_cpu_s": round(process_cpu, 3), "main_total_cpu_s": round(main_cpu, 3),
            "writer_thread_cpu_s": round(process_cpu - main_cpu, 3),
            # Minor page faults (fresh pages the kernel zeroes): the main thread's, and the process's.
            "main_minor_faults": main_faults, "process_minor_faults": process_faults}
    for name in timer.cpu:
        line[name + "_cpu_s"] = round(timer.cpu[name], 3)
    line["main_rest_cpu_s"] = round(main_cpu - sum(timer.cpu.values()), 3)
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=("backfill-seq", "backfill-engaged"))
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
