"""Can a writer thread's putmulti overlap with an engine that holds the GIL? (issue 15)

    python benchmarks/gil_probe.py --count 300000

py-lmdb's `putmulti` takes each (key, value) from its iterator holding the GIL and
releases the GIL around each `mdb_cursor_put` only. The Cython engine holds the GIL
for a whole batch (it works on Python objects: ids, dicts, member records). This
writes `--count` records with one `putmulti` (appended, relaxed sync) alone, then
again while another thread runs C code that holds the GIL for long stretches
(`sorted` of a large list, standing in for an engine batch), and prints both times.
If the two could share the cores, the second would take about as long as the first.
"""

import argparse
import json
import os
import random
import shutil
import tempfile
import threading
import time

import lmdb


def put_all(directory, items):
    shutil.rmtree(directory, ignore_errors=True)
    env = lmdb.open(directory, map_size=1 << 30, sync=False, metasync=False)
    try:
        started = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(items, append=True)
        return time.perf_counter() - started
    finally:
        env.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300_000)
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

    with tempfile.TemporaryDirectory(prefix="pointsledger-gil-probe-") as scratch:
        alone = put_all(os.path.join(scratch, "alone"), items)
        holder = threading.Thread(target=hold_the_gil)
        holder.start()
        try:
            beside = put_all(os.path.join(scratch, "beside"), items)
        finally:
            stop.set()
            holder.join()
    print(json.dumps({"workload": "gil-probe", "count": arguments.count, "putmulti_alone_s": round(alone, 4),
                      "putmulti_beside_gil_holder_s": round(beside, 4), "slowdown": round(beside / alone, 1),
                      "holder_sorts": len(sorts), "load_average": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
