"""The fault test of §18 with a real nats-server: S shards, consumers SIGKILLed, the broker restarted.

A seeded workload (purchase batches, refunds of earlier orders, redemptions; some batches
published twice under a new message id, so the stream holds them twice) is published by a
thread while `pointsledger consume` processes, one per shard, are killed with SIGKILL at
random instants and restarted; the broker is restarted once in the middle. At the end every
shard passes verify, holds only its own members, applied no order twice, and every member's
balance equals that of one ledger fed the same commands in the same order.

Default tier: 3 shards, 12,000 purchases, 6 kills. `--slow`: 300,000 purchases, 30 kills.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from nats_broker import Broker
from pointsledger import errors, ledger as ledgers
from pointsledger.shards import shard_of
from pointsledger.shards.applier import ShardApplier
from pointsledger.shards.producer import BlockingProducer

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
AS_OF = 1_830_297_600  # 2028-01-01T00:00:00Z
SHARDS = 3
STREAM = "ORDERS"


def workload(seed, purchases, members):
    """[("purchases", columns, batch_id) | ("refund"|"redeem", arguments)] in publish order."""
    rng = random.Random(seed)
    commands, orders, made = [], [], 0
    while made < purchases:
        size = min(rng.choice([50, 300, 1_000, 2_000]), purchases - made)
        rows = [(f"o{made + index}", f"m{rng.randrange(members)}", rng.randint(1, 400) * 100,
                 rng.choice(["grocery", "home"]), T0 + (made + index) * 60) for index in range(size)]
        columns = tuple(list(column) for column in zip(*rows))
        commands.append(("purchases", columns, f"batch-{made}"))
        again = ("purchases", columns, f"batch-{made}-again") if len(orders) % 3 == 0 else None
        orders += [(row[0], row[1], row[2]) for row in rows]
        made += size
        now = T0 + made * 60
        for index in range(size // 40):
            order_id, member_id, amount = rng.choice(orders)
            commands.append(("refund", (member_id, f"rf{made}-{index}", order_id, rng.randint(1, amount), now)))
            member_id = f"m{rng.randrange(members)}"
            commands.append(("redeem", (f"rd{made}-{index}", member_id, rng.randint(1, 300), now)))
        if again:  # published twice, later, under a new message id: the stream holds both
            commands.append(again)
    return commands


def publish(url, commands, done, pause_s):
    with BlockingProducer(url, STREAM, SHARDS, message_rows=250) as producer:
        for command in commands:
            if command[0] == "purchases":
                producer.purchases(*command[1], batch_id=command[2])
            else:
                getattr(producer, command[0])(*command[1])
            time.sleep(pause_s)  # spread over the kill campaign
    done.set()


def reference(path, commands):
    """One ledger fed the same commands in the same order."""
    ledger = ledgers.open_with_example_program(path, sync=False)
    for command in commands:
        if command[0] == "purchases":
            ledger.purchases(*command[1])
        elif command[0] == "refund":
            try:
                ledger.refund(*command[1][1:])
            except errors.LedgerError:
                pass
        else:
            try:
                ledger.redeem(*command[1])
            except errors.LedgerError:
                pass
    return ledger


class Shard:
    def __init__(self, tmp_path, url, shard):
        self.path = tmp_path / f"shard-{shard}"
        self.url = url
        self.shard = shard
        self.process = None
        self.log_path = tmp_path / f"consume-{shard}.log"
        self.log = open(self.log_path, "ab")
        self.starts = 0

    def start(self, until_caught_up=False):
        command = [sys.executable, "-m", "pointsledger", "consume", "--nats", self.url, "--stream", STREAM,
                   "--shard", str(self.shard), "--shards", str(SHARDS), "--data", str(self.path), "--fetch", "8"]
        self.process = subprocess.Popen(command + (["--until-caught-up"] if until_caught_up else []),
                                        stdout=self.log, stderr=self.log)
        self.starts += 1

    def wait_consuming(self):
        """Until this run said it is consuming (a kill during Python's start-up tests nothing)."""
        deadline = time.monotonic() + 60
        while self.log_path.read_bytes().count(b": consuming ") < self.starts:
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.02)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def campaign(tmp_path, seed, purchases, members, kills):
    broker = Broker(tmp_path).start()
    shards = [Shard(tmp_path, broker.url, shard) for shard in range(SHARDS)]
    commands = workload(seed, purchases, members)
    assert sum(command[0] == "purchases" and command[2].endswith("-again") for command in commands) >= 3
    rng = random.Random(seed + 1)
    try:
        done = threading.Event()
        pause_s = kills * 1.5 / len(commands)
        publisher = threading.Thread(target=publish, args=(broker.url, commands, done, pause_s))
        publisher.start()
        for shard in shards:
            shard.start()
        for kill in range(kills):
            shard = rng.choice(shards)
            shard.wait_consuming()
            time.sleep(rng.uniform(0, 0.5))
            shard.kill()
            if kill == kills // 2:
                broker.restart()
            shard.start()
        publisher.join(300)
        assert done.is_set(), "the publisher did not finish"
        for shard in shards:
            shard.process.send_signal(signal.SIGTERM)
            assert shard.process.wait(60) == 0
            shard.start(until_caught_up=True)
        for shard in shards:
            assert shard.process.wait(300) == 0, (tmp_path / f"consume-{shard.shard}.log").read_text()
    finally:
        for shard in shards:
            if shard.process and shard.process.poll() is None:
                shard.kill()
        broker.stop()
    check(tmp_path, commands, members)


def journal(ledger):
    from_seq = 1
    while True:
        page = ledger.journal(from_seq=from_seq, limit=100_000)
        yield from page
        if len(page) < 100_000:
            return
        from_seq = page[-1].seq + 1


def check(tmp_path, commands, members):
    expected = reference(tmp_path / "reference", commands)
    try:
        for shard in range(SHARDS):
            with ledgers.Ledger(tmp_path / f"shard-{shard}") as ledger:
                assert ledger.verify().ok, ledger.verify().problems
                earned = [entry.ref_id for entry in journal(ledger) if entry.kind == "EARN"]
                assert len(earned) == len(set(earned)), "an order applied twice"
                assert ShardApplier(ledger, STREAM, shard, SHARDS).position() > 0
                for index in range(members):
                    member_id = f"m{index}"
                    if shard_of(member_id, SHARDS) != shard:
                        continue
                    assert ledger.balance(member_id, AS_OF) == expected.balance(member_id, AS_OF), member_id
                assert ledger.statistics()["orders"] == sum(
                    1 for order in earned if shard_of(expected.get_order(order).member_id, SHARDS) == shard)
        assert sum(ledgers.Ledger(tmp_path / f"shard-{shard}", readonly=True).statistics()["orders"]
                   for shard in range(SHARDS)) == expected.statistics()["orders"]
    finally:
        expected.close()


def test_consumers_killed_and_broker_restarted_apply_everything_once(tmp_path):
    campaign(tmp_path, seed=12, purchases=12_000, members=300, kills=6)


@pytest.mark.slow
def test_the_fault_campaign_of_the_issue(tmp_path):
    campaign(tmp_path, seed=18, purchases=300_000, members=5_000, kills=30)
