"""The Router and `--shards` (shards/routing.py): by member, and summed or checked over every shard.

Two shards fed by split purchases equal one ledger fed all of them (example programme,
1 point per 100 cents at the base tier). Shard 0 of 2 holds member-001 and m0;
member-002 is on shard 1 (test_shards_sharding's vectors).
"""

import json

import pytest

from pointsledger import Ledger
from pointsledger.cli import main
from pointsledger.ledger import open_with_example_program
from pointsledger.shards.routing import Router

T = 1_773_532_800  # 2026-03-15T00:00:00Z
AS_OF = 1_798_761_600  # 2027-01-01T00:00:00Z
ROWS = [("o1", "member-001", 10_000), ("o2", "member-002", 20_000), ("o3", "m0", 5_000), ("o4", "member-001", 2_500)]


@pytest.fixture
def stores(tmp_path, engine_name):
    """shard-0, shard-1 through the Router's writes; all: one ledger with everything."""
    shards = [open_with_example_program(tmp_path / f"shard-{shard}") for shard in range(2)]
    everything = open_with_example_program(tmp_path / "all")
    columns = [[row[0] for row in ROWS], [row[1] for row in ROWS], [row[2] for row in ROWS], ["x"] * 4, [T] * 4]
    router = Router(shards)
    results = router.purchases(*columns)
    assert [result.status for result in results] == ["APPLIED"] * 4
    assert [result.points for result in results] == [100, 200, 50, 25]
    everything.purchases(*columns)
    router.redeem("r1", "member-001", 30, T + 1)
    everything.redeem("r1", "member-001", 30, T + 1)
    router.refund("member-002", "rf1", "o2", 10_000, T + 2)
    everything.refund("rf1", "o2", 10_000, T + 2)
    assert shards[0].has_order("o1") and not shards[1].has_order("o1") and shards[1].has_order("o2")
    router.close()
    everything.close()
    return tmp_path


def test_reads_route_by_member_and_reports_sum(stores):
    with Router.open([str(stores / "shard-0"), str(stores / "shard-1")]) as router, \
            Ledger(stores / "all", readonly=True) as everything:
        assert router.balance("member-001", AS_OF).balance == 95  # 100 + 25 earned, 30 redeemed
        assert router.balance("member-002", AS_OF).balance == 100  # 200 earned, half clawed back
        assert [entry.ref_id for entry in router.history("member-001").entries] == ["r1", "o4", "o1"]
        liability = router.liability(AS_OF)
        assert (liability.earned, liability.redeemed, liability.clawed_back, liability.outstanding) == (
            375, 30, 100, 245)
        assert liability == everything.liability(AS_OF)
        assert router.rollforward(1_767_225_600, AS_OF) == everything.rollforward(1_767_225_600, AS_OF)
        assert router.verify().ok


def test_cli_shards_equal_one_ledger(stores, capsys):
    shards = f"{stores / 'shard-0'},{stores / 'shard-1'}"
    for command in (["balance", "member-002", "--as-of", "2027-01-01"],
                    ["report", "liability", "--as-of", "2027-01-01"],
                    ["report", "rollforward", "--from", "2026-01-01", "--to", "2027-01-01"]):
        assert main(command + ["--json", "--shards", shards]) == 0
        across = json.loads(capsys.readouterr().out)
        assert main(command + ["--json", "--data", str(stores / "all")]) == 0
        assert across == json.loads(capsys.readouterr().out), command
    assert main(["verify", "--shards", shards]) == 0
    assert capsys.readouterr().out == "ok: 6 journal entries, 3 members, every invariant holds\n"
    assert_history_of_member_001(shards, capsys)


def assert_history_of_member_001(shards, capsys):
    """history goes to the member's shard: shard 0's journal (seqs 1 o1, 3 o4, 4 r1; m0's o3 is seq 2)."""
    assert main(["history", "member-001", "--json", "--shards", shards]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [(entry["seq"], entry["ref_id"], entry["points"]) for entry in page["entries"]] == [
        (4, "r1", -30), (3, "o4", 25), (1, "o1", 100)]
    assert page["next_before_seq"] is None


def test_verify_finds_members_on_the_wrong_shard(stores, capsys):
    swapped = f"{stores / 'shard-1'},{stores / 'shard-0'}"
    assert main(["verify", "--shards", swapped]) == 1
    out = capsys.readouterr().out
    assert "member 'member-002' belongs to shard 1 of 2" in out and "member 'm0' belongs to shard 0 of 2" in out


def test_a_missing_shard_store_is_refused(stores, capsys):
    assert main(["balance", "m0", "--shards", f"{stores / 'shard-0'},{stores / 'nowhere'}"]) == 1
    assert "no ledger at" in capsys.readouterr().err


def serve_shards(stores, **options):
    """One real server per shard store (shard order); their addresses comma-separated."""
    from pointsledger.service.server import BackgroundServer

    ledgers = [Ledger(stores / f"shard-{shard}") for shard in range(2)]
    started = []
    try:
        for ledger in ledgers:
            started.append(BackgroundServer(ledger, **options))
        yield ",".join(f"127.0.0.1:{server.port}" for server in started)
    finally:
        for server in started:
            server.stop()
        for ledger in ledgers:
            ledger.close()


@pytest.fixture
def servers(stores):
    yield from serve_shards(stores)


def test_cli_shards_over_servers_equal_one_ledger(stores, servers, capsys):
    for command in (["balance", "member-002", "--as-of", "2027-01-01"],
                    ["report", "liability", "--as-of", "2027-01-01"],
                    ["report", "rollforward", "--from", "2026-01-01", "--to", "2027-01-01"]):
        assert main(command + ["--json", "--shards", servers]) == 0
        across = json.loads(capsys.readouterr().out)
        assert main(command + ["--json", "--data", str(stores / "all")]) == 0
        assert across == json.loads(capsys.readouterr().out), command
    assert main(["verify", "--shards", servers]) == 0
    assert capsys.readouterr().out == "ok: 6 journal entries, 3 members, every invariant holds\n"
    assert_history_of_member_001(servers, capsys)


def test_rollforward_over_servers_hand_computed(servers, capsys):
    # 2026: 375 earned (100 + 200 + 50 + 25), 30 redeemed, 100 clawed back (half of o2); nothing expired.
    assert main(["report", "rollforward", "--from", "2026-01-01", "--to", "2027-01-01", "--json",
                 "--shards", servers]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {name: report[name] for name in ("opening", "earned", "adjusted", "clawed_back", "redeemed", "expired",
                                            "closing", "bonus")} == {
        "opening": 0, "earned": 375, "adjusted": 0, "clawed_back": 100, "redeemed": 30, "expired": 0,
        "closing": 245, "bonus": 0}
    assert report["breakage"] == {"expired": 0, "credited": 375, "decimal": "0.000000"}


def test_router_over_servers_equals_router_over_stores(stores, servers):
    with Router.open(servers.split(",")) as remote, Ledger(stores / "all", readonly=True) as everything:
        assert remote.rollforward(1_767_225_600, AS_OF) == everything.rollforward(1_767_225_600, AS_OF)
        assert remote.rollforward(T, T) == everything.rollforward(T, T)  # an empty period: every line 0
        report = remote.verify()
        assert (report.ok, report.problems, report.entries, report.members) == (True, [], 6, 3)


def test_verify_over_servers_finds_members_on_the_wrong_shard(servers, capsys):
    swapped = ",".join(reversed(servers.split(",")))
    assert main(["verify", "--shards", swapped]) == 1
    out = capsys.readouterr().out
    first, second = swapped.split(",")
    assert f"shard 0 ({first}): member 'member-002' belongs to shard 1 of 2" in out
    assert f"shard 1 ({second}): member 'm0' belongs to shard 0 of 2" in out


def test_verify_rpc_refuses_a_shard_outside_shards(servers):
    from pointsledger.client import InvalidArgument, LedgerClient

    with LedgerClient(servers.split(",")[0]) as client:
        with pytest.raises(InvalidArgument) as info:
            client.verify(shard=2, shards=2)
        assert info.value.field == "shard" and "from 0 to 1" in str(info.value)
        with pytest.raises(InvalidArgument) as info:
            client.verify(shard=1)
        assert info.value.field == "shard"
        assert client.verify().ok  # not told its shard: only the store's own checks


@pytest.fixture
def secured_servers(stores):
    """The shard stores behind token-protected servers: READ reads, ADMIN verifies (§10)."""
    yield from serve_shards(stores, tokens={READ_TOKEN: ["read"], ADMIN_TOKEN: ["admin"]})


READ_TOKEN = "shards-read-token-0123456789"
ADMIN_TOKEN = "shards-admin-token-0123456789"


def test_cli_shards_over_token_servers_take_the_token_from_the_environment(stores, secured_servers, capsys,
                                                                          monkeypatch):
    balance = ["balance", "member-002", "--as-of", "2027-01-01", "--json"]
    monkeypatch.delenv("POINTSLEDGER_TOKEN", raising=False)
    assert main(balance + ["--shards", secured_servers]) == 1  # no token: refused, one line
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("pointsledger: UNAUTHENTICATED"), captured.err

    monkeypatch.setenv("POINTSLEDGER_TOKEN", READ_TOKEN)
    assert main(balance + ["--shards", secured_servers]) == 0
    across = json.loads(capsys.readouterr().out)
    assert main(balance + ["--data", str(stores / "all")]) == 0
    assert across == json.loads(capsys.readouterr().out)
    assert across["all_time"]["balance"] == 100  # 200 earned on o2, half clawed back by rf1
    assert main(["verify", "--shards", secured_servers]) == 1  # verify is scope admin: read is not enough
    assert "PERMISSION_DENIED: Verify needs the 'admin' scope" in capsys.readouterr().err

    monkeypatch.setenv("POINTSLEDGER_TOKEN", ADMIN_TOKEN)
    assert main(["verify", "--shards", secured_servers]) == 0
    assert capsys.readouterr().out == "ok: 6 journal entries, 3 members, every invariant holds\n"
