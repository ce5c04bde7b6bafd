"""The what-if benchmark (issue 13): simulate over a backfill-seq store, against the backfill rate.

    python benchmarks/simulate.py --count 1000000 [--engine cython] [--rounds 1]

Each round: the backfill-seq workload of backfill.py (timed, as there: the
purchases() calls and the final sync), then `Ledger.simulate` over the whole
period the store covers (2024-01-01 up to 2026-01-01, so every purchase is
replayed and counted) under two drafts:
- `simulate-same-tiers`: electronics at 4× instead of 2× (the tier thresholds
  are the recorded ones: one replay);
- `simulate-new-threshold`: silver from 20,000 instead of 50,000 cents (other
  thresholds than the recorded ones: a second replay gives the recorded tiers).
Each simulate runs in a process of its own (peak RSS: the simulation's alone).
Prints one JSON line per measure (rate = purchases replayed per second, wall and
CPU time, peak RSS, the 1-minute load average after it) and a summary line with each
simulate's rate over the backfill-seq rate of its round (`cpu_` keys: CPU time) and
their medians over the rounds.
"""

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import backfill  # noqa: E402
import workload  # noqa: E402
from pointsledger import Ledger  # noqa: E402

FROM_S = workload.START_TIME_S  # 2024-01-01
TO_S = workload.START_TIME_S + workload.SPAN_S  # 2026-01-01


def drafts():
    same_tiers = backfill.backfill_program()
    same_tiers["category_multipliers"] = dict(same_tiers["category_multipliers"], electronics=4)
    new_threshold = copy.deepcopy(backfill.backfill_program())
    new_threshold["tiers"][1]["min_spend_minor"] = 20_000
    return {"simulate-same-tiers": same_tiers, "simulate-new-threshold": new_threshold}


def line(name, engine, count, clock, **extra):
    return {"workload": name, "engine": engine, "count": count, "seconds": round(clock.seconds, 3),
            "rate": round(count / clock.seconds, 1), "cpu_seconds": round(clock.cpu_seconds, 3),
            "cpu_rate": round(count / max(clock.cpu_seconds, 1e-9), 1),
            "peak_rss_mib": round(peak_rss_mib(), 1), **extra}


def peak_rss_mib():
    """VmHWM: this process's own peak (ru_maxrss would carry over the parent's across fork and exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for text in status:
            if text.startswith("VmHWM:"):
                return int(text.split()[1]) / 1024
    return backfill.peak_rss_mib()


def replay(directory, engine, name, count, scratch_dir):
    """One simulate, in this (fresh) process: its JSON line, peak RSS its own."""
    with Ledger(directory, engine=engine, readonly=True) as ledger:
        clock = backfill.Clock()
        with clock:
            result = ledger.simulate(drafts()[name], FROM_S, TO_S, scratch_dir=scratch_dir)
    if result.purchases != count:
        raise RuntimeError(f"{name}: {result.purchases} purchases counted, not {count}")
    return line(name, engine, count, clock, difference=result.total.difference)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=backfill.ENGINES, default="cython")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of (backfill-seq, then each draft's simulate over its store)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scratch-dir", default=None, help="where the ledger and the simulation scratch go")
    parser.add_argument("--replay", nargs=2, metavar=("DIRECTORY", "DRAFT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    count, engine = arguments.count, arguments.engine
    if arguments.replay:
        directory, name = arguments.replay
        print(json.dumps(replay(directory, engine, name, count, arguments.scratch_dir)), flush=True)
        return
    summary = {"workload": "simulate-summary", "engine": engine, "count": count}
    with tempfile.TemporaryDirectory(prefix="pointsledger-bench-", dir=arguments.scratch_dir) as scratch:
        for round_number in range(arguments.rounds):
            # Each round its own backfill, then the simulates over its store: the ratios of
            # a round are of measures taken side by side (A/B alternated, not one A for all).
            directory = os.path.join(scratch, f"ledger-{round_number}")
            run = backfill.run_backfill(directory, engine, count, "seq", backfill.BATCH_SIZE_DEFAULT, arguments.seed)
            clock = backfill.Clock()
            clock.seconds, clock.cpu_seconds = run["seconds"], run["cpu_seconds"]
            base = line("backfill-seq", engine, count, clock, load=os.getloadavg()[0])
            print(json.dumps(base), flush=True)
            for name in drafts():
                # Its own process: the peak RSS is the simulation's alone.
                completed = subprocess.run(
                    [sys.executable, __file__, "--replay", directory, name, "--count", str(count),
                     "--engine", engine, "--scratch-dir", scratch],
                    stdout=subprocess.PIPE, text=True, check=True)
                measured = json.loads(completed.stdout.strip().splitlines()[-1])
                measured["load"] = os.getloadavg()[0]
                print(json.dumps(measured), flush=True)
                for key in ("rate", "cpu_rate"):
                    prefix = "" if key == "rate" else "cpu_"
                    summary.setdefault(f"{prefix}{name}_over_backfill_seq", []).append(
                        round(measured[key] / base[key], 3))
            shutil.rmtree(directory)
    for key in [key for key in summary if key.endswith("_over_backfill_seq")]:
        summary[f"median_{key}"] = round(statistics.median(summary[key]), 3)
    summary["machine"] = backfill.machine_description()
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
