"""Bounded memory under many streams, and followers that do not slow writers (issue 8, items 5, 6).

A real server on 127.0.0.1 port 0, real clients. The limits are the named ones of
pointsledger.limits, lowered here (monkeypatch) so that a test reaches them with small
batches; the server reads them at each call. Peak RSS under six streams of large batches is
measured in benchmarks/service_workloads.py (`memory`), not here: tests assert outcomes.
"""

import threading
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import pointsledger
from pointsledger import Ledger, limits
from pointsledger.client import LedgerClient, batch_request
from pointsledger.service import BackgroundServer
from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from support import T_2026_03_15, example_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z


@pytest.fixture
def served(tmp_path, engine_name):
    ledger = Ledger(tmp_path / "ledger", engine=engine_name)
    ledger.set_program(example_program())
    background = BackgroundServer(ledger)
    yield ledger, background, f"127.0.0.1:{background.port}"
    background.stop()
    ledger.close()


def wait_until(condition, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def batch(prefix, count):
    return {"order_ids": [f"{prefix}-{item:03d}" for item in range(count)], "member_ids": ["m-1"] * count,
            "amounts_minor": [100] * count, "categories": ["toys"] * count, "times_s": [T] * count}


def error_info_of(error):
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason, dict(info.metadata)
    raise AssertionError("no ErrorInfo")


class OpenStream:
    """An IngestPurchases call whose batches the test sends one by one (raw stub, any window)."""

    def __init__(self, channel):
        self._requests = []
        self._more = threading.Condition()
        self._closed = False
        self.responses = []
        self.error = None
        self._call = pb_grpc.LedgerStub(channel).IngestPurchases(self._iterate(), timeout=30)
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _iterate(self):
        sent = 0
        while True:
            with self._more:
                while sent == len(self._requests) and not self._closed:
                    self._more.wait()
                if sent == len(self._requests):
                    return
                request = self._requests[sent]
            sent += 1
            yield request

    def _receive(self):
        try:
            for response in self._call:
                self.responses.append(response)
        except grpc.RpcError as error:
            self.error = error

    def send(self, request):
        with self._more:
            self._requests.append(request)
            self._more.notify()

    def close(self):
        with self._more:
            self._closed = True
            self._more.notify()
        self._thread.join(30)


def test_streams_beyond_the_limit_are_resource_exhausted(served, monkeypatch):
    ledger, background, address = served
    monkeypatch.setattr(limits, "ingest_streams_max", 2)
    writer = background.server.writer
    writer.hold()
    channel = grpc.insecure_channel(address)
    streams = [OpenStream(channel) for _ in range(2)]
    for number, stream in enumerate(streams):
        stream.send(batch_request(batch(f"s{number}", 3), str(number)))
    wait_until(lambda: writer.pending() == 2)
    third = OpenStream(channel)
    third.send(batch_request(batch("s2", 3), "2"))
    third.close()
    assert third.error is not None and third.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info_of(third.error) == ("TOO_MANY_STREAMS", {"limit": "2"})
    writer.release()
    for stream in streams:
        stream.close()
        assert stream.error is None and [response.applied for response in stream.responses] == [3]
    # With the two streams closed, a stream is admitted again.
    with LedgerClient(address) as client:
        assert [result.applied for result in client.ingest([batch("s3", 3)])] == [3]
    assert len(ledger.journal(limit=100)) == 9
    channel.close()


def test_a_stream_stops_reading_while_the_bytes_in_flight_are_over_the_limit(served, monkeypatch):
    ledger, background, address = served
    one_batch = batch_request(batch("b0", 20), "0").ByteSize()  # 20 purchases: 507 bytes
    assert one_batch == 507
    monkeypatch.setattr(limits, "ingest_bytes_in_flight_max", 2 * one_batch)  # 1,014: room for two
    writer = background.server.writer
    servicer = background.server.servicer
    writer.hold()
    channel = grpc.insecure_channel(address)
    stream = OpenStream(channel)
    for number in range(4):  # the client sends four batches; its window would allow them all
        stream.send(batch_request(batch(f"b{number}", 20), str(number)))
    # The server reads two (after the first, 507 + a batch of the same size fits in 1,014; after
    # the second, 1,014 + 507 does not), then waits.
    wait_until(lambda: writer.pending() == 2)
    time.sleep(0.3)  # it would have read the others by now
    assert (writer.pending(), servicer.ingest.bytes_in_flight) == (2, 1_014)
    late = OpenStream(channel)
    late.send(batch_request(batch("late", 1), "late"))
    late.close()
    assert late.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info_of(late.error) == ("TOO_MANY_BYTES_IN_FLIGHT", {"limit": "1014", "in_flight": "1014"})
    writer.release()
    stream.close()
    assert stream.error is None
    assert [(response.batch_id, response.applied) for response in stream.responses] == [
        ("0", 20), ("1", 20), ("2", 20), ("3", 20)]
    assert servicer.ingest.bytes_in_flight == 0
    assert len(ledger.journal(limit=1_000)) == 80
    channel.close()


def test_followers_share_one_read_of_each_commit(served, monkeypatch):
    ledger, background, address = served
    reads = []
    journal = ledger.journal

    def counting_journal(from_seq=1, limit=1000):
        reads.append(from_seq)
        return journal(from_seq, limit)

    monkeypatch.setattr(ledger, "journal", counting_journal)
    followers = 40
    received = [[] for _ in range(followers)]
    clients = [LedgerClient(address) for _ in range(followers)]
    streams = [client.journal(from_seq=1, follow=True, timeout_s=60) for client in clients]

    def follow(number):
        for entry in streams[number]:
            received[number].append(entry.seq)
            if len(received[number]) == 20:
                return

    threads = [threading.Thread(target=follow, args=(number,)) for number in range(followers)]
    for thread in threads:
        thread.start()
    wait_until(lambda: background.server.servicer.tail.followers == followers)
    reads_before = len(reads)
    with LedgerClient(address) as writer_client:
        for number in range(20):
            writer_client.record_purchase(f"o-{number}", "m-1", 1_000, "grocery", T + number)
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert received == [list(range(1, 21))] * followers  # every follower, every entry, in order
    publications = background.server.servicer.tail.publications
    # The journal was read once per publication and once per unary write (its result's entry),
    # not once per follower per commit (the old server: 40 x 20 = 800 reads at least).
    assert publications >= 1
    assert len(reads) - reads_before <= 20 + 2 * publications
    for stream in streams:
        stream.close()
    for client in clients:
        client.close()


def test_a_follower_behind_the_tail_reads_up_to_it_then_shares_it(served):
    ledger, background, address = served
    ledger.purchases(*batch("old", 2_500).values())  # seqs 1 to 2,500, before anyone follows
    with LedgerClient(address) as watcher, LedgerClient(address) as writer_client:
        first = watcher.journal(from_seq=2_501, follow=True, timeout_s=60)  # the tail starts here
        writer_client.record_purchase("new-0", "m-1", 1_000, "grocery", T)
        assert next(first).seq == 2_501
        behind = watcher.journal(from_seq=1, follow=True, timeout_s=60)
        seqs = [next(behind).seq for _ in range(2_501)]
        writer_client.record_purchase("new-1", "m-1", 1_000, "grocery", T)
        seqs.append(next(behind).seq)
        assert seqs == list(range(1, 2_503))
        assert next(first).seq == 2_502
        first.close()
        behind.close()


def test_followers_beyond_the_limit_are_resource_exhausted(served, monkeypatch):
    _, background, address = served
    monkeypatch.setattr(limits, "journal_followers_max", 2)
    with LedgerClient(address) as client:
        following = [client.journal(follow=True, timeout_s=30) for _ in range(2)]

        def start(stream):  # a generator makes its call on the first next(); it waits for an entry
            try:
                next(stream, None)
            except pointsledger.LedgerError:
                pass  # cancelled when the test ends

        threads = [threading.Thread(target=start, args=(stream,)) for stream in following]
        for thread in threads:
            thread.start()
        wait_until(lambda: background.server.servicer.tail.followers == 2)
        with pytest.raises(pointsledger.ResourceExhausted) as info:
            next(client.journal(follow=True, timeout_s=30))
        assert (info.value.reason_code, info.value.info) == ("TOO_MANY_FOLLOWERS", {"limit": "2"})
        assert list(client.journal()) == []  # reading without follow is not capped
        client.record_purchase("o-1", "m-1", 1_000, "grocery", T)  # the two followers get it and end
        for thread in threads:
            thread.join(30)
            assert not thread.is_alive()
