# Part of _engine_c.pyx (included there): the batch's inputs (columns, categories) and the journal and order record encoders.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- the hot path ----------------------------------------------------------------


@cython.final
cdef class _Category:
    """A validated category of this batch: its key, its code once known, its rule."""
    cdef bytes key
    cdef int64_t code  # -1 until writer.category_code has been asked
    cdef _Rules rules  # the programme `rule` was taken from
    cdef _CategoryRule rule


cdef enum:
    COLUMN_OTHER = 0
    COLUMN_LIST = 1
    COLUMN_TUPLE = 2


cdef inline int _column_kind(object column):
    if type(column) is list:
        return COLUMN_LIST
    if type(column) is tuple:
        return COLUMN_TUPLE
    return COLUMN_OTHER


cdef inline object _item(object column, int kind, Py_ssize_t index):
    if kind == COLUMN_LIST and index < PyList_GET_SIZE(column):
        return <object>PyList_GET_ITEM(column, index)
    if kind == COLUMN_TUPLE and index < PyTuple_GET_SIZE(column):
        return <object>PyTuple_GET_ITEM(column, index)
    return PyObject_GetItem(column, index)


cdef inline bint _key_after(bytes key, bytes bound) noexcept:
    """key > bound in LMDB's default order (memcmp, then length), as Python compares bytes."""
    cdef Py_ssize_t key_size = PyBytes_GET_SIZE(key)
    cdef Py_ssize_t bound_size = PyBytes_GET_SIZE(bound)
    cdef int order = memcmp(PyBytes_AS_STRING(key), PyBytes_AS_STRING(bound),
                            key_size if key_size < bound_size else bound_size)
    if order != 0:
        return order > 0
    return key_size > bound_size


cdef bytes _encode_entry(int kind, int64_t points, int64_t balance, int64_t time_s, int64_t version,
                         int64_t previous_seq, bytes member_key, bytes ref_key):
    cdef bytes value = PyBytes_FromStringAndSize(
        NULL, JOURNAL_HEAD_SIZE + PyBytes_GET_SIZE(member_key) + PyBytes_GET_SIZE(ref_key))
    _put_entry(<unsigned char*>PyBytes_AS_STRING(value), kind, points, balance, time_s, version, previous_seq,
               member_key, ref_key)
    return value


cdef inline void _put_entry(unsigned char* p, int kind, int64_t points, int64_t balance, int64_t time_s,
                            int64_t version, int64_t previous_seq, bytes member_key, bytes ref_key) noexcept:
    """The journal value at p (JOURNAL_HEAD_SIZE + both keys' sizes)."""
    cdef Py_ssize_t member_size = PyBytes_GET_SIZE(member_key)
    cdef Py_ssize_t ref_size = PyBytes_GET_SIZE(ref_key)
    p[0] = <unsigned char>kind
    pl_put64(p + 1, <uint64_t>points)
    pl_put64(p + 9, <uint64_t>balance)
    pl_put64(p + 17, <uint64_t>time_s)
    pl_put32(p + 25, <uint32_t>version)
    pl_put64(p + 29, <uint64_t>previous_seq)
    p[37] = <unsigned char>member_size
    p[38] = <unsigned char>ref_size
    memcpy(p + JOURNAL_HEAD_SIZE, PyBytes_AS_STRING(member_key), member_size)
    memcpy(p + JOURNAL_HEAD_SIZE + member_size, PyBytes_AS_STRING(ref_key), ref_size)


from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND

cdef enum:
    JOURNAL_RECORD_HEAD = 16  # per packed entry: u32 key size (8), u32 value size (native order), the seq key
    JOURNAL_ROOM_PER_ENTRY = JOURNAL_RECORD_HEAD + JOURNAL_HEAD_SIZE + 32  # and two ids of 16 bytes
    POOL_BLOCKS = 8  # buffers of packed records kept for the next batches (two batches' journal, members, orders)
    POOL_BLOCK_MAX = 1 << 26  # bytes: a larger buffer is given back to the system

# Freed buffers of PackedRecords, reused: a fresh buffer of megabytes per batch costs a page
# fault per 4 KiB touched (and the kernel's zeroing), more than the packing itself. Only ever
# used with the GIL held.
cdef char* _pool_data[POOL_BLOCKS]
cdef Py_ssize_t _pool_capacity[POOL_BLOCKS]
cdef int _pool_count = 0


cdef char* _pool_take(Py_ssize_t want, Py_ssize_t* capacity) except NULL:
    """A buffer of at least `want` bytes (its capacity set): the smallest pooled one that fits
    (a batch's journal and its member records each find their own size again), else the largest
    pooled one grown, else a new one."""
    global _pool_count
    cdef int index, best = -1
    cdef char* data
    for index in range(_pool_count):
        if best < 0:
            best = index
        elif _pool_capacity[best] < want:  # none fits yet: the largest
            if _pool_capacity[index] > _pool_capacity[best]:
                best = index
        elif want <= _pool_capacity[index] < _pool_capacity[best]:  # a smaller one that fits
            best = index
    if best >= 0:
        data, capacity[0] = _pool_data[best], _pool_capacity[best]
        _pool_count -= 1
        _pool_data[best], _pool_capacity[best] = _pool_data[_pool_count], _pool_capacity[_pool_count]
        if capacity[0] >= want:
            return data
        grown = <char*>realloc(data, want)
        if grown == NULL:
            free(data)
            raise MemoryError()
        capacity[0] = want
        return grown
    data = <char*>malloc(want)
    if data == NULL:
        raise MemoryError()
    capacity[0] = want
    return data


cdef void _pool_give(char* data, Py_ssize_t capacity) noexcept:
    global _pool_count
    if data == NULL:
        return
    if _pool_count < POOL_BLOCKS and capacity <= POOL_BLOCK_MAX:
        _pool_data[_pool_count], _pool_capacity[_pool_count] = data, capacity
        _pool_count += 1
    else:
        free(data)


cdef class PackedRecords:
    """Records packed in one buffer as store/_lmdb_batch.Records.add_packed takes them (per record
    `u32 key size, u32 value size` in native order, key, value), read through the buffer
    protocol. While exported (Records holds it) it cannot grow."""
    cdef char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity
    cdef int exports
    cdef Py_ssize_t shape[1]

    def __dealloc__(self):
        _pool_give(self.data, self.capacity)
        self.data = NULL

    cdef char* room(self, Py_ssize_t more) except NULL:
        """Where the next `more` bytes go (the caller adds them to size)."""
        cdef Py_ssize_t need = self.size + more
        cdef Py_ssize_t capacity
        if self.exports:
            raise BufferError("the records are being written: none can be added")
        if need > self.capacity:
            if self.data == NULL:
                self.data = _pool_take(need, &self.capacity)
            else:
                capacity = 2 * self.capacity if 2 * self.capacity > need else need
                grown = <char*>realloc(self.data, capacity)
                if grown == NULL:
                    raise MemoryError()
                self.data, self.capacity = grown, capacity
        return self.data + self.size

    def __len__(self):
        return self.size

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        self.shape[0] = self.size
        buffer.buf = self.data
        buffer.obj = self
        buffer.len = self.size
        buffer.readonly = 1
        buffer.itemsize = 1
        buffer.format = NULL
        if flags & PyBUF_FORMAT:
            buffer.format = b"B"
        buffer.ndim = 1
        buffer.shape = self.shape if flags & PyBUF_ND else NULL
        buffer.strides = NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* buffer):
        self.exports -= 1


@cython.final
cdef class PackedJournal(PackedRecords):
    """A writer's journal values as PackedRecords: per entry its 8-byte big-endian seq key (from
    first_seq) and its value. The C engine encodes each entry straight into it: no bytes object
    per entry to make, reference, hand to LMDB and free. The writer's reads see a list of bytes:
    append, len, [index], iteration."""
    cdef Py_ssize_t* offsets  # of each entry's record in data
    cdef Py_ssize_t count
    cdef Py_ssize_t offsets_capacity
    cdef readonly int64_t first_seq

    def __cinit__(self, int64_t first_seq, Py_ssize_t entries=0):
        """entries: how many entries to make room for (a batch's purchases), or 0."""
        self.first_seq = first_seq
        if entries > 0:
            self.room(entries * JOURNAL_ROOM_PER_ENTRY)
            self.offsets = <Py_ssize_t*>malloc(entries * sizeof(Py_ssize_t))
            if self.offsets == NULL:
                raise MemoryError()
            self.offsets_capacity = entries

    def __dealloc__(self):
        free(self.offsets)

    cdef unsigned char* reserve(self, Py_ssize_t value_size) except NULL:
        """Room for the next entry's value (its head and key written): the value must be put there."""
        if value_size > 0xFFFFFFFF:
            raise ValueError("a journal value larger than 4 GiB")
        cdef unsigned char* p = <unsigned char*>self.room(JOURNAL_RECORD_HEAD + value_size)
        cdef Py_ssize_t capacity
        if self.count == self.offsets_capacity:
            capacity = 2 * self.offsets_capacity if self.offsets_capacity else 4096
            offsets = <Py_ssize_t*>realloc(self.offsets, capacity * sizeof(Py_ssize_t))
            if offsets == NULL:
                raise MemoryError()
            self.offsets, self.offsets_capacity = offsets, capacity
        cdef uint32_t head[2]
        head[0], head[1] = 8, <uint32_t>value_size
        memcpy(p, head, 8)
        pl_put64(p + 8, <uint64_t>(self.first_seq + self.count))
        self.offsets[self.count] = self.size
        self.count += 1
        self.size += JOURNAL_RECORD_HEAD + value_size
        return p + JOURNAL_RECORD_HEAD

    def append(self, value):
        """A value encoded elsewhere (the twin's writer.append_entry), copied."""
        cdef const unsigned char[::1] view = value
        cdef Py_ssize_t size = view.shape[0]
        cdef unsigned char* p = self.reserve(size)
        if size:
            memcpy(p, &view[0], size)

    def __len__(self):
        return self.count

    def __getitem__(self, Py_ssize_t index):
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError("journal index out of range")
        cdef uint32_t head[2]
        memcpy(head, self.data + self.offsets[index], 8)
        return PyBytes_FromStringAndSize(self.data + self.offsets[index] + JOURNAL_RECORD_HEAD, head[1])

    def __iter__(self):
        cdef Py_ssize_t index
        for index in range(self.count):
            yield self[index]
