"""Producer, consumer and the CLI against a real nats-server (JetStream, loopback, a free port).

Shard 0 of 2 holds member-001 and m0; member-002 is on shard 1 (test_shards_sharding's vectors).
The consumers' stores get the example programme: 1 point per 100 cents at the base tier.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nats_broker import Broker
from pointsledger import Ledger
from pointsledger.cli import main
from pointsledger.ledger import open_with_example_program
from pointsledger.shards.applier import ShardApplier
from pointsledger.shards.consumer import Consumer
from pointsledger.shards.producer import BlockingProducer

T = 1_773_532_800  # 2026-03-15T00:00:00Z
AS_OF = 1_798_761_600  # 2027-01-01T00:00:00Z


@pytest.fixture
def broker(tmp_path):
    started = Broker(tmp_path).start()
    yield started
    started.stop()


def consume(path, url, shard=0, shards=2):
    with open_with_example_program(path) as ledger:
        consumer = Consumer(ledger, url, "ORDERS", shard, shards, log=lambda text: None)
        progress = asyncio.run(consumer.run(until_caught_up=True))
    metrics = consumer.metrics.registry.get_sample_value
    assert metrics("pointsledger_consumer_stream_seq") == progress.position
    assert metrics("pointsledger_consumer_lag") == 0
    assert metrics("pointsledger_consumer_messages_total") == progress.messages
    return progress


def test_restart_resumes_after_the_stored_sequence_and_duplicates_change_nothing(tmp_path, broker):
    with BlockingProducer(broker.url, "ORDERS", 2) as producer:
        producer.purchases(["o1", "o2"], ["member-001", "member-002"], [10_000, 20_000], ["x", "x"], [T, T], "b1")
        # The same batch id again (a retried publish): the stream stores it once.
        producer.purchases(["o1", "o2"], ["member-001", "member-002"], [10_000, 20_000], ["x", "x"], [T, T], "b1")
        assert (producer.published, producer.duplicates) == (4, 2)
    first = consume(tmp_path / "shard-0", broker.url)
    assert (first.position, first.messages, first.applied) == (1, 1, 1)
    with BlockingProducer(broker.url, "ORDERS", 2) as producer:
        # Published again under a new id (a producer that lost its place): the stream holds it twice.
        producer.purchases(["o1"], ["member-001"], [10_000], ["x"], [T], "b1-again")
        producer.redeem("r1", "member-001", 30, T + 10)
    second = consume(tmp_path / "shard-0", broker.url)
    assert (second.position, second.messages, second.applied, second.duplicates) == (4, 2, 1, 1)
    with Ledger(tmp_path / "shard-0", readonly=True) as ledger:
        assert ledger.balance("member-001", AS_OF).balance == 70  # 100 earned once, 30 redeemed
        assert not ledger.has_order("o2")
        assert ledger.verify().ok


def test_a_store_ahead_of_the_broker_acks_skips_nothing_and_repeats_nothing(tmp_path, broker):
    """Committed but not acked (a crash between the two): the stored sequence wins."""
    with BlockingProducer(broker.url, "ORDERS", 2) as producer:
        for index in range(3):
            producer.purchases([f"o{index}"], ["m0"], [1_000], ["x"], [T], f"b{index}")
    path = tmp_path / "shard-0"
    with open_with_example_program(path) as ledger:
        # Apply the first two messages as a consumer that died before its ack would have.
        applier = ShardApplier(ledger, "ORDERS", 0, 2)
        with BlockingProducer(broker.url, "ORDERS", 2) as producer:
            loop, js = producer.loop, producer.producer.js
            message = loop.run_until_complete(js.get_msg("ORDERS", 1))
            applier.apply([(1, message.headers, message.data)])
            message = loop.run_until_complete(js.get_msg("ORDERS", 2))
            applier.apply([(2, message.headers, message.data)])
    done = consume(path, broker.url)
    assert (done.position, done.messages, done.applied, done.skipped) == (3, 1, 1, 0)
    with Ledger(path, readonly=True) as ledger:
        assert ledger.balance("m0", AS_OF).balance == 30


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(tmp_path, broker):
    with BlockingProducer(broker.url, "ORDERS", 1) as producer:
        for index in range(40):
            producer.purchases([f"o{index}-{item}" for item in range(500)], [f"m{item % 50}" for item in range(500)],
                               [1_000] * 500, ["x"] * 500, [T] * 500, f"b{index}")
    log = tmp_path / "consume.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pointsledger", "consume", "--nats", broker.url, "--stream", "ORDERS", "--shard",
             "0", "--shards", "1", "--data", str(tmp_path / "shard"), "--fetch", "1", "--json"],
            stdout=subprocess.PIPE, stderr=output)
        deadline = time.monotonic() + 60
        while b"consuming" not in log.read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, log.read_text()
    report = json.loads(out)
    with Ledger(tmp_path / "shard", readonly=True) as ledger:
        # Whole messages only, and the stored sequence says how many.
        assert ledger.statistics()["orders"] == 500 * report["stream_seq"] == report["applied"]
        assert ShardApplier(ledger, "ORDERS", 0, 1).position() == report["stream_seq"]


def test_a_consumer_waits_for_jetstream_to_answer_and_then_consumes(tmp_path):
    """A broker that takes connections but no JetStream request yet (one recovering a large
    stream after a restart): the consumer says so on stderr, tries again, and consumes once
    JetStream answers, instead of exiting."""
    broker = Broker(tmp_path, jetstream=False).start()
    log = tmp_path / "consume.log"
    try:
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "pointsledger", "consume", "--nats", broker.url, "--stream", "ORDERS",
                 "--shard", "0", "--shards", "1", "--data", str(tmp_path / "shard"), "--json"],
                stdout=subprocess.PIPE, stderr=output)
            deadline = time.monotonic() + 60
            while log.read_bytes().count(b"JetStream not answering") < 2:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            broker.jetstream = True
            broker.restart()
            with BlockingProducer(broker.url, "ORDERS", 1) as producer:
                producer.purchases(["o1", "o2"], ["m0", "m1"], [10_000, 20_000], ["x", "x"], [T, T], "b1")
            while b"consuming ORDERS.0" not in log.read_bytes() or not (tmp_path / "shard").exists():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            while True:
                with Ledger(tmp_path / "shard", readonly=True) as ledger:
                    if ledger.has_order("o2"):
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=60)
    finally:
        broker.stop()
    text = log.read_text()
    assert process.returncode == 0, text
    assert "shard 0: broker: JetStream not answering (ServiceUnavailableError" in text
    assert "subscribing again in 0.5 s" in text and "subscribing again in 1 s" in text
    assert json.loads(out)["applied"] == 2


def test_publish_split_and_consume_from_the_command_line(tmp_path, broker, capsys):
    source = tmp_path / "orders.csv"
    source.write_text("order_id,member_id,amount_minor,category,time_s\n"
                      "o1,member-001,10000,x,2026-03-15\n"
                      "o2,member-002,5000,x,2026-03-15\n"
                      "o3,m0,abc,x,2026-03-15\n"
                      "o4,m0,2500,x,2026-03-15\n")
    assert main(["publish", str(source), "--nats", broker.url, "--stream", "ORDERS", "--shards", "2", "--quiet",
                 "--json"]) == 3  # a row rejected
    published = json.loads(capsys.readouterr().out)
    # o3's amount is text: it cannot travel in the int64 column, so publish rejects it, as ingest --server does.
    assert (published["rows"], published["published"], published["rejected"], published["messages"]) == (4, 3, 1, 2)
    assert "o3,m0,abc" in (tmp_path / "orders.csv.rejects.csv").read_text()
    assert main(["consume", "--nats", broker.url, "--stream", "ORDERS", "--shard", "0", "--shards", "2",
                 "--data", str(tmp_path / "s0"), "--until-caught-up", "--json"]) == 0
    consumed = json.loads(capsys.readouterr().out)
    assert (consumed["applied"], consumed["refused"]) == (2, 0)
    assert main(["split", "--shards", "2", str(source), "--output-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("orders.shard-0-of-2.csv: 3 rows") and lines[1].endswith("orders.shard-1-of-2.csv: 1 row")
    shard0 = (tmp_path / "orders.shard-0-of-2.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in shard0] == ['"order_id"', '"o1"', '"o3"', '"o4"']


def test_operator_mistakes_are_one_line_and_exit_2_or_1(tmp_path, capsys, monkeypatch):
    from nats_broker import free_port
    from pointsledger.shards import broker as broker_module

    monkeypatch.setattr(broker_module, "FIRST_CONNECT_S", 1.0)

    with pytest.raises(SystemExit) as exit_status:
        main(["consume", "--nats", "nats://127.0.0.1:1", "--stream", "ORDERS", "--shard", "3", "--shards", "3",
              "--data", str(tmp_path / "s")])
    assert exit_status.value.code == 2
    assert "--shard 3: must be below --shards 3 (0 to 2)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_status:
        main(["publish", str(tmp_path / "none.csv"), "--nats", "nats://127.0.0.1:1", "--stream", "OR.DERS",
              "--shards", "2"])
    assert exit_status.value.code == 2
    assert "--stream 'OR.DERS': a stream name has no spaces" in capsys.readouterr().err
    source = tmp_path / "orders.csv"
    source.write_text("order_id,member_id,amount_minor,category,time_s\no1,m0,100,x,2026-03-15\n")
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["publish", str(source), "--nats", url, "--stream", "ORDERS", "--shards", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"pointsledger: error: cannot connect to NATS at {url}: no answer in 1 s\n"


def test_a_broker_refusal_nobody_expected_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from nats.js.errors import BadRequestError

    async def refused(self, until_caught_up=False):
        raise BadRequestError(code=400, err_code=10012, description="insufficient resources")

    monkeypatch.setattr(Consumer, "run", refused)
    assert main(["consume", "--nats", "nats://127.0.0.1:1", "--stream", "ORDERS", "--shard", "0", "--shards", "1",
                 "--data", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pointsledger: error: NATS: BadRequestError: ") and "insufficient resources" in err
    assert err.count("\n") == 1


def test_a_delivery_lost_on_the_way_is_not_skipped_over(tmp_path, broker):
    """A message missing from a fetch (as a client dropping it would): the consumer re-subscribes
    from its stored sequence instead of storing a sequence past the lost message."""
    with BlockingProducer(broker.url, "ORDERS", 1) as producer:
        for index in range(6):
            producer.purchases([f"o{index}"], ["m0"], [1_000], ["x"], [T], f"b{index}")
    logs = []
    with open_with_example_program(tmp_path / "shard") as ledger:
        consumer = Consumer(ledger, broker.url, "ORDERS", 0, 1, fetch_messages=3, log=logs.append)
        fetch, dropped = consumer._fetch, []

        async def lossy(subscription):
            messages = await fetch(subscription)
            if len(messages) > 1 and not dropped:
                dropped.append(messages[1].metadata.sequence.stream)
                return [messages[0]] + messages[2:]
            return messages

        consumer._fetch = lossy
        progress = asyncio.run(consumer.run(until_caught_up=True))
        assert dropped == [2]
        assert (progress.position, progress.applied) == (6, 6)
        assert all(ledger.has_order(f"o{index}") for index in range(6))
    assert "shard 0: delivery 3 where 2 was due; consuming again after stream seq 1" in logs
