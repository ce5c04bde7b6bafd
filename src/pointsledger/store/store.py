"""The LMDB environment of one ledger, and what is cached from it in memory.

Everything that matters is in the environment; the caches here (programme
versions, category codes, decoded member records) are rebuilt from it whenever
another writer may have committed, which the commit counter in meta tells.
"""

import bisect
import contextlib
import os
import sys

import lmdb

from . import faults, file as store_file, format as fmt
from .. import limits, program as programs
from ..errors import LedgerError, StoreFormatUnknown, StoreFull


# After an order id taken as new turned out to be stored, this many writes look
# every order id up before trying without again.
CAREFUL_WRITES_AFTER_CONFLICT = 8


class Store:
    def __init__(self, path, *, sync=True, map_size_bytes=None, readonly=False):
        self.path = os.fspath(path)
        self.sync_each_commit = sync
        self.readonly = readonly
        if not readonly:
            os.makedirs(self.path, exist_ok=True)
        # A truncated data file would be a SIGBUS at the first read through the map.
        store_file.check_whole(self.path, readonly)
        self.env = lmdb.open(
            self.path,
            map_size=map_size_bytes or limits.map_size_initial_bytes,
            max_dbs=limits.max_dbs,
            max_readers=limits.max_readers,
            sync=sync,
            metasync=sync,
            readonly=readonly,
            # One writer at a time; readers never wait for it (§9).
            lock=True,
        )
        try:
            self._open_dbs(readonly)
        except StoreFormatUnknown:
            self.env.close()
            raise
        except store_file.DAMAGE_ERRORS as error:
            self.env.close()
            raise store_file.damaged(self.path, error) from error
        self.cached_commit_count = None
        self.programs = []
        self.program_starts = []
        # Category codes never change once committed, so these caches (name ->
        # code, code -> name) are never stale; they are bounded because a
        # ledger may hold millions of categories (limits.categories_max).
        self.category_codes = {}
        self.category_names = {}
        self.member_cache = {}
        # member key -> (month, day) or None: the latest profile (§17), kept like member_cache.
        self.profile_cache = {}
        # True when profile_cache holds every member with a profile, so a member
        # absent from it has none (engagement.prepare_lookups); a set of keys that
        # holds at least every referee, or None when not loaded.
        self.profiles_complete = False
        self.referee_keys = None
        # Moved on by every change of a profile (and when the caches are dropped): an engine
        # may keep what it looked up in profile_cache while this number stays the same.
        self.profile_generation = 1
        # Writes still to look every order id up after a resent order was found
        # (see write): resends tend to come in runs, and each would run twice.
        self.careful_writes_left = 0
        try:
            with self.read() as txn:
                self.refresh(txn)
        except LedgerError:
            self.env.close()
            raise

    def _open_dbs(self, readonly):
        """Open the sub-databases; check (or, new, write) the format version."""
        self.dbs = {}
        if readonly:
            # Handles opened inside a read transaction die with it; let py-lmdb
            # open each in its own transaction instead.
            for name in fmt.ALL_DBS:
                try:
                    self.dbs[name] = self.env.open_db(name, create=False)
                except lmdb.NotFoundError:
                    if name not in fmt.OPTIONAL_DBS:
                        raise
                    # A store of an earlier format, read as it is: these are empty.
            with self.env.begin() as txn:
                self._check_format(txn.get(fmt.META_FORMAT, db=self.dbs[fmt.DB_META]))
            return
        with self.env.begin(write=True) as txn:
            for name in fmt.ALL_DBS:
                self.dbs[name] = self.env.open_db(name, txn=txn)
            meta = self.dbs[fmt.DB_META]
            stored = txn.get(fmt.META_FORMAT, db=meta)
            if stored is None:
                txn.put(fmt.META_FORMAT, fmt.U32.pack(fmt.FORMAT_VERSION), db=meta)
            else:
                self._check_format(stored)

    # --- cache coherence ----------------------------------------------------------

    def commit_count(self, txn):
        value = txn.get(fmt.META_COMMIT_COUNT, db=self.dbs[fmt.DB_META])
        return 0 if value is None else fmt.U64.unpack(value)[0]

    def refresh(self, txn):
        """Reload the caches if anything committed since they were filled."""
        count = self.commit_count(txn)
        if count == self.cached_commit_count:
            return
        self.member_cache.clear()
        self.profile_cache.clear()
        self.profile_generation += 1
        self.profiles_complete = False
        self.referee_keys = None
        self.programs = self._load_programs(txn)
        self.program_starts = [compiled.effective_from_s for compiled in self.programs]
        self.cached_commit_count = count

    def _check_format(self, stored):
        version = fmt.U32.unpack(stored)[0] if stored is not None and len(stored) == fmt.U32.size else None
        if version not in fmt.FORMAT_VERSIONS_READ:
            readable = " or ".join(str(each) for each in fmt.FORMAT_VERSIONS_READ)
            raise StoreFormatUnknown(
                f"{self.path}: store format {version} is not one this release reads ({readable}); "
                "a newer release wrote it"
            )

    def remember_category(self, name_key, code):
        """Cache a committed category; the cache is emptied when it reaches its bound."""
        if len(self.category_codes) >= limits.category_cache_entries_max:
            # Clear in place: an engine's batch holds a reference to the dict.
            self.category_codes.clear()
            self.category_names.clear()
        self.category_codes[name_key] = code
        self.category_names[code] = name_key

    def category_count(self, txn):
        """How many categories the transaction sees (LMDB keeps the count: no scan)."""
        return txn.stat(self.dbs[fmt.DB_CATEGORIES])["entries"]

    def forget(self):
        """Drop every cache: a write transaction failed after mutating them."""
        self.cached_commit_count = None
        self.member_cache.clear()
        # In place (an engine's batch holds the dict): a pipeline's detached batch may have cached
        # a category of the batch before it, which that batch's failed write did not store.
        self.category_codes.clear()
        self.category_names.clear()
        self.profile_cache.clear()
        self.profile_generation += 1
        self.profiles_complete = False
        self.referee_keys = None

    def _load_programs(self, txn):
        loaded = []
        for key, value in txn.cursor(db=self.dbs[fmt.DB_PROGRAMS]):
            version = fmt.U32.unpack(key)[0]
            effective_from_s = fmt.PROGRAM_HEAD.unpack_from(value)[0]
            document = programs.parse_document(bytes(value[fmt.PROGRAM_HEAD.size:]))
            loaded.append(programs.compile_program(document, version, effective_from_s))
        return loaded

    def program_at(self, time_s, txn=None):
        """The version in force at time_s; version 1 for earlier events (§3).

        With a read transaction, the versions that transaction sees: a reader
        never touches the caches (the writer owns them), it loads its own list
        when its snapshot is not the cached one.
        """
        programs, starts = self.programs, self.program_starts
        if txn is not None and self.commit_count(txn) != self.cached_commit_count:
            programs = self._load_programs(txn)
            starts = [compiled.effective_from_s for compiled in programs]
        if not programs:
            return None
        index = bisect.bisect_right(starts, time_s) - 1
        return programs[max(index, 0)]

    def program_versions(self, txn):
        """How many programme versions the transaction sees."""
        return txn.stat(self.dbs[fmt.DB_PROGRAMS])["entries"]

    def last_seq(self, txn):
        cursor = txn.cursor(db=self.dbs[fmt.DB_JOURNAL])
        if not cursor.last():
            return 0
        return fmt.U64.unpack(cursor.key())[0]

    # --- transactions ----------------------------------------------------------------

    @contextlib.contextmanager
    def read(self):
        """A read transaction: one consistent snapshot, never waiting for the writer.

        LMDB's errors for a damaged page become StoreDamaged naming the file."""
        try:
            with self._begin(write=False) as txn:
                yield txn
        except store_file.DAMAGE_ERRORS as error:
            raise store_file.damaged(self.path, error) from error

    def _begin(self, write):
        try:
            return self.env.begin(write=write, buffers=False)
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size and begin again.
            self.env.set_mapsize(0)
            return self.env.begin(write=write, buffers=False)

    def write(self, apply):
        """Run apply(writer) in one write transaction and commit it, durably.

        A full map grows the map and runs the batch again from the start; so
        does an order id the engine took as new without a lookup that flush
        finds stored (writer.OrdersConflict), then looking every order id up.
        Any other failure aborts, so nothing of the batch is committed.
        """
        from .writer import OrdersConflict, Writer

        check_orders = self.careful_writes_left > 0
        if check_orders:
            self.careful_writes_left -= 1
        while True:
            txn = self._begin(write=True)
            try:
                self.refresh(txn)
                writer = Writer(self, txn, check_orders=check_orders)
                result = apply(writer)
                if not writer.has_changes():
                    # Everything was refused or a duplicate: a refusal writes nothing at all.
                    txn.abort()
                    return result
                writer.flush()
                if faults.hook is not None:
                    faults.hook("commit")
                txn.commit()
            except lmdb.MapFullError:
                txn.abort()
                self.forget()
                self._grow_map()
                continue
            except OrdersConflict:
                # An order id taken as new was in the store (a resent batch):
                # run the batch again, looking every order id up.
                txn.abort()
                self.forget()
                check_orders = True
                self.careful_writes_left = CAREFUL_WRITES_AFTER_CONFLICT
                continue
            except lmdb.Error as error:
                txn.abort()
                self.forget()
                if store_file.is_disk_full(error, self.path):
                    raise StoreFull(f"{self.path}: no space left on device; {self._not_committed()}") from error
                if isinstance(error, store_file.DAMAGE_ERRORS):
                    raise store_file.damaged(self.path, error) from error
                raise
            except LedgerError:
                # Operations check everything before they change anything, so a
                # refusal leaves the caches as they were: keep them warm.
                txn.abort()
                raise
            except BaseException:
                txn.abort()
                self.forget()
                raise
            writer.committed()
            if faults.hook is not None:
                faults.hook("committed")
            return result

    def _not_committed(self):
        """What a failed write leaves: nothing of it, everything before it (the caller retries)."""
        try:
            with self.read() as txn:
                return (f"this write was not committed; the ledger holds every write before it "
                        f"(journal through seq {self.last_seq(txn):,}); free space and send it again")
        except (lmdb.Error, LedgerError):
            return "this write was not committed; free space, reopen the ledger and send it again"

    def _grow_map(self):
        current = self.env.info()["map_size"]
        try:
            if faults.hook is not None:
                faults.hook("grow")
            self.env.set_mapsize(current + max(current, limits.map_size_growth_bytes))
        except lmdb.Error as error:
            reason = "no space left on device" if store_file.is_disk_full(error, self.path) else str(error)
            raise StoreFull(
                f"{self.path}: the map is full and cannot grow ({reason}); {self._not_committed()}"
            ) from error

    def backup(self, destination):
        """A compacted copy of one snapshot at destination, complete or absent (store_file.backup)."""
        return store_file.backup(self.env, destination)

    def release_mapped_pages(self):
        """Drop this process's page-table entries of the LMDB map (Linux); the data stays in the page cache.

        Every commit rewrites the touched member records copy-on-write at new
        places in the file, and reading them maps those pages into this process:
        over a long backfill the mapped set spreads over the whole file (about 100
        MiB of RSS per million purchases, all of it page cache the kernel could
        drop, none of it memory the ledger holds). MADV_DONTNEED on a shared file
        mapping only unmaps: the next read faults the page back in from the page
        cache. Any failure leaves things as they were.
        """
        if _madvise is None:
            return
        real_path = os.path.realpath(os.path.join(self.path, "data.mdb"))
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    fields = line.split(maxsplit=5)
                    if len(fields) == 6 and fields[5].rstrip("\n") == real_path and fields[1][3] == "s":
                        start, end = (int(value, 16) for value in fields[0].split("-"))
                        _madvise(start, end - start, MADV_DONTNEED)
        except OSError:
            pass

    def sync(self):
        self.env.sync(True)

    def close(self):
        if not self.readonly and not self.sync_each_commit:
            self.env.sync(True)
        self.env.close()


def _load_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).madvise
        function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        function.restype = ctypes.c_int
        return function
    except (OSError, AttributeError):
        return None


MADV_DONTNEED = 4  # Linux
_madvise = _load_madvise()
