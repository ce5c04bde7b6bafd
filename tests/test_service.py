"""The gRPC service (SPEC §9, §10): a real server on 127.0.0.1, port 0, real channels.

Every RPC, every status code, per-item codes of batches, group commit, deadlines,
shutdown, health, reflection and metrics. The ledger behind the server runs on
each engine (the `engine_name` fixture of conftest.py).

Programme: the §3 example (1 point per 100 cents; electronics x2; tiers at
50,000 and 200,000 cents of spend; points expire 12 months on). So 12,345
cents of groceries earn 123 points, 10,000 of electronics earn 200; earned in
March 2026 they expire at 2027-04-01T00:00:00Z.
"""

import contextlib
import gc
import json
import logging
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import pointsledger
from pointsledger import Ledger
from pointsledger.client import DeadlineExceeded, LedgerClient, Unavailable
from pointsledger.results import Entry
from pointsledger.service import BackgroundServer, JsonLogFormatter, is_loopback
from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from support import T_2026_03_15, T_2027_04_01, T_2027_06_01, entries, example_program, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z
EXPIRES = T_2027_04_01  # 2027-04-01T00:00:00Z: 12 months after March 2026, start of the next month

# Every RPC of SPEC §10, plus GetBalances (many balances in one call).
SPEC_RPCS = {
    "RecordPurchase", "IngestPurchases", "Refund", "Redeem", "Adjust", "GetBalance", "ListEntries",
    "ReadJournal", "SetProgram", "GetProgram", "RunExpiry", "GetLiability",
}


class Served:
    def __init__(self, ledger, background, client):
        self.ledger = ledger
        self.background = background
        self.server = background.server
        self.client = client
        self.address = f"127.0.0.1:{background.port}"


@pytest.fixture
def serve(tmp_path, engine_name):
    """Start servers: serve(program=..., **create_server options) -> Served."""
    started = []

    def start(program=example_program(), name="ledger", **options):
        ledger = Ledger(tmp_path / name, engine=engine_name)
        if program is not None:
            ledger.set_program(program)
        background = BackgroundServer(ledger, **options)
        served = Served(ledger, background, LedgerClient(f"127.0.0.1:{background.port}"))
        started.append(served)
        return served

    yield start
    for served in started:
        served.client.close()
        served.background.stop()
        served.ledger.close()


@pytest.fixture
def served(serve):
    return serve()


def journal_tuples(served):
    return entries(served.ledger)


@contextlib.contextmanager
def raises_code(error_type, code, field=None):
    """Like pytest.raises, and the error carries this status name (and field)."""
    with pytest.raises(error_type) as info:
        yield info
    assert info.value.code == code, str(info.value)
    if field is not None:
        assert info.value.field == field, str(info.value)


# --- the contract ---------------------------------------------------------------------------


def test_the_proto_has_every_rpc_of_the_spec():
    service = pb.DESCRIPTOR.services_by_name["Ledger"]
    assert service.full_name == "pointsledger.v1.Ledger"
    assert SPEC_RPCS <= {method.name for method in service.methods}
    ingest = service.methods_by_name["IngestPurchases"]
    assert ingest.client_streaming and ingest.server_streaming
    journal = service.methods_by_name["ReadJournal"]
    assert journal.server_streaming and not journal.client_streaming


def test_is_loopback():
    assert is_loopback("127.0.0.1:0") and is_loopback("localhost:50051") and is_loopback("[::1]:1")
    assert is_loopback("127.0.0.2:80") and is_loopback("unix:/tmp/socket")
    assert not is_loopback("0.0.0.0:50051") and not is_loopback("[::]:50051")
    assert not is_loopback("10.0.0.1:50051") and not is_loopback("ledger.example:50051")


# --- unary writes ---------------------------------------------------------------------------


def test_record_purchase_applied_then_duplicate(served):
    client = served.client
    first = client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    assert (first.status, first.seq, first.points, first.balance) == ("APPLIED", 1, 123, 123)
    again = client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    assert (again.status, again.seq, again.points, again.balance) == ("DUPLICATE", 1, 123, 123)
    assert again.duplicate
    second = client.record_purchase("o-2", "m-1", 10_000, "electronics", T + 60)
    assert (second.status, second.seq, second.points, second.balance) == ("APPLIED", 2, 200, 323)
    assert journal_tuples(served) == [
        (1, "EARN", "m-1", "o-1", 123, 123, T, 1),
        (2, "EARN", "m-1", "o-2", 200, 323, T + 60, 1),
    ]


def test_same_order_id_other_content_is_already_exists_and_changes_nothing(served):
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    with raises_code(pointsledger.AlreadyExists, "ALREADY_EXISTS"):
        served.client.record_purchase("o-1", "m-1", 12_346, "grocery", T)
    assert len(journal_tuples(served)) == 1


@pytest.mark.parametrize("arguments, field, value", [
    (("", "m-1", 100, "grocery", T), "order_id", ""),
    (("o-1", "m\x07", 100, "grocery", T), "member_id", "m\x07"),
    (("o-1", "m-1", 0, "grocery", T), "amount_minor", 0),
    (("o-1", "m-1", 10**12 + 1, "grocery", T), "amount_minor", 10**12 + 1),
    (("o-1", "m-1", 100, "", T), "category", ""),
    (("o-1", "m-1", 100, "grocery", 0), "time_s", 0),
])
def test_invalid_purchase_names_the_field(served, arguments, field, value):
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", field) as info:
        served.client.record_purchase(*arguments)
    assert repr(value) in str(info.value)
    assert journal_tuples(served) == []


def test_invalid_argument_carries_the_field_in_trailing_metadata(served):
    stub = pb_grpc.LedgerStub(served.client.channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordPurchase(pb.RecordPurchaseRequest(order_id="o-1", member_id="m-1", amount_minor=-5,
                                                     category="grocery", time_s=T))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("pointsledger-field", "amount_minor") in tuple(info.value.trailing_metadata())
    assert info.value.details().startswith("amount_minor:")


def test_purchase_before_any_programme_is_failed_precondition(serve):
    served = serve(program=None)
    with raises_code(pointsledger.FailedPrecondition, "FAILED_PRECONDITION"):
        served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    (result,) = served.client.ingest([{"order_ids": ["o-1", "o-2"], "member_ids": ["m-1", "m-1"],
                                       "amounts_minor": [12_345, 0], "categories": ["grocery"] * 2,
                                       "times_s": [T, T]}])
    assert [item.status for item in result] == ["FAILED_PRECONDITION", "INVALID_ARGUMENT"]  # fields first
    assert isinstance(result[0].error, pointsledger.FailedPrecondition)
    assert journal_tuples(served) == []


def test_refund_redeem_adjust(served):
    client = served.client
    client.record_purchase("o-1", "m-1", 12_345, "grocery", T)  # 123 points
    client.record_purchase("o-2", "m-1", 10_000, "electronics", T)  # 200 points, balance 323
    refund = client.refund("r-1", "o-1", 12_345, T + 10)  # claws back all 123
    assert (refund.status, refund.seq, refund.points, refund.balance) == ("APPLIED", 3, -123, 200)
    redeem = client.redeem("x-1", "m-1", 50, T + 20)
    assert (redeem.status, redeem.seq, redeem.points, redeem.balance) == ("APPLIED", 4, -50, 150)
    adjust = client.adjust("a-1", "m-1", 25, "goodwill", T + 30)
    assert (adjust.status, adjust.seq, adjust.points, adjust.balance) == ("APPLIED", 5, 25, 175)
    assert client.redeem("x-1", "m-1", 50, T + 20).status == "DUPLICATE"
    assert [row[1:5] for row in journal_tuples(served)] == [
        ("EARN", "m-1", "o-1", 123), ("EARN", "m-1", "o-2", 200), ("CLAWBACK", "m-1", "r-1", -123),
        ("REDEEM", "m-1", "x-1", -50), ("ADJUST", "m-1", "a-1", 25),
    ]


def test_refusals_of_refund_redeem_adjust(served):
    client = served.client
    client.record_purchase("o-1", "m-1", 12_345, "grocery", T)  # 123 points
    with raises_code(pointsledger.NotFound, "NOT_FOUND"):
        client.refund("r-1", "no-such-order", 100, T)
    with raises_code(pointsledger.FailedPrecondition, "FAILED_PRECONDITION"):
        client.refund("r-1", "o-1", 12_346, T)  # more than the purchase's amount
    with raises_code(pointsledger.NotFound, "NOT_FOUND"):
        client.redeem("x-1", "nobody", 10, T)
    with raises_code(pointsledger.FailedPrecondition, "FAILED_PRECONDITION"):
        client.redeem("x-1", "m-1", 124, T)  # one more than the member has
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", "points"):
        client.redeem("x-1", "m-1", 0, T)
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", "reason"):
        client.adjust("a-1", "m-1", 5, "", T)
    with raises_code(pointsledger.FailedPrecondition, "FAILED_PRECONDITION"):
        client.adjust("a-1", "m-1", -124, "too much", T)
    with raises_code(pointsledger.NotFound, "NOT_FOUND"):
        client.adjust("a-1", "nobody", 5, "welcome", T)
    assert len(journal_tuples(served)) == 1  # refusals write nothing


# --- streaming ingest ----------------------------------------------------------------------


def columns(order_ids, member_ids, amounts, categories, times):
    return {"order_ids": order_ids, "member_ids": member_ids, "amounts_minor": amounts,
            "categories": categories, "times_s": times}


def test_ingest_answers_each_batch_in_order_with_per_item_codes(served):
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)  # seq 1, balance 123
    batches = [
        columns(["o-2", "o-3"], ["m-1", "m-2"], [10_000, 12_345], ["electronics", "grocery"], [T, T]),
        columns(
            ["o-1", "o-1", "o-4", "o-5", "o-6", "o-4"],
            ["m-1", "m-1", "m-2", "m-2", "m-2", "m-2"],
            [12_345, 999, 0, 100, 100, 100],
            ["grocery", "grocery", "grocery", "grocery", "", "grocery"],
            [T, T, T, 5, T, T],
        ),
        columns([], [], [], [], []),
    ]
    results = list(served.client.ingest(batches, window=2))
    assert len(results) == 3
    first, second, third = results
    assert [(item.status, item.seq, item.points, item.balance) for item in first] == [
        ("APPLIED", 2, 200, 323), ("APPLIED", 3, 123, 123),
    ]
    assert [(item.status, item.seq, item.points, item.balance) for item in second] == [
        ("DUPLICATE", 1, 123, 123),  # the unary purchase: the original result
        ("ALREADY_EXISTS", 0, 0, 0),  # same order id, another amount
        ("INVALID_ARGUMENT", 0, 0, 0),  # amount 0
        ("INVALID_ARGUMENT", 0, 0, 0),  # time 5
        ("INVALID_ARGUMENT", 0, 0, 0),  # empty category
        ("APPLIED", 4, 1, 124),  # o-4's first applied occurrence ...
    ]
    refused = [item.error for item in second if item.error is not None]
    # Each names the request's own column (issue 8): an order id used for another purchase, order_ids.
    assert [(error.code, error.field) for error in refused] == [
        ("ALREADY_EXISTS", "order_ids"), ("INVALID_ARGUMENT", "amounts_minor"), ("INVALID_ARGUMENT", "times_s"),
        ("INVALID_ARGUMENT", "categories"),
    ]
    assert isinstance(refused[1], pointsledger.InvalidArgument) and isinstance(refused[0], pointsledger.AlreadyExists)
    assert (second.applied, second.duplicates, second.rejected) == (1, 1, 4)
    assert len(third) == 0
    assert [row[3] for row in journal_tuples(served)] == ["o-1", "o-2", "o-3", "o-4"]


def test_ingest_results_equal_the_embedded_ledger(served, tmp_path, engine_name):
    """The same batches through the server and straight into a Ledger: the same results and journal."""
    batches = [
        columns([f"o-{batch}-{item}" for item in range(50)], [f"m-{item % 7}" for item in range(50)],
                [1_000 + 37 * item for item in range(50)],
                [("grocery", "electronics", "gift_cards")[item % 3] for item in range(50)],
                [T + 60 * (50 * batch + item) for item in range(50)])
        for batch in range(6)
    ]
    batches.append(batches[2])  # a whole batch again: 50 duplicates
    served_results = [[(item.status, item.seq, item.points, item.balance) for item in result]
                      for result in served.client.ingest(batches, window=3)]
    with Ledger(tmp_path / "embedded", engine=engine_name) as embedded:
        embedded.set_program(example_program())
        embedded_results = [
            [(item.status, item.seq, item.points, item.balance)
             for item in embedded.purchases(*(batch[name] for name in batch))]
            for batch in batches
        ]
        assert served_results == embedded_results
        assert journal_tuples(served) == entries(embedded)
    assert [status for status, *_ in served_results[-1]] == ["DUPLICATE"] * 50


def test_ingest_batch_with_columns_of_different_lengths_ends_the_stream(served):
    batches = [
        columns(["o-1"], ["m-1"], [12_345], ["grocery"], [T]),
        columns(["o-2", "o-3"], ["m-1"], [100, 100], ["grocery", "grocery"], [T, T]),
        columns(["o-4"], ["m-1"], [100], ["grocery"], [T]),
    ]
    received = []
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", "member_ids"):
        for result in served.client.ingest(batches, window=1):
            received.append(result)
    assert [len(result) for result in received] == [1]  # the batch before is answered and kept
    assert [row[3] for row in journal_tuples(served)] == ["o-1"]


def test_ingest_batch_over_the_item_limit_is_resource_exhausted(serve):
    served = serve(stream_batch_items_max=10)
    batches = [
        columns([f"o-{item}" for item in range(10)], ["m-1"] * 10, [100] * 10, ["grocery"] * 10, [T] * 10),
        columns([f"p-{item}" for item in range(11)], ["m-1"] * 11, [100] * 11, ["grocery"] * 11, [T] * 11),
    ]
    received = []
    with raises_code(pointsledger.ResourceExhausted, "RESOURCE_EXHAUSTED"):
        for result in served.client.ingest(batches, window=1):
            received.append(result)
    assert [result.applied for result in received] == [10]
    assert len(journal_tuples(served)) == 10


def test_messages_over_the_size_limit_are_resource_exhausted(serve):
    served = serve(message_bytes_max=64 << 10)
    big = columns([f"o-{item:08d}" for item in range(5_000)], ["m-1"] * 5_000, [100] * 5_000,
                  ["grocery"] * 5_000, [T] * 5_000)  # about 100 KiB
    with raises_code(pointsledger.ResourceExhausted, "RESOURCE_EXHAUSTED"):
        list(served.client.ingest([big]))
    with raises_code(pointsledger.ResourceExhausted, "RESOURCE_EXHAUSTED"):
        served.client.set_program(json.dumps(dict(simple_program(), padding="x" * (100 << 10))))
    assert journal_tuples(served) == []
    # The server is fine afterwards.
    assert served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T).points == 123


def test_client_that_leaves_mid_stream_keeps_its_acknowledged_batches(served):
    batches = [columns([f"o-{batch}-{item}" for item in range(100)], ["m-1"] * 100, [100] * 100,
                       ["grocery"] * 100, [T] * 100) for batch in range(20)]
    acknowledged = []
    for result in served.client.ingest(iter(batches), window=2):
        acknowledged.append(result)
        if len(acknowledged) == 3:
            break  # the client goes away with batches in flight
    refs = {row[3] for row in journal_tuples(served)}
    for batch in batches[:3]:
        assert set(batch["order_ids"]) <= refs
    # Sending everything again counts nothing twice (batches that were in flight may have landed).
    results = list(served.client.ingest(batches, window=4))
    assert sum(result.applied + result.duplicates for result in results) == 2_000
    assert all(item.status == "DUPLICATE" for result in results[:3] for item in result)
    assert len({row[3] for row in journal_tuples(served)}) == len(journal_tuples(served)) == 2_000
    assert served.ledger.verify().ok


# --- queries --------------------------------------------------------------------------------


def test_balance_and_balances(served):
    client = served.client
    client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    balance = client.balance("m-1", as_of_s=T + 1)
    assert balance == pointsledger.results.Balance(
        member_id="m-1", as_of_s=T + 1, balance=123, available=123, debt=0, next_expiry_s=EXPIRES,
        next_expiry_points=123, tier="member", tier_year=2026, spend_minor=12_345, earned=123,
        redeemed=0, expired=0, clawed_back=0, adjusted=0,
    )
    assert balance == served.ledger.balance("m-1", T + 1)
    later = client.balance("m-1", as_of_s=T_2027_06_01)  # past the expiry instant, not yet expired
    assert (later.balance, later.available, later.next_expiry_s) == (123, 0, None)
    with raises_code(pointsledger.NotFound, "NOT_FOUND"):
        client.balance("nobody")
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", "as_of_s"):
        client.balance("m-1", as_of_s=5)
    many = client.balances(["m-1", "nobody", "", "m-1"], as_of_s=T + 1)
    assert many[0] == balance and many[3] == balance
    assert isinstance(many[1], pointsledger.NotFound)
    assert isinstance(many[2], pointsledger.InvalidArgument) and many[2].field == "member_ids"  # the column


def test_list_entries_pages_newest_first(served):
    for number in range(5):
        served.client.record_purchase(f"o-{number}", "m-1", 1_000, "grocery", T + number)
    first = served.client.history("m-1", limit=2)
    assert [entry.ref_id for entry in first.entries] == ["o-4", "o-3"]
    assert first.next_before_seq == 4
    second = served.client.history("m-1", limit=2, before_seq=first.next_before_seq)
    assert [entry.ref_id for entry in second.entries] == ["o-2", "o-1"]
    last = served.client.history("m-1", limit=2, before_seq=second.next_before_seq)
    assert [entry.ref_id for entry in last.entries] == ["o-0"] and last.next_before_seq is None
    assert first.entries[0] == Entry(5, "EARN", "m-1", "o-4", 10, 50, T + 4, 1)
    with raises_code(pointsledger.NotFound, "NOT_FOUND"):
        served.client.history("nobody")
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", "limit"):
        served.client.history("m-1", limit=10**6)


def test_read_journal_from_a_seq_with_a_limit(served):
    numbers = range(2_500)  # more than two chunks of 1,000 entries
    served.ledger.purchases([f"o-{number}" for number in numbers], [f"m-{number % 10}" for number in numbers],
                            [1_000] * 2_500, ["grocery"] * 2_500, [T + number for number in numbers])
    assert [entry.seq for entry in served.client.journal()] == list(range(1, 2_501))
    assert [entry.seq for entry in served.client.journal(from_seq=1_999, limit=3)] == [1_999, 2_000, 2_001]
    assert list(served.client.journal(from_seq=2_501)) == []
    assert list(served.client.journal(from_seq=5, limit=1)) == [
        Entry(5, "EARN", "m-4", "o-4", 10, 10, T + 4, 1)]


def test_read_journal_follows_new_commits(served):
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    follower = served.client.journal(from_seq=1, follow=True, timeout_s=30)
    assert next(follower).ref_id == "o-1"
    started = time.perf_counter()
    served.client.record_purchase("o-2", "m-1", 10_000, "electronics", T)
    assert next(follower) == Entry(2, "EARN", "m-1", "o-2", 200, 323, T, 1)
    list(served.client.ingest([columns(["o-3", "o-4"], ["m-2", "m-2"], [100, 200], ["grocery"] * 2, [T, T])]))
    assert [next(follower).ref_id, next(follower).ref_id] == ["o-3", "o-4"]
    assert time.perf_counter() - started < 5  # woken by the commits, not by polling
    follower.close()


def test_read_journal_follow_ends_at_its_deadline(served):
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    received = []
    with raises_code(DeadlineExceeded, "DEADLINE_EXCEEDED"):
        for entry in served.client.journal(follow=True, timeout_s=0.5):
            received.append(entry.ref_id)
    assert received == ["o-1"]


def test_programme_set_and_get(served):
    client = served.client
    version = client.get_program()
    assert version.version == 1 and version.effective_from_s == 946_684_800
    assert version.document["currency"] == "USD" and version.document["expiry_months"] == 12
    new_document = simple_program(effective_from=T)
    assert client.set_program(json.dumps(new_document)) == 2
    assert client.get_program().version == 2 and client.get_program(1).version == 1
    assert client.get_program().document["tiers"] == [{"min_spend_minor": 0, "multiplier": 1, "name": "member"}]
    # A dict document goes as JSON too.
    assert client.set_program(simple_program(effective_from=T + 1)) == 3
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", "document_json") as info:
        client.set_program(json.dumps({"currency": "usd", "earn": {}, "tiers": [], "point_value": "x"}))
    assert "currency" in str(info.value) and "tiers" in str(info.value)
    with raises_code(pointsledger.FailedPrecondition, "FAILED_PRECONDITION"):
        client.set_program(json.dumps(simple_program(effective_from=T - 1)))  # before version 3's
    with raises_code(pointsledger.NotFound, "NOT_FOUND"):
        client.get_program(99)
    assert client.get_program().version == 3  # refusals use no version number


def test_get_program_without_one_is_not_found(serve):
    with raises_code(pointsledger.NotFound, "NOT_FOUND"):
        serve(program=None).client.get_program()


def test_run_expiry_and_liability(served):
    client = served.client
    client.record_purchase("o-1", "m-1", 12_345, "grocery", T)  # 123 points, expire 2027-04-01
    client.record_purchase("o-2", "m-2", 10_000, "electronics", T)  # 200 points, same instant
    report = client.liability(as_of_s=T + 1)
    assert (report.earned, report.outstanding, report.expired, report.overdue) == (323, 323, 0, 0)
    assert report.currency == "USD" and str(report.point_value) == "0.01"
    assert str(report.outstanding_value) == "3.23" and report.issued == 323
    assert report.outstanding_by_tier == {"member": 323, "silver": 0, "gold": 0}
    assert report == served.ledger.liability(T + 1)
    before = client.liability(as_of_s=EXPIRES - 1)
    assert (before.expiring_30_days, before.expiring_90_days) == (323, 323)
    run = client.run_expiry(as_of_s=EXPIRES)
    assert (run.as_of_s, run.members, run.points) == (EXPIRES, 2, 323)
    assert client.run_expiry(as_of_s=EXPIRES) == pointsledger.results.ExpireResult(EXPIRES, 0, 0)  # safe again
    after = client.liability(as_of_s=EXPIRES)
    assert (after.expired, after.outstanding) == (323, 0)
    assert [row[1:7] for row in journal_tuples(served)[2:]] == [
        ("EXPIRE", "m-1", f"expire-run@{EXPIRES}", -123, 0, EXPIRES),
        ("EXPIRE", "m-2", f"expire-run@{EXPIRES}", -200, 0, EXPIRES),
    ]
    with raises_code(pointsledger.InvalidArgument, "INVALID_ARGUMENT", "as_of_s"):
        client.run_expiry(as_of_s=1)


# --- group commit, deadlines, shutdown ---------------------------------------------------------


def call_in_threads(calls):
    """Run each zero-argument callable in its own thread; return [(result or exception)]."""
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            outcomes[index] = call()
        except Exception as error:  # collected for the assertions
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def wait_until(condition, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_concurrent_writes_share_one_commit(served):
    writer = served.server.writer
    writer.hold()
    commits_before = writer.commits
    calls = [lambda number=number: served.client.record_purchase(f"o-{number}", f"m-{number % 3}", 1_000,
                                                                 "grocery", T)
             for number in range(20)]
    calls += [lambda: served.client.redeem("x-1", "nobody", 5, T)]  # refused inside the group
    threads, outcomes = call_in_threads(calls)
    wait_until(lambda: writer.pending() == 21)
    writer.release()
    for thread in threads:
        thread.join()
    assert writer.commits == commits_before + 1  # one synced commit for all of them
    applied = outcomes[:20]
    assert sorted(result.seq for result in applied) == list(range(1, 21))
    assert all(result.status == "APPLIED" and result.points == 10 for result in applied)
    assert isinstance(outcomes[20], pointsledger.NotFound)
    assert served.server.metrics.registry.get_sample_value("pointsledger_group_commit_size_sum") == 21
    assert served.ledger.verify().ok


class _RecordedSleep:
    """Stands in for `time` in group_commit: counts the writer's waits, runs `during_first` in the
    first, and stops the clock the wait's deadline is read from (so only the queue ends a wait)."""

    def __init__(self, during_first=None):
        self.calls = 0
        self.during_first = during_first
        self.perf_counter = time.perf_counter

    @staticmethod
    def monotonic():
        return 0.0

    def sleep(self, seconds):
        self.calls += 1
        if self.calls == 1 and self.during_first is not None:
            self.during_first()


def _one_group_of(served, count, prefix):
    """Apply `count` purchases as one held group (so the writer has seen company)."""
    writer = served.server.writer
    writer.hold()
    calls = [lambda number=number: served.client.record_purchase(f"{prefix}-{number}", "m-1", 1_000, "grocery", T)
             for number in range(count)]
    threads, outcomes = call_in_threads(calls)
    wait_until(lambda: writer.pending() == count)
    writer.release()
    for thread in threads:
        thread.join()
    assert all(outcome.status == "APPLIED" for outcome in outcomes)


def test_writes_arriving_while_a_group_fills_share_its_commit(served, monkeypatch):
    from pointsledger.service import group_commit

    writer = served.server.writer
    _one_group_of(served, 3, "warm")  # concurrent callers seen: the next group may wait for company
    late_threads, late_outcomes = [], []

    def two_more_arrive():  # runs on the writer thread, inside its first wait
        threads, outcomes = call_in_threads(
            [lambda number=number: served.client.record_purchase(f"late-{number}", "m-2", 1_000, "grocery", T)
             for number in range(2)])
        late_threads.extend(threads)
        late_outcomes.append(outcomes)
        wait_until(lambda: writer.pending() == 2)

    recorded = _RecordedSleep(during_first=two_more_arrive)
    monkeypatch.setattr(group_commit, "time", recorded)
    commits_before = writer.commits
    first = served.client.record_purchase("first", "m-3", 1_000, "grocery", T)
    for thread in late_threads:
        thread.join()
    assert writer.commits == commits_before + 1  # the two late writes joined the first one's commit
    assert recorded.calls == 2  # the queue grew in the first step, not in the second: no third
    assert first.status == "APPLIED" and all(outcome.status == "APPLIED" for outcome in late_outcomes[0])
    assert served.server.metrics.registry.get_sample_value("pointsledger_group_commit_size_sum") == 3 + 3
    assert sorted(entry.ref_id for entry in served.client.journal()) == [
        "first", "late-0", "late-1", "warm-0", "warm-1", "warm-2"]


def test_a_lone_caller_does_not_wait_for_company(serve, monkeypatch):
    from pointsledger.service import group_commit

    served = serve(group_wait_s=1.0)
    recorded = _RecordedSleep()
    monkeypatch.setattr(group_commit, "time", recorded)
    for number in range(3):  # one caller at a time: each group is a group of one
        assert served.client.record_purchase(f"o-{number}", "m-1", 1_000, "grocery", T).status == "APPLIED"
    assert recorded.calls == 0
    assert served.server.writer.commits == 3


def test_group_wait_zero_commits_at_once_and_a_bad_wait_is_refused(serve, monkeypatch):
    from pointsledger.service import group_commit

    served = serve(group_wait_s=0)
    _one_group_of(served, 3, "warm")
    recorded = _RecordedSleep()
    monkeypatch.setattr(group_commit, "time", recorded)
    assert served.client.record_purchase("o-1", "m-1", 1_000, "grocery", T).status == "APPLIED"
    assert recorded.calls == 0
    with pytest.raises(ValueError, match="group_wait_s"):
        group_commit.GroupCommitWriter(served.ledger, served.server.metrics, group_wait_s=-0.001)


def test_a_write_whose_deadline_passes_in_the_queue_is_not_applied(served):
    served.server.writer.hold()
    hurried = LedgerClient(served.address, timeout_s=0.3)
    try:
        with raises_code(DeadlineExceeded, "DEADLINE_EXCEEDED"):
            hurried.record_purchase("o-1", "m-1", 12_345, "grocery", T)
        # The server's deadline is its arrival time plus the call's timeout: later than the
        # client's by the transit time, which a loaded machine stretches. Let it pass too.
        time.sleep(0.5)
    finally:
        hurried.close()
        served.server.writer.release()
    assert served.client.record_purchase("o-2", "m-1", 10_000, "electronics", T).seq == 1
    assert [row[3] for row in journal_tuples(served)] == ["o-2"]


def test_reads_do_not_wait_for_the_writer(served):
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    served.server.writer.hold()
    threads, outcomes = call_in_threads(
        [lambda: served.client.record_purchase("o-2", "m-1", 10_000, "electronics", T)])
    try:
        wait_until(lambda: served.server.writer.pending() == 1)
        started = time.perf_counter()
        assert served.client.balance("m-1").balance == 123  # the last committed state
        assert [entry.ref_id for entry in served.client.journal()] == ["o-1"]
        assert served.client.history("m-1").entries[0].ref_id == "o-1"
        assert served.client.liability().outstanding == 123
        assert time.perf_counter() - started < 5
    finally:
        served.server.writer.release()
        threads[0].join()
    assert outcomes[0].balance == 323


def test_shutdown_answers_queued_writes_then_refuses_with_unavailable(served):
    writer = served.server.writer
    writer.hold()
    calls = [lambda number=number: served.client.record_purchase(f"o-{number}", "m-1", 1_000, "grocery", T)
             for number in range(5)]
    threads, outcomes = call_in_threads(calls)
    wait_until(lambda: writer.pending() == 5)
    stopping = threading.Thread(target=served.background.stop, kwargs={"grace_s": 10})
    stopping.start()
    wait_until(lambda: served.server.servicer.stopping)
    with raises_code(Unavailable, "UNAVAILABLE"), LedgerClient(served.address) as late:
        late.record_purchase("o-late", "m-1", 1_000, "grocery", T)
    writer.release()
    for thread in threads + [stopping]:
        thread.join()
    assert sorted(result.seq for result in outcomes) == [1, 2, 3, 4, 5]  # drained, committed, answered
    assert sorted(row[3] for row in journal_tuples(served)) == [f"o-{number}" for number in range(5)]


def test_a_stream_is_drained_at_shutdown(served):
    writer = served.server.writer
    batches = [columns([f"o-{batch}-{item}" for item in range(10)], ["m-1"] * 10, [100] * 10,
                       ["grocery"] * 10, [T] * 10) for batch in range(50)]
    received = []
    writer.hold()

    def consume():
        try:
            for result in served.client.ingest(iter(batches), window=3):
                received.append(result)
        except pointsledger.LedgerError as error:
            received.append(error)

    consumer = threading.Thread(target=consume)
    consumer.start()
    wait_until(lambda: writer.pending() == 3)  # the window: three batches sent to the writer
    stopping = threading.Thread(target=served.background.stop, kwargs={"grace_s": 10})
    stopping.start()
    wait_until(lambda: served.server.servicer.stopping)
    writer.release()
    consumer.join()
    stopping.join()
    assert [result.applied for result in received[:-1]] == [10, 10, 10]
    assert isinstance(received[-1], Unavailable)
    assert len(journal_tuples(served)) == 30


# --- health, reflection, metrics, logs -----------------------------------------------------


def test_health_is_serving(served):
    stub = health_pb2_grpc.HealthStub(served.client.channel)
    for service in ("", "pointsledger.v1.Ledger"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert served.client.health() == "SERVING"


def test_reflection_lists_the_services_and_describes_the_ledger(served):
    database = ProtoReflectionDescriptorDatabase(served.client.channel)
    services = set(database.get_services())
    assert {"pointsledger.v1.Ledger", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= services
    file_descriptor = database.FindFileContainingSymbol("pointsledger.v1.Ledger")
    assert file_descriptor.package == "pointsledger.v1"
    assert SPEC_RPCS <= {method.name for method in file_descriptor.service[0].method}


def test_metrics_are_served_over_http(serve):
    served = serve(metrics_port=0)
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    with pytest.raises(pointsledger.NotFound):
        served.client.balance("nobody")
    list(served.client.ingest([columns(["o-2"], ["m-1"], [100], ["grocery"], [T])]))
    text = urllib.request.urlopen(f"http://127.0.0.1:{served.server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'pointsledger_requests_total{code="OK",rpc="RecordPurchase"} 1.0' in text
    assert 'pointsledger_requests_total{code="NOT_FOUND",rpc="GetBalance"} 1.0' in text
    assert "pointsledger_commit_seconds_count" in text
    assert "pointsledger_group_commit_size_bucket" in text
    assert 'pointsledger_ingest_batch_size_count 1.0' in text
    assert "pointsledger_journal_entries_total 2.0" in text


def test_a_full_category_dictionary_is_resource_exhausted_over_grpc(served, monkeypatch):
    # The server runs in this process: a dictionary of two categories stands in for 2^32 - 1.
    monkeypatch.setattr(pointsledger.limits, "categories_max", 2)
    served.client.record_purchase("o-1", "m-1", 100, "grocery", T)
    served.client.record_purchase("o-2", "m-1", 100, "toys", T)
    message = "category 'books': the ledger already holds 2 categories, its most; use one of them"
    with raises_code(pointsledger.ResourceExhausted, "RESOURCE_EXHAUSTED") as refused:
        served.client.record_purchase("o-3", "m-1", 100, "books", T)
    assert message in str(refused.value)
    (batch,) = served.client.ingest([columns(["o-3", "o-4"], ["m-1", "m-1"], [100, 100], ["books", "toys"], [T, T])])
    assert [item.status for item in batch] == ["RESOURCE_EXHAUSTED", "APPLIED"]
    assert message in str(batch[0].error)
    assert [row[3] for row in journal_tuples(served)] == ["o-1", "o-2", "o-4"]


def test_already_exists_over_grpc_names_the_fields_that_differ(served):
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    with raises_code(pointsledger.AlreadyExists, "ALREADY_EXISTS") as refused:
        served.client.record_purchase("o-1", "m-2", 12_346, "grocery", T)
    assert ("order_id 'o-1' was already used for a different purchase: member_id stored 'm-1', sent 'm-2'; "
            "amount_minor stored 12345, sent 12346") in str(refused.value)


def test_the_category_count_is_a_metric(serve):
    served = serve(metrics_port=0)
    list(served.client.ingest([columns(["o-1", "o-2", "o-3"], ["m-1", "m-1", "m-2"], [100, 200, 300],
                                       ["grocery", "toys", "grocery"], [T, T, T])]))
    text = urllib.request.urlopen(f"http://127.0.0.1:{served.server.metrics_port}/metrics", timeout=5).read().decode()
    assert "\npointsledger_categories 2.0\n" in text
    served.client.record_purchase("o-4", "m-2", 100, "books", T)
    assert served.server.metrics.registry.get_sample_value("pointsledger_categories") == 3


def test_log_lines_are_json():
    formatter = JsonLogFormatter()
    record = logging.LogRecord("pointsledger.service", logging.INFO, __file__, 1, "serving", (), None)
    record.fields = {"port": 50051, "engine": "cython"}
    line = json.loads(formatter.format(record))
    assert line["event"] == "serving" and line["level"] == "info" and line["port"] == 50051


def test_a_follower_is_told_unavailable_when_the_server_stops(served):
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    follower = served.client.journal(follow=True, timeout_s=30)
    assert next(follower).ref_id == "o-1"
    stopping = threading.Thread(target=served.background.stop, kwargs={"grace_s": 10})
    stopping.start()
    with raises_code(Unavailable, "UNAVAILABLE") as info:
        next(follower)
    assert "follow again from seq 2" in str(info.value)
    stopping.join()


def test_an_unexpected_failure_of_a_commit_is_internal_and_the_server_goes_on(served, monkeypatch):
    real_apply_group = served.ledger.apply_group

    def failing(requests):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(served.ledger, "apply_group", failing)
    with raises_code(pointsledger.LedgerError, "INTERNAL") as info:
        served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    assert "disk on fire" not in str(info.value)  # internals stay in the server's log
    monkeypatch.setattr(served.ledger, "apply_group", real_apply_group)
    assert served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T).seq == 1
    assert served.server.metrics.count("RecordPurchase", "INTERNAL") == 1


def test_batches_queued_together_share_one_commit_and_keep_their_own_results(served):
    writer = served.server.writer
    batches = [columns([f"o-{batch}-{item}" for item in range(4)], ["m-1", "m-2", "m-1", "m-2"],
                       [10_000, 10_000, 10_000, 10_000], ["grocery"] * 4, [T] * 4) for batch in range(3)]
    batches[1]["order_ids"][2] = "o-0-0"  # m-1's first purchase again: a duplicate across batches
    writer.hold()
    commits_before = writer.commits
    received = []
    consumer = threading.Thread(target=lambda: received.extend(served.client.ingest(batches, window=3)))
    consumer.start()
    wait_until(lambda: writer.pending() == 3)
    writer.release()
    consumer.join()
    assert writer.commits == commits_before + 1
    assert [[(item.status, item.seq, item.balance) for item in result] for result in received] == [
        [("APPLIED", 1, 100), ("APPLIED", 2, 100), ("APPLIED", 3, 200), ("APPLIED", 4, 200)],
        [("APPLIED", 5, 300), ("APPLIED", 6, 300), ("DUPLICATE", 1, 100), ("APPLIED", 7, 400)],
        # m-2's sixth purchase is made at silver (50,000 cents spent before it): 125 points.
        [("APPLIED", 8, 400), ("APPLIED", 9, 500), ("APPLIED", 10, 500), ("APPLIED", 11, 625)],
    ]


def test_a_stream_past_its_deadline_ends_and_its_unanswered_batch_is_not_applied(served):
    served.server.writer.hold()
    try:
        with raises_code(DeadlineExceeded, "DEADLINE_EXCEEDED"):
            list(served.client.ingest([columns(["o-1"], ["m-1"], [12_345], ["grocery"], [T])], timeout_s=0.3))
        wait_until(lambda: served.server.metrics.count("IngestPurchases", "CANCELLED") == 1)
    finally:
        served.server.writer.release()
    assert served.client.record_purchase("o-2", "m-1", 10_000, "electronics", T).seq == 1
    assert [row[3] for row in journal_tuples(served)] == ["o-2"]


def test_refused_reads_do_not_hold_lmdb_reader_slots(served):
    """py-lmdb frees a read transaction's reader slot with the transaction object, and a
    refusal's traceback keeps that object alive: 300 refusals with the garbage collector
    off would exhaust the 256 slots if the service kept the tracebacks."""
    served.client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
    gc.disable()
    try:
        for _ in range(300):
            with raises_code(pointsledger.NotFound, "NOT_FOUND"):
                served.client.balance("nobody")
            with raises_code(pointsledger.NotFound, "NOT_FOUND"):
                served.client.history("nobody")
        held = served.ledger.store.env.readers().strip().count("\n")  # a header line, then one per slot
        assert held < 10, served.ledger.store.env.readers()
        assert served.client.balance("m-1").balance == 123
    finally:
        gc.enable()


# --- engagement (SPEC §14, §17) ---------------------------------------------------------------


def test_a_client_registers_a_referral_and_sees_both_bonuses_after_the_purchase(serve):
    served = serve(program=simple_program(
        welcome_bonus=100, referral={"referrer_points": 500, "referee_points": 250},
        milestones=[{"id": "two", "purchases": 2, "bonus_points": 30}], pending_days=30))
    client = served.client
    client.record_purchase("o-1", "alice", 10_000, "grocery", T)  # 100 + welcome 100
    registered = client.register_referral("ref-1", "alice", "bob", T)
    assert (registered.duplicate, registered.settled, registered.order_id) == (False, False, None)
    assert client.register_referral("ref-1", "alice", "bob", T).duplicate
    result = client.record_purchase("o-2", "bob", 5_000, "grocery", T)
    # bob: 50 + welcome 100 + referral 250 = 400; then alice's 500.
    assert (result.seq, result.points, result.balance) == (3, 50, 400)
    assert result.bonuses == (pointsledger.Bonus("bob", "welcome", 100), pointsledger.Bonus("bob", "referral:ref-1", 250),
                              pointsledger.Bonus("alice", "referral:ref-1", 500))
    settled = client.get_referral("ref-1")
    assert (settled.settled, settled.order_id) == (True, "o-2")
    batch = client.purchases(["o-3", "o-4"], ["alice", "carol"], [1_000, 1_000], ["grocery"] * 2, [T, T])
    assert [item.bonuses for item in batch] == [
        (pointsledger.Bonus("alice", "milestone:two", 30),), (pointsledger.Bonus("carol", "welcome", 100),)]
    balance = client.balance("alice", T)
    # alice: 100 + 100 + 500 + 10 + 30 = 740, all pending until 30 days after T.
    assert (balance.balance, balance.available, balance.pending, balance.bonus) == (740, 0, 740, 630)
    assert balance.next_release_s == T + 30 * 86_400
    assert [(each.milestone_id, each.progress, each.reached) for each in balance.milestones] == [("two", 2, True)]
    # alice 100 + 500 + 30, bob 100 + 250, carol 100.
    assert client.liability(T).bonus == 1_080
    entry_kinds = [entry.kind for entry in client.journal()]
    assert entry_kinds.count("BONUS") == 6


def test_profiles_over_grpc_and_refusals_name_the_field(serve):
    served = serve(program=simple_program(birthday={"multiplier": 2}))
    client = served.client
    assert client.set_member_profile("m", "03-20").birthday == "03-20"
    assert client.get_member_profile("m").birthday == "03-20"
    assert client.record_purchase("o-1", "m", 10_000, "grocery", T).points == 200
    with pytest.raises(pointsledger.InvalidArgument) as refused:
        client.set_member_profile("m", "02-30")
    assert refused.value.field == "birthday"
    with pytest.raises(pointsledger.NotFound):
        client.get_member_profile("nobody")
    with pytest.raises(pointsledger.InvalidArgument) as refused:
        client.register_referral("ref-1", "m", "m", T)
    assert refused.value.field == "referee_id"
    with pytest.raises(pointsledger.FailedPrecondition) as refused:
        client.redeem("rd-1", "m", 1_000, T)
    assert refused.value.field == "points"
    assert client.set_member_profile("m", None).birthday is None
