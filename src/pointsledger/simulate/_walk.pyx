"""The what-if's journal walk (source.Source.batches), compiled: the walk of the Cython engine.

The same loop as source.py's, step for step (source.py's is the twin's and the
specification: read it first); here each EARN entry is decoded in C, its order
looked up at once, and the ids decoded straight into text, with no per-entry
tuple. The columns the engine and the tally read as int64 (times, amounts,
recorded points and versions, category numbers) are int64 arrays: the engine
reads them as a buffer, the tally without a copy. Everything else (profiles,
refunds, rolls, referrers) goes through the same Python objects as the twin.
"""

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t

import array as _array

from .. import calendar
from ..store import format as fmt
from ..errors import StoreDamaged
from .source import Batch, KINDS_ROLLING, SEEN

cdef int HEAD_SIZE = fmt.JOURNAL_HEAD.size
cdef int ORDER_HEAD_SIZE = fmt.ORDER_HEAD.size
cdef int KIND_EARN = fmt.KIND_EARN
cdef int KIND_BONUS = fmt.KIND_BONUS
cdef int KIND_EXPIRE = fmt.KIND_EXPIRE
cdef int KIND_CLAWBACK = fmt.KIND_CLAWBACK
cdef array.array INT64_TEMPLATE = _array.array("q")

assert fmt.JOURNAL_HEAD.format == ">BqqqIQBB" and HEAD_SIZE == 39, "the journal head changed: update _walk.pyx"
assert fmt.ORDER_HEAD.format.startswith(">q"), "the order record changed: update _walk.pyx"


cdef inline uint64_t _be(const uint8_t* data, int size) noexcept:
    """An unsigned big-endian integer of `size` bytes."""
    cdef uint64_t value = 0
    cdef int index
    for index in range(size):
        value = (value << 8) | data[index]
    return value


cdef inline int _push(array.array column, int64_t value) except -1:
    cdef Py_ssize_t size = len(column)
    array.resize_smart(column, size + 1)
    column.data.as_longlongs[size] = value
    return 0


cdef class _Columns:
    """The int64 columns of one batch, appended in C, handed to the Batch when it is full."""
    cdef array.array times, amounts, points, versions, category_numbers

    def __cinit__(self):
        self.times = array.clone(INT64_TEMPLATE, 0, False)
        self.amounts = array.clone(INT64_TEMPLATE, 0, False)
        self.points = array.clone(INT64_TEMPLATE, 0, False)
        self.versions = array.clone(INT64_TEMPLATE, 0, False)
        self.category_numbers = array.clone(INT64_TEMPLATE, 0, False)

    cdef install(self, batch):
        batch.times, batch.amounts = self.times, self.amounts
        batch.recorded_points, batch.recorded_versions = self.points, self.versions
        batch.category_numbers = self.category_numbers


def _new_batch():
    batch = Batch()
    columns = _Columns()
    columns.install(batch)  # len(batch) and close_run read batch.times as it grows
    batch.order_keys = batch.member_keys = None  # not kept: the ids are decoded entry by entry
    return batch, columns


def batches(source, Py_ssize_t size):
    """source.batches(size), compiled: the same batches, in the same order."""
    txn, dbs = source.txn, source.dbs
    orders_db, refunds_db = dbs[fmt.DB_ORDERS], dbs[fmt.DB_REFUNDS]
    txn_get = txn.get
    cdef int64_t start_s = source.start_s, to_s = source.to_s
    # As in source.py, but a member the replay has (KNOWN there) maps to its id as text: every
    # purchase of it takes that one str, decoded once. SEEN: as there; absent: as there.
    cdef dict members = {}
    cdef list profiles = source.profiles
    cdef Py_ssize_t next_profile = 0
    cdef int64_t next_profile_seq = profiles[0][0] if profiles else -1
    cdef bint profiles_left = bool(profiles)
    cdef dict referrers = source.referrers
    refunded_orders = source.refunded_orders
    cdef bint any_refunded = bool(refunded_orders)
    cdef dict categories = {}  # the order's category code as a number -> (name, number) (source.categories)
    year_of = calendar.year_of
    batch, columns_object = _new_batch()
    cdef _Columns columns = columns_object
    cdef list order_ids = batch.order_ids, member_ids = batch.member_ids, category_names = batch.categories
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t last_purchase = -1  # the batch index the next BONUS entries belong to; -1: none
    cdef bytes key_bytes, value, member_key, ref_key, order
    cdef const uint8_t* data
    cdef const uint8_t* order_data
    cdef Py_ssize_t member_end, value_size, code_size
    cdef int kind, member_length, ref_length
    cdef int64_t points, time_s, version, seq, amount, code
    cdef PyObject* found
    cdef object state
    for key, value_object in txn.cursor(db=dbs[fmt.DB_JOURNAL]):
        key_bytes = key if type(key) is bytes else bytes(key)
        value = value_object if type(value_object) is bytes else bytes(value_object)
        if PyBytes_GET_SIZE(key_bytes) != 8:
            raise StoreDamaged(f"{source.store.path}: a journal key of {PyBytes_GET_SIZE(key_bytes)} bytes")
        seq = <int64_t>_be(<const uint8_t*>PyBytes_AS_STRING(key_bytes), 8)
        if profiles_left and next_profile_seq <= seq:
            while profiles_left and next_profile_seq <= seq:
                _, profile_member, birthday = profiles[next_profile]
                next_profile += 1
                profiles_left = next_profile < len(profiles)
                if profiles_left:
                    next_profile_seq = profiles[next_profile][0]
                if type(members.get(profile_member)) is str:  # KNOWN
                    batch.add_step(("profile", profile_member, birthday))
                else:
                    batch.early_profiles.append((profile_member, birthday))
        value_size = PyBytes_GET_SIZE(value)
        if value_size < HEAD_SIZE:
            raise StoreDamaged(f"{source.store.path}: a journal entry of {value_size} bytes")
        data = <const uint8_t*>PyBytes_AS_STRING(value)
        kind = data[0]
        points = <int64_t>_be(data + 1, 8)
        time_s = <int64_t>_be(data + 17, 8)
        version = <int64_t>_be(data + 25, 4)
        member_length = data[37]
        ref_length = data[38]
        member_end = HEAD_SIZE + member_length
        if member_end + ref_length > value_size:  # every read below stays inside the entry
            raise StoreDamaged(f"{source.store.path}: a journal entry shorter than its ids")
        if kind == KIND_EARN:
            member_key = PyBytes_FromStringAndSize(<const char*>data + HEAD_SIZE, member_length)
            found = PyDict_GetItem(members, member_key)
            state = None if found == NULL else <object>found
            if not (start_s <= time_s < to_s):
                if found == NULL:
                    members[member_key] = SEEN
                last_purchase = -1
                continue
            if count >= size:
                batch.close_run()
                yield batch, seq - 1
                batch, columns_object = _new_batch()
                columns = columns_object
                order_ids, member_ids, category_names = batch.order_ids, batch.member_ids, batch.categories
                count = 0
            if type(state) is not str:  # not KNOWN
                member_id = members[member_key] = member_key.decode("utf-8")
                if state == SEEN:  # the ledger had it before: no welcome bonus in the replay
                    batch.ensure.append((member_key, year_of(time_s)))
                referrer = referrers.get(member_key)
                if referrer is not None and type(members.get(referrer)) is not str:
                    members[referrer] = referrer.decode("utf-8")
                    batch.ensure.append((referrer, year_of(time_s)))
            else:
                member_id = state
            ref_key = PyBytes_FromStringAndSize(<const char*>data + member_end, ref_length)
            if any_refunded and ref_key in refunded_orders:
                batch.refunded_keys[count] = ref_key
            # The order: its amount and category (Batch.finish in source.py).
            order_object = txn_get(ref_key, None, orders_db)
            if order_object is None:
                raise StoreDamaged(f"{source.store.path}: an EARN entry names an order the orders do not hold")
            order = order_object if type(order_object) is bytes else bytes(order_object)
            order_data = <const uint8_t*>PyBytes_AS_STRING(order)
            code_size = PyBytes_GET_SIZE(order) - ORDER_HEAD_SIZE
            if code_size != 2 and code_size != 4:
                source.category(order[ORDER_HEAD_SIZE:])  # refuses it as the twin does
                raise StoreDamaged(f"{source.store.path}: an order record of {PyBytes_GET_SIZE(order)} bytes")
            amount = <int64_t>_be(order_data, 8)
            code = <int64_t>_be(order_data + ORDER_HEAD_SIZE, <int>code_size)
            found = PyDict_GetItem(categories, code)
            if found != NULL:
                category = <object>found
            else:
                code_bytes = order[ORDER_HEAD_SIZE:]
                category = categories[code] = source.categories.get(code_bytes) or source.category(code_bytes)
            last_purchase = count
            count += 1
            order_ids.append(PyUnicode_DecodeUTF8(<const char*>data + member_end, ref_length, NULL))
            member_ids.append(member_id)
            category_names.append(category[0])
            _push(columns.category_numbers, category[1])
            _push(columns.amounts, amount)
            _push(columns.times, time_s)
            _push(columns.points, points)
            _push(columns.versions, version)
            continue
        if kind == KIND_BONUS:
            if last_purchase >= 0:
                batch.recorded_bonus[last_purchase] = batch.recorded_bonus.get(last_purchase, 0) + points
            continue
        if kind == KIND_EXPIRE:
            continue  # between a purchase's EARN and its referrer's BONUS (§17)
        last_purchase = -1
        if not (start_s <= time_s < to_s):
            continue
        member_key = PyBytes_FromStringAndSize(<const char*>data + HEAD_SIZE, member_length)
        ref_key = PyBytes_FromStringAndSize(<const char*>data + member_end, ref_length)
        if kind == KIND_CLAWBACK:
            (refund_amount, _, _), order_key, _ = fmt.decode_tail(fmt.REFUND_HEAD, txn_get(ref_key, None, refunds_db))
            order_time = fmt.decode_order(txn_get(order_key, None, orders_db))[1]
            if not start_s <= order_time < to_s:
                continue  # its purchase is not replayed: skipped on both sides (§17)
            batch.add_step(("refund", len(batch.refunds)))
            batch.refunds.append((ref_key.decode("utf-8"), order_key.decode("utf-8"), refund_amount, time_s))
            batch.refund_order_keys.append(order_key)
            batch.refund_points.append(-points)
            batch.refund_versions.append(version)
        elif kind in KINDS_ROLLING and type(members.get(member_key)) is str:  # KNOWN
            batch.add_step(("roll", member_key, ref_key, time_s))
    batch.close_run()
    yield batch, source.last_seq


# --- the scratch's results (scratch.py's _take and _place_tiers, compiled) ------------------

cdef str APPLIED = "APPLIED"


def take_results(outcome, Py_ssize_t first, results):
    """scratch._take: the engine's results of purchases [first, first + len(results)) into the outcome."""
    if type(results) is not list:  # the Cython engine's PurchaseResults: its tuples, made once here
        results = list(results)
    cdef array.array applied = outcome.applied, points = outcome.points, bonus = outcome.bonus
    cdef Py_ssize_t offset, position
    cdef tuple result
    cdef bint is_applied
    if first + len(results) > len(applied):
        raise IndexError("more results than purchases in the batch")
    for offset in range(len(results)):
        result = <tuple>results[offset]
        position = first + offset
        status = result[0]
        is_applied = status is APPLIED or status == APPLIED
        applied.data.as_longlongs[position] = is_applied
        points.data.as_longlongs[position] = <int64_t>result[2]
        if len(result) > 5 and is_applied:  # a purchase that wrote bonuses (§17) has a sixth element
            bonus.data.as_longlongs[position] = sum([each[2] for each in result[5]])
    return None


def place_tiers(outcome, list tiers):
    """scratch._place_tiers: one tier rank per applied purchase, in order, at its purchase's place."""
    cdef array.array applied = outcome.applied, ranks = outcome.tiers
    cdef Py_ssize_t position, index = 0
    for position in range(len(applied)):
        if applied.data.as_longlongs[position]:
            if index >= len(tiers):
                raise IndexError("fewer tier ranks than applied purchases")
            ranks.data.as_longlongs[position] = <int64_t>tiers[index]
            index += 1
    return None
