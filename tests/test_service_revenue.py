"""GetRevenue and SetRedemptionEstimate (SPEC §19) on a real server on 127.0.0.1, over both engines."""

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pointsledger import Ledger
from pointsledger.client import LedgerClient
from pointsledger.service import BackgroundServer
from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from test_revenue import DAY, IFRS_PROGRAM, Y1, Y2, Y3


@pytest.fixture
def served(tmp_path, engine_name):
    ledger = Ledger(tmp_path / "ledger", engine=engine_name)
    ledger.set_program(IFRS_PROGRAM)
    ledger.purchase("o-1", "m-1", 10_000_000, "goods", Y1 + 31 * DAY)  # 10,000 points
    with BackgroundServer(ledger) as background:
        address = f"127.0.0.1:{background.port}"
        with LedgerClient(address) as client, grpc.insecure_channel(address) as channel:
            yield ledger, client, pb_grpc.LedgerStub(channel)
    ledger.close()


def details_of(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    status = rpc_status.from_call(info.value)
    fields, reason, metadata = [], None, {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields = [violation.field for violation in bad_request.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason, metadata = error_info.reason, dict(error_info.metadata)
    return info.value.code().name, fields or metadata.get("field"), reason


def test_the_standards_example_over_the_service(served):
    ledger, client, stub = served
    code, _, reason = details_of(stub.GetRevenue, pb.GetRevenueRequest(from_s=Y1, to_s=Y2))
    assert (code, reason) == ("FAILED_PRECONDITION", "NO_REDEMPTION_ESTIMATE")
    first = client.set_redemption_estimate("e-1", Y1, "0.95")
    assert (first.duplicate, first.estimate_id, first.effective_from_s, first.rate) == (False, "e-1", Y1, "0.9500")
    assert client.set_redemption_estimate("e-1", Y1, "0.95").duplicate
    client.set_redemption_estimate("e-2", Y2, "0.97")
    ledger.redeem("r-1", "m-1", 4_500, Y1 + 200 * DAY)
    ledger.redeem("r-2", "m-1", 4_000, Y2 + 100 * DAY)
    year1 = client.revenue(Y1, Y2)
    (cohort,) = year1.cohorts
    assert (cohort.cohort, cohort.rate, cohort.allocated_minor, cohort.revenue_minor, cohort.liability_to_minor) == (
        "2026", "0.9500", 867_580, 410_959, 456_621)
    year2 = client.revenue(Y2, Y3, "quarter")
    (cohort,) = year2.cohorts
    assert (cohort.cohort, cohort.revenue_minor, cohort.liability_from_minor, cohort.liability_to_minor) == (
        "2026-Q1", 349_292, 456_621, 107_329)
    assert (year2.total.revenue_minor, year2.currency, year2.exponent, year2.observed_points) == (
        349_292, "USD", 2, 0)


def test_refusals_carry_the_field(served):
    _, client, stub = served
    client.set_redemption_estimate("e-1", Y1, "0.95")
    assert details_of(stub.GetRevenue, pb.GetRevenueRequest(from_s=Y1 + 1, to_s=Y2)) == (
        "INVALID_ARGUMENT", ["from_s"], "INVALID_FIELD")
    assert details_of(stub.GetRevenue, pb.GetRevenueRequest(from_s=Y2, to_s=Y1))[:2] == ("INVALID_ARGUMENT", ["to_s"])
    assert details_of(stub.GetRevenue, pb.GetRevenueRequest(from_s=Y1, to_s=Y2, cohort="week"))[:2] == (
        "INVALID_ARGUMENT", ["cohort"])
    assert details_of(stub.SetRedemptionEstimate, pb.SetRedemptionEstimateRequest(
        estimate_id="e-2", effective_from_s=Y2, rate="1.5"))[:2] == ("INVALID_ARGUMENT", ["rate"])
    assert details_of(stub.SetRedemptionEstimate, pb.SetRedemptionEstimateRequest(
        estimate_id="e-1", effective_from_s=Y1, rate="0.9")) == ("ALREADY_EXISTS", "estimate_id", "ID_REUSED")
    assert details_of(stub.SetRedemptionEstimate, pb.SetRedemptionEstimateRequest(
        estimate_id="e-0", effective_from_s=Y1 - DAY, rate="0.9")) == (
        "FAILED_PRECONDITION", "effective_from_s", "ESTIMATE_BEFORE_PREVIOUS")
