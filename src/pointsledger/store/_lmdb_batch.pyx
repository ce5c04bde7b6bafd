# cython: language_level=3, boundscheck=False, wraparound=False
"""A batch of puts into the current py-lmdb write transaction with ONE release of the GIL.

`Records` holds a flush's records, one segment per sub-database: the member records
copied into one C buffer as the engine encodes them (its member states change with the
next batch), the journal and the overlays (orders, ...) as pointers into their bytes.
`Records.put` sorts what needs sorting and writes them all in one `with nogil:` loop of
`mdb_cursor_put` (a cursor per sub-database, as putmulti), then the GIL is taken again once.

py-lmdb has no C API: the loop calls liblmdb through py-lmdb's own engine vtable (the
`libv` of the transaction, `struct MdbApi`), so the MDB_txn is only ever touched by the
copy of LMDB that made it (py-lmdb 3.0.0 bundles two, symbols renamed). The vtable and the
MDB_txn* are read from 3.0.0's private TransObject (pylmdb_abi.h); `_bind` checks every
field used against a public fact first, and any mismatch raises Unsupported, on which the
caller writes the same records with putmulti (`Records.pairs`). See docs/design.md,
*Two cores for the backfill*.
"""

from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free, qsort
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize, PyBytes_CheckExact
from cpython.dict cimport PyDict_Next
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject

import lmdb
import lmdb.cpython

cdef extern from "dlfcn.h" nogil:
    void *dlopen(const char *filename, int flags)
    void *dlsym(void *handle, const char *symbol)
    int RTLD_NOW
    int RTLD_NOLOAD

cdef extern from "pylmdb_abi.h" nogil:
    ctypedef unsigned int MDB_dbi
    ctypedef struct MDB_txn:
        pass
    ctypedef struct MDB_cursor:
        pass
    ctypedef struct MDB_val:
        size_t mv_size
        void *mv_data
    ctypedef struct MdbApi:
        size_t (*txn_id)(MDB_txn *txn) noexcept nogil
        int (*dbi_open)(MDB_txn *txn, const char *name, unsigned int flags, MDB_dbi *dbi) noexcept nogil
        int (*put)(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags) noexcept nogil
        int (*cursor_open)(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cursor) noexcept nogil
        void (*cursor_close)(MDB_cursor *cursor) noexcept nogil
        int (*cursor_put)(MDB_cursor *cursor, MDB_val *key, MDB_val *data, unsigned int flags) noexcept nogil
        char *(*strerror_fn)(int err) noexcept nogil
    ctypedef struct PlTransObject:
        int valid
        void *env
        void *parent
        const MdbApi *libv
        MDB_txn *txn
        int flags
        int mutations

SUPPORTED_VERSION = "3.0.0"  # the one py-lmdb whose TransObject pylmdb_abi.h copies
MDB_NOOVERWRITE = 0x10
MDB_APPEND = 0x20000
MDB_KEYEXIST = -30799
cdef enum:
    PACKED_OVERRUN = -1  # not an LMDB code: a packed segment's records do not fill its buffer exactly (a bug)
PACKED_OVERRUN_RC = PACKED_OVERRUN
cdef int TRANS_RDONLY = 2
cdef size_t HEAD = 8  # per record: key size, value size (u32 each, native order)
cdef Py_ssize_t GIL_EVERY = 512  # add_items lets the GIL go after this many records


class Unsupported(RuntimeError):
    """The installed py-lmdb is not the one this module reads the private layout of."""


cdef const MdbApi* _ENGINES[2]
_ENGINES_ERROR = None


cdef int _find_engines() except -1:
    """The two vtables py-lmdb 3.0.0's extension exports (its only LMDB symbols)."""
    global _ENGINES_ERROR
    handle = dlopen(lmdb.cpython.__file__.encode(), RTLD_NOW | RTLD_NOLOAD)
    if handle == NULL:
        _ENGINES_ERROR = "py-lmdb's extension is not loaded"
        return 0
    _ENGINES[0] = <const MdbApi*>dlsym(handle, b"lmdb_api_v09")
    _ENGINES[1] = <const MdbApi*>dlsym(handle, b"lmdb_api_v10")
    if _ENGINES[0] == NULL or _ENGINES[1] == NULL:
        _ENGINES_ERROR = "py-lmdb's extension exports no lmdb_api_v09/lmdb_api_v10"
    return 0


_find_engines()


cdef PlTransObject* _bind(txn, env) except NULL:
    """The TransObject of a live write transaction, once its layout is proven; else Unsupported."""
    if lmdb.__version__ != SUPPORTED_VERSION or type(txn) is not lmdb.cpython.Transaction:
        raise Unsupported(f"needs py-lmdb {SUPPORTED_VERSION}'s CPython extension, "
                          f"got {lmdb.__version__} {type(txn).__name__}")
    if _ENGINES_ERROR is not None:
        raise Unsupported(_ENGINES_ERROR)
    cdef PlTransObject* t = <PlTransObject*><PyObject*>txn
    # Every private field used must agree with a public fact before any is trusted;
    # libv is checked against the two vtables before it is called (txn_id).
    if (t.env != <void*><PyObject*>env or t.valid != 1 or t.parent != NULL
            or (t.libv != _ENGINES[0] and t.libv != _ENGINES[1])
            or t.txn == NULL or t.flags & TRANS_RDONLY):
        raise Unsupported("py-lmdb's Transaction layout is not the one this was built for")
    if t.libv.txn_id(t.txn) != txn.id():
        raise Unsupported("py-lmdb's Transaction layout is not the one this was built for (txn id)")
    return t


def check(txn, env):
    """Raise Unsupported unless `put` can write into this write transaction."""
    _bind(txn, env)


cdef struct Ref:
    const char* key
    size_t key_size
    const char* value
    size_t value_size


cdef enum:
    PACKED = 0  # records copied into Records.data, or packed by the caller in a buffer Records keeps alive
    REFS = 1  # pointers into bytes objects Records keeps alive (the journal, an overlay dict)


cdef struct Segment:
    int kind
    const char* base  # PACKED: the caller's buffer (add_packed), or NULL for Records.data
    size_t start  # PACKED: the records in base[start:end] (data[start:end])
    size_t end
    Ref* refs  # REFS: count of them; keys NULL for a journal (seq keys from first_seq)
    bint sort  # REFS: sort in LMDB key order before the puts (without the GIL, in put)
    uint64_t first_seq
    Py_ssize_t count
    MDB_dbi dbi


cdef int _compare_refs(const void* left, const void* right) noexcept nogil:
    """LMDB's default key order: memcmp, then the shorter first."""
    cdef const Ref* a = <const Ref*>left
    cdef const Ref* b = <const Ref*>right
    cdef size_t common = a.key_size if a.key_size < b.key_size else b.key_size
    cdef int order = memcmp(a.key, b.key, common)
    if order != 0:
        return order
    return -1 if a.key_size < b.key_size else (1 if a.key_size > b.key_size else 0)


cdef inline void _seq_key(unsigned char* key, uint64_t seq) noexcept nogil:
    cdef int byte
    for byte in range(8):
        key[byte] = <unsigned char>(seq >> (56 - 8 * byte))


cdef class Records:
    """The records of one flush, a segment per sub-database: packed copies, or references to
    the bytes of the writer's journal list and overlay dicts, which must not change until
    `put` has returned (the writer does not touch them after encode_records)."""
    cdef char* data
    cdef size_t size
    cdef size_t capacity
    cdef Segment* segments
    cdef Py_ssize_t segment_count
    cdef Py_ssize_t segment_capacity
    cdef list names  # the sub-database name of each segment
    cdef list owners  # what REFS segments point into, kept alive

    def __cinit__(self):
        self.names = []
        self.owners = []

    def __dealloc__(self):
        cdef Py_ssize_t index
        for index in range(self.segment_count):
            free(self.segments[index].refs)
        free(self.data)
        free(self.segments)

    def __len__(self):
        return self.segment_count

    cdef int _reserve(self, size_t more) except -1:
        cdef size_t capacity = self.capacity if self.capacity else 1 << 16
        while capacity < self.size + more:
            capacity *= 2
        if capacity != self.capacity:
            grown = <char*>realloc(self.data, capacity)
            if grown == NULL:
                raise MemoryError()
            self.data, self.capacity = grown, capacity
        return 0

    cdef Segment* _open(self, name, int kind) except NULL:
        if self.segment_count == self.segment_capacity:
            capacity = self.segment_capacity * 2 if self.segment_capacity else 8
            grown = <Segment*>realloc(self.segments, capacity * sizeof(Segment))
            if grown == NULL:
                raise MemoryError()
            self.segments, self.segment_capacity = grown, capacity
        cdef Segment* segment = &self.segments[self.segment_count]
        segment.kind = kind
        segment.base = NULL
        segment.start = segment.end = self.size
        segment.refs = NULL
        segment.sort = False
        segment.first_seq = 0
        segment.count = 0
        segment.dbi = 0
        self.segment_count += 1
        self.names.append(bytes(name))
        return segment

    cdef inline int _add(self, const char* key, size_t key_size, const char* value, size_t value_size) except -1:
        if key_size > 0xFFFFFFFF or value_size > 0xFFFFFFFF:
            raise ValueError("a record larger than 4 GiB")
        self._reserve(HEAD + key_size + value_size)
        cdef uint32_t head[2]
        head[0], head[1] = <uint32_t>key_size, <uint32_t>value_size
        cdef char* p = self.data + self.size
        memcpy(p, head, HEAD)
        memcpy(p + HEAD, key, key_size)
        memcpy(p + HEAD + key_size, value, value_size)
        self.size += HEAD + key_size + value_size
        return 0

    cdef bytes _owned_bytes(self, value):
        """value as an exact bytes object, kept alive by this Records."""
        if PyBytes_CheckExact(value):
            return <bytes>value
        value = bytes(value)
        self.owners.append(value)
        return value

    def add_journal(self, name, int64_t first_seq, list values):
        """Journal records: big-endian u64 seq keys from first_seq, the values in order (referenced)."""
        cdef Py_ssize_t index, count = PyList_GET_SIZE(values)
        cdef Ref* refs = <Ref*>malloc((count if count else 1) * sizeof(Ref))
        if refs == NULL:
            raise MemoryError()
        cdef Segment* segment = self._open(name, REFS)
        segment.refs = refs
        segment.first_seq = <uint64_t>first_seq
        self.owners.append(values)
        for index in range(count):
            value = self._owned_bytes(<object>PyList_GET_ITEM(values, index))
            refs[index].key = NULL
            refs[index].key_size = 8
            refs[index].value = PyBytes_AS_STRING(value)
            refs[index].value_size = PyBytes_GET_SIZE(value)
        segment.count = count
        return count

    def add_dict(self, name, dict changes):
        """A bytes-keyed overlay's records, referenced, sorted in key order when put; returns
        (count, smallest key, largest key)."""
        cdef Py_ssize_t count = len(changes), index = 0, position = 0
        cdef PyObject* key
        cdef PyObject* value
        cdef Ref* refs = <Ref*>malloc((count if count else 1) * sizeof(Ref))
        if refs == NULL:
            raise MemoryError()
        cdef Segment* segment = self._open(name, REFS)
        segment.refs = refs
        self.owners.append(changes)
        cdef Ref* low = NULL
        cdef Ref* high = NULL
        cdef bint ascending = True
        while PyDict_Next(changes, &position, &key, &value):
            if not PyBytes_CheckExact(<object>key):
                raise TypeError(f"keys must be bytes, not {type(<object>key).__name__}")
            owned = self._owned_bytes(<object>value)
            refs[index].key = PyBytes_AS_STRING(<object>key)
            refs[index].key_size = PyBytes_GET_SIZE(<object>key)
            refs[index].value = PyBytes_AS_STRING(owned)
            refs[index].value_size = PyBytes_GET_SIZE(owned)
            if low == NULL or _compare_refs(&refs[index], low) < 0:
                low = &refs[index]
            if high == NULL or _compare_refs(&refs[index], high) > 0:
                high = &refs[index]
            if index and ascending and _compare_refs(&refs[index - 1], &refs[index]) >= 0:
                ascending = False
            index += 1
            segment.count = index
        segment.sort = not ascending
        if low == NULL:
            return 0, None, None
        return (count, PyBytes_FromStringAndSize(low.key, low.key_size),
                PyBytes_FromStringAndSize(high.key, high.key_size))

    def add_items(self, name, items):
        """(key, value) pairs from any iterable (the engines' flush iterators), in its order,
        copied; returns (count, first key, last key)."""
        self._open(name, PACKED)
        cdef Py_ssize_t count = 0
        first = last = None
        for key, value in items:
            if not PyBytes_CheckExact(key):
                key = bytes(key)
            if not PyBytes_CheckExact(value):
                value = bytes(value)
            self._add(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                      PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
            if count == 0:
                first = key
            last = key
            count += 1
            if count % GIL_EVERY == 0:
                # A pipeline's writer thread may be waiting for the GIL (the member records
                # of a batch take ~20 ms to encode): let it go now and then.
                with nogil:
                    pass
        cdef Segment* segment = &self.segments[self.segment_count - 1]
        segment.end = self.size
        segment.count = count
        return count, first, last

    def add_packed(self, name, packed, Py_ssize_t count):
        """`count` records the caller packed in one buffer (engine.pack_members, the C engine's
        journal), in key order, each `u32 key size, u32 value size` (native order), key, value:
        referenced, not copied. The buffer is kept, and exported (a bytearray or the journal
        cannot grow while referenced); `pairs` and `put` check each record lies inside it.
        Returns count."""
        cdef const unsigned char[::1] view = packed
        cdef Segment* segment = self._open(name, PACKED)
        self.owners.append(view)
        if view.shape[0]:
            segment.base = <const char*>&view[0]
            segment.start, segment.end = 0, view.shape[0]
        segment.count = count
        return count

    def name(self, Py_ssize_t index):
        return self.names[index]

    def count(self, Py_ssize_t index):
        return self.segments[index].count

    def pairs(self, Py_ssize_t index):
        """Segment `index` as a list of (key, value) in key order: putmulti's input, the same
        bytes `put` writes."""
        cdef Segment* segment = &self.segments[index]
        cdef const char* base = segment.base if segment.base != NULL else self.data
        cdef const char* p = base + segment.start
        cdef const char* end = base + segment.end
        cdef uint32_t head[2]
        cdef unsigned char key[8]
        cdef list pairs = []
        cdef Py_ssize_t item
        if segment.kind == REFS:
            _sort(segment)
            for item in range(segment.count):
                if segment.refs[item].key == NULL:
                    _seq_key(key, segment.first_seq + <uint64_t>item)
                    key_bytes = PyBytes_FromStringAndSize(<const char*>key, 8)
                else:
                    key_bytes = PyBytes_FromStringAndSize(segment.refs[item].key, segment.refs[item].key_size)
                pairs.append((key_bytes, PyBytes_FromStringAndSize(segment.refs[item].value,
                                                                   segment.refs[item].value_size)))
            return pairs
        while p < end:
            if not _record_inside(p, end):
                raise ValueError(f"segment {index}: a packed record runs past the end of its buffer")
            memcpy(head, p, HEAD)
            pairs.append((PyBytes_FromStringAndSize(p + HEAD, head[0]),
                          PyBytes_FromStringAndSize(p + HEAD + head[0], head[1])))
            p += HEAD + head[0] + head[1]
        if len(pairs) != segment.count:
            raise ValueError(f"segment {index}: {len(pairs)} packed records, not {segment.count}")
        return pairs

    def put(self, txn, env, flags):
        """Write every segment into txn (env's live write transaction), segment i with
        flags[i] (MDB_APPEND, MDB_NOOVERWRITE), the GIL released once for all of them
        (the sort of an unsorted overlay included).

        Returns None, or (segment, LMDB error code, records of that segment written) for
        the first put that failed (the caller aborts the transaction). Raises Unsupported
        before writing anything when the transaction's layout is not the expected one.
        """
        cdef PlTransObject* t = _bind(txn, env)
        cdef const MdbApi* api = t.libv
        cdef MDB_txn* mtxn = t.txn
        cdef Py_ssize_t index
        cdef unsigned int* segment_flags = <unsigned int*>malloc((self.segment_count + 1) * sizeof(unsigned int))
        if segment_flags == NULL:
            raise MemoryError()
        cdef int rc = 0
        cdef Py_ssize_t failed = -1, done = 0, written = 0
        try:
            if len(flags) != self.segment_count:
                raise ValueError(f"{len(flags)} flags for {self.segment_count} segments")
            for index in range(self.segment_count):
                segment_flags[index] = flags[index]
                name = <bytes>self.names[index]
                rc = api.dbi_open(mtxn, <const char*>name, 0, &self.segments[index].dbi)
                if rc:
                    return index, rc, 0
            with nogil:
                for index in range(self.segment_count):
                    done = 0
                    rc = _put_segment(api, mtxn, self.data, &self.segments[index], segment_flags[index], &done)
                    written += done
                    if rc:
                        failed = index
                        break
        finally:
            free(segment_flags)
        # Open py-lmdb cursors of this transaction re-seek after a change they did not make.
        t.mutations += <int>written
        if rc:
            return failed, rc, done
        return None


cdef void _sort(Segment* segment) noexcept nogil:
    if segment.sort:
        qsort(segment.refs, segment.count, sizeof(Ref), _compare_refs)
        segment.sort = False


cdef int _put_segment(const MdbApi* api, MDB_txn* mtxn, const char* data, Segment* segment,
                      unsigned int flags, Py_ssize_t* done) noexcept nogil:
    """One cursor for the segment, as putmulti: sorted keys mostly land on the page the cursor
    is on, where LMDB skips the descent from the root a fresh mdb_put would make."""
    cdef MDB_cursor* cursor = NULL
    cdef int rc = api.cursor_open(mtxn, segment.dbi, &cursor)
    if rc:
        return rc
    rc = _put_with(api, cursor, data, segment, flags, done)
    api.cursor_close(cursor)
    return rc


cdef int _put_with(const MdbApi* api, MDB_cursor* cursor, const char* data, Segment* segment,
                   unsigned int flags, Py_ssize_t* done) noexcept nogil:
    cdef MDB_val key, value
    cdef int rc = 0
    cdef uint32_t head[2]
    cdef unsigned char seq_key[8]
    cdef Py_ssize_t item
    cdef const char* p
    cdef const char* end
    if segment.kind == REFS:
        _sort(segment)
        for item in range(segment.count):
            if segment.refs[item].key == NULL:
                _seq_key(seq_key, segment.first_seq + <uint64_t>item)
                key.mv_size, key.mv_data = 8, <void*>seq_key
            else:
                key.mv_size, key.mv_data = segment.refs[item].key_size, <void*>segment.refs[item].key
            value.mv_size, value.mv_data = segment.refs[item].value_size, <void*>segment.refs[item].value
            rc = api.cursor_put(cursor, &key, &value, flags)
            if rc:
                return rc
            done[0] += 1
        return 0
    if segment.base != NULL:
        data = segment.base
    p = data + segment.start
    end = data + segment.end
    while p < end:
        if not _record_inside(p, end):
            return PACKED_OVERRUN
        memcpy(head, p, HEAD)
        key.mv_size, key.mv_data = head[0], <void*>(p + HEAD)
        value.mv_size, value.mv_data = head[1], <void*>(p + HEAD + head[0])
        rc = api.cursor_put(cursor, &key, &value, flags)
        if rc:
            return rc
        p += HEAD + head[0] + head[1]
        done[0] += 1
    return 0 if done[0] == segment.count else PACKED_OVERRUN


cdef inline bint _record_inside(const char* p, const char* end) noexcept nogil:
    """Whether the packed record at p (its head and its key and value) ends by `end`."""
    cdef uint32_t head[2]
    if <size_t>(end - p) < HEAD:
        return False
    memcpy(head, p, HEAD)
    return <size_t>(end - p) - HEAD >= <size_t>head[0] + <size_t>head[1]


def strerror(int rc, txn):
    """LMDB's message for rc, from the engine serving txn (checked as for put)."""
    cdef PlTransObject* t = <PlTransObject*><PyObject*>txn
    if type(txn) is not lmdb.cpython.Transaction or (t.libv != _ENGINES[0] and t.libv != _ENGINES[1]):
        return f"LMDB error {rc}"
    return (<bytes>t.libv.strerror_fn(rc)).decode("utf-8", "replace")
