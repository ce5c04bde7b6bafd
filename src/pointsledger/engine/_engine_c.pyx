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


# --- calendar (calendar.py in C) ---------------------------------------------------
# cdivision=True makes `//` and `%` truncate; these floor like Python's.

cdef inline int64_t _floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t _floor_mod(int64_t a, int64_t b) noexcept nogil:
    return a - _floor_div(a, b) * b


cdef inline int64_t _days_from_civil(int64_t year, int64_t month, int64_t day) noexcept nogil:
    if month <= 2:
        year -= 1
    cdef int64_t era = _floor_div(year, 400)
    cdef int64_t year_of_era = year - era * 400
    cdef int64_t day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) / 5 + day - 1
    cdef int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year
    return era * 146097 + day_of_era - 719468


cdef inline void _civil_from_days(int64_t days, int64_t* year, int64_t* month, int64_t* day) noexcept nogil:
    days += 719468
    cdef int64_t era = _floor_div(days, 146097)
    cdef int64_t day_of_era = days - era * 146097
    cdef int64_t year_of_era = (
        day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096
    ) / 365
    cdef int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100)
    cdef int64_t month_index = (5 * day_of_year + 2) / 153
    day[0] = day_of_year - (153 * month_index + 2) / 5 + 1
    month[0] = month_index + (3 if month_index < 10 else -9)
    year[0] = year_of_era + era * 400 + (1 if month[0] <= 2 else 0)


cdef inline int64_t _year_of_day(int64_t days) noexcept nogil:
    cdef int64_t year, month, day
    _civil_from_days(days, &year, &month, &day)
    return year


cdef inline int64_t _expiry_instant_of_day(int64_t days, int64_t expiry_months) noexcept nogil:
    cdef int64_t year, month, day
    _civil_from_days(days, &year, &month, &day)
    cdef int64_t month_count = year * 12 + (month - 1) + expiry_months + 1
    return _days_from_civil(_floor_div(month_count, 12), _floor_mod(month_count, 12) + 1, 1) * SECONDS_PER_DAY


def _year_of(int64_t time_s):
    """calendar.year_of in C (for tests)."""
    return _year_of_day(_floor_div(time_s, SECONDS_PER_DAY))


def _expiry_instant(int64_t time_s, int64_t expiry_months):
    """calendar.expiry_instant in C (for tests)."""
    return _expiry_instant_of_day(_floor_div(time_s, SECONDS_PER_DAY), expiry_months)


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


# --- the member record -------------------------------------------------------------

cdef struct Bucket:
    int64_t instant
    int64_t points
    int32_t month  # issue month (§19): buckets sort by (instant, month)


cdef enum:
    LOT_KEY_INLINE = 24  # order keys up to this size sit in the lot itself


cdef union LotKey:
    char inline[LOT_KEY_INLINE]
    PyObject* object  # a longer key: a bytes object, owned by the lot


cdef struct Lot:
    # A pending lot (§17): engagement.py's [release_s, expires_s, points, seq, order_key, month].
    # The order key is kept inline when it fits (64 bytes a lot): releasing, encoding or
    # comparing a lot then reads no other object, and dropping it frees nothing.
    int64_t release_s
    int64_t expires_s
    int64_t points
    int64_t seq
    int32_t month
    int32_t key_size
    LotKey key


cdef inline const char* _lot_key(const Lot* lot) noexcept:
    if lot.key_size <= LOT_KEY_INLINE:
        return lot.key.inline
    return PyBytes_AS_STRING(<object>lot.key.object)


cdef inline void _lot_drop_key(Lot* lot) noexcept:
    if lot.key_size > LOT_KEY_INLINE:
        Py_XDECREF(lot.key.object)
        lot.key_size = 0


cdef inline bytes _lot_key_object(const Lot* lot):
    if lot.key_size <= LOT_KEY_INLINE:
        return PyBytes_FromStringAndSize(lot.key.inline, lot.key_size)
    return <bytes>lot.key.object


# Members' reached milestones are few distinct tuples (ids in the order reached): one shared
# object each, so a purchase reading a member's tuple finds it in the cache, not one cold
# tuple per member. Bounded: past REACHED_SHARED_MAX distinct tuples a new one is kept as is.
cdef dict _REACHED_SHARED = {}
cdef enum:
    REACHED_SHARED_MAX = 4096


cdef tuple _shared_reached(tuple reached):
    cdef PyObject* found
    if PyTuple_GET_SIZE(reached) == 0:
        return ()
    found = PyDict_GetItem(_REACHED_SHARED, reached)
    if found != NULL:
        return <tuple>found
    if len(_REACHED_SHARED) < REACHED_SHARED_MAX:
        _REACHED_SHARED[reached] = reached
    return reached


@cython.final
@cython.no_gc  # its objects (bytes, tuples of bytes, an Engagement) never refer back to a member: no cycle
cdef class MemberState:
    """One member's record: balances, tier state, buckets. Mutated in place.

    The buckets live in a C array sorted by instant; `buckets` hands Python a copy.
    """
    cdef public int64_t balance
    cdef public int64_t debt
    cdef public int64_t tier_year
    cdef public int64_t spend_minor
    cdef public int64_t carried_rank
    cdef public int64_t earned
    cdef public int64_t redeemed
    cdef public int64_t expired
    cdef public int64_t clawed_back
    cdef public int64_t adjusted
    cdef public int64_t last_seq
    # The order of the fields is their layout: the lots' array and count share the
    # buckets' cache line, which the purchase loop reads a few purchases ahead.
    cdef Bucket* _buckets
    cdef Lot* _lots  # the pending lots (engagement state below)
    cdef Py_ssize_t _count
    cdef Py_ssize_t _lot_count
    cdef Py_ssize_t _capacity
    cdef int64_t _dirty_batch  # the batch that last put it in writer.dirty_members
    # What the engaged path last looked up for this member, so that its next
    # purchases look nothing up: the birthday month (0: no profile), valid while
    # the store's profile_generation is _profile_stamp (set_member_profile moves
    # it on); and that it has no referral to settle (no referee record when it was
    # already a member, which register_referral then refuses; or one settled).
    cdef int64_t _profile_stamp
    cdef int32_t _birthday_month
    cdef bint _referral_done
    # The engagement state (§17) once a rule of §14 needs it (none: a version-1/3 record).
    # Two forms, one of them current: the C fields below (the engaged path's,
    # encoded and decoded here), or the twin's member_engagement.Engagement,
    # made when Python code asks for `engagement` (refunds, queries, the twin's
    # rare cases) and taken back into the C fields by the next engaged purchase.
    cdef bint _engaged  # the member has engagement state (in either form)
    cdef object _engagement  # the Engagement form when it is the current one, else None
    cdef int64_t _bonus
    cdef int64_t _year
    cdef int64_t _purchases
    cdef tuple _reached  # milestone ids (bytes) reached in _year, in the order reached
    cdef Py_ssize_t _lot_capacity
    # Lower bounds of the lots' expiry and release instants: most purchases
    # find nothing due without reading the lots (0 is always a valid bound).
    cdef int64_t _lots_expire_from
    cdef int64_t _lots_release_from

    def __init__(self, tier_year):
        self.balance = 0
        self.debt = 0
        self.tier_year = tier_year
        self.spend_minor = 0
        self.carried_rank = 0
        self.earned = 0
        self.redeemed = 0
        self.expired = 0
        self.clawed_back = 0
        self.adjusted = 0
        self.last_seq = 0
        self._count = 0

    def __dealloc__(self):
        free(self._buckets)
        self._clear_lots()
        free(self._lots)

    cdef int _reserve(self, Py_ssize_t capacity) except -1:
        if capacity <= self._capacity:
            return 0
        if capacity < 2 * self._capacity:
            capacity = 2 * self._capacity
        if capacity < 4:
            capacity = 4
        cdef Bucket* grown = <Bucket*>realloc(self._buckets, capacity * sizeof(Bucket))
        if grown == NULL:
            raise MemoryError()
        self._buckets = grown
        self._capacity = capacity
        return 0

    cdef inline void _drop_front(self, Py_ssize_t count) noexcept:
        if count:
            self._count -= count
            memmove(self._buckets, self._buckets + count, self._count * sizeof(Bucket))

    # --- engagement state (§17) in C ---------------------------------------------

    @property
    def engagement(self):
        """member_engagement.Engagement, or None: from here on the Python form is the state."""
        if self._engagement is None and self._engaged:
            self._engagement = self._engagement_object()
            self._clear_lots()
        return self._engagement

    @engagement.setter
    def engagement(self, value):
        self._clear_lots()
        self._engagement = value
        self._engaged = value is not None

    cdef object _engagement_object(self):
        cdef Py_ssize_t index
        cdef Lot* lot
        engagement = Engagement(self._year, self._purchases)
        engagement.bonus = self._bonus
        engagement.reached = list(self._reached)
        lots = []
        for index in range(self._lot_count):
            lot = &self._lots[index]
            lots.append([lot.release_s, lot.expires_s, lot.points, lot.seq, _lot_key_object(lot), lot.month])
        engagement.lots = lots
        return engagement

    cdef bint _in_c(self) except -1:
        """Make the C fields the current form; False (nothing changed) when the Python form will not fit them."""
        cdef object engagement = self._engagement
        cdef list lot
        cdef Py_ssize_t index
        if engagement is None:
            return True
        if type(engagement) is not Engagement or type(engagement.reached) is not list \
                or type(engagement.lots) is not list:
            return False
        bonus, year, purchases = engagement.bonus, engagement.year, engagement.purchases
        if not (type(bonus) is int and type(year) is int and type(purchases) is int
                and INT64_MIN <= bonus <= INT64_MAX and INT32_MIN <= year <= INT32_MAX
                and INT64_MIN <= purchases <= INT64_MAX and len(engagement.reached) <= 255):
            return False
        for milestone_key in engagement.reached:
            if type(milestone_key) is not bytes or PyBytes_GET_SIZE(milestone_key) > 255:
                return False
        for lot_object in engagement.lots:
            if type(lot_object) is not list:
                return False
            lot = lot_object
            if not (len(lot) == 6 and type(lot[4]) is bytes and PyBytes_GET_SIZE(lot[4]) <= 255
                    and type(lot[0]) is int and type(lot[1]) is int and type(lot[2]) is int
                    and type(lot[3]) is int and type(lot[5]) is int
                    and INT64_MIN <= lot[0] <= INT64_MAX and INT64_MIN <= lot[1] <= INT64_MAX
                    and INT64_MIN <= lot[2] <= INT64_MAX and 0 <= lot[3] <= INT64_MAX
                    and INT32_MIN <= lot[5] <= INT32_MAX):
                return False
        self._bonus, self._year, self._purchases = bonus, year, purchases
        self._reached = _shared_reached(tuple(engagement.reached))
        self._reserve_lots(len(engagement.lots))
        for lot in engagement.lots:
            self._append_lot(lot[0], lot[1], lot[2], lot[3], PyBytes_AS_STRING(lot[4]), PyBytes_GET_SIZE(lot[4]),
                             lot[4], lot[5])
        self._engagement = None
        return True

    cdef inline void _start_engagement(self, int64_t year, int64_t purchases) noexcept:
        """Engagement(year, purchases) for a member without one (no lots)."""
        self._engaged = True
        self._bonus = 0
        self._year = year
        self._purchases = purchases
        self._reached = ()

    cdef inline void _enter_year(self, int64_t year) noexcept:
        """Engagement.enter_year: the counts belong to the tier year (§17)."""
        if year > self._year:
            self._year = year
            self._purchases = 0
            self._reached = ()

    cdef int _reserve_lots(self, Py_ssize_t capacity) except -1:
        if capacity <= self._lot_capacity:
            return 0
        if capacity < 2 * self._lot_capacity:
            capacity = 2 * self._lot_capacity
        if capacity < 2:
            capacity = 2
        cdef Lot* grown = <Lot*>realloc(self._lots, capacity * sizeof(Lot))
        if grown == NULL:
            raise MemoryError()
        self._lots = grown
        self._lot_capacity = capacity
        return 0

    cdef int _append_lot(self, int64_t release_s, int64_t expires_s, int64_t points, int64_t seq,
                         const char* key_data, Py_ssize_t key_size, object order_key, int32_t month) except -1:
        """A lot with the order key `key_data`; `order_key` (its bytes, or None) saves a copy of a long one."""
        self._reserve_lots(self._lot_count + 1)
        cdef Lot* lot = &self._lots[self._lot_count]
        lot.release_s = release_s
        lot.expires_s = expires_s
        lot.points = points
        lot.seq = seq
        lot.month = month
        if key_size <= LOT_KEY_INLINE:
            memcpy(lot.key.inline, key_data, key_size)
        else:
            if order_key is None:
                order_key = PyBytes_FromStringAndSize(key_data, key_size)
            Py_INCREF(order_key)
            lot.key.object = <PyObject*>order_key
        lot.key_size = <int32_t>key_size
        if self._lot_count == 0 or expires_s < self._lots_expire_from:
            self._lots_expire_from = expires_s
        if self._lot_count == 0 or release_s < self._lots_release_from:
            self._lots_release_from = release_s
        self._lot_count += 1
        return 0

    cdef void _bound_lots(self) noexcept:
        """The lower bounds, exact again after lots were dropped."""
        cdef Py_ssize_t index
        self._lots_expire_from = INT64_MAX
        self._lots_release_from = INT64_MAX
        for index in range(self._lot_count):
            if self._lots[index].expires_s < self._lots_expire_from:
                self._lots_expire_from = self._lots[index].expires_s
            if self._lots[index].release_s < self._lots_release_from:
                self._lots_release_from = self._lots[index].release_s

    cdef void _clear_lots(self) noexcept:
        cdef Py_ssize_t index
        for index in range(self._lot_count):
            _lot_drop_key(&self._lots[index])
        self._lot_count = 0

    cdef inline int64_t _lots_due(self, int64_t time_s) noexcept:
        """Points of the pending lots that expire at time_s (C form)."""
        cdef int64_t total = 0
        cdef Py_ssize_t index
        if self._lot_count == 0 or time_s < self._lots_expire_from:
            return 0
        for index in range(self._lot_count):
            if self._lots[index].expires_s <= time_s:
                total += self._lots[index].points
        return total

    cdef int _expire_lots(self, int64_t time_s, _ExpiryDeltas deltas, _MonthSums taken) except -1:
        """engagement.expire_due's part for lots: drop the due ones; the caller changes the balance."""
        cdef Py_ssize_t index, kept = 0
        cdef Lot* lot
        for index in range(self._lot_count):
            lot = &self._lots[index]
            if lot.expires_s <= time_s:
                deltas.add(lot.expires_s, -lot.points)
                taken.add(lot.month, lot.points)
                _lot_drop_key(lot)
            else:
                if kept != index:
                    self._lots[kept] = lot[0]
                kept += 1
        self._lot_count = kept
        self._bound_lots()
        return 0

    cdef int _release_lots(self, int64_t time_s, _ExpiryDeltas deltas) except -1:
        """engagement.release_due: lots whose release instant has come join their buckets."""
        cdef Py_ssize_t index, kept = 0
        cdef Lot lot
        if self._lot_count == 0 or time_s < self._lots_release_from:
            return 0
        for index in range(self._lot_count):
            if self._lots[index].release_s <= time_s:
                break
        else:
            self._bound_lots()
            return 0
        cdef int64_t paid
        for index in range(self._lot_count):
            lot = self._lots[index]
            if lot.release_s <= time_s:
                # _credit less what cancels out: the balance and the expiry totals hold the
                # lot's points already; only the debt it pays (first) leaves the totals.
                paid = self.debt if self.debt < lot.points else lot.points
                self.debt -= paid
                if paid:
                    deltas.add(lot.expires_s, -paid)
                if lot.points > paid:
                    self._add_to_bucket(lot.expires_s, lot.points - paid, lot.month)
                _lot_drop_key(&lot)
            else:
                self._lots[kept] = lot
                kept += 1
        self._lot_count = kept
        self._bound_lots()
        return 0

    @property
    def buckets(self):
        """[[expiry instant, points, issue month]], by (instant, month): a new list, read-only."""
        cdef Py_ssize_t index
        return [[self._buckets[index].instant, self._buckets[index].points, self._buckets[index].month]
                for index in range(self._count)]

    @classmethod
    def decode(cls, value):
        if not PyBytes_CheckExact(value):
            value = bytes(value)
        return _decode_member(value)

    def encode(self):
        return _encode_state(self)

    # --- expiry (§5) ---------------------------------------------------------

    def due_points(self, int64_t time_s):
        return self._due_points(time_s)

    cdef inline int64_t _due_points(self, int64_t time_s) noexcept:
        cdef int64_t total = 0
        cdef Py_ssize_t index
        for index in range(self._count):
            if self._buckets[index].instant > time_s:
                break
            total += self._buckets[index].points
        return total

    def unexpired_points(self, int64_t time_s):
        cdef int64_t total = 0
        cdef Py_ssize_t index
        for index in range(self._count):
            if self._buckets[index].instant > time_s:
                total += self._buckets[index].points
        return total

    def expire_due(self, int64_t time_s, dict expiry_deltas, dict taken=None):
        if self._count == 0 or self._buckets[0].instant > time_s:
            return 0  # nothing due (the usual case of an expire run): nothing changes
        cdef _ExpiryDeltas deltas = _deltas_into(expiry_deltas)
        cdef _MonthSums sums = _month_sums_for(taken)
        cdef int64_t total = self._expire_due(time_s, deltas, sums)
        deltas.fold()
        if sums is not None:
            sums.fold(taken)
        return total

    cdef int64_t _expire_due(self, int64_t time_s, _ExpiryDeltas deltas, _MonthSums taken) except? -1:
        cdef int64_t total = 0
        cdef Py_ssize_t due = 0
        while due < self._count and self._buckets[due].instant <= time_s:
            deltas.add(self._buckets[due].instant, -self._buckets[due].points)
            if taken is not None:
                taken.add(self._buckets[due].month, self._buckets[due].points)
            total += self._buckets[due].points
            due += 1
        self._drop_front(due)
        self.balance -= total
        self.expired += total
        return total

    # --- tiers (§4) ------------------------------------------------------------

    def rolled(self, year, program):
        if year <= self.tier_year:
            return self.tier_year, self.spend_minor, self.carried_rank
        if year == self.tier_year + 1:
            carried = program.tier_rank_for_spend(self.spend_minor)
        else:
            carried = 0
        return year, 0, carried

    def roll_to(self, year, program):
        self.tier_year, self.spend_minor, self.carried_rank = self.rolled(year, program)

    # --- credits and debits (§5, §6) -------------------------------------------

    def credit(self, int64_t points, int64_t instant, dict expiry_deltas, int32_t month):
        cdef _ExpiryDeltas deltas = _deltas_into(expiry_deltas)
        cdef int64_t paid = self._credit(points, instant, deltas, month)
        deltas.fold()
        return paid

    cdef int64_t _credit(self, int64_t points, int64_t instant, _ExpiryDeltas deltas, int32_t month) except -1:
        """Pay debt first, the rest to the bucket (instant, issue month); return the debt paid."""
        cdef int64_t paid = self.debt if self.debt < points else points
        self.debt -= paid
        cdef int64_t rest = points - paid
        self.balance += points
        if rest == 0:
            return paid
        deltas.add(instant, rest)
        self._add_to_bucket(instant, rest, month)
        return paid

    cdef int _add_to_bucket(self, int64_t instant, int64_t rest, int32_t month) except -1:
        """`rest` points into the bucket (instant, issue month), made in its place if new."""
        cdef Py_ssize_t index = self._count
        # Credits arrive mostly in time order, so the bucket is usually the last.
        while index > 0 and (self._buckets[index - 1].instant > instant
                             or (self._buckets[index - 1].instant == instant
                                 and self._buckets[index - 1].month > month)):
            index -= 1
        if index > 0 and self._buckets[index - 1].instant == instant and self._buckets[index - 1].month == month:
            self._buckets[index - 1].points += rest
            return 0
        self._reserve(self._count + 1)
        memmove(self._buckets + index + 1, self._buckets + index, (self._count - index) * sizeof(Bucket))
        self._buckets[index].instant = instant
        self._buckets[index].points = rest
        self._buckets[index].month = month
        self._count += 1
        return 0

    def debit(self, long long points, dict expiry_deltas, dict taken=None):
        cdef _ExpiryDeltas deltas = _deltas_into(expiry_deltas)
        cdef _MonthSums sums = _month_sums_for(taken)
        cdef int64_t remaining = self._debit(points, deltas, sums)
        deltas.fold()
        if sums is not None:
            sums.fold(taken)
        return remaining

    cdef int64_t _debit(self, int64_t points, _ExpiryDeltas deltas, _MonthSums taken) except? -1:
        cdef int64_t remaining = points
        cdef int64_t available, used
        cdef Py_ssize_t used_up = 0
        while remaining and used_up < self._count:
            available = self._buckets[used_up].points
            used = available if available < remaining else remaining
            deltas.add(self._buckets[used_up].instant, -used)
            if taken is not None:
                taken.add(self._buckets[used_up].month, used)
            remaining -= used
            if used == available:
                used_up += 1
            else:
                self._buckets[used_up].points = available - used
        self._drop_front(used_up)
        self.balance -= points
        return remaining


cdef bytes _encode_state(MemberState self):
    """MEMBER_HEAD + BUCKETs, packed by hand."""
    cdef Py_ssize_t index
    if not (INT32_MIN <= self.tier_year <= INT32_MAX and INT32_MIN <= self.carried_rank <= INT32_MAX):
        raise _struct_error("'i' format requires -2147483648 <= number <= 2147483647")
    if self.last_seq < 0:
        raise _struct_error("argument out of range")
    cdef bint in_c = self._engaged and self._engagement is None
    cdef Py_ssize_t size = MEMBER_HEAD_SIZE + self._count * BUCKET_MONTH_SIZE
    if in_c:
        size += _engagement_size(self)
    cdef bytes value = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(value)
    p[0] = <unsigned char>(MEMBER_RECORD_VERSION_LOTS_ENGAGED if self._engaged else MEMBER_RECORD_VERSION_LOTS)
    pl_put64(p + 1, <uint64_t>self.balance)
    pl_put64(p + 9, <uint64_t>self.debt)
    pl_put32(p + 17, <uint32_t>self.tier_year)
    pl_put64(p + 21, <uint64_t>self.spend_minor)
    pl_put32(p + 29, <uint32_t>self.carried_rank)
    pl_put64(p + 33, <uint64_t>self.earned)
    pl_put64(p + 41, <uint64_t>self.redeemed)
    pl_put64(p + 49, <uint64_t>self.expired)
    pl_put64(p + 57, <uint64_t>self.clawed_back)
    pl_put64(p + 65, <uint64_t>self.adjusted)
    pl_put64(p + 73, <uint64_t>self.last_seq)
    pl_put32(p + 81, <uint32_t>self._count)
    p += MEMBER_HEAD_SIZE
    for index in range(self._count):
        pl_put64(p, <uint64_t>self._buckets[index].instant)
        pl_put64(p + 8, <uint64_t>self._buckets[index].points)
        pl_put32(p + 16, <uint32_t>self._buckets[index].month)
        p += BUCKET_MONTH_SIZE
    if in_c:
        _put_engagement(self, p)
    elif self._engagement is not None:
        return value + _encode_engagement(self._engagement)
    return value


cdef Py_ssize_t _engagement_size(MemberState self) except -1:
    """Bytes of the C form's ENGAGEMENT_HEAD, milestone ids, LOT_COUNT and lots (Engagement.encode)."""
    cdef Py_ssize_t index
    cdef Py_ssize_t size = ENGAGEMENT_HEAD_SIZE + LOT_COUNT_SIZE
    if not INT32_MIN <= self._year <= INT32_MAX:
        raise _struct_error("'i' format requires -2147483648 <= number <= 2147483647")
    if PyTuple_GET_SIZE(self._reached) > 255:
        raise _struct_error("ubyte format requires 0 <= number <= 255")
    for index in range(PyTuple_GET_SIZE(self._reached)):
        size += 1 + PyBytes_GET_SIZE(<object>PyTuple_GET_ITEM(self._reached, index))
    for index in range(self._lot_count):
        size += LOT_HEAD_MONTH_SIZE + self._lots[index].key_size
    return size


cdef void _put_engagement(MemberState self, unsigned char* p) noexcept:
    """The C form packed at p: as Engagement.encode (milestone ids and order ids are <= 255 bytes)."""
    cdef Py_ssize_t index, length
    cdef Lot* lot
    cdef PyObject* milestone_key
    pl_put64(p, <uint64_t>self._bonus)
    pl_put32(p + 8, <uint32_t><int32_t>self._year)
    pl_put64(p + 12, <uint64_t>self._purchases)
    p[20] = <unsigned char>PyTuple_GET_SIZE(self._reached)
    p += ENGAGEMENT_HEAD_SIZE
    for index in range(PyTuple_GET_SIZE(self._reached)):
        milestone_key = PyTuple_GET_ITEM(self._reached, index)
        length = PyBytes_GET_SIZE(<object>milestone_key)
        p[0] = <unsigned char>length
        memcpy(p + 1, PyBytes_AS_STRING(<object>milestone_key), length)
        p += 1 + length
    pl_put32(p, <uint32_t>self._lot_count)
    p += LOT_COUNT_SIZE
    for index in range(self._lot_count):
        lot = &self._lots[index]
        length = lot.key_size
        pl_put64(p, <uint64_t>lot.release_s)
        pl_put64(p + 8, <uint64_t>lot.expires_s)
        pl_put64(p + 16, <uint64_t>lot.points)
        pl_put64(p + 24, <uint64_t>lot.seq)
        pl_put32(p + 32, <uint32_t>lot.month)
        p[36] = <unsigned char>length
        memcpy(p + LOT_HEAD_MONTH_SIZE, _lot_key(lot), length)
        p += LOT_HEAD_MONTH_SIZE + length


cdef bint _get_engagement(MemberState state, const unsigned char* p, Py_ssize_t size,
                          bint with_months) except -1:
    """Engagement.decode into the C form; False (nothing kept) when the bytes are not a whole, valid state."""
    cdef const unsigned char* end = p + size
    cdef Py_ssize_t index, length, count
    cdef Py_ssize_t lot_size = LOT_HEAD_MONTH_SIZE if with_months else LOT_HEAD_SIZE
    if size < ENGAGEMENT_HEAD_SIZE:
        return False
    state._bonus = <int64_t>pl_get64(p)
    state._year = <int32_t>pl_get32(p + 8)
    state._purchases = <int64_t>pl_get64(p + 12)
    count = p[20]
    p += ENGAGEMENT_HEAD_SIZE
    reached = []
    for index in range(count):
        if p >= end or p + 1 + p[0] > end:
            return False
        length = p[0]
        reached.append(PyBytes_FromStringAndSize(<const char*>p + 1, length))
        p += 1 + length
    if p + LOT_COUNT_SIZE > end:
        return False
    count = pl_get32(p)
    p += LOT_COUNT_SIZE
    for index in range(count):
        if p + lot_size > end or p + lot_size + p[lot_size - 1] > end or pl_get64(p + 24) > <uint64_t>INT64_MAX:
            state._clear_lots()
            return False
        length = p[lot_size - 1]
        state._append_lot(<int64_t>pl_get64(p), <int64_t>pl_get64(p + 8), <int64_t>pl_get64(p + 16),
                          <int64_t>pl_get64(p + 24), <const char*>p + lot_size, length, None,
                          <int32_t>pl_get32(p + 32) if with_months else 0)
        p += lot_size + length
    if p != end:
        state._clear_lots()
        return False
    state._reached = _shared_reached(tuple(reached))
    state._engaged = True
    return True


cdef bytes _encode_engagement(object engagement):
    """Engagement.encode packed by hand; any value out of its field's range goes to encode() (its error)."""
    if type(engagement.reached) is not list or type(engagement.lots) is not list:
        return engagement.encode()
    cdef list reached = engagement.reached
    cdef list lots = engagement.lots
    cdef list lot
    bonus, year, purchases = engagement.bonus, engagement.year, engagement.purchases
    if not (type(bonus) is int and type(year) is int and type(purchases) is int
            and INT64_MIN <= bonus <= INT64_MAX and INT32_MIN <= year <= INT32_MAX
            and INT64_MIN <= purchases <= INT64_MAX and len(reached) <= 255 and len(lots) <= 0xFFFFFFFF):
        return engagement.encode()
    cdef Py_ssize_t size = ENGAGEMENT_HEAD_SIZE + LOT_COUNT_SIZE
    for milestone_key in reached:
        if type(milestone_key) is not bytes or PyBytes_GET_SIZE(milestone_key) > 255:
            return engagement.encode()
        size += 1 + PyBytes_GET_SIZE(milestone_key)
    for lot_object in lots:
        if type(lot_object) is not list:
            return engagement.encode()
        lot = lot_object
        if not (len(lot) == 6 and type(lot[4]) is bytes and PyBytes_GET_SIZE(lot[4]) <= 255
                and type(lot[0]) is int and type(lot[1]) is int and type(lot[2]) is int and type(lot[3]) is int
                and type(lot[5]) is int
                and INT64_MIN <= lot[0] <= INT64_MAX and INT64_MIN <= lot[1] <= INT64_MAX
                and INT64_MIN <= lot[2] <= INT64_MAX and 0 <= lot[3] <= INT64_MAX
                and INT32_MIN <= lot[5] <= INT32_MAX):
            return engagement.encode()
        size += LOT_HEAD_MONTH_SIZE + PyBytes_GET_SIZE(lot[4])
    cdef bytes value = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t length
    pl_put64(p, <uint64_t><int64_t>bonus)
    pl_put32(p + 8, <uint32_t><int64_t>year)
    pl_put64(p + 12, <uint64_t><int64_t>purchases)
    p[20] = <unsigned char>len(reached)
    p += ENGAGEMENT_HEAD_SIZE
    for milestone_key in reached:
        length = PyBytes_GET_SIZE(milestone_key)
        p[0] = <unsigned char>length
        memcpy(p + 1, PyBytes_AS_STRING(milestone_key), length)
        p += 1 + length
    pl_put32(p, <uint32_t>len(lots))
    p += LOT_COUNT_SIZE
    for lot in lots:
        length = PyBytes_GET_SIZE(lot[4])
        pl_put64(p, <uint64_t><int64_t>lot[0])
        pl_put64(p + 8, <uint64_t><int64_t>lot[1])
        pl_put64(p + 16, <uint64_t><int64_t>lot[2])
        pl_put64(p + 24, <uint64_t><int64_t>lot[3])
        pl_put32(p + 32, <uint32_t><int32_t>lot[5])
        p[36] = <unsigned char>length
        memcpy(p + LOT_HEAD_MONTH_SIZE, PyBytes_AS_STRING(lot[4]), length)
        p += LOT_HEAD_MONTH_SIZE + length
    return value


cdef MemberState _decode_member(bytes value):
    cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t index
    if size < MEMBER_HEAD_SIZE:
        raise _struct_error(
            f"unpack_from requires a buffer of at least {MEMBER_HEAD_SIZE} bytes for unpacking "
            f"{MEMBER_HEAD_SIZE} bytes at offset 0 (actual buffer size is {size})"
        )
    if not MEMBER_RECORD_VERSION <= p[0] <= MEMBER_RECORD_VERSION_LOTS_ENGAGED:
        raise ValueError(f"member record version {p[0]} is not supported")
    cdef bint engaged = p[0] == MEMBER_RECORD_VERSION_ENGAGED or p[0] == MEMBER_RECORD_VERSION_LOTS_ENGAGED
    # Versions 1 and 2 (formats 1-3) have no issue month: 0 until the upgrade sets it.
    cdef bint with_months = p[0] >= MEMBER_RECORD_VERSION_LOTS
    cdef Py_ssize_t bucket_size = BUCKET_MONTH_SIZE if with_months else BUCKET_SIZE
    cdef uint32_t bucket_count = pl_get32(p + 81)
    cdef Py_ssize_t end = MEMBER_HEAD_SIZE + <Py_ssize_t>bucket_count * bucket_size
    if size < end or (not engaged and size != end):
        raise ValueError(f"member record of {size} bytes has a bad length")
    cdef uint64_t last_seq = pl_get64(p + 73)
    if last_seq > <uint64_t>INT64_MAX:
        raise ValueError(f"member record last entry seq {last_seq} is out of range")
    cdef MemberState state = MemberState.__new__(MemberState)
    state.balance = <int64_t>pl_get64(p + 1)
    state.debt = <int64_t>pl_get64(p + 9)
    state.tier_year = <int32_t>pl_get32(p + 17)
    state.spend_minor = <int64_t>pl_get64(p + 21)
    state.carried_rank = <int32_t>pl_get32(p + 29)
    state.earned = <int64_t>pl_get64(p + 33)
    state.redeemed = <int64_t>pl_get64(p + 41)
    state.expired = <int64_t>pl_get64(p + 49)
    state.clawed_back = <int64_t>pl_get64(p + 57)
    state.adjusted = <int64_t>pl_get64(p + 65)
    state.last_seq = <int64_t>last_seq
    # One spare slot: a decoded member is usually about to be credited.
    state._reserve(bucket_count + 1)
    p += MEMBER_HEAD_SIZE
    for index in range(bucket_count):
        state._buckets[index].instant = <int64_t>pl_get64(p)
        state._buckets[index].points = <int64_t>pl_get64(p + 8)
        state._buckets[index].month = <int32_t>pl_get32(p + 16) if with_months else 0
        p += bucket_size
    state._count = bucket_count
    if engaged and not _get_engagement(state, <const unsigned char*>PyBytes_AS_STRING(value) + end, size - end,
                                       with_months):
        state.engagement = Engagement.decode(value, end, with_months)  # its error, or the Python form
    return state



# --- the programme in C tables -----------------------------------------------------


@cython.final
cdef class _CategoryRule:
    cdef int64_t multiplier_bp
    cdef uint64_t promotion_mask  # bit i: promotion i's category filter matches


@cython.final
cdef class _Rules:
    """A CompiledProgram as C arrays. Programmes are immutable, so this is built once."""
    cdef object program
    cdef int64_t version
    cdef int64_t earn_points
    cdef int64_t earn_per_minor_units
    cdef int64_t max_points_per_purchase
    cdef int64_t expiry_months
    cdef int tier_count
    cdef int64_t tier_min_spend_minor[RULES_MAX]
    cdef int64_t tier_multiplier_bp[RULES_MAX]
    cdef int promotion_count
    cdef int64_t promotion_start_s[RULES_MAX]
    cdef int64_t promotion_end_s[RULES_MAX]
    cdef int64_t promotion_multiplier_bp[RULES_MAX]
    cdef int64_t promotion_bonus_points[RULES_MAX]
    cdef int64_t promotion_min_amount_minor[RULES_MAX]
    cdef uint64_t promotion_tier_mask[RULES_MAX]
    cdef dict categories  # category (str) -> _CategoryRule
    cdef bint engaged  # an engagement rule of §14 is on: purchases take the engaged path
    # The §17 rules, for the engaged path's C fast path (apply_engaged_fast).
    cdef int64_t welcome_bonus
    cdef int64_t pending_days
    cdef int64_t birthday_bp  # -1: no birthday rule
    cdef bint has_referral
    cdef int64_t referral_min_purchase_minor
    cdef bint needs_engagement  # milestones or pending days: a purchase keeps engagement state
    cdef bint engaged_in_c  # every §17 value in its validated range: the fast path may run
    cdef tuple milestones  # ((milestone key, by purchases, target, bonus points, rule ref_id), ...)
    # The milestones in C (engaged_in_c): keys, rule ref_ids (bytes, and str for the results), numbers.
    cdef int milestone_count
    cdef tuple milestone_keys
    cdef tuple milestone_rules
    cdef tuple milestone_rule_ids
    cdef bint milestone_by_purchases[RULES_MAX]
    cdef int64_t milestone_target[RULES_MAX]
    cdef int64_t milestone_bonus[RULES_MAX]
    cdef bint in_c  # every value in the validated ranges the 128-bit product relies on

    cdef _CategoryRule category_rule(self, category):
        cdef PyObject* found = PyDict_GetItem(self.categories, category)
        if found != NULL:
            return <_CategoryRule>found
        cdef _CategoryRule rule = _CategoryRule.__new__(_CategoryRule)
        bp = self.program.category_bp(category)
        # Outside the validated range the twin prices it (price sees in_c false).
        rule.multiplier_bp = bp if 0 <= bp <= limits.multiplier_bp_max else 0
        if rule.multiplier_bp != bp:
            self.in_c = False
        cdef uint64_t mask = 0
        cdef int index
        for index, promotion in enumerate(self.program.promotions):
            if promotion.categories is None or category in promotion.categories:
                mask |= (<uint64_t>1) << index
        rule.promotion_mask = mask
        if len(self.categories) >= 100_000:  # a bound, not a working size
            self.categories.clear()
        self.categories[category] = rule
        return rule

    cdef inline int tier_rank_for_spend(self, int64_t spend_minor) noexcept:
        cdef int rank = 0
        cdef int index
        for index in range(self.tier_count):
            if spend_minor >= self.tier_min_spend_minor[index]:
                rank = index
        return rank

    cdef inline int tier_rank(self, int64_t spend_minor, int64_t carried_rank) noexcept:
        cdef int rank = self.tier_rank_for_spend(spend_minor)
        cdef int64_t highest = self.tier_count - 1
        cdef int64_t carried = carried_rank if carried_rank < highest else highest
        return <int>carried if carried > rank else rank

    cdef int price(self, int64_t amount_minor, _CategoryRule category, int tier, int64_t time_s,
                   int64_t* points, int64_t extra_bp=-1) noexcept:
        """price_purchase in 128-bit integers: 0 with *points set, or 1 when the
        product overflows 128 bits or the points exceed int64 (the caller then
        takes the twin's exact Python-int path). extra_bp >= 0: the birthday factor."""
        if not self.in_c:
            return 1
        # amount <= 2^63, earn.points and every multiplier <= 10^6: these four
        # factors stay below 2^127; only further factors need an overflow check.
        cdef pl_u128 numerator = <pl_u128>amount_minor * <pl_u128>self.earn_points
        numerator *= <pl_u128>category.multiplier_bp
        numerator *= <pl_u128>self.tier_multiplier_bp[tier]
        cdef pl_u128 bonus = 0
        cdef int divisions = 2  # one per basis-point factor
        cdef int index
        cdef uint64_t factor
        if extra_bp >= 0:  # the twin multiplies it in before the promotions; the product is the same
            factor = <uint64_t>extra_bp
            if factor == 0:
                numerator = 0
            elif numerator > PL_U128_MAX / factor:
                return 1
            else:
                numerator *= factor
            divisions += 1
        for index in range(self.promotion_count):
            if not (self.promotion_start_s[index] <= time_s < self.promotion_end_s[index]):
                continue
            if not (category.promotion_mask >> index) & 1:
                continue
            if not (self.promotion_tier_mask[index] >> tier) & 1:
                continue
            if amount_minor < self.promotion_min_amount_minor[index]:
                continue
            factor = <uint64_t>self.promotion_multiplier_bp[index]
            if factor == 0:
                numerator = 0
            elif numerator > PL_U128_MAX / factor:
                return 1
            else:
                numerator *= factor
            bonus += <pl_u128>self.promotion_bonus_points[index]
            divisions += 1
        # floor(n / (per x 10000^k)) as successive floors: exact for non-negative integers.
        cdef pl_u128 quotient
        cdef uint64_t small
        if pl_u128_fits_u64(numerator):
            small = <uint64_t>numerator / <uint64_t>self.earn_per_minor_units
            while divisions and small:
                small /= BASIS_POINTS_PER_UNIT
                divisions -= 1
            quotient = small
        else:
            quotient = numerator / <pl_u128>self.earn_per_minor_units
            while divisions and quotient:
                quotient /= BASIS_POINTS_PER_UNIT
                divisions -= 1
        quotient += bonus
        if self.max_points_per_purchase and quotient > <pl_u128>self.max_points_per_purchase:
            quotient = <pl_u128>self.max_points_per_purchase
        if quotient > <pl_u128>INT64_MAX:
            return 1
        points[0] = <int64_t>quotient
        return 0


cdef dict _RULES = {}  # id(program) -> _Rules; the _Rules holds the programme, so ids stay unique


cdef _Rules _rules_for(program):
    cdef PyObject* found = PyDict_GetItem(_RULES, id(program))
    if found != NULL and (<_Rules>found).program is program:
        return <_Rules>found
    cdef _Rules rules = _Rules.__new__(_Rules)
    cdef int index
    rules.program = program
    rules.version = program.version
    rules.earn_points = program.earn_points
    rules.earn_per_minor_units = program.earn_per_minor_units
    rules.max_points_per_purchase = program.max_points_per_purchase
    rules.expiry_months = program.expiry_months
    rules.engaged = program.engaged
    birthday = program.birthday_multiplier_bp
    rules.engaged_in_c = (
        0 <= program.welcome_bonus <= limits.bonus_points_max
        and 0 <= program.pending_days <= limits.pending_days_max
        and (birthday is None or limits.multiplier_bp_min <= birthday <= limits.multiplier_bp_max)
        and (program.referral is None
             or (0 <= program.referral.referrer_points <= limits.bonus_points_max
                 and 0 <= program.referral.referee_points <= limits.bonus_points_max
                 and INT64_MIN <= program.referral.min_purchase_minor <= INT64_MAX))
        and len(program.milestones) <= RULES_MAX
        and all(0 <= milestone.target <= INT64_MAX and 0 <= milestone.bonus_points <= limits.bonus_points_max
                for milestone in program.milestones)
    )
    if rules.engaged_in_c:
        rules.welcome_bonus = program.welcome_bonus
        rules.pending_days = program.pending_days
        rules.birthday_bp = -1 if birthday is None else birthday
        rules.milestone_count = len(program.milestones)
        rules.milestone_keys = tuple(milestone.milestone_id.encode() for milestone in program.milestones)
        rules.milestone_rules = tuple(_engagement.MILESTONE_RULE + key for key in rules.milestone_keys)
        rules.milestone_rule_ids = tuple(key.decode() for key in rules.milestone_rules)
        for index, milestone in enumerate(program.milestones):
            rules.milestone_by_purchases[index] = milestone.kind == "purchases"
            rules.milestone_target[index] = milestone.target
            rules.milestone_bonus[index] = milestone.bonus_points
    rules.has_referral = program.referral is not None
    if rules.has_referral and rules.engaged_in_c:
        rules.referral_min_purchase_minor = program.referral.min_purchase_minor
    rules.needs_engagement = bool(program.milestones or program.pending_days)
    rules.milestones = tuple(
        (milestone.milestone_id.encode(), milestone.kind == "purchases", milestone.target,
         milestone.bonus_points, _engagement.MILESTONE_RULE + milestone.milestone_id.encode())
        for milestone in program.milestones
    )
    if len(program.tier_names) > RULES_MAX or len(program.promotions) > RULES_MAX:
        raise RuntimeError("a programme with more than 64 tiers or promotions passed validation")
    rules.tier_count = len(program.tier_names)
    for index in range(rules.tier_count):
        rules.tier_min_spend_minor[index] = program.tier_min_spend_minor[index]
        rules.tier_multiplier_bp[index] = program.tier_multiplier_bp[index]
    rules.promotion_count = len(program.promotions)
    for index, promotion in enumerate(program.promotions):
        rules.promotion_start_s[index] = promotion.start_s
        rules.promotion_end_s[index] = promotion.end_s
        rules.promotion_multiplier_bp[index] = promotion.multiplier_bp
        rules.promotion_bonus_points[index] = promotion.bonus_points
        rules.promotion_min_amount_minor[index] = promotion.min_amount_minor
        rules.promotion_tier_mask[index] = promotion.tier_mask
    rules.categories = {}
    # Compiled programmes are validated (program.py); anything else is priced by the twin.
    rules.in_c = (
        limits.earn_value_min <= program.earn_points <= limits.earn_value_max
        and limits.earn_value_min <= program.earn_per_minor_units <= limits.earn_value_max
        and 0 <= program.max_points_per_purchase <= INT64_MAX
        and all(limits.multiplier_bp_min <= bp <= limits.multiplier_bp_max for bp in program.tier_multiplier_bp)
        and all(limits.multiplier_bp_min <= promotion.multiplier_bp <= limits.multiplier_bp_max
                and 0 <= promotion.bonus_points <= INT64_MAX for promotion in program.promotions)
    )
    if len(_RULES) >= 64:  # programmes are reloaded after a failed write; keep this bounded
        _RULES.clear()
    _RULES[id(program)] = rules
    return rules


def price_purchase(program, amount_minor, category, tier, time_s, extra_bp=None):
    """Points for one purchase (§3): exact integers, one floor, cap after bonuses."""
    cdef int64_t points
    cdef _Rules rules
    if (extra_bp is None and type(amount_minor) is int and type(tier) is int and type(time_s) is int
            and PyUnicode_CheckExact(category)
            and 0 <= amount_minor <= INT64_MAX and INT64_MIN <= time_s <= INT64_MAX):
        rules = _rules_for(program)
        if 0 <= tier < rules.tier_count:
            if rules.price(amount_minor, rules.category_rule(category), tier, time_s, &points) == 0:
                return points
    # Huge products, points past int64, unusual argument types and an extra factor: the twin's Python ints.
    return _py_price_purchase(program, amount_minor, category, tier, time_s, extra_bp)


# --- validation in C -----------------------------------------------------------------


cdef inline bint _clean_id(const char* data, Py_ssize_t size, Py_ssize_t max_bytes) noexcept:
    cdef Py_ssize_t index
    cdef unsigned char byte
    if size < 1 or size > max_bytes:
        return False
    for index in range(size):
        byte = <unsigned char>data[index]
        if byte < 0x20 or byte == 0x7F:
            return False
    return True


cdef bytes _id_key(object value, str field, Py_ssize_t max_bytes):
    """validate_id for an exact str in C; anything else (and every refusal) goes to the twin."""
    cdef Py_ssize_t size
    cdef const char* data
    if PyUnicode_CheckExact(value):
        data = PyUnicode_AsUTF8AndSize(value, &size)
        if data == NULL:
            PyErr_Clear()
        elif _clean_id(data, size, max_bytes):
            return PyBytes_FromStringAndSize(data, size)
    return validate_id(field, value, max_bytes)


cdef int64_t _int_of(object value, str field, int64_t low, int64_t high) except? -1:
    """validate_int: exact ints in C; numpy scalars, bools, floats and refusals via the twin."""
    cdef int overflow = 0
    cdef long long number
    if PyLong_CheckExact(value):
        number = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and low <= number <= high:
            return number
    return validate_int(field, value, low, high)


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


cdef int64_t _batch_serial = 0


@cython.final
cdef class _Batch:
    """The writer's state for one apply_purchases call, held in C between items.

    Journal values, order values, member states and new members go straight
    into the writer's own containers, as the twin's writer calls would put
    them. Counters, expiry deltas and next_seq are summed in C and handed back
    to the writer when the day changes and in `finish`, so the writer ends the
    batch exactly as the twin leaves it.
    """
    cdef object writer
    cdef object txn_get
    cdef object orders_db
    cdef object members_db
    cdef dict orders
    cdef MemberCache members
    # Every member stored in the transaction is in writer.members: a key not
    # there is a new member, without an LMDB lookup (a fresh or warm store).
    cdef bint members_complete
    cdef dict dirty_members
    cdef dict day_deltas
    cdef dict store_category_codes
    cdef dict new_categories
    cdef dict categories  # category str -> _Category, for this batch
    cdef dict profile_cache  # the store's member key -> birthday (engagement.birthday_bp)
    cdef bint writer_engaged  # writer.engaged set by this batch
    cdef bint profiles_complete  # profile_cache holds every member with a profile
    cdef int64_t profile_generation  # store.profile_generation: MemberState._profile_stamp is valid at it
    cdef object referee_keys  # a set holding at least every referee, or None
    cdef dict referees_overlay
    cdef object referees_db
    cdef dict referrals_overlay
    cdef set settled_referees  # referees whose referral this batch found or made settled
    cdef object referrals_db
    # Members of the current chunk of items, looked up ahead (resolve_chunk):
    # the key of a valid member id, its MemberState if in writer.members (owned, or NULL).
    cdef PyObject* chunk_keys[CHUNK_ITEMS]
    cdef PyObject* chunk_states[CHUNK_ITEMS]
    cdef const char* chunk_data[CHUNK_ITEMS]  # the valid member id's UTF-8 (in the column's str), else NULL
    cdef Py_ssize_t chunk_sizes[CHUNK_ITEMS]
    cdef Py_hash_t chunk_hashes[CHUNK_ITEMS]
    cdef CacheSlot* chunk_found[CHUNK_ITEMS]  # the member's cache slot (stable until a member is added)
    cdef int chunk_size  # slots that may hold references
    cdef int64_t serial  # this batch's number, for MemberState._dirty_batch
    cdef list journal_values
    cdef list tier_ranks  # writer.tier_ranks (the what-if): the tier of each applied purchase
    cdef object orders_kept  # writer.orders_kept (the what-if): None, or the only orders whose record is written
    cdef list totals_list
    cdef int64_t next_seq
    cdef int64_t new_member_count
    cdef int64_t totals[COUNTER_COUNT]
    cdef int64_t day
    cdef bint day_touched
    cdef int64_t day_counts[COUNTER_COUNT]
    cdef _ExpiryDeltas expiry_deltas
    # The programme in force over [program_from_s, program_until_s).
    cdef _Rules rules
    cdef int64_t program_from_s
    cdef int64_t program_until_s
    # Calendar of the last event's day.
    cdef int64_t calendar_day
    cdef int64_t calendar_year
    cdef int32_t calendar_month  # the issue month (§19) of calendar_day
    cdef int64_t day_amount  # purchase amounts of `day` (§19), folded with the day counters
    cdef _MonthSums day_expired  # points expired on `day` by issue month (§19), folded likewise
    # writer.count_bonus, summed here: BONUS points of `day` not yet folded, and
    # writer.stored_bonus_total() with this batch's bonuses (valid when bonus_known).
    cdef int64_t day_bonus
    cdef int64_t bonus_total
    cdef bint bonus_known
    cdef bint bonus_counted  # bonus_total is ahead of writer.bonus_total
    cdef dict amount_day_deltas
    cdef int64_t instant_day
    cdef int64_t instant_months
    cdef int64_t instant
    # Every order key above this one is unknown to the store and to this batch:
    # ascending order ids need neither a dict nor an LMDB lookup.
    cdef bytes order_key_max
    cdef bint order_key_max_known
    # writer.check_orders false: an order id absent from the overlay is taken as
    # new without an LMDB lookup (about a microsecond each for random ids) and
    # listed in writer.unchecked_order_keys; flush proves them new or the batch
    # is run again with check_orders (writer.OrdersConflict).
    cdef bint check_orders
    cdef bint order_unchecked  # the last order_of skipped the store lookup
    cdef list unchecked_order_keys
    # Columns.
    cdef object order_ids
    cdef object member_ids
    cdef object amounts_minor
    cdef object categories_column
    cdef object times_s
    cdef int order_ids_kind
    cdef int member_ids_kind
    cdef int categories_kind
    cdef const int64_t[:] amounts_view
    cdef const int64_t[:] times_view
    cdef bint amounts_typed
    cdef bint times_typed

    cdef int start(self, writer, order_ids, member_ids, amounts_minor, categories, times_s,
                   Py_ssize_t count) except -1:
        cdef int index
        self.writer = writer
        txn = writer.txn
        dbs = writer.dbs
        self.txn_get = txn.get
        self.orders_db = dbs[DB_ORDERS]
        self.members_db = dbs[DB_MEMBERS]
        self.orders = writer.overlay[DB_ORDERS]
        if not self.orders and count >= ORDERS_PRESIZE_MIN:
            # An empty overlay about to take up to `count` orders: sized once,
            # not grown (and rehashed) a dozen times.
            self.orders = _PyDict_NewPresized(count)
            writer.overlay[DB_ORDERS] = self.orders
        members = writer.members
        if type(members) is not MemberCache:
            # A store opened with another engine first (or a writer's own dict): the
            # Cython engine keeps its members in a MemberCache, the same for everyone.
            cache = MemberCache()
            cache.update(members)
            writer.members = writer.store.member_cache = members = cache
        self.members = members
        # The cache holds stored members and this writer's new ones only (it is
        # dropped whenever a transaction fails after changing it), so when its
        # stored part is as large as the sub-database, it is all of it.
        self.members_complete = (
            len(self.members) - writer.new_member_count == txn.stat(self.members_db)["entries"]
        )
        if writer.dirty_members is not None and not writer.dirty_members and count >= ORDERS_PRESIZE_MIN:
            # Likewise for the members it will mark dirty (at most one per purchase);
            # None is the what-if's scratch, which marks none (simulate/scratch.py).
            writer.dirty_members = _PyDict_NewPresized(count)
        self.dirty_members = writer.dirty_members
        self.day_deltas = writer.day_deltas
        self.amount_day_deltas = writer.amount_day_deltas
        self.day_amount = 0
        self.day_expired = _MonthSums.__new__(_MonthSums)
        self.day_bonus = 0
        self.bonus_known = False
        self.bonus_counted = False
        self.store_category_codes = writer.store.category_codes
        self.new_categories = writer.new_categories
        self.categories = {}
        _engagement.prepare_lookups(writer, count)
        self.profile_cache = writer.store.profile_cache
        self.profiles_complete = writer.store.profiles_complete
        self.profile_generation = getattr(writer.store, "profile_generation", 0)  # 0: nothing stamped
        self.referee_keys = writer.store.referee_keys
        self.writer_engaged = False
        self.referees_overlay = writer.overlay[DB_REFEREES]
        self.referees_db = dbs.get(DB_REFEREES)
        self.referrals_overlay = writer.overlay[DB_REFERRALS]
        self.referrals_db = dbs.get(DB_REFERRALS)
        self.settled_referees = set()
        global _batch_serial
        _batch_serial += 1
        self.serial = _batch_serial
        self.journal_values = writer.journal_values
        # Only bytes go in: no cycle through it, and the first collection after
        # the batch would otherwise visit every value (a few % of a backfill).
        PyObject_GC_UnTrack(<PyObject*>self.journal_values)
        self.tier_ranks = getattr(writer, "tier_ranks", None)
        self.orders_kept = getattr(writer, "orders_kept", None)
        self.totals_list = writer.totals
        self.next_seq = writer.next_seq
        self.new_member_count = 0
        for index in range(COUNTER_COUNT):
            self.totals[index] = self.totals_list[index]
            self.day_counts[index] = 0
        self.day = INT64_MIN
        self.day_touched = False
        self.expiry_deltas = _deltas_into(writer.expiry_deltas)
        self.rules = None
        self.program_from_s = 0
        self.program_until_s = 0  # empty: the first item looks the programme up
        self.calendar_day = INT64_MIN
        self.instant_day = INT64_MIN
        # With orders already in the overlay (several calls in one writer, the
        # service's group commit) every order id is looked up.
        self.order_key_max_known = not self.orders
        self.check_orders = getattr(writer, "check_orders", True)
        self.order_unchecked = False
        self.unchecked_order_keys = writer.unchecked_order_keys if not self.check_orders else None
        if self.order_key_max_known:
            cursor = txn.cursor(db=self.orders_db)
            self.order_key_max = cursor.key() if cursor.last() else b""
        self.order_ids, self.order_ids_kind = order_ids, _column_kind(order_ids)
        self.member_ids, self.member_ids_kind = member_ids, _column_kind(member_ids)
        self.categories_column, self.categories_kind = categories, _column_kind(categories)
        self.amounts_minor = amounts_minor
        self.times_s = times_s
        # int64 buffers (numpy int64 arrays) are read in C; anything else is
        # indexed item by item like the twin does, and refused the same way.
        self.amounts_typed = False
        if PyObject_CheckBuffer(amounts_minor):
            try:
                self.amounts_view = amounts_minor
                self.amounts_typed = self.amounts_view.shape[0] >= count
            except (TypeError, ValueError, BufferError):  # another item type: indexed
                pass
        self.times_typed = False
        if PyObject_CheckBuffer(times_s):
            try:
                self.times_view = times_s
                self.times_typed = self.times_view.shape[0] >= count
            except (TypeError, ValueError, BufferError):
                pass
        return 0

    def __dealloc__(self):
        self.clear_chunk()

    cdef void clear_chunk(self) noexcept:
        cdef int slot
        for slot in range(self.chunk_size):
            Py_XDECREF(self.chunk_keys[slot])
            Py_XDECREF(self.chunk_states[slot])
            self.chunk_keys[slot] = NULL
            self.chunk_states[slot] = NULL
        self.chunk_size = 0

    cdef int resolve_chunk(self, Py_ssize_t start, Py_ssize_t end) except -1:
        """Look the members of items [start, end) up before applying them.

        The member cache is large and cold. Lookups for different items do not
        depend on each other, so in this tight loop the CPU overlaps their cache
        misses, where the purchase loop would wait for each in turn. A chunk is
        small enough that what it touches is still cached when it is applied.
        Only a lookup, without writer.member's side effect: an item without a
        state here takes the normal path.
        """
        cdef Py_ssize_t index, size
        cdef const char* data
        cdef PyObject* member_id
        cdef int slot
        cdef CacheSlot* found
        cdef MemberCache members = self.members
        self.clear_chunk()
        self.chunk_size = <int>(end - start)
        if self.member_ids_kind != COLUMN_LIST:
            return 0
        column = self.member_ids
        # First pass: each valid id's bytes and hash, and its slot fetched ahead.
        for index in range(start, end):
            slot = <int>(index - start)
            self.chunk_data[slot] = NULL
            if index >= PyList_GET_SIZE(column):
                break
            if index + 8 < PyList_GET_SIZE(column):
                pl_prefetch(PyList_GET_ITEM(column, index + 8))
            member_id = PyList_GET_ITEM(column, index)
            if not PyUnicode_CheckExact(<object>member_id):
                continue
            data = PyUnicode_AsUTF8AndSize(<object>member_id, &size)
            if data == NULL:
                PyErr_Clear()
                continue
            if not _clean_id(data, size, ID_BYTES_MAX):
                continue
            self.chunk_data[slot] = data
            self.chunk_sizes[slot] = size
            self.chunk_hashes[slot] = _Py_HashBytes(data, size)
            pl_prefetch(members.slot_of(self.chunk_hashes[slot]))
        # Second pass: the probes; the key and state of a member found are fetched ahead.
        for slot in range(end - start):
            if self.chunk_data[slot] != NULL:
                found = members.find(self.chunk_data[slot], self.chunk_sizes[slot], self.chunk_hashes[slot])
                self.chunk_found[slot] = found
                if found != NULL:
                    pl_prefetch(found.key)
                    pl_prefetch(found.value)
        # Third pass: a cached member lends its key; a new one gets a key made here.
        for slot in range(end - start):
            data = self.chunk_data[slot]
            if data == NULL:
                continue
            found = self.chunk_found[slot]
            if found != NULL:
                Py_INCREF(<object>found.key)
                self.chunk_keys[slot] = found.key
                if type(<object>found.value) is MemberState:
                    Py_INCREF(<object>found.value)
                    self.chunk_states[slot] = found.value
            else:
                key = PyBytes_FromStringAndSize(data, self.chunk_sizes[slot])
                Py_INCREF(key)
                self.chunk_keys[slot] = <PyObject*>key
        return 0

    cdef int finish(self) except -1:
        cdef int index
        self.fold_day()
        self.expiry_deltas.fold()
        self.writer.next_seq = self.next_seq
        for index in range(COUNTER_COUNT):
            self.totals_list[index] = self.totals[index]
        if self.new_member_count:
            self.writer.new_member_count += self.new_member_count
            self.new_member_count = 0
        if self.bonus_counted:
            self.writer.bonus_total = self.bonus_total
            self.bonus_counted = False
        return 0

    # --- writer.count, summed per day ------------------------------------------

    cdef inline void count(self, int counter, int64_t delta) noexcept:
        self.day_counts[counter] += delta
        self.totals[counter] += delta
        self.day_touched = True

    cdef int fold_day(self) except -1:
        cdef int index
        if not self.day_touched:
            return 0
        day = self.day
        deltas = self.day_deltas.get(day)
        if deltas is None:
            deltas = self.day_deltas[day] = [0] * COUNTER_COUNT
        for index in range(COUNTER_COUNT):
            if self.day_counts[index]:
                deltas[index] += self.day_counts[index]
                self.day_counts[index] = 0
        if self.day_amount:
            self.amount_day_deltas[day] = self.amount_day_deltas.get(day, 0) + self.day_amount
            self.day_amount = 0
        if self.day_bonus:
            bonus_deltas = self.writer.bonus_day_deltas
            bonus_deltas[day] = bonus_deltas.get(day, 0) + self.day_bonus
            self.day_bonus = 0
        cdef dict expired
        if self.day_expired.size or self.day_expired.overflow is not None:
            expired = {}
            self.day_expired.fold(expired)
            self.writer.count_taken(day * SECONDS_PER_DAY, COHORT_EXPIRED, expired)
        self.day_touched = False
        return 0

    cdef inline void enter_calendar(self, int64_t day) noexcept:
        """The year and issue month of the event's day, computed once per day."""
        cdef int64_t year, month, day_of_month
        if day != self.calendar_day:
            _civil_from_days(day, &year, &month, &day_of_month)
            self.calendar_day = day
            self.calendar_year = year
            self.calendar_month = <int32_t>(year * 12 + month - 1)



    cdef inline int enter_day(self, int64_t day) except -1:
        if day != self.day:
            self.fold_day()
            self.day = day
        return 0

    cdef inline int64_t append_entry(self, int kind, int64_t points, MemberState state, bytes member_key,
                                     bytes ref_key, int64_t time_s) except -1:
        cdef int64_t seq = self.next_seq
        self.journal_values.append(_encode_entry(
            kind, points, state.balance, time_s, self.rules.version, state.last_seq, member_key, ref_key,
        ))
        state.last_seq = seq
        self.next_seq = seq + 1
        return seq

    # --- lookups ---------------------------------------------------------------

    cdef int select_program(self, int64_t time_s) except -1:
        program = self.writer.program_at(time_s)
        if program is None:
            raise FailedPrecondition("no programme is set: set one before recording purchases")
        self.rules = _rules_for(program)
        store = self.writer.store
        programs, starts = store.programs, store.program_starts
        index = program.version - 1
        if 0 <= index < len(programs) and programs[index] is program and len(starts) == len(programs):
            self.program_from_s = starts[index] if index > 0 else INT64_MIN
            self.program_until_s = starts[index + 1] if index + 1 < len(starts) else INT64_MAX
        else:  # not a stored version: ask again for the next event time
            self.program_from_s = time_s
            self.program_until_s = time_s + 1
        return 0

    cdef _Category category_of(self, object value):
        cdef PyObject* found
        cdef _Category category
        if PyUnicode_CheckExact(value):
            found = PyDict_GetItem(self.categories, value)
            if found != NULL:
                return <_Category>found
        category = _Category.__new__(_Category)
        category.key = _id_key(value, "category", CATEGORY_BYTES_MAX)
        code = self.store_category_codes.get(category.key)
        if code is None:
            code = self.new_categories.get(category.key)
        category.code = -1 if code is None else code
        if PyUnicode_CheckExact(value):
            self.categories[value] = category
        return category

    cdef object order_of(self, bytes order_key):
        """writer.get(DB_ORDERS, key): the overlay, then the transaction (unless unchecked)."""
        self.order_unchecked = False
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            return None
        cdef PyObject* found = PyDict_GetItem(self.orders, order_key)
        if found != NULL:
            return <object>found
        if not self.check_orders:
            self.order_unchecked = True
            return None
        return self.txn_get(order_key, None, self.orders_db)

    cdef MemberState member_of(self, bytes member_key):
        """writer.member(key): the cache, then the transaction; None for an unknown member."""
        cdef CacheSlot* found = self.members.find_key(member_key)
        if found != NULL:
            return <MemberState?>found.value
        if self.members_complete:
            return None
        value = self.txn_get(member_key, None, self.members_db)
        if value is None:
            return None
        cdef MemberState state = _decode_member(value if PyBytes_CheckExact(value) else bytes(value))
        self.members.put(member_key, state)
        return state

    cdef inline int mark_dirty(self, bytes member_key, MemberState state) except -1:
        # writer.mark_dirty once per member and batch; later purchases find it there.
        if state._dirty_batch != self.serial:
            if self.dirty_members is not None:  # None: the what-if writes no member record
                PyDict_SetItem(self.dirty_members, member_key, state)
            state._dirty_batch = self.serial
        return 0

    cdef inline int64_t expiry_instant(self, int64_t day, int64_t expiry_months) noexcept:
        if day != self.instant_day or expiry_months != self.instant_months:
            self.instant = _expiry_instant_of_day(day, expiry_months)
            self.instant_day = day
            self.instant_months = expiry_months
        return self.instant

    # --- one purchase (_apply_purchase) ------------------------------------------

    cdef object apply(self, Py_ssize_t index, int slot, object order_id, object member_id,
                      object amount_item, object category_item, object time_item):
        """Fields, id already used and programme, in the twin's order; then the member."""
        cdef bytes order_key = _id_key(order_id, "order_id", ID_BYTES_MAX)
        cdef bytes member_key
        if self.chunk_keys[slot] != NULL:  # valid, looked up by resolve_chunk
            member_key = <bytes>self.chunk_keys[slot]
        else:
            member_key = _id_key(member_id, "member_id", ID_BYTES_MAX)
        cdef int64_t amount_minor
        if self.amounts_typed:
            amount_minor = self.amounts_view[index]
            if not (AMOUNT_MIN <= amount_minor <= AMOUNT_MAX):
                validate_int("amount_minor", PyObject_GetItem(self.amounts_minor, index), AMOUNT_MIN, AMOUNT_MAX)
        else:
            amount_minor = _int_of(amount_item, "amount_minor", AMOUNT_MIN, AMOUNT_MAX)
        cdef _Category category = self.category_of(category_item)
        cdef int64_t time_s
        if self.times_typed:
            time_s = self.times_view[index]
            if not (TIME_MIN <= time_s <= TIME_MAX):
                validate_int("time_s", PyObject_GetItem(self.times_s, index), TIME_MIN, TIME_MAX)
        else:
            time_s = _int_of(time_item, "time_s", TIME_MIN, TIME_MAX)

        existing = self.order_of(order_key)
        if existing is not None:
            # It reads the journal up to writer.next_seq: the bonuses of an order applied in this batch.
            self.writer.next_seq = self.next_seq
            return _duplicate_purchase(
                self.writer, order_id, existing, member_key, amount_minor, category.key, time_s,
            )
        if not self.order_unchecked:
            return self.apply_new(slot, order_key, member_key, amount_minor, category, category_item, time_s)
        try:
            return self.apply_new(slot, order_key, member_key, amount_minor, category, category_item, time_s)
        except LedgerError:
            # A careful run would have found a stored order first: answer as it would.
            existing = self.txn_get(order_key, None, self.orders_db)
            if existing is None:
                raise
            self.writer.next_seq = self.next_seq
            return _duplicate_purchase(
                self.writer, order_id, existing, member_key, amount_minor, category.key, time_s,
            )

    cdef object apply_new(self, int slot, bytes order_key, bytes member_key, int64_t amount_minor,
                          _Category category, object category_item, int64_t time_s):
        """An order id not used before: the programme, then the member."""
        if not (self.program_from_s <= time_s < self.program_until_s):
            self.select_program(time_s)
        if category.rules is not self.rules:
            category.rule = self.rules.category_rule(category_item)
            category.rules = self.rules
        cdef MemberState state
        if self.chunk_states[slot] != NULL:
            state = <MemberState>self.chunk_states[slot]
        else:
            state = self.member_of(member_key)
        if self.rules.engaged or (state is not None and state._engaged):
            return self.apply_engaged_fast(state, order_key, member_key, amount_minor, category, category_item,
                                           time_s)
        return self.earn(state, order_key, member_key, amount_minor, category, category_item, time_s)

    cdef object apply_engaged(self, bytes order_key, bytes member_key, int64_t amount_minor,
                              _Category category, object category_item, int64_t time_s):
        """The twin's engagement path (engagement.apply_purchase), on the writer's own state.

        The batch hands its C-side sums to the writer first and takes the
        writer's back after, so both see every entry in order.
        """
        self.finish()
        try:
            result = _engagement.apply_purchase(
                self.writer, order_key, member_key, amount_minor, category.key, category_item, time_s,
                self.rules.program,
            )
        finally:
            self.resume()
        if self.order_unchecked:
            self.unchecked_order_keys.append(order_key)
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            self.order_key_max = order_key
        return result

    cdef object apply_engaged_fast(self, MemberState state, bytes order_key, bytes member_key,
                                   int64_t amount_minor, _Category category, object category_item,
                                   int64_t time_s):
        """engagement.apply_purchase in C for the usual case, on the batch's own sums.

        The usual case: no member whose purchase count must first be read from
        its journal, no engagement state that does not fit the C fields, points
        priced in C. Anything else is handed to the twin's code (apply_engaged)
        before any change, so both engines run one specification. The member's
        engagement state is its C fields (MemberState): no Python object per purchase.
        """
        cdef _Rules rules = self.rules
        cdef bint is_new = state is None
        if not rules.engaged_in_c or (not is_new and not state._in_c()):
            return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
        program = rules.program
        cdef int64_t day = _floor_div(time_s, SECONDS_PER_DAY)
        self.enter_calendar(day)
        cdef int64_t year = self.calendar_year
        cdef bint engaged = not is_new and state._engaged
        # Points of pending lots that expire now (engagement.due_points).
        cdef int64_t lots_due = state._lots_due(time_s) if engaged else 0
        referral = None
        cdef bint referral_done = not is_new and state._referral_done
        if rules.has_referral and not referral_done:
            if self.maybe_referred(member_key):
                referral = self.open_referral(member_key, amount_minor, time_s)
                referral_done = referral is None and member_key in self.settled_referees
            else:
                referral_done = True
        if is_new:
            state = MemberState.__new__(MemberState)
            state.tier_year = year
        state._referral_done = referral_done
        cdef pl_i128 due = <pl_i128>state._due_points(time_s) + lots_due
        cdef int64_t tier_year = state.tier_year
        cdef int64_t spend = state.spend_minor
        cdef int64_t carried = state.carried_rank
        if year > tier_year:
            carried = rules.tier_rank_for_spend(spend) if year == tier_year + 1 else 0
            tier_year = year
            spend = 0
        cdef int tier = rules.tier_rank(spend, carried)
        cdef int64_t extra_bp = -1
        cdef int64_t month, day_of_month, year_unused
        if rules.birthday_bp >= 0:
            if self.birthday_month(state, member_key):
                _civil_from_days(day, &year_unused, &month, &day_of_month)
                if state._birthday_month == month:
                    extra_bp = rules.birthday_bp
        cdef int64_t points
        if rules.price(amount_minor, category.rule, tier, time_s, &points, extra_bp) != 0:
            return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
        cdef bint counts_towards_year = year == tier_year
        # _own_bonuses: the purchaser's bonuses in §17 order (rule ref_ids as bytes and as str,
        # borrowed from the rules or from referral_rule), and the milestones reached.
        cdef PyObject* own_rules[OWN_MAX]
        cdef PyObject* own_rule_ids[OWN_MAX]
        cdef int64_t own_points[OWN_MAX]
        cdef int own_count = 0
        cdef int reached[RULES_MAX]
        cdef int reached_count = 0
        cdef pl_i128 own_total = 0
        cdef int index
        if is_new and rules.welcome_bonus:
            own_rules[0] = <PyObject*>WELCOME_RULE
            own_rule_ids[0] = <PyObject*>WELCOME_RULE_ID
            own_points[0] = rules.welcome_bonus
            own_count = 1
            own_total += rules.welcome_bonus
        referral_rule = None
        referral_rule_id = None
        referee_points = program.referral.referee_points if referral is not None else 0
        if referee_points:
            referral_rule = _engagement.REFERRAL_RULE + referral[0]
            referral_rule_id = referral_rule.decode()
            own_rules[own_count] = <PyObject*>referral_rule
            own_rule_ids[own_count] = <PyObject*>referral_rule_id
            own_points[own_count] = referee_points
            own_count += 1
            own_total += <int64_t>referee_points
        cdef bint start_engagement = False
        if not engaged and (rules.needs_engagement or own_count):
            if not is_new and tier_year == state.tier_year:  # its count is in its journal: the twin's path
                return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
            start_engagement = True  # Engagement(tier_year)
        cdef int64_t purchases
        cdef pl_i128 progress
        cdef pl_i128 spend_after = <pl_i128>spend + amount_minor
        cdef tuple already = ()
        if counts_towards_year and rules.milestone_count:
            purchases = 1
            if engaged and state._year == tier_year:
                already = state._reached
                purchases = state._purchases + 1
            for index in range(rules.milestone_count):
                if PyTuple_GET_SIZE(already) and <object>PyTuple_GET_ITEM(rules.milestone_keys, index) in already:
                    continue
                progress = purchases if rules.milestone_by_purchases[index] else spend_after
                if progress >= rules.milestone_target[index]:
                    reached[reached_count] = index
                    reached_count += 1
                    if rules.milestone_bonus[index]:
                        own_rules[own_count] = PyTuple_GET_ITEM(rules.milestone_rules, index)
                        own_rule_ids[own_count] = PyTuple_GET_ITEM(rules.milestone_rule_ids, index)
                        own_points[own_count] = rules.milestone_bonus[index]
                        own_count += 1
                        own_total += rules.milestone_bonus[index]
        if <pl_i128>state.balance - due + points + own_total > INT64_MAX:
            raise InvalidArgument("balance", (<object>state.balance) - <int64_t>due + points + <int64_t>own_total,
                                  "the balance would overflow int64")
        # _referrer_of: the referrer paid by this purchase, and its int64 check.
        cdef MemberState referrer = None
        cdef int64_t referrer_points = 0
        cdef pl_i128 referrer_due
        if referral is not None and program.referral.referrer_points:
            referrer_points = program.referral.referrer_points
            referrer_key = referral[1][2]
            referrer = self.member_of(referrer_key)
            if referrer is None or referrer is state or referrer_key == member_key or not referrer._in_c():
                return self.apply_engaged(order_key, member_key, amount_minor, category, category_item, time_s)
            referrer_due = <pl_i128>referrer._due_points(time_s) + referrer._lots_due(time_s)
            if <pl_i128>referrer.balance - referrer_due + referrer_points > INT64_MAX:
                raise InvalidArgument(
                    "balance", (<object>referrer.balance) - <int64_t>referrer_due + referrer_points,
                    "the referrer's balance would overflow int64",
                )
        if (<pl_i128>self.totals[COUNTER_EARNED] + self.totals[COUNTER_ADJUSTED_POSITIVE] + points + own_total
                + referrer_points + self.stored_bonus() > INT64_MAX):
            self.finish()  # the writer's totals are current for its own check
            self.writer.check_credit(points + <int64_t>own_total + referrer_points)
        if category.code < 0:
            self.writer.check_category(category.key)
        if counts_towards_year and spend > INT64_MAX - amount_minor:
            raise InvalidArgument("amount_minor", amount_minor, "the member's spend would overflow int64")

        # Every check passed: from here on the purchase is applied.
        if self.tier_ranks is not None:
            self.tier_ranks.append(tier)
        if not self.writer_engaged:
            self.writer.engaged = True
            self.writer_engaged = True
        if is_new:
            self.members.put(member_key, state)  # as the plain path: no mapping wrapper
            self.mark_dirty(member_key, state)
            self.new_member_count += 1
        if start_engagement:
            state._start_engagement(tier_year, 0)
        self.enter_day(day)
        cdef int64_t expired = 0
        if state._count and state._buckets[0].instant <= time_s:
            expired = state._expire_due(time_s, self.expiry_deltas, self.day_expired)
        if lots_due:  # engagement.expire_due: the due lots join the same EXPIRE entry
            state._expire_lots(time_s, self.expiry_deltas, self.day_expired)
            state.balance -= lots_due
            state.expired += lots_due
            expired += lots_due
        if expired:
            self.append_entry(KIND_EXPIRE, -expired, state, member_key, order_key, time_s)
            self.count(COUNTER_EXPIRED, expired)
        if state._lot_count:
            state._release_lots(time_s, self.expiry_deltas)
        self.day_amount += amount_minor
        state.tier_year = tier_year
        state.spend_minor = spend
        state.carried_rank = carried
        cdef int64_t instant = self.expiry_instant(day, rules.expiry_months) if rules.expiry_months else NEVER_S
        cdef int64_t release_s = time_s + rules.pending_days * SECONDS_PER_DAY
        self.credit_engaged(state, points, instant, release_s, order_key, time_s)
        if counts_towards_year:
            state.spend_minor += amount_minor
        state.earned += points
        cdef int64_t seq = self.append_entry(KIND_EARN, points, state, member_key, order_key, time_s)
        self.count(COUNTER_EARNED, points)
        self.count(COUNTER_PURCHASES, 1)
        if state._engaged:
            state._enter_year(tier_year)
            if counts_towards_year:
                state._purchases += 1
                if reached_count:
                    state._reached = _shared_reached(state._reached + tuple(
                        [<object>PyTuple_GET_ITEM(rules.milestone_keys, reached[index])
                         for index in range(reached_count)]))
        # The Bonus tuples reported: straight into their tuple, or (a referral settled
        # here adds the referrer's) into a list first.
        bonuses = [] if referral is not None else None
        reported = None
        if own_count:
            member_id = member_key.decode()
            if bonuses is None:
                reported = PyTuple_New(own_count)
            for index in range(own_count):
                self.credit_engaged(state, own_points[index], instant, release_s, order_key, time_s)
                state._bonus += own_points[index]
                self.append_entry(KIND_BONUS, own_points[index], state, member_key, <bytes>own_rules[index], time_s)
                self.count_bonus(own_points[index])
                bonus = pl_tuple3(Bonus, member_id, <object>own_rule_ids[index], own_points[index])
                if bonuses is None:
                    Py_INCREF(bonus)  # PyTuple_SET_ITEM takes the reference
                    PyTuple_SET_ITEM(reported, index, bonus)
                else:
                    bonuses.append(bonus)
        cdef int64_t balance = state.balance
        self.mark_dirty(member_key, state)
        if referral is not None:
            self.settle(referral, referrer, referrer_points, order_key, seq, instant, release_s, time_s,
                        bonuses)
            state._referral_done = True
            if bonuses:
                reported = tuple(bonuses)
        if category.code < 0:
            category.code = self.writer.category_code(category.key)
        if self.orders_kept is None or order_key in self.orders_kept:
            PyDict_SetItem(self.orders, order_key, _encode_order(amount_minor, time_s, seq, category.code))
        if self.order_unchecked:
            self.unchecked_order_keys.append(order_key)
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            self.order_key_max = order_key
        if reported is None:
            result = ("APPLIED", seq, points, balance, None)
            PyObject_GC_UnTrack(<PyObject*>result)  # only atoms: as in the plain path
            return result
        PyObject_GC_UnTrack(<PyObject*>reported)  # of Bonus, untracked (pl_tuple3)
        result = ("APPLIED", seq, points, balance, None, reported)
        PyObject_GC_UnTrack(<PyObject*>result)
        return result

    cdef int settle(self, tuple referral, MemberState referrer, int64_t referrer_points, bytes order_key,
                    int64_t seq, int64_t instant, int64_t release_s, int64_t time_s, list bonuses) except -1:
        """engagement._settle: the referrer's EXPIRE (if due) and BONUS; the referral settled by this order.

        The referrer's engagement state is in its C fields (apply_engaged_fast checked it)."""
        referral_key, (registered_s, _, referrer_key, referee_key, _) = referral
        cdef int64_t expired = 0
        cdef int64_t lots_due
        if referrer is not None:
            if not referrer._engaged:
                referrer._start_engagement(
                    referrer.tier_year, _engagement.count_purchases(self.writer.entry, referrer, referrer.tier_year))
            if referrer._count and referrer._buckets[0].instant <= time_s:
                expired = referrer._expire_due(time_s, self.expiry_deltas, self.day_expired)
            lots_due = referrer._lots_due(time_s)
            if lots_due:
                referrer._expire_lots(time_s, self.expiry_deltas, self.day_expired)
                referrer.balance -= lots_due
                referrer.expired += lots_due
                expired += lots_due
            if expired:
                self.append_entry(KIND_EXPIRE, -expired, referrer, referrer_key, order_key, time_s)
                self.count(COUNTER_EXPIRED, expired)
            if referrer._lot_count:
                referrer._release_lots(time_s, self.expiry_deltas)
            rule_key = _engagement.REFERRAL_RULE + referral_key
            self.credit_engaged(referrer, referrer_points, instant, release_s, order_key, time_s)
            referrer._bonus += referrer_points
            self.append_entry(KIND_BONUS, referrer_points, referrer, referrer_key, rule_key, time_s)
            self.count_bonus(referrer_points)
            bonuses.append(pl_tuple3(Bonus, referrer_key.decode(), rule_key.decode(), referrer_points))
            self.mark_dirty(referrer_key, referrer)
        self.writer.put(DB_REFERRALS, referral_key,
                        fmt.encode_referral(registered_s, seq, referrer_key, referee_key, order_key))
        self.settled_referees.add(referee_key)
        return 0

    cdef object open_referral(self, bytes member_key, int64_t amount_minor, int64_t time_s):
        """engagement._qualifying_referral: (referral key, record) or None, read in C.

        A referral seen settled stays settled for the batch (purchases never
        reopen one): its referee's later purchases look nothing up.
        """
        if member_key in self.settled_referees:
            return None
        referral_key = self.stored(self.referees_overlay, self.referees_db, member_key)
        if referral_key is None:
            return None
        if type(referral_key) is not bytes:
            referral_key = bytes(referral_key)
        record = self.stored(self.referrals_overlay, self.referrals_db, referral_key)
        cdef const unsigned char* p
        cdef Py_ssize_t referrer_end, referee_end
        if type(record) is bytes and PyBytes_GET_SIZE(record) >= REFERRAL_HEAD_SIZE:
            p = <const unsigned char*>PyBytes_AS_STRING(record)
            referrer_end = REFERRAL_HEAD_SIZE + p[16]
            referee_end = referrer_end + p[17]
            if PyBytes_GET_SIZE(record) == referee_end + p[18]:
                if pl_get64(p + 8) != 0:
                    self.settled_referees.add(member_key)
                    return None
                if time_s < <int64_t>pl_get64(p) or amount_minor < self.rules.referral_min_purchase_minor:
                    return None
                return referral_key, (  # fmt.decode_referral of an open referral
                    <int64_t>pl_get64(p), 0, record[REFERRAL_HEAD_SIZE:referrer_end],
                    record[referrer_end:referee_end], record[referee_end:])
        return _engagement._qualifying_referral(self.writer, member_key, self.rules.program, amount_minor, time_s)

    cdef object stored(self, dict overlay, object db, bytes key):
        """writer.get: the overlay's value, else the transaction's (None without the sub-database)."""
        cdef PyObject* found = PyDict_GetItem(overlay, key)
        if found != NULL and <object>found is not None:
            return <object>found
        if db is None:
            return None
        return self.txn_get(key, None, db)

    cdef bint maybe_referred(self, bytes member_key) except -1:
        """Whether writer.get(DB_REFEREES, key) finds the member: the overlay, then the transaction."""
        if self.referee_keys is not None:  # kept current by register_referral
            return member_key in <set>self.referee_keys
        cdef PyObject* found = PyDict_GetItem(self.referees_overlay, member_key)
        if found != NULL and <object>found is not None:
            return True
        if self.referees_db is None:
            return True  # the twin's lookup decides
        return self.txn_get(member_key, None, self.referees_db) is not None

    cdef int birthday_month(self, MemberState state, bytes member_key) except -1:
        """The month of the member's birthday, 0 without a profile: the state's stamp, else birthday_of."""
        if self.profile_generation == 0 or state._profile_stamp != self.profile_generation:
            birthday = self.birthday_of(member_key)
            if birthday is None:
                state._birthday_month = 0
            elif type(birthday) is tuple and type(birthday[0]) is int and 1 <= birthday[0] <= 12:
                state._birthday_month = birthday[0]
            else:
                raise AssertionError(f"a birthday is (month, day), not {birthday!r}")
            state._profile_stamp = self.profile_generation
        return state._birthday_month

    cdef object birthday_of(self, bytes member_key):
        """(month, day) of the member's profile, None without one: the store's cache, else the twin."""
        cdef PyObject* found = PyDict_GetItem(self.profile_cache, member_key)
        if found != NULL:
            return <object>found
        if self.profiles_complete:
            return None
        _engagement.birthday_bp(self.writer, member_key, self.rules.program, 0)  # fills the cache
        return self.profile_cache.get(member_key)

    cdef int credit_engaged(self, MemberState state, int64_t points, int64_t instant, int64_t release_s,
                            bytes order_key, int64_t time_s) except -1:
        """engagement._Credit.add: into the bucket, or (pending days) debt first, then the order's lot."""
        cdef int64_t paid = state.debt if state.debt < points else points
        if paid:  # the debt paid is taken back from the credit's cohort (§19)
            # At the credit's own time: its programme version values the points (§19).
            self.writer.count_cohort(self.calendar_month, time_s, COHORT_TAKEN_BACK, paid)
        if not self.rules.pending_days:
            state._credit(points, instant, self.expiry_deltas, self.calendar_month)
            return 0
        state.debt -= paid
        state.balance += points
        cdef int64_t rest = points - paid
        if rest == 0:
            return 0
        self.expiry_deltas.add(instant, rest)
        cdef Py_ssize_t index
        cdef Lot* lot
        cdef const char* key_data = PyBytes_AS_STRING(order_key)
        cdef Py_ssize_t key_size = PyBytes_GET_SIZE(order_key)
        for index in range(state._lot_count):
            lot = &state._lots[index]
            if (lot.release_s == release_s and lot.expires_s == instant and lot.key_size == key_size
                    and memcmp(_lot_key(lot), key_data, key_size) == 0):
                lot.points += rest
                return 0
        state._append_lot(release_s, instant, rest, self.next_seq, key_data, key_size, order_key,
                          self.calendar_month)
        return 0

    cdef int resume(self) except -1:
        """After the writer was used directly: take its sums back (finish's inverse)."""
        cdef int index
        self.next_seq = self.writer.next_seq
        for index in range(COUNTER_COUNT):
            self.totals[index] = self.totals_list[index]
        self.bonus_known = False  # the twin may have counted bonuses
        return 0

    cdef int64_t stored_bonus(self) except? -1:
        """writer.stored_bonus_total(), this batch's bonuses included."""
        if not self.bonus_known:
            self.bonus_total = self.writer.stored_bonus_total()
            self.bonus_known = True
        return self.bonus_total

    cdef int count_bonus(self, int64_t points) except -1:
        """writer.count_bonus for an event of `day` (enter_day was called for it)."""
        self.stored_bonus()
        self.bonus_total += points
        self.bonus_counted = True
        self.day_bonus += points
        self.day_touched = True
        return 0

    cdef object earn(self, MemberState state, bytes order_key, bytes member_key, int64_t amount_minor,
                     _Category category, object category_item, int64_t time_s):
        """From the member's state (None for a new member): roll, price, the int64 checks."""
        cdef _Rules rules = self.rules
        cdef int64_t day = _floor_div(time_s, SECONDS_PER_DAY)
        self.enter_calendar(day)
        cdef int64_t year = self.calendar_year
        cdef bint is_new = state is None
        if is_new:
            state = MemberState.__new__(MemberState)
            state.tier_year = year
        cdef int64_t due = state._due_points(time_s)
        # state.rolled(year, program)
        cdef int64_t tier_year = state.tier_year
        cdef int64_t spend = state.spend_minor
        cdef int64_t carried = state.carried_rank
        if year > tier_year:
            carried = rules.tier_rank_for_spend(spend) if year == tier_year + 1 else 0
            tier_year = year
            spend = 0
        cdef int tier = rules.tier_rank(spend, carried)
        cdef int64_t points
        if rules.price(amount_minor, category.rule, tier, time_s, &points) != 0:
            exact = _py_price_purchase(rules.program, amount_minor, category_item, tier, time_s)
            if exact > INT64_MAX:
                raise InvalidArgument("points", exact, "the purchase would earn more than int64 points")
            points = exact
        if <pl_i128>state.balance - due + points > INT64_MAX:
            raise InvalidArgument(
                "balance", (<object>state.balance) - due + points, "the balance would overflow int64"
            )
        if (<pl_i128>self.totals[COUNTER_EARNED] + self.totals[COUNTER_ADJUSTED_POSITIVE] + points
                > INT64_MAX):
            self.finish()  # the writer's totals are current for its own check
            self.writer.check_credit(points)
        if category.code < 0:
            self.writer.check_category(category.key)
        cdef bint counts_towards_year = year == tier_year
        if counts_towards_year and spend > INT64_MAX - amount_minor:
            raise InvalidArgument("amount_minor", amount_minor, "the member's spend would overflow int64")

        # Every check passed: from here on the purchase is applied.
        if self.tier_ranks is not None:
            self.tier_ranks.append(tier)
        if is_new:
            self.members.put(member_key, state)
            self.mark_dirty(member_key, state)
            self.new_member_count += 1
        state.tier_year = tier_year
        state.spend_minor = spend
        state.carried_rank = carried
        return self.record(state, order_key, member_key, amount_minor, category, time_s, day, points,
                           counts_towards_year)

    cdef object record(self, MemberState state, bytes order_key, bytes member_key, int64_t amount_minor,
                       _Category category, int64_t time_s, int64_t day, int64_t points,
                       bint counts_towards_year):
        """Expire, credit, journal, counters and the order record of an applied purchase."""
        cdef _Rules rules = self.rules
        self.enter_day(day)
        cdef int64_t expired = 0
        if state._count and state._buckets[0].instant <= time_s:
            expired = state._expire_due(time_s, self.expiry_deltas, self.day_expired)
        if expired:
            self.append_entry(KIND_EXPIRE, -expired, state, member_key, order_key, time_s)
            self.count(COUNTER_EXPIRED, expired)
        cdef int64_t instant = self.expiry_instant(day, rules.expiry_months) if rules.expiry_months else NEVER_S
        if state.debt:  # the debt paid is taken back from the credit's cohort (§19)
            self.writer.count_cohort(self.calendar_month, time_s, COHORT_TAKEN_BACK,
                                     state.debt if state.debt < points else points)
        state._credit(points, instant, self.expiry_deltas, self.calendar_month)
        self.day_amount += amount_minor
        if counts_towards_year:
            state.spend_minor += amount_minor
        state.earned += points
        cdef int64_t seq = self.append_entry(KIND_EARN, points, state, member_key, order_key, time_s)
        self.mark_dirty(member_key, state)
        self.count(COUNTER_EARNED, points)
        self.count(COUNTER_PURCHASES, 1)
        if category.code < 0:
            category.code = self.writer.category_code(category.key)
        if self.orders_kept is None or order_key in self.orders_kept:
            PyDict_SetItem(self.orders, order_key, _encode_order(amount_minor, time_s, seq, category.code))
        if self.order_unchecked:
            self.unchecked_order_keys.append(order_key)
        if self.order_key_max_known and _key_after(order_key, self.order_key_max):
            self.order_key_max = order_key
        result = ("APPLIED", seq, points, state.balance, None)
        # Only atoms inside: the cyclic GC need never look at it (CPython would
        # untrack it itself, but only after traversing it once per collection).
        PyObject_GC_UnTrack(<PyObject*>result)
        return result


def apply_purchases(writer, order_ids, member_ids, amounts_minor, categories, times_s):
    """Apply a batch in order; one result tuple per item (see writer.ItemResult)."""
    cdef Py_ssize_t count = len(order_ids)
    cdef Py_ssize_t index
    cdef list results = []
    cdef _Batch batch = _Batch.__new__(_Batch)
    cdef Py_ssize_t start, end
    cdef int slot
    cdef PyObject* upcoming
    cdef bint refused = False
    # Out of the cyclic GC while it holds only untracked tuples of atoms, as
    # journal_values; a refusal's tuple holds the error, and then it is tracked.
    PyObject_GC_UnTrack(<PyObject*>results)
    batch.start(writer, order_ids, member_ids, amounts_minor, categories, times_s, count)
    # Each result is a new tuple that outlives the call, so a large batch would
    # set off a young collection every 700 of them (a few % of a backfill's
    # time) that can free nothing made here: collect once, after the batch.
    cdef bint paused_gc = count >= GC_PAUSE_ITEMS_MIN and gc.isenabled()
    if paused_gc:
        gc.disable()
    try:
        for start in range(0, count, CHUNK_ITEMS):
            end = start + CHUNK_ITEMS if start + CHUNK_ITEMS < count else count
            if start:
                # Let the GIL go between chunks (a fraction of a ms each): a pipeline's
                # writer thread (pipeline.py) waits for it to write and commit the
                # previous batch. Uncontended, a release costs ~0.1 µs.
                with nogil:
                    pass
            batch.resolve_chunk(start, end)
            for index in range(start, end):
                slot = <int>(index - start)
                # Warm the caches for the members a few purchases ahead.
                if slot + 8 < end - start:
                    upcoming = batch.chunk_states[slot + 8]
                    if upcoming != NULL:
                        pl_prefetch(upcoming)
                        pl_prefetch(<char*>upcoming + 64)
                        pl_prefetch(<char*>upcoming + 128)
                        pl_prefetch(<char*>upcoming + 192)  # the engagement fields: 248 bytes in all
                        pl_prefetch(<char*>upcoming + 240)
                if slot + 4 < end - start:
                    upcoming = batch.chunk_states[slot + 4]
                    if upcoming != NULL:
                        pl_prefetch((<MemberState>upcoming)._buckets)
                        # The first lot (64 bytes, on two cache lines unless aligned); NULL
                        # without lots: a prefetch never faults.
                        pl_prefetch((<MemberState>upcoming)._lots)
                        pl_prefetch(<char*>(<MemberState>upcoming)._lots + 63)
                order_id = _item(order_ids, batch.order_ids_kind, index)
                # A member id resolve_chunk validated is not touched again: only its key is needed.
                if batch.chunk_keys[slot] != NULL:
                    member_id = None
                else:
                    member_id = _item(member_ids, batch.member_ids_kind, index)
                amount_item = None if batch.amounts_typed else PyObject_GetItem(amounts_minor, index)
                category_item = _item(categories, batch.categories_kind, index)
                time_item = None if batch.times_typed else PyObject_GetItem(times_s, index)
                try:
                    result = batch.apply(index, slot, order_id, member_id, amount_item, category_item, time_item)
                except LedgerError as error:
                    result = (error.code, 0, 0, 0, error)
                    if not refused:
                        refused = True
                        PyObject_GC_Track(<PyObject*>results)
                results.append(result)
    finally:
        if paused_gc:
            gc.enable()
        batch.finish()
    return results


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
