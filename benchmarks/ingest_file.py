"""`pointsledger ingest` of a backfill file (SPEC §13, issue 5 targets), one command.

    python benchmarks/ingest_file.py                        # 2 M rows, Parquet and CSV
    python benchmarks/ingest_file.py --count 10000000 --formats parquet

Writes the seeded backfill workload (benchmarks/workload.py, order ids
sequential) to a Parquet file and a CSV file, then times the real command,
`python -m pointsledger --data DIR ingest FILE`, in its own process: wall time
from start to exit (file reading, conversion, the ledger, the final sync and
the interpreter's start included) and that process's peak RSS. For the ratio
it also runs the embedded backfill of the same rows (benchmarks/backfill.py,
columns already in memory, only the ledger calls timed) in the same run.

Prints one JSON line per result, then a summary line with the ratios and the
targets: Parquet >= 70 % of the embedded backfill rate with peak RSS <= 1 GiB
at 10 M rows; CSV >= 300,000 rows/s.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

import backfill
import workload

HERE = os.path.dirname(os.path.abspath(__file__))
COUNT_DEFAULT = 2_000_000
WRITE_BATCH_ROWS = 262_144  # rows per Parquet row group / CSV write
PARQUET_RATIO_TARGET = 0.70
CSV_RATE_TARGET = 300_000
PEAK_RSS_TARGET_MIB = 1024


def write_files(directory, count, order_ids, formats):
    """The workload as Parquet and/or CSV files; returns {format: path}."""
    schema = pa.schema([("order_id", pa.string()), ("member_id", pa.string()), ("amount_minor", pa.int64()),
                        ("category", pa.string()), ("time_s", pa.int64())])
    paths = {name: os.path.join(directory, f"backfill-{order_ids}.{name}") for name in formats}
    parquet_writer = pa_parquet.ParquetWriter(paths["parquet"], schema) if "parquet" in paths else None
    csv_writer = pa_csv.CSVWriter(paths["csv"], schema) if "csv" in paths else None
    try:
        for batch in workload.iter_backfill_batches(count, WRITE_BATCH_ROWS, order_ids=order_ids):
            table = pa.table([batch[name] for name in workload.COLUMNS], schema=schema)
            if parquet_writer is not None:
                parquet_writer.write_table(table)
            if csv_writer is not None:
                csv_writer.write_table(table)
    finally:
        if parquet_writer is not None:
            parquet_writer.close()
        if csv_writer is not None:
            csv_writer.close()
    return paths


def run_measured(command, environment=None):
    """(seconds, peak RSS MiB, stdout, {peak RssAnon, RssFile MiB}) of a child process.

    Peak RSS is the kernel's (ru_maxrss). RssAnon (memory the process holds) and
    RssFile (file pages mapped into it: the LMDB map, page cache the kernel can
    drop) are sampled from /proc every 50 ms, so their peaks are close, not exact.
    """
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=environment)
    peaks = {"RssAnon": 0, "RssFile": 0}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(child.pid, peaks, stop), daemon=True)
    sampler.start()
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 3):  # 3: finished with rejected rows
        raise RuntimeError(f"{command} exited {child.returncode}")
    return seconds, usage.ru_maxrss / 1024, output.decode(), {
        f"peak_{name.lower()}_mib": round(value / 1024, 1) for name, value in peaks.items()}


def sample_rss(pid, peaks, stop):
    while not stop.wait(0.05):
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    name, _, value = line.partition(":")
                    if name in peaks:
                        peaks[name] = max(peaks[name], int(value.split()[0]))
        except (OSError, ValueError):
            return


def time_ingest(path, ledger_directory, count, batch_size):
    command = [sys.executable, "-m", "pointsledger", "--data", ledger_directory, "ingest", path,
               "--json", "--progress", "none", "--batch-size", str(batch_size)]
    seconds, peak_rss_mib, output, peaks = run_measured(command)
    summary = json.loads(output.strip().splitlines()[-1])
    if summary["applied"] != count:
        raise RuntimeError(f"{path}: {summary['applied']} applied of {count}")
    return seconds, peak_rss_mib, summary, peaks


def time_backfill(count, order_ids, batch_size, scratch):
    command = [sys.executable, os.path.join(HERE, "backfill.py"), f"backfill-{order_ids}", "--count", str(count),
               "--batch-size", str(batch_size)]
    if scratch:
        command += ["--scratch-dir", scratch]
    _, _, output, peaks = run_measured(command)
    return dict(json.loads(output.strip().splitlines()[-1]), **peaks)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT_DEFAULT)
    parser.add_argument("--order-ids", choices=["seq", "rand"], default="seq")
    parser.add_argument("--formats", default="parquet,csv")
    parser.add_argument("--batch-size", type=int, default=backfill.BATCH_SIZE_DEFAULT)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run backfill and ingests this many times, interleaved; the summary takes medians")
    parser.add_argument("--scratch-dir", default=None, help="where files and ledgers go (default: temp)")
    parser.add_argument("--no-backfill", action="store_true", help="skip the embedded backfill (no ratio)")
    arguments = parser.parse_args(argv)
    formats = [name.strip() for name in arguments.formats.split(",") if name.strip()]

    results = {name: [] for name in formats}
    backfill_lines = []
    engine = _engine()
    with tempfile.TemporaryDirectory(prefix="pointsledger-ingest-bench-", dir=arguments.scratch_dir) as scratch:
        started = time.perf_counter()
        paths = write_files(scratch, arguments.count, arguments.order_ids, formats)
        print(json.dumps({"workload": "write-files", "count": arguments.count,
                          "seconds": round(time.perf_counter() - started, 2),
                          "file_bytes": {name: os.path.getsize(path) for name, path in paths.items()}}), flush=True)
        for _ in range(arguments.repeat):
            if not arguments.no_backfill:
                backfill_lines.append(time_backfill(arguments.count, arguments.order_ids, arguments.batch_size,
                                                    scratch))
                print(json.dumps(backfill_lines[-1]), flush=True)
            for name in formats:
                line = ingest_line(name, paths[name], scratch, arguments, engine)
                results[name].append(line)
                print(json.dumps(line), flush=True)
    print(json.dumps(summarize(results, backfill_lines)), flush=True)


def ingest_line(name, path, scratch, arguments, engine):
    ledger_directory = os.path.join(scratch, f"ledger-{name}")
    seconds, peak_rss_mib, summary, peaks = time_ingest(path, ledger_directory, arguments.count, arguments.batch_size)
    shutil.rmtree(ledger_directory)
    return {
        "workload": f"ingest-{name}-{arguments.order_ids}", "engine": engine, "count": arguments.count,
        "seconds": round(seconds, 3), "rate": round(arguments.count / seconds, 1),
        "rate_reported_by_ingest": summary["rows_per_s"], "peak_rss_mib": round(peak_rss_mib, 1), **peaks,
        "file_bytes": os.path.getsize(path), "batch_size": arguments.batch_size,
        "machine": backfill.machine_description(),
    }


def median_rate(lines):
    return statistics.median(line["rate"] for line in lines) if lines else None


def summarize(results, backfill_lines):
    """Median rates of the runs; ratios of medians, measured in this run."""
    summary = {"workload": "summary", "runs": len(backfill_lines) or len(next(iter(results.values()), [])),
               "machine": backfill.machine_description()}
    backfill_rate = median_rate(backfill_lines)
    if backfill_rate:
        summary["backfill_rate"] = backfill_rate
    if results.get("parquet"):
        parquet_rate = median_rate(results["parquet"])
        summary["parquet_rate"] = parquet_rate
        summary["parquet_peak_rss_mib"] = max(line["peak_rss_mib"] for line in results["parquet"])
        summary["peak_rss_target_mib"] = PEAK_RSS_TARGET_MIB
        if backfill_rate:
            ratio = parquet_rate / backfill_rate
            summary["parquet_over_backfill"] = round(ratio, 3)
            summary["parquet_ratio_target"] = PARQUET_RATIO_TARGET
            summary["parquet_ratio_met"] = ratio >= PARQUET_RATIO_TARGET
    if results.get("csv"):
        csv_rate = median_rate(results["csv"])
        summary["csv_rate"] = csv_rate
        summary["csv_rate_target"] = CSV_RATE_TARGET
        summary["csv_rate_met"] = csv_rate >= CSV_RATE_TARGET
        if backfill_rate:
            summary["csv_over_backfill"] = round(csv_rate / backfill_rate, 3)
    return summary


def _engine():
    return subprocess.run([sys.executable, "-c", "import pointsledger; print(pointsledger.ENGINE)"],
                          stdout=subprocess.PIPE, text=True).stdout.strip()


if __name__ == "__main__":
    main()
