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
    cdef Py_ssize_t member_size = PyBytes_GET_SIZE(member_key)
    cdef Py_ssize_t ref_size = PyBytes_GET_SIZE(ref_key)
    cdef bytes value = PyBytes_FromStringAndSize(NULL, JOURNAL_HEAD_SIZE + member_size + ref_size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(value)
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
    return value


cdef bytes _encode_order(int64_t amount_minor, int64_t time_s, int64_t seq, int64_t code):
    """store_format.encode_order(amount_minor, time_s, seq, 0, 0, code)."""
    cdef Py_ssize_t code_size = 2 if code < NARROW_CODES else 4
    cdef bytes value = PyBytes_FromStringAndSize(NULL, ORDER_HEAD_SIZE + code_size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(value)
    pl_put64(p, <uint64_t>amount_minor)
    pl_put64(p + 8, <uint64_t>time_s)
    pl_put64(p + 16, <uint64_t>seq)
    pl_put64(p + 24, 0)  # refunded so far
    pl_put64(p + 32, 0)  # clawed back so far
    p += ORDER_HEAD_SIZE
    if code_size == 4:
        p[0] = <unsigned char>(code >> 24)
        p[1] = <unsigned char>(code >> 16)
        p += 2
    p[0] = <unsigned char>(code >> 8)
    p[1] = <unsigned char>code
    return value
