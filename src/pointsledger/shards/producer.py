"""The producer (SPEC §18): commands to `<prefix>.<shard>` of a JetStream stream, shard by member.

Purchases go as columnar batches (IngestPurchasesRequest), one message per shard
and per at most `message_rows` rows; refunds, redemptions and adjustments as one
message each, carrying their member. Every message has a deterministic
Nats-Msg-Id, so a publish retried after a broker restart or a lost
acknowledgement is stored once (within the stream's duplicate window); later
duplicates are applied once anyway, by the ledger's own ids.

`Producer` is asyncio (nats-py); `BlockingProducer` runs one on a private event
loop for synchronous callers (`pointsledger publish`, scripts, tests).
"""

import asyncio
import time

import numpy as np

from ..service.client import batch_request
from . import commands
from .broker import BrokerError, connect, ensure_stream
from .sharding import check_shards, shard_of, subject

MESSAGE_ROWS_DEFAULT = 4_096  # purchases per message: ~200 KB, well under NATS's 1 MB max_payload
PUBLISH_RETRY_S = 120.0  # keep retrying a publish this long (a broker restart), same message id
PUBLISH_WINDOW = 64  # publishes awaiting their acknowledgement at once


class Producer:
    def __init__(self, url, stream, shards, *, prefix=None, message_rows=MESSAGE_ROWS_DEFAULT, log=None):
        self.url = url
        self.stream = stream
        self.shards = check_shards(shards)
        self.prefix = prefix or stream
        self.message_rows = message_rows
        self.log = log or (lambda text: None)
        self.connection = None
        self.js = None
        self.published = 0  # messages acknowledged by the stream
        self.duplicates = 0  # of those, ones the stream had already (same Nats-Msg-Id)

    async def connect(self):
        self.connection = await connect(self.url, f"pointsledger publish {self.stream}")
        self.js = self.connection.jetstream()
        await ensure_stream(self.js, self.stream, self.prefix)
        return self

    async def close(self):
        if self.connection is not None:
            try:
                await self.connection.flush(timeout=5)
                await self.connection.close()
            except Exception:  # the broker went away: nothing is waiting for it
                pass
            self.connection = None

    def shard_of(self, member_id):
        return shard_of(member_id, self.shards)

    # --- purchases --------------------------------------------------------------------

    async def purchases(self, order_ids, member_ids, amounts_minor, categories, times_s, batch_id):
        """Publish a batch of purchases, split by shard; `batch_id` (unique per batch) makes the
        message ids. Returns the stream sequences, in publish order."""
        shards = [self.shard_of(member_id) for member_id in member_ids]
        by_shard = {}
        for index, shard in enumerate(shards):
            by_shard.setdefault(shard, []).append(index)
        columns = (order_ids, member_ids, amounts_minor, categories, times_s)
        messages = []
        for shard in sorted(by_shard):
            indices = by_shard[shard]
            for part, start in enumerate(range(0, len(indices), self.message_rows)):
                taken = _take(columns, indices[start:start + self.message_rows])
                message_id = f"{batch_id}:{shard}:{part}"
                request = batch_request(taken, batch_id=message_id)
                messages.append((shard, commands.Command(commands.PURCHASES, None, request), message_id))
        return await self._publish_all(messages)

    # --- single commands ----------------------------------------------------------------

    async def refund(self, member_id, refund_id, order_id, amount_minor, time_s):
        """A refund routes by the ORDER's member (the request itself names no member)."""
        return await self.command(commands.refund(member_id, refund_id, order_id, amount_minor, time_s))

    async def redeem(self, redemption_id, member_id, points, time_s):
        return await self.command(commands.redeem(redemption_id, member_id, points, time_s))

    async def adjust(self, adjustment_id, member_id, points, reason, time_s):
        return await self.command(commands.adjust(adjustment_id, member_id, points, reason, time_s))

    async def command(self, command, message_id=None):
        message_id = message_id or commands.message_id(command)
        return (await self._publish_all([(self.shard_of(command.member_id), command, message_id)]))[0]

    # --- publishing -----------------------------------------------------------------------

    async def _publish_all(self, messages):
        sequences = []
        for start in range(0, len(messages), PUBLISH_WINDOW):
            window = messages[start:start + PUBLISH_WINDOW]
            sequences += await asyncio.gather(*(self._publish(*message) for message in window))
        return sequences

    async def _publish(self, shard, command, message_id):
        """Publish until the stream acknowledges (retrying through a broker restart, same id)."""
        import nats

        headers, payload = command.encode(message_id)
        deadline = time.monotonic() + PUBLISH_RETRY_S
        while True:
            try:
                ack = await self.js.publish(subject(self.prefix, shard), payload, timeout=5, stream=self.stream,
                                            headers=headers)
            except (nats.errors.Error, OSError) as error:
                if isinstance(error, nats.errors.MaxPayloadError) or time.monotonic() > deadline:
                    raise BrokerError(f"publish to {subject(self.prefix, shard)} failed: "
                                      f"{error or type(error).__name__}") from error
                await asyncio.sleep(0.25)
                continue
            self.published += 1
            self.duplicates += bool(ack.duplicate)
            return ack.seq


def _take(columns, indices):
    taken = []
    for column in columns:
        if isinstance(column, np.ndarray):
            taken.append(column[indices].tolist())
        else:
            taken.append([column[index] for index in indices])
    return taken


class BlockingProducer:
    """A Producer on its own event loop, for synchronous code: the same methods, blocking."""

    def __init__(self, *arguments, **options):
        self.loop = asyncio.new_event_loop()
        self.producer = Producer(*arguments, **options)
        self._run(self.producer.connect())

    def _run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def __getattr__(self, name):
        attribute = getattr(self.producer, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute
        return lambda *arguments, **options: self._run(attribute(*arguments, **options))

    def close(self):
        try:
            self._run(self.producer.close())
        finally:
            self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
