# cython: language_level=3, boundscheck=False, wraparound=False
"""Issue-15 prototype: a batch of (db, key, value) puts into the current py-lmdb write
transaction with ONE release of the GIL.  Not part of the package.

It calls liblmdb through py-lmdb's own engine vtable (the `libv` of the transaction), so
the MDB_txn is only ever touched by the copy of liblmdb that created it.  The vtable and
the MDB_txn* are read from py-lmdb 3.0.0's private TransObject layout; bind() checks that
layout against public facts before anything is trusted.
"""
from libc.stdint cimport uint32_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.ref cimport PyObject
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

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
    ctypedef struct MDB_val:
        size_t mv_size
        void *mv_data
    ctypedef struct MdbApi:
        size_t (*txn_id)(MDB_txn *txn) noexcept nogil
        int (*dbi_open)(MDB_txn *txn, const char *name, unsigned int flags, MDB_dbi *dbi) noexcept nogil
        int (*put)(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags) noexcept nogil
        char *(*strerror_fn)(int err) noexcept nogil
    ctypedef struct PlTransObject:
        int valid
        void *env
        void *parent
        const MdbApi *libv
        MDB_txn *txn
        int flags
        int mutations

SUPPORTED_VERSION = "3.0.0"
MDB_APPEND = 0x20000
cdef int TRANS_RDONLY = 2

cdef const MdbApi *_engine(name) except NULL:
    handle = dlopen(lmdb.cpython.__file__.encode(), RTLD_NOW | RTLD_NOLOAD)
    if handle == NULL:
        raise RuntimeError("py-lmdb's extension is not loaded")
    api = <const MdbApi *> dlsym(handle, name)
    if api == NULL:
        raise RuntimeError("py-lmdb exports no %s" % name.decode())
    return api


cdef class Writer:
    """Bound to one live write transaction; put() many batches, then drop it."""
    cdef object txn
    cdef PlTransObject *t
    cdef const MdbApi *api
    cdef MDB_txn *mtxn

    def __cinit__(self, txn, env):
        if lmdb.__version__ != SUPPORTED_VERSION or type(txn) is not lmdb.cpython.Transaction:
            raise RuntimeError("needs py-lmdb %s's CPython extension, got %s %r"
                               % (SUPPORTED_VERSION, lmdb.__version__, type(txn)))
        t = <PlTransObject *> <PyObject *> txn
        engines = {<size_t> _engine(b"lmdb_api_v09"), <size_t> _engine(b"lmdb_api_v10")}
        # The layout check: every private field we use must agree with a public fact.
        if (t.env != <void *> <PyObject *> env or t.valid != 1 or t.parent != NULL
                or <size_t> t.libv not in engines or t.txn == NULL or t.flags & TRANS_RDONLY
                or t.libv.txn_id(t.txn) != txn.id()):
            raise RuntimeError("py-lmdb's Transaction layout is not the one this was built for")
        self.txn, self.t, self.api, self.mtxn = txn, t, t.libv, t.txn

    def dbi(self, name):
        """The MDB_dbi of an already-open named database (None: the main one)."""
        cdef MDB_dbi dbi
        cdef const char *cname = NULL
        if name is not None:
            cname = name
        rc = self.api.dbi_open(self.mtxn, cname, 0, &dbi)
        if rc:
            raise lmdb.Error("mdb_dbi_open", rc)
        return dbi

    def put(self, bytes packed):
        """Write every record of `packed` (see pack()); returns (records written, seconds
        spent in the loop without the GIL). The GIL is released once for the whole batch."""
        cdef const char *p = PyBytes_AS_STRING(packed)
        cdef const char *end = p + PyBytes_GET_SIZE(packed)
        cdef uint32_t head[4]
        cdef MDB_val key, value
        cdef int rc = 0
        cdef Py_ssize_t done = 0
        cdef const MdbApi *api = self.api
        cdef MDB_txn *mtxn = self.mtxn
        cdef timespec t0, t1
        if self.t.valid != 1 or self.t.txn != self.mtxn:
            raise lmdb.Error("transaction is no longer valid", 0)
        with nogil:
            clock_gettime(CLOCK_MONOTONIC, &t0)
            while p < end:
                if end - p < 16:
                    rc = 22                            # EINVAL: a truncated buffer
                    break
                memcpy(head, p, sizeof(head))          # dbi, flags, key size, value size
                if <size_t> (end - p - 16) < <size_t> head[2] + head[3]:
                    rc = 22
                    break
                key.mv_size, key.mv_data = head[2], <void *> (p + 16)
                value.mv_size, value.mv_data = head[3], <void *> (p + 16 + head[2])
                rc = api.put(mtxn, head[0], &key, &value, head[1])
                if rc:
                    break
                p += 16 + head[2] + head[3]
                done += 1
            clock_gettime(CLOCK_MONOTONIC, &t1)
        self.t.mutations += done
        if rc:
            raise lmdb.Error("mdb_put: %s after %d records" % (self.api.strerror_fn(rc).decode(), done), rc)
        return done, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9


def pack(records):
    """[(dbi, flags, key, value), ...] -> one bytes buffer (the engine would build this in C)."""
    cdef Py_ssize_t size = 0
    for _, _, key, value in records:
        size += 16 + len(key) + len(value)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char *p = PyBytes_AS_STRING(out)
    cdef uint32_t head[4]
    cdef bytes k, v
    for dbi, flags, k, v in records:
        head[0], head[1], head[2], head[3] = dbi, flags, len(k), len(v)
        memcpy(p, head, 16)
        memcpy(p + 16, PyBytes_AS_STRING(k), len(k))
        memcpy(p + 16 + len(k), PyBytes_AS_STRING(v), len(v))
        p += 16 + len(k) + len(v)
    return out
