"""A client in another language reads the service's contract (issue 8, item 3; SPEC §10).

Ruby's gRPC (the Debian packages ruby-grpc, ruby-grpc-tools and
ruby-googleapis-common-protos-types; `.ci/run` installs them) generates its stubs from
proto/pointsledger/v1/ledger.proto and runs clients/ruby/contract_check.rb against a real
server on 127.0.0.1. Every answer, error details included, is decoded by Ruby from the wire:
nothing of pointsledger's Python client is involved.

Programme: the §3 example, so 12,345 cents of groceries earn 123 points and 1,000 earn 10.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pointsledger import Ledger
from pointsledger.errors import NotFound
from pointsledger.service import BackgroundServer
from support import T_2026_03_15, example_program

REPO = Path(__file__).resolve().parent.parent
TOKEN = "writer-token-0123456789"


def _ruby_tools():
    tools = shutil.which("ruby"), shutil.which("grpc_tools_ruby_protoc")
    if None in tools:
        message = "Ruby gRPC is not installed (apt-get install ruby-grpc ruby-grpc-tools ruby-googleapis-common-protos-types)"
        if os.environ.get("POINTSLEDGER_REQUIRE_CLIENTS") or os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs it: missing there is a broken set-up, not a skip
        pytest.skip(message)
    return tools


@pytest.fixture(scope="module")
def ruby_stubs(tmp_path_factory):
    ruby, protoc = _ruby_tools()
    generated = tmp_path_factory.mktemp("ruby-stubs")
    subprocess.run([protoc, "-I", str(REPO / "proto"), f"--ruby_out={generated}", f"--grpc_out={generated}",
                    "pointsledger/v1/ledger.proto"], check=True, cwd=REPO)
    return ruby, generated


def test_a_ruby_client_reads_results_and_error_details(tmp_path, engine_name, ruby_stubs):
    ruby, generated = ruby_stubs
    ledger = Ledger(tmp_path / "ledger", engine=engine_name)
    ledger.set_program(example_program())
    server = BackgroundServer(ledger, tokens={TOKEN: ["write", "read"]})
    try:
        completed = subprocess.run(
            [ruby, "-I", str(generated), str(REPO / "clients/ruby/contract_check.rb"),
             f"127.0.0.1:{server.port}", TOKEN, str(T_2026_03_15)],
            capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
        ledger.close()
    assert completed.returncode == 0, completed.stderr
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert lines == [
        {"call": "RecordPurchase", "code": "OK", "duplicate": False, "points": 123, "balance": 123,
         "member_id": "rb-member", "tier": "member"},
        {"call": "RecordPurchase again", "code": "OK", "duplicate": True, "points": 123},
        {"call": "RecordPurchase zero amount", "code": "InvalidArgument", "status_details": True,
         "field_violations": [{"field": "amount_minor",
                               "description": "amount_minor: must be between 1 and 1000000000000 (got 0)"}],
         "reason": "INVALID_FIELD", "domain": "pointsledger", "metadata": {"field": "amount_minor"}},
        {"call": "RecordPurchase id reused", "code": "AlreadyExists", "status_details": True, "reason": "ID_REUSED",
         "domain": "pointsledger", "metadata": {"field": "order_id", "differing_fields": "amount_minor"}},
        {"call": "Redeem too much", "code": "FailedPrecondition", "status_details": True,
         "reason": "INSUFFICIENT_POINTS", "domain": "pointsledger",
         "metadata": {"field": "points", "requested_points": "1000000", "available_points": "123"}},
        {"call": "IngestPurchases", "code": "OK", "batch_id": "b-1",
         "statuses": ["ITEM_STATUS_APPLIED", "ITEM_STATUS_REFUSED"],
         "errors": [{"index": 1, "field": "amounts_minor", "code": "CODE_INVALID_ARGUMENT",
                     "message": "amount_minor: must be between 1 and 1000000000000 (got -5)"}]},
        {"call": "GetBalance", "code": "OK", "member_id": "rb-member", "balance": 133, "available": 133},
        {"call": "GetBalance without token", "code": "Unauthenticated", "status_details": True,
         "reason": "TOKEN_MISSING_OR_UNKNOWN", "domain": "pointsledger", "metadata": {}},
    ]
    # What Ruby saw is what the ledger holds: the two applied purchases, not the refused one.
    with Ledger(tmp_path / "ledger", engine=engine_name, readonly=True) as reopened:
        assert reopened.balance("rb-member", as_of_s=T_2026_03_15 + 3).balance == 133
        with pytest.raises(NotFound):  # its only purchase was refused
            reopened.balance("rb-other", as_of_s=T_2026_03_15 + 3)
