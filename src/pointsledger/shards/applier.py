"""Apply a run of stream messages to one shard's store, exactly once (SPEC §18).

Every run is ONE store transaction holding the commands' entries and the last
stream sequence applied (a meta key per stream, Writer.put_meta), so after a
crash at any instant the store holds a prefix of the stream and knows where it
ends. Messages at or below the stored sequence are skipped: a redelivery, or a
consumer restarted from an older acknowledgement, changes nothing. A duplicate
publish (a second message with the same command) is a DUPLICATE by the ledger's
ids. A command for a member of another shard, or a refund of an order that is
not the named member's, is refused and reported, never applied.
"""

import dataclasses

import numpy as np

from .. import operations
from ..store import format as fmt
from ..validation import validate_id
from ..errors import FailedPrecondition, LedgerError, NotFound
from . import commands
from .sharding import check_shard, shard_of

ACCEPTED = ("APPLIED", "DUPLICATE")
SHARD_CACHE_MAX = 1_000_000  # member id -> shard, remembered: hashing every row is most of the check's time
SINGLE = {commands.REFUND: operations.refund, commands.REDEEM: operations.redeem, commands.ADJUST: operations.adjust}


@dataclasses.dataclass
class Refusal:
    stream_seq: int
    kind: str
    command_id: str  # the order, refund, redemption or adjustment id ("" when unreadable)
    member_id: str
    code: str
    reason: str

    def line(self):
        return (f"stream seq {self.stream_seq}: {self.kind} {self.command_id!r} of member {self.member_id!r} "
                f"refused: {self.code}: {self.reason}")


@dataclasses.dataclass
class Applied:
    """What one run did: counts by outcome and the refusals, in stream order."""

    position: int = 0  # the last stream sequence applied (stored), after this run
    messages: int = 0  # messages applied in this run (not counting skipped ones)
    skipped: int = 0  # at or below the stored sequence: applied before
    applied: int = 0
    duplicates: int = 0
    refusals: list = dataclasses.field(default_factory=list)


class ShardApplier:
    """Applies messages of one stream to shard `shard` of `shards`, through an open Ledger."""

    def __init__(self, ledger, stream, shard, shards):
        self.ledger = ledger
        self.stream = stream
        self.shard = check_shard(shard, shards)
        self.shards = shards
        self.key = fmt.META_STREAM_PREFIX + stream.encode("utf-8")
        self.shard_cache = {}

    def position(self):
        """The last stream sequence the store holds (0: none), checked to be this shard's."""
        with self.ledger.store.read() as txn:
            return self._checked(txn.get(self.key, db=self.ledger.store.dbs[fmt.DB_META]))

    def _checked(self, stored):
        if stored is None:
            return 0
        seq, shard, shards = fmt.STREAM_POSITION.unpack(stored)
        if (shard, shards) != (self.shard, self.shards):
            raise FailedPrecondition(
                f"{self.ledger.path} holds shard {shard} of {shards} of stream {self.stream!r}, "
                f"not shard {self.shard} of {self.shards}", "shard", self.shard, reason_code="WRONG_SHARD_STORE")
        return seq

    def apply(self, messages):
        """Apply [(stream_seq, headers, payload)] in stream order, in one transaction; an Applied."""
        def run(writer):
            done = Applied(position=self._checked(writer.get_meta(self.key)))
            for stream_seq, headers, payload in messages:
                if stream_seq <= done.position:
                    done.skipped += 1
                    continue
                self._apply_one(writer, stream_seq, headers, payload, done)
                done.position = stream_seq
                done.messages += 1
            if done.messages:
                writer.put_meta(self.key, fmt.STREAM_POSITION.pack(done.position, self.shard, self.shards))
            return done

        return self.ledger.store.write(run)

    def _apply_one(self, writer, stream_seq, headers, payload, done):
        try:
            command = commands.decode(headers, payload)
        except commands.BadCommand as error:
            kind = (headers or {}).get(commands.COMMAND_HEADER, "?")
            done.refusals.append(Refusal(stream_seq, kind, "", (headers or {}).get(commands.MEMBER_HEADER, ""),
                                         "INVALID_ARGUMENT", str(error)))
            return
        if command.kind == commands.PURCHASES:
            self._purchases(writer, stream_seq, command.request, done)
        else:
            self._single(writer, stream_seq, command, done)

    def _purchases(self, writer, stream_seq, request, done):
        order_ids, member_ids = list(request.order_ids), list(request.member_ids)
        columns = (order_ids, member_ids, np.array(request.amounts_minor, dtype=np.int64),
                   list(request.categories), np.array(request.times_s, dtype=np.int64))
        shards = self._shards_of(member_ids)
        if shards.count(self.shard) < len(member_ids):
            ours = [index for index, shard in enumerate(shards) if shard == self.shard]
            for index, shard in enumerate(shards):
                if shard != self.shard:
                    done.refusals.append(self._wrong_shard(stream_seq, "purchase", order_ids[index], member_ids[index]))
            if not ours:
                return
            columns = _take(columns, ours)
        # A list: the Cython engine's PurchaseResults makes each tuple as it is read (twice here).
        outcomes = list(self.ledger.engine.apply_purchases(writer, *columns))
        statuses = [outcome[0] for outcome in outcomes]
        done.applied += statuses.count("APPLIED")
        done.duplicates += statuses.count("DUPLICATE")
        for index, outcome in enumerate(outcomes):
            if outcome[0] not in ACCEPTED:
                error = outcome[4]
                done.refusals.append(Refusal(stream_seq, "purchase", columns[0][index], columns[1][index],
                                             getattr(error, "code", outcome[0]), str(error)))

    def _shards_of(self, member_ids):
        if self.shards == 1:
            return [0] * len(member_ids)
        cache = self.shard_cache
        if len(cache) > SHARD_CACHE_MAX:
            cache.clear()
        shards = [cache.get(member_id) for member_id in member_ids]
        if None in shards:
            for index, member_id in enumerate(member_ids):
                if shards[index] is None:
                    shards[index] = cache[member_id] = shard_of(member_id, self.shards)
        return shards

    def _single(self, writer, stream_seq, command, done):
        request, kind = command.request, command.kind
        own_id = commands.message_id(command).split(":", 1)[1]
        if shard_of(command.member_id, self.shards) != self.shard:
            done.refusals.append(self._wrong_shard(stream_seq, kind, own_id, command.member_id))
            return
        try:
            if kind == commands.REFUND:
                _check_order_member(writer, request.order_id, command.member_id)
                arguments = (request.refund_id, request.order_id, request.amount_minor, request.time_s)
            elif kind == commands.REDEEM:
                arguments = (request.redemption_id, request.member_id, request.points, request.time_s)
            else:
                arguments = (request.adjustment_id, request.member_id, request.points, request.reason, request.time_s)
            status = SINGLE[kind](writer, *arguments)[0]
        except LedgerError as error:  # checked before anything changed: nothing of it is written
            done.refusals.append(Refusal(stream_seq, kind, own_id, command.member_id, error.code, str(error)))
            return
        if status == "DUPLICATE":
            done.duplicates += 1
        else:
            done.applied += 1

    def _wrong_shard(self, stream_seq, kind, command_id, member_id):
        shard = shard_of(member_id, self.shards) if isinstance(member_id, str) else None
        return Refusal(stream_seq, kind, command_id, member_id, "WRONG_SHARD",
                       f"member {member_id!r} is on shard {shard} of {self.shards}, this is shard {self.shard}")


def _check_order_member(writer, order_id, member_id):
    """NOT_FOUND when the order is stored but is not member_id's (§18); an unknown order is
    the refund's own NOT_FOUND."""
    order = writer.get(fmt.DB_ORDERS, validate_id("order_id", order_id))
    if order is None:
        return
    earn_seq = fmt.decode_order(order)[2]
    owner = writer.entry(earn_seq)[6]
    if owner != member_id.encode("utf-8"):
        raise NotFound(f"order_id {order_id!r}: no such order of member {member_id!r}", "order_id", order_id,
                       reason_code="ORDER_NOT_FOUND")


def _take(columns, indices):
    return tuple(column[indices] if isinstance(column, np.ndarray) else [column[index] for index in indices]
                 for column in columns)
