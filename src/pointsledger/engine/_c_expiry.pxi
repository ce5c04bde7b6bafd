# Part of _engine_c.pyx (included there): expiry deltas and per-month sums held in C between items.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- expiry deltas -------------------------------------------------------------------


@cython.final
cdef class _ExpiryDeltas:
    """writer.expiry_deltas changes summed in C, folded into the dict when full or done.

    A batch credits a handful of instants (one per month of purchases), so a
    short array with a remembered last slot replaces a dict update per purchase.
    """
    cdef dict target
    cdef int size
    cdef int last
    cdef int64_t instants[DELTAS_MAX]
    cdef int64_t deltas[DELTAS_MAX]

    cdef int add(self, int64_t instant, int64_t delta) except -1:
        cdef int index
        if self.size and self.instants[self.last] == instant:
            self.deltas[self.last] += delta
            return 0
        for index in range(self.size):
            if self.instants[index] == instant:
                self.deltas[index] += delta
                self.last = index
                return 0
        if self.size == DELTAS_MAX:
            self.fold()
        self.instants[self.size] = instant
        self.deltas[self.size] = delta
        self.last = self.size
        self.size += 1
        return 0

    cdef int fold(self) except -1:
        cdef int index
        cdef dict target = self.target
        for index in range(self.size):
            if self.deltas[index]:
                instant = self.instants[index]
                target[instant] = target.get(instant, 0) + self.deltas[index]
        self.size = 0
        self.last = 0
        return 0


cdef _ExpiryDeltas _deltas_into(dict target):
    cdef _ExpiryDeltas deltas = _ExpiryDeltas.__new__(_ExpiryDeltas)
    deltas.target = target
    return deltas


@cython.final
cdef class _MonthSums:
    """Points by issue month (§19) of debits or expiries, summed in C; `fold` hands them to a dict.

    The batch keeps one for the points expired on its current day, so an expiry
    before a purchase costs no Python call (the cohort counters take it once a day).
    """
    cdef int size
    cdef int32_t months[DELTAS_MAX]
    cdef int64_t points[DELTAS_MAX]
    cdef dict overflow  # past DELTAS_MAX distinct months (rare): a dict

    cdef int add(self, int32_t month, int64_t points) except -1:
        cdef int index
        for index in range(self.size):
            if self.months[index] == month:
                self.points[index] += points
                return 0
        if self.size < DELTAS_MAX:
            self.months[self.size] = month
            self.points[self.size] = points
            self.size += 1
            return 0
        if self.overflow is None:
            self.overflow = {}
        self.overflow[month] = self.overflow.get(month, 0) + points
        return 0

    cdef int fold(self, dict target) except -1:
        """target[month] += points for each month; then empty."""
        cdef int index
        for index in range(self.size):
            month = self.months[index]
            target[month] = target.get(month, 0) + self.points[index]
        self.size = 0
        if self.overflow is not None:
            for month, points in self.overflow.items():
                target[month] = target.get(month, 0) + points
            self.overflow = None
        return 0


cdef inline _MonthSums _month_sums_for(dict taken):
    return None if taken is None else _MonthSums.__new__(_MonthSums)
