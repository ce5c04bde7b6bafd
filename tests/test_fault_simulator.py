"""The seeded fault simulator (in the spirit of TigerBeetle's VOPR), SPEC §9.

A seed drives everything: a random workload (purchase batches with resends and
duplicates inside a batch, refunds in parts, redemptions, adjustments, group
commits, expiry runs, programme versions, reopening with the other engine) and
a fault plan that strikes the write path at the points of `pointsledger.store.faults`:
before the first putmulti, between two, before the commit, after it, while the
map grows. A strike is an injected ENOSPC, EIO, MapFullError, a crash
(exception or KeyboardInterrupt) of the live ledger, or a real SIGKILL of a
forked process writing the same store.

After every fault the store must hold exactly the writes of some prefix of the
workload (every key and value equal to a reference ledger, written without
faults, that applied that prefix: all acknowledged writes, plus at most the one
that was struck), verify() must be clean, the live ledger's caches must agree
with what the store holds, and a resend of everything applied must change
nothing. A failing seed says how to replay it:

    pytest tests/test_fault_simulator.py --seed 1234      # one seed, exactly
    pytest tests/test_fault_simulator.py --seeds 5000     # seeds 0..4999

(options of tests/conftest.py; the default run takes seeds 0..DEFAULT_SEEDS-1).
"""

import calendar
import os
import random
import signal
import traceback
from decimal import Decimal

import lmdb
import pytest

from pointsledger import Ledger, LedgerError, StoreFull
from pointsledger.store import faults, format as fmt
from support import T_2026_01_01, dump_ledger

DEFAULT_SEEDS = 200
FORK = hasattr(os, "fork")
CLOCK_S = T_2026_01_01
# Month starts (expiry instants, promotion bounds, year ends) from 2026-01 to 2028-06.
MONTH_STARTS = [calendar.timegm((2026 + month // 12, month % 12 + 1, 1, 0, 0, 0)) for month in range(30)]
MEMBERS = ["m0", "m1", "m2", "m3", "é"]
CATEGORIES = ["a", "b", "electronics"]
POINTS = ("flush", "putmulti", "commit", "committed", "grow")


# --- the workload -----------------------------------------------------------------------------------------


def program_document(rng, effective_from):
    start = rng.choice(MONTH_STARTS)
    return {
        "currency": "USD",
        "earn": {"points": rng.choice([1, 2, 3]), "per_minor_units": 100},
        "category_multipliers": {"electronics": rng.choice([0, 2])},
        "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1},
                  {"name": "gold", "min_spend_minor": 30_000, "multiplier": Decimal("1.5")}],
        "promotions": [{"id": "p", "start": start, "end": start + rng.choice([1, 31, 400]) * 86_400,
                        "multiplier": 2, "bonus_points": rng.choice([0, 7])}],
        "expiry_months": rng.choice([0, 1, 2, 12]),
        "point_value": "0.01",
        "effective_from": effective_from,
    }


class Workload:
    """The seed's operations, generated one by one (they depend on the seed only)."""

    def __init__(self, rng):
        self.rng = rng
        self.now = T_2026_01_01
        self.orders = []  # (order id, member, amount, category, time) sent so far
        self.counter = 0
        self.program_from = MONTH_STARTS[0]

    def time(self):
        rng = self.rng
        self.now += rng.choice([0, 3_600, 86_400, 9 * 86_400])
        if rng.random() < 0.15:
            return rng.choice([month for month in MONTH_STARTS if month <= self.now] or [self.now])
        if rng.random() < 0.1:
            return self.now - rng.randrange(40 * 86_400)  # a late event
        return self.now

    def new_id(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def purchase(self):
        rng = self.rng
        if self.orders and rng.random() < 0.12:
            return rng.choice(self.orders)  # a resend: DUPLICATE
        order = (self.new_id("o"), rng.choice(MEMBERS), rng.choice([1, 99, 1_000, 12_345, 80_000]),
                 rng.choice(CATEGORIES + [f"c{rng.randrange(4)}"]), self.time())
        if self.orders and rng.random() < 0.04:
            old = rng.choice(self.orders)
            order = (old[0],) + order[1:]  # the same id with other content: ALREADY_EXISTS
        else:
            self.orders.append(order)
        return order

    def batch(self):
        rng = self.rng
        size = rng.choice([1, 2, 5, 17, 40, 40]) if rng.random() < 0.95 else rng.choice([150, 400])
        items = [self.purchase() for _ in range(size)]
        if rng.random() < 0.3:
            items.insert(rng.randrange(len(items) + 1), rng.choice(items))  # a duplicate inside the batch
        return ("purchases", tuple(list(column) for column in zip(*items)))

    def single(self):
        rng = self.rng
        kind = rng.choice(["refund", "refund", "redeem", "redeem", "adjust"])
        if kind == "refund" and self.orders:
            order = rng.choice(self.orders)
            return ("refund", (self.new_id("r"), order[0], max(1, order[2] // rng.choice([1, 2, 3])),
                               max(order[4], self.time())))
        if kind == "adjust":
            return ("adjust", (self.new_id("a"), rng.choice(MEMBERS), rng.choice([-500, -20, 15, 300]),
                               "goodwill", self.time()))
        return ("redeem", (self.new_id("d"), rng.choice(MEMBERS), rng.choice([1, 25, 200, 5_000]), self.time()))

    def next(self):
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            return self.batch()
        if roll < 0.75:
            return self.single()
        if roll < 0.83:
            return ("group", tuple(self.group_request() for _ in range(rng.randint(2, 4))))
        if roll < 0.9:
            return ("expire", (self.time(),))
        if roll < 0.95:
            self.program_from = max(self.program_from, rng.choice(MONTH_STARTS))
            return ("program", (program_document(rng, self.program_from),))
        return ("reopen", ())

    def group_request(self):
        if self.rng.random() < 0.5:
            return ("purchase", self.purchase())
        return self.single()


def apply(ledger, operation):
    """Run one operation; its outcome in a comparable form (a refusal is an outcome)."""
    kind, arguments = operation
    try:
        if kind == "purchases":
            return [outcome(raw) for raw in ledger.purchases(*arguments).raw]
        if kind == "group":
            return [outcome(each) for each in ledger.apply_group(list(arguments))]
        if kind == "program":
            return ledger.set_program(*arguments)
        if kind == "expire":
            return ledger.expire(*arguments)
        return getattr(ledger, kind)(*arguments)
    except LedgerError as error:
        if isinstance(error, StoreFull):
            raise
        return outcome(error)


def outcome(value):
    if isinstance(value, LedgerError):
        return (value.code, value.message)
    if isinstance(value, tuple) and len(value) == 5:  # a batch item: (status, seq, points, balance, error)
        return value[:4] + (None if value[4] is None else outcome(value[4]),)
    return value


def applied_part(operation, result):
    """What of an operation was applied, to resend: None when nothing was."""
    kind, arguments = operation
    if kind == "purchases":
        return operation
    if kind == "group":
        kept = tuple(request for request, each in zip(arguments, result) if not isinstance(each, tuple))
        return ("group", kept) if kept else None
    if kind in ("refund", "redeem", "adjust") and not isinstance(result, tuple):
        return operation
    return None  # a refusal, an expiry run, a programme version: not resent


# --- the fault plan -------------------------------------------------------------------------------------


class InjectedCrash(RuntimeError):
    """A bug striking inside the write path."""


class Strike:
    """The answer of a struck write: there was none (a sentinel)."""


def lmdb_error(kind):
    if kind == "mapfull":
        return lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached")
    text = "No space left on device" if kind == "enospc" else "Input/output error"
    return lmdb.Error(f"mdb_txn_commit: {text}")


class FaultPlan:
    """Strikes at the n-th time the write reaches a point: {(point, n): kind}."""

    def __init__(self, strikes):
        self.strikes = strikes
        self.hits = dict.fromkeys(POINTS, 0)
        self.struck = []

    def __call__(self, point):
        self.hits[point] += 1
        kind = self.strikes.get((point, self.hits[point]))
        if kind is None:
            return
        self.struck.append((point, self.hits[point], kind))
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "crash":
            raise InjectedCrash(f"injected at {point}")
        if kind == "interrupt":
            raise KeyboardInterrupt
        raise lmdb_error(kind)


def draw_plan(rng):
    point = rng.choice(["flush", "putmulti", "putmulti", "commit", "committed", "grow"])
    if point == "grow":
        # Growth follows a full map: a MapFullError first, then the strike while growing.
        first = (rng.choice(["flush", "putmulti", "commit"]), rng.randint(1, 3))
        return {first: "mapfull", ("grow", 1): rng.choice(["enospc", "kill"] if FORK else ["enospc"])}
    hit = rng.choice([1, 1, 2, 3, 5]) if point == "putmulti" else rng.choice([1, 1, 2])
    if point == "committed":
        kinds = ["interrupt", "kill"]
    else:
        kinds = ["enospc", "eio", "mapfull", "crash", "interrupt", "kill"]
    if not FORK:
        kinds = [kind for kind in kinds if kind != "kill"] or ["interrupt"]
    return {(point, hit): rng.choice(kinds)}


# --- the simulation -----------------------------------------------------------------------------------


class Simulation:
    def __init__(self, seed, tmp_path):
        self.seed = seed
        self.rng = random.Random(seed)
        self.engine = self.rng.choice(["python", "cython"])
        self.sync = self.rng.random() < 0.1  # fsyncs are the wall time; the code paths are the same
        self.map_size = self.rng.choice([None, 64 * 1024, 256 * 1024])
        self.path = tmp_path / "subject"
        self.subject = self.open_subject()
        self.reference = Ledger(tmp_path / "reference", engine=self.other_engine(), sync=False, clock=lambda: CLOCK_S)
        self.resend = []
        self.faults = 0

    def other_engine(self):
        return "python" if self.engine == "cython" else "cython"

    def open_subject(self):
        return Ledger(self.path, engine=self.engine, sync=self.sync, map_size_bytes=self.map_size,
                      clock=lambda: CLOCK_S)

    def fail(self, text):
        pytest.fail(f"seed {self.seed}: {text}\nreplay: pytest tests/test_fault_simulator.py --seed {self.seed}",
                    pytrace=False)

    def run(self, operations):
        workload = Workload(self.rng)
        first = ("program", (program_document(self.rng, MONTH_STARTS[0]),))
        self.step(first, self.rng.random() < 0.2)
        if self.reference.get_program().version != 1:
            self.fail("the first programme was refused")
        for _ in range(operations):
            operation = workload.next()
            if operation[0] == "reopen":
                self.subject.close()
                self.engine = self.other_engine()
                self.subject = self.open_subject()
                continue
            self.step(operation, self.rng.random() < 0.3)
        state, reference = dump_ledger(self.subject), dump_ledger(self.reference)
        if state != reference:
            self.fail(f"at the end: the store differs from the reference\n{describe_difference(state, reference)}")
        self.check_after_fault("at the end")
        self.subject.close()
        self.reference.close()

    def step(self, operation, faulty):
        if not faulty:
            self.acknowledged(operation, apply(self.subject, operation), apply(self.reference, operation))
            return
        plan = FaultPlan(draw_plan(self.rng))
        before = dump_ledger(self.reference)
        expected = apply(self.reference, operation)
        after = dump_ledger(self.reference)
        if "kill" in plan.strikes.values():
            result = self.run_killed(operation, plan)
        else:
            result = self.run_struck(operation, plan)
        if result is not Strike:
            self.acknowledged(operation, result, expected)
            return
        self.faults += 1
        where = f"{operation[0]} {operation[1]!r} struck by {plan.struck or plan.strikes}"
        state = dump_ledger(self.subject)
        if state == after:
            # Committed, not answered: the client resends, and nothing changes.
            self.check_after_fault(where + " (committed)")
            # (What it refused is not resent: a refused redemption may apply now.)
            resent = applied_part(operation, expected)
            if resent is not None:
                apply(self.subject, resent)
                if dump_ledger(self.subject) != after:
                    self.fail(f"{where}: resending the committed write changed the store")
            self.acknowledged(operation, expected, expected)
        elif state == before:
            self.check_after_fault(where + " (not committed)")
            # The client sends the write again, and it applies as it would have.
            self.acknowledged(operation, apply(self.subject, operation), expected)
        else:
            self.fail(f"{where}: the store is neither the prefix without the write nor with it\n"
                      f"against the prefix without it:\n{describe_difference(state, before)}\n"
                      f"against the prefix with it:\n{describe_difference(state, after)}")

    def run_struck(self, operation, plan):
        """Run the write in this process with the plan armed; Strike when it failed."""
        faults.hook = plan
        try:
            result = apply(self.subject, operation)
        except (StoreFull, lmdb.Error, InjectedCrash, KeyboardInterrupt) as error:
            if not plan.struck:
                self.fail(f"{operation[0]} raised {error!r} with no fault struck")
            return Strike
        finally:
            faults.hook = None
        if any(kind != "mapfull" for _, _, kind in plan.struck):
            self.fail(f"{operation[0]} returned {result!r} after {plan.struck}")
        return result

    def run_killed(self, operation, plan):
        """Run the write in a forked process that SIGKILLs itself at the strike.

        Killed, or done (the strike not reached) with its answer lost: either way
        the caller saw no answer (Strike).
        """
        self.subject.close()
        child = os.fork()
        if child == 0:  # the child never returns into pytest
            status = 0
            try:
                faults.hook = plan
                apply(self.open_subject(), operation)
            except BaseException:
                traceback.print_exc()
                status = 3
            os._exit(status)
        _, status = os.waitpid(child, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if not killed and os.WEXITSTATUS(status) != 0:
            self.fail(f"{operation[0]} {operation[1]!r}: the forked writer failed (status {status}; "
                      "its traceback is in the captured stderr)")
        self.subject = self.open_subject()
        return Strike

    def acknowledged(self, operation, result, expected):
        if result != expected:
            self.fail(f"{operation[0]} {operation[1]!r}: answered {result!r}, the reference {expected!r}")
        resent = applied_part(operation, result)
        if resent is not None:
            self.resend.append(resent)

    def check_after_fault(self, where):
        """verify() clean, the caches right, and a resend of everything applied changes nothing."""
        subject_dump = dump_ledger(self.subject)
        report = self.subject.verify()
        if not report.ok:
            self.fail(f"{where}: verify() found {report.problems}")
        self.check_caches(where)
        for operation in self.resend:
            result = apply(self.subject, operation)
            statuses = [status_of(each) for each in (result if isinstance(result, list) else [result])]
            if "APPLIED" in statuses:
                self.fail(f"{where}: resending {operation[0]} {operation[1]!r} applied it again: {result!r}")
        if dump_ledger(self.subject) != subject_dump:
            self.fail(f"{where}: resending everything changed the store")

    def check_caches(self, where):
        """The live ledger's caches hold what a freshly opened ledger would load."""
        store = self.subject.store
        with store.read() as txn:
            count = store.commit_count(txn)
            if store.cached_commit_count is None:
                if store.member_cache:
                    self.fail(f"{where}: caches forgotten but {len(store.member_cache)} members still cached")
                return
            if store.cached_commit_count != count:
                self.fail(f"{where}: caches of commit {store.cached_commit_count}, the store is at {count}")
            programs = [(fmt.U32.unpack(key)[0], fmt.PROGRAM_HEAD.unpack_from(value)[0])
                        for key, value in txn.cursor(db=store.dbs[fmt.DB_PROGRAMS])]
            cached = [(compiled.version, compiled.effective_from_s) for compiled in store.programs]
            if cached != programs:
                self.fail(f"{where}: cached programmes {cached}, stored {programs}")
            # The category cache holds some committed categories (it is bounded), each as stored.
            categories = {bytes(name): fmt.decode_category_code(code)
                          for name, code in txn.cursor(db=store.dbs[fmt.DB_CATEGORIES])}
            cached = {name: categories.get(name) for name in store.category_codes}
            if cached != store.category_codes or any(
                    store.category_codes.get(name) != code for code, name in store.category_names.items()):
                self.fail(f"{where}: cached categories {store.category_codes}, stored {categories}")
            for key, state in store.member_cache.items():
                stored = txn.get(key, db=store.dbs[fmt.DB_MEMBERS])
                if stored is None or bytes(stored) != state.encode():
                    self.fail(f"{where}: the cached member {key!r} differs from the stored record")


def status_of(result):
    """APPLIED, DUPLICATE or a refusal's code, of a batch item, an OperationResult or a refusal."""
    return result[0] if isinstance(result, tuple) else result.status


def describe_difference(subject, reference):
    lines = []
    for name in fmt.ALL_DBS:
        mine, theirs = dict(subject[name]), dict(reference[name])
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                lines.append(f"  {name} {key!r}: store {mine.get(key)!r}, reference {theirs.get(key)!r}")
    return "\n".join(lines[:20]) + (f"\n  ... {len(lines) - 20} more" if len(lines) > 20 else "")


def test_fault_simulation(fault_seed, tmp_path):
    simulation = Simulation(fault_seed, tmp_path)
    simulation.run(operations=40)
