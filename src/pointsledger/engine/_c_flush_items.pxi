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


cdef enum:
    RADIX_MIN = 256  # items from which _sort_items sorts by radix (below, qsort)


cdef int _sort_items(KeyedItem* array, Py_ssize_t count) except -1:
    """_compare_items' order: the 8-byte prefixes by LSD radix (a byte per pass, a byte that
    is the same in every prefix skipped), then each run of equal prefixes (keys longer than
    8 bytes, or differing only by trailing zero bytes) by qsort. A qsort of everything costs
    ~15 indirect comparisons per item, most of a flush's member encoding."""
    cdef Py_ssize_t index, run, total
    cdef int byte, digit
    if count < RADIX_MIN:
        qsort(array, count, sizeof(KeyedItem), _compare_items)
        return 0
    cdef Py_ssize_t* counts = <Py_ssize_t*>calloc(8 * 256, sizeof(Py_ssize_t))  # [byte * 256 + digit]
    cdef KeyedItem* spare = <KeyedItem*>malloc(count * sizeof(KeyedItem))
    if counts == NULL or spare == NULL:
        free(counts)
        free(spare)
        raise MemoryError()
    cdef KeyedItem* source = array
    cdef KeyedItem* target = spare
    cdef KeyedItem* swap
    for index in range(count):
        for byte in range(8):
            counts[byte * 256 + ((array[index].prefix >> (8 * byte)) & 0xFF)] += 1
    for byte in range(8):  # least significant first
        if counts[byte * 256 + ((array[0].prefix >> (8 * byte)) & 0xFF)] == count:
            continue  # the same byte in every prefix
        total = 0
        for digit in range(256):
            run = counts[byte * 256 + digit]
            counts[byte * 256 + digit] = total
            total += run
        for index in range(count):
            digit = (source[index].prefix >> (8 * byte)) & 0xFF
            target[counts[byte * 256 + digit]] = source[index]
            counts[byte * 256 + digit] += 1
        swap = source
        source = target
        target = swap
    if source != array:
        memcpy(array, source, count * sizeof(KeyedItem))
    free(counts)
    free(spare)
    index = 0
    while index < count:
        run = index + 1
        while run < count and array[run].prefix == array[index].prefix:
            run += 1
        if run - index > 1:
            qsort(&array[index], run - index, sizeof(KeyedItem), _compare_items)
        index = run
    return 0


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
        index += 1
    _sort_keyed(array, index)
    count[0] = index
    return array


cdef int _sort_keyed(KeyedItem* array, Py_ssize_t count_found) except -1:
    """Fill in the items' key data and prefixes (key and value set), then sort them in LMDB key order."""
    cdef Py_ssize_t index, byte
    cdef PyObject* key
    cdef bint ascending = True
    # The keys are scattered over the heap: their bytes fetched a few ahead of the prefixes.
    for index in range(count_found):
        if index + 8 < count_found:
            pl_prefetch(array[index + 8].key)
        key = array[index].key
        array[index].data = PyBytes_AS_STRING(<object>key)
        array[index].size = PyBytes_GET_SIZE(<object>key)
        array[index].prefix = 0
        for byte in range(8):
            array[index].prefix <<= 8
            if byte < array[index].size:
                array[index].prefix |= <unsigned char>array[index].data[byte]
        if index and ascending and _compare_items(&array[index - 1], &array[index]) >= 0:
            ascending = False
    if not ascending:  # ascending order ids arrive sorted; random ones need the sort
        _sort_items(array, count_found)
    return 0


cdef KeyedItem* _member_keyed_items(object dirty_members, Py_ssize_t* count) except NULL:
    """_keyed_items of writer.dirty_members: a dict, or a DirtyMembers (its arrays, sorted)."""
    if type(dirty_members) is not DirtyMembers:
        return _keyed_items(<dict?>dirty_members, count)
    cdef DirtyMembers dirty = <DirtyMembers>dirty_members
    if dirty.maybe_duplicates:
        # The dict's keys and states are the DirtyMembers' own: they outlive the array as it does.
        return _keyed_items(dirty.as_dict(), count)
    cdef Py_ssize_t size = dirty.size, index
    cdef KeyedItem* array = <KeyedItem*>malloc((size if size else 1) * sizeof(KeyedItem))
    if array == NULL:
        raise MemoryError()
    for index in range(size):
        array[index].key = dirty.keys[index]
        array[index].value = dirty.states[index]
    try:
        _sort_keyed(array, size)
    except BaseException:
        free(array)
        raise
    for index in range(1, size):
        if _compare_items(&array[index - 1], &array[index]) == 0:
            # A key listed twice (not through __setitem__: never expected): the last marked, as a dict keeps.
            free(array)
            return _keyed_items(dirty.as_dict(), count)
    count[0] = size
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


def member_items(dirty_members):
    """[(member key, encoded record)] in key order, as an iterator for putmulti (a dict or DirtyMembers)."""
    if type(dirty_members) is DirtyMembers:
        dirty_members = (<DirtyMembers>dirty_members).as_dict()
    return _sorted(dirty_members, ITEMS_MEMBERS)


def journal_items(int64_t first_seq, list values):
    """[(seq key, value)] of the journal values, as an iterator for putmulti."""
    cdef _Items result = _Items.__new__(_Items)
    result.mode = ITEMS_JOURNAL
    result.values = values
    result.first_seq = first_seq
    result.count = len(values)
    return result


# --- the member records packed for the C put (store/_lmdb_batch.Records.add_packed) --------

cdef enum:
    PACKED_HEAD = 8  # per record: key size, value size (u32 each, native order), then key, value
    PACKED_GIL_EVERY = 512  # pack_members lets the GIL go after this many records
    # Room for a year of monthly buckets per member, so the buffer is rarely grown.
    PACKED_ROOM_PER_MEMBER = PACKED_HEAD + 16 + MEMBER_HEAD_SIZE + 13 * BUCKET_MONTH_SIZE


def pack_members(dirty_members):
    """member_items' records, packed in one buffer for the C put: (PackedRecords, count, first
    key, last key), in key order. The states are encoded straight into it: no bytes object or
    pair per member."""
    cdef Py_ssize_t count = 0, index, key_size, value_size
    cdef KeyedItem* array = _member_keyed_items(dirty_members, &count)
    cdef PackedRecords packed = PackedRecords.__new__(PackedRecords)
    cdef uint32_t head[2]
    cdef char* p
    cdef PyObject* upcoming
    cdef MemberState state
    first_key = last_key = None
    try:
        if count:
            packed.room(count * PACKED_ROOM_PER_MEMBER)
        for index in range(count):
            # Member records are scattered over a large heap: fetch them ahead (as _Items).
            if index + 8 < count:
                upcoming = array[index + 8].value
                pl_prefetch(upcoming)
                pl_prefetch(<char*>upcoming + 64)
                pl_prefetch(<char*>upcoming + 128)
            if index + 4 < count and type(<object>array[index + 4].value) is MemberState:
                pl_prefetch((<MemberState>array[index + 4].value)._buckets)
                pl_prefetch(array[index + 4].data)
            value = <object>array[index].value
            encoded = None
            if type(value) is MemberState and (<MemberState>value)._engagement is None:
                state = <MemberState>value
                value_size = _state_size(state)
            else:  # an engagement in its Python form, or another engine's state: its bytes
                encoded = _encode_state(<MemberState>value) if type(value) is MemberState else value.encode()
                if not PyBytes_CheckExact(encoded):
                    encoded = bytes(encoded)
                value_size = PyBytes_GET_SIZE(encoded)
            key_size = array[index].size
            if key_size > 0xFFFFFFFF or value_size > 0xFFFFFFFF:
                raise ValueError("a record larger than 4 GiB")
            p = packed.room(PACKED_HEAD + key_size + value_size)
            head[0], head[1] = <uint32_t>key_size, <uint32_t>value_size
            memcpy(p, head, PACKED_HEAD)
            memcpy(p + PACKED_HEAD, array[index].data, key_size)
            if encoded is None:
                _put_state(state, <unsigned char*>p + PACKED_HEAD + key_size)
            else:
                memcpy(p + PACKED_HEAD + key_size, PyBytes_AS_STRING(encoded), value_size)
            packed.size += PACKED_HEAD + key_size + value_size
            if (index + 1) % PACKED_GIL_EVERY == 0:
                # A pipeline's writer thread may be waiting for the GIL (the member records
                # of a batch take ~20 ms to encode): let it go now and then.
                with nogil:
                    pass
        if count:
            first_key, last_key = <object>array[0].key, <object>array[count - 1].key
    finally:
        free(array)
    return packed, count, first_key, last_key
