# Part of _engine_c.pyx (included there): the orders overlay: a writer's order records packed in one buffer.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- the orders overlay: PackedOrders -------------------------------------------------

cdef enum:
    ORDER_RECORD_HEAD = 8  # per record: u32 key size, u32 value size (native order), then key, value
    ORDER_ROOM_PER_RECORD = ORDER_RECORD_HEAD + 16 + ORDER_HEAD_SIZE + 4  # an id of 16 bytes
    ORDER_SLOTS_MIN = 1024  # a power of two


cdef extern from *:
    """
    /* The key of an order id, rewritten into one of two bytes objects of `room` bytes when only
       the pool holds it (nobody can see it change; 3.11-3.12 layout, as pl_seq_key): a purchase
       whose key does not outlive it (sequential ids: the last key is kept as the batch's largest,
       hence two) allocates none. Else a new bytes object of its size. */
    static PyObject *pl_order_key(PyObject **pool, const char *data, Py_ssize_t size, Py_ssize_t room) {
    #if PY_VERSION_HEX < 0x030D0000
        PyObject *key = NULL;
        int index;
        if (size <= room) {
            for (index = 0; index < 2 && key == NULL; index++) {
                if (pool[index] == NULL && (pool[index] = PyBytes_FromStringAndSize(NULL, room)) == NULL)
                    return NULL;
                if (Py_REFCNT(pool[index]) == 1)
                    key = pool[index];
            }
        }
        if (key != NULL) {
            memcpy(PyBytes_AS_STRING(key), data, size);
            PyBytes_AS_STRING(key)[size] = 0;
            Py_SET_SIZE(key, size);
            ((PyBytesObject *)key)->ob_shash = -1;
            Py_INCREF(key);
            return key;
        }
    #endif
        return PyBytes_FromStringAndSize(data, size);
    }
    """
    object pl_order_key(PyObject** pool, const char* data, Py_ssize_t size, Py_ssize_t room)


cdef PyObject* _order_key_pool[2]  # pl_order_key's objects (owned), used with the GIL held


cdef bytes _order_key(object order_id):
    """_id_key(order_id, "order_id", ID_BYTES_MAX), in a reused bytes object when it can be."""
    cdef Py_ssize_t size
    cdef const char* data
    if PyUnicode_CheckExact(order_id):
        data = PyUnicode_AsUTF8AndSize(order_id, &size)
        if data == NULL:
            PyErr_Clear()
        elif _clean_id(data, size, ID_BYTES_MAX):
            return pl_order_key(_order_key_pool, data, size, ID_BYTES_MAX)
    return validate_id("order_id", order_id, ID_BYTES_MAX)


cdef struct OrderSlot:
    Py_hash_t hash  # of the key's bytes (CPython's bytes hash, as MemberCache)
    Py_ssize_t number  # the record's number + 1; 0: an empty slot


cdef inline void _put_order(unsigned char* p, int64_t amount_minor, int64_t time_s, int64_t seq,
                            int64_t code) noexcept:
    """store_format.encode_order(amount_minor, time_s, seq, 0, 0, code), written at p."""
    pl_put64(p, <uint64_t>amount_minor)
    pl_put64(p + 8, <uint64_t>time_s)
    pl_put64(p + 16, <uint64_t>seq)
    pl_put64(p + 24, 0)  # refunded so far
    pl_put64(p + 32, 0)  # clawed back so far
    p += ORDER_HEAD_SIZE
    if code >= NARROW_CODES:
        p[0] = <unsigned char>(code >> 24)
        p[1] = <unsigned char>(code >> 16)
        p += 2
    p[0] = <unsigned char>(code >> 8)
    p[1] = <unsigned char>code


cdef inline int _compare_keys(const char* a, Py_ssize_t a_size, const char* b, Py_ssize_t b_size) noexcept nogil:
    """LMDB's default key order: memcmp, then the shorter first."""
    cdef int order = memcmp(a, b, a_size if a_size < b_size else b_size)
    if order != 0:
        return order
    return -1 if a_size < b_size else (1 if a_size > b_size else 0)


cdef bytes _order_key_bytes(object key):
    """A key of the overlay: bytes (a bytes-like copied), as a dict of the writer takes them."""
    if PyBytes_CheckExact(key):
        return <bytes>key
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"order keys must be bytes, not {type(key).__name__}")


@cython.final
cdef class PackedOrders(PackedRecords):
    """writer.overlay[DB_ORDERS] under the Cython engine: order key (bytes) -> order record (bytes).

    A dict cost a purchase an entry insert, a bytes value (and its freeing after the write),
    and the flush a walk over it (its keys sorted, each value referenced). Here each order is a
    record appended to one buffer, as `_lmdb_batch.Records.add_packed` takes it (`u32 key size,
    u32 value size`, key, value), its value encoded in place. While the keys come in ascending
    order (a backfill's sequential ids) the buffer is already in key order: a key is found by
    binary search, a key after the last is appended without a lookup, and the buffer goes to the
    write as it is. The first key out of order (random ids, a refund's rewrite, a delete) builds
    a hash index of the records (open addressing, linear probing, deletion by backward shift),
    and the flush then copies the live records in key order into a new buffer
    (`packed_records`). The dict methods the writer, the twin's code, refunds and the what-if use
    are here too (get, [], in, len, del, clear, update, iteration, keys, values, items).
    """
    cdef Py_ssize_t* offsets  # of each record in data; -1: a dead record (deleted or rewritten elsewhere)
    cdef Py_ssize_t count  # records, dead ones included
    cdef Py_ssize_t offsets_capacity
    cdef Py_ssize_t live
    cdef bint ascending  # every record's key after the one before and none dead: data is in key order
    cdef OrderSlot* slots  # the hash index, NULL until a key comes out of order
    cdef Py_ssize_t mask  # slots' capacity - 1, a power of two

    def __cinit__(self, Py_ssize_t orders=0):
        """orders: how many orders to make room for (a batch's purchases), or 0."""
        self.ascending = True
        if orders > 0:
            self.room(orders * ORDER_ROOM_PER_RECORD)
            self.offsets = <Py_ssize_t*>malloc(orders * sizeof(Py_ssize_t))
            if self.offsets == NULL:
                raise MemoryError()
            self.offsets_capacity = orders

    def __dealloc__(self):
        free(self.offsets)
        free(self.slots)

    # --- records -------------------------------------------------------------------------

    cdef inline const char* record(self, Py_ssize_t number) noexcept:
        return self.data + self.offsets[number]

    cdef inline Py_ssize_t key_size(self, const char* record) noexcept:
        cdef uint32_t head[2]
        memcpy(head, record, ORDER_RECORD_HEAD)
        return head[0]

    cdef inline Py_ssize_t value_size(self, const char* record) noexcept:
        cdef uint32_t head[2]
        memcpy(head, record, ORDER_RECORD_HEAD)
        return head[1]

    cdef inline int compare(self, Py_ssize_t number, const char* key, Py_ssize_t size) noexcept:
        """The record's key against key: <0, 0, >0."""
        cdef const char* p = self.record(number)
        return _compare_keys(p + ORDER_RECORD_HEAD, self.key_size(p), key, size)

    cdef char* append(self, const char* key, Py_ssize_t size, Py_ssize_t value_size) except NULL:
        """A new record (not indexed here): returns where its value goes."""
        if size > 0xFFFFFFFF or value_size > 0xFFFFFFFF:
            raise ValueError("an order record larger than 4 GiB")
        cdef char* p = self.room(ORDER_RECORD_HEAD + size + value_size)
        cdef Py_ssize_t capacity
        if self.count == self.offsets_capacity:
            capacity = 2 * self.offsets_capacity if self.offsets_capacity else 1024
            offsets = <Py_ssize_t*>realloc(self.offsets, capacity * sizeof(Py_ssize_t))
            if offsets == NULL:
                raise MemoryError()
            self.offsets, self.offsets_capacity = offsets, capacity
        cdef uint32_t head[2]
        head[0], head[1] = <uint32_t>size, <uint32_t>value_size
        memcpy(p, head, ORDER_RECORD_HEAD)
        memcpy(p + ORDER_RECORD_HEAD, key, size)
        self.offsets[self.count] = self.size
        self.count += 1
        self.live += 1
        self.size += ORDER_RECORD_HEAD + size + value_size
        return p + ORDER_RECORD_HEAD + size

    # --- the index -----------------------------------------------------------------------

    cdef inline Py_ssize_t home(self, Py_hash_t hash) noexcept:
        return <Py_ssize_t>(<uint64_t>hash * 0x9E3779B97F4A7C15ULL >> 20) & self.mask

    cdef Py_ssize_t slot_of(self, const char* key, Py_ssize_t size, Py_hash_t hash) noexcept:
        """The slot holding the key, or the empty slot where it would go (-1 - index)."""
        cdef Py_ssize_t index = self.home(hash)
        cdef OrderSlot* slot
        cdef const char* p
        while True:
            slot = &self.slots[index]
            if slot.number == 0:
                return -1 - index
            if slot.hash == hash:
                p = self.record(slot.number - 1)
                if self.key_size(p) == size and memcmp(p + ORDER_RECORD_HEAD, key, size) == 0:
                    return index
            index = (index + 1) & self.mask

    cdef int index_records(self, Py_ssize_t capacity) except -1:
        """(Re)build the index of the live records with `capacity` slots (a power of two)."""
        cdef OrderSlot* slots = <OrderSlot*>calloc(capacity, sizeof(OrderSlot))
        cdef Py_ssize_t number, index
        cdef const char* p
        cdef Py_hash_t hash
        if slots == NULL:
            raise MemoryError()
        free(self.slots)
        self.slots, self.mask = slots, capacity - 1
        for number in range(self.count):
            if self.offsets[number] < 0:
                continue
            p = self.record(number)
            hash = _Py_HashBytes(p + ORDER_RECORD_HEAD, self.key_size(p))
            index = self.home(hash)
            while self.slots[index].number != 0:
                index = (index + 1) & self.mask
            self.slots[index].hash, self.slots[index].number = hash, number + 1
        return 0

    cdef int unordered(self) except -1:
        """From now on the buffer is not in key order: index every record."""
        cdef Py_ssize_t capacity = ORDER_SLOTS_MIN
        self.ascending = False
        if self.slots == NULL:
            while capacity < 2 * (self.live + 1):
                capacity *= 2
            self.index_records(capacity)
        return 0

    cdef int add_slot(self, Py_ssize_t empty, Py_hash_t hash, Py_ssize_t number) except -1:
        """Record `number` into the empty slot found by slot_of (-1 - index); the index grows at half full."""
        self.slots[-1 - empty].hash, self.slots[-1 - empty].number = hash, number + 1
        if 2 * self.live > self.mask + 1:
            self.index_records(2 * (self.mask + 1))
        return 0

    cdef void remove_slot(self, Py_ssize_t index) noexcept:
        """Empty the slot, shifting back the ones after it that would no longer be found."""
        cdef Py_ssize_t next_index = index, wanted
        while True:
            next_index = (next_index + 1) & self.mask
            if self.slots[next_index].number == 0:
                break
            wanted = self.home(self.slots[next_index].hash)
            # The entry stays if its home lies cyclically in (index, next_index].
            if (index <= next_index and index < wanted <= next_index) or (
                    index > next_index and (wanted > index or wanted <= next_index)):
                continue
            self.slots[index] = self.slots[next_index]
            index = next_index
        self.slots[index].number = 0

    # --- lookups and changes ---------------------------------------------------------------

    cdef Py_ssize_t find(self, const char* key, Py_ssize_t size, Py_hash_t hash) noexcept:
        """The record number of the key, or -1; hash: the key's, or -1 (computed if needed)."""
        cdef Py_ssize_t low, high, middle
        cdef int order
        if self.slots != NULL:
            middle = self.slot_of(key, size, hash if hash != -1 else _Py_HashBytes(key, size))
            return self.slots[middle].number - 1 if middle >= 0 else -1
        # In key order, none dead: a binary search (the last record first: sequential ids).
        if self.count == 0 or self.compare(self.count - 1, key, size) < 0:
            return -1
        low, high = 0, self.count - 1
        while low <= high:
            middle = (low + high) // 2
            order = self.compare(middle, key, size)
            if order == 0:
                return middle
            if order < 0:
                low = middle + 1
            else:
                high = middle - 1
        return -1

    cdef object get_value(self, const char* key, Py_ssize_t size, Py_hash_t hash):
        """The order's record as bytes, or None: made only for an order found (a duplicate)."""
        cdef Py_ssize_t number = self.find(key, size, hash)
        if number < 0:
            return None
        cdef const char* p = self.record(number)
        return PyBytes_FromStringAndSize(p + ORDER_RECORD_HEAD + self.key_size(p), self.value_size(p))

    cdef char* put(self, const char* key, Py_ssize_t size, Py_hash_t hash, Py_ssize_t value_size) except NULL:
        """Where the key's value of `value_size` bytes goes: its record rewritten in place, or a new
        one; hash: the key's, or -1 (computed if needed)."""
        cdef Py_ssize_t number, index
        cdef char* p
        if self.exports:
            raise BufferError("the orders are being written: none can change")
        if self.slots == NULL:
            if self.count == 0 or self.compare(self.count - 1, key, size) < 0:
                return self.append(key, size, value_size)  # in key order still: no lookup
            number = self.find(key, size, -1)
            if number >= 0 and self.value_size(self.record(number)) == value_size:
                p = <char*>self.record(number)
                return p + ORDER_RECORD_HEAD + size
            self.unordered()
        if hash == -1:
            hash = _Py_HashBytes(key, size)
        index = self.slot_of(key, size, hash)
        if index >= 0:
            number = self.slots[index].number - 1
            p = <char*>self.record(number)
            if self.value_size(p) == value_size:
                return p + ORDER_RECORD_HEAD + size
            # Another size (a category code grown to four bytes): the record moves to the end.
            self.offsets[number] = -1
            self.live -= 1
            self.ascending = False
            p = self.append(key, size, value_size)
            self.slots[index].number = self.count
            return p
        p = self.append(key, size, value_size)
        self.add_slot(index, hash, self.count - 1)
        return p

    cdef object get_order(self, bytes key):
        """get_value for a bytes key: its hash is the one the bytes object caches."""
        return self.get_value(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), hash(key) if self.slots != NULL else -1)

    cdef int put_order(self, bytes key, int64_t amount_minor, int64_t time_s, int64_t seq, int64_t code) except -1:
        """The record fmt.encode_order(amount_minor, time_s, seq, 0, 0, code) of the key, encoded in place."""
        cdef char* p = self.put(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), hash(key) if self.slots != NULL else -1,
                                ORDER_HEAD_SIZE + (2 if code < NARROW_CODES else 4))
        _put_order(<unsigned char*>p, amount_minor, time_s, seq, code)
        return 0

    cdef int delete(self, const char* key, Py_ssize_t size) except -1:
        """Remove the key's record: 1, or 0 when absent."""
        if self.exports:
            raise BufferError("the orders are being written: none can change")
        if self.find(key, size, -1) < 0:
            return 0
        self.unordered()
        cdef Py_ssize_t index = self.slot_of(key, size, _Py_HashBytes(key, size))
        self.offsets[self.slots[index].number - 1] = -1
        self.live -= 1
        self.remove_slot(index)
        return 1

    # --- for the flush -------------------------------------------------------------------------

    cdef bytes key_at(self, Py_ssize_t number):
        cdef const char* p = self.record(number)
        return PyBytes_FromStringAndSize(p + ORDER_RECORD_HEAD, self.key_size(p))

    def packed_records(self):
        """(buffer, count, first key, last key): the live records in key order, packed for
        `Records.add_packed`. In key order already, the buffer is this one (it cannot change
        while the write holds it); else the records are copied into a new one, sorted as the
        member records are (_sort_items)."""
        cdef Py_ssize_t number, index = 0, byte, key_size, record_size
        cdef const char* p
        cdef KeyedItem* array
        cdef PackedRecords packed
        if self.live == 0:
            return self, 0, None, None
        if self.ascending:
            return self, self.live, self.key_at(0), self.key_at(self.count - 1)
        array = <KeyedItem*>malloc(self.live * sizeof(KeyedItem))
        if array == NULL:
            raise MemoryError()
        try:
            for number in range(self.count):
                if self.offsets[number] < 0:
                    continue
                p = self.record(number)
                key_size = self.key_size(p)
                array[index].data = p + ORDER_RECORD_HEAD
                array[index].size = key_size
                array[index].key = NULL
                array[index].value = NULL
                array[index].prefix = 0
                for byte in range(8):
                    array[index].prefix <<= 8
                    if byte < key_size:
                        array[index].prefix |= <unsigned char>array[index].data[byte]
                index += 1
            _sort_items(array, self.live)
            packed = PackedRecords.__new__(PackedRecords)
            packed.room(self.size)
            for index in range(self.live):
                p = array[index].data - ORDER_RECORD_HEAD
                record_size = ORDER_RECORD_HEAD + array[index].size + self.value_size(p)
                memcpy(packed.data + packed.size, p, record_size)
                packed.size += record_size
            first_key = PyBytes_FromStringAndSize(array[0].data, array[0].size)
            last_key = PyBytes_FromStringAndSize(array[self.live - 1].data, array[self.live - 1].size)
        finally:
            free(array)
        return packed, self.live, first_key, last_key

    # --- the dict methods ------------------------------------------------------------------------

    def __len__(self):
        return self.live

    def __contains__(self, key):
        key = _order_key_bytes(key)
        return self.find(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), -1) >= 0

    def get(self, key, default=None):
        key = _order_key_bytes(key)
        value = self.get_value(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), -1)
        return default if value is None else value

    def __getitem__(self, key):
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        key = _order_key_bytes(key)
        cdef const unsigned char[::1] view = value
        cdef Py_ssize_t size = view.shape[0]
        cdef char* p = self.put(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), -1, size)
        if size:
            memcpy(p, &view[0], size)

    def __delitem__(self, key):
        key = _order_key_bytes(key)
        if not self.delete(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)):
            raise KeyError(key)

    def update(self, other=(), **kwargs):
        if kwargs:
            raise TypeError("order keys must be bytes")
        pairs = other.items() if hasattr(other, "items") else other
        for key, value in pairs:
            self[key] = value

    def clear(self):
        if self.exports:
            raise BufferError("the orders are being written: none can change")
        free(self.slots)
        self.slots = NULL
        self.mask = 0
        self.size = self.count = self.live = 0
        self.ascending = True

    def __iter__(self):
        """The keys in the order they were first put (a dict's order, rewrites aside)."""
        cdef Py_ssize_t number
        for number in range(self.count):
            if self.offsets[number] >= 0:
                yield self.key_at(number)

    def keys(self):
        return list(self)

    def values(self):
        return [value for _, value in self.items()]

    def items(self):
        cdef Py_ssize_t number
        cdef const char* p
        cdef list pairs = []
        for number in range(self.count):
            if self.offsets[number] >= 0:
                p = self.record(number)
                pairs.append((self.key_at(number),
                              PyBytes_FromStringAndSize(p + ORDER_RECORD_HEAD + self.key_size(p), self.value_size(p))))
        return pairs
