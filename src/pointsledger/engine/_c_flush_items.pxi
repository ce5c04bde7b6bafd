# Part of _engine_c.pyx (included there): the flush helpers: sorted (key, value) sequences for the store's puts.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- flush helpers: what writer.flush hands to putmulti -----------------------------
# Proposed for writer.flush, which does not call them yet: journal_items,
# member_items and sorted_items give the same (key, value) sequences as its own
# list expressions, without a Python frame or a long-lived tuple per record. The
# twin's versions would be those expressions, moved into functions of the same names.

cdef struct KeyedItem:
    uint64_t prefix  # the key's first 8 bytes, big-endian, zero-padded: most comparisons end here
    const char* data
    Py_ssize_t size
    PyObject* key
    PyObject* value


cdef int _compare_items(const void* left, const void* right) noexcept nogil:
    cdef const KeyedItem* a = <const KeyedItem*>left
    cdef const KeyedItem* b = <const KeyedItem*>right
    if a.prefix != b.prefix:
        return -1 if a.prefix < b.prefix else 1
    cdef Py_ssize_t common = a.size if a.size < b.size else b.size
    cdef int order = 0
    if common > 8:
        order = memcmp(a.data + 8, b.data + 8, common - 8)
    if order != 0:
        return order
    return -1 if a.size < b.size else (1 if a.size > b.size else 0)


cdef KeyedItem* _keyed_items(dict items, Py_ssize_t* count) except NULL:
    """The bytes-keyed dict's entries as a C array sorted in LMDB key order (memcmp, then length)."""
    cdef Py_ssize_t size = len(items)
    cdef KeyedItem* array = <KeyedItem*>malloc((size if size else 1) * sizeof(KeyedItem))
    if array == NULL:
        raise MemoryError()
    cdef Py_ssize_t position = 0, index = 0, byte
    cdef PyObject* key
    cdef PyObject* value
    cdef bint ascending = True
    cdef unsigned char* prefix_bytes
    while PyDict_Next(items, &position, &key, &value):
        if not PyBytes_CheckExact(<object>key):
            free(array)
            raise TypeError(f"keys must be bytes, not {type(<object>key).__name__}")
        array[index].key = key
        array[index].value = value
        array[index].data = PyBytes_AS_STRING(<object>key)
        array[index].size = PyBytes_GET_SIZE(<object>key)
        array[index].prefix = 0
        for byte in range(8):
            array[index].prefix <<= 8
            if byte < array[index].size:
                array[index].prefix |= <unsigned char>array[index].data[byte]
        if index and ascending and _compare_items(&array[index - 1], &array[index]) >= 0:
            ascending = False
        index += 1
    if not ascending:  # ascending order ids arrive sorted; random ones need the sort
        qsort(array, index, sizeof(KeyedItem), _compare_items)
    count[0] = index
    return array


cdef enum:
    ITEMS_PAIRS = 0  # (key, value) as stored
    ITEMS_MEMBERS = 1  # (key, state.encode())
    ITEMS_JOURNAL = 2  # (seq key, value)


@cython.final
cdef class _Items:
    """An iterator of (key, value) for putmulti, with a length.

    Each pair is made when putmulti asks for it and freed as soon as LMDB has
    copied it, so the same few cache lines serve every item, where a list of
    tuples would be built, read and freed again, cold, after the commit.
    """
    cdef int mode
    cdef KeyedItem* array
    cdef Py_ssize_t count
    cdef Py_ssize_t position
    cdef list values  # ITEMS_JOURNAL
    cdef int64_t first_seq
    cdef PyObject* pair  # the last pair handed out (owned), reused once putmulti drops it
    cdef PyObject* seq_key  # ITEMS_JOURNAL: the last journal key handed out (owned), reused likewise

    def __dealloc__(self):
        free(self.array)
        Py_XDECREF(self.pair)
        self.pair = NULL
        Py_XDECREF(self.seq_key)
        self.seq_key = NULL

    def __len__(self):
        return self.count

    def __iter__(self):
        return self

    @property
    def first_key(self):
        """The smallest key (None when empty), for putmulti's append decision."""
        if self.count == 0:
            return None
        if self.mode == ITEMS_JOURNAL:
            key = PyBytes_FromStringAndSize(NULL, 8)
            pl_put64(<unsigned char*>PyBytes_AS_STRING(key), <uint64_t>self.first_seq)
            return key
        return <object>self.array[0].key

    def __next__(self):
        cdef Py_ssize_t index = self.position
        cdef bytes key
        cdef PyObject* upcoming
        if index >= self.count:
            raise StopIteration
        self.position = index + 1
        if self.mode == ITEMS_JOURNAL:
            key = pl_seq_key(&self.seq_key, self.pair, <uint64_t>(self.first_seq + index))
            return pl_pair(&self.pair, key, <object>PyList_GET_ITEM(self.values, index))
        if self.mode == ITEMS_PAIRS:
            # Sorted random ids (orders) visit keys and values out of allocation order.
            if index + 8 < self.count:
                pl_prefetch(self.array[index + 8].key)
                pl_prefetch(self.array[index + 8].value)
            return pl_pair(&self.pair, <object>self.array[index].key, <object>self.array[index].value)
        # Member records are scattered over a large heap: fetch them ahead.
        if index + 8 < self.count:
            upcoming = self.array[index + 8].value
            pl_prefetch(upcoming)
            pl_prefetch(<char*>upcoming + 64)
            pl_prefetch(<char*>upcoming + 128)
        if index + 4 < self.count and type(<object>self.array[index + 4].value) is MemberState:
            pl_prefetch((<MemberState>self.array[index + 4].value)._buckets)
        value = <object>self.array[index].value
        if type(value) is MemberState:
            return pl_pair(&self.pair, <object>self.array[index].key, _encode_state(<MemberState>value))
        return pl_pair(&self.pair, <object>self.array[index].key, value.encode())


cdef _Items _sorted(dict items, int mode):
    cdef _Items result = _Items.__new__(_Items)
    result.mode = mode
    result.array = _keyed_items(items, &result.count)
    # The dict owns the keys and values; keep it alive while the array points into it.
    result.values = [items]
    return result


def sorted_items(dict changes):
    """sorted(changes.items()) for a dict with bytes keys, as an iterator for putmulti."""
    return _sorted(changes, ITEMS_PAIRS)


def member_items(dict dirty_members):
    """[(member key, encoded record)] in key order, as an iterator for putmulti."""
    return _sorted(dirty_members, ITEMS_MEMBERS)


def journal_items(int64_t first_seq, list values):
    """[(seq key, value)] of the journal values, as an iterator for putmulti."""
    cdef _Items result = _Items.__new__(_Items)
    result.mode = ITEMS_JOURNAL
    result.values = values
    result.first_seq = first_seq
    result.count = len(values)
    return result
