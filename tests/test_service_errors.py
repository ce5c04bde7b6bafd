"""Errors any gRPC client can read, and hostile bytes (issue 8, items 2 and 3; SPEC §10).

A real server on 127.0.0.1 port 0. The status details are read the way a client in
another language reads them: from the `grpc-status-details-bin` trailer, as a
google.rpc.Status (here with grpcio-status over raw stubs, not pointsledger's client).

Programme: the §3 example, so 12,345 cents of groceries earn 123 points.
"""

import json
import logging
import random
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import pointsledger
from pointsledger import Ledger
from pointsledger.client import LedgerClient
from pointsledger.service import BackgroundServer
from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from support import T_2026_03_15, entries, example_program, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z


@pytest.fixture
def served(tmp_path, engine_name):
    ledger = Ledger(tmp_path / "ledger", engine=engine_name)
    ledger.set_program(example_program())
    background = BackgroundServer(ledger, tokens={"writer-token-0123456789": ["write", "read"]})
    channel = grpc.insecure_channel(f"127.0.0.1:{background.port}")
    yield ledger, background, pb_grpc.LedgerStub(channel)
    channel.close()
    background.stop()
    ledger.close()


WRITER = (("authorization", "Bearer writer-token-0123456789"),)


def details_of(call, request, metadata=WRITER):
    """(status code name, BadRequest or None, ErrorInfo) of a call that fails."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10, metadata=metadata)
    status = rpc_status.from_call(info.value)
    assert status is not None, "no google.rpc.Status in the trailers"
    bad_request, error_info = None, None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
    assert error_info is not None and error_info.domain == "pointsledger"
    return info.value.code().name, bad_request, error_info


def purchase(order_id, amount_minor=12_345, member_id="m-1"):
    return pb.RecordPurchaseRequest(order_id=order_id, member_id=member_id, amount_minor=amount_minor,
                                    category="grocery", time_s=T)


def test_invalid_argument_carries_a_bad_request_field_violation(served):
    _, _, stub = served
    code, bad_request, error_info = details_of(stub.RecordPurchase, purchase("o-1", amount_minor=0))
    assert code == "INVALID_ARGUMENT"
    (violation,) = bad_request.field_violations
    assert violation.field == "amount_minor"
    assert violation.description.startswith("amount_minor:")
    assert (error_info.reason, dict(error_info.metadata)) == ("INVALID_FIELD", {"field": "amount_minor"})


def test_refusals_carry_error_info_with_reason_and_numbers(served):
    ledger, _, stub = served
    stub.RecordPurchase(purchase("o-1"), timeout=10, metadata=WRITER)  # 123 points
    code, bad_request, info = details_of(stub.Redeem, pb.RedeemRequest(
        redemption_id="r-1", member_id="m-1", points=500, time_s=T + 1))
    assert (code, bad_request) == ("FAILED_PRECONDITION", None)
    assert info.reason == "INSUFFICIENT_POINTS"
    assert dict(info.metadata) == {"field": "points", "available_points": "123", "requested_points": "500"}

    code, _, info = details_of(stub.Refund, pb.RefundRequest(refund_id="f-1", order_id="o-1",
                                                             amount_minor=20_000, time_s=T + 1))
    assert (code, info.reason) == ("FAILED_PRECONDITION", "REFUND_EXCEEDS_AMOUNT")
    assert dict(info.metadata) == {"field": "amount_minor", "order_amount_minor": "12345",
                                   "refunded_minor": "0", "refundable_minor": "12345"}

    code, _, info = details_of(stub.GetBalance, pb.GetBalanceRequest(member_id="nobody"))
    assert (code, info.reason, dict(info.metadata)) == ("NOT_FOUND", "MEMBER_NOT_FOUND", {"field": "member_id"})
    code, _, info = details_of(stub.Refund, pb.RefundRequest(refund_id="f-2", order_id="o-404",
                                                             amount_minor=1, time_s=T + 1))
    assert (code, info.reason, dict(info.metadata)) == ("NOT_FOUND", "ORDER_NOT_FOUND", {"field": "order_id"})

    # The same order id for another purchase: the engine names no field, the request's id is meant.
    code, _, info = details_of(stub.RecordPurchase, purchase("o-1", amount_minor=999))
    assert (code, info.reason, dict(info.metadata)) == (
        "ALREADY_EXISTS", "ID_REUSED", {"field": "order_id", "differing_fields": "amount_minor"})
    stub.Redeem(pb.RedeemRequest(redemption_id="r-2", member_id="m-1", points=5, time_s=T + 1), timeout=10,
                metadata=WRITER)
    code, _, info = details_of(stub.Redeem, pb.RedeemRequest(redemption_id="r-2", member_id="m-1", points=6,
                                                             time_s=T + 1))
    assert (code, info.reason, dict(info.metadata)) == (
        "ALREADY_EXISTS", "ID_REUSED", {"field": "redemption_id", "differing_fields": "points"})

    code, _, info = details_of(stub.GetBalances, pb.GetBalancesRequest(member_ids=["m"] * 10_001))
    assert (code, info.reason, dict(info.metadata)) == ("RESOURCE_EXHAUSTED", "LIMIT_EXCEEDED",
                                                        {"field": "member_ids"})
    assert [row[3] for row in entries(ledger)] == ["o-1", "r-2"]  # none of the refusals wrote anything


def test_authentication_refusals_carry_error_info(served):
    _, _, stub = served
    code, _, info = details_of(stub.GetBalance, pb.GetBalanceRequest(member_id="m-1"), metadata=())
    assert (code, info.reason) == ("UNAUTHENTICATED", "TOKEN_MISSING_OR_UNKNOWN")
    code, _, info = details_of(stub.RunExpiry, pb.RunExpiryRequest())
    assert (code, info.reason, dict(info.metadata)) == ("PERMISSION_DENIED", "SCOPE_MISSING", {"scope": "admin"})


def test_the_python_client_reads_the_details_into_the_same_exceptions(served):
    _, background, _ = served
    with LedgerClient(f"127.0.0.1:{background.port}", token="writer-token-0123456789") as client:
        client.record_purchase("o-1", "m-1", 12_345, "grocery", T)
        with pytest.raises(pointsledger.FailedPrecondition) as info:
            client.redeem("r-1", "m-1", 500, T + 1)
        assert (info.value.field, info.value.reason_code) == ("points", "INSUFFICIENT_POINTS")
        assert info.value.info == {"field": "points", "available_points": "123", "requested_points": "500"}
        with pytest.raises(pointsledger.InvalidArgument) as info:
            client.record_purchase("o-2", "m-1", 12_345, "", T)
        assert (info.value.field, info.value.reason_code) == ("category", "INVALID_FIELD")


def test_batch_item_errors_name_the_request_columns(served):
    ledger, background, _ = served
    with LedgerClient(f"127.0.0.1:{background.port}", token="writer-token-0123456789") as client:
        (result,) = client.ingest([{
            "order_ids": ["o-1", "o-1", "o-2"], "member_ids": ["m-1", "m-1", "m-1"],
            "amounts_minor": [12_345, 500, -1], "categories": ["grocery"] * 3, "times_s": [T] * 3,
        }])
    # The second o-1 (another amount) in the same batch is ALREADY_EXISTS on order_ids.
    assert [(item.status, item.error.field if item.error else None) for item in result] == [
        ("APPLIED", None), ("ALREADY_EXISTS", "order_ids"), ("INVALID_ARGUMENT", "amounts_minor")]
    assert [row[3] for row in entries(ledger)] == ["o-1"]


def test_deeply_nested_programme_json_is_invalid_argument(served):
    ledger, background, _ = served
    admin_ledger_server = BackgroundServer(ledger)  # no tokens: SetProgram is allowed
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{admin_ledger_server.port}")
        stub = pb_grpc.LedgerStub(channel)
        for depth in (33, 100_000):
            document = "[" * depth + "]" * depth
            code, bad_request, info = details_of(stub.SetProgram, pb.SetProgramRequest(document_json=document), ())
            assert (code, bad_request.field_violations[0].field, info.reason) == (
                "INVALID_ARGUMENT", "document_json", "INVALID_PROGRAM")
            assert "nested deeper than 32 levels" in bad_request.field_violations[0].description
        assert stub.GetProgram(pb.GetProgramRequest(), timeout=10).version == 1  # nothing stored
        channel.close()
    finally:
        admin_ledger_server.stop()


# --- hostile bytes -------------------------------------------------------------------------

SERVICE = pb.DESCRIPTOR.services_by_name["Ledger"]
VALID_REQUESTS = {
    "RecordPurchase": purchase("o-1"),
    "IngestPurchases": pb.IngestPurchasesRequest(order_ids=["o-1"], member_ids=["m-1"], amounts_minor=[100],
                                                 categories=["toys"], times_s=[T], batch_id="b"),
    "Refund": pb.RefundRequest(refund_id="f-1", order_id="o-1", amount_minor=100, time_s=T),
    "Redeem": pb.RedeemRequest(redemption_id="r-1", member_id="m-1", points=5, time_s=T),
    "Adjust": pb.AdjustRequest(adjustment_id="a-1", member_id="m-1", points=5, reason="goodwill", time_s=T),
    "GetBalance": pb.GetBalanceRequest(member_id="m-1", as_of_s=T),
    "GetBalances": pb.GetBalancesRequest(member_ids=["m-1", "m-2"], as_of_s=T),
    "ListEntries": pb.ListEntriesRequest(member_id="m-1", limit=10, before_seq=5),
    "ReadJournal": pb.ReadJournalRequest(from_seq=1, limit=10),
    "SetProgram": pb.SetProgramRequest(document_json='{"earn": {}}', effective_from_s=T),
    "GetProgram": pb.GetProgramRequest(version=1),
    "RunExpiry": pb.RunExpiryRequest(as_of_s=T),
    "GetLiability": pb.GetLiabilityRequest(as_of_s=T),
    "GetRollforward": pb.GetRollforwardRequest(from_s=1_767_225_600, to_s=1_798_761_600),
    "Verify": pb.VerifyRequest(shard=1, shards=2),
    "RegisterReferral": pb.RegisterReferralRequest(referral_id="ref-1", referrer_id="m-1", referee_id="m-2",
                                                   time_s=T),
    "GetReferral": pb.GetReferralRequest(referral_id="ref-1"),
    "SetMemberProfile": pb.SetMemberProfileRequest(member_id="m-1", birthday="03-15"),
    "GetMemberProfile": pb.GetMemberProfileRequest(member_id="m-1"),
    "Simulate": pb.SimulateRequest(document_json=json.dumps(simple_program()), from_s=T, to_s=T + 86_400),
    "SetRedemptionEstimate": pb.SetRedemptionEstimateRequest(estimate_id="e-1", effective_from_s=T, rate="0.95"),
    "GetRevenue": pb.GetRevenueRequest(from_s=1_767_225_600, to_s=1_798_761_600, cohort="year"),
}


def does_not_decode(message_class, data):
    try:
        message_class.FromString(data)
    except Exception:
        return True
    return False


def malformed_messages(rng, method, count):
    """`count` byte strings that are not a valid request of `method` (checked): random bytes,
    truncations and bit flips of a valid request, and invalid UTF-8 in a string field."""
    request_class = VALID_REQUESTS[method.name].__class__
    valid = VALID_REQUESTS[method.name].SerializeToString()
    string_fields = [field.number for field in request_class.DESCRIPTOR.fields
                     if field.type == field.TYPE_STRING]
    found = []
    while len(found) < count:
        kind = rng.randrange(4)
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        elif kind == 1:
            data = valid[:rng.randrange(1, len(valid))]
        elif kind == 2:
            flipped = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            data = bytes(flipped)
        elif string_fields:
            number = rng.choice(string_fields)
            junk = bytes([0xC3, 0x28, 0xFF, 0xFE][:rng.randrange(1, 5)])
            data = valid + bytes([number << 3 | 2, len(junk)]) + junk
        else:
            continue
        if does_not_decode(request_class, data):
            found.append(data)
    return found


def raw_call(channel, method, data):
    """Send raw bytes as the request of `method`; the status code name it ends with."""
    path = f"/{SERVICE.full_name}/{method.name}"
    try:
        if method.client_streaming:
            responses = channel.stream_stream(path)(iter([data]), timeout=10)
            list(responses)
        elif method.server_streaming:
            list(channel.unary_stream(path)(data, timeout=10))
        else:
            channel.unary_unary(path)(data, timeout=10)
    except grpc.RpcError as error:
        return error.code().name, error
    return "OK", None


def test_malformed_requests_to_every_rpc_are_invalid_argument_and_write_nothing(tmp_path, caplog):
    rng = random.Random(8)  # seeded: the same messages every run
    per_method = {method.name: 60 if method.client_streaming else 250 for method in SERVICE.methods}
    assert set(per_method) == set(VALID_REQUESTS)  # every RPC of the service is fuzzed
    with Ledger(tmp_path / "ledger") as ledger:
        ledger.set_program(example_program())
        ledger.purchase("o-0", "m-1", 12_345, "grocery", T)
        before = entries(ledger)
        caplog.set_level(logging.INFO)
        started = time.monotonic()
        with BackgroundServer(ledger) as background, grpc.insecure_channel(f"127.0.0.1:{background.port}") as channel:
            outcomes = {}
            for method in SERVICE.methods:
                for data in malformed_messages(rng, method, per_method[method.name]):
                    code, error = raw_call(channel, method, data)
                    outcomes[code] = outcomes.get(code, 0) + 1
                    if code == "INVALID_ARGUMENT":
                        (violation,) = _bad_request(error).field_violations
                        assert violation.reason == "MALFORMED_REQUEST"
            counted = {method.name: background.server.metrics.registry.get_sample_value(
                "pointsledger_malformed_requests_total", {"rpc": method.name}) for method in SERVICE.methods}
        seconds = time.monotonic() - started
        assert outcomes == {"INVALID_ARGUMENT": sum(per_method.values())}
        assert counted == {name: float(count) for name, count in per_method.items()}
        assert entries(ledger) == before  # nothing written
        assert ledger.get_program().version == 1
    malformed_lines = [record for record in caplog.records if record.getMessage() == "malformed request"]
    assert 1 <= len(malformed_lines) <= 1 + int(seconds // 10)  # rate-limited: one per 10 s
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]  # no tracebacks


def _bad_request(error):
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return bad_request
    raise AssertionError("no BadRequest")


def test_engagement_refusals_name_their_reason_and_field(served):
    _, _, stub = served
    for order_id, member_id in (("o-1", "m-1"), ("o-2", "m-2")):  # two members
        stub.RecordPurchase(purchase(order_id, member_id=member_id), timeout=10, metadata=WRITER)
    code, _, info = details_of(stub.RegisterReferral, pb.RegisterReferralRequest(
        referral_id="ref-1", referrer_id="nobody1", referee_id="new-1", time_s=T))
    assert (code, info.reason, dict(info.metadata)) == ("NOT_FOUND", "MEMBER_NOT_FOUND", {"field": "referrer_id"})
    code, _, info = details_of(stub.GetReferral, pb.GetReferralRequest(referral_id="nope"))
    assert (code, info.reason, dict(info.metadata)) == ("NOT_FOUND", "REFERRAL_NOT_FOUND", {"field": "referral_id"})
    code, _, info = details_of(stub.GetMemberProfile, pb.GetMemberProfileRequest(member_id="nope"))
    assert (code, info.reason, dict(info.metadata)) == ("NOT_FOUND", "PROFILE_NOT_FOUND", {"field": "member_id"})

    stub.RegisterReferral(pb.RegisterReferralRequest(referral_id="ref-1", referrer_id="m-1", referee_id="new-1",
                                                     time_s=T), timeout=10, metadata=WRITER)
    code, _, info = details_of(stub.RegisterReferral, pb.RegisterReferralRequest(
        referral_id="ref-1", referrer_id="m-1", referee_id="new-2", time_s=T))
    assert (code, info.reason, dict(info.metadata)) == (
        "ALREADY_EXISTS", "ID_REUSED", {"field": "referral_id", "differing_fields": "referee_id"})
    for referral_id, referee_id in (("ref-2", "new-1"), ("ref-3", "m-2")):  # already referred; already a member
        code, _, info = details_of(stub.RegisterReferral, pb.RegisterReferralRequest(
            referral_id=referral_id, referrer_id="m-1", referee_id=referee_id, time_s=T))
        assert (code, info.reason, dict(info.metadata)) == (
            "FAILED_PRECONDITION", "REFEREE_NOT_ELIGIBLE", {"field": "referee_id"})


def test_set_program_errors_name_the_request_fields(served):
    ledger, _, _ = served
    admin_server = BackgroundServer(ledger)  # no tokens: SetProgram is allowed
    channel = grpc.insecure_channel(f"127.0.0.1:{admin_server.port}")
    try:
        stub = pb_grpc.LedgerStub(channel)
        document = simple_program()
        del document["effective_from"]  # the request's effective_from_s says when
        code, bad_request, info = details_of(stub.SetProgram, pb.SetProgramRequest(document_json='{"earn": 5}'), ())
        assert (code, bad_request.field_violations[0].field, info.reason, dict(info.metadata)) == (
            "INVALID_ARGUMENT", "document_json", "INVALID_PROGRAM", {"field": "document_json"})
        code, bad_request, info = details_of(stub.SetProgram, pb.SetProgramRequest(
            document_json=json.dumps(document), effective_from_s=-1), ())
        assert (code, bad_request.field_violations[0].field, info.reason, dict(info.metadata)) == (
            "INVALID_ARGUMENT", "effective_from_s", "INVALID_FIELD", {"field": "effective_from_s"})
        stub.SetProgram(pb.SetProgramRequest(document_json=json.dumps(document), effective_from_s=T + 100),
                        timeout=10)  # version 2
        code, bad_request, info = details_of(stub.SetProgram, pb.SetProgramRequest(
            document_json=json.dumps(document), effective_from_s=T), ())
        assert (code, bad_request, info.reason, info.metadata["field"]) == (
            "FAILED_PRECONDITION", None, "EFFECTIVE_FROM_BEFORE_LATEST", "effective_from_s")
        assert stub.GetProgram(pb.GetProgramRequest(), timeout=10).version == 2  # no version 3
    finally:
        channel.close()
        admin_server.stop()
