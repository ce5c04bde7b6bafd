"""What a client in another language notices (issue 8, item 7): reflection v1, the proto's
language options, the --insecure warning, and what write results and the liability report carry.

A real server on 127.0.0.1 port 0 over the §3 example programme: 12,345 cents of groceries
earn 123 points; one point is worth 0.01 (point_value "0.01" in USD).
"""

import logging

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from pointsledger import Ledger
from pointsledger.service import BackgroundServer, check_bind_policy
from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from support import T_2026_03_15, example_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z


@pytest.fixture
def stub(tmp_path, engine_name):
    ledger = Ledger(tmp_path / "ledger", engine=engine_name)
    ledger.set_program(example_program())
    background = BackgroundServer(ledger)
    channel = grpc.insecure_channel(f"127.0.0.1:{background.port}")
    yield pb_grpc.LedgerStub(channel), channel
    channel.close()
    background.stop()
    ledger.close()


def reflect(channel, version, request):
    """One ServerReflectionInfo exchange over grpc.reflection.<version> (the messages are the same)."""
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    (response,) = list(call(iter([request]), timeout=10))
    return response


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_answers_as_v1_and_v1alpha(stub, version):
    _, channel = stub
    listed = reflect(channel, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert names == {"pointsledger.v1.Ledger", "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
    described = reflect(channel, version, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="pointsledger.v1.Ledger"))
    files = described.file_descriptor_response.file_descriptor_proto
    assert files  # the ledger's file (and what it imports)
    v1_itself = reflect(channel, version, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    assert v1_itself.file_descriptor_response.file_descriptor_proto


def test_the_proto_has_the_usual_language_options():
    options = pb.DESCRIPTOR.GetOptions()
    assert (options.go_package, options.java_package, options.java_multiple_files, options.csharp_namespace,
            options.ruby_package, options.php_namespace) == (
        "github.com/pointsledger/pointsledger/gen/go/pointsledger/v1;pointsledgerv1", "io.pointsledger.v1", True,
        "PointsLedger.V1", "PointsLedger::V1", "PointsLedger\\V1")


def test_insecure_on_a_non_loopback_address_is_allowed_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="pointsledger")
    check_bind_policy("0.0.0.0:50051", None, insecure=True)  # only the policy: nothing is bound
    (record,) = caplog.records
    assert (record.levelname, record.getMessage()) == ("WARNING", "serving without tokens on a non-loopback address")
    assert record.fields["address"] == "0.0.0.0:50051"
    caplog.clear()
    check_bind_policy("127.0.0.1:50051", None, insecure=True)
    check_bind_policy("0.0.0.0:50051", object(), insecure=False)  # tokens: no warning here
    assert caplog.records == []


def test_write_results_carry_the_member_the_programme_version_the_tier_and_the_refunded_amount(stub):
    stub, _ = stub
    purchase = stub.RecordPurchase(pb.RecordPurchaseRequest(
        order_id="o-1", member_id="m-1", amount_minor=12_345, category="grocery", time_s=T), timeout=10)
    assert (purchase.seq, purchase.points, purchase.member_id, purchase.program_version, purchase.tier) == (
        1, 123, "m-1", 1, "member")
    # 60,000 cents more: earned at "member" (the tier held before it), then m-1 holds silver (50,000).
    big = stub.RecordPurchase(pb.RecordPurchaseRequest(
        order_id="o-2", member_id="m-1", amount_minor=60_000, category="grocery", time_s=T + 10), timeout=10)
    assert (big.points, big.tier) == (600, "member")
    small = stub.RecordPurchase(pb.RecordPurchaseRequest(
        order_id="o-3", member_id="m-1", amount_minor=1_000, category="grocery", time_s=T + 20), timeout=10)
    assert (small.points, small.tier) == (12, "silver")  # floor(10 x 1.25)
    again = stub.RecordPurchase(pb.RecordPurchaseRequest(
        order_id="o-3", member_id="m-1", amount_minor=1_000, category="grocery", time_s=T + 20), timeout=10)
    assert (again.duplicate, again.seq, again.points, again.tier) == (True, 3, 12, "")
    # A refund names no member in its request: the result says whose points were clawed back,
    # and how much of the order is refunded so far.
    refund = stub.Refund(pb.RefundRequest(refund_id="f-1", order_id="o-1", amount_minor=2_345, time_s=T + 30),
                         timeout=10)
    assert (refund.seq, refund.points, refund.balance, refund.member_id, refund.program_version,
            refund.refunded_minor) == (4, -23, 712, "m-1", 1, 2_345)  # floor(123 x 2,345 / 12,345) = 23
    second = stub.Refund(pb.RefundRequest(refund_id="f-2", order_id="o-1", amount_minor=1_000, time_s=T + 40),
                         timeout=10)
    assert (second.points, second.refunded_minor) == (-10, 3_345)  # floor(123 x 3,345 / 12,345) - 23 = 10
    resent = stub.Refund(pb.RefundRequest(refund_id="f-1", order_id="o-1", amount_minor=2_345, time_s=T + 30),
                         timeout=10)
    assert (resent.duplicate, resent.seq, resent.member_id, resent.refunded_minor) == (True, 4, "m-1", 3_345)
    redeem = stub.Redeem(pb.RedeemRequest(redemption_id="r-1", member_id="m-1", points=40, time_s=T + 50),
                         timeout=10)
    assert (redeem.points, redeem.balance, redeem.member_id, redeem.tier, redeem.refunded_minor) == (
        -40, 662, "m-1", "", 0)


def test_every_liability_total_has_its_money_value(stub):
    stub, _ = stub
    stub.RecordPurchase(pb.RecordPurchaseRequest(
        order_id="o-1", member_id="m-1", amount_minor=12_345, category="grocery", time_s=T), timeout=10)
    stub.Redeem(pb.RedeemRequest(redemption_id="r-1", member_id="m-1", points=40, time_s=T + 1), timeout=10)
    report = stub.GetLiability(pb.GetLiabilityRequest(as_of_s=T + 2), timeout=10)
    assert report.point_value == "0.01"
    assert (report.earned, report.earned_value) == (123, "1.23")
    assert (report.redeemed, report.redeemed_value) == (40, "0.40")
    assert (report.outstanding, report.outstanding_value) == (83, "0.83")
    assert (report.issued, report.issued_value) == (123, "1.23")
    assert (report.expired_value, report.clawed_back_value, report.adjusted_positive_value,
            report.adjusted_negative_value, report.overdue_value) == ("0.00", "0.00", "0.00", "0.00", "0.00")
    assert (report.expiring_30_days_value, report.expiring_60_days_value, report.expiring_90_days_value) == (
        "0.00", "0.00", "0.00")
    assert [(tier.tier, tier.points, tier.value) for tier in report.outstanding_by_tier] == [
        ("member", 83, "0.83"), ("silver", 0, "0.00"), ("gold", 0, "0.00")]
