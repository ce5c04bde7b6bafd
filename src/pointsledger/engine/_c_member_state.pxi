# Part of _engine_c.pyx (included there): the member record: MemberState, its lots and its hand-packed encoding.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- the member record -------------------------------------------------------------

cdef struct Bucket:
    int64_t instant
    int64_t points
    int32_t month  # issue month (§19): buckets sort by (instant, month)


cdef enum:
    LOT_KEY_INLINE = 24  # order keys up to this size sit in the lot itself


cdef union LotKey:
    char inline[LOT_KEY_INLINE]
    PyObject* object  # a longer key: a bytes object, owned by the lot


cdef struct Lot:
    # A pending lot (§17): engagement.py's [release_s, expires_s, points, seq, order_key, month].
    # The order key is kept inline when it fits (64 bytes a lot): releasing, encoding or
    # comparing a lot then reads no other object, and dropping it frees nothing.
    int64_t release_s
    int64_t expires_s
    int64_t points
    int64_t seq
    int32_t month
    int32_t key_size
    LotKey key


cdef inline const char* _lot_key(const Lot* lot) noexcept:
    if lot.key_size <= LOT_KEY_INLINE:
        return lot.key.inline
    return PyBytes_AS_STRING(<object>lot.key.object)


cdef inline void _lot_drop_key(Lot* lot) noexcept:
    if lot.key_size > LOT_KEY_INLINE:
        Py_XDECREF(lot.key.object)
        lot.key_size = 0


cdef inline bytes _lot_key_object(const Lot* lot):
    if lot.key_size <= LOT_KEY_INLINE:
        return PyBytes_FromStringAndSize(lot.key.inline, lot.key_size)
    return <bytes>lot.key.object


# Members' reached milestones are few distinct tuples (ids in the order reached): one shared
# object each, so a purchase reading a member's tuple finds it in the cache, not one cold
# tuple per member. Bounded: past REACHED_SHARED_MAX distinct tuples a new one is kept as is.
cdef dict _REACHED_SHARED = {}
cdef enum:
    REACHED_SHARED_MAX = 4096


cdef tuple _shared_reached(tuple reached):
    cdef PyObject* found
    if PyTuple_GET_SIZE(reached) == 0:
        return ()
    found = PyDict_GetItem(_REACHED_SHARED, reached)
    if found != NULL:
        return <tuple>found
    if len(_REACHED_SHARED) < REACHED_SHARED_MAX:
        _REACHED_SHARED[reached] = reached
    return reached


@cython.final
@cython.no_gc  # its objects (bytes, tuples of bytes, an Engagement) never refer back to a member: no cycle
cdef class MemberState:
    """One member's record: balances, tier state, buckets. Mutated in place.

    The buckets live in a C array sorted by instant; `buckets` hands Python a copy.
    """
    cdef public int64_t balance
    cdef public int64_t debt
    cdef public int64_t tier_year
    cdef public int64_t spend_minor
    cdef public int64_t carried_rank
    cdef public int64_t earned
    cdef public int64_t redeemed
    cdef public int64_t expired
    cdef public int64_t clawed_back
    cdef public int64_t adjusted
    cdef public int64_t last_seq
    # The order of the fields is their layout: the lots' array and count share the
    # buckets' cache line, which the purchase loop reads a few purchases ahead.
    cdef Bucket* _buckets
    cdef Lot* _lots  # the pending lots (engagement state below)
    cdef Py_ssize_t _count
    cdef Py_ssize_t _lot_count
    cdef Py_ssize_t _capacity
    cdef int64_t _dirty_batch  # the stamp of the DirtyMembers (writer.dirty_members) that last listed it
    # What the engaged path last looked up for this member, so that its next
    # purchases look nothing up: the birthday month (0: no profile), valid while
    # the store's profile_generation is _profile_stamp (set_member_profile moves
    # it on); and that it has no referral to settle (no referee record when it was
    # already a member, which register_referral then refuses; or one settled).
    cdef int64_t _profile_stamp
    cdef int32_t _birthday_month
    cdef bint _referral_done
    # The engagement state (§17) once a rule of §14 needs it (none: a version-1/3 record).
    # Two forms, one of them current: the C fields below (the engaged path's,
    # encoded and decoded here), or the twin's member_engagement.Engagement,
    # made when Python code asks for `engagement` (refunds, queries, the twin's
    # rare cases) and taken back into the C fields by the next engaged purchase.
    cdef bint _engaged  # the member has engagement state (in either form)
    cdef object _engagement  # the Engagement form when it is the current one, else None
    cdef int64_t _bonus
    cdef int64_t _year
    cdef int64_t _purchases
    cdef tuple _reached  # milestone ids (bytes) reached in _year, in the order reached
    cdef Py_ssize_t _lot_capacity
    # Lower bounds of the lots' expiry and release instants: most purchases
    # find nothing due without reading the lots (0 is always a valid bound).
    cdef int64_t _lots_expire_from
    cdef int64_t _lots_release_from

    def __init__(self, tier_year):
        self.balance = 0
        self.debt = 0
        self.tier_year = tier_year
        self.spend_minor = 0
        self.carried_rank = 0
        self.earned = 0
        self.redeemed = 0
        self.expired = 0
        self.clawed_back = 0
        self.adjusted = 0
        self.last_seq = 0
        self._count = 0

    def __dealloc__(self):
        free(self._buckets)
        self._clear_lots()
        free(self._lots)

    cdef int _reserve(self, Py_ssize_t capacity) except -1:
        if capacity <= self._capacity:
            return 0
        if capacity < 2 * self._capacity:
            capacity = 2 * self._capacity
        if capacity < 4:
            capacity = 4
        cdef Bucket* grown = <Bucket*>realloc(self._buckets, capacity * sizeof(Bucket))
        if grown == NULL:
            raise MemoryError()
        self._buckets = grown
        self._capacity = capacity
        return 0

    cdef inline void _drop_front(self, Py_ssize_t count) noexcept:
        if count:
            self._count -= count
            memmove(self._buckets, self._buckets + count, self._count * sizeof(Bucket))

    # --- engagement state (§17) in C ---------------------------------------------

    @property
    def engagement(self):
        """member_engagement.Engagement, or None: from here on the Python form is the state."""
        if self._engagement is None and self._engaged:
            self._engagement = self._engagement_object()
            self._clear_lots()
        return self._engagement

    @engagement.setter
    def engagement(self, value):
        self._clear_lots()
        self._engagement = value
        self._engaged = value is not None

    cdef object _engagement_object(self):
        cdef Py_ssize_t index
        cdef Lot* lot
        engagement = Engagement(self._year, self._purchases)
        engagement.bonus = self._bonus
        engagement.reached = list(self._reached)
        lots = []
        for index in range(self._lot_count):
            lot = &self._lots[index]
            lots.append([lot.release_s, lot.expires_s, lot.points, lot.seq, _lot_key_object(lot), lot.month])
        engagement.lots = lots
        return engagement

    cdef bint _in_c(self) except -1:
        """Make the C fields the current form; False (nothing changed) when the Python form will not fit them."""
        cdef object engagement = self._engagement
        cdef list lot
        cdef Py_ssize_t index
        if engagement is None:
            return True
        if type(engagement) is not Engagement or type(engagement.reached) is not list \
                or type(engagement.lots) is not list:
            return False
        bonus, year, purchases = engagement.bonus, engagement.year, engagement.purchases
        if not (type(bonus) is int and type(year) is int and type(purchases) is int
                and INT64_MIN <= bonus <= INT64_MAX and INT32_MIN <= year <= INT32_MAX
                and INT64_MIN <= purchases <= INT64_MAX and len(engagement.reached) <= 255):
            return False
        for milestone_key in engagement.reached:
            if type(milestone_key) is not bytes or PyBytes_GET_SIZE(milestone_key) > 255:
                return False
        for lot_object in engagement.lots:
            if type(lot_object) is not list:
                return False
            lot = lot_object
            if not (len(lot) == 6 and type(lot[4]) is bytes and PyBytes_GET_SIZE(lot[4]) <= 255
                    and type(lot[0]) is int and type(lot[1]) is int and type(lot[2]) is int
                    and type(lot[3]) is int and type(lot[5]) is int
                    and INT64_MIN <= lot[0] <= INT64_MAX and INT64_MIN <= lot[1] <= INT64_MAX
                    and INT64_MIN <= lot[2] <= INT64_MAX and 0 <= lot[3] <= INT64_MAX
                    and INT32_MIN <= lot[5] <= INT32_MAX):
                return False
        self._bonus, self._year, self._purchases = bonus, year, purchases
        self._reached = _shared_reached(tuple(engagement.reached))
        self._reserve_lots(len(engagement.lots))
        for lot in engagement.lots:
            self._append_lot(lot[0], lot[1], lot[2], lot[3], PyBytes_AS_STRING(lot[4]), PyBytes_GET_SIZE(lot[4]),
                             lot[4], lot[5])
        self._engagement = None
        return True

    cdef inline void _start_engagement(self, int64_t year, int64_t purchases) noexcept:
        """Engagement(year, purchases) for a member without one (no lots)."""
        self._engaged = True
        self._bonus = 0
        self._year = year
        self._purchases = purchases
        self._reached = ()

    cdef inline void _enter_year(self, int64_t year) noexcept:
        """Engagement.enter_year: the counts belong to the tier year (§17)."""
        if year > self._year:
            self._year = year
            self._purchases = 0
            self._reached = ()

    cdef int _reserve_lots(self, Py_ssize_t capacity) except -1:
        if capacity <= self._lot_capacity:
            return 0
        if capacity < 2 * self._lot_capacity:
            capacity = 2 * self._lot_capacity
        if capacity < 2:
            capacity = 2
        cdef Lot* grown = <Lot*>realloc(self._lots, capacity * sizeof(Lot))
        if grown == NULL:
            raise MemoryError()
        self._lots = grown
        self._lot_capacity = capacity
        return 0

    cdef int _append_lot(self, int64_t release_s, int64_t expires_s, int64_t points, int64_t seq,
                         const char* key_data, Py_ssize_t key_size, object order_key, int32_t month) except -1:
        """A lot with the order key `key_data`; `order_key` (its bytes, or None) saves a copy of a long one."""
        self._reserve_lots(self._lot_count + 1)
        cdef Lot* lot = &self._lots[self._lot_count]
        lot.release_s = release_s
        lot.expires_s = expires_s
        lot.points = points
        lot.seq = seq
        lot.month = month
        if key_size <= LOT_KEY_INLINE:
            memcpy(lot.key.inline, key_data, key_size)
        else:
            if order_key is None:
                order_key = PyBytes_FromStringAndSize(key_data, key_size)
            Py_INCREF(order_key)
            lot.key.object = <PyObject*>order_key
        lot.key_size = <int32_t>key_size
        if self._lot_count == 0 or expires_s < self._lots_expire_from:
            self._lots_expire_from = expires_s
        if self._lot_count == 0 or release_s < self._lots_release_from:
            self._lots_release_from = release_s
        self._lot_count += 1
        return 0

    cdef void _bound_lots(self) noexcept:
        """The lower bounds, exact again after lots were dropped."""
        cdef Py_ssize_t index
        self._lots_expire_from = INT64_MAX
        self._lots_release_from = INT64_MAX
        for index in range(self._lot_count):
            if self._lots[index].expires_s < self._lots_expire_from:
                self._lots_expire_from = self._lots[index].expires_s
            if self._lots[index].release_s < self._lots_release_from:
                self._lots_release_from = self._lots[index].release_s

    cdef void _clear_lots(self) noexcept:
        cdef Py_ssize_t index
        for index in range(self._lot_count):
            _lot_drop_key(&self._lots[index])
        self._lot_count = 0

    cdef inline int64_t _lots_due(self, int64_t time_s) noexcept:
        """Points of the pending lots that expire at time_s (C form)."""
        cdef int64_t total = 0
        cdef Py_ssize_t index
        if self._lot_count == 0 or time_s < self._lots_expire_from:
            return 0
        for index in range(self._lot_count):
            if self._lots[index].expires_s <= time_s:
                total += self._lots[index].points
        return total

    cdef int _expire_lots(self, int64_t time_s, _ExpiryDeltas deltas, _MonthSums taken) except -1:
        """engagement.expire_due's part for lots: drop the due ones; the caller changes the balance."""
        cdef Py_ssize_t index, kept = 0
        cdef Lot* lot
        for index in range(self._lot_count):
            lot = &self._lots[index]
            if lot.expires_s <= time_s:
                deltas.add(lot.expires_s, -lot.points)
                taken.add(lot.month, lot.points)
                _lot_drop_key(lot)
            else:
                if kept != index:
                    self._lots[kept] = lot[0]
                kept += 1
        self._lot_count = kept
        self._bound_lots()
        return 0

    cdef int _release_lots(self, int64_t time_s, _ExpiryDeltas deltas) except -1:
        """engagement.release_due: lots whose release instant has come join their buckets."""
        cdef Py_ssize_t index, kept = 0
        cdef Lot* lot
        if self._lot_count == 0 or time_s < self._lots_release_from:
            return 0
        for index in range(self._lot_count):
            if self._lots[index].release_s <= time_s:
                break
        else:
            self._bound_lots()
            return 0
        cdef int64_t paid
        # Through a pointer: a lot is 64 bytes, copied out and back only when one before it left.
        for index in range(self._lot_count):
            lot = &self._lots[index]
            if lot.release_s <= time_s:
                # _credit less what cancels out: the balance and the expiry totals hold the
                # lot's points already; only the debt it pays (first) leaves the totals.
                paid = self.debt if self.debt < lot.points else lot.points
                self.debt -= paid
                if paid:
                    deltas.add(lot.expires_s, -paid)
                if lot.points > paid:
                    self._add_to_bucket(lot.expires_s, lot.points - paid, lot.month)
                _lot_drop_key(lot)
            else:
                if kept != index:
                    self._lots[kept] = lot[0]
                kept += 1
        self._lot_count = kept
        self._bound_lots()
        return 0

    @property
    def buckets(self):
        """[[expiry instant, points, issue month]], by (instant, month): a new list, read-only."""
        cdef Py_ssize_t index
        return [[self._buckets[index].instant, self._buckets[index].points, self._buckets[index].month]
                for index in range(self._count)]

    @classmethod
    def decode(cls, value):
        if not PyBytes_CheckExact(value):
            value = bytes(value)
        return _decode_member(value)

    def encode(self):
        return _encode_state(self)

    # --- expiry (§5) ---------------------------------------------------------

    def due_points(self, int64_t time_s):
        return self._due_points(time_s)

    cdef inline int64_t _due_points(self, int64_t time_s) noexcept:
        cdef int64_t total = 0
        cdef Py_ssize_t index
        for index in range(self._count):
            if self._buckets[index].instant > time_s:
                break
            total += self._buckets[index].points
        return total

    def unexpired_points(self, int64_t time_s):
        cdef int64_t total = 0
        cdef Py_ssize_t index
        for index in range(self._count):
            if self._buckets[index].instant > time_s:
                total += self._buckets[index].points
        return total

    def expire_due(self, int64_t time_s, dict expiry_deltas, dict taken=None):
        if self._count == 0 or self._buckets[0].instant > time_s:
            return 0  # nothing due (the usual case of an expire run): nothing changes
        cdef _ExpiryDeltas deltas = _deltas_into(expiry_deltas)
        cdef _MonthSums sums = _month_sums_for(taken)
        cdef int64_t total = self._expire_due(time_s, deltas, sums)
        deltas.fold()
        if sums is not None:
            sums.fold(taken)
        return total

    cdef int64_t _expire_due(self, int64_t time_s, _ExpiryDeltas deltas, _MonthSums taken) except? -1:
        cdef int64_t total = 0
        cdef Py_ssize_t due = 0
        while due < self._count and self._buckets[due].instant <= time_s:
            deltas.add(self._buckets[due].instant, -self._buckets[due].points)
            if taken is not None:
                taken.add(self._buckets[due].month, self._buckets[due].points)
            total += self._buckets[due].points
            due += 1
        self._drop_front(due)
        self.balance -= total
        self.expired += total
        return total

    # --- tiers (§4) ------------------------------------------------------------

    def rolled(self, year, program):
        if year <= self.tier_year:
            return self.tier_year, self.spend_minor, self.carried_rank
        if year == self.tier_year + 1:
            carried = program.tier_rank_for_spend(self.spend_minor)
        else:
            carried = 0
        return year, 0, carried

    def roll_to(self, year, program):
        self.tier_year, self.spend_minor, self.carried_rank = self.rolled(year, program)

    # --- credits and debits (§5, §6) -------------------------------------------

    def credit(self, int64_t points, int64_t instant, dict expiry_deltas, int32_t month):
        cdef _ExpiryDeltas deltas = _deltas_into(expiry_deltas)
        cdef int64_t paid = self._credit(points, instant, deltas, month)
        deltas.fold()
        return paid

    cdef int64_t _credit(self, int64_t points, int64_t instant, _ExpiryDeltas deltas, int32_t month) except -1:
        """Pay debt first, the rest to the bucket (instant, issue month); return the debt paid."""
        cdef int64_t paid = self.debt if self.debt < points else points
        self.debt -= paid
        cdef int64_t rest = points - paid
        self.balance += points
        if rest == 0:
            return paid
        deltas.add(instant, rest)
        self._add_to_bucket(instant, rest, month)
        return paid

    cdef int _add_to_bucket(self, int64_t instant, int64_t rest, int32_t month) except -1:
        """`rest` points into the bucket (instant, issue month), made in its place if new."""
        cdef Py_ssize_t index = self._count
        # Credits arrive mostly in time order, so the bucket is usually the last.
        while index > 0 and (self._buckets[index - 1].instant > instant
                             or (self._buckets[index - 1].instant == instant
                                 and self._buckets[index - 1].month > month)):
            index -= 1
        if index > 0 and self._buckets[index - 1].instant == instant and self._buckets[index - 1].month == month:
            self._buckets[index - 1].points += rest
            return 0
        self._reserve(self._count + 1)
        memmove(self._buckets + index + 1, self._buckets + index, (self._count - index) * sizeof(Bucket))
        self._buckets[index].instant = instant
        self._buckets[index].points = rest
        self._buckets[index].month = month
        self._count += 1
        return 0

    def debit(self, long long points, dict expiry_deltas, dict taken=None):
        cdef _ExpiryDeltas deltas = _deltas_into(expiry_deltas)
        cdef _MonthSums sums = _month_sums_for(taken)
        cdef int64_t remaining = self._debit(points, deltas, sums)
        deltas.fold()
        if sums is not None:
            sums.fold(taken)
        return remaining

    cdef int64_t _debit(self, int64_t points, _ExpiryDeltas deltas, _MonthSums taken) except? -1:
        cdef int64_t remaining = points
        cdef int64_t available, used
        cdef Py_ssize_t used_up = 0
        while remaining and used_up < self._count:
            available = self._buckets[used_up].points
            used = available if available < remaining else remaining
            deltas.add(self._buckets[used_up].instant, -used)
            if taken is not None:
                taken.add(self._buckets[used_up].month, used)
            remaining -= used
            if used == available:
                used_up += 1
            else:
                self._buckets[used_up].points = available - used
        self._drop_front(used_up)
        self.balance -= points
        return remaining


cdef bytes _encode_state(MemberState self):
    """MEMBER_HEAD + BUCKETs, packed by hand."""
    cdef bytes value = PyBytes_FromStringAndSize(NULL, _state_size(self))
    _put_state(self, <unsigned char*>PyBytes_AS_STRING(value))
    if self._engagement is not None:  # the Python form: encoded after the head and buckets
        return value + _encode_engagement(self._engagement)
    return value


cdef Py_ssize_t _state_size(MemberState self) except -1:
    """The size of what _put_state writes (the record's range checks first): the whole record,
    but for a state whose engagement is its Python form (encoded after it, _encode_state)."""
    if not (INT32_MIN <= self.tier_year <= INT32_MAX and INT32_MIN <= self.carried_rank <= INT32_MAX):
        raise _struct_error("'i' format requires -2147483648 <= number <= 2147483647")
    if self.last_seq < 0:
        raise _struct_error("argument out of range")
    cdef Py_ssize_t size = MEMBER_HEAD_SIZE + self._count * BUCKET_MONTH_SIZE
    if self._engaged and self._engagement is None:
        size += _engagement_size(self)
    return size


cdef void _put_state(MemberState self, unsigned char* p) noexcept:
    """The record at p (_state_size bytes; in place, so a flush packs it straight into its buffer)."""
    cdef Py_ssize_t index
    p[0] = <unsigned char>(MEMBER_RECORD_VERSION_LOTS_ENGAGED if self._engaged else MEMBER_RECORD_VERSION_LOTS)
    pl_put64(p + 1, <uint64_t>self.balance)
    pl_put64(p + 9, <uint64_t>self.debt)
    pl_put32(p + 17, <uint32_t>self.tier_year)
    pl_put64(p + 21, <uint64_t>self.spend_minor)
    pl_put32(p + 29, <uint32_t>self.carried_rank)
    pl_put64(p + 33, <uint64_t>self.earned)
    pl_put64(p + 41, <uint64_t>self.redeemed)
    pl_put64(p + 49, <uint64_t>self.expired)
    pl_put64(p + 57, <uint64_t>self.clawed_back)
    pl_put64(p + 65, <uint64_t>self.adjusted)
    pl_put64(p + 73, <uint64_t>self.last_seq)
    pl_put32(p + 81, <uint32_t>self._count)
    p += MEMBER_HEAD_SIZE
    for index in range(self._count):
        pl_put64(p, <uint64_t>self._buckets[index].instant)
        pl_put64(p + 8, <uint64_t>self._buckets[index].points)
        pl_put32(p + 16, <uint32_t>self._buckets[index].month)
        p += BUCKET_MONTH_SIZE
    if self._engaged and self._engagement is None:
        _put_engagement(self, p)


cdef Py_ssize_t _engagement_size(MemberState self) except -1:
    """Bytes of the C form's ENGAGEMENT_HEAD, milestone ids, LOT_COUNT and lots (Engagement.encode)."""
    cdef Py_ssize_t index
    cdef Py_ssize_t size = ENGAGEMENT_HEAD_SIZE + LOT_COUNT_SIZE
    if not INT32_MIN <= self._year <= INT32_MAX:
        raise _struct_error("'i' format requires -2147483648 <= number <= 2147483647")
    if PyTuple_GET_SIZE(self._reached) > 255:
        raise _struct_error("ubyte format requires 0 <= number <= 255")
    for index in range(PyTuple_GET_SIZE(self._reached)):
        size += 1 + PyBytes_GET_SIZE(<object>PyTuple_GET_ITEM(self._reached, index))
    for index in range(self._lot_count):
        size += LOT_HEAD_MONTH_SIZE + self._lots[index].key_size
    return size


cdef void _put_engagement(MemberState self, unsigned char* p) noexcept:
    """The C form packed at p: as Engagement.encode (milestone ids and order ids are <= 255 bytes)."""
    cdef Py_ssize_t index, length
    cdef Lot* lot
    cdef PyObject* milestone_key
    pl_put64(p, <uint64_t>self._bonus)
    pl_put32(p + 8, <uint32_t><int32_t>self._year)
    pl_put64(p + 12, <uint64_t>self._purchases)
    p[20] = <unsigned char>PyTuple_GET_SIZE(self._reached)
    p += ENGAGEMENT_HEAD_SIZE
    for index in range(PyTuple_GET_SIZE(self._reached)):
        milestone_key = PyTuple_GET_ITEM(self._reached, index)
        length = PyBytes_GET_SIZE(<object>milestone_key)
        p[0] = <unsigned char>length
        memcpy(p + 1, PyBytes_AS_STRING(<object>milestone_key), length)
        p += 1 + length
    pl_put32(p, <uint32_t>self._lot_count)
    p += LOT_COUNT_SIZE
    for index in range(self._lot_count):
        lot = &self._lots[index]
        length = lot.key_size
        pl_put64(p, <uint64_t>lot.release_s)
        pl_put64(p + 8, <uint64_t>lot.expires_s)
        pl_put64(p + 16, <uint64_t>lot.points)
        pl_put64(p + 24, <uint64_t>lot.seq)
        pl_put32(p + 32, <uint32_t>lot.month)
        p[36] = <unsigned char>length
        memcpy(p + LOT_HEAD_MONTH_SIZE, _lot_key(lot), length)
        p += LOT_HEAD_MONTH_SIZE + length


cdef bint _get_engagement(MemberState state, const unsigned char* p, Py_ssize_t size,
                          bint with_months) except -1:
    """Engagement.decode into the C form; False (nothing kept) when the bytes are not a whole, valid state."""
    cdef const unsigned char* end = p + size
    cdef Py_ssize_t index, length, count
    cdef Py_ssize_t lot_size = LOT_HEAD_MONTH_SIZE if with_months else LOT_HEAD_SIZE
    if size < ENGAGEMENT_HEAD_SIZE:
        return False
    state._bonus = <int64_t>pl_get64(p)
    state._year = <int32_t>pl_get32(p + 8)
    state._purchases = <int64_t>pl_get64(p + 12)
    count = p[20]
    p += ENGAGEMENT_HEAD_SIZE
    reached = []
    for index in range(count):
        if p >= end or p + 1 + p[0] > end:
            return False
        length = p[0]
        reached.append(PyBytes_FromStringAndSize(<const char*>p + 1, length))
        p += 1 + length
    if p + LOT_COUNT_SIZE > end:
        return False
    count = pl_get32(p)
    p += LOT_COUNT_SIZE
    for index in range(count):
        if p + lot_size > end or p + lot_size + p[lot_size - 1] > end or pl_get64(p + 24) > <uint64_t>INT64_MAX:
            state._clear_lots()
            return False
        length = p[lot_size - 1]
        state._append_lot(<int64_t>pl_get64(p), <int64_t>pl_get64(p + 8), <int64_t>pl_get64(p + 16),
                          <int64_t>pl_get64(p + 24), <const char*>p + lot_size, length, None,
                          <int32_t>pl_get32(p + 32) if with_months else 0)
        p += lot_size + length
    if p != end:
        state._clear_lots()
        return False
    state._reached = _shared_reached(tuple(reached))
    state._engaged = True
    return True


cdef bytes _encode_engagement(object engagement):
    """Engagement.encode packed by hand; any value out of its field's range goes to encode() (its error)."""
    if type(engagement.reached) is not list or type(engagement.lots) is not list:
        return engagement.encode()
    cdef list reached = engagement.reached
    cdef list lots = engagement.lots
    cdef list lot
    bonus, year, purchases = engagement.bonus, engagement.year, engagement.purchases
    if not (type(bonus) is int and type(year) is int and type(purchases) is int
            and INT64_MIN <= bonus <= INT64_MAX and INT32_MIN <= year <= INT32_MAX
            and INT64_MIN <= purchases <= INT64_MAX and len(reached) <= 255 and len(lots) <= 0xFFFFFFFF):
        return engagement.encode()
    cdef Py_ssize_t size = ENGAGEMENT_HEAD_SIZE + LOT_COUNT_SIZE
    for milestone_key in reached:
        if type(milestone_key) is not bytes or PyBytes_GET_SIZE(milestone_key) > 255:
            return engagement.encode()
        size += 1 + PyBytes_GET_SIZE(milestone_key)
    for lot_object in lots:
        if type(lot_object) is not list:
            return engagement.encode()
        lot = lot_object
        if not (len(lot) == 6 and type(lot[4]) is bytes and PyBytes_GET_SIZE(lot[4]) <= 255
                and type(lot[0]) is int and type(lot[1]) is int and type(lot[2]) is int and type(lot[3]) is int
                and type(lot[5]) is int
                and INT64_MIN <= lot[0] <= INT64_MAX and INT64_MIN <= lot[1] <= INT64_MAX
                and INT64_MIN <= lot[2] <= INT64_MAX and 0 <= lot[3] <= INT64_MAX
                and INT32_MIN <= lot[5] <= INT32_MAX):
            return engagement.encode()
        size += LOT_HEAD_MONTH_SIZE + PyBytes_GET_SIZE(lot[4])
    cdef bytes value = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t length
    pl_put64(p, <uint64_t><int64_t>bonus)
    pl_put32(p + 8, <uint32_t><int64_t>year)
    pl_put64(p + 12, <uint64_t><int64_t>purchases)
    p[20] = <unsigned char>len(reached)
    p += ENGAGEMENT_HEAD_SIZE
    for milestone_key in reached:
        length = PyBytes_GET_SIZE(milestone_key)
        p[0] = <unsigned char>length
        memcpy(p + 1, PyBytes_AS_STRING(milestone_key), length)
        p += 1 + length
    pl_put32(p, <uint32_t>len(lots))
    p += LOT_COUNT_SIZE
    for lot in lots:
        length = PyBytes_GET_SIZE(lot[4])
        pl_put64(p, <uint64_t><int64_t>lot[0])
        pl_put64(p + 8, <uint64_t><int64_t>lot[1])
        pl_put64(p + 16, <uint64_t><int64_t>lot[2])
        pl_put64(p + 24, <uint64_t><int64_t>lot[3])
        pl_put32(p + 32, <uint32_t><int32_t>lot[5])
        p[36] = <unsigned char>length
        memcpy(p + LOT_HEAD_MONTH_SIZE, PyBytes_AS_STRING(lot[4]), length)
        p += LOT_HEAD_MONTH_SIZE + length
    return value


cdef MemberState _decode_member(bytes value):
    cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t index
    if size < MEMBER_HEAD_SIZE:
        raise _struct_error(
            f"unpack_from requires a buffer of at least {MEMBER_HEAD_SIZE} bytes for unpacking "
            f"{MEMBER_HEAD_SIZE} bytes at offset 0 (actual buffer size is {size})"
        )
    if not MEMBER_RECORD_VERSION <= p[0] <= MEMBER_RECORD_VERSION_LOTS_ENGAGED:
        raise ValueError(f"member record version {p[0]} is not supported")
    cdef bint engaged = p[0] == MEMBER_RECORD_VERSION_ENGAGED or p[0] == MEMBER_RECORD_VERSION_LOTS_ENGAGED
    # Versions 1 and 2 (formats 1-3) have no issue month: 0 until the upgrade sets it.
    cdef bint with_months = p[0] >= MEMBER_RECORD_VERSION_LOTS
    cdef Py_ssize_t bucket_size = BUCKET_MONTH_SIZE if with_months else BUCKET_SIZE
    cdef uint32_t bucket_count = pl_get32(p + 81)
    cdef Py_ssize_t end = MEMBER_HEAD_SIZE + <Py_ssize_t>bucket_count * bucket_size
    if size < end or (not engaged and size != end):
        raise ValueError(f"member record of {size} bytes has a bad length")
    cdef uint64_t last_seq = pl_get64(p + 73)
    if last_seq > <uint64_t>INT64_MAX:
        raise ValueError(f"member record last entry seq {last_seq} is out of range")
    cdef MemberState state = MemberState.__new__(MemberState)
    state.balance = <int64_t>pl_get64(p + 1)
    state.debt = <int64_t>pl_get64(p + 9)
    state.tier_year = <int32_t>pl_get32(p + 17)
    state.spend_minor = <int64_t>pl_get64(p + 21)
    state.carried_rank = <int32_t>pl_get32(p + 29)
    state.earned = <int64_t>pl_get64(p + 33)
    state.redeemed = <int64_t>pl_get64(p + 41)
    state.expired = <int64_t>pl_get64(p + 49)
    state.clawed_back = <int64_t>pl_get64(p + 57)
    state.adjusted = <int64_t>pl_get64(p + 65)
    state.last_seq = <int64_t>last_seq
    # One spare slot: a decoded member is usually about to be credited.
    state._reserve(bucket_count + 1)
    p += MEMBER_HEAD_SIZE
    for index in range(bucket_count):
        state._buckets[index].instant = <int64_t>pl_get64(p)
        state._buckets[index].points = <int64_t>pl_get64(p + 8)
        state._buckets[index].month = <int32_t>pl_get32(p + 16) if with_months else 0
        p += bucket_size
    state._count = bucket_count
    if engaged and not _get_engagement(state, <const unsigned char*>PyBytes_AS_STRING(value) + end, size - end,
                                       with_months):
        state.engagement = Engagement.decode(value, end, with_months)  # its error, or the Python form
    return state
