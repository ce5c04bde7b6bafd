# Part of _engine_c.pyx (included there): PurchaseResults, apply_purchases' per-item results held in C.

import collections.abc


@cython.final
cdef class PurchaseResults:
    """apply_purchases' results: a read-only sequence of the twin's tuples, held in C.

    Item i is the tuple the twin's list holds, `(status, seq, points, balance,
    error[, bonuses])`, made when it is read: a plain APPLIED purchase (no
    bonuses, the hot path's) is three int64 in arrays, not a tuple and three
    ints; any other item (a duplicate, a refusal, a purchase with bonuses) is
    kept as its tuple. `len`, indexing (a slice gives a list), iteration and
    `==` with a list of tuples behave as the list; the counts BatchResult asks
    for are kept as items are added.
    """
    cdef int64_t* seqs
    cdef int64_t* points
    cdef int64_t* balances
    cdef Py_ssize_t* other_at  # the item's place in `others`, or -1: held in the arrays
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity
    cdef list others  # the tuples of the items not held in the arrays, in order
    cdef Py_ssize_t applied_count
    cdef Py_ssize_t duplicate_count
    cdef pl_i128 plain_points  # points of the arrays' items (all APPLIED)

    def __cinit__(self):
        self.others = []

    def __dealloc__(self):
        free(self.seqs)
        free(self.points)
        free(self.balances)
        free(self.other_at)

    cdef int reserve(self, Py_ssize_t capacity) except -1:
        if capacity <= self.capacity:
            return 0
        cdef int64_t* seqs = <int64_t*>realloc(self.seqs, capacity * sizeof(int64_t))
        if seqs == NULL:
            raise MemoryError()
        self.seqs = seqs
        cdef int64_t* points = <int64_t*>realloc(self.points, capacity * sizeof(int64_t))
        if points == NULL:
            raise MemoryError()
        self.points = points
        cdef int64_t* balances = <int64_t*>realloc(self.balances, capacity * sizeof(int64_t))
        if balances == NULL:
            raise MemoryError()
        self.balances = balances
        cdef Py_ssize_t* other_at = <Py_ssize_t*>realloc(self.other_at, capacity * sizeof(Py_ssize_t))
        if other_at == NULL:
            raise MemoryError()
        self.other_at = other_at
        self.capacity = capacity
        return 0

    cdef inline int add_applied(self, int64_t seq, int64_t points, int64_t balance) except -1:
        """A plain APPLIED purchase: ("APPLIED", seq, points, balance, None)."""
        if self.size == self.capacity:
            self.reserve(self.capacity * 2 if self.capacity else 16)
        self.seqs[self.size] = seq
        self.points[self.size] = points
        self.balances[self.size] = balance
        self.other_at[self.size] = -1
        self.size += 1
        self.applied_count += 1
        self.plain_points += points
        return 0

    cdef int add(self, object item) except -1:
        """Any item, as its tuple."""
        if self.size == self.capacity:
            self.reserve(self.capacity * 2 if self.capacity else 16)
        self.seqs[self.size] = self.points[self.size] = self.balances[self.size] = 0
        self.other_at[self.size] = len(self.others)
        self.others.append(item)
        self.size += 1
        status = item[0]
        if status == "APPLIED":
            self.applied_count += 1
        elif status == "DUPLICATE":
            self.duplicate_count += 1
        return 0

    cdef object item(self, Py_ssize_t index):
        if self.other_at[index] >= 0:
            return <object>PyList_GET_ITEM(self.others, self.other_at[index])
        return ("APPLIED", self.seqs[index], self.points[index], self.balances[index], None)

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        cdef Py_ssize_t position
        if isinstance(index, slice):
            return [self.item(position) for position in range(*index.indices(self.size))]
        position = index
        if position < 0:
            position += self.size
        if not 0 <= position < self.size:
            raise IndexError("PurchaseResults index out of range")
        return self.item(position)

    def tolist(self):
        """The list of tuples the twin returns."""
        cdef list items = [None] * self.size
        cdef Py_ssize_t index
        for index in range(self.size):
            items[index] = self.item(index)
        return items

    def __iter__(self):
        return iter(self.tolist())  # one C loop: cheaper than a generator's resume per item

    def __reversed__(self):
        cdef Py_ssize_t index
        for index in range(self.size - 1, -1, -1):
            yield self.item(index)

    def __eq__(self, other):
        if not isinstance(other, (PurchaseResults, list)):
            return NotImplemented
        if len(other) != self.size:
            return False
        cdef Py_ssize_t index
        for index in range(self.size):
            if self.item(index) != other[index]:
                return False
        return True

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    def __repr__(self):
        return f"PurchaseResults({list(self)!r})"

    def __reduce__(self):
        return list, (list(self),)

    @property
    def applied(self):
        """How many items are APPLIED."""
        return self.applied_count

    @property
    def duplicates(self):
        """How many items are DUPLICATE."""
        return self.duplicate_count

    @property
    def applied_points(self):
        """The points of the APPLIED items, summed."""
        cdef Py_ssize_t index
        if INT64_MIN <= self.plain_points <= INT64_MAX:
            total = <int64_t>self.plain_points
        else:  # beyond int64: summed in Python
            total = 0
            for index in range(self.size):
                if self.other_at[index] < 0:
                    total += self.points[index]
        for item in self.others:
            if item[0] == "APPLIED":
                total += item[2]
        return total


collections.abc.Sequence.register(PurchaseResults)
