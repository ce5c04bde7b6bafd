"""One write transaction: a write-behind overlay over the sub-databases.

Operations read through the overlay and write into it; `flush` hands LMDB
each sub-database's changes sorted (journal keys appended), packed into one
buffer written with one GIL release (store/put.py), so a batch touches each member
record once, however many purchases it holds.
"""

from .. import calendar, limits
from . import faults, format as fmt, put as store_put
from ..errors import InvalidArgument, ResourceExhausted

# Sub-databases written through the overlay as plain key -> value.
CREDIT_KINDS = (fmt.KIND_EARN, fmt.KIND_BONUS, fmt.KIND_ADJUST)  # with positive points (§19)
OVERLAY_DBS = (
    fmt.DB_ORDERS, fmt.DB_REFUNDS, fmt.DB_REDEMPTIONS, fmt.DB_ADJUSTMENTS, fmt.DB_PROGRAMS,
    fmt.DB_PROFILES, fmt.DB_REFERRALS, fmt.DB_REFEREES, fmt.DB_ESTIMATES,
)


class OrdersConflict(Exception):
    """An order id the engine took as new without looking it up is in the store.

    Raised by `flush` before anything is committed: `Store.write` aborts the
    transaction and runs the batch again with every order id looked up, which
    gives the results and bytes a careful run gives.
    """


class Writer:
    def __init__(self, store, txn, *, check_orders=False, carried=None):
        self.store = store
        self.txn = txn
        # False: the engine may skip the store lookup of an order id (its overlay
        # lookup is never skipped) and list it in unchecked_order_keys; flush
        # then proves those ids new, or raises OrdersConflict.
        self.check_orders = check_orders
        self.unchecked_order_keys = []
        self.dbs = store.dbs
        self.overlay = {name: {} for name in OVERLAY_DBS}
        # carried (pipeline.Carried): what the store will hold once the batch before this
        # one commits, for a batch applied before that (pipeline.py): no read of txn here.
        self.first_seq = (store.last_seq(txn) if carried is None else carried.last_seq) + 1
        self.next_seq = self.first_seq
        self.journal_values = []
        self.members = store.member_cache
        self.dirty_members = {}  # None: none written (the what-if's scratch keeps members in the cache)
        self.new_member_count = 0
        self._members_complete = None  # members_complete(), once asked
        self.new_categories = {}  # name -> code, not yet committed
        self.new_category_names = {}  # code -> name, the same ones
        self.stored_category_count = None  # read from the transaction when first needed
        self.expiry_deltas = {}  # instant -> change of the points expiring then
        self.day_deltas = {}  # day -> [counter deltas]
        if carried is not None:
            self.totals = list(carried.totals)
        else:
            stored = txn.get(fmt.META_TOTALS, db=self.dbs[fmt.DB_META])
            self.totals = list(fmt.COUNTERS.unpack(stored)) if stored else [0] * len(fmt.COUNTER_FIELDS)
        self.new_programs = []
        # Engagement (§14): set by anything that writes a record of format 3.
        self.engaged = False
        self.bonus_day_deltas = {}  # day -> BONUS points issued
        self.bonus_total = None if carried is None else carried.bonus_total  # None: read from meta when first needed
        # The what-if (simulate/) sets a list here: both engines append the tier
        # rank each applied purchase earned at (§4: the tier held before it).
        self.tier_ranks = None
        # The what-if sets a set of order keys here: both engines write the order record of
        # a purchase only when its key is in it (the scratch reads back no other order).
        self.orders_kept = None
        # Revenue (§19): day -> purchase amounts of that day (the C engine folds
        # its per-day sum in); (issue month, day) -> cohort counter deltas. The
        # points credited each day come from the day counters at flush.
        self.amount_day_deltas = {}
        self.cohort_deltas = {}
        # (issue month, day, programme version) -> [credited, taken back]: the cohort
        # counters' points by the version of the entry that moved them (§19, format 5).
        self.value_deltas = {}
        self.new_estimates = []  # revenue.Estimate set in this transaction, in order
        # Meta keys a caller writes with the batch (put_meta): a stream consumer's position.
        self.meta_changes = {}

    # --- reads through the overlay --------------------------------------------------

    def get(self, db_name, key):
        value = self.overlay[db_name].get(key)
        if value is None:
            value = self.txn.get(key, db=self.dbs[db_name])
        return value

    def put(self, db_name, key, value):
        self.overlay[db_name][key] = value

    def entry(self, seq):
        if seq >= self.first_seq:
            return fmt.decode_entry(self.journal_values[seq - self.first_seq])
        return fmt.decode_entry(self.txn.get(fmt.seq_key(seq), db=self.dbs[fmt.DB_JOURNAL]))

    def members_complete(self):
        """Whether the member cache holds every member stored in txn, as the C engine's batch
        asks it (the cache holds stored members and this writer's new ones only, and is dropped
        whenever a transaction fails after changing it): then a key not in it is a new member.

        Asked of the store once per writer (a `stat`), since from then on the cache grows only
        by members this writer creates. That matters to the service: each LMDB read lets the
        GIL go, and getting it back from a busy event loop cost the group commit a wait per
        purchase of a new member (`ledger._tier_before`).
        """
        if self._members_complete is None:
            self._members_complete = (
                len(self.members) - self.new_member_count == self.txn.stat(self.dbs[fmt.DB_MEMBERS])["entries"])
        return self._members_complete

    def member(self, member_key):
        """The member's state (cached, mutable), or None for an unknown member."""
        state = self.members.get(member_key)
        if state is None:
            if self.members_complete():
                return None
            value = self.txn.get(member_key, db=self.dbs[fmt.DB_MEMBERS])
            if value is None:
                return None
            state = self.store.engine.MemberState.decode(value)
            self.members[member_key] = state
        return state

    def add_member(self, member_key, state):
        self.members[member_key] = state
        self.mark_dirty(member_key, state)
        self.new_member_count += 1

    def mark_dirty(self, member_key, state):
        if self.dirty_members is not None:  # None: the what-if writes no member record (both engines)
            self.dirty_members[member_key] = state

    def program_at(self, time_s):
        return self.store.program_at(time_s)

    # --- categories ------------------------------------------------------------------

    def category_code(self, name_key):
        """The category's code, allocating the next one for a new category."""
        code = self.known_category_code(name_key)
        if code is None:
            self.check_category(name_key)
            code = self.category_total()
            self.new_categories[name_key] = code
            self.new_category_names[code] = name_key
        return code

    def known_category_code(self, name_key):
        """The code of a category stored or new in this transaction; None for an unknown one."""
        code = self.store.category_codes.get(name_key)
        if code is None:
            code = self.new_categories.get(name_key)
        if code is None:
            value = self.txn.get(name_key, db=self.dbs[fmt.DB_CATEGORIES])
            if value is not None:
                code = fmt.decode_category_code(value)
                self.store.remember_category(name_key, code)
        return code

    def category_total(self):
        """Categories stored plus those new in this transaction (codes are 0 .. total - 1)."""
        if self.stored_category_count is None:
            self.stored_category_count = self.store.category_count(self.txn)
        return self.stored_category_count + len(self.new_categories)

    def check_category(self, name_key):
        """Refuse a new category when the dictionary is full, before anything is written."""
        if self.known_category_code(name_key) is not None:
            return
        if self.category_total() >= limits.categories_max:
            name = name_key.decode("utf-8")
            raise ResourceExhausted(
                f"category {name!r}: the ledger already holds {limits.categories_max:,} categories, "
                "its most; use one of them",
                "category", name,
            )

    def category_name(self, code):
        name = self.store.category_names.get(code)
        if name is None:
            name = self.new_category_names.get(code)
        if name is None:
            value = self.txn.get(fmt.encode_category_code(code), db=self.dbs[fmt.DB_CATEGORY_NAMES])
            if value is not None:
                name = bytes(value)
                self.store.remember_category(name, code)
        return name

    # --- journal and counters -----------------------------------------------------------

    def append_entry(self, kind, points, state, member_key, ref_key, time_s, program_version):
        seq = self.next_seq
        self.journal_values.append(fmt.encode_entry(
            kind, points, state.balance, time_s, program_version, state.last_seq, member_key, ref_key,
        ))
        state.last_seq = seq
        self.next_seq = seq + 1
        return seq

    def count(self, time_s, counter, delta):
        day = calendar.day_of(time_s)
        deltas = self.day_deltas.get(day)
        if deltas is None:
            deltas = self.day_deltas[day] = [0] * len(fmt.COUNTER_FIELDS)
        deltas[counter] += delta
        self.totals[counter] += delta

    def count_amount(self, time_s, amount_minor):
        """A purchase's amount, for its cohort (the issue month of its day, §19)."""
        day = calendar.day_of(time_s)
        self.amount_day_deltas[day] = self.amount_day_deltas.get(day, 0) + amount_minor

    def count_cohort(self, month, time_s, column, delta):
        """A change of issue month `month`'s points (or amount) by an event at time_s (§19)."""
        key = (month, calendar.day_of(time_s))
        deltas = self.cohort_deltas.get(key)
        if deltas is None:
            deltas = self.cohort_deltas[key] = [0] * len(fmt.COHORT_FIELDS)
        deltas[column] += delta
        if column == fmt.COHORT_TAKEN_BACK:  # valued at the version of the entry that takes them
            self._value_delta(month, key[1], self.version_at(time_s))[1] += delta

    def version_at(self, time_s):
        """The programme version an entry at time_s is applied under (0 without a programme)."""
        program = self.program_at(time_s)
        return program.version if program is not None else 0

    def _value_delta(self, month, day, version):
        deltas = self.value_deltas.get((month, day, version))
        if deltas is None:
            deltas = self.value_deltas[(month, day, version)] = [0, 0]
        return deltas

    def count_taken(self, time_s, column, taken):
        """count_cohort for each issue month of a debit or an expiry (issue month -> points)."""
        for month, points in taken.items():
            if points:
                self.count_cohort(month, time_s, column, points)

    def count_bonus(self, time_s, points):
        """The bonus line of the reports (§17), kept apart from the counters of §8."""
        day = calendar.day_of(time_s)
        self.bonus_day_deltas[day] = self.bonus_day_deltas.get(day, 0) + points
        self.bonus_total = self.stored_bonus_total() + points

    def stored_bonus_total(self):
        if self.bonus_total is None:
            stored = self.txn.get(fmt.META_BONUS_TOTAL, db=self.dbs[fmt.DB_META])
            self.bonus_total = fmt.I64.unpack(stored)[0] if stored else 0
        return self.bonus_total

    def check_credit(self, points):
        """Everything ever credited must fit int64, so every sum of points does too."""
        credited = (
            self.totals[fmt.COUNTER_EARNED] + self.totals[fmt.COUNTER_ADJUSTED_POSITIVE] + points
        )
        credited += self.stored_bonus_total()
        if credited > limits.INT64_MAX:
            raise InvalidArgument(
                "points", points, "the ledger's total credited points would overflow int64"
            )

    # --- a caller's own meta keys ----------------------------------------------------------

    def get_meta(self, key):
        """A meta value as this transaction sees it (put_meta's, else the stored one), or None."""
        value = self.meta_changes.get(key)
        return value if value is not None else self.txn.get(key, db=self.dbs[fmt.DB_META])

    def put_meta(self, key, value):
        """Write a meta key in this transaction, committed with its entries or not at all
        (a stream consumer's last applied sequence: exactly once, SPEC §18)."""
        if key in fmt.META_RESERVED:
            raise ValueError(f"meta key {key!r} belongs to the store")
        self.meta_changes[key] = bytes(value)

    # --- commit ------------------------------------------------------------------------

    def has_changes(self):
        return bool(
            self.journal_values or self.dirty_members or self.new_categories
            or self.new_programs or any(self.overlay.values()) or self.engaged or self.meta_changes
        )

    def flush(self):
        if faults.hook is not None:
            faults.hook("flush")
        self.write_records(self.encode_records())
        self.write_rest()

    def encode_records(self):
        """The journal, member and overlay records of this transaction, packed in key order
        (store_put.Records, one segment per sub-database), with each segment's first and last key.

        The member records are encoded here, so what is written is the state now: a
        pipeline (pipeline.py) calls this before the next batch changes those states.
        """
        records = store_put.new_records()
        first_keys, last_keys = [], []
        engine = self.store.engine
        if self.journal_values:
            # Seq only grows: appended (write_records).
            if type(self.journal_values) is list:
                records.add_journal(fmt.DB_JOURNAL, self.first_seq, self.journal_values)
            else:  # the Cython engine's PackedJournal: seq keys and values in one buffer, referenced
                records.add_packed(fmt.DB_JOURNAL, self.journal_values, len(self.journal_values))
            first_keys.append(None)
            last_keys.append(None)
        if self.dirty_members:
            pack_members = getattr(engine, "pack_members", None)
            if pack_members is not None:  # the Cython engine: each state encoded straight into one buffer
                packed, count, first_key, last_key = pack_members(self.dirty_members)
                records.add_packed(fmt.DB_MEMBERS, packed, count)
            else:  # the twin's (key, bytes) pairs, copied
                _, first_key, last_key = records.add_items(fmt.DB_MEMBERS, engine.member_items(self.dirty_members))
            first_keys.append(first_key)
            last_keys.append(last_key)
        for name, changes in self.overlay.items():
            if not changes:
                continue
            packed_records = getattr(changes, "packed_records", None)
            if packed_records is not None:  # the Cython engine's PackedOrders: its records in key order, packed
                packed, count, first_key, last_key = packed_records()
                records.add_packed(name, packed, count)
            else:
                # Referenced, sorted when put (without the GIL): the overlay is not changed after this.
                _, first_key, last_key = records.add_dict(name, changes)
            first_keys.append(first_key)
            last_keys.append(last_key)
        return records, first_keys, last_keys

    def write_records(self, encoded):
        """Put encode_records' records into the transaction: appended where every key sorts
        after the sub-database's last, order ids taken as new proven new (OrdersConflict)."""
        records, first_keys, _ = encoded
        txn, dbs = self.txn, self.dbs
        modes = []
        for index, first_key in enumerate(first_keys):
            name = records.name(index)
            if name == fmt.DB_JOURNAL:
                modes.append(store_put.APPEND)
            elif name == fmt.DB_MEMBERS:
                modes.append(store_put.PLAIN)
            elif _after_last(txn, dbs[name], first_key):
                modes.append(store_put.APPEND)
            elif name == fmt.DB_ORDERS and self.unchecked_order_keys:
                modes.append(self._unchecked_orders_mode(records.count(index)))
            else:
                modes.append(store_put.PLAIN)
        try:
            store_put.put_records(txn, self.store.env, dbs, records, modes)
        except store_put.KeyConflict as conflict:
            raise OrdersConflict(f"{conflict.stored} order ids were already in the store") from None

    def _unchecked_orders_mode(self, count):
        """How to write orders some of whose ids the engine did not look up."""
        if len(self.unchecked_order_keys) == count:
            # Every order of the overlay is unchecked: LMDB checks them as it inserts.
            return store_put.NEW_ONLY
        # Mixed with updates of stored orders (refunds): look the unchecked ones up.
        db = self.dbs[fmt.DB_ORDERS]
        for key in self.unchecked_order_keys:
            if self.txn.get(key, db=db) is not None:
                raise OrdersConflict("an order id was already in the store")
        return store_put.PLAIN

    def write_rest(self):
        """Everything after the records: categories, counters read and summed, meta; their
        puts kept and written at the end with one put (store/put.py), as the records are: on a
        pipeline's writer thread each py-lmdb put would wait to take the GIL back."""
        txn = self.txn
        self.txn = _DeferredPuts(txn, self.dbs)
        try:
            self._write_rest()
            records, modes = self.txn.records()
        finally:
            self.txn = txn
        if modes:
            store_put.put_records(txn, self.store.env, self.dbs, records, modes)

    def _write_rest(self):
        txn, dbs = self.txn, self.dbs
        wide_codes = False
        for name, code in self.new_categories.items():
            code_key = fmt.encode_category_code(code)
            txn.put(name, code_key, db=dbs[fmt.DB_CATEGORIES])
            txn.put(code_key, name, db=dbs[fmt.DB_CATEGORY_NAMES])
            wide_codes = wide_codes or code >= fmt.NARROW_CODES
        self._flush_cohorts()
        self._flush_days()
        self._flush_expiry()
        meta = dbs[fmt.DB_META]
        if self.dirty_members or self.cohort_deltas or self.new_estimates:
            # Members with issue months, cohort counters by version: from this commit on a reader must know format 5.
            self._raise_format(fmt.FORMAT_VERSION_VALUES)
        if wide_codes:
            # The first four-byte code: from this commit on a format-1 reader must refuse the store.
            self._raise_format(fmt.FORMAT_VERSION_WIDE_CODES)
        if self.engaged:
            # Engagement records: from this commit on a reader must know format 3.
            self._raise_format(fmt.FORMAT_VERSION_ENGAGEMENT)
            self._flush_bonus()
        txn.put(fmt.META_TOTALS, fmt.COUNTERS.pack(*self.totals), db=meta)
        for key, value in self.meta_changes.items():
            txn.put(key, value, db=meta)
        if self.new_member_count:
            stored = txn.get(fmt.META_MEMBER_COUNT, db=meta)
            members = (fmt.U64.unpack(stored)[0] if stored else 0) + self.new_member_count
            txn.put(fmt.META_MEMBER_COUNT, fmt.U64.pack(members), db=meta)
        self.commit_count = self.store.commit_count(txn) + 1
        txn.put(fmt.META_COMMIT_COUNT, fmt.U64.pack(self.commit_count), db=meta)

    def _raise_format(self, version):
        meta = self.dbs[fmt.DB_META]
        stored = self.txn.get(fmt.META_FORMAT, db=meta)
        if stored is None or fmt.U32.unpack(stored)[0] < version:
            self.txn.put(fmt.META_FORMAT, fmt.U32.pack(version), db=meta)

    def _flush_bonus(self):
        if not self.bonus_day_deltas:
            return
        db = self.dbs[fmt.DB_BONUS_DAYS]
        for day in sorted(self.bonus_day_deltas):
            key = fmt.I32.pack(day)
            stored = self.txn.get(key, db=db)
            total = (fmt.I64.unpack(stored)[0] if stored else 0) + self.bonus_day_deltas[day]
            self.txn.put(key, fmt.I64.pack(total), db=db)
        self.txn.put(fmt.META_BONUS_TOTAL, fmt.I64.pack(self.bonus_total), db=self.dbs[fmt.DB_META])

    def _flush_days(self):
        db = self.dbs[fmt.DB_DAYS]
        for day in sorted(self.day_deltas):
            key = fmt.I32.pack(day)
            stored = self.txn.get(key, db=db)
            counters = list(fmt.COUNTERS.unpack(stored)) if stored else [0] * len(fmt.COUNTER_FIELDS)
            for index, delta in enumerate(self.day_deltas[day]):
                counters[index] += delta
            self.txn.put(key, fmt.COUNTERS.pack(*counters), db=db)

    def _flush_cohorts(self):
        """Cohort counters (§19): credits of a day belong to that day's issue month."""
        for day in set(self.day_deltas) | set(self.bonus_day_deltas):
            deltas = self.day_deltas.get(day)
            credited = deltas[fmt.COUNTER_EARNED] + deltas[fmt.COUNTER_ADJUSTED_POSITIVE] if deltas else 0
            credited += self.bonus_day_deltas.get(day, 0)
            if credited:
                month = calendar.issue_month_of_day(day)
                self._cohort_delta(month, day)[fmt.COHORT_CREDITED] += credited
                for version, points in self._credits_by_version(day, credited).items():
                    self._value_delta(month, day, version)[0] += points
        for day, amount in self.amount_day_deltas.items():
            if amount:
                self._cohort_delta(calendar.issue_month_of_day(day), day)[fmt.COHORT_AMOUNT] += amount
        if not self.cohort_deltas:
            return
        db = self.dbs[fmt.DB_COHORTS]
        for (month, day), deltas in sorted(self.cohort_deltas.items()):
            if not any(deltas):
                continue
            key = fmt.COHORT_KEY.pack(month, day)
            stored = self.txn.get(key, db=db)
            counters = list(fmt.COHORT.unpack(stored)) if stored else [0] * len(fmt.COHORT_FIELDS)
            for index, delta in enumerate(deltas):
                counters[index] += delta
            self.txn.put(key, fmt.COHORT.pack(*counters), db=db)
        self._flush_values()

    def _flush_values(self):
        db = self.dbs[fmt.DB_COHORT_VALUES]
        for (month, day, version), deltas in sorted(self.value_deltas.items()):
            if not any(deltas):
                continue
            key = fmt.COHORT_VALUE_KEY.pack(month, day, version)
            stored = self.txn.get(key, db=db)
            credited, taken_back = fmt.COHORT_VALUE.unpack(stored) if stored else (0, 0)
            self.txn.put(key, fmt.COHORT_VALUE.pack(credited + deltas[0], taken_back + deltas[1]), db=db)

    def _credits_by_version(self, day, credited):
        """This commit's credits of a day by programme version: all under one version unless a
        version takes effect inside the day; then from this commit's journal entries of that day."""
        start = day * calendar.SECONDS_PER_DAY
        end = start + calendar.SECONDS_PER_DAY
        if not any(start < each < end for each in self.store.program_starts):
            return {self.version_at(start): credited}
        by_version = {}
        for value in self.journal_values:
            kind, points, _, time_s, version, *_ = fmt.decode_entry(value)
            if start <= time_s < end and points > 0 and kind in CREDIT_KINDS:
                by_version[version] = by_version.get(version, 0) + points
        if sum(by_version.values()) != credited:
            raise RuntimeError(f"day {day}: credits by version {by_version} do not sum to {credited}: a bug")
        return by_version

    def _cohort_delta(self, month, day):
        deltas = self.cohort_deltas.get((month, day))
        if deltas is None:
            deltas = self.cohort_deltas[(month, day)] = [0] * len(fmt.COHORT_FIELDS)
        return deltas

    def _flush_expiry(self):
        db = self.dbs[fmt.DB_EXPIRY]
        for instant in sorted(self.expiry_deltas):
            delta = self.expiry_deltas[instant]
            if delta == 0:
                continue
            key = fmt.I64.pack(instant)
            stored = self.txn.get(key, db=db)
            total = (fmt.I64.unpack(stored)[0] if stored else 0) + delta
            if total:
                self.txn.put(key, fmt.I64.pack(total), db=db)
            else:
                self.txn.delete(key, db=db)

    def committed(self):
        """After commit: what this transaction added becomes the cached truth."""
        store = self.store
        for name, code in self.new_categories.items():
            store.remember_category(name, code)
        if self.new_programs:
            store.programs = store.programs + self.new_programs
            store.program_starts = [compiled.effective_from_s for compiled in store.programs]
        store.cached_commit_count = self.commit_count


def _after_last(txn, db, first_key):
    """Whether every key from first_key on sorts after the sub-database's last key.

    Then LMDB can append (MDB_APPEND): no page search, pages filled completely.
    """
    cursor = txn.cursor(db=db)
    return not cursor.last() or cursor.key() < first_key


class _DeferredPuts:
    """write_rest's view of the transaction: reads see its own puts, which are kept (per
    sub-database, key -> value) for one put at the end; a delete goes through at once."""

    def __init__(self, txn, dbs):
        self.txn = txn
        self.names = {id(handle): name for name, handle in dbs.items()}
        self.puts = {}

    def get(self, key, default=None, db=None):
        changes = self.puts.get(self.names[id(db)])
        if changes is not None and key in changes:
            return changes[key]
        return self.txn.get(key, default, db=db)

    def put(self, key, value, db=None):
        self.puts.setdefault(self.names[id(db)], {})[bytes(key)] = bytes(value)
        return True

    def delete(self, key, db=None):
        changes = self.puts.get(self.names[id(db)])
        if changes is not None:
            changes.pop(bytes(key), None)
        return self.txn.delete(key, db=db)

    def records(self):
        """(store_put records of the kept puts, their modes)."""
        records = store_put.new_records()
        for name, changes in self.puts.items():
            if changes:
                records.add_dict(name, changes)
        return records, [store_put.PLAIN] * len(records)
