# Part of _engine_c.pyx (included there): the batch: _Batch, the writer's state between items, and apply_purchases.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

cdef bytes _encode_referral(int64_t time_s, int64_t settled_seq, bytes referrer_key, bytes referee_key,
                            bytes order_key):
    """store_format.encode_referral packed by hand (its error for a key over 255 bytes, or a negative seq)."""
    cdef Py_ssize_t referrer_size = PyBytes_GET_SIZE(referrer_key)
    cdef Py_ssize_t referee_size = PyBytes_GET_SIZE(referee_key)
    cdef Py_ssize_t order_size = PyBytes_GET_SIZE(order_key)
    if referrer_size > 255 or referee_size > 255 or order_size > 255 or settled_seq < 0:
        return fmt.encode_referral(time_s, settled_seq, referrer_key, referee_key, order_key)
    cdef bytes value = PyBytes_FromStringAndSize(NULL, REFERRAL_HEAD_SIZE + referrer_size + referee_size + order_size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(value)
    pl_put64(p, <uint64_t>time_s)
    pl_put64(p + 8, <uint64_t>settled_seq)
    p[16] = <unsigned char>referrer_size
    p[17] = <unsigned char>referee_size
    p[18] = <unsigned char>order_size
    p += REFERRAL_HEAD_SIZE
    memcpy(p, PyBytes_AS_STRING(referrer_key), referrer_size)
    memcpy(p + referrer_size, PyBytes_AS_STRING(referee_key), referee_size)
    memcpy(p + referrer_size + referee_size, PyBytes_AS_STRING(order_key), order_size)
    return value


@cython.final
cdef class _Batch:
    """The writer's state for one apply_purchases call, held in C between items.

    Journal values, order values, member states and new members go straight
    into the writer's own containers, as the twin's writer calls would put
    them. Counters, expiry deltas and next_seq are summed in C and handed back
    to the writer when the day changes and in `finish`, so the writer ends the
    batch exactly as the twin leaves it.
    """
    cdef object writer
    cdef object txn_get
    cdef object orders_db
    cdef object members_db
    cdef PackedOrders orders
    cdef MemberCache members
    # Every member stored in the transaction is in writer.members: a key not
    # there is a new member, without an LMDB lookup (a fresh or warm store).
    cdef bint members_complete
    cdef DirtyMembers dirty_members  # writer.dirty_members, or None (the what-if's scratch)
    cdef dict day_deltas
    cdef dict store_category_codes
    cdef dict new_categories
    cdef dict categories  # category str -> _Category, for this batch
    cdef dict profile_cache  # the store's member key -> birthday (engagement.birthday_bp)
    cdef bint writer_engaged  # writer.engaged set by this batch
    cdef bint profiles_complete  # profile_cache holds every member with a profile
    cdef int64_t profile_generation  # store.profile_generation: MemberState._profile_stamp is valid at it
    cdef object referee_keys  # a set holding at least every referee, or None
    cdef dict referees_overlay
    cdef object referees_db
    cdef dict referrals_overlay
    cdef set settled_referees  # referees whose referral this batch found or made settled
    cdef object referrals_db
    # A detached batch's (pipeline.py) sub-databases carried whole: db handle -> {key: value},
    # read here in C instead of through its txn's Python get; None until stored() first asks.
    cdef dict carried_tables
    # Members of the current chunk of items, looked up ahead (resolve_chunk):
    # the key of a valid member id, its MemberState if in writer.members (owned, or NULL).
    cdef PyObject* chunk_keys[CHUNK_ITEMS]
    cdef PyObject* chunk_states[CHUNK_ITEMS]
    cdef const char* chunk_data[CHUNK_ITEMS]  # the valid member id's UTF-8 (in the column's str), else NULL
    cdef Py_ssize_t chunk_sizes[CHUNK_ITEMS]
    cdef Py_hash_t chunk_hashes[CHUNK_ITEMS]
    cdef CacheSlot* chunk_found[CHUNK_ITEMS]  # the member's cache slot (stable until a member is added)
    cdef int chunk_size  # slots that may hold references
    cdef list journal_values  # writer.journal_values when a list (not packed), else None
    cdef PackedJournal journal  # writer.journal_values when packed, else None
    cdef list tier_ranks  # writer.tier_ranks (the what-if): the tier of each applied purchase
    cdef object orders_kept  # writer.orders_kept (the what-if): None, or the only orders whose record is written
    cdef list totals_list
    cdef PurchaseResults results  # apply_purchases' results: record adds its purchase here
    cdef int64_t next_seq
    cdef int64_t new_member_count
    cdef int64_t totals[COUNTER_COUNT]
    cdef int64_t day
    cdef bint day_touched
    cdef int64_t day_counts[COUNTER_COUNT]
    cdef _ExpiryDeltas expiry_deltas
    # The programme in force over [program_from_s, program_until_s).
    cdef _Rules rules
    cdef int64_t program_from_s
    cdef int64_t program_until_s
    # Calendar of the last event's day.
    cdef int64_t calendar_day
    cdef int64_t calendar_year
    cdef int32_t calendar_month  # the issue month (§19) of calendar_day
    cdef int64_t day_amount  # purchase amounts of `day` (§19), folded with the day counters
    cdef _MonthSums day_expired  # points expired on `day` by issue month (§19), folded likewise
    # writer.count_bonus, summed here: BONUS points of `day` not yet folded, and
    # writer.stored_bonus_total() with this batch's bonuses (valid when bonus_known).
    cdef int64_t day_bonus
    cdef int64_t bonus_total
    cdef bint bonus_known
    cdef bint bonus_counted  # bonus_total is ahead of writer.bonus_total
    cdef dict amount_day_deltas
    cdef int64_t instant_day
    cdef int64_t instant_months
    cdef int64_t instant
    # Every order key above this one is unknown to the store and to this batch:
    # ascending order ids need neither a dict nor an LMDB lookup.
    cdef bytes order_key_max
    cdef bint order_key_max_known
    # writer.check_orders false: an order id absent from the overlay is taken as
    # new without an LMDB lookup (about a microsecond each for random ids) and
    # listed in writer.unchecked_order_keys; flush proves them new or the batch
    # is run again with check_orders (writer.OrdersConflict).
    cdef bint check_orders
    cdef bint order_unchecked  # the last order_of skipped the store lookup
    cdef list unchecked_order_keys
    # Columns.
    cdef object order_ids
    cdef object member_ids
    cdef object amounts_minor
    cdef object categories_column
    cdef object times_s
    cdef int order_ids_kind
    cdef int member_ids_kind
    cdef int categories_kind
    cdef const int64_t[:] amounts_view
    cdef const int64_t[:] times_view
    cdef bint amounts_typed
    cdef bint times_typed

    cdef int start(self, writer, order_ids, member_ids, amounts_minor, categories, times_s,
                   Py_ssize_t count) except -1:
        cdef int index
        self.writer = writer
        txn = writer.txn
        dbs = writer.dbs
        self.txn_get = txn.get
        self.orders_db = dbs[DB_ORDERS]
        self.members_db = dbs[DB_MEMBERS]
        orders = writer.overlay[DB_ORDERS]
        if type(orders) is not PackedOrders:
            # The writer's orders packed in one buffer (_c_orders.pxi), with room for `count`;
            # a dict the twin's code filled first (a refund in the same transaction) copied in.
            packed = PackedOrders(count if count >= ORDERS_PRESIZE_MIN else 0)
            packed.update(orders)
            writer.overlay[DB_ORDERS] = orders = packed
        self.orders = orders
        members = writer.members
        if type(members) is not MemberCache:
            # A store opened with another engine first (or a writer's own dict): the
            # Cython engine keeps its members in a MemberCache, the same for everyone.
            cache = MemberCache()
            cache.update(members)
            writer.members = writer.store.member_cache = members = cache
        self.members = members
        # The cache holds stored members and this writer's new ones only (it is
        # dropped whenever a transaction fails after changing it), so when its
        # stored part is as large as the sub-database, it is all of it (asked of
        # the store once per writer: Writer.members_complete).
        self.members_complete = writer.members_complete()
        self.dirty_members = _dirty_members_of(writer, count)
        self.day_deltas = writer.day_deltas
        self.amount_day_deltas = writer.amount_day_deltas
        self.day_amount = 0
        self.day_expired = _MonthSums.__new__(_MonthSums)
        self.day_bonus = 0
        self.bonus_known = False
        self.bonus_counted = False
        self.store_category_codes = writer.store.category_codes
        self.new_categories = writer.new_categories
        self.categories = {}
        _engagement.prepare_lookups(writer, count)
        self.profile_cache = writer.store.profile_cache
        self.profiles_complete = writer.store.profiles_complete
        self.profile_generation = getattr(writer.store, "profile_generation", 0)  # 0: nothing stamped
        self.referee_keys = writer.store.referee_keys
        self.writer_engaged = False
        self.referees_overlay = writer.overlay[DB_REFEREES]
        self.referees_db = dbs.get(DB_REFEREES)
        self.referrals_overlay = writer.overlay[DB_REFERRALS]
        self.referrals_db = dbs.get(DB_REFERRALS)
        self.settled_referees = set()
        values = writer.journal_values
        self.journal = None
        self.journal_values = None
        if type(values) is PackedJournal:
            self.journal = values
        elif (type(values) is list and not values
                and writer.next_seq == getattr(writer, "first_seq", None)):
            # A writer's first entries: packed, each encoded in place (no bytes object per entry).
            self.journal = PackedJournal(writer.first_seq, count)
            writer.journal_values = self.journal
        else:
            self.journal_values = values
            # Only bytes go in: no cycle through it, and the first collection after
            # the batch would otherwise visit every value (a few % of a backfill).
            PyObject_GC_UnTrack(<PyObject*>self.journal_values)
        self.tier_ranks = getattr(writer, "tier_ranks", None)
        self.orders_kept = getattr(writer, "orders_kept", None)
        self.totals_list = writer.totals
        self.next_seq = writer.next_seq
        self.new_member_count = 0
        for index in range(COUNTER_COUNT):
            self.totals[index] = self.totals_list[index]
            self.day_counts[index] = 0
        self.day = INT64_MIN
        self.day_touched = False
        self.expiry_deltas = _deltas_into(writer.expiry_deltas)
        self.rules = None
        self.program_from_s = 0
        self.program_until_s = 0  # empty: the first item looks the programme up
        self.calendar_day = INT64_MIN
        self.instant_day = INT64_MIN
        # With orders already in the overlay (several calls in one writer, the
        # service's group commit) every order id is looked up.
        self.order_key_max_known = not self.orders
        self.check_orders = getattr(writer, "check_orders", True)
        self.order_unchecked = False
        self.unchecked_order_keys = writer.unchecked_order_keys if not self.check_orders else None
        if self.order_key_max_known:
            cursor = txn.cursor(db=self.orders_db)
            self.order_key_max = cursor.key() if cursor.last() else b""
        self.order_ids, self.order_ids_kind = order_ids, _column_kind(order_ids)
        self.member_ids, self.member_ids_kind = member_ids, _column_kind(member_ids)
        self.categories_column, self.categories_kind = categories, _column_kind(categories)
        self.amounts_minor = amounts_minor
        self.times_s = times_s
        # int64 buffers (numpy int64 arrays) are read in C; anything else is
        # indexed item by item like the twin does, and refused the same way.
        self.amounts_typed = False
        if PyObject_CheckBuffer(amounts_minor):
            try:
                self.amounts_view = amounts_minor
                self.amounts_typed = self.amounts_view.shape[0] >= count
            except (TypeError, ValueError, BufferError):  # another item type: indexed
                pass
        self.times_typed = False
        if PyObject_CheckBuffer(times_s):
            try:
                self.times_view = times_s
                self.times_typed = self.times_view.shape[0] >= count
            except (TypeError, ValueError, BufferError):
                pass
        return 0

    def __dealloc__(self):
        self.clear_chunk()

    cdef void clear_chunk(self) noexcept:
        cdef int slot
        for slot in range(self.chunk_size):
            Py_XDECREF(self.chunk_keys[slot])
            Py_XDECREF(self.chunk_states[slot])
            self.chunk_keys[slot] = NULL
            self.chunk_states[slot] = NULL
        self.chunk_size = 0

    cdef int resolve_chunk(self, Py_ssize_t start, Py_ssize_t end) except -1:
        """Look the members of items [start, end) up before applying them.

        The member cache is large and cold. Lookups for different items do not
        depend on each other, so in this tight loop the CPU overlaps their cache
        misses, where the purchase loop would wait for each in turn. A chunk is
        small enough that what it touches is still cached when it is applied.
        Only a lookup, without writer.member's side effect: an item without a
        state here takes the normal path.
        """
        cdef Py_ssize_t index, size
        cdef const char* data
        cdef PyObject* member_id
        cdef int slot
        cdef CacheSlot* found
        cdef MemberCache members = self.members
        self.clear_chunk()
        self.chunk_size = <int>(end - start)
        if self.member_ids_kind != COLUMN_LIST:
            return 0
        column = self.member_ids
        # First pass: each valid id's bytes and hash, and its slot fetched ahead.
        for index in range(start, end):
            slot = <int>(index - start)
            self.chunk_data[slot] = NULL
            if index >= PyList_GET_SIZE(column):
                break
            if index + 8 < PyList_GET_SIZE(column):
                pl_prefetch(PyList_GET_ITEM(column, index + 8))
            member_id = PyList_GET_ITEM(column, index)
            if not PyUnicode_CheckExact(<object>member_id):
                continue
            data = PyUnicode_AsUTF8AndSize(<object>member_id, &size)
            if data == NULL:
                PyErr_Clear()
                continue
            if not _clean_id(data, size, ID_BYTES_MAX):
                continue
            self.chunk_data[slot] = data
            self.chunk_sizes[slot] = size
            self.chunk_hashes[slot] = _Py_HashBytes(data, size)
            pl_prefetch(members.slot_of(self.chunk_hashes[slot]))
        # Second pass: the probes; the key and state of a member found are fetched ahead.
        for slot in range(end - start):
            if self.chunk_data[slot] != NULL:
                found = members.find(self.chunk_data[slot], self.chunk_sizes[slot], self.chunk_hashes[slot])
                self.chunk_found[slot] = found
                if found != NULL:
                    pl_prefetch(found.key)
                    pl_prefetch(found.value)
        # Third pass: a cached member lends its key; a new one gets a key made here.
        for slot in range(end - start):
            data = self.chunk_data[slot]
            if data == NULL:
                continue
            found = self.chunk_found[slot]
            if found != NULL:
                Py_INCREF(<object>found.key)
                self.chunk_keys[slot] = found.key
                if type(<object>found.value) is MemberState:
                    Py_INCREF(<object>found.value)
                    self.chunk_states[slot] = found.value
            else:
                key = PyBytes_FromStringAndSize(data, self.chunk_sizes[slot])
                Py_INCREF(key)
                self.chunk_keys[slot] = <PyObject*>key
        return 0

    cdef int finish(self) except -1:
        cdef int index
        self.fold_day()
        self.expiry_deltas.fold()
        self.writer.next_seq = self.next_seq
        for index in range(COUNTER_COUNT):
            self.totals_list[index] = self.totals[index]
        if self.new_member_count:
            self.writer.new_member_count += self.new_member_count
            self.new_member_count = 0
        if self.bonus_counted:
            self.writer.bonus_total = self.bonus_total
            self.bonus_counted = False
        return 0

    # --- writer.count, summed per day ------------------------------------------

    cdef inline void count(self, int counter, int64_t delta) noexcept:
        self.day_counts[counter] += delta
        self.totals[counter] += delta
        self.day_touched = True

    cdef int fold_day(self) except -1:
        cdef int index
        if not self.day_touched:
            return 0
        day = self.day
        deltas = self.day_deltas.get(day)
        if deltas is None:
            deltas = self.day_deltas[day] = [0] * COUNTER_COUNT
        for index in range(COUNTER_COUNT):
            if self.day_counts[index]:
                deltas[index] += self.day_counts[index]
                self.day_counts[index] = 0
        if self.day_amount:
            self.amount_day_deltas[day] = self.amount_day_deltas.get(day, 0) + self.day_amount
            self.day_amount = 0
        if self.day_bonus:
            bonus_deltas = self.writer.bonus_day_deltas
            bonus_deltas[day] = bonus_deltas.get(day, 0) + self.day_bonus
            self.day_bonus = 0
        cdef dict expired
        if self.day_expired.size or self.day_expired.overflow is not None:
            expired = {}
            self.day_expired.fold(expired)
            self.writer.count_taken(day * SECONDS_PER_DAY, COHORT_EXPIRED, expired)
        self.day_touched = False
        return 0

    cdef inline void enter_calendar(self, int64_t day) noexcept:
        """The year and issue month of the event's day, computed once per day."""
        cdef int64_t year, month, day_of_month
        if day != self.calendar_day:
            _civil_from_days(day, &year, &month, &day_of_month)
            self.calendar_day = day
            self.calendar_year = year
            self.calendar_month = <int32_t>(year * 12 + month - 1)



    cdef inline int enter_day(self, int64_t day) except -1:
        if day != self.day:
            self.fold_day()
            self.day = day
        return 0

    cdef inline int64_t append_entry(self, int kind, int64_t points, MemberState state, bytes member_key,
                                     bytes ref_key, int64_t time_s) except -1:
        cdef int64_t seq = self.next_seq
        if self.journal is not None:
            _put_entry(self.journal.reserve(JOURNAL_HEAD_SIZE + PyBytes_GET_SIZE(member_key) + PyBytes_GET_SIZE(ref_key)),
                       kind, points, state.balance, time_s, self.rules.version, state.last_seq, member_key, ref_key)
        else:
            self.journal_values.append(_encode_entry(
                kind, points, state.balance, time_s, self.rules.version, state.last_seq, member_key, ref_key,
            ))
        state.last_seq = seq
        self.next_seq = seq + 1
        return seq

    # --- lookups ---------------------------------------------------------------

    cdef int select_program(self, int64_t time_s) except -1:
        program = self.writer.program_at(time_s)
        if program is None:
            raise FailedPrecondition("no programme is set: set one before recording purchases")
        self.rules = _rules_for(program)
        store = self.writer.store
        programs, starts = store.programs, store.program_starts
        index = program.version - 1
        if 0 <= index < len(programs) and programs[index] is program and len(starts) == len(programs):
            self.program_from_s = starts[index] if index > 0 else INT64_MIN
            self.program_until_s = starts[index + 1] if index + 1 < len(starts) else INT64_MAX
        else:  # not a stored version: ask again for the next event time
            self.program_from_s = time_s
            self.program_until_s = time_s + 1
        return 0

    cdef _Category category_of(self, object value):
        cdef PyObject* found
        cdef _Category category
        if PyUnicode_CheckExact(value):
            found = PyDict_GetItem(self.categories, value)
            if found != NULL:
                return <_Category>found
        category = _Category.__new__(_Category)
        category.key = _id_key(value, "category", CATEGORY_BYTES_MAX)
        code = self.store_category_codes.get(category.key)
        if code is None:
            code = self.new_categories.get(category.key)
        category.code = -1 if code is None else code
        if PyUnicode_CheckExact(value):
            self.categories[value] = category
        return category

    cdef object order_of(self, bytes order_key):
        """writer.get(DB_ORDERS, key): the overlay, then the transaction (unless unchecked)."""
        self.order_unchecked = False
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            return None
        found = self.orders.get_order(order_key)
        if found is not None:
            return found
        if not self.check_orders:
            self.order_unchecked = True
            return None
        return self.txn_get(order_key, None, self.orders_db)

    cdef MemberState member_of(self, bytes member_key):
        """writer.member(key): the cache, then the transaction; None for an unknown member."""
        cdef CacheSlot* found = self.members.find_key(member_key)
        if found != NULL:
            return <MemberState?>found.value
        if self.members_complete:
            return None
        value = self.txn_get(member_key, None, self.members_db)
        if value is None:
            return None
        cdef MemberState state = _decode_member(value if PyBytes_CheckExact(value) else bytes(value))
        self.members.put(member_key, state)
        return state

    cdef inline int mark_dirty(self, bytes member_key, MemberState state) except -1:
        # writer.mark_dirty, listed once per member and writer.
        if self.dirty_members is not None:  # None: the what-if writes no member record
            self.dirty_members.mark(member_key, state)
        return 0

    cdef inline int64_t expiry_instant(self, int64_t day, int64_t expiry_months) noexcept:
        if day != self.instant_day or expiry_months != self.instant_months:
            self.instant = _expiry_instant_of_day(day, expiry_months)
            self.instant_day = day
            self.instant_months = expiry_months
        return self.instant

    # --- one purchase (_apply_purchase) ------------------------------------------

    cdef object apply(self, Py_ssize_t index, int slot, object order_id, object member_id,
                      object amount_item, object category_item, object time_item):
        """Fields, id already used and programme, in the twin's order; then the member."""
        cdef bytes order_key = _order_key(order_id)
        cdef bytes member_key
        if self.chunk_keys[slot] != NULL:  # valid, looked up by resolve_chunk
            member_key = <bytes>self.chunk_keys[slot]
        else:
            member_key = _id_key(member_id, "member_id", ID_BYTES_MAX)
        cdef int64_t amount_minor
        if self.amounts_typed:
            amount_minor = self.amounts_view[index]
            if not (AMOUNT_MIN <= amount_minor <= AMOUNT_MAX):
                validate_int("amount_minor", PyObject_GetItem(self.amounts_minor, index), AMOUNT_MIN, AMOUNT_MAX)
        else:
            amount_minor = _int_of(amount_item, "amount_minor", AMOUNT_MIN, AMOUNT_MAX)
        cdef _Category category = self.category_of(category_item)
        cdef int64_t time_s
        if self.times_typed:
            time_s = self.times_view[index]
            if not (TIME_MIN <= time_s <= TIME_MAX):
                validate_int("time_s", PyObject_GetItem(self.times_s, index), TIME_MIN, TIME_MAX)
        else:
            time_s = _int_of(time_item, "time_s", TIME_MIN, TIME_MAX)

        existing = self.order_of(order_key)
        if existing is not None:
            # It reads the journal up to writer.next_seq: the bonuses of an order applied in this batch.
            self.writer.next_seq = self.next_seq
            return _duplicate_purchase(
                self.writer, order_id, existing, member_key, amount_minor, category.key, time_s,
            )
        if not self.order_unchecked:
            return self.apply_new(slot, order_key, member_key, amount_minor, category, category_item, time_s)
        try:
            return self.apply_new(slot, order_key, member_key, amount_minor, category, category_item, time_s)
        except LedgerError:
            # A careful run would have found a stored order first: answer as it would.
            existing = self.txn_get(order_key, None, self.orders_db)
            if existing is None:
                raise
            self.writer.next_seq = self.next_seq
            return _duplicate_purchase(
                self.writer, order_id, existing, member_key, amount_minor, category.key, time_s,
            )

    cdef object apply_new(self, int slot, bytes order_key, bytes member_key, int64_t amount_minor,
                          _Category category, object category_item, int64_t time_s):
        """An order id not used before: the programme, then the member."""
        if not (self.program_from_s <= time_s < self.program_until_s):
            self.select_program(time_s)
        if category.rules is not self.rules:
            category.rule = self.rules.category_rule(category_item)
            category.rules = self.rules
        cdef MemberState state
        if self.chunk_states[slot] != NULL:
            state = <MemberState>self.chunk_states[slot]
        else:
            state = self.member_of(member_key)
        if self.rules.engaged or (state is not None and state._engaged):
            return self.apply_engaged_fast(state, order_key, member_key, amount_minor, category, category_item,
                                           time_s)
        return self.earn(state, order_key, member_key, amount_minor, category, category_item, time_s)

    cdef object apply_engaged(self, bytes order_key, bytes member_key, int64_t amount_minor,
                              _Category category, object category_item, int64_t time_s):
        """The twin's engagement path (engagement.apply_purchase), on the writer's own state.

        The batch hands its C-side sums to the writer first and takes the
        writer's back after, so both see every entry in order.
        """
        self.finish()
        try:
            result = _engagement.apply_purchase(
                self.writer, order_key, member_key, amount_minor, category.key, category_item, time_s,
                self.rules.program,
            )
        finally:
            self.resume()
        if self.order_unchecked:
            self.unchecked_order_keys.append(order_key)
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            self.order_key_max = order_key
        return result

    cdef object apply_engaged_fast(self, MemberState state, bytes order_key, bytes member_key,
                                   int64_t amount_minor, _Category category, object category_item,
                                   int64_t time_s):
        """engagement.apply_purchase in C for the usual case, on the batch's own sums.

        The usual case: no member whose purchase count must first be read from
        its journal, no engagement state that does not fit the C fields, points
        priced in C. Anything else is handed to the twin's code (apply_engaged)
        before any change, so both engines run one specification. The member's
        engagement state is its C fields (MemberState): no Python object per purchase.
        """
        cdef _Rules rules = self.rules
        cdef bint is_new = state is None
        if not rules.engaged_in_c or (not is_new and not state._in_c()):
            return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
        program = rules.program
        cdef int64_t day = _floor_div(time_s, SECONDS_PER_DAY)
        self.enter_calendar(day)
        cdef int64_t year = self.calendar_year
        cdef bint engaged = not is_new and state._engaged
        # Points of pending lots that expire now (engagement.due_points).
        cdef int64_t lots_due = state._lots_due(time_s) if engaged else 0
        referral = None
        cdef bint referral_done = not is_new and state._referral_done
        if rules.has_referral and not referral_done:
            if self.maybe_referred(member_key):
                referral = self.open_referral(member_key, amount_minor, time_s)
                referral_done = referral is None and member_key in self.settled_referees
            else:
                referral_done = True
        if is_new:
            state = MemberState.__new__(MemberState)
            state.tier_year = year
        state._referral_done = referral_done
        cdef pl_i128 due = <pl_i128>state._due_points(time_s) + lots_due
        cdef int64_t tier_year = state.tier_year
        cdef int64_t spend = state.spend_minor
        cdef int64_t carried = state.carried_rank
        if year > tier_year:
            carried = rules.tier_rank_for_spend(spend) if year == tier_year + 1 else 0
            tier_year = year
            spend = 0
        cdef int tier = rules.tier_rank(spend, carried)
        cdef int64_t extra_bp = -1
        cdef int64_t month, day_of_month, year_unused
        if rules.birthday_bp >= 0:
            if self.birthday_month(state, member_key):
                _civil_from_days(day, &year_unused, &month, &day_of_month)
                if state._birthday_month == month:
                    extra_bp = rules.birthday_bp
        cdef int64_t points
        if rules.price(amount_minor, category.rule, tier, time_s, &points, extra_bp) != 0:
            return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
        cdef bint counts_towards_year = year == tier_year
        # _own_bonuses: the purchaser's bonuses in §17 order (rule ref_ids as bytes and as str,
        # borrowed from the rules or from referral_rule), and the milestones reached.
        cdef PyObject* own_rules[OWN_MAX]
        cdef PyObject* own_rule_ids[OWN_MAX]
        cdef int64_t own_points[OWN_MAX]
        cdef int own_count = 0
        cdef int reached[RULES_MAX]
        cdef int reached_count = 0
        cdef pl_i128 own_total = 0
        cdef int index
        if is_new and rules.welcome_bonus:
            own_rules[0] = <PyObject*>WELCOME_RULE
            own_rule_ids[0] = <PyObject*>WELCOME_RULE_ID
            own_points[0] = rules.welcome_bonus
            own_count = 1
            own_total += rules.welcome_bonus
        referral_rule = None
        referral_rule_id = None
        referee_points = program.referral.referee_points if referral is not None else 0
        if referee_points:
            referral_rule = _engagement.REFERRAL_RULE + referral[0]
            referral_rule_id = referral_rule.decode()
            own_rules[own_count] = <PyObject*>referral_rule
            own_rule_ids[own_count] = <PyObject*>referral_rule_id
            own_points[own_count] = referee_points
            own_count += 1
            own_total += <int64_t>referee_points
        cdef bint start_engagement = False
        if not engaged and (rules.needs_engagement or own_count):
            if not is_new and tier_year == state.tier_year:  # its count is in its journal: the twin's path
                return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
            start_engagement = True  # Engagement(tier_year)
        cdef int64_t purchases
        cdef pl_i128 progress
        cdef pl_i128 spend_after = <pl_i128>spend + amount_minor
        cdef tuple already = ()
        if counts_towards_year and rules.milestone_count:
            purchases = 1
            if engaged and state._year == tier_year:
                already = state._reached
                purchases = state._purchases + 1
            for index in range(rules.milestone_count):
                if PyTuple_GET_SIZE(already) and <object>PyTuple_GET_ITEM(rules.milestone_keys, index) in already:
                    continue
                progress = purchases if rules.milestone_by_purchases[index] else spend_after
                if progress >= rules.milestone_target[index]:
                    reached[reached_count] = index
                    reached_count += 1
                    if rules.milestone_bonus[index]:
                        own_rules[own_count] = PyTuple_GET_ITEM(rules.milestone_rules, index)
                        own_rule_ids[own_count] = PyTuple_GET_ITEM(rules.milestone_rule_ids, index)
                        own_points[own_count] = rules.milestone_bonus[index]
                        own_count += 1
                        own_total += rules.milestone_bonus[index]
        if <pl_i128>state.balance - due + points + own_total > INT64_MAX:
            raise InvalidArgument("balance", (<object>state.balance) - <int64_t>due + points + <int64_t>own_total,
                                  "the balance would overflow int64")
        # _referrer_of: the referrer paid by this purchase, and its int64 check.
        cdef MemberState referrer = None
        cdef int64_t referrer_points = 0
        cdef pl_i128 referrer_due
        if referral is not None and program.referral.referrer_points:
            referrer_points = program.referral.referrer_points
            referrer_key = referral[1][2]
            referrer = self.member_of(referrer_key)
            if referrer is None or referrer is state or referrer_key == member_key or not referrer._in_c():
                return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
            referrer_due = <pl_i128>referrer._due_points(time_s) + referrer._lots_due(time_s)
            if <pl_i128>referrer.balance - referrer_due + referrer_points > INT64_MAX:
                raise InvalidArgument(
                    "balance", (<object>referrer.balance) - <int64_t>referrer_due + referrer_points,
                    "the referrer's balance would overflow int64",
                )
        if (<pl_i128>self.totals[COUNTER_EARNED] + self.totals[COUNTER_ADJUSTED_POSITIVE] + points + own_total
                + referrer_points + self.stored_bonus() > INT64_MAX):
            self.finish()  # the writer's totals are current for its own check
            self.writer.check_credit(points + <int64_t>own_total + referrer_points)
        if category.code < 0:
            self.writer.check_category(category.key)
        if counts_towards_year and spend > INT64_MAX - amount_minor:
            raise InvalidArgument("amount_minor", amount_minor, "the member's spend would overflow int64")

        # Every check passed: from here on the purchase is applied.
        if self.tier_ranks is not None:
            self.tier_ranks.append(tier)
        if not self.writer_engaged:
            self.writer.engaged = True
            self.writer_engaged = True
        if is_new:
            self.members.put(member_key, state)  # as the plain path: no mapping wrapper
            self.mark_dirty(member_key, state)
            self.new_member_count += 1
        if start_engagement:
            state._start_engagement(tier_year, 0)
        self.enter_day(day)
        cdef int64_t expired = 0
        if state._count and state._buckets[0].instant <= time_s:
            expired = state._expire_due(time_s, self.expiry_deltas, self.day_expired)
        if lots_due:  # engagement.expire_due: the due lots join the same EXPIRE entry
            state._expire_lots(time_s, self.expiry_deltas, self.day_expired)
            state.balance -= lots_due
            state.expired += lots_due
            expired += lots_due
        if expired:
            self.append_entry(KIND_EXPIRE, -expired, state, member_key, order_key, time_s)
            self.count(COUNTER_EXPIRED, expired)
        if state._lot_count:
            state._release_lots(time_s, self.expiry_deltas)
        self.day_amount += amount_minor
        state.tier_year = tier_year
        state.spend_minor = spend
        state.carried_rank = carried
        cdef int64_t instant = self.expiry_instant(day, rules.expiry_months) if rules.expiry_months else NEVER_S
        cdef int64_t release_s = time_s + rules.pending_days * SECONDS_PER_DAY
        self.credit_engaged(state, points, instant, release_s, order_key, time_s)
        if counts_towards_year:
            state.spend_minor += amount_minor
        state.earned += points
        cdef int64_t seq = self.append_entry(KIND_EARN, points, state, member_key, order_key, time_s)
        self.count(COUNTER_EARNED, points)
        self.count(COUNTER_PURCHASES, 1)
        if state._engaged:
            state._enter_year(tier_year)
            if counts_towards_year:
                state._purchases += 1
                if reached_count:
                    state._reached = _shared_reached(state._reached + tuple(
                        [<object>PyTuple_GET_ITEM(rules.milestone_keys, reached[index])
                         for index in range(reached_count)]))
        # The Bonus tuples reported: straight into their tuple, or (a referral settled
        # here adds the referrer's) into a list first.
        bonuses = [] if referral is not None else None
        reported = None
        if own_count:
            member_id = member_key.decode()
            if bonuses is None:
                reported = PyTuple_New(own_count)
            for index in range(own_count):
                self.credit_engaged(state, own_points[index], instant, release_s, order_key, time_s)
                state._bonus += own_points[index]
                self.append_entry(KIND_BONUS, own_points[index], state, member_key, <bytes>own_rules[index], time_s)
                self.count_bonus(own_points[index])
                bonus = pl_tuple3(Bonus, member_id, <object>own_rule_ids[index], own_points[index])
                if bonuses is None:
                    Py_INCREF(bonus)  # PyTuple_SET_ITEM takes the reference
                    PyTuple_SET_ITEM(reported, index, bonus)
                else:
                    bonuses.append(bonus)
        cdef int64_t balance = state.balance
        self.mark_dirty(member_key, state)
        if referral is not None:
            self.settle(referral, referrer, referrer_points, order_key, seq, instant, release_s, time_s,
                        bonuses)
            state._referral_done = True
            if bonuses:
                reported = tuple(bonuses)
        if category.code < 0:
            category.code = self.writer.category_code(category.key)
        if self.orders_kept is None or order_key in self.orders_kept:
            self.orders.put_order(order_key, amount_minor, time_s, seq, category.code)
        if self.order_unchecked:
            self.unchecked_order_keys.append(order_key)
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            self.order_key_max = order_key
        if reported is None:
            self.results.add_applied(seq, points, balance)  # as the plain path's record
            return None
        PyObject_GC_UnTrack(<PyObject*>reported)  # of Bonus, untracked (pl_tuple3)
        result = ("APPLIED", seq, points, balance, None, reported)
        PyObject_GC_UnTrack(<PyObject*>result)
        return result

    cdef int settle(self, tuple referral, MemberState referrer, int64_t referrer_points, bytes order_key,
                    int64_t seq, int64_t instant, int64_t release_s, int64_t time_s, list bonuses) except -1:
        """engagement._settle: the referrer's EXPIRE (if due) and BONUS; the referral settled by this order.

        The referrer's engagement state is in its C fields (apply_engaged_fast checked it)."""
        referral_key, (registered_s, _, referrer_key, referee_key, _) = referral
        cdef int64_t expired = 0
        cdef int64_t lots_due
        if referrer is not None:
            if not referrer._engaged:
                referrer._start_engagement(
                    referrer.tier_year, _engagement.count_purchases(self.writer.entry, referrer, referrer.tier_year))
            if referrer._count and referrer._buckets[0].instant <= time_s:
                expired = referrer._expire_due(time_s, self.expiry_deltas, self.day_expired)
            lots_due = referrer._lots_due(time_s)
            if lots_due:
                referrer._expire_lots(time_s, self.expiry_deltas, self.day_expired)
                referrer.balance -= lots_due
                referrer.expired += lots_due
                expired += lots_due
            if expired:
                self.append_entry(KIND_EXPIRE, -expired, referrer, referrer_key, order_key, time_s)
                self.count(COUNTER_EXPIRED, expired)
            if referrer._lot_count:
                referrer._release_lots(time_s, self.expiry_deltas)
            rule_key = _engagement.REFERRAL_RULE + referral_key
            self.credit_engaged(referrer, referrer_points, instant, release_s, order_key, time_s)
            referrer._bonus += referrer_points
            self.append_entry(KIND_BONUS, referrer_points, referrer, referrer_key, rule_key, time_s)
            self.count_bonus(referrer_points)
            bonuses.append(pl_tuple3(Bonus, referrer_key.decode(), rule_key.decode(), referrer_points))
            self.mark_dirty(referrer_key, referrer)
        # writer.put(DB_REFERRALS, ...) of fmt.encode_referral, packed here.
        PyDict_SetItem(self.referrals_overlay, referral_key,
                       _encode_referral(registered_s, seq, referrer_key, referee_key, order_key))
        self.settled_referees.add(referee_key)
        return 0

    cdef object open_referral(self, bytes member_key, int64_t amount_minor, int64_t time_s):
        """engagement._qualifying_referral: (referral key, record) or None, read in C.

        A referral seen settled stays settled for the batch (purchases never
        reopen one): its referee's later purchases look nothing up.
        """
        if member_key in self.settled_referees:
            return None
        referral_key = self.stored(self.referees_overlay, self.referees_db, member_key)
        if referral_key is None:
            return None
        if type(referral_key) is not bytes:
            referral_key = bytes(referral_key)
        record = self.stored(self.referrals_overlay, self.referrals_db, referral_key)
        cdef const unsigned char* p
        cdef Py_ssize_t referrer_end, referee_end
        if type(record) is bytes and PyBytes_GET_SIZE(record) >= REFERRAL_HEAD_SIZE:
            p = <const unsigned char*>PyBytes_AS_STRING(record)
            referrer_end = REFERRAL_HEAD_SIZE + p[16]
            referee_end = referrer_end + p[17]
            if PyBytes_GET_SIZE(record) == referee_end + p[18]:
                if pl_get64(p + 8) != 0:
                    self.settled_referees.add(member_key)
                    return None
                if time_s < <int64_t>pl_get64(p) or amount_minor < self.rules.referral_min_purchase_minor:
                    return None
                return referral_key, (  # fmt.decode_referral of an open referral
                    <int64_t>pl_get64(p), 0, record[REFERRAL_HEAD_SIZE:referrer_end],
                    record[referrer_end:referee_end], record[referee_end:])
        return _engagement._qualifying_referral(self.writer, member_key, self.rules.program, amount_minor, time_s)

    cdef object stored(self, dict overlay, object db, bytes key):
        """writer.get: the overlay's value, else the transaction's (None without the sub-database)."""
        cdef PyObject* found = PyDict_GetItem(overlay, key)
        if found != NULL and <object>found is not None:
            return <object>found
        if db is None:
            return None
        if self.carried_tables is None:
            self.carried_tables = getattr(self.writer.txn, "carried_tables", None) or {}
        found = PyDict_GetItem(self.carried_tables, db)
        if found != NULL:  # every key of the sub-database: a key absent is absent from the store
            found = PyDict_GetItem(<dict>found, key)
            return <object>found if found != NULL else None
        return self.txn_get(key, None, db)

    cdef bint maybe_referred(self, bytes member_key) except -1:
        """Whether writer.get(DB_REFEREES, key) finds the member: the overlay, then the transaction."""
        if self.referee_keys is not None:  # kept current by register_referral
            return member_key in <set>self.referee_keys
        cdef PyObject* found = PyDict_GetItem(self.referees_overlay, member_key)
        if found != NULL and <object>found is not None:
            return True
        if self.referees_db is None:
            return True  # the twin's lookup decides
        return self.txn_get(member_key, None, self.referees_db) is not None

    cdef int birthday_month(self, MemberState state, bytes member_key) except -1:
        """The month of the member's birthday, 0 without a profile: the state's stamp, else birthday_of."""
        if self.profile_generation == 0 or state._profile_stamp != self.profile_generation:
            birthday = self.birthday_of(member_key)
            if birthday is None:
                state._birthday_month = 0
            elif type(birthday) is tuple and type(birthday[0]) is int and 1 <= birthday[0] <= 12:
                state._birthday_month = birthday[0]
            else:
                raise AssertionError(f"a birthday is (month, day), not {birthday!r}")
            state._profile_stamp = self.profile_generation
        return state._birthday_month

    cdef object birthday_of(self, bytes member_key):
        """(month, day) of the member's profile, None without one: the store's cache, else the twin."""
        cdef PyObject* found = PyDict_GetItem(self.profile_cache, member_key)
        if found != NULL:
            return <object>found
        if self.profiles_complete:
            return None
        _engagement.birthday_bp(self.writer, member_key, self.rules.program, 0)  # fills the cache
        return self.profile_cache.get(member_key)

    cdef int credit_engaged(self, MemberState state, int64_t points, int64_t instant, int64_t release_s,
                            bytes order_key, int64_t time_s) except -1:
        """engagement._Credit.add: into the bucket, or (pending days) debt first, then the order's lot."""
        cdef int64_t paid = state.debt if state.debt < points else points
        if paid:  # the debt paid is taken back from the credit's cohort (§19)
            # At the credit's own time: its programme version values the points (§19).
            self.writer.count_cohort(self.calendar_month, time_s, COHORT_TAKEN_BACK, paid)
        if not self.rules.pending_days:
            state._credit(points, instant, self.expiry_deltas, self.calendar_month)
            return 0
        state.debt -= paid
        state.balance += points
        cdef int64_t rest = points - paid
        if rest == 0:
            return 0
        self.expiry_deltas.add(instant, rest)
        cdef Py_ssize_t index
        cdef Lot* lot
        cdef const char* key_data = PyBytes_AS_STRING(order_key)
        cdef Py_ssize_t key_size = PyBytes_GET_SIZE(order_key)
        for index in range(state._lot_count):
            lot = &state._lots[index]
            if (lot.release_s == release_s and lot.expires_s == instant and lot.key_size == key_size
                    and memcmp(_lot_key(lot), key_data, key_size) == 0):
                lot.points += rest
                return 0
        state._append_lot(release_s, instant, rest, self.next_seq, key_data, key_size, order_key,
                          self.calendar_month)
        return 0

    cdef int resume(self) except -1:
        """After the writer was used directly: take its sums back (finish's inverse)."""
        cdef int index
        self.next_seq = self.writer.next_seq
        for index in range(COUNTER_COUNT):
            self.totals[index] = self.totals_list[index]
        self.bonus_known = False  # the twin may have counted bonuses
        return 0

    cdef int64_t stored_bonus(self) except? -1:
        """writer.stored_bonus_total(), this batch's bonuses included."""
        if not self.bonus_known:
            self.bonus_total = self.writer.stored_bonus_total()
            self.bonus_known = True
        return self.bonus_total

    cdef int count_bonus(self, int64_t points) except -1:
        """writer.count_bonus for an event of `day` (enter_day was called for it)."""
        self.stored_bonus()
        self.bonus_total += points
        self.bonus_counted = True
        self.day_bonus += points
        self.day_touched = True
        return 0

    cdef object earn(self, MemberState state, bytes order_key, bytes member_key, int64_t amount_minor,
                     _Category category, object category_item, int64_t time_s):
        """From the member's state (None for a new member): roll, price, the int64 checks."""
        cdef _Rules rules = self.rules
        cdef int64_t day = _floor_div(time_s, SECONDS_PER_DAY)
        self.enter_calendar(day)
        cdef int64_t year = self.calendar_year
        cdef bint is_new = state is None
        if is_new:
            state = MemberState.__new__(MemberState)
            state.tier_year = year
        cdef int64_t due = state._due_points(time_s)
        # state.rolled(year, program)
        cdef int64_t tier_year = state.tier_year
        cdef int64_t spend = state.spend_minor
        cdef int64_t carried = state.carried_rank
        if year > tier_year:
            carried = rules.tier_rank_for_spend(spend) if year == tier_year + 1 else 0
            tier_year = year
            spend = 0
        cdef int tier = rules.tier_rank(spend, carried)
        cdef int64_t points
        if rules.price(amount_minor, category.rule, tier, time_s, &points) != 0:
            exact = _py_price_purchase(rules.program, amount_minor, category_item, tier, time_s)
            if exact > INT64_MAX:
                raise InvalidArgument("points", exact, "the purchase would earn more than int64 points")
            points = exact
        if <pl_i128>state.balance - due + points > INT64_MAX:
            raise InvalidArgument(
                "balance", (<object>state.balance) - due + points, "the balance would overflow int64"
            )
        if (<pl_i128>self.totals[COUNTER_EARNED] + self.totals[COUNTER_ADJUSTED_POSITIVE] + points
                > INT64_MAX):
            self.finish()  # the writer's totals are current for its own check
            self.writer.check_credit(points)
        if category.code < 0:
            self.writer.check_category(category.key)
        cdef bint counts_towards_year = year == tier_year
        if counts_towards_year and spend > INT64_MAX - amount_minor:
            raise InvalidArgument("amount_minor", amount_minor, "the member's spend would overflow int64")

        # Every check passed: from here on the purchase is applied.
        if self.tier_ranks is not None:
            self.tier_ranks.append(tier)
        if is_new:
            self.members.put(member_key, state)
            self.mark_dirty(member_key, state)
            self.new_member_count += 1
        state.tier_year = tier_year
        state.spend_minor = spend
        state.carried_rank = carried
        return self.record(state, order_key, member_key, amount_minor, category, time_s, day, points,
                           counts_towards_year)

    cdef object record(self, MemberState state, bytes order_key, bytes member_key, int64_t amount_minor,
                       _Category category, int64_t time_s, int64_t day, int64_t points,
                       bint counts_towards_year):
        """Expire, credit, journal, counters and the order record of an applied purchase."""
        cdef _Rules rules = self.rules
        self.enter_day(day)
        cdef int64_t expired = 0
        if state._count and state._buckets[0].instant <= time_s:
            expired = state._expire_due(time_s, self.expiry_deltas, self.day_expired)
        if expired:
            self.append_entry(KIND_EXPIRE, -expired, state, member_key, order_key, time_s)
            self.count(COUNTER_EXPIRED, expired)
        cdef int64_t instant = self.expiry_instant(day, rules.expiry_months) if rules.expiry_months else NEVER_S
        if state.debt:  # the debt paid is taken back from the credit's cohort (§19)
            self.writer.count_cohort(self.calendar_month, time_s, COHORT_TAKEN_BACK,
                                     state.debt if state.debt < points else points)
        state._credit(points, instant, self.expiry_deltas, self.calendar_month)
        self.day_amount += amount_minor
        if counts_towards_year:
            state.spend_minor += amount_minor
        state.earned += points
        cdef int64_t seq = self.append_entry(KIND_EARN, points, state, member_key, order_key, time_s)
        self.mark_dirty(member_key, state)
        self.count(COUNTER_EARNED, points)
        self.count(COUNTER_PURCHASES, 1)
        if category.code < 0:
            category.code = self.writer.category_code(category.key)
        if self.orders_kept is None or order_key in self.orders_kept:
            self.orders.put_order(order_key, amount_minor, time_s, seq, category.code)
        if self.order_unchecked:
            self.unchecked_order_keys.append(order_key)
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            self.order_key_max = order_key
        # Straight into the results' arrays: no tuple and three ints per purchase.
        self.results.add_applied(seq, points, state.balance)
        return None  # recorded (apply_purchases adds any other result itself)


def apply_purchases(writer, order_ids, member_ids, amounts_minor, categories, times_s):
    """Apply a batch in order; a PurchaseResults: one result tuple per item (see writer.ItemResult)."""
    cdef Py_ssize_t count = len(order_ids)
    cdef Py_ssize_t index
    cdef PurchaseResults results = PurchaseResults.__new__(PurchaseResults)
    cdef _Batch batch = _Batch.__new__(_Batch)
    cdef Py_ssize_t start, end
    cdef int slot
    cdef PyObject* upcoming
    results.reserve(count)
    batch.results = results
    batch.start(writer, order_ids, member_ids, amounts_minor, categories, times_s, count)
    # Each new member's state is a new tracked object that outlives the call, so a
    # large batch of new members would set off a young collection every 700 of them
    # that can free nothing made here: collect once, after the batch. (The results
    # are no longer a tuple each: a batch of known members allocates almost nothing
    # tracked, and the collection after it is short.)
    cdef bint paused_gc = count >= GC_PAUSE_ITEMS_MIN and gc.isenabled()
    if paused_gc:
        gc.disable()
    try:
        for start in range(0, count, CHUNK_ITEMS):
            end = start + CHUNK_ITEMS if start + CHUNK_ITEMS < count else count
            if start:
                # Let the GIL go between chunks (a fraction of a ms each): a pipeline's
                # writer thread (pipeline.py) waits for it to write and commit the
                # previous batch. Uncontended, a release costs ~0.1 µs.
                with nogil:
                    pass
            batch.resolve_chunk(start, end)
            for index in range(start, end):
                slot = <int>(index - start)
                # Warm the caches for the members a few purchases ahead.
                if slot + 8 < end - start:
                    upcoming = batch.chunk_states[slot + 8]
                    if upcoming != NULL:
                        pl_prefetch(upcoming)
                        pl_prefetch(<char*>upcoming + 64)
                        pl_prefetch(<char*>upcoming + 128)
                        pl_prefetch(<char*>upcoming + 192)  # the engagement fields: 248 bytes in all
                        pl_prefetch(<char*>upcoming + 240)
                if slot + 4 < end - start:
                    upcoming = batch.chunk_states[slot + 4]
                    if upcoming != NULL:
                        pl_prefetch((<MemberState>upcoming)._buckets)
                        # The first lot (64 bytes, on two cache lines unless aligned); NULL
                        # without lots: a prefetch never faults.
                        pl_prefetch((<MemberState>upcoming)._lots)
                        pl_prefetch(<char*>(<MemberState>upcoming)._lots + 63)
                order_id = _item(order_ids, batch.order_ids_kind, index)
                # A member id resolve_chunk validated is not touched again: only its key is needed.
                if batch.chunk_keys[slot] != NULL:
                    member_id = None
                else:
                    member_id = _item(member_ids, batch.member_ids_kind, index)
                amount_item = None if batch.amounts_typed else PyObject_GetItem(amounts_minor, index)
                category_item = _item(categories, batch.categories_kind, index)
                time_item = None if batch.times_typed else PyObject_GetItem(times_s, index)
                try:
                    result = batch.apply(index, slot, order_id, member_id, amount_item, category_item, time_item)
                except LedgerError as error:
                    result = (error.code, 0, 0, 0, error)
                if result is not None:  # None: a plain APPLIED purchase, already in results
                    results.add(result)
    finally:
        if paused_gc:
            gc.enable()
        batch.finish()
    return results
