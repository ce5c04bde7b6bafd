"""The service benchmarks of SPEC §13: stream, online, reads.

    python benchmarks/service_workloads.py                    # all three, default sizes
    python benchmarks/service_workloads.py stream --count 1000000
    python benchmarks/service_workloads.py online --seconds 10 --clients 64
    python benchmarks/service_workloads.py --smoke            # small and quick
    python benchmarks/service_workloads.py followers --followers 300 --seconds 10
    python benchmarks/service_workloads.py memory --memory-streams 6 --memory-batches 4

The server runs in its own process (`python -m pointsledger.service`, synced
commits, the default engine), bound to 127.0.0.1 port 0; the clients run in
this process and in helper processes. Client and server share this machine's
cores, as the SPEC's targets assume. One JSON line per result, like
benchmarks/backfill.py: workload, engine, count, seconds, rate, latency
percentiles where they apply, peak RSS of this process, machine; a last
"summary" line has the ratios measured in this run.

- stream: the backfill workload (benchmarks/workload.py) through
  IngestPurchases in batches of 5,000, `--window` batches in flight, synced.
  Run twice: as the server is configured by default (the writer commits the
  batches queued behind each other together, up to 25,000 purchases:
  "stream"), and with that off (one commit per batch: "stream-unmerged").
  Then the same data embedded (Ledger.purchases, same batch size, sync=True)
  in this process: "stream-embedded". Ratios: stream / embedded.
- online: `--clients` concurrent grpc.aio calls of RecordPurchase from
  `--client-processes` processes for `--seconds`, each call a new order; rate
  and p50/p99 latency. Then the same clients against an empty grpc.aio handler
  ("online-empty-handler": what grpcio alone allows here, in the same run).
- reads: GetBalance for random members of the workload from `--clients`
  concurrent grpc.aio calls (in a helper process) while a stream runs; reads/s
  counted over the stream's time ("reads"); and the same with GetBalances of
  `--read-batch` members per call ("reads-batched", balances/s).
- followers (by name only): one client writing RecordPurchase after RecordPurchase
  for `--seconds`, p50/p99 latency, with no follower and with `--followers`
  ReadJournal(follow) calls from a helper process (issue 8, item 6).
- memory (by name only): `--memory-streams` IngestPurchases streams at once, each
  of `--memory-batches` batches of 100,000 purchases with 64-byte ids (~15 MB a
  message); the server's peak anonymous RSS, sampled (issue 8, item 5).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import backfill  # noqa: E402
import workload  # noqa: E402

STREAM_BATCH_SIZE = 5_000
STREAM_WINDOW_DEFAULT = 4
COUNT_DEFAULT = 500_000
CLIENTS_DEFAULT = 64
SECONDS_DEFAULT = 10.0
READ_BATCH_DEFAULT = 100
SMOKE_COUNT = 50_000
SMOKE_SECONDS = 2.0
SERVER_START_TIMEOUT_S = 60
EVENT_TIME_S = 1_767_225_600  # 2026-01-01: online purchases come after the backfill's two years
ONLINE_RATE_BOUND = 20_000  # online requests are made before timing, enough for this rate


def percentile_ms(sorted_seconds, fraction):
    if not sorted_seconds:
        return None
    index = min(len(sorted_seconds) - 1, int(round(fraction * (len(sorted_seconds) - 1))))
    return round(sorted_seconds[index] * 1000, 3)


def result_line(workload_name, count, seconds, **extra):
    from pointsledger import engine as engines

    return {
        "workload": workload_name, "engine": engines.ENGINE, "count": count,
        "seconds": round(seconds, 4), "rate": round(count / seconds, 1) if seconds else None,
        "peak_rss_mib": round(backfill.peak_rss_mib(), 1), "machine": backfill.machine_description(),
        **extra,
    }


def emit(line):
    print(json.dumps(line), flush=True)
    return line


def child_environment():
    """The environment of a child process: it imports the pointsledger this process imported."""
    import pointsledger

    environment = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(pointsledger.__file__)))
    environment["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [environment.get("PYTHONPATH")] if p])
    return environment


class ServerProcess:
    """`python -m pointsledger.service` on a fresh ledger with the backfill programme
    (or, with empty=True, a grpc.aio server whose RecordPurchase does nothing)."""

    def __init__(self, directory, extra_arguments=(), empty=False):
        if empty:
            command = [sys.executable, os.path.abspath(__file__), "--serve-empty"]
        else:
            from pointsledger import Ledger

            with Ledger(directory) as ledger:  # the programme the backfill's times need
                ledger.set_program(backfill.backfill_program())
            command = [sys.executable, "-m", "pointsledger.service", "--data", directory,
                       "--address", "127.0.0.1:0", *extra_arguments]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=child_environment())
        self.port = None
        self.log_lines = []
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while self.port is None:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError("the server exited: " + "".join(self.log_lines))
            self.log_lines.append(line)
            try:
                fields = json.loads(line)
            except ValueError:
                continue
            if fields.get("event") == "serving":
                self.port = fields["port"]
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
        threading.Thread(target=self._drain, daemon=True).start()  # never block on a full pipe
        self.address = f"127.0.0.1:{self.port}"

    def _drain(self):
        for line in self.process.stderr:
            self.log_lines.append(line)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)


def serve_empty():
    """An empty grpc.aio RecordPurchase: the ceiling grpcio itself sets for `online`."""
    import grpc

    from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc

    class Empty(pb_grpc.LedgerServicer):
        async def RecordPurchase(self, request, context):
            return pb.OperationResult()

    async def run():
        server = grpc.aio.server()
        pb_grpc.add_LedgerServicer_to_server(Empty(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"event": "serving", "port": port}), file=sys.stderr, flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(1)

    asyncio.run(run())


# --- stream -----------------------------------------------------------------------------


def stream_through(address, count, seed, window):
    """Ingest the workload through IngestPurchases; (seconds, applied, time.time() at start and end)."""
    from pointsledger.client import LedgerClient

    batches = list(workload.iter_backfill_batches(count, STREAM_BATCH_SIZE, seed=seed))  # made before timing
    applied = 0
    with LedgerClient(address) as client:
        wall_start = time.time()
        started = time.perf_counter()
        for result in client.ingest(batches, window=window):
            applied += result.applied
        seconds = time.perf_counter() - started
    return seconds, applied, wall_start, time.time()


def embedded(directory, count, seed):
    """The same data through Ledger.purchases, synced, same batch size; (seconds, applied)."""
    from pointsledger import Ledger

    batches = list(workload.iter_backfill_batches(count, STREAM_BATCH_SIZE, seed=seed))
    with Ledger(directory, sync=True) as ledger:
        ledger.set_program(backfill.backfill_program())
        applied = 0
        started = time.perf_counter()
        for batch in batches:
            applied += ledger.purchases(*(batch[name] for name in workload.COLUMNS)).applied
        seconds = time.perf_counter() - started
    return seconds, applied


def run_stream(arguments, scratch):
    lines = {}
    for name, server_arguments in (("stream", ()), ("stream-unmerged", ("--batch-merge-items-max", "1"))):
        server = ServerProcess(os.path.join(scratch, name), (*server_arguments, *arguments.server_args.split()))
        try:
            seconds, applied, _, _ = stream_through(server.address, arguments.count, arguments.seed, arguments.window)
        finally:
            server.stop()
        lines[name] = emit(result_line(name, arguments.count, seconds, applied=applied, batch_size=STREAM_BATCH_SIZE,
                                       window=arguments.window, sync=True,
                                       merged_commits=name == "stream"))
    seconds, applied = embedded(os.path.join(scratch, "embedded"), arguments.count, arguments.seed)
    lines["embedded"] = emit(result_line("stream-embedded", arguments.count, seconds, applied=applied,
                                         batch_size=STREAM_BATCH_SIZE, sync=True))
    return {
        "stream_over_embedded": round(lines["stream"]["rate"] / lines["embedded"]["rate"], 3),
        "stream_unmerged_over_embedded": round(lines["stream-unmerged"]["rate"] / lines["embedded"]["rate"], 3),
    }


# --- online -----------------------------------------------------------------------------


def _online_requests(prefix, number, count, member_count):
    from pointsledger.v1 import ledger_pb2 as pb

    rng = random.Random(f"{prefix}-{number}")
    return [pb.RecordPurchaseRequest(
        order_id=f"{prefix}-{number}-{sequence}", member_id=workload.member_id(rng.randrange(member_count)),
        amount_minor=rng.randrange(1, 100_000), category="grocery", time_s=EVENT_TIME_S + sequence)
        for sequence in range(count)]


async def _online_calls(address, clients, seconds, prefix, member_count):
    """`clients` concurrent callers of RecordPurchase for `seconds`; (latencies, errors, elapsed).

    Requests are made before the clock starts, so the client spends its CPU on calls.
    """
    import grpc

    from pointsledger.v1 import ledger_pb2_grpc as pb_grpc

    per_client = max(100, int(ONLINE_RATE_BOUND * seconds / clients))
    requests = [_online_requests(prefix, number, per_client, member_count) for number in range(clients)]
    latencies = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LedgerStub(channel)
        await channel.channel_ready()
        stop_at = time.perf_counter() + seconds

        async def one_client(number):
            nonlocal errors
            for request in requests[number]:
                if time.perf_counter() >= stop_at:
                    return
                started = time.perf_counter()
                try:
                    await stub.RecordPurchase(request)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client(number) for number in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def _online_process(address, clients, seconds, prefix, member_count, results):
    results.put(asyncio.run(_online_calls(address, clients, seconds, prefix, member_count)))


def online_against(server, arguments):
    processes = max(1, arguments.client_processes)
    per_process = [arguments.clients // processes + (1 if index < arguments.clients % processes else 0)
                   for index in range(processes)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_online_process, args=(
        server.address, count, arguments.seconds, f"p{index}", workload.MEMBERS_DEFAULT, results))
        for index, count in enumerate(per_process)]
    for worker in workers:
        worker.start()
    gathered = [results.get(timeout=arguments.seconds + 300) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(latency for part in gathered for latency in part[0])
    return latencies, sum(part[1] for part in gathered), max(part[2] for part in gathered), processes


def run_online(arguments, scratch):
    lines = {}
    for name, empty in (("online", False), ("online-empty-handler", True)):
        server = ServerProcess(os.path.join(scratch, name), arguments.server_args.split(), empty=empty)
        try:
            latencies, errors, elapsed, processes = online_against(server, arguments)
        finally:
            server.stop()
        lines[name] = emit(result_line(
            name, len(latencies), elapsed, clients=arguments.clients, client_processes=processes, errors=errors,
            sync=True, p50_ms=percentile_ms(latencies, 0.50), p99_ms=percentile_ms(latencies, 0.99),
            max_ms=percentile_ms(latencies, 1.0),
        ))
    return {"online_over_empty_handler": round(lines["online"]["rate"] / lines["online-empty-handler"]["rate"], 3)}


# --- reads ------------------------------------------------------------------------------


async def _read_calls(address, clients, stop_flag, member_count, seed, read_batch):
    """Read balances until stop_flag; (completion wall times, latencies, balances per call, not found)."""
    import grpc

    from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc

    completions, latencies = [], []
    not_found = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LedgerStub(channel)
        await channel.channel_ready()

        async def one_client(number):
            nonlocal not_found
            rng = random.Random(seed * 1000 + number)
            while not stop_flag.is_set():
                members = [workload.member_id(rng.randrange(member_count)) for _ in range(read_batch)]
                started = time.perf_counter()
                try:
                    if read_batch == 1:
                        await stub.GetBalance(pb.GetBalanceRequest(member_id=members[0]))
                    else:
                        response = await stub.GetBalances(pb.GetBalancesRequest(member_ids=members))
                        not_found += len(response.errors)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    not_found += 1  # a member the stream has not reached yet: still a read
                latencies.append(time.perf_counter() - started)
                completions.append(time.time())

        await asyncio.gather(*(one_client(number) for number in range(clients)))
    return completions, latencies, not_found


def _reads_process(address, clients, stop_flag, member_count, seed, read_batch, results):
    results.put(asyncio.run(_read_calls(address, clients, stop_flag, member_count, seed, read_batch)))


def reads_during_stream(arguments, scratch, name, read_batch):
    server = ServerProcess(os.path.join(scratch, name), arguments.server_args.split())
    try:
        context = multiprocessing.get_context("spawn")
        stop_flag = context.Event()
        results = context.Queue()
        processes = max(1, arguments.client_processes)
        readers = [context.Process(target=_reads_process, args=(
            server.address, max(1, arguments.clients // processes), stop_flag, workload.MEMBERS_DEFAULT,
            index, read_batch, results)) for index in range(processes)]
        for reader in readers:
            reader.start()
        time.sleep(2.0)  # the readers start and connect before the stream
        seconds, applied, wall_start, wall_end = stream_through(
            server.address, arguments.count, arguments.seed, arguments.window)
        stop_flag.set()
        gathered = [results.get(timeout=300) for _ in readers]
        for reader in readers:
            reader.join()
    finally:
        server.stop()
    calls = sum(1 for part in gathered for completed in part[0] if wall_start <= completed <= wall_end)
    latencies = sorted(latency for part in gathered for latency in part[1])
    return emit(result_line(
        name, calls * read_batch, wall_end - wall_start, balances_per_call=read_batch, calls=calls,
        calls_per_s=round(calls / (wall_end - wall_start), 1), clients=arguments.clients,
        client_processes=processes, not_found=sum(part[2] for part in gathered),
        p50_ms=percentile_ms(latencies, 0.50), p99_ms=percentile_ms(latencies, 0.99),
        stream_count=arguments.count, stream_rate=round(arguments.count / seconds, 1), stream_applied=applied,
    ))


def run_reads(arguments, scratch):
    reads_during_stream(arguments, scratch, "reads", 1)
    if arguments.read_batch > 1:
        reads_during_stream(arguments, scratch, "reads-batched", arguments.read_batch)
    return {}


# --- followers (issue 8, item 6) ------------------------------------------------------------


async def _follow_journal(address, followers, stop_flag, results):
    """`followers` ReadJournal(follow) calls until stop_flag; entries received by all of them."""
    import grpc

    from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc

    received = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.LedgerStub(channel)
        await channel.channel_ready()
        calls = [stub.ReadJournal(pb.ReadJournalRequest(from_seq=1, follow=True)) for _ in range(followers)]

        async def consume(call):
            nonlocal received
            try:
                async for response in call:
                    received += len(response.entries)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass  # cancelled at the end

        tasks = [asyncio.ensure_future(consume(call)) for call in calls]
        while not stop_flag.is_set():
            await asyncio.sleep(0.1)
        for call in calls:
            call.cancel()
        await asyncio.gather(*tasks)
    results.put(received)


def _followers_process(address, followers, stop_flag, results):
    asyncio.run(_follow_journal(address, followers, stop_flag, results))


def writer_latencies(address, seconds, prefix):
    """One client writing RecordPurchase after RecordPurchase for `seconds`; sorted latencies."""
    import grpc

    from pointsledger.v1 import ledger_pb2_grpc as pb_grpc

    requests = _online_requests(prefix, 0, max(100, int(2_000 * seconds)), workload.MEMBERS_DEFAULT)
    latencies = []
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LedgerStub(channel)
        grpc.channel_ready_future(channel).result(timeout=30)
        stop_at = time.perf_counter() + seconds
        for request in requests:
            if time.perf_counter() >= stop_at:
                break
            started = time.perf_counter()
            stub.RecordPurchase(request)
            latencies.append(time.perf_counter() - started)
    return sorted(latencies)


def run_followers(arguments, scratch):
    """A single writer's latency with 0 and with `--followers` ReadJournal followers (synced)."""
    lines = {}
    for followers in (0, arguments.followers):
        name = f"writer-with-{followers}-followers"
        server = ServerProcess(os.path.join(scratch, name), arguments.server_args.split())
        try:
            context = multiprocessing.get_context("spawn")
            stop_flag, results, helper = context.Event(), context.Queue(), None
            if followers:
                helper = context.Process(target=_followers_process, args=(server.address, followers, stop_flag, results))
                helper.start()
                time.sleep(3.0)  # the followers connect and catch up (the journal is empty)
            latencies = writer_latencies(server.address, arguments.seconds, name)
            stop_flag.set()
            received = results.get(timeout=120) if helper else 0
            if helper:
                helper.join()
        finally:
            server.stop()
        lines[name] = emit(result_line(
            name, len(latencies), sum(latencies), followers=followers, entries_received_by_followers=received,
            sync=True, p50_ms=percentile_ms(latencies, 0.50), p99_ms=percentile_ms(latencies, 0.99),
            max_ms=percentile_ms(latencies, 1.0)))
    with_followers = lines[f"writer-with-{arguments.followers}-followers"]
    return {"writer_p50_ms_with_followers_over_without": round(
        with_followers["p50_ms"] / lines["writer-with-0-followers"]["p50_ms"], 3)}


# --- memory (issue 8, item 5) ------------------------------------------------------------------


def large_batch(stream, number, size):
    """`size` purchases with 64-byte order and member ids: about 15 MB per 100,000 as a message."""
    from pointsledger.client import batch_request

    pad = "x" * 52
    return batch_request({
        "order_ids": [f"{stream:02d}{number:04d}{item:06d}{pad}" for item in range(size)],
        "member_ids": [f"{item % 50_000:012d}{pad}" for item in range(size)],
        "amounts_minor": [1_000 + item % 9_000 for item in range(size)],
        "categories": ["grocery"] * size, "times_s": [EVENT_TIME_S + item for item in range(size)],
    }, f"{stream}-{number}")


def process_memory_mib(pid):
    """{"VmHWM": …, "RssAnon": …, "RssFile": …} of a process, MiB (Linux /proc)."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name = line.split(":")[0]
            if name in ("VmHWM", "RssAnon", "RssFile"):
                values[name] = round(int(line.split()[1]) / 1024, 1)
    return values


class MemorySampler:
    """The peak anonymous RSS of a process, sampled every interval_s. VmHWM alone is not the
    measure here: it counts the LMDB map's file pages, which grow with the store, not with
    the batches in flight; the heap (RssAnon) is what many streams could blow up."""

    def __init__(self, pid, interval_s=0.05):
        self.pid, self.interval_s = pid, interval_s
        self.peak_anon_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval_s):
            try:
                self.peak_anon_mib = max(self.peak_anon_mib, process_memory_mib(self.pid).get("RssAnon", 0.0))
            except OSError:
                return

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak_anon_mib


def run_memory(arguments, scratch):
    """`--memory-streams` streams at once, each of `--memory-batches` batches of 100,000
    purchases with 64-byte ids (~15 MB a message), window 4: the server's peak RSS."""
    import grpc

    from pointsledger.v1 import ledger_pb2_grpc as pb_grpc

    size = 20_000 if arguments.smoke else 100_000
    server = ServerProcess(os.path.join(scratch, "memory"), ("--message-bytes-max", str(64 << 20),
                                                            *arguments.server_args.split()))
    outcomes = []
    try:
        def one_stream(stream):
            with grpc.insecure_channel(server.address, options=[
                    ("grpc.max_send_message_length", 64 << 20)]) as channel:
                stub = pb_grpc.LedgerStub(channel)
                batches = (large_batch(stream, number, size) for number in range(arguments.memory_batches))
                try:
                    applied = sum(response.applied for response in stub.IngestPurchases(batches, timeout=600))
                    outcomes.append(("OK", applied))
                except grpc.RpcError as error:
                    outcomes.append((error.code().name, error.details()))

        sampler = MemorySampler(server.process.pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=one_stream, args=(stream,)) for stream in range(arguments.memory_streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        peak_anon = sampler.stop()
        memory = process_memory_mib(server.process.pid)
    finally:
        server.stop()
    applied = sum(outcome[1] for outcome in outcomes if outcome[0] == "OK")
    emit(result_line("memory", applied, seconds, streams=arguments.memory_streams,
                     batches_per_stream=arguments.memory_batches, batch_size=size,
                     outcomes=sorted(outcome[0] for outcome in outcomes), server_peak_rss_anon_mib=peak_anon,
                     server_vm_hwm_mib=memory.get("VmHWM"), server_rss_file_mib_at_end=memory.get("RssFile")))
    return {"memory_server_peak_rss_anon_mib": peak_anon}


WORKLOADS = {"stream": run_stream, "online": run_online, "reads": run_reads, "followers": run_followers,
             "memory": run_memory}
DEFAULT_WORKLOADS = ("stream", "online", "reads")  # followers and memory: by name


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help=f"some of {', '.join(WORKLOADS)} (default: {', '.join(DEFAULT_WORKLOADS)})")
    parser.add_argument("--count", type=int, default=None,
                        help=f"purchases streamed (default {COUNT_DEFAULT:,}; smoke {SMOKE_COUNT:,})")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"duration of each online run (default {SECONDS_DEFAULT}; smoke {SMOKE_SECONDS})")
    parser.add_argument("--clients", type=int, default=CLIENTS_DEFAULT, help="concurrent calls (online, reads)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the online and read clients are spread over")
    parser.add_argument("--window", type=int, default=STREAM_WINDOW_DEFAULT, help="stream batches in flight")
    parser.add_argument("--read-batch", type=int, default=READ_BATCH_DEFAULT,
                        help="member ids per GetBalances call in reads-batched (1: skip it)")
    parser.add_argument("--server-args", default="",
                        help='more arguments of `python -m pointsledger.service`, e.g. "--switch-interval-ms 5"')
    parser.add_argument("--followers", type=int, default=300, help="ReadJournal followers (followers)")
    parser.add_argument("--memory-streams", type=int, default=6, help="concurrent streams (memory)")
    parser.add_argument("--memory-batches", type=int, default=4, help="batches per stream (memory)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scratch-dir", default=None, help="where the scratch stores go")
    parser.add_argument("--smoke", action="store_true", help="small sizes")
    parser.add_argument("--serve-empty", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    for name in arguments.workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    if arguments.count is None:
        arguments.count = SMOKE_COUNT if arguments.smoke else COUNT_DEFAULT
    if arguments.seconds is None:
        arguments.seconds = SMOKE_SECONDS if arguments.smoke else SECONDS_DEFAULT
    return arguments


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.serve_empty:
        serve_empty()
        return 0
    summary = {"workload": "summary", "machine": backfill.machine_description()}
    scratch = tempfile.mkdtemp(prefix="pointsledger-service-bench-", dir=arguments.scratch_dir)
    try:
        for name in arguments.workloads or list(DEFAULT_WORKLOADS):
            summary.update(WORKLOADS[name](arguments, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    emit(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
