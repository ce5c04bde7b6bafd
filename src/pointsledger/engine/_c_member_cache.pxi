# Part of _engine_c.pyx (included there): the member cache: an open-addressing index over the member keys.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- the member cache: an open-addressing index over the member keys -------------------

cdef enum:
    CACHE_SLOTS_MIN = 1024  # a power of two


cdef extern from "Python.h":
    Py_hash_t _Py_HashBytes(const void* data, Py_ssize_t size)


cdef struct CacheSlot:
    # 32 bytes, two to a cache line. A probe reads the slot only: the hash's low
    # half, the size and the key's first 8 bytes (all of a key up to 8 bytes) are
    # inline, so the key object is touched only for longer keys that match so far.
    uint32_t hash_low
    uint32_t size
    char head[8]
    PyObject* key  # owned bytes; NULL: an empty slot
    PyObject* value  # owned


cdef inline void _key_head(const char* data, Py_ssize_t size, char* head) noexcept nogil:
    memset(head, 0, 8)
    memcpy(head, data, size if size < 8 else 8)


@cython.final
cdef class MemberCache:
    """store.member_cache for the Cython engine: member key (bytes) -> MemberState.

    A dict of 100,000 members costs three dependent cache misses per lookup
    (its index, its entry, the key object) and a new bytes key per purchase to
    ask with. This table is probed with the id's bytes as they are (the hash is
    CPython's own bytes hash, so hash(key) agrees and hash flooding is as hard as
    for a dict): one miss for the slot, then the state; and a member found hands
    back the cached key object, so a purchase of a known member allocates no key.
    The dict methods the writer, the store and the twin use are here too.
    """
    cdef CacheSlot* slots
    cdef Py_ssize_t mask  # capacity - 1, capacity a power of two
    cdef Py_ssize_t used

    def __cinit__(self):
        self.slots = <CacheSlot*>calloc(CACHE_SLOTS_MIN, sizeof(CacheSlot))
        if self.slots == NULL:
            raise MemoryError()
        self.mask = CACHE_SLOTS_MIN - 1
        self.used = 0

    def __dealloc__(self):
        self._release()
        free(self.slots)

    cdef void _release(self) noexcept:
        cdef Py_ssize_t index
        for index in range(self.mask + 1):
            if self.slots[index].key != NULL:
                Py_XDECREF(self.slots[index].key)
                Py_XDECREF(self.slots[index].value)
                self.slots[index].key = NULL
                self.slots[index].value = NULL
        self.used = 0

    cdef inline Py_ssize_t home(self, Py_hash_t hash) noexcept nogil:
        return <Py_ssize_t>(<uint64_t>hash * 0x9E3779B97F4A7C15ULL >> 20) & self.mask

    cdef inline CacheSlot* slot_of(self, Py_hash_t hash) noexcept nogil:
        """The slot a probe starts at: to prefetch ahead of find."""
        return &self.slots[self.home(hash)]

    cdef inline Py_ssize_t index_of(self, const char* data, Py_ssize_t size, Py_hash_t hash) noexcept:
        """The slot holding the key, or the empty slot where it would go (-1 - index)."""
        cdef Py_ssize_t index = self.home(hash)
        cdef CacheSlot* slot
        cdef char head[8]
        _key_head(data, size, head)
        while True:
            slot = &self.slots[index]
            if slot.key == NULL:
                return -1 - index
            if (slot.hash_low == <uint32_t>hash and slot.size == <uint32_t>size
                    and memcmp(slot.head, head, 8) == 0
                    and (size <= 8 or memcmp(PyBytes_AS_STRING(<object>slot.key) + 8, data + 8, size - 8) == 0)):
                return index
            index = (index + 1) & self.mask

    cdef inline CacheSlot* find(self, const char* data, Py_ssize_t size, Py_hash_t hash) noexcept:
        cdef Py_ssize_t index = self.index_of(data, size, hash)
        return &self.slots[index] if index >= 0 else NULL

    cdef inline CacheSlot* find_key(self, bytes key) except? NULL:
        return self.find(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), hash(key))

    cdef int _grow(self) except -1:
        cdef Py_ssize_t old_capacity = self.mask + 1
        cdef CacheSlot* old = self.slots
        cdef CacheSlot* grown = <CacheSlot*>calloc(old_capacity * 2, sizeof(CacheSlot))
        cdef Py_ssize_t index, target
        if grown == NULL:
            raise MemoryError()
        self.slots = grown
        self.mask = old_capacity * 2 - 1
        for index in range(old_capacity):
            if old[index].key != NULL:
                target = self.home(hash(<object>old[index].key))
                while self.slots[target].key != NULL:
                    target = (target + 1) & self.mask
                self.slots[target] = old[index]
        free(old)
        return 0

    cdef int put(self, bytes key, object value) except -1:
        cdef Py_ssize_t size = PyBytes_GET_SIZE(key)
        cdef Py_hash_t key_hash = hash(key)
        cdef Py_ssize_t index = self.index_of(PyBytes_AS_STRING(key), size, key_hash)
        cdef CacheSlot* slot
        cdef PyObject* old
        if index >= 0:
            slot = &self.slots[index]
            old = slot.value
            Py_INCREF(value)
            slot.value = <PyObject*>value
            Py_XDECREF(old)
            return 0
        if (self.used + 1) * 2 > self.mask + 1:  # at most half full: probes stay short
            self._grow()
            index = self.index_of(PyBytes_AS_STRING(key), size, key_hash)
        slot = &self.slots[-1 - index]
        slot.hash_low = <uint32_t>key_hash
        slot.size = <uint32_t>size
        _key_head(PyBytes_AS_STRING(key), size, slot.head)
        Py_INCREF(key)
        Py_INCREF(value)
        slot.key = <PyObject*>key
        slot.value = <PyObject*>value
        self.used += 1
        return 0

    cdef int remove(self, Py_ssize_t index) except -1:
        """Empty slot `index`, moving later slots of its probe run back (no tombstones)."""
        cdef PyObject* key = self.slots[index].key
        cdef PyObject* value = self.slots[index].value
        cdef Py_ssize_t hole = index, scan = index, home
        while True:
            scan = (scan + 1) & self.mask
            if self.slots[scan].key == NULL:
                break
            home = self.home(hash(<object>self.slots[scan].key))
            # Move it into the hole unless its home lies cyclically in (hole, scan].
            if ((scan - home) & self.mask) >= ((scan - hole) & self.mask):
                self.slots[hole] = self.slots[scan]
                hole = scan
        self.slots[hole].key = NULL
        self.slots[hole].value = NULL
        self.used -= 1
        Py_XDECREF(key)
        Py_XDECREF(value)
        return 0

    # --- the dict methods --------------------------------------------------------------

    @staticmethod
    cdef bytes _as_key(object key):
        if PyBytes_CheckExact(key):
            return <bytes>key
        if isinstance(key, (bytes, bytearray, memoryview)):
            return bytes(key)
        raise TypeError(f"member keys are bytes, not {type(key).__name__}")

    def __len__(self):
        return self.used

    def __contains__(self, key):
        return self.find_key(MemberCache._as_key(key)) != NULL

    def __getitem__(self, key):
        cdef CacheSlot* slot = self.find_key(MemberCache._as_key(key))
        if slot == NULL:
            raise KeyError(key)
        return <object>slot.value

    def get(self, key, default=None):
        cdef CacheSlot* slot = self.find_key(MemberCache._as_key(key))
        return default if slot == NULL else <object>slot.value

    def __setitem__(self, key, value):
        self.put(MemberCache._as_key(key), value)

    def __delitem__(self, key):
        cdef bytes as_key = MemberCache._as_key(key)
        cdef Py_ssize_t index = self.index_of(PyBytes_AS_STRING(as_key), PyBytes_GET_SIZE(as_key), hash(as_key))
        if index < 0:
            raise KeyError(key)
        self.remove(index)

    def update(self, other):
        for key, value in (other.items() if hasattr(other, "items") else other):
            self[key] = value

    def clear(self):
        cdef CacheSlot* fresh
        self._release()
        if self.mask + 1 > CACHE_SLOTS_MIN:
            fresh = <CacheSlot*>calloc(CACHE_SLOTS_MIN, sizeof(CacheSlot))
            if fresh != NULL:
                free(self.slots)
                self.slots = fresh
                self.mask = CACHE_SLOTS_MIN - 1

    def items(self):
        """A list of (key, value): changing the cache while going through it is safe."""
        cdef Py_ssize_t index
        return [(<object>self.slots[index].key, <object>self.slots[index].value)
                for index in range(self.mask + 1) if self.slots[index].key != NULL]

    def keys(self):
        return [key for key, _ in self.items()]

    def values(self):
        return [value for _, value in self.items()]

    def __iter__(self):
        return iter(self.keys())
