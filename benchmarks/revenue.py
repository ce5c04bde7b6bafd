"""Revenue (SPEC §19, issue 14): what the lots by issue month cost, and how fast `revenue` answers.

    # backfill-seq of this tree against another checkout (e.g. main), alternating, in one run:
    PYTHONPATH=src python benchmarks/revenue.py ab --baseline /path/to/main --count 1000000 --rounds 3

    # revenue() over a large store (backfill, then redemptions and an expiry run, untimed):
    PYTHONPATH=src python benchmarks/revenue.py report --count 10000000

Each prints one JSON line per measurement and a summary line.

ab: each round runs `benchmarks/backfill.py backfill-seq --engine cython` of this tree, then
of the baseline tree (the baseline first in odd rounds), each in its own process with its own
PYTHONPATH, and takes the process's CPU rate (load from other processes stretches wall time,
not CPU time). The summary has the median of this/baseline over the rounds.

report: the store is backfilled (the seeded workload of workload.py, relaxed sync), then 1 in
50 members redeems a tenth of its points on each of 24 days spread over the two years, and an
expiry run at the end (so the cohort counters have debit rows across months); one estimate.
Then `revenue` over the whole range is called --calls times for each cohort kind; the line
gives the median and the slowest, in milliseconds, and the counter rows read.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def backfill_rate(tree, count, scratch):
    environment = dict(os.environ, PYTHONPATH=os.path.join(tree, "src") + os.pathsep + os.path.join(tree, "benchmarks"))
    environment.pop("POINTSLEDGER_PURE_PYTHON", None)
    output = subprocess.run(
        [sys.executable, os.path.join(tree, "benchmarks", "backfill.py"), "backfill-seq", "--engine", "cython",
         "--count", str(count), "--scratch-dir", scratch],
        env=environment, check=True, stdout=subprocess.PIPE, text=True, cwd=tree,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_ab(arguments):
    ratios = []
    with tempfile.TemporaryDirectory(dir=arguments.scratch_dir) as scratch:
        for round_index in range(arguments.rounds):
            trees = [("this", ROOT), ("baseline", arguments.baseline)]
            if round_index % 2:
                trees.reverse()
            rates = {}
            for name, tree in trees:
                line = backfill_rate(tree, arguments.count, scratch)
                rates[name] = line["cpu_rate"]
                print(json.dumps({"workload": "backfill-seq", "tree": name, "round": round_index + 1,
                                  "count": arguments.count, "cpu_rate": line["cpu_rate"], "rate": line["rate"],
                                  "bytes_per_purchase": line.get("bytes_per_purchase")}), flush=True)
            ratios.append(rates["this"] / rates["baseline"])
    print(json.dumps({"workload": "ab-summary", "count": arguments.count, "rounds": arguments.rounds,
                      "this_over_baseline": [round(each, 4) for each in ratios],
                      "median": round(statistics.median(ratios), 4)}), flush=True)


def run_report(arguments):
    sys.path.insert(0, HERE)
    import backfill
    import workload
    from pointsledger import Ledger, operations
    from pointsledger.store import format as fmt
    from pointsledger.errors import NotFound

    with tempfile.TemporaryDirectory(dir=arguments.scratch_dir) as scratch:
        path = os.path.join(scratch, "ledger")
        started = time.perf_counter()
        backfill.run_backfill(path, "cython", arguments.count, "seq", backfill.BATCH_SIZE_DEFAULT, 1)
        built_s = time.perf_counter() - started
        with Ledger(path, sync=False) as ledger:
            members = [workload.member_id(number) for number in range(0, workload.MEMBERS_DEFAULT, 50)]
            span = 2 * 365 * 86_400
            for day_index in range(24):
                time_s = workload.START_TIME_S + (day_index + 1) * span // 25
                redemptions = []
                for member in members:
                    try:
                        available = ledger.balance(member, time_s).available
                    except NotFound:  # a smaller --count than the workload's members
                        continue
                    if available >= 10:
                        redemptions.append((f"r-{day_index}-{member}", member, available // 10, time_s))
                ledger.store.write(lambda writer, redemptions=redemptions: [
                    operations.redeem(writer, *redemption) for redemption in redemptions])
            ledger.expire(workload.START_TIME_S + span + 400 * 86_400)
            ledger.set_redemption_estimate("estimate", 946_684_800, "0.8")
            ledger.sync()
        with Ledger(path, readonly=True) as ledger:
            with ledger.store.read() as txn:
                rows = txn.stat(ledger.store.dbs[fmt.DB_COHORTS])["entries"]
            first = (workload.START_TIME_S // 86_400) * 86_400 - 366 * 86_400
            last = first + 5 * 366 * 86_400
            for cohort in ("year", "quarter", "month"):
                times = []
                for _ in range(arguments.calls):
                    started = time.perf_counter()
                    report = ledger.revenue(first, last, cohort)
                    times.append((time.perf_counter() - started) * 1000)
                print(json.dumps({"workload": "revenue", "cohort": cohort, "count": arguments.count,
                                  "counter_rows": rows, "cohorts": len(report.cohorts),
                                  "median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2),
                                  "store_built_s": round(built_s, 1)}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["ab", "report"])
    parser.add_argument("--baseline", help="ab: the root of the checkout to compare with (its extension built)")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--scratch-dir", default=None)
    arguments = parser.parse_args(argv)
    if arguments.mode == "ab":
        if not arguments.baseline:
            parser.error("ab needs --baseline")
        run_ab(arguments)
    else:
        run_report(arguments)


if __name__ == "__main__":
    main()
