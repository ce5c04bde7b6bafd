"""The service as a process (SPEC §9, §10): kill -9 in the middle of a stream, SIGTERM
draining, and a bounded load test with many concurrent clients.

The server is `python -m pointsledger.service` on 127.0.0.1 port 0 (the port is read
from its JSON "serving" log line), on the default engine, with synced commits.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import pointsledger
from pointsledger import Ledger
from pointsledger.client import LedgerClient, Unavailable
from support import T_2026_03_15

T = T_2026_03_15  # 2026-03-15T00:00:00Z
START_TIMEOUT_S = 60
LOAD_SECONDS = 3.0


class ServerProcess:
    def __init__(self, data_path, *arguments):
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(pointsledger.__file__)))
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [path for path in [environment.get("PYTHONPATH")] if path])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pointsledger.service", "--data", str(data_path),
             "--address", "127.0.0.1:0", *arguments],
            stderr=subprocess.PIPE, text=True, env=environment,
        )
        self.log = []
        self.port = None
        self._port_found = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._port_found.wait(START_TIMEOUT_S) or self.port is None:
            self.process.kill()
            raise AssertionError("the server did not start:\n" + "".join(line for line in self.log))
        self.address = f"127.0.0.1:{self.port}"

    def _read_log(self):
        for line in self.process.stderr:
            self.log.append(line)
            try:
                fields = json.loads(line)
            except ValueError:
                continue
            if fields.get("event") == "serving":
                self.port = fields["port"]
                self._port_found.set()
        self._port_found.set()  # exited

    def events(self):
        events = []
        for line in self.log:
            try:
                events.append(json.loads(line)["event"])
            except (ValueError, KeyError):
                pass
        return events

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def processes():
    started = []

    def start(data_path, *arguments):
        server = ServerProcess(data_path, *arguments)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def make_batches(count, size, prefix="o"):
    return [{
        "order_ids": [f"{prefix}-{batch:03d}-{item:04d}" for item in range(size)],
        "member_ids": [f"m-{(batch * size + item) % 37}" for item in range(size)],
        "amounts_minor": [1_000 + (batch * size + item) % 9_000 for item in range(size)],
        "categories": [("grocery", "electronics", "toys")[item % 3] for item in range(size)],
        "times_s": [T + batch * size + item for item in range(size)],
    } for batch in range(count)]


def journal_refs(client):
    return [entry.ref_id for entry in client.journal()]


def test_kill_9_mid_stream_then_restart_and_resend(tmp_path, processes):
    data = tmp_path / "ledger"
    batches = make_batches(60, 500)
    server = processes(data)
    acknowledged = []
    with LedgerClient(server.address) as client:
        with pytest.raises(pointsledger.LedgerError):  # the stream breaks when the server dies
            for result in client.ingest(iter(batches), window=4):
                acknowledged.append(result)
                if len(acknowledged) == 10:
                    server.kill()
    assert len(acknowledged) >= 10
    assert all(result.applied == 500 for result in acknowledged)

    server = processes(data)
    with LedgerClient(server.address) as client:
        refs = journal_refs(client)
        # Every acknowledged batch is in the store, and the store holds whole batches, a prefix.
        whole = len(refs) // 500
        assert len(refs) == whole * 500 and whole >= len(acknowledged)
        assert refs == [order_id for batch in batches[:whole] for order_id in batch["order_ids"]]
        # Sending every batch again counts nothing twice.
        results = list(client.ingest(batches, window=4))
        assert [result.duplicates for result in results[:whole]] == [500] * whole
        assert sum(result.applied for result in results) == 30_000 - whole * 500
        assert journal_refs(client) == [order_id for batch in batches for order_id in batch["order_ids"]]
        outstanding = client.liability().outstanding
        balances = client.balances([f"m-{member}" for member in range(37)])
        assert sum(balance.balance for balance in balances) == outstanding
    assert server.terminate() == 0
    with Ledger(data) as ledger:
        report = ledger.verify()
        assert report.ok, report.problems
        assert report.entries == 30_000


def test_sigterm_answers_the_batches_in_flight_then_closes_the_store(tmp_path, processes):
    data = tmp_path / "ledger"
    batches = make_batches(200, 500)
    server = processes(data)
    acknowledged = []
    ended_by = None
    with LedgerClient(server.address) as client:
        try:
            for result in client.ingest(iter(batches), window=4):
                acknowledged.append(result)
                if len(acknowledged) == 3:
                    server.process.send_signal(signal.SIGTERM)
        except Unavailable as error:
            ended_by = error
    assert server.process.wait(timeout=60) == 0
    assert ended_by is not None and "shutting down" in str(ended_by)
    assert 3 <= len(acknowledged) < 200
    events = server.events()
    for event in ("serving", "stopping", "stopped", "store closed"):
        assert event in events
    with Ledger(data) as ledger:
        refs = [entry.ref_id for entry in ledger.journal(limit=100_000)]
        # The batches answered, and none besides: the stream stopped reading, drained, committed.
        assert refs == [order_id for batch in batches[:len(acknowledged)] for order_id in batch["order_ids"]]
        assert ledger.verify().ok


def test_load_every_acknowledged_write_is_in_the_journal_exactly_once(tmp_path, processes):
    server = processes(tmp_path / "ledger")
    stop_at = time.monotonic() + LOAD_SECONDS
    members = [f"m-{number}" for number in range(40)]
    purchases = {}  # order id -> OperationResult, acknowledged
    redemptions = {}
    batch_results = []
    failures = []
    lock = threading.Lock()

    def purchaser(worker):
        rng = random.Random(worker)
        sent = []
        with LedgerClient(server.address, timeout_s=30) as client:
            number = 0
            while time.monotonic() < stop_at:
                if sent and rng.random() < 0.1:  # a retry of an acknowledged purchase
                    order_id, arguments = sent[rng.randrange(len(sent))]
                    again = client.record_purchase(*arguments)
                    if again.status != "DUPLICATE" or again.seq != purchases[order_id].seq:
                        failures.append(("retry", order_id, again))
                    continue
                order_id = f"w{worker}-{number}"
                arguments = (order_id, rng.choice(members), rng.randrange(100, 50_000), "grocery", T + number)
                result = client.record_purchase(*arguments)
                with lock:
                    purchases[order_id] = result
                sent.append((order_id, arguments))
                number += 1

    def redeemer():
        with LedgerClient(server.address, timeout_s=30) as client:
            number = 0
            while time.monotonic() < stop_at:
                try:
                    redemptions[f"x-{number}"] = client.redeem(f"x-{number}", "m-0", 3, T + 10_000_000)
                except pointsledger.FailedPrecondition:
                    pass  # not enough points yet
                except pointsledger.NotFound:
                    pass  # m-0 has not bought yet
                number += 1

    def streamer():
        def batches():
            number = 0
            while time.monotonic() < stop_at:
                yield {"order_ids": [f"s-{number}-{item}" for item in range(200)],
                       "member_ids": [members[(number + item) % 40] for item in range(200)],
                       "amounts_minor": [500] * 200, "categories": ["toys"] * 200, "times_s": [T] * 200}
                number += 1
        with LedgerClient(server.address) as client:
            for result in client.ingest(batches(), window=2):
                batch_results.append(result)

    def reader():
        rng = random.Random(99)
        with LedgerClient(server.address, timeout_s=30) as client:
            while time.monotonic() < stop_at:
                try:
                    client.balance(rng.choice(members))
                except pointsledger.NotFound:
                    pass

    threads = [threading.Thread(target=purchaser, args=(worker,)) for worker in range(12)]
    threads += [threading.Thread(target=function) for function in (redeemer, streamer, reader, reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=LOAD_SECONDS + 60)
        assert not thread.is_alive()
    assert failures == []
    assert len(purchases) > 100 and batch_results

    with LedgerClient(server.address) as client:
        journal = list(client.journal())
        by_ref = {}
        for entry in journal:
            by_ref.setdefault((entry.kind, entry.ref_id), []).append(entry)
        for order_id, result in purchases.items():
            (entry,) = by_ref[("EARN", order_id)]  # exactly once
            assert (entry.seq, entry.points, entry.balance) == (result.seq, result.points, result.balance)
        for redemption_id, result in redemptions.items():
            (entry,) = by_ref[("REDEEM", redemption_id)]
            assert (entry.seq, entry.points) == (result.seq, -3)
        streamed = [item for result in batch_results for item in result]
        assert all(item.status == "APPLIED" for item in streamed)
        assert len([entry for entry in journal if entry.ref_id.startswith("s-")]) == len(streamed)
        assert [entry.seq for entry in journal] == list(range(1, len(journal) + 1))
        # Balances add up: each member's is the sum of its entries, and all of them the outstanding total.
        balances = {balance.member_id: balance.balance for balance in client.balances(members)
                    if not isinstance(balance, Exception)}
        for member_id, balance in balances.items():
            assert balance == sum(entry.points for entry in journal if entry.member_id == member_id)
        assert sum(balances.values()) == client.liability().outstanding == sum(entry.points for entry in journal)
    assert server.terminate() == 0
    with Ledger(tmp_path / "ledger") as ledger:
        assert ledger.verify().ok


def test_serve_with_a_token_file_and_metrics_on_a_fresh_ledger(tmp_path, processes):
    import urllib.request

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("pipeline-token-0123456789 write orders\nreader-token-0123456789 read\n")
    server = processes(tmp_path / "fresh", "--tokens-file", str(tokens), "--metrics-port", "0")
    with LedgerClient(server.address) as anonymous, pytest.raises(pointsledger.LedgerError) as info:
        anonymous.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    assert info.value.code == "UNAUTHENTICATED"
    with LedgerClient(server.address, token="pipeline-token-0123456789") as pipeline:
        # A fresh ledger serves the example programme with no set-up: 123 points.
        assert pipeline.record_purchase("o-1", "m-1", 12_345, "grocery", T).points == 123
    with LedgerClient(server.address, token="reader-token-0123456789") as reader:
        assert reader.balance("m-1").balance == 123
    serving = next(json.loads(line) for line in server.log if '"serving"' in line)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{serving['metrics_port']}/metrics", timeout=5).read()
    assert b'pointsledger_requests_total{code="UNAUTHENTICATED",rpc="RecordPurchase"} 1.0' in metrics
    assert server.terminate() == 0
