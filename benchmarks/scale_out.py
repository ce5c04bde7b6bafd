"""Scale-out through NATS JetStream (SPEC §18, issue 12): one shard and two shards, against the embedded backfill.

    python benchmarks/scale_out.py                 # 1 M purchases
    python benchmarks/scale_out.py --count 200000

In one run, on the same seeded workload (benchmarks/workload.py, written once to a Parquet file):
1. embedded: the columns in memory into one Ledger, synced per batch (sync=True,
   --batch-size rows a commit); only the ledger calls are timed;
2. one shard: `pointsledger publish FILE --shards 1` into a fresh stream (timed
   apart), then `pointsledger consume --shard 0 --shards 1 --until-caught-up` in its
   own process, timed from start to exit (start-up, fetches, commits synced per
   fetch, acks); --fetch messages of --message-rows purchases per commit;
3. two shards: the same with --shards 2 and both consumers at once.

A real nats-server (JetStream, file store, loopback) is started in a temporary
directory. Prints one JSON line per result, then a summary line with the ratio of
the one-shard rate to the embedded rate (target >= 0.5): `rate` counts the consumer
process's whole life (interpreter start-up, connecting, the last empty fetch that tells
it is caught up); `applying_rate` its time from subscribing to the last commit.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import ingest_file
import workload
from pointsledger import Ledger
from backfill import backfill_program, machine_description

RATIO_TARGET = 0.5


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_broker(directory):
    port = free_port()
    log = open(os.path.join(directory, "nats-server.log"), "wb")
    process = subprocess.Popen([shutil.which("nats-server") or "/usr/sbin/nats-server", "-js", "-sd",
                                os.path.join(directory, "jetstream"), "-a", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nats-server did not start")


def embedded(directory, count, batch_size):
    ledger = Ledger(directory, sync=True)
    try:
        ledger.set_program(backfill_program())
        seconds = 0.0
        for batch in workload.iter_backfill_batches(count, batch_size):
            started = time.perf_counter()
            ledger.purchases(batch["order_ids"], batch["member_ids"], batch["amounts_minor"], batch["categories"],
                             batch["times_s"])
            seconds += time.perf_counter() - started
    finally:
        ledger.close()
    return {"workload": "embedded-synced-per-batch", "count": count, "seconds": round(seconds, 3),
            "rate": round(count / seconds, 1), "batch_size": batch_size}


def pointsledger(*arguments):
    return [sys.executable, "-m", "pointsledger", *arguments]


def set_program(directory):
    with Ledger(directory) as ledger:
        ledger.set_program(backfill_program())


def through_stream(scratch, path, url, stream, shards, count, fetch, message_rows):
    started = time.perf_counter()
    subprocess.run(pointsledger("publish", path, "--nats", url, "--stream", stream, "--shards", str(shards),
                                "--message-rows", str(message_rows), "--quiet", "--json"),
                   check=True, stdout=subprocess.DEVNULL)
    publish_seconds = time.perf_counter() - started
    consumers = []
    for shard in range(shards):
        directory = os.path.join(scratch, f"{stream}-shard-{shard}")
        set_program(directory)
        consumers.append((time.perf_counter(), subprocess.Popen(
            pointsledger("consume", "--nats", url, "--stream", stream, "--shard", str(shard), "--shards", str(shards),
                         "--data", directory, "--fetch", str(fetch), "--until-caught-up", "--json",
                         "--progress-interval", "3600"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)))
    per_shard = []
    for started, process in consumers:
        output, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"consume exited {process.returncode}")
        seconds = time.perf_counter() - started
        report = json.loads(output)
        per_shard.append({"shard": report["shard"], "applied": report["applied"], "seconds": round(seconds, 3),
                          "rate": round(report["applied"] / seconds, 1),
                          "applying_seconds": report["applying_seconds"],
                          "applying_rate": round(report["applied"] / report["applying_seconds"], 1)})
    applied = sum(shard["applied"] for shard in per_shard)
    if applied != count:
        raise RuntimeError(f"{applied} applied of {count}")
    seconds = max(shard["seconds"] for shard in per_shard)
    applying = max(shard["applying_seconds"] for shard in per_shard)
    return {"workload": f"jetstream-{shards}-shard{'s' if shards > 1 else ''}", "count": count,
            "seconds": seconds, "rate": round(count / seconds, 1), "applying_rate": round(count / applying, 1), "publish_seconds": round(publish_seconds, 3),
            "publish_rate": round(count / publish_seconds, 1), "fetch": fetch, "message_rows": message_rows,
            "shards": per_shard}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=50_000, help="embedded: rows per synced commit")
    parser.add_argument("--fetch", type=int, default=12, help="consume: messages per commit")
    parser.add_argument("--message-rows", type=int, default=4_096, help="publish: purchases per message")
    parser.add_argument("--scratch-dir", default=None)
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pointsledger-scale-out-", dir=arguments.scratch_dir) as scratch:
        path = ingest_file.write_files(scratch, arguments.count, "seq", ["parquet"])["parquet"]
        broker, url = start_broker(scratch)
        try:
            results = [embedded(os.path.join(scratch, "embedded"), arguments.count, arguments.batch_size)]
            for stream, shards in (("ONE", 1), ("TWO", 2)):
                results.append(through_stream(scratch, path, url, stream, shards, arguments.count, arguments.fetch,
                                              arguments.message_rows))
        finally:
            broker.terminate()
            broker.wait()
    for result in results:
        print(json.dumps(dict(result, machine=machine_description())))
    ratio = results[1]["rate"] / results[0]["rate"]
    applying_ratio = results[1]["applying_rate"] / results[0]["rate"]
    print(json.dumps({"summary": "scale-out", "one_shard_over_embedded": round(ratio, 3),
                      "one_shard_applying_over_embedded": round(applying_ratio, 3), "target": RATIO_TARGET,
                      "met": ratio >= RATIO_TARGET, "two_shards_total_rate": results[2]["rate"],
                      "two_shards_rates": [shard["rate"] for shard in results[2]["shards"]],
                      "two_shards_applying_rates": [shard["applying_rate"] for shard in results[2]["shards"]]}))


if __name__ == "__main__":
    main()
