/* Private ABI of py-lmdb 3.0.0's CPython extension (lmdb/cpython.c, lmdb/mdb_api.h),
 * for pointsledger.store._lmdb_batch (issue 15; first a prototype in benchmarks/nogil_put/, now in the history).  Nothing here
 * is a public interface of py-lmdb: 2.3.0 had a different TransObject (no `parent`, no
 * `libv`), so every use is cross-checked at run time (_lmdb_batch.pyx: _Bound) and a
 * mismatch falls back to putmulti.
 * mdb_api.h: Copyright 2013-2026 The py-lmdb authors, OpenLDAP Public License. */
#ifndef POINTSLEDGER_PYLMDB_ABI_H
#define POINTSLEDGER_PYLMDB_ABI_H
#include <Python.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct MDB_env MDB_env;
typedef struct MDB_txn MDB_txn;
typedef struct MDB_cursor MDB_cursor;
typedef unsigned int MDB_dbi;
typedef struct MDB_val { size_t mv_size; void *mv_data; } MDB_val;
typedef int (*pl_fn)(void);   /* entries never called here */

typedef struct MdbApi {
    int major, minor, patch;
    unsigned int data_version;
    pl_fn env_create, env_open, env_close, env_copy2, env_copyfd2, env_copy3,
          env_copyfd3, env_sync, env_stat, env_info, env_get_flags, env_set_flags,
          env_get_maxkeysize, env_get_maxreaders, env_get_path, env_set_mapsize,
          env_set_maxdbs, env_set_maxreaders, reader_check, reader_list;
    pl_fn txn_begin, txn_commit, txn_abort, txn_reset, txn_renew;
    size_t (*txn_id)(MDB_txn *txn);
    int (*dbi_open)(MDB_txn *txn, const char *name, unsigned int flags, MDB_dbi *dbi);
    pl_fn dbi_flags, dbi_close, drop, get;
    int (*put)(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags);
    pl_fn del, stat;
    int (*cursor_open)(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cursor);
    void (*cursor_close)(MDB_cursor *cursor);
    pl_fn cursor_get;
    int (*cursor_put)(MDB_cursor *cursor, MDB_val *key, MDB_val *data, unsigned int flags);
    pl_fn cursor_del, cursor_count;
    char *(*strerror_fn)(int err);
    pl_fn version_fn;
} MdbApi;

struct pl_list_head { void *prev; void *next; };

/* struct TransObject of py-lmdb 3.0.0, built without HAVE_MEMSINK (as its wheels are). */
typedef struct PlTransObject {
    PyObject_HEAD
    struct pl_list_head siblings;
    struct pl_list_head children;
    int valid;
    PyObject *weaklist;
    void *env;              /* EnvObject *: the lmdb.Environment itself */
    void *parent;           /* TransObject * of a nested transaction */
    const MdbApi *libv;     /* the engine (vtable) serving env */
    MDB_txn *txn;
    int flags;              /* 2 = TRANS_RDONLY */
    void *db;
    int mutations;          /* bumped so that open py-lmdb cursors refresh */
} PlTransObject;
#endif
