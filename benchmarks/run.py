"""Run the backfill benchmarks of SPEC §13 and the ratios between them, in one command.

    python benchmarks/run.py                      # 1 M purchases (100 k for the pure-Python engine)
    python benchmarks/run.py --count 10000000 --workloads backfill-seq,ceiling-seq --engines cython
    python benchmarks/run.py --count 1000000 --workloads backfill-seq,backfill-rand,ceiling \
        --engines cython --rounds 3               # SPEC §13's medians of three runs
    python benchmarks/run.py --smoke              # what CI runs: small, checks ratios (smoke.py)

Each workload runs in its own process (benchmarks/backfill.py), so its peak RSS
is its own, and prints its JSON line as it finishes. A last JSON line
(workload "summary") gives the ratios measured in this run: the Cython engine's
speedup over the pure-Python one, and each Cython backfill's share of its
ceiling, in wall time and in CPU time (`cpu_` keys). Only ratios are checked,
and only with --smoke: absolute rates drift on shared machines, ratios measured
side by side much less, and CPU-time ratios least (another process's load
stretches wall time, not this process's CPU time).

--smoke runs benchmarks/smoke.py instead: small rounds, each ratio's two sides
measured seconds apart, medians checked against floors (exit 1 below one).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import backfill
import smoke

HERE = os.path.dirname(os.path.abspath(__file__))
BACKFILL_SCRIPT = os.path.join(HERE, "backfill.py")

# The pure-Python engine is run on fewer purchases: rates are compared, not totals.
COUNT_DEFAULT = 1_000_000
PYTHON_COUNT_DEFAULT = 100_000
WORKLOAD_GROUPS = {"ceiling": ("ceiling-seq", "ceiling-rand")}


def split_list(text, allowed, groups=None):
    names = []
    for name in text.split(","):
        name = name.strip()
        for expanded in (groups or {}).get(name, (name,)):
            if expanded not in allowed:
                raise SystemExit(f"unknown name {expanded!r}; choose from {', '.join(allowed)}")
            if expanded not in names:
                names.append(expanded)
    return names


def planned_runs(workloads, engines, count, python_count):
    """[(workload, engine or None, count)]: backfills per engine, each ceiling once, right after
    the backfill it bounds (so the two sides of a ratio are measured seconds apart)."""
    runs = []
    ceilings = [name for name in workloads if name.startswith("ceiling-")]
    for workload_name in workloads:
        if workload_name.startswith("ceiling-"):
            if "backfill-" + workload_name[len("ceiling-"):] not in workloads:
                runs.append((workload_name, None, count))
            continue
        for engine in engines:
            runs.append((workload_name, engine, python_count if engine == "python" else count))
        ceiling = "ceiling-" + workload_name[len("backfill-"):]
        if ceiling in ceilings:
            runs.append((ceiling, None, count))
    return runs


def round_order(runs, round_index):
    """The runs of one round: as planned in odd rounds; in even rounds each pair of a backfill and
    its ceiling swapped, and the pairs in reverse, so a machine that speeds up or slows down over
    the run does not always favour the same side of a ratio."""
    if round_index % 2 == 0:
        return list(runs)
    groups = []
    for run in runs:
        if run[0].startswith("ceiling-") and groups and groups[-1][-1][0] == "backfill-" + run[0][len("ceiling-"):]:
            groups[-1].insert(0, run)
        else:
            groups.append([run])
    return [run for group in reversed(groups) for run in group]


def run_one(workload_name, engine, count, arguments, source_engine):
    command = [sys.executable, BACKFILL_SCRIPT, workload_name, "--count", str(count),
               "--batch-size", str(arguments.batch_size), "--seed", str(arguments.seed)]
    command += ["--engine", engine] if engine else ["--source-engine", source_engine]
    if arguments.scratch_dir:
        command += ["--scratch-dir", arguments.scratch_dir]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # stderr passes through
    if completed.returncode != 0:
        return None
    return json.loads(completed.stdout.strip().splitlines()[-1])


def ratio(numerator, denominator, rate="rate"):
    if numerator is None or denominator is None:
        return None
    return round(numerator[rate] / denominator[rate], 3)


RATIOS = {  # name: (numerator, denominator), each (workload, engine)
    "speedup_cython_over_python_seq": (("backfill-seq", "cython"), ("backfill-seq", "python")),
    "speedup_cython_over_python_rand": (("backfill-rand", "cython"), ("backfill-rand", "python")),
    "backfill_seq_over_ceiling_seq": (("backfill-seq", "cython"), ("ceiling-seq", "lmdb")),
    "backfill_rand_over_ceiling_rand": (("backfill-rand", "cython"), ("ceiling-rand", "lmdb")),
    # Issue 11: all five engagement rules on, against none, same purchases and engine.
    "engaged_over_backfill_seq": (("backfill-engaged", "cython"), ("backfill-seq", "cython")),
}


def summarize(results):
    """The ratios of this run, keyed by what they compare: wall time, then CPU time (cpu_)."""
    summary = {"workload": "summary"}
    for name, (numerator, denominator) in RATIOS.items():
        summary[name] = ratio(results.get(numerator), results.get(denominator))
    for name, (numerator, denominator) in RATIOS.items():
        summary["cpu_" + name] = ratio(results.get(numerator), results.get(denominator), rate="cpu_rate")
    summary["machine"] = backfill.machine_description()
    return summary


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=None,
                        help=f"purchases per workload (default {COUNT_DEFAULT:,})")
    parser.add_argument("--python-count", type=int, default=None,
                        help=f"purchases for the pure-Python engine (default {PYTHON_COUNT_DEFAULT:,})")
    parser.add_argument("--workloads", default="backfill-seq,backfill-rand,ceiling",
                        help="comma-separated: backfill-seq, backfill-rand, ceiling-seq, ceiling-rand, "
                             "ceiling (both), backfill-engaged (the engagement rules on)")
    parser.add_argument("--engines", default="cython,python", help="comma-separated: cython, python")
    parser.add_argument("--batch-size", type=int, default=backfill.BATCH_SIZE_DEFAULT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scratch-dir", default=None, help="where the scratch stores go")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run everything this many times, alternating the order; the summary gives "
                             "each round's ratios and their medians (SPEC §13: median of three runs)")
    parser.add_argument("--smoke", action="store_true",
                        help="what CI runs (benchmarks/smoke.py): ratios of rounds measured side by side; "
                             "exit 1 when one falls below its floor")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.smoke:
        return 1 if smoke.run_smoke(arguments.batch_size, arguments.seed, arguments.scratch_dir) else 0
    count = arguments.count or COUNT_DEFAULT
    python_count = arguments.python_count or PYTHON_COUNT_DEFAULT
    workloads = split_list(arguments.workloads, backfill.WORKLOADS, WORKLOAD_GROUPS)
    engines = split_list(arguments.engines, backfill.ENGINES)
    # A ceiling copies what the fastest engine asked for writes; both write the same bytes.
    source_engine = "cython" if "cython" in engines else "python"

    failed_runs = []
    summaries = []
    for round_index in range(arguments.rounds):
        results = {}
        for workload_name, engine, run_count in round_order(
                planned_runs(workloads, engines, count, python_count), round_index):
            line = run_one(workload_name, engine, run_count, arguments, source_engine)
            if line is None:
                failed_runs.append(f"{workload_name} ({engine or 'lmdb'}) failed")
                continue
            if arguments.rounds > 1:
                line["round"] = round_index + 1
            print(json.dumps(line), flush=True)
            results[(line["workload"], line["engine"])] = line
        summaries.append(summarize(results))

    summary = summaries[0] if len(summaries) == 1 else median_summary(summaries)
    failures = failed_runs
    summary["failures"] = failures
    print(json.dumps(summary), flush=True)
    return 1 if failures else 0


def median_summary(summaries):
    """Each ratio's median over the rounds, with the rounds' own values under `rounds_<name>`."""
    summary = {"workload": "summary", "rounds": len(summaries)}
    for name in summaries[0]:
        if name in ("workload", "machine"):
            continue
        values = [each[name] for each in summaries if each.get(name) is not None]
        summary[name] = round(statistics.median(values), 3) if values else None
        if values:  # a ratio this run did not measure stays a bare None
            summary["rounds_" + name] = [each.get(name) for each in summaries]
    summary["machine"] = summaries[0]["machine"]
    return summary


if __name__ == "__main__":
    sys.exit(main())
