"""bench: a small embedded backfill benchmark (the suite is benchmarks/run.py)."""

import os
import subprocess
import sys
import tempfile
import time

from .. import limits, program
from ..errors import LedgerError
from ..ledger import Ledger
from .common import EXIT_OK
from .output import print_json


def cmd_bench(arguments):
    """A small embedded backfill, honest about what it ran (the full suite is benchmarks/run.py)."""
    suite = find_benchmarks()
    if arguments.suite:
        if suite is None:
            raise LedgerError("benchmarks/run.py is not here: the suite ships with the source, not the package")
        extra = arguments.suite_arguments[1:] if arguments.suite_arguments[:1] == ["--"] else arguments.suite_arguments
        command = [sys.executable, os.path.join(suite, "run.py")] + extra
        return subprocess.run(command).returncode
    generate, label = bench_generator(suite, arguments.order_ids)
    with tempfile.TemporaryDirectory(prefix="pointsledger-bench-", dir=arguments.scratch_dir) as scratch:
        ledger = Ledger(os.path.join(scratch, "ledger"), sync=False, engine=arguments.engine)
        try:
            ledger.set_program(dict(program.EXAMPLE_PROGRAM, effective_from=limits.time_s_min))
            seconds, applied = 0.0, 0
            for batch in generate(arguments.count, arguments.batch_size):
                started = time.perf_counter()
                applied += ledger.purchases(*batch).applied
                seconds += time.perf_counter() - started
            started = time.perf_counter()
            ledger.sync()
            seconds += time.perf_counter() - started
        finally:
            ledger.close()
        store_bytes = os.stat(os.path.join(scratch, "ledger", "data.mdb")).st_blocks * 512
    result = {"workload": label, "engine": ledger.engine_name, "count": arguments.count,
              "applied": applied, "seconds": round(seconds, 4), "rate": round(arguments.count / seconds, 1),
              "bytes_per_purchase": round(store_bytes / arguments.count, 1), "peak_rss_mib": peak_rss_mib(),
              "batch_size": arguments.batch_size}
    if arguments.json:
        print_json(result)
    else:
        print(bench_text(result))
    return EXIT_OK


def bench_text(result):
    return (f"{result['workload']} on the {result['engine']} engine: {result['count']:,} purchases "
            f"({result['applied']:,} applied) in {result['seconds']:,.2f} s = {result['rate']:,.0f} purchases/s; "
            f"{result['bytes_per_purchase']:,.1f} bytes per purchase on disk; peak RSS {result['peak_rss_mib']:,.1f} MiB; "
            f"batches of {result['batch_size']:,}")


def find_benchmarks():
    """benchmarks/ of a source checkout (src/pointsledger/cli/../../../benchmarks), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, "..", "..", "..", "benchmarks"))
    if os.path.exists(os.path.join(candidate, "workload.py")):
        return candidate
    return None


def bench_generator(suite, order_ids):
    """(generate(count, batch_size) -> column tuples, label): the standard workload when it is here."""
    if suite is not None:
        sys.path.insert(0, suite)
        try:
            import workload
        finally:
            sys.path.remove(suite)

        def standard(count, batch_size):
            for batch in workload.iter_backfill_batches(count, batch_size, order_ids=order_ids):
                yield tuple(batch[name] for name in workload.COLUMNS)

        return standard, f"backfill-{order_ids}"
    return builtin_backfill(order_ids), f"builtin-backfill-{order_ids}"


def builtin_backfill(order_ids):
    """A seeded stand-in of the §13 backfill for an installed package: same shape, not the same rows."""
    import numpy as np

    categories = ("grocery", "electronics", "fashion", "home", "beauty", "sports", "toys", "gift_cards")
    weights = (0.30, 0.10, 0.15, 0.12, 0.10, 0.08, 0.08, 0.07)
    members = 100_000

    def generate(count, batch_size):
        rng = np.random.default_rng(1)
        cumulative = np.cumsum(np.arange(1, members + 1, dtype=np.float64) ** -0.7)
        cumulative /= cumulative[-1]
        for start in range(0, count, batch_size):
            rows = min(batch_size, count - start)
            ranks = np.minimum(np.searchsorted(cumulative, rng.random(rows)), members - 1)
            amounts = np.clip(np.rint(rng.lognormal(np.log(3_000), 1.0, rows)), 1, 100_000).astype(np.int64)
            times = 1_704_067_200 + (np.arange(start, start + rows) * (731 * 86_400) // count).astype(np.int64)
            if order_ids == "seq":
                ids = [f"o{index:012d}" for index in range(start, start + rows)]
            else:
                text = rng.bytes(8 * rows).hex()
                ids = [text[at:at + 16] for at in range(0, 16 * rows, 16)]
            yield (ids, [f"m{rank:06d}" for rank in ranks.tolist()], amounts,
                   [categories[code] for code in rng.choice(len(categories), size=rows, p=weights)], times)

    return generate


def peak_rss_mib():
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
