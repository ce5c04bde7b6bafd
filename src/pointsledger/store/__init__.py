"""The store: one LMDB environment and everything that reads or writes its bytes.

    store.py           the environment, its caches, and `write` (one transaction per batch)
    writer.py          a write transaction's overlay and its flush into LMDB
    format.py          the key and value layouts of every sub-database (docs/design.md)
    put.py             a flush's records written with one GIL release (_lmdb_batch.pyx, pylmdb_abi.h), putmulti otherwise
    file.py            opening, locking, disk-full and damage errors of the store's files
    revenue_upgrade.py stores of formats 1-4 brought to format 5 at their first writable open
    verify.py          the invariants of a store, checked entry by entry
    faults.py          the write path's fault-injection points (tests and benchmarks)
"""
