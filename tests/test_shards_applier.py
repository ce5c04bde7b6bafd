"""ShardApplier (shards/applier.py) on both engines: the stream sequence is committed with the entries.

Shard 0 of 2 holds member-001 and m0; member-002 is on shard 1 (test_shards_sharding's vectors).
Programme: 1 point per 100 cents, multiplier 1, no expiry (simple_program).
"""

import pytest

from pointsledger.store import format as fmt
from pointsledger.errors import FailedPrecondition
from pointsledger.shards import commands
from pointsledger.shards.applier import ShardApplier
from support import T_2026_03_15, entries, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z


def message(seq, command, message_id="id"):
    headers, payload = command.encode(message_id)
    return seq, headers, payload


def purchases(*rows):
    """rows: (order_id, member_id, amount_minor)."""
    return commands.purchases([row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows],
                              ["x"] * len(rows), [T] * len(rows))


@pytest.fixture
def shard0(ledger):
    ledger.set_program(simple_program())
    return ShardApplier(ledger, "ORDERS", 0, 2)


def test_a_run_and_its_position_in_one_commit(ledger, shard0):
    assert shard0.position() == 0
    done = shard0.apply([
        message(3, purchases(("o1", "member-001", 1_000), ("o2", "m0", 2_550))),
        message(7, commands.redeem("r1", "member-001", 4, T + 1)),
    ])
    assert (done.position, done.messages, done.applied, done.duplicates, done.refusals) == (7, 2, 3, 0, [])
    assert shard0.position() == 7
    assert ledger.balance("member-001", T + 2).balance == 6  # 10 earned, 4 redeemed
    assert ledger.balance("m0", T + 2).balance == 25
    with ledger.store.read() as txn:
        stored = txn.get(b"stream:ORDERS", db=ledger.store.dbs[fmt.DB_META])
    assert fmt.STREAM_POSITION.unpack(stored) == (7, 0, 2)
    assert ledger.verify().ok


def test_a_redelivery_is_skipped_and_a_duplicate_publish_is_a_duplicate(ledger, shard0):
    first = message(1, purchases(("o1", "member-001", 1_000)))
    shard0.apply([first])
    before = entries(ledger)
    done = shard0.apply([first])  # redelivered: at or below the stored sequence
    assert (done.skipped, done.messages, done.applied, done.position) == (1, 0, 0, 1)
    done = shard0.apply([(2, first[1], first[2])])  # published twice: a later sequence, same order id
    assert (done.skipped, done.messages, done.applied, done.duplicates, done.position) == (0, 1, 0, 1, 2)
    assert entries(ledger) == before
    assert shard0.position() == 2


def test_wrong_shard_and_foreign_refund_are_refused_not_applied(ledger, shard0):
    shard0.apply([message(1, purchases(("o1", "member-001", 1_000), ("o2", "member-002", 5_000)))])
    done = shard0.apply([
        message(2, commands.refund("m0", "rf1", "o1", 500, T + 5)),  # o1 is member-001's
        message(3, commands.redeem("r9", "member-002", 1, T + 5)),  # member-002 is on shard 1
        message(4, commands.refund("member-001", "rf2", "o1", 500, T + 6)),
    ])
    assert [(refusal.stream_seq, refusal.code) for refusal in done.refusals] == [
        (2, "NOT_FOUND"), (3, "WRONG_SHARD")]
    assert "no such order of member 'm0'" in done.refusals[0].reason
    assert "member 'member-002' is on shard 1 of 2, this is shard 0" in done.refusals[1].reason
    assert done.applied == 1 and done.position == 4
    assert [(entry[1], entry[2], entry[3], entry[4]) for entry in entries(ledger)] == [
        ("EARN", "member-001", "o1", 10), ("CLAWBACK", "member-001", "rf2", -5)]
    assert not ledger.has_order("o2")


def test_an_unreadable_message_is_refused_and_passed(ledger, shard0):
    done = shard0.apply([(1, {"Pointsledger-Command": "transfer"}, b""),
                         (2, {"Pointsledger-Command": "purchases"}, b"\xff\xff")])
    assert [refusal.code for refusal in done.refusals] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert done.position == 2 and shard0.position() == 2
    assert entries(ledger) == []


def test_a_store_of_another_shard_is_refused(ledger, shard0):
    shard0.apply([message(1, purchases(("o1", "member-001", 1_000)))])
    other = ShardApplier(ledger, "ORDERS", 1, 2)
    with pytest.raises(FailedPrecondition) as error:
        other.position()
    assert "holds shard 0 of 2 of stream 'ORDERS', not shard 1 of 2" in str(error.value)
    with pytest.raises(FailedPrecondition):
        other.apply([message(2, purchases(("o2", "member-002", 1_000)))])
    assert not ledger.has_order("o2")


def test_the_store_keys_are_not_a_callers(ledger):
    with pytest.raises(ValueError):
        ledger.store.write(lambda writer: writer.put_meta(fmt.META_TOTALS, b"x"))
