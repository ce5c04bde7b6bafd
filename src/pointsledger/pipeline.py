"""Purchase batches on two cores: batch k written and committed while batch k+1 is applied.

`run(ledger, batches)` yields one BatchResult per batch, each once that batch's own
transaction has committed: the results, the journal and the store are those of calling
`Ledger.purchases` on each batch in turn (tests/test_pipeline.py). How (docs/design.md,
*Two cores for the backfill*):

- The main thread applies batch k+1 *detached*: with no transaction open, through a
  Writer whose txn (`_DetachedTxn`) answers only from `Carried`, the state the store
  will hold once batch k commits (next seq, totals, bonus total, member count, last order
  key, commit count), and raises `NeedsStore` at any other read. The member cache is
  complete in a backfill, and order ids not looked up are proven new when written
  (MDB_NOOVERWRITE), as with `check_orders=False` today. Under engagement rules the
  profile cache and the referee keys are made complete first, and the referees and
  referrals sub-databases are carried whole (`Carried.tables`); a journal read (a
  member's purchase count rebuilt) still needs the store. It then packs the batch's records
  (`Writer.encode_records`, member records encoded now, before k+2 changes them).
- A writer thread owns every write transaction of the pipeline (LMDB: begin, puts and
  commit on one thread): it begins, checks the commit count is the one the batch was
  applied against, writes the packed records with one GIL release (store/put.py) and the
  small counter updates (`Writer.write_rest`, the serial path's code), and commits.
- Any batch that needs the store, or any failure of a write (a stored order id, a full
  map, a full disk, a commit by another process, a fault), drains the pipeline: the
  batch in flight is finished or failed, the detached work is dropped with the caches
  (`Store.forget`), and the batch is run serially by `Store.write`, with all its
  handling; the pipeline then starts again from the next batch.
"""

import queue
import sys
import threading

from . import limits
from .engine import engagement
from .errors import LedgerError
from .results import BatchResult
from .store import faults, format as fmt
from .store.writer import Writer

# While a pipeline runs: how long a thread waiting for the GIL waits before asking the
# holder to let go (CPython's default is 5 ms, as long as a batch's whole write). 0.1 ms
# measured best of 0.02-5 ms for a 1 M backfill-seq (benchmarks/README.md, issue 15).
SWITCH_INTERVAL_S = 0.0001
MISSES_MAX = 3  # batches in a row that needed the store, after which the rest run serially
# Under engagement rules: the referral records carried whole (referees and referrals together)
# at most; a ledger with more runs its referees' purchases serially (NeedsStore).
CARRIED_REFERRAL_RECORDS_MAX = 1 << 18
# The sub-databases an engaged purchase reads by key (engagement._qualifying_referral, the
# C engine's open_referral), carried whole in Carried.tables under engagement rules.
CARRIED_TABLES = (fmt.DB_REFEREES, fmt.DB_REFERRALS)


class NeedsStore(Exception):
    """A detached batch needed a read of the store (not a LedgerError: the engines let it through)."""


class StoreMoved(Exception):
    """The store's commit count is not the one the batch was applied against (another writer)."""


class Carried:
    """What the store holds once the batches so far have committed (a detached writer's start)."""

    __slots__ = ("last_seq", "totals", "bonus_total", "member_count", "orders_last_key", "commit_count", "tables",
                 "category_count", "categories")

    @classmethod
    def read(cls, store, engaged=False):
        """engaged: carry CARRIED_TABLES whole too (each None when too large or absent)."""
        carried = cls()
        dbs = store.dbs
        with store.read() as txn:
            carried.tables = _read_tables(txn, dbs) if engaged else {}
            carried.last_seq = store.last_seq(txn)
            stored = txn.get(fmt.META_TOTALS, db=dbs[fmt.DB_META])
            carried.totals = list(fmt.COUNTERS.unpack(stored)) if stored else [0] * len(fmt.COUNTER_FIELDS)
            stored = txn.get(fmt.META_BONUS_TOTAL, db=dbs[fmt.DB_META])
            carried.bonus_total = fmt.I64.unpack(stored)[0] if stored else 0
            carried.member_count = txn.stat(dbs[fmt.DB_MEMBERS])["entries"]
            cursor = txn.cursor(db=dbs[fmt.DB_ORDERS])
            carried.orders_last_key = bytes(cursor.key()) if cursor.last() else b""
            carried.commit_count = store.commit_count(txn)
            carried.category_count = store.category_count(txn)
        carried.categories = {}  # name -> code of the categories new in the batches carried since
        return carried

    def after(self, writer, encoded):
        """The state once `writer`'s batch (its records `encoded`) has committed on top of this one."""
        carried = Carried()
        carried.last_seq = writer.next_seq - 1
        carried.totals = list(writer.totals)
        carried.bonus_total = writer.stored_bonus_total()
        carried.member_count = self.member_count + writer.new_member_count
        carried.orders_last_key = self.orders_last_key
        records, _, last_keys = encoded
        for index, last_key in enumerate(last_keys):
            if records.name(index) == fmt.DB_ORDERS and last_key > carried.orders_last_key:
                carried.orders_last_key = last_key
        carried.commit_count = self.commit_count + (1 if writer.has_changes() else 0)
        carried.category_count = self.category_count + len(writer.new_categories)
        carried.categories = dict(self.categories)
        carried.categories.update(writer.new_categories)
        carried.tables = dict(self.tables)
        for name, table in self.tables.items():
            changes = writer.overlay[name]
            if table is not None and changes:  # copied, not changed: a dropped batch leaves self whole
                table = dict(table)
                for key, value in changes.items():
                    if value is None:
                        table.pop(key, None)
                    else:
                        table[key] = bytes(value)
                carried.tables[name] = table
        return carried


def _read_tables(txn, dbs):
    """CARRIED_TABLES' every key and value, or None for all when they hold too many records."""
    present = [name for name in CARRIED_TABLES if dbs.get(name) is not None]
    if sum(txn.stat(dbs[name])["entries"] for name in present) > CARRIED_REFERRAL_RECORDS_MAX:
        return dict.fromkeys(CARRIED_TABLES)
    tables = dict.fromkeys(CARRIED_TABLES)
    for name in present:
        tables[name] = {bytes(key): bytes(value) for key, value in txn.cursor(db=dbs[name])}
    return tables


class _DetachedTxn:
    """A detached writer's txn: the two reads an engine's batch start makes, from Carried, under
    engagement rules the referral lookups, from the tables Carried holds whole, and the
    category lookups of a category the store's cache does not hold (a new one, or one new in
    a batch still in flight)."""

    def __init__(self, carried, dbs, category_codes):
        self.carried = carried
        self.dbs = dbs
        self.category_codes = category_codes  # the store's cache (Store.category_codes)
        # db handle -> the table carried whole (its every key: a key absent is absent from the store)
        self.tables = {dbs[name]: table for name, table in carried.tables.items() if table is not None}
        # The same tables for the Cython engine, which reads them without calling get().
        self.carried_tables = self.tables

    def get(self, key, default=None, db=None):
        if db is self.dbs[fmt.DB_CATEGORIES]:
            return self._category(bytes(key), default)
        table = self.tables.get(db)
        if table is None:
            raise NeedsStore("get")
        return table.get(bytes(key), default)

    def _category(self, name, default):
        """A category's stored value as the store will hold it once the batches before commit:
        one of theirs, else absent when the cache and theirs are every category, else unknown.
        (The writer then caches a category of a batch in flight: Store.forget drops it with the
        other caches should that batch's write fail.)"""
        code = self.carried.categories.get(name)
        if code is not None:
            return fmt.encode_category_code(code)
        if len(self.category_codes.keys() | self.carried.categories.keys()) == self.carried.category_count:
            return default
        raise NeedsStore("get")

    def stat(self, db):
        if db is self.dbs[fmt.DB_MEMBERS]:
            return {"entries": self.carried.member_count}
        if db is self.dbs[fmt.DB_CATEGORIES]:
            return {"entries": self.carried.category_count}
        raise NeedsStore("stat")

    def cursor(self, db=None):
        if db is self.dbs[fmt.DB_ORDERS]:
            return _LastKey(self.carried.orders_last_key)
        raise NeedsStore("cursor")


class _LastKey:
    """cursor.last() and cursor.key() of the orders sub-database, and nothing else."""

    def __init__(self, key):
        self._key = key

    def last(self):
        return bool(self._key)

    def key(self):
        return self._key

    def __getattr__(self, name):
        raise NeedsStore(f"cursor.{name}")


class _WriterThread:
    """The one thread that begins, writes and commits the pipeline's transactions."""

    def __init__(self, store):
        self.store = store
        self.jobs = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="pointsledger-pipeline-writer", daemon=True)
        self.thread.start()

    def submit(self, writer, encoded, expected_commit_count):
        job = _Job(writer, encoded, expected_commit_count)
        self.jobs.put(job)
        return job

    def stop(self):
        self.jobs.put(None)
        self.thread.join()

    def _serve(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self._write(job)
            except BaseException as error:  # handed to the main thread, which decides
                job.error = error
            job.done.set()

    def _write(self, job):
        store, writer = self.store, job.writer
        txn = store._begin(write=True)
        try:
            if store.commit_count(txn) != job.expected_commit_count:
                raise StoreMoved("another writer committed since the batch was applied")
            writer.txn = txn
            if faults.hook is not None:
                faults.hook("flush")
            writer.write_records(job.encoded)
            writer.write_rest()
            if faults.hook is not None:
                faults.hook("commit")
            txn.commit()
        except BaseException:
            txn.abort()
            raise


class _Job:
    __slots__ = ("writer", "encoded", "expected_commit_count", "error", "done")

    def __init__(self, writer, encoded, expected_commit_count):
        self.writer, self.encoded, self.expected_commit_count = writer, encoded, expected_commit_count
        self.error = None
        self.done = threading.Event()


class _Pending:
    """A batch applied, and once handed to the writer thread its job (None: nothing to write)."""

    __slots__ = ("columns", "raw", "job")

    def __init__(self, columns, raw, job):
        self.columns, self.raw, self.job = columns, raw, job


def run(ledger, batches):
    store = ledger.store
    writer_thread = _WriterThread(store)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
    pending = None  # the batch handed to the writer thread, not yet acknowledged
    unsubmitted = None  # a batch applied detached, not yet handed over (its changes are in the caches)
    try:
        # The first batch applies detached too when the caches allow it (a fresh store's do).
        with store.read() as txn:
            store.refresh(txn)
        # Under engagement rules (§14, §17) a purchase also reads profiles, referees and
        # referrals: answered from caches made complete before a detached batch (profiles,
        # referee keys: _fill_lookups) and from tables carried whole (referees, referrals).
        # A rarer read (a referrer's or member's journal, to count its purchases) needs the store.
        engaged = any(program.engaged for program in store.programs)
        carried = Carried.read(store, engaged)
        detachable = True
        # A batch that needed the store runs serially. After the second such batch in a row
        # the next one runs serially without trying; after MISSES_MAX in a row, all the rest:
        # a workload that always needs the store (the engagement rules' lookups) loses
        # little to failed attempts, and a fresh store's first batch (its new categories)
        # costs nothing more.
        serial_left, misses = 0, 0
        for columns in batches:
            try:
                count = ledger._check_batch(*columns)
            except LedgerError:  # refused whole: after the results of the batches before it
                if pending is not None:
                    done, pending = pending, None
                    yield from _acknowledge(ledger, done)
                raise
            applied = None
            if pending is None and not _lookups_complete(store):
                # Under any programme: a batch of lookup_scan_items_min purchases or more loads
                # them first (engagement.prepare_lookups), which a detached batch cannot. Left
                # to it, a large first batch failed detached and ran again serially.
                _fill_lookups(store)  # as the member cache below, never beside a write in flight
            complete = len(store.member_cache) == carried.member_count
            if detachable and not complete and pending is None:
                # Emptied by a fallback: complete it again. Never beside a write in flight: a
                # read transaction may adopt another process's map size (set_mapsize), which
                # must not happen under the writer thread's put (store/put.py runs outside
                # py-lmdb's own guard of it).
                _fill_member_cache(store)
                complete = True
            if (detachable and complete and count and store.careful_writes_left == 0 and not serial_left
                    and (pending is not None or _categories_cached(store, columns[3]))):
                applied = _apply_detached(ledger, columns, carried)
                misses = misses + 1 if applied is None else 0
                serial_left = (0, 0, 1)[misses] if misses < MISSES_MAX else -1
            elif serial_left > 0:
                serial_left -= 1
            if applied is None:  # serial: after everything before it is acknowledged
                if pending is not None:
                    done, pending = pending, None
                    yield from _acknowledge(ledger, done)
                raw = ledger._apply_batch(*columns) if count else []
                if count:  # the next batch applies detached from what this one left
                    carried = Carried.read(store, engaged)
                yield BatchResult(raw)
                continue
            writer, raw, encoded = applied
            unsubmitted = _Pending(columns, raw, None)
            next_carried = carried.after(writer, encoded)
            if pending is not None:
                done, pending = pending, None
                if not (done.job is None or _wait(done.job)):
                    # Batch k's write failed: drop k+1's detached work, run both serially.
                    unsubmitted = None
                    yield from _acknowledge(ledger, done)
                    raw = ledger._apply_batch(*columns)
                    carried = Carried.read(store, engaged)
                    yield BatchResult(raw)
                    continue
                _committed(done)
                # Acknowledged before k+1 is handed over: a caller that stops here (or is
                # killed) leaves at most the batch it was last answered for, plus one.
                yield BatchResult(done.raw)
            unsubmitted.job = writer_thread.submit(writer, encoded, carried.commit_count) if writer.has_changes() else None
            pending, unsubmitted = unsubmitted, None
            carried = next_carried
        if pending is not None:
            done, pending = pending, None
            yield from _acknowledge(ledger, done)
    finally:
        if unsubmitted is not None:
            store.forget()  # its changes to the caches will not be written
        if pending is not None and pending.job is not None:
            pending.job.done.wait()  # committed or not, never left half-way on another thread
            if pending.job.error is None:
                _committed(pending)
            else:
                store.forget()
        writer_thread.stop()
        sys.setswitchinterval(interval)


def _apply_detached(ledger, columns, carried):
    """(writer, raw results, encoded records) of the batch applied from carried; None when it
    needs the store (the caches it half-changed are dropped: Store.forget)."""
    store = ledger.store
    writer = Writer(store, _DetachedTxn(carried, store.dbs, store.category_codes), check_orders=False, carried=carried)
    try:
        raw = ledger.engine.apply_purchases(writer, *columns)
        encoded = writer.encode_records()
    except NeedsStore:
        store.forget()
        return None
    except BaseException:
        store.forget()
        raise
    return writer, raw, encoded


def _categories_cached(store, categories):
    """Whether the batch can apply detached as far as its categories go: those stored but not
    cached are read and cached first; a new one is allocated detached (Carried keeps the codes
    of new categories) only when the cache then holds every stored category, since the code it
    gets is the count of them. Otherwise a detached try would need the store and waste its
    apply and, worse, every cache (Store.forget: under engagement rules the profiles, referee
    keys and members are then read again), so such a batch runs serially at once. Asked only
    with no write in flight (a read transaction then, as in _fill_member_cache): the first
    batch, and the first after a serial one; a batch beside a write in flight is tried as
    before (a set of its categories costs ~1 ms a batch, more than it would save)."""
    codes = store.category_codes
    try:
        names = set(categories)
    except TypeError:  # unhashable items: the engine refuses them, the serial path answers
        return False
    missing = []
    for name in names:
        if not isinstance(name, str):  # refused by the engine: the serial path answers
            return False
        key = name.encode("utf-8", "surrogatepass")
        if key not in codes:
            if not 0 < len(key) <= limits.category_bytes_max:
                return False  # refused by the engine, never stored: not looked up
            missing.append(key)
    if not missing:
        return True
    # No refresh: a stored category's code never changes, whoever committed it.
    with store.read() as txn:
        db = store.dbs[fmt.DB_CATEGORIES]
        new = False
        for key in missing:
            value = txn.get(key, db=db)
            if value is None:
                new = True  # its code is allocated from the count of stored categories
            else:
                store.remember_category(key, fmt.decode_category_code(value))  # committed: safe to cache
        return not new or len(codes) == store.category_count(txn)


def _fill_member_cache(store):
    """Every stored member into the member cache (a detached batch takes a member the cache
    lacks for a new one, so it runs only on a complete cache: a fresh store's, or this)."""
    cache, decode = store.member_cache, store.engine.MemberState.decode
    with store.read() as txn:
        store.refresh(txn)
        for key, value in txn.cursor(db=store.dbs[fmt.DB_MEMBERS]):
            key = bytes(key)
            if cache.get(key) is None:
                cache[key] = decode(bytes(value))


def _lookups_complete(store):
    return store.profiles_complete and store.referee_keys is not None


def _fill_lookups(store):
    """The profile cache made complete and the referee keys loaded (engagement.prepare_lookups'
    loaders, bounded as they are: a cache left incomplete makes a batch need the store)."""
    with store.read() as txn:
        store.refresh(txn)
        lookup = _Lookup(store, txn)
        if not store.profiles_complete:
            engagement._load_profiles(lookup, limits.profile_cache_entries_max)
        if store.referee_keys is None:
            engagement._load_referees(lookup, CARRIED_REFERRAL_RECORDS_MAX)


class _Lookup:
    """What engagement's loaders read of a writer: a read transaction, nothing written."""

    def __init__(self, store, txn):
        self.store, self.txn, self.dbs = store, txn, store.dbs
        self.overlay = {fmt.DB_PROFILES: {}, fmt.DB_REFEREES: {}}


def _wait(job):
    job.done.wait()
    return job.error is None


def _committed(pending):
    """Batch committed: what it added becomes the cached truth (on the main thread, which owns the caches)."""
    if pending.job is not None:
        pending.job.writer.committed()


def _acknowledge(ledger, pending):
    """Yield the pending batch's result once committed; if its write failed, run it again serially."""
    if pending.job is None or _wait(pending.job):
        _committed(pending)
        yield BatchResult(pending.raw)
        return
    # Whatever failed (OrdersConflict, MapFullError, a full disk, StoreMoved, a fault), the
    # serial path runs the batch again with all its handling, and raises what must be raised.
    ledger.store.forget()
    yield BatchResult(ledger._apply_batch(*pending.columns))
