"""A flush's records into LMDB: one GIL-free C put, or putmulti with the same bytes.

`Records` holds the records of one flush, a segment per sub-database, in C (_lmdb_batch)
when the extension is built, else as lists. `put_records` writes them
into the write transaction: with `_lmdb_batch.Records.put` (every segment, the GIL
released once) when that module is built and py-lmdb's private layout checks out;
otherwise, or with POINTSLEDGER_PUTMULTI=1 (or `FORCE_PUTMULTI` set by a test), with
one putmulti per segment. Either way the same keys and values go in, in the same order,
with the same flags: the store's bytes do not depend on the path (tests/test_store_put.py).
"""

import errno
import logging
import os
import struct

import lmdb

from . import faults

try:
    from . import _lmdb_batch
except ImportError:  # a pure-Python build: putmulti only
    _lmdb_batch = None

FORCE_PUTMULTI = os.environ.get("POINTSLEDGER_PUTMULTI") == "1"
_PACKED_HEAD = struct.Struct("=II")  # a packed record's key and value sizes (add_packed)

# How a segment is written.
PLAIN = 0  # insert or overwrite (putmulti's default)
APPEND = 1  # every key after the sub-database's last (MDB_APPEND): every record must go in
NEW_ONLY = 2  # keys proven new as they go in (MDB_NOOVERWRITE): a stored key is a conflict

MDB_NOOVERWRITE = 0x10
MDB_NODUPDATA = 0x20
MDB_APPEND = 0x20000
MDB_KEYEXIST = -30799
# The flags putmulti passes (dupdata=False adds MDB_NODUPDATA), so both paths ask LMDB alike.
FLAGS = {PLAIN: MDB_NODUPDATA, APPEND: MDB_NODUPDATA | MDB_APPEND, NEW_ONLY: MDB_NODUPDATA | MDB_NOOVERWRITE}

# LMDB's error codes -> py-lmdb's exception classes (as py-lmdb's own err_set chooses them).
_ERRORS = {
    -30799: lmdb.KeyExistsError, -30798: lmdb.NotFoundError, -30797: lmdb.PageNotFoundError,
    -30796: lmdb.CorruptedError, -30795: lmdb.PanicError, -30794: lmdb.VersionMismatchError,
    -30793: lmdb.InvalidError, -30792: lmdb.MapFullError, -30791: lmdb.DbsFullError,
    -30790: lmdb.ReadersFullError, -30789: lmdb.TlsFullError, -30788: lmdb.TxnFullError,
    -30787: lmdb.CursorFullError, -30786: lmdb.PageFullError, -30785: lmdb.MapResizedError,
    -30784: lmdb.IncompatibleError, -30783: lmdb.BadRslotError, -30782: lmdb.BadTxnError,
    -30781: lmdb.BadValsizeError, -30780: lmdb.BadDbiError,
    errno.EINVAL: lmdb.InvalidParameterError, errno.EACCES: lmdb.ReadonlyError,
    errno.ENOMEM: lmdb.MemoryError, errno.ENOSPC: lmdb.DiskError, errno.EIO: lmdb.DiskError,
}


class KeyConflict(Exception):
    """A NEW_ONLY segment met a stored key (`segment` is its index)."""

    def __init__(self, segment, stored):
        super().__init__(f"{stored} keys of segment {segment} were already stored")
        self.segment = segment
        self.stored = stored


class ListRecords:
    """_lmdb_batch.Records's interface over Python lists (a build without the extension)."""

    def __init__(self):
        self.segments = []  # (name, [(key, value), ...])

    def __len__(self):
        return len(self.segments)

    def add_journal(self, name, first_seq, values):
        self.segments.append((name, [(seq.to_bytes(8, "big"), bytes(value))
                                     for seq, value in enumerate(values, first_seq)]))
        return len(values)

    def add_dict(self, name, changes):
        return self.add_items(name, sorted(changes.items()))

    def add_items(self, name, items):
        pairs = [(bytes(key), bytes(value)) for key, value in items]
        self.segments.append((name, pairs))
        return len(pairs), pairs[0][0] if pairs else None, pairs[-1][0] if pairs else None

    def add_packed(self, name, packed, count):
        """Records packed as _lmdb_batch.Records.add_packed takes them (u32 key size, u32 value
        size, native order; key; value), copied into pairs."""
        data, pairs, offset = memoryview(packed).cast("B"), [], 0
        while offset < len(data):
            key_size, value_size = _PACKED_HEAD.unpack_from(data, offset)
            offset += _PACKED_HEAD.size
            pairs.append((bytes(data[offset:offset + key_size]),
                          bytes(data[offset + key_size:offset + key_size + value_size])))
            offset += key_size + value_size
        if offset != len(data) or len(pairs) != count:
            raise ValueError(f"packed records: {len(pairs)} in {len(data)} bytes, not {count} ending at its end")
        self.segments.append((name, pairs))
        return count

    def name(self, index):
        return self.segments[index][0]

    def count(self, index):
        return len(self.segments[index][1])

    def pairs(self, index):
        return self.segments[index][1]


def c_put_problem():
    """Why put_records writes with putmulti rather than the C put (None when it can use the
    C put): `pointsledger info` says it, since the two-core backfill needs the GIL-free put."""
    if _lmdb_batch is None:
        return "the _lmdb_batch extension is not built"
    if FORCE_PUTMULTI:
        return "POINTSLEDGER_PUTMULTI=1"
    if lmdb.__version__ != _lmdb_batch.SUPPORTED_VERSION:
        return (f"py-lmdb {lmdb.__version__} is installed; the C put reads the private layout of "
                f"py-lmdb {_lmdb_batch.SUPPORTED_VERSION} only")
    return _lmdb_batch._ENGINES_ERROR  # py-lmdb's LMDB entry points not found, or None


_fallback_logged = False


def _log_fallback(error):
    """One warning per process when a write falls back from the C put: same bytes, slower."""
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        logging.getLogger("pointsledger").warning(
            "writing with putmulti, not the GIL-free C put (slower; a backfill cannot use its second "
            "core): %s", error)


def new_records():
    return _lmdb_batch.Records() if _lmdb_batch is not None else ListRecords()


def c_put_usable(txn, env):
    """Whether put_records will take the C path for this transaction (tests, benchmarks)."""
    if FORCE_PUTMULTI or _lmdb_batch is None:
        return False
    try:
        _lmdb_batch.check(txn, env)
    except _lmdb_batch.Unsupported:
        return False
    return True


def put_records(txn, env, dbs, records, modes):
    """Write every segment of records (segment i as modes[i]) into txn.

    Raises KeyConflict for a stored key in a NEW_ONLY segment, RuntimeError when an
    APPEND segment's keys are not all after the last (a bug), py-lmdb's exception for
    any other LMDB error (MapFullError, ...); the caller then aborts the transaction.
    The fault hook "putmulti" is met once per segment, after its records.
    """
    if not FORCE_PUTMULTI and isinstance(records, getattr(_lmdb_batch, "Records", ())):
        try:
            failure = records.put(txn, env, [FLAGS[mode] for mode in modes])
        except _lmdb_batch.Unsupported as error:
            _log_fallback(error)  # nothing written: the same records through putmulti
        else:
            if faults.hook is not None:
                for _ in modes:
                    faults.hook("putmulti")
            if failure is not None:
                segment, rc, done = failure
                _raise_put_error(txn, records, modes, segment, rc, done)
            return
    for index, mode in enumerate(modes):
        _putmulti(txn, dbs[records.name(index)], records, index, mode)


def _putmulti(txn, db, records, index, mode):
    count = records.count(index)
    consumed, added = txn.cursor(db=db).putmulti(records.pairs(index), append=mode == APPEND,
                                                  overwrite=mode != NEW_ONLY)
    if faults.hook is not None:
        faults.hook("putmulti")
    if consumed != count or (mode == APPEND and added != count):
        raise RuntimeError(f"putmulti wrote {added} of {count} items: keys out of order or a bug")
    if mode == NEW_ONLY and added != consumed:
        raise KeyConflict(index, consumed - added)


def _raise_put_error(txn, records, modes, segment, rc, done):
    mode = modes[segment]
    if rc == _lmdb_batch.PACKED_OVERRUN_RC:
        raise RuntimeError(f"segment {segment}: its packed records do not fill its buffer exactly: a bug")
    if rc == MDB_KEYEXIST and mode == NEW_ONLY:
        raise KeyConflict(segment, 1)
    if rc == MDB_KEYEXIST and mode == APPEND:
        raise RuntimeError(f"mdb_put wrote {done} of {records.count(segment)} items: keys out of order or a bug")
    message = f"mdb_put: {_lmdb_batch.strerror(rc, txn)}"
    if rc > 0:
        error = _ERRORS.get(rc, lmdb.Error)(message)
        error.errno = rc
        raise error
    raise _ERRORS.get(rc, lmdb.Error)(message)
