"""The shard consumer (SPEC §18): pulls its subject in batches, applies each exactly once, then acks.

Each fetch is applied in ONE store transaction together with the last stream
sequence applied (ShardApplier); the acknowledgement comes after the commit.
On (re)start the broker's acknowledgements are not trusted: the consumer's durable
JetStream consumer is created afresh to deliver from the stored sequence + 1.
A crash before the commit loses nothing (the batch comes again); a crash after
it and before the ack makes the broker redeliver what the store holds, which is
skipped. SIGTERM stops after the batch in hand is committed and acked.
"""

import asyncio
import dataclasses
import time

import prometheus_client

from ..service.metrics import Metrics
from .applier import ShardApplier
from .broker import BrokerError, connect, ensure_stream
from .sharding import subject

FETCH_MESSAGES_DEFAULT = 64  # messages per fetch: each a batch of purchases or one command
FETCH_WAIT_S = 1.0  # a fetch returns what is there after at most this long
ACK_WAIT_S = 60.0  # unacknowledged this long: the broker redelivers (skipped if applied)
RETRY_WAIT_S = 0.5  # after a broker error, before trying again
SUBSCRIBE_RETRY_WAIT_MAX_S = 5.0  # subscribing while the broker is away: waits double up to this


class ConsumerMetrics(Metrics):
    """The metrics of `serve` (same registry layout) plus the consumer's own."""

    def __init__(self):
        super().__init__()
        self.lag = prometheus_client.Gauge(
            "pointsledger_consumer_lag", "Messages of this shard's subject in the stream not yet applied",
            registry=self.registry)
        self.position = prometheus_client.Gauge(
            "pointsledger_consumer_stream_seq", "The last stream sequence applied (kept in the store)",
            registry=self.registry)
        self.messages = prometheus_client.Counter(
            "pointsledger_consumer_messages", "Stream messages applied (skipped redeliveries not counted)",
            registry=self.registry)
        self.refused = prometheus_client.Counter(
            "pointsledger_consumer_refused", "Commands or items refused (wrong shard, not found...), by code",
            ("code",), registry=self.registry)


@dataclasses.dataclass
class Progress:
    position: int = 0
    lag: int | None = None
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    refused: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    last_commit: float | None = None  # when the last batch of this run was committed

    @property
    def applying_seconds(self):
        """From the subscription to the last commit (what a benchmark divides by; not the idle wait)."""
        return (self.last_commit or self.started) - self.started

    def line(self, shard):
        seconds = max(time.monotonic() - self.started, 1e-9)
        lag = "?" if self.lag is None else f"{self.lag:,}"
        return (f"shard {shard}: stream seq {self.position:,}, lag {lag} messages; {self.messages:,} messages, "
                f"{self.applied:,} applied, {self.duplicates:,} duplicates, {self.refused:,} refused, "
                f"{self.skipped:,} redelivered and skipped ({self.applied / seconds:,.0f} applied/s)")


class Consumer:
    def __init__(self, ledger, url, stream, shard, shards, *, prefix=None, fetch_messages=FETCH_MESSAGES_DEFAULT,
                 metrics=None, log=print, progress_interval_s=5.0, refusals_printed_max=100):
        self.applier = ShardApplier(ledger, stream, shard, shards)
        self.ledger = ledger
        self.url = url
        self.stream = stream
        self.shard = shard
        self.prefix = prefix or stream
        self.subject = subject(self.prefix, shard)
        self.durable = f"pointsledger-shard-{shard}-of-{shards}"
        self.fetch_messages = fetch_messages
        self.metrics = metrics or ConsumerMetrics()
        self.log = log
        self.progress_interval_s = progress_interval_s
        self.refusals_printed_max = refusals_printed_max
        self.progress = Progress()
        self.stopping = asyncio.Event()

    def stop(self):
        """Stop after the batch in hand (SIGTERM)."""
        self.stopping.set()

    async def run(self, until_caught_up=False):
        """Consume until stop() (or, with until_caught_up, until the subject has nothing more)."""
        self.progress.position = self.applier.position()
        self.metrics.position.set(self.progress.position)
        connection = await connect(self.url, f"pointsledger consume {self.stream} shard {self.shard}")
        try:
            js = connection.jetstream()
            subscription = await self._subscribe(js)
            if subscription is None:  # stopped while waiting for the broker
                return self.progress
            self.log(f"shard {self.shard}: consuming {self.subject} of stream {self.stream!r} after stream seq "
                     f"{self.progress.position:,}")
            last_report = self.progress.started = time.monotonic()
            fetching = asyncio.ensure_future(self._fetch(subscription))
            while not self.stopping.is_set():
                messages = await fetching
                # The next fetch travels while this batch is applied (in a thread): one fetch at
                # a time, batches applied strictly in order, each acked after its commit.
                fetching = asyncio.ensure_future(self._fetch(subscription))
                if messages:
                    if not await self._apply(messages):
                        # A delivery missing (or a redelivery): start again from the stored sequence.
                        fetching.cancel()
                        await asyncio.gather(fetching, return_exceptions=True)
                        subscription = await self._subscribe(js)
                        if subscription is None:
                            break
                        fetching = asyncio.ensure_future(self._fetch(subscription))
                elif until_caught_up and self.progress.lag == 0:
                    break
                if time.monotonic() - last_report >= self.progress_interval_s:
                    self.log(self.progress.line(self.shard))
                    last_report = time.monotonic()
            # Fetched and not applied: never acked, so the broker redelivers it to the next run.
            if subscription is not None:
                fetching.cancel()
                await asyncio.gather(fetching, return_exceptions=True)
            self.log(self.progress.line(self.shard))
        finally:
            await _close(connection)
        return self.progress

    async def _subscribe(self, js):
        """_subscribe_once, retried while the broker is away or its JetStream is not answering yet.

        A broker that restarts with a large stream accepts connections before JetStream has
        recovered it, and its API requests time out meanwhile: a consumer started then (or
        re-subscribing then) waits and tries again, for as long as it runs, as the connection
        itself does. None when stopped while waiting. A refusal that waiting cannot cure (the
        stream takes other subjects) is raised.
        """
        wait_s = RETRY_WAIT_S
        while not self.stopping.is_set():
            try:
                return await self._subscribe_once(js)
            except broker_away_errors() as error:
                self.log(f"shard {self.shard}: broker: JetStream not answering ({type(error).__name__}); "
                         f"subscribing again in {wait_s:g} s")
            try:
                await asyncio.wait_for(self.stopping.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
            wait_s = min(wait_s * 2, SUBSCRIBE_RETRY_WAIT_MAX_S)
        return None

    async def _subscribe_once(self, js):
        """A durable pull consumer delivering from the stored sequence + 1, whatever the broker acked."""
        from nats.js import api, errors

        await ensure_stream(js, self.stream, self.prefix)
        try:
            await js.delete_consumer(self.stream, self.durable)
        except errors.NotFoundError:
            pass
        self.next_delivery = 1  # a new consumer's deliveries are numbered 1, 2, 3, ...
        config = api.ConsumerConfig(
            durable_name=self.durable, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.progress.position + 1, ack_policy=api.AckPolicy.ALL, ack_wait=ACK_WAIT_S,
            filter_subject=self.subject, max_ack_pending=-1,
        )
        return await js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream, config=config)

    async def _fetch(self, subscription):
        import nats

        try:
            return await subscription.fetch(self.fetch_messages, timeout=FETCH_WAIT_S)
        except nats.errors.TimeoutError:
            await self._measure_lag(subscription)
            return []
        except (nats.errors.Error, OSError) as error:  # the broker is away: the client reconnects
            self.log(f"shard {self.shard}: broker: {type(error).__name__} {error}; retrying")
            await asyncio.sleep(RETRY_WAIT_S)
            return []

    async def _measure_lag(self, subscription):
        import nats

        try:
            info = await subscription.consumer_info()
        except (nats.errors.Error, OSError):
            return
        self._set_lag(info.num_pending + info.num_ack_pending)

    def _set_lag(self, lag):
        self.progress.lag = lag
        self.metrics.lag.set(lag)

    def _in_order(self, messages):
        """The messages up to the first whose delivery number is not the next one.

        Stream sequences of one subject have gaps (other shards' messages), so they cannot
        show a message lost on the way (a client dropping messages, say); the consumer's own
        delivery numbers have none. Applying past a lost message would store a sequence
        beyond it, and lose it for ever.
        """
        for index, message in enumerate(messages):
            if message.metadata.sequence.consumer != self.next_delivery:
                return messages[:index]
            self.next_delivery += 1
        return messages

    async def _apply(self, messages):
        """Apply and ack; False when a delivery was missing (the caller subscribes again)."""
        in_order = self._in_order(messages)
        if in_order:
            await self._apply_in_order(in_order)
        if len(in_order) < len(messages):
            self.log(f"shard {self.shard}: delivery {messages[len(in_order)].metadata.sequence.consumer} where "
                     f"{self.next_delivery} was due; consuming again after stream seq {self.progress.position:,}")
            return False
        return True

    async def _apply_in_order(self, messages):
        import nats

        started = time.perf_counter()
        batch = [(message.metadata.sequence.stream, message.headers, message.data) for message in messages]
        done = await asyncio.to_thread(self.applier.apply, batch)  # committed (and synced) when this returns
        self.metrics.commit("consume", time.perf_counter() - started)
        self.progress.last_commit = time.monotonic()
        self._count(done)
        self._set_lag(messages[-1].metadata.num_pending)
        try:
            await messages[-1].ack()  # AckPolicy.ALL: every message up to this one
        except (nats.errors.Error, OSError) as error:
            # Committed anyway: the broker redelivers, the store skips them.
            self.log(f"shard {self.shard}: ack not sent ({error or type(error).__name__}); "
                     "the batch is committed, a redelivery will be skipped")

    def _count(self, done):
        progress = self.progress
        progress.position = done.position
        progress.messages += done.messages
        progress.applied += done.applied
        progress.duplicates += done.duplicates
        progress.skipped += done.skipped
        self.metrics.position.set(done.position)
        self.metrics.messages.inc(done.messages)
        self.metrics.entries.inc(done.applied)
        for refusal in done.refusals:
            self.metrics.refused.labels(refusal.code).inc()
            if progress.refused < self.refusals_printed_max:
                self.log(f"shard {self.shard}: {refusal.line()}")
            elif progress.refused == self.refusals_printed_max:
                self.log(f"shard {self.shard}: more refusals: see pointsledger_consumer_refused_total")
            progress.refused += 1


def broker_away_errors():
    """What a broker that is restarting, reconnecting or recovering JetStream raises: worth a retry."""
    import nats
    from nats.js import errors

    return (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionReconnectingError,
            nats.errors.StaleConnectionError, errors.ServiceUnavailableError, OSError)


async def _close(connection):
    try:
        await connection.close()
    except Exception:  # closing a connection to a broker that went away: nothing left to do
        pass


__all__ = ["BrokerError", "Consumer", "ConsumerMetrics"]
