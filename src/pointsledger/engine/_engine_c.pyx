# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython engine: the compiled twin of `_engine_py.py`.

`_engine_py.py` is the readable reference; this file follows it function by
function, gives the same results and writes the same bytes. Comments here say
only what is particular to C: fixed-width arithmetic, hand-packed records and
what is cached across the items of a batch.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.buffer cimport PyObject_CheckBuffer
from cpython.object cimport PyObject, PyObject_GetItem
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_CheckExact
from libc.stdint cimport INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memcmp, memcpy, memmove, memset

import gc
import struct

from . import _engine_py, engagement as _engagement
from .. import limits
from ..store import format as fmt
from ._engine_py import _duplicate_purchase
from ..validation import validate_id, validate_int
from .member_engagement import Engagement
from ..results import Bonus
from ..errors import FailedPrecondition, InvalidArgument, LedgerError

__all__ = [
    "ENGINE_NAME", "MemberState", "apply_purchases", "journal_items", "member_items",
    "price_purchase", "sorted_items", "validate_id",
]

ENGINE_NAME = "cython"
NEVER = limits.never_expires_s


cdef extern from "Python.h":
    # Declared without an exception value: a NULL return (lone surrogates) is
    # handled by clearing the error and letting the twin's validate_id raise.
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size)
    void PyErr_Clear()
    void PyObject_GC_UnTrack(void* op)
    void PyObject_GC_Track(void* op)
    dict _PyDict_NewPresized(Py_ssize_t minused)


cdef extern from *:
    """
    typedef unsigned __int128 pl_u128;
    typedef __int128 pl_i128;
    #define PL_U128_MAX (~(pl_u128)0)

    /* Big-endian loads and stores; the compiler turns the shifts into bswap. */
    static inline void pl_put64(unsigned char *p, uint64_t v) {
        p[0] = (unsigned char)(v >> 56); p[1] = (unsigned char)(v >> 48);
        p[2] = (unsigned char)(v >> 40); p[3] = (unsigned char)(v >> 32);
        p[4] = (unsigned char)(v >> 24); p[5] = (unsigned char)(v >> 16);
        p[6] = (unsigned char)(v >> 8);  p[7] = (unsigned char)v;
    }
    static inline void pl_put32(unsigned char *p, uint32_t v) {
        p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
    }
    static inline uint64_t pl_get64(const unsigned char *p) {
        return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40)
             | ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16)
             | ((uint64_t)p[6] << 8) | (uint64_t)p[7];
    }
    static inline uint32_t pl_get32(const unsigned char *p) {
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
    }
    static inline int pl_u128_fits_u64(pl_u128 n) { return (n >> 64) == 0; }
    #define pl_prefetch(p) __builtin_prefetch((const void *)(p))

    /* (key, value) for putmulti in *slot's tuple when nothing else holds it
       (as zip() reuses its result), else in a new one kept in *slot. Both
       hold only bytes, so the cyclic GC need not track them. */
    static PyObject *pl_pair(PyObject **slot, PyObject *key, PyObject *value) {
        PyObject *pair = *slot;
        Py_INCREF(key);
        Py_INCREF(value);
        if (pair != NULL && Py_REFCNT(pair) == 1) {
            PyObject *old_key = PyTuple_GET_ITEM(pair, 0);
            PyObject *old_value = PyTuple_GET_ITEM(pair, 1);
            PyTuple_SET_ITEM(pair, 0, key);
            PyTuple_SET_ITEM(pair, 1, value);
            Py_DECREF(old_key);
            Py_DECREF(old_value);
        } else {
            pair = PyTuple_New(2);
            if (pair == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                return NULL;
            }
            PyTuple_SET_ITEM(pair, 0, key);
            PyTuple_SET_ITEM(pair, 1, value);
            PyObject_GC_UnTrack(pair);
            Py_XDECREF(*slot);
            *slot = pair;
        }
        Py_INCREF(pair);
        return pair;
    }

    /* The 8-byte journal key of `seq`: *slot's bytes rewritten when only *slot
       and the idle pair (*pair, its key) hold it, so nobody can see it change;
       else a new one kept in *slot. Its cached hash is reset (3.11-3.12 layout). */
    static PyObject *pl_seq_key(PyObject **slot, PyObject *pair, uint64_t seq) {
        PyObject *key = *slot;
    #if PY_VERSION_HEX < 0x030D0000
        int idle = key != NULL && pair != NULL && Py_REFCNT(pair) == 1
            && PyTuple_GET_ITEM(pair, 0) == key && Py_REFCNT(key) == 2;
        if (idle) {
            ((PyBytesObject *)key)->ob_shash = -1;
        } else
    #endif
        {
            key = PyBytes_FromStringAndSize(NULL, 8);
            if (key == NULL)
                return NULL;
            Py_XDECREF(*slot);
            *slot = key;
        }
        pl_put64((unsigned char *)PyBytes_AS_STRING(key), seq);
        Py_INCREF(key);
        return key;
    }

    /* tuple.__new__(type, (a, b, c)) for a tuple subclass (Bonus) without the
       argument and temporary tuples; untracked, as it holds only atoms. */
    static PyObject *pl_tuple3(PyObject *type, PyObject *a, PyObject *b, PyObject *c) {
        PyObject *t = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 3);
        if (t == NULL)
            return NULL;
        Py_INCREF(a);
        PyTuple_SET_ITEM(t, 0, a);
        Py_INCREF(b);
        PyTuple_SET_ITEM(t, 1, b);
        Py_INCREF(c);
        PyTuple_SET_ITEM(t, 2, c);
        PyObject_GC_UnTrack(t);
        return t;
    }
    """
    # Cython only needs to know these are integers; the C compiler sees 128 bits.
    ctypedef unsigned long long pl_u128
    ctypedef long long pl_i128
    pl_u128 PL_U128_MAX
    void pl_put64(unsigned char* p, uint64_t v) noexcept nogil
    void pl_put32(unsigned char* p, uint32_t v) noexcept nogil
    uint64_t pl_get64(const unsigned char* p) noexcept nogil
    uint32_t pl_get32(const unsigned char* p) noexcept nogil
    bint pl_u128_fits_u64(pl_u128 n) noexcept nogil
    void pl_prefetch(const void* p) noexcept nogil
    object pl_pair(PyObject** slot, object key, object value)
    object pl_seq_key(PyObject** slot, PyObject* pair, uint64_t seq)
    object pl_tuple3(object type, object a, object b, object c)


# --- constants mirrored from limits / store_format, checked at import ------------

cdef enum:
    SECONDS_PER_DAY = 86400
    MEMBER_HEAD_SIZE = 85
    BUCKET_SIZE = 16
    BUCKET_MONTH_SIZE = 20  # (§19) the bucket with its issue month
    JOURNAL_HEAD_SIZE = 39
    ORDER_HEAD_SIZE = 40  # then the category code: two bytes below NARROW_CODES, else four
    NARROW_CODES = 65536
    COUNTER_COUNT = 7
    RULES_MAX = 64  # tiers and promotions: both are 64-bit masks (limits)
    CHUNK_ITEMS = 256  # purchases whose members are looked up together
    ORDERS_PRESIZE_MIN = 1024  # batch size from which the orders overlay is sized up front
    DELTAS_MAX = 64
    BASIS_POINTS_PER_UNIT = 10000  # a constant, so that dividing by it is a multiplication
    GC_PAUSE_ITEMS_MIN = 10000  # batches from this size apply with the cyclic GC paused
    REFERRAL_HEAD_SIZE = 19
    OWN_MAX = RULES_MAX + 2  # a purchaser's bonuses: welcome, referral, one per milestone
    ENGAGEMENT_HEAD_SIZE = 21
    LOT_COUNT_SIZE = 4
    LOT_HEAD_SIZE = 33
    LOT_HEAD_MONTH_SIZE = 37

cdef int64_t ID_BYTES_MAX = limits.id_bytes_max
cdef int64_t CATEGORY_BYTES_MAX = limits.category_bytes_max
cdef int64_t AMOUNT_MIN = limits.amount_minor_min
cdef int64_t AMOUNT_MAX = limits.amount_minor_max
cdef int64_t TIME_MIN = limits.time_s_min
cdef int64_t TIME_MAX = limits.time_s_max_exclusive - 1
cdef int64_t NEVER_S = limits.never_expires_s
cdef int KIND_EARN = fmt.KIND_EARN
cdef int KIND_EXPIRE = fmt.KIND_EXPIRE
cdef int KIND_BONUS = fmt.KIND_BONUS
cdef int COUNTER_EARNED = fmt.COUNTER_EARNED
cdef int COUNTER_ADJUSTED_POSITIVE = fmt.COUNTER_ADJUSTED_POSITIVE
cdef int COUNTER_EXPIRED = fmt.COUNTER_EXPIRED
cdef int COUNTER_PURCHASES = fmt.COUNTER_PURCHASES
cdef int MEMBER_RECORD_VERSION = fmt.MEMBER_RECORD_VERSION
cdef int MEMBER_RECORD_VERSION_ENGAGED = fmt.MEMBER_RECORD_VERSION_ENGAGED
cdef int MEMBER_RECORD_VERSION_LOTS = fmt.MEMBER_RECORD_VERSION_LOTS
cdef int MEMBER_RECORD_VERSION_LOTS_ENGAGED = fmt.MEMBER_RECORD_VERSION_LOTS_ENGAGED
cdef int COHORT_TAKEN_BACK = fmt.COHORT_TAKEN_BACK
cdef int COHORT_EXPIRED = fmt.COHORT_EXPIRED

# The hand-written layouts below must be the struct formats of store_format.
if (fmt.MEMBER_HEAD.format, fmt.MEMBER_HEAD.size) != (">BqqiqiqqqqqQI", MEMBER_HEAD_SIZE):
    raise ImportError("store_format.MEMBER_HEAD changed: update _engine_c.pyx")
if ((fmt.ENGAGEMENT_HEAD.format, fmt.ENGAGEMENT_HEAD.size, fmt.LOT_COUNT.format, fmt.LOT_COUNT.size,
     fmt.LOT_HEAD.format, fmt.LOT_HEAD.size)
        != (">qiqB", ENGAGEMENT_HEAD_SIZE, ">I", LOT_COUNT_SIZE, ">qqqQB", LOT_HEAD_SIZE)):
    raise ImportError("store_format's engagement layouts changed: update _engine_c.pyx")
if ((fmt.BUCKET_MONTH.format, fmt.BUCKET_MONTH.size, fmt.LOT_HEAD_MONTH.format, fmt.LOT_HEAD_MONTH.size)
        != (">qqi", BUCKET_MONTH_SIZE, ">qqqQiB", LOT_HEAD_MONTH_SIZE)):
    raise ImportError("store_format's issue-month layouts changed: update _engine_c.pyx")
if (fmt.REFERRAL_HEAD.format, fmt.REFERRAL_HEAD.size) != (">qQBBB", REFERRAL_HEAD_SIZE):
    raise ImportError("store_format.REFERRAL_HEAD changed: update _engine_c.pyx")
if (fmt.BUCKET.format, fmt.BUCKET.size) != (">qq", BUCKET_SIZE):
    raise ImportError("store_format.BUCKET changed: update _engine_c.pyx")
if (fmt.JOURNAL_HEAD.format, fmt.JOURNAL_HEAD.size) != (">BqqqIQBB", JOURNAL_HEAD_SIZE):
    raise ImportError("store_format.JOURNAL_HEAD changed: update _engine_c.pyx")
if (fmt.ORDER_HEAD.format, fmt.ORDER_HEAD.size) != (">qqQqq", ORDER_HEAD_SIZE):
    raise ImportError("store_format.ORDER_HEAD changed: update _engine_c.pyx")
if fmt.NARROW_CODES != NARROW_CODES:
    raise ImportError("store_format.NARROW_CODES changed: update _engine_c.pyx")
if len(fmt.COUNTER_FIELDS) != COUNTER_COUNT:
    raise ImportError("store_format.COUNTER_FIELDS changed: update _engine_c.pyx")
if limits.basis_points_per_unit != BASIS_POINTS_PER_UNIT:
    raise ImportError("limits.basis_points_per_unit changed: update _engine_c.pyx")
if limits.tiers_max > RULES_MAX or limits.promotions_max > RULES_MAX:
    raise ImportError("limits allow more tiers or promotions than the engine's 64-bit masks")

cdef object DB_ORDERS = fmt.DB_ORDERS
cdef object DB_MEMBERS = fmt.DB_MEMBERS
cdef object DB_REFEREES = fmt.DB_REFEREES
cdef object DB_REFERRALS = fmt.DB_REFERRALS
cdef object _py_price_purchase = _engine_py.price_purchase
cdef object _struct_error = struct.error
cdef bytes WELCOME_RULE = _engagement.WELCOME_RULE
cdef str WELCOME_RULE_ID = WELCOME_RULE.decode()


# --- the rest of the engine, one file per concern (Cython `include`: one module, one C file) ---

include "_c_calendar.pxi"
include "_c_expiry.pxi"
include "_c_member_state.pxi"
include "_c_rules.pxi"
include "_c_validation.pxi"
include "_c_records.pxi"
include "_c_member_cache.pxi"
include "_c_results.pxi"
include "_c_dirty_members.pxi"
include "_c_batch.pxi"
include "_c_flush_items.pxi"
include "_c_orders.pxi"
