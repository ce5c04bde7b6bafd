"""The Python API of a ledger: the one surface the service and the CLI share."""

import dataclasses
import os
import time

from . import engine as engines, limits, operations, pipeline, queries, revenue, simulate
from .store import file as store_file, format as fmt
from .store import revenue_upgrade, verify as verifier
from .validation import validate_id, validate_int, validate_time
from .errors import InvalidArgument, LedgerError, NotFound, StoreDamaged
from .program import EXAMPLE_PROGRAM, parse_document
from .results import BatchResult, ExpireResult, OperationResult, Profile, ProgramVersion, VerifyReport
from .store.store import Store

DEFAULT_PATH = "pointsledger-data"
GROUP_OPERATIONS = {"refund": operations.refund, "redeem": operations.redeem, "adjust": operations.adjust}


def _now_s():
    return int(time.time())


class Ledger:
    """One ledger: an LMDB environment (a directory) and the engine that writes it.

    sync=True (the default) makes every write call durable before it returns.
    sync=False is for backfills: commits are not flushed until sync() or close(),
    and a crash loses only whole batches, which the ids make safe to resend (§9).
    """

    def __init__(self, path=DEFAULT_PATH, *, sync=True, engine=None, map_size_bytes=None,
                 readonly=False, clock=_now_s):
        self.engine = engines.get(engine)
        self.path = os.fspath(path)
        self.store = Store(self.path, sync=sync, map_size_bytes=map_size_bytes, readonly=readonly)
        self.store.engine = self.engine
        self._clock = clock
        if not readonly:
            try:  # a store written before §19: issue months and cohort counters, once
                revenue_upgrade.upgrade(self.store)
            except BaseException:
                self.store.close()
                raise

    @property
    def engine_name(self):
        return self.engine.ENGINE_NAME

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self.store.close()

    def sync(self):
        """Flush every commit to disk (the end of a relaxed-sync backfill)."""
        self.store.sync()

    # --- the programme ----------------------------------------------------------------

    def set_program(self, document, effective_from_s=None):
        """Store a new programme version (JSON text or dict); return its number."""
        now_s = self._clock()
        return self.store.write(lambda writer: operations.set_program(writer, document, effective_from_s, now_s))

    def get_program(self, version=None):
        if version is not None:
            version = validate_int("version", version, 1, limits.INT64_MAX)
        with self.store.read() as txn:
            if version is None:
                version = self.store.program_versions(txn)
                if not version:
                    raise NotFound("no programme is set", reason_code="NO_PROGRAM")
            value = txn.get(fmt.U32.pack(version), db=self.store.dbs[fmt.DB_PROGRAMS]) if version < 1 << 32 else None
        if value is None:
            raise NotFound(f"version {version}: no such programme version", "version", version,
                           reason_code="PROGRAM_VERSION_NOT_FOUND")
        effective_from_s = fmt.PROGRAM_HEAD.unpack_from(value)[0]
        return ProgramVersion(version, effective_from_s, parse_document(value[fmt.PROGRAM_HEAD.size:]))

    # --- writes ------------------------------------------------------------------------

    def purchase(self, order_id, member_id, amount_minor, category, time_s):
        raw = self._apply_batch([order_id], [member_id], [amount_minor], [category], [time_s])[0]
        if raw[4] is not None:
            raise raw[4]
        return OperationResult(*raw[:4], *raw[5:])

    def purchases(self, order_ids, member_ids, amounts_minor, categories, times_s):
        """Apply a batch in order, in one transaction; one result per item.

        Columns are sequences or numpy arrays of equal length. A refused item
        does not stop the others; the batch is durable when this returns.
        """
        return BatchResult(self._apply_batch(order_ids, member_ids, amounts_minor, categories, times_s))

    def purchase_batches(self, batches):
        """Apply purchase batches in order on two cores; yield one BatchResult per batch.

        `batches` is an iterable of (order_ids, member_ids, amounts_minor, categories,
        times_s), each as `purchases` takes them; each batch is one transaction, as
        `purchases` would make it, with the same results and the same store. A result is
        yielded only once its batch has committed; meanwhile the next batch is applied, so
        the engine and LMDB work side by side (docs/design.md, *Two cores for the backfill*).
        A batch refused as a whole (InvalidArgument) or a failed write (StoreFull, ...)
        raises after the results of every batch before it; nothing after it is applied.
        Close the generator (or run it out) before using the ledger otherwise.
        """
        return pipeline.run(self, batches)

    def _check_batch(self, order_ids, member_ids, amounts_minor, categories, times_s):
        """The batch's item count, once its columns are of one length within the limit."""
        count = len(order_ids)
        for name, column in (("member_ids", member_ids), ("amounts_minor", amounts_minor),
                             ("categories", categories), ("times_s", times_s)):
            if len(column) != count:
                raise InvalidArgument(name, len(column), f"must have {count} items like order_ids")
        if count > limits.batch_items_max:
            raise InvalidArgument("order_ids", count, f"a batch holds at most {limits.batch_items_max} items")
        return count

    def _apply_batch(self, order_ids, member_ids, amounts_minor, categories, times_s):
        count = self._check_batch(order_ids, member_ids, amounts_minor, categories, times_s)
        if count == 0:
            return []
        apply = self.engine.apply_purchases
        return self.store.write(
            lambda writer: apply(writer, order_ids, member_ids, amounts_minor, categories, times_s)
        )

    def refund(self, refund_id, order_id, amount_minor, time_s):
        return self._single(operations.refund, refund_id, order_id, amount_minor, time_s)

    def redeem(self, redemption_id, member_id, points, time_s):
        return self._single(operations.redeem, redemption_id, member_id, points, time_s)

    def adjust(self, adjustment_id, member_id, points, reason, time_s):
        return self._single(operations.adjust, adjustment_id, member_id, points, reason, time_s)

    def _single(self, operation, *arguments):
        return OperationResult(*self.store.write(lambda writer: operation(writer, *arguments)))

    def apply_group(self, requests):
        """Apply many independent write requests in ONE synced commit (group commit).

        `requests` is a list of (operation, arguments) with operation one of
        "purchase", "refund", "redeem", "adjust" and arguments the tuple that the
        method of that name takes. Each gets its own outcome, in order: an
        OperationResult, or the LedgerError that refused it (a refusal writes
        nothing and does not stop the others). The service gathers concurrent
        unary calls into one group so they share one fsync (§9).
        """
        def apply(writer):
            outcomes = []
            index = 0
            while index < len(requests):
                operation, arguments = requests[index]
                if operation == "purchase":
                    tiers = _purchase_run(writer, requests, index)
                    run = [arguments for _, arguments in requests[index:index + len(tiers)]]
                    index += len(tiers)
                    # One engine call for the run: applying purchases back to back in one
                    # transaction is applying them one after the other (as a stream batch is).
                    raws = self.engine.apply_purchases(writer, *(list(column) for column in zip(*run)))
                    for raw, tier in zip(raws, tiers):
                        if raw[4] is not None:
                            outcomes.append(raw[4])
                            continue
                        outcomes.append(OperationResult(*raw[:4], *raw[5:], tier=tier if raw[0] == "APPLIED" else None,
                                                        **_entry_fields(writer, raw[1])))
                    continue
                index += 1
                try:
                    result = OperationResult(*GROUP_OPERATIONS[operation](writer, *arguments))
                    refunded = {}
                    if operation == "refund":
                        order = writer.get(fmt.DB_ORDERS, validate_id("order_id", arguments[1]))
                        refunded = {"refunded_minor": fmt.decode_order(order)[3]}
                    outcomes.append(dataclasses.replace(result, **refunded, **_entry_fields(writer, result.seq)))
                except LedgerError as error:
                    outcomes.append(error)
            return outcomes

        return self.store.write(apply)

    # --- engagement (§14, §17) -------------------------------------------------------------

    def register_referral(self, referral_id, referrer_id, referee_id, time_s):
        """Record an open referral (a Referral; DUPLICATE for the same id and content)."""
        def apply(writer):
            status, *_ = operations.register_referral(writer, referral_id, referrer_id, referee_id, time_s)
            value = writer.get(fmt.DB_REFERRALS, validate_id("referral_id", referral_id))
            return queries.referral_of(referral_id, value, status)

        return self.store.write(apply)

    def get_referral(self, referral_id):
        """The referral: open or settled, with the settling order; NOT_FOUND if none."""
        return self._recorded(queries.get_referral, "referral_id", referral_id)

    def set_member_profile(self, member_id, birthday):
        """Set (MM-DD) or clear (None) a member's birthday, known member or not yet (§17)."""
        self.store.write(lambda writer: operations.set_member_profile(writer, member_id, birthday))
        return Profile(member_id, birthday)

    def get_member_profile(self, member_id):
        """The member's profile; NOT_FOUND for an id never profiled."""
        return self._recorded(queries.get_member_profile, "member_id", member_id)

    def expire(self, as_of_s=None):
        """Expire every member's due points at as_of (default: now); safe to re-run."""
        as_of_s = self._clock() if as_of_s is None else as_of_s
        members, points = self.store.write(lambda writer: operations.expire(writer, as_of_s))
        return ExpireResult(as_of_s, members, points)

    # --- queries --------------------------------------------------------------------------

    def balance(self, member_id, as_of_s=None):
        member_key = validate_id("member_id", member_id)
        as_of_s = validate_time("as_of_s", self._clock() if as_of_s is None else as_of_s)
        with self.store.read() as txn:
            return queries.balance(self.store, txn, member_id, member_key, as_of_s)

    def history(self, member_id, limit=100, before_seq=None):
        member_key = validate_id("member_id", member_id)
        limit = validate_int("limit", limit, 1, limits.history_limit_max)
        if before_seq is not None:
            before_seq = validate_int("before_seq", before_seq, 1, limits.INT64_MAX)
        with self.store.read() as txn:
            return queries.history(self.store, txn, member_id, member_key, limit, before_seq)

    def journal(self, from_seq=1, limit=1000):
        from_seq = validate_int("from_seq", from_seq, 1, limits.INT64_MAX)
        limit = validate_int("limit", limit, 1, limits.journal_limit_max)
        with self.store.read() as txn:
            return queries.journal(self.store, txn, from_seq, limit)

    def has_order(self, order_id):
        """Whether a purchase with this order id is in the ledger (committed)."""
        order_key = validate_id("order_id", order_id)
        with self.store.read() as txn:
            return txn.get(order_key, db=self.store.dbs[fmt.DB_ORDERS]) is not None

    def backup(self, destination):
        """Copy the ledger, compacted, to destination (a new or empty directory); return its bytes.

        One read snapshot, taken while writers go on. The copy is written beside
        the destination, synced, and renamed into place when complete; a failure
        (StoreFull on a full disk) removes what it wrote.
        """
        return self.store.backup(destination)

    # --- recorded operations, by id ---------------------------------------------------------

    def get_order(self, order_id):
        """The purchase recorded under order_id (RecordedOrder); NOT_FOUND if none."""
        return self._recorded(queries.recorded_order, "order_id", order_id)

    def get_refund(self, refund_id):
        """The refund recorded under refund_id (RecordedRefund); NOT_FOUND if none."""
        return self._recorded(queries.recorded_refund, "refund_id", refund_id)

    def get_redemption(self, redemption_id):
        """The redemption recorded under redemption_id (RecordedRedemption); NOT_FOUND if none."""
        return self._recorded(queries.recorded_redemption, "redemption_id", redemption_id)

    def get_adjustment(self, adjustment_id):
        """The adjustment recorded under adjustment_id (RecordedAdjustment); NOT_FOUND if none."""
        return self._recorded(queries.recorded_adjustment, "adjustment_id", adjustment_id)

    def _recorded(self, query, id_field, id_value):
        key = validate_id(id_field, id_value)
        with self.store.read() as txn:
            return query(self.store, txn, id_value, key)

    def category_count(self):
        """How many categories the ledger holds (at most limits.categories_max); no scan."""
        with self.store.read() as txn:
            return self.store.category_count(txn)

    def release_mapped_pages(self):
        """Unmap the store's pages from this process (RSS only; nothing is lost)."""
        self.store.release_mapped_pages()

    def last_seq(self):
        with self.store.read() as txn:
            return self.store.last_seq(txn)

    def statistics(self):
        """Sizes and counts from the store's own statistics (no scan), for `pointsledger info`."""
        status = os.stat(os.path.join(self.path, "data.mdb"))
        store = self.store
        with store.read() as txn:
            def entries(name):
                return txn.stat(store.dbs[name])["entries"]

            return {
                "store_bytes": status.st_size,
                "store_bytes_on_disk": status.st_blocks * 512,
                "map_bytes": store.env.info()["map_size"],
                "journal_entries": store.last_seq(txn),
                "members": entries(fmt.DB_MEMBERS),
                "orders": entries(fmt.DB_ORDERS),
                "refunds": entries(fmt.DB_REFUNDS),
                "redemptions": entries(fmt.DB_REDEMPTIONS),
                "adjustments": entries(fmt.DB_ADJUSTMENTS),
                "programme_versions": store.program_versions(txn),
                "categories": store.category_count(txn),
                "format_version": fmt.U32.unpack(txn.get(fmt.META_FORMAT, db=store.dbs[fmt.DB_META]))[0],
            }

    def liability(self, as_of_s=None):
        as_of_s = validate_time("as_of_s", self._clock() if as_of_s is None else as_of_s)
        with self.store.read() as txn:
            return queries.liability(self.store, txn, as_of_s)

    def rollforward(self, from_s, to_s):
        from_s = queries.require_midnight("from_s", validate_time("from_s", from_s))
        to_s = queries.require_midnight("to_s", validate_int("to_s", to_s, from_s, limits.time_s_max_exclusive))
        with self.store.read() as txn:
            return queries.rollforward(self.store, txn, from_s, to_s)

    def simulate(self, draft, from_s, to_s, *, progress=None, scratch_dir=None):
        """What-if (§16, §17): the draft programme against what was recorded over events in [from_s, to_s).

        Reads one snapshot (writers go on), replays in scratch stores that are
        removed afterwards; returns a simulate.SimulationResult. An invalid draft
        is InvalidProgram with every problem listed.
        """
        return simulate.simulate(self.store, self.engine, draft, from_s, to_s,
                                 progress=progress, scratch_dir=scratch_dir)

    # --- revenue (§19) ----------------------------------------------------------------

    def set_redemption_estimate(self, estimate_id, effective_from_s, rate):
        """Store an expected redemption rate (a decimal 0 … 1, at most 4 places) from an instant on."""
        return self.store.write(lambda writer: revenue.set_estimate(writer, estimate_id, effective_from_s, rate))

    def redemption_estimates(self):
        with self.store.read() as txn:
            return revenue.read_estimates(self.store, txn)

    def revenue(self, from_s, to_s, cohort="year"):
        """IFRS 15 revenue and contract liability per cohort (§19), from the cohort counters."""
        from_s, to_s, cohort = revenue.check_period(from_s, to_s, cohort)
        with self.store.read() as txn:
            return revenue.revenue(self.store, txn, from_s, to_s, cohort)

    def verify(self):
        """Check every invariant of §7, the buckets, the counters, the id records and the
        category dictionary (verify.py); report what is wrong, where."""
        try:
            # Truncated since it was opened: reading on would be a SIGBUS.
            store_file.check_whole(self.path)
            with self.store.read() as txn:
                return verifier.verify(self.store, txn)
        except StoreDamaged as error:  # a truncated file, or pages LMDB cannot read
            return VerifyReport([error.message], 0, 0)


def _purchase_run(writer, requests, start):
    """The tier before each purchase of the run of purchases from requests[start] that one engine
    call may apply: consecutive purchases of distinct members under programmes without engagement
    rules (a purchase then changes only its own member, so each tier can be read before the run;
    a referral would credit another member). At least the first purchase."""
    tiers = []
    members = set()
    for index in range(start, len(requests)):
        operation, arguments = requests[index]
        member_id = arguments[1]
        if operation != "purchase" or (isinstance(member_id, str) and member_id in members):
            break
        tier, engaged = _tier_before(writer, member_id, arguments[4])
        if tiers and engaged:
            break
        tiers.append(tier)
        if engaged or not isinstance(member_id, str):  # a member id that is no str is refused anyway
            break
        members.add(member_id)
    return tiers


def _entry_fields(writer, seq):
    """The member and programme version of the journal entry at seq, read in the write's own
    transaction: the service answers with them without a read transaction per call."""
    _, _, _, _, version, _, member_key, _ = writer.entry(seq)
    return {"member_id": member_key.decode("utf-8"), "program_version": version}


def _tier_before(writer, member_id, time_s):
    """(the tier a purchase of member_id at time_s earns at (§4: the one held before it), whether
    the programme in force then has engagement rules), read in the purchase's own transaction.
    The tier is None when the purchase will be refused anyway; with a time that is not valid,
    there is no programme to have rules either."""
    try:
        time_s = validate_time("time_s", time_s)
    except LedgerError:
        return None, False
    program = writer.program_at(time_s)
    if program is None:
        return None, False
    try:
        member_key = validate_id("member_id", member_id)
    except LedgerError:
        return None, program.engaged
    state = writer.member(member_key)
    if state is None:  # a new member: no spend, nothing carried
        return program.tier_names[program.tier_rank_for_spend(0)], program.engaged
    return queries.tier_as_of(program, state, time_s)[1], program.engaged


def open_with_example_program(path=DEFAULT_PATH, *, sync=True):
    """The ledger at path, given the example programme when it has none yet.

    What `pointsledger serve` and the CLI open, so that both work with no set-up.
    """
    ledger = Ledger(path, sync=sync)
    if not ledger.store.programs:
        ledger.set_program(dict(EXAMPLE_PROGRAM, effective_from=limits.time_s_min))
    return ledger
