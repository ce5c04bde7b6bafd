"""The gil_probe method applied to the issue-15 prototype (one GIL release per batch).

    python benchmarks/nogil_put/build.py
    python benchmarks/nogil_put/probe.py --count 1000000

Writes `--count` records (the records of benchmarks/gil_probe.py) into one sub-database:
with py-lmdb's `putmulti` alone, with the prototype's `Writer.put` alone (the GIL released
once around the whole loop of `mdb_put`) and beside a thread holding the GIL (`sorted` of
2 M ints, as an engine batch would). Then a two-thread pipeline: the main thread does
GIL-holding work per batch while a writer thread begins, puts and commits the previous
batch, against the same work done serially. Reads everything back to check it.
"""

import argparse
import json
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time

import lmdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _nogil_put  # noqa: E402  (built by build.py next to this file)


def fresh(directory):
    shutil.rmtree(directory, ignore_errors=True)
    env = lmdb.open(directory, map_size=1 << 31, sync=False, metasync=False, max_dbs=4)
    return env, env.open_db(b"records")


def with_putmulti(directory, items):
    env, db = fresh(directory)
    started = time.perf_counter()
    with env.begin(write=True, db=db) as txn:
        txn.cursor().putmulti(items, append=True)
    elapsed = time.perf_counter() - started
    env.close()
    return elapsed


def with_writer(directory, items, check=False):
    env, db = fresh(directory)
    with env.begin(write=True, db=db) as txn:
        writer = _nogil_put.Writer(txn, env)
        packed = _nogil_put.pack([(writer.dbi(b"records"), _nogil_put.MDB_APPEND, k, v) for k, v in items])
        cursor = txn.cursor()
        started = time.perf_counter()
        _, loop = writer.put(packed)
        elapsed = time.perf_counter() - started
        if check:   # the cursor opened before the puts sees them (mutations was bumped)
            assert cursor.first() and cursor.key() == items[0][0]
    if check:
        with env.begin(db=db) as txn:
            assert list(txn.cursor()) == items, "read-back differs"
    env.close()
    return elapsed, loop


def pipeline(directory, batches, work, overlapped):
    """Per batch: `work()` (GIL held) then write it in its own transaction (begin, one
    Writer.put, commit); overlapped: batch k is written by a writer thread while the main
    thread works on batch k+1."""
    env, db = fresh(directory)
    with env.begin(write=True) as txn:
        dbi = _nogil_put.Writer(txn, env).dbi(b"records")
    packed = [_nogil_put.pack([(dbi, _nogil_put.MDB_APPEND, k, v) for k, v in batch]) for batch in batches]

    def write(buffer):
        with env.begin(write=True, db=db) as txn:
            _nogil_put.Writer(txn, env).put(buffer)

    started = time.perf_counter()
    if not overlapped:
        for buffer in packed:
            work()
            write(buffer)
    else:
        handoff = queue.Queue(maxsize=1)

        def writer_thread():
            while (buffer := handoff.get()) is not None:
                write(buffer)

        thread = threading.Thread(target=writer_thread)
        thread.start()
        for buffer in packed:
            work()
            handoff.put(buffer)
        handoff.put(None)
        thread.join()
    elapsed = time.perf_counter() - started
    with env.begin(db=db) as txn:
        assert txn.stat(db)["entries"] == sum(len(b) for b in batches)
    env.close()
    return elapsed


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def engine_stand_ins(seconds):
    """Two stand-ins for one engine batch of `seconds` of GIL-holding C code: in ~1 ms
    stretches (an engine that lets go of the GIL every ~1 ms, as the Cython engine would
    have to, e.g. `with nogil: pass` every few hundred purchases), and in one stretch (the
    engine as it is: the GIL held for the whole batch)."""
    chunk = list(range(25_000))
    random.Random(2).shuffle(chunk)
    chunk_s = sorted(timed(lambda: sorted(chunk)) for _ in range(21))[10]
    chunks = max(1, round(seconds / chunk_s))
    whole = chunk * chunks

    def yielding():
        for _ in range(chunks):
            sorted(chunk)

    def holding():
        sorted(whole)
    return yielding, holding, chunk_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--engine-ratio", type=float, default=2.56 / 1.79,
                        help="engine CPU per batch over LMDB CPU per batch (the seq breakdown's)")
    parser.add_argument("--switch-interval", type=float, default=sys.getswitchinterval(),
                        help="sys.setswitchinterval for the pipelines: how long a thread that wants "
                             "the GIL waits before it asks the holder to let go")
    arguments = parser.parse_args(argv)
    items = [(b"k%012d" % index, os.urandom(60)) for index in range(arguments.count)]
    busy = list(range(2_000_000))
    random.Random(1).shuffle(busy)
    stop = threading.Event()
    sorts = []

    def hold_the_gil():
        while not stop.is_set():
            started = time.perf_counter()
            sorted(busy)
            sorts.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory(prefix="pointsledger-nogil-put-") as scratch:
        path = os.path.join(scratch, "env")
        putmulti_alone = with_putmulti(path, items)
        writer_alone, writer_alone_loop = with_writer(path, items, check=True)
        holder = threading.Thread(target=hold_the_gil)
        holder.start()
        try:
            writer_beside, writer_beside_loop = with_writer(path, items)
        finally:
            stop.set()
            holder.join()
        per_batch = arguments.count // arguments.batches
        batches = [items[i:i + per_batch] for i in range(0, per_batch * arguments.batches, per_batch)]
        write_s = pipeline(path, batches, lambda: None, overlapped=False) / len(batches)
        yielding, holding, chunk_s = engine_stand_ins(write_s * arguments.engine_ratio)
        yielding_s, holding_s = timed(yielding), timed(holding)
        sys.setswitchinterval(arguments.switch_interval)
        serial = pipeline(path, batches, yielding, overlapped=False)
        overlapped = pipeline(path, batches, yielding, overlapped=True)
        overlapped_holding = pipeline(path, batches, holding, overlapped=True)
    print(json.dumps({
        "workload": "nogil-put-probe", "count": arguments.count, "lmdb": lmdb.__version__,
        "putmulti_alone_s": round(putmulti_alone, 4), "writer_alone_s": round(writer_alone, 4),
        "writer_beside_gil_holder_s": round(writer_beside, 4),
        "slowdown": round(writer_beside / writer_alone, 2), "holder_sorts": len(sorts),
        "writer_alone_loop_s": round(writer_alone_loop, 4), "writer_beside_loop_s": round(writer_beside_loop, 4),
        "pipeline_batches": arguments.batches, "write_per_batch_s": round(write_s, 4),
        "engine_per_batch_s": [round(yielding_s, 4), round(holding_s, 4)], "gil_stretch_s": round(chunk_s, 5),
        "pipeline_serial_s": round(serial, 4), "pipeline_overlapped_s": round(overlapped, 4),
        "pipeline_overlapped_engine_holding_gil_s": round(overlapped_holding, 4),
        "speedup": round(serial / overlapped, 2), "switch_interval_s": arguments.switch_interval,
        "load_average": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
