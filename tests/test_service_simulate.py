"""gRPC Simulate (SPEC §16, §17): a real server on 127.0.0.1, the real client, both engines."""

import decimal

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pointsledger import Ledger
from pointsledger.client import InvalidArgument, LedgerClient
from pointsledger.service import BackgroundServer
from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from support import T_2026_01_01, T_2026_03_10, T_2026_03_15, T_2026_03_25, T_2027_01_01, simple_program


@pytest.fixture
def served(tmp_path, engine_name):
    ledger = Ledger(tmp_path / "ledger", engine=engine_name)
    ledger.set_program(simple_program())
    ledger.purchase("p1", "m1", 10_000, "electronics", T_2026_03_10)  # 100
    ledger.purchase("p2", "m1", 5_050, "food", T_2026_03_15)  # 50
    ledger.refund("r1", "p1", 2_500, T_2026_03_25)  # 25
    background = BackgroundServer(ledger, tokens={"reader-token-0123456789": ["read"]})
    client = LedgerClient(f"127.0.0.1:{background.port}", token="reader-token-0123456789")
    yield ledger, background, client
    client.close()
    background.stop()
    ledger.close()


DOUBLE_ELECTRONICS = simple_program(category_multipliers={"electronics": 2})


def test_simulate_answers_what_the_ledger_answers(served):
    ledger, _, client = served
    result = client.simulate(DOUBLE_ELECTRONICS, T_2026_01_01, T_2027_01_01)
    assert result == ledger.simulate(DOUBLE_ELECTRONICS, T_2026_01_01, T_2027_01_01)
    # Draft: 200 + 50 earned, 50 clawed back; recorded: 150 earned, 25 clawed back.
    assert (result.total.draft.net, result.total.recorded.net, result.total.difference) == (200, 125, 75)
    assert result.total.difference_value == decimal.Decimal("0.75")
    assert result.categories["electronics"].difference == 75
    assert {name: figures.net for name, figures in result.draft_tiers.items()} == {"member": 200}


def details(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30, metadata=(("authorization", "Bearer reader-token-0123456789"),))
    status = rpc_status.from_call(info.value)
    bad_request = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad_request)
    return info.value.code(), bad_request


def test_an_invalid_draft_is_invalid_argument_listing_every_problem(served):
    _, background, _ = served
    with grpc.insecure_channel(f"127.0.0.1:{background.port}") as channel:
        stub = pb_grpc.LedgerStub(channel)
        code, bad_request = details(stub.Simulate, pb.SimulateRequest(
            document_json='{"currency": "usd", "earn": 5}', from_s=T_2026_01_01, to_s=T_2027_01_01))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    violation = bad_request.field_violations[0]
    assert violation.field == "document_json"
    for problem in ("currency", "earn", "tiers", "point_value"):
        assert problem in violation.description


@pytest.mark.parametrize("from_s, to_s, field", [(0, T_2027_01_01, "from_s"), (T_2027_01_01, T_2026_01_01, "to_s")])
def test_bad_dates_are_invalid_argument_naming_the_field(served, from_s, to_s, field):
    _, _, client = served
    with pytest.raises(InvalidArgument) as refused:
        client.simulate(DOUBLE_ELECTRONICS, from_s, to_s)
    assert refused.value.field == field
