"""The scratch space of a what-if: a temporary LMDB store the real engine writes.

The replay runs the engine in use (Cython, or the twin) through the same
`Store.write` / `Writer` / `apply_purchases` / `operations.refund` path a
backfill takes, so there is one implementation of the rules. The store lives
in a temporary directory (relaxed sync: nothing is ever fsync'd) that is
removed when the what-if ends, whether it succeeds, fails or is interrupted.
"""

import array
import operator
import shutil
import tempfile

from .. import operations
from ..store import format as fmt
from ..errors import LedgerError
from ..store.store import Store
from . import compiled

RESULT_STATUS, RESULT_POINTS = 0, 2
_status, _points = operator.itemgetter(RESULT_STATUS), operator.itemgetter(RESULT_POINTS)
# Sparse: the scratch file takes only the disk it writes. Large enough that the map never
# grows, since growing runs the transaction again after dropping the caches (see Scratch.apply).
SCRATCH_MAP_BYTES = 1 << 37
APPLIED = "APPLIED"


class PurchaseOutcome:
    """What the scratch made of a batch's purchases and refunds, by column (int64 arrays: the
    tally reads them without a copy; applied is 1 or 0)."""

    __slots__ = ("applied", "points", "bonus", "tiers", "clawed_back")

    def __init__(self, count, refunds):
        zeros = bytes(8 * count)
        self.applied = array.array("q", zeros)
        self.points = array.array("q", zeros)
        self.bonus = array.array("q", zeros)
        self.tiers = array.array("q", zeros)
        self.clawed_back = [None] * refunds  # None: refused in the scratch (its purchase was)


class Scratch:
    """A temporary store with the given programme versions; `apply` replays a batch in it."""

    def __init__(self, engine, programs, kept_orders, directory=None, now_s=0):
        self.engine = engine
        loops = compiled.loops(engine)
        self._take = _take if loops is None else loops.take_results
        self._place_tiers = _place_tiers if loops is None else loops.place_tiers
        self.kept_orders = kept_orders
        self.path = tempfile.mkdtemp(prefix="pointsledger-simulate-", dir=directory)
        self.store = None
        try:
            self.store = Store(self.path, sync=False, map_size_bytes=SCRATCH_MAP_BYTES)
            self.store.engine = engine
            # Members live in the store's member cache only (see _keep_only_what_is_read):
            # a write that drops the caches (a failure, or a retry after a full map or
            # an order conflict, none expected here) loses them; apply then refuses to go on.
            self.lost = False
            forget = self.store.forget

            def forget_and_note():
                self.lost = True
                forget()

            self.store.forget = forget_and_note
            self.store.write(lambda writer: [
                operations.set_program(writer, document, effective_from_s, now_s)
                for effective_from_s, document in programs
            ])
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Close and remove the scratch store (also after a failure or an interrupt)."""
        try:
            if self.store is not None:
                self.store.env.close()
                self.store = None
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    @property
    def programs(self):
        return self.store.programs

    def register_referrals(self, referrals):
        """The referrals of the replay, open, as the ledger holds them (§17)."""
        def apply(writer):
            for referral_key, (time_s, _, referrer_key, referee_key, _) in referrals:
                writer.engaged = True
                writer.put(fmt.DB_REFERRALS, referral_key, fmt.encode_referral(time_s, 0, referrer_key, referee_key, b""))
                writer.put(fmt.DB_REFEREES, referee_key, referral_key)

        if referrals:
            self.store.write(apply)

    def apply(self, batch):
        """Replay one batch in one scratch transaction; what each purchase and refund came to."""
        outcome = self.store.write(lambda writer: self._apply(writer, batch))
        if self.lost:
            raise RuntimeError("the what-if's scratch store dropped its caches (a write ran again): "
                               "its replay is lost")
        return outcome

    def _apply(self, writer, batch):
        outcome = PurchaseOutcome(len(batch), len(batch.refunds))
        writer.tier_ranks = tiers = []  # filled by the engine (a retried transaction starts again)
        writer.orders_kept = self.kept_orders  # the engines write no other order record
        writer.dirty_members = None  # nor any member record: members stay in the member cache
        for member_key, year in batch.ensure:
            if writer.member(member_key) is None:
                writer.add_member(member_key, self.engine.MemberState(year))
        for member_key, birthday in batch.early_profiles:
            _set_profile(writer, member_key, birthday)
        apply_purchases = self.engine.apply_purchases
        for step in batch.steps:
            kind = step[0]
            if kind == "purchases":
                _, first, end = step
                if first == 0 and end == len(batch):  # the usual case, one run: the columns as they are
                    results = apply_purchases(writer, batch.order_ids, batch.member_ids, batch.amounts,
                                              batch.categories, batch.times)
                else:
                    results = apply_purchases(
                        writer, batch.order_ids[first:end], batch.member_ids[first:end], batch.amounts[first:end],
                        batch.categories[first:end], batch.times[first:end],
                    )
                self._take(outcome, first, results)
            elif kind == "refund":
                index = step[1]
                try:
                    outcome.clawed_back[index] = -operations.refund(writer, *batch.refunds[index])[RESULT_POINTS]
                except LedgerError:
                    pass  # its purchase was refused in the scratch
            elif kind == "roll":
                _, member_key, ref_key, time_s = step
                _roll(writer, member_key, ref_key, time_s)
            else:
                _set_profile(writer, step[1], step[2])
        self._place_tiers(outcome, tiers)
        writer.tier_ranks = None
        self._keep_only_what_is_read(writer)
        return outcome

    def _keep_only_what_is_read(self, writer):
        """Write to LMDB only what the replay reads back: the journal (a refund's EARN entry, a
        member's purchase count), programmes, profiles, referrals, and the orders a refund in the
        window will look up. Member records stay in the member cache, where every later batch
        finds them (writer.dirty_members is None: the engines mark none); other orders are never
        read again (order ids are unique): the engines did not write their records
        (writer.orders_kept), and any other write of one is dropped here."""
        orders, kept = writer.overlay[fmt.DB_ORDERS], self.kept_orders
        if kept:
            for order_key in [key for key in orders if key not in kept]:
                del orders[order_key]
            writer.unchecked_order_keys[:] = [key for key in writer.unchecked_order_keys if key in orders]
        else:
            orders.clear()
            writer.unchecked_order_keys.clear()

    def release_mapped_pages(self):
        self.store.release_mapped_pages()


def _take(outcome, first, results):
    """The engine's results of purchases [first, first + len(results)) into the outcome's columns."""
    end = first + len(results)
    outcome.applied[first:end] = array.array("q", [status == APPLIED for status in map(_status, results)])
    outcome.points[first:end] = array.array("q", map(_points, results))
    if results and max(map(len, results)) > 5:  # a purchase that wrote bonuses (§17) has a sixth element
        for offset, result in enumerate(results):
            if len(result) > 5 and result[RESULT_STATUS] == APPLIED:
                outcome.bonus[first + offset] = sum(bonus[2] for bonus in result[5])


def _place_tiers(outcome, tiers):
    """The engine's tier ranks, one per applied purchase in order, at their purchases' places."""
    applied = outcome.applied
    index = 0
    for position in range(len(applied)):
        if applied[position]:
            outcome.tiers[position] = tiers[index]
            index += 1


def _roll(writer, member_key, ref_key, time_s):
    """A recorded redemption or adjustment: not replayed, but it rolls the member's tier year (§17)."""
    state = writer.member(member_key)
    if state is None:
        return
    operations.roll_and_expire(writer, state, member_key, ref_key, time_s, writer.program_at(time_s))
    writer.mark_dirty(member_key, state)


def _set_profile(writer, member_key, value):
    birthday = f"{value[0]:02d}-{value[1]:02d}" if len(value) == 2 else None
    operations.set_member_profile(writer, member_key.decode("utf-8"), birthday)

