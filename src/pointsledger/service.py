"""The gRPC service (SPEC §9, §10): a grpc.aio server over one Ledger.

    python -m pointsledger.service --data ./pointsledger-data --address 127.0.0.1:50051

Shape:
- `LedgerServicer` subclasses the generated base and stays thin: proto in,
  Ledger call, proto out. The `rpc` decorator is the one place where a call is
  admitted (shutting down → UNAVAILABLE, token and scope → UNAUTHENTICATED /
  PERMISSION_DENIED), where a LedgerError becomes its status code (the field
  named for INVALID_ARGUMENT), and where calls are counted and timed.
- `GroupCommitWriter` is the one thread that writes. Unary writes queue up; the
  writer takes everything queued (up to `group_items_max`) and applies it with
  `Ledger.apply_group` in ONE synced commit, then answers each caller with its
  own outcome: a caller is answered only after its commit is durable. Stream
  batches go through the same queue; batches queued back to back share one
  commit the same way (see GroupCommitWriter). Programme changes and expiry
  runs are commits of their own. So LMDB has one writer.
- Reads (balance, history, journal, liability, programme) are LMDB read
  transactions: they never wait for the writer. Point reads (a balance, a
  programme) take tens of microseconds and run on the event loop, where a
  thread hop would cost more than the read; reads that scan (history pages,
  journal chunks, many balances, the liability report) run in a thread pool so
  that one large read does not hold up the calls behind it. (All of it shares
  one GIL with the writer: the pool bounds stalls, it adds no parallelism.)
- Shutdown (SIGTERM/SIGINT, or `LedgerServer.stop`): new calls get
  UNAVAILABLE, ingest streams stop reading and answer what they sent to the
  writer, the writer drains its queue and commits, then the store is closed.
"""

import argparse
import asyncio
import collections
import concurrent.futures
import dataclasses
import inspect
import itertools
import ipaddress
import json
import logging
import os
import queue
import signal
import sys
import threading
import time

import grpc
import numpy
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import limits, program as programs
from .auth import SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE, TokenStore
from ._engine_py import validate_time
from .errors import InvalidArgument, LedgerError, ResourceExhausted
from .ledger import DEFAULT_PATH, open_with_example_program
from .metrics import Metrics
from .v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Ledger"].full_name  # "pointsledger.v1.Ledger"
FIELD_METADATA_KEY = "pointsledger-field"

# Limits of the service, units last (the ledger's own are in limits.py).
group_items_max_default = 1024  # unary writes sharing one commit
# Purchases of queued stream batches sharing one commit. Bounded because the engine holds
# the GIL while it applies them, and unary calls and reads wait for the loop meanwhile.
batch_merge_items_max_default = 25_000
stream_batch_items_max_default = 100_000  # purchases in one IngestPurchases batch
message_bytes_max_default = 16 << 20  # a 100,000-item batch is about 5 MiB
stream_batches_in_flight_max = 4  # batches of one stream read ahead of their answers
journal_chunk_entries = 1_000  # entries per ReadJournal message
journal_follow_poll_s = 1.0  # a follower re-reads this often even without a wake-up (other writers)
history_limit_default = 100
balances_max = 10_000  # member ids in one GetBalances call
read_threads_default = 4
# The writer thread gives up the GIL inside LMDB calls many times per batch, and each time
# waits up to the switch interval to get it back from a busy event loop (a convoy: with
# CPython's default 5 ms, a stream's commits slowed 3-40x under concurrent calls here).
# `serve` shortens the interval for its process; 1 ms measured best (0.1 ms costs more).
gil_switch_interval_s = 0.001
shutdown_grace_s_default = 30.0

assert stream_batch_items_max_default <= limits.batch_items_max
assert batch_merge_items_max_default <= limits.batch_items_max
assert journal_chunk_entries <= limits.journal_limit_max

log = logging.getLogger("pointsledger.service")


# --- structured logs ------------------------------------------------------------------


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, then the record's fields."""

    def format(self, record):
        line = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level=logging.INFO, stream=None):
    """JSON lines on stderr for the pointsledger loggers (called by `serve`, not on import)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("pointsledger")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _log(level, event, **fields):
    if log.isEnabledFor(level):
        log.log(level, event, extra={"fields": fields})


# --- the writer: group commit ------------------------------------------------------------

JOB_GROUPED = "grouped"  # a unary write: many share one apply_group commit
JOB_BATCH = "batch"  # a stream batch: consecutive ones share one purchases() commit
JOB_ALONE = "alone"  # a callable that is its own commit (programme, expiry run)
_STOP = object()


class DeadlineExpired(Exception):
    """A write whose caller's deadline passed before the writer reached it: not applied."""


@dataclasses.dataclass(eq=False, slots=True)
class _Job:
    kind: str
    operation: object  # "purchase" … (grouped), the columns' item count (batch), a callable (alone)
    arguments: tuple
    future: asyncio.Future
    deadline: float | None  # time.monotonic() after which the caller no longer waits


class GroupCommitWriter:
    """The one thread that writes the ledger (SPEC §9 group commit).

    It takes the next job and every job of the same kind queued behind it, up to
    a bound, and commits them together: unary writes through `apply_group`
    (`group_items_max` of them), stream batches as one `purchases` call over
    their concatenated columns (`batch_merge_items_max` purchases). Applying
    batches back to back in one transaction is exactly applying them one after
    the other (a later occurrence of an order id is a duplicate or a conflict
    either way, §6), so each batch still gets its own per-item results; they
    only share the fsync and the rewrite of the members they have in common.
    Each caller is answered after the commit that holds its write.
    """

    def __init__(self, ledger, metrics, group_items_max=group_items_max_default,
                 batch_merge_items_max=batch_merge_items_max_default, on_commit=None):
        for name, value in (("group_items_max", group_items_max), ("batch_merge_items_max", batch_merge_items_max)):
            if not 1 <= value <= limits.batch_items_max:
                raise ValueError(f"{name} must be 1 to {limits.batch_items_max}")
        self.ledger = ledger
        self.metrics = metrics
        self.group_items_max = group_items_max
        self.batch_merge_items_max = batch_merge_items_max
        self.on_commit = on_commit
        self.last_seq = ledger.last_seq()
        self._queue = queue.SimpleQueue()
        metrics.writes_queued.set_function(self._queue.qsize)  # read at scrape time, not kept per job
        self._open = threading.Event()  # cleared by hold(): the writer waits (tests)
        self._open.set()
        self._held = 0
        self._thread = threading.Thread(target=self._run, name="pointsledger-writer", daemon=True)
        self._loop = None
        self.commits = 0

    def start(self, loop):
        self._loop = loop
        self._thread.start()

    def submit_grouped(self, operation, arguments, deadline=None):
        """Queue one unary write; the future gets its OperationResult or LedgerError."""
        return self._submit(_Job(JOB_GROUPED, operation, arguments, None, deadline))

    def submit_batch(self, columns):
        """Queue a batch of purchases (5 columns); the future gets its raw per-item results."""
        return self._submit(_Job(JOB_BATCH, len(columns[0]), columns, None, None))

    def submit_alone(self, function, arguments=(), deadline=None):
        """Queue a write that is its own commit; the future gets what it returns."""
        return self._submit(_Job(JOB_ALONE, function, arguments, None, deadline))

    def _submit(self, job):
        job.future = self._loop.create_future()
        self._queue.put(job)
        return job.future

    def stop(self):
        """Apply everything queued so far, then end the thread (blocks until it has)."""
        self._open.set()
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def hold(self):
        """Make the writer wait before its next job (tests: build a queue, pass a deadline)."""
        self._open.clear()

    def release(self):
        self._open.set()

    def pending(self):
        """Jobs not yet applied: queued, or taken and waiting for release()."""
        return self._queue.qsize() + self._held

    def _run(self):
        carried = None
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if not self._open.is_set():
                self._held = 1
                self._open.wait()
                self._held = 0
            if job is _STOP:
                return
            jobs, carried = self._gather(job) if job.kind != JOB_ALONE else ([job], None)
            try:
                if job.kind == JOB_GROUPED:
                    self._run_group(jobs)
                elif job.kind == JOB_BATCH:
                    self._run_batches(jobs)
                else:
                    self._run_alone(job)
            except Exception as error:  # a bug: answer the callers rather than leave them waiting
                _log(logging.ERROR, "writer error", error=repr(error))
                self._loop.call_soon_threadsafe(self._resolve, [(each.future, error) for each in jobs])

    def _gather(self, first):
        """(first and the jobs of its kind queued right behind it, the job that ended the run)."""
        jobs = [first]
        if first.kind == JOB_GROUPED:
            room = self.group_items_max - 1
        else:
            room = self.batch_merge_items_max - first.operation
        while room > 0:
            try:
                following = self._queue.get_nowait()
            except queue.Empty:
                return jobs, None
            if following is _STOP or following.kind != first.kind:
                return jobs, following
            room -= 1 if following.kind == JOB_GROUPED else following.operation
            if room < 0:
                return jobs, following
            jobs.append(following)
        return jobs, None

    def _live(self, jobs):
        """(jobs still wanted, jobs whose deadline passed); cancelled callers are dropped."""
        now = time.monotonic()
        live, expired = [], []
        for job in jobs:
            if job.future.cancelled():  # the caller went away before its turn: nothing applied
                continue
            if job.deadline is not None and now > job.deadline:
                expired.append(job)
            else:
                live.append(job)
        return live, expired

    def _run_group(self, group):
        live, expired = self._live(group)
        outcomes = []
        if live:
            started = time.perf_counter()
            try:
                outcomes = self.ledger.apply_group([(job.operation, job.arguments) for job in live])
            except Exception as error:  # the whole commit failed (disk full, …): nobody's write happened
                _log(logging.ERROR, "group commit failed", error=repr(error), size=len(live))
                outcomes = [error] * len(live)
            self.metrics.commit("group", time.perf_counter() - started)
            self.metrics.group_size.observe(len(live))
        resolutions = [(job.future, outcome) for job, outcome in zip(live, outcomes)]
        resolutions += [(job.future, DeadlineExpired("the deadline passed before the write")) for job in expired]
        self._answer(resolutions)

    def _run_batches(self, batches):
        # A batch whose stream was cancelled before its turn is dropped: it was never acknowledged.
        live = [job for job in batches if not job.future.cancelled()]
        if not live:
            return
        if len(live) == 1:
            columns = live[0].arguments
        else:
            columns = [list(itertools.chain.from_iterable(job.arguments[index] for job in live))
                       for index in (0, 1, 3)]
            columns[2:2] = [numpy.concatenate([job.arguments[2] for job in live])]
            columns.append(numpy.concatenate([job.arguments[4] for job in live]))
        started = time.perf_counter()
        try:
            raw_results = self.ledger.purchases(*columns).raw
        except Exception as error:
            _log(logging.ERROR, "batch commit failed", error=repr(error), batches=len(live))
            self._answer([(job.future, error) for job in live])
            return
        self.metrics.commit("batch", time.perf_counter() - started)
        resolutions, offset = [], 0
        for job in live:
            resolutions.append((job.future, raw_results[offset:offset + job.operation]))
            offset += job.operation
        self._answer(resolutions)

    def _run_alone(self, job):
        live, expired = self._live([job])
        if expired:
            self._answer([(job.future, DeadlineExpired("the deadline passed before the write"))])
            return
        if not live:
            return
        started = time.perf_counter()
        try:
            outcome = job.operation(*job.arguments)
        except Exception as error:
            outcome = error
        self.metrics.commit("call", time.perf_counter() - started)
        self._answer([(job.future, outcome)])

    def _answer(self, resolutions):
        last_seq = self.ledger.last_seq()
        if last_seq != self.last_seq:
            self.metrics.entries.inc(last_seq - self.last_seq)
            self.last_seq = last_seq
            self.commits += 1
        # One hop to the loop for the whole group, not one per caller.
        self._loop.call_soon_threadsafe(self._resolve, resolutions)

    def _resolve(self, resolutions):
        for future, outcome in resolutions:
            if future.done():  # cancelled while its write was applied
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if self.on_commit is not None:
            self.on_commit()


# --- proto conversions ------------------------------------------------------------------

ENTRY_KINDS = {name: pb.EntryKind.Value("ENTRY_KIND_" + name)
               for name in ("EARN", "CLAWBACK", "REDEEM", "ADJUST", "EXPIRE", "BONUS")}
ITEM_STATUSES = {"APPLIED": pb.ITEM_STATUS_APPLIED, "DUPLICATE": pb.ITEM_STATUS_DUPLICATE}
ITEM_CODES = {name: pb.Code.Value("CODE_" + name) for name in
              ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION")}


def operation_result(result):
    return pb.OperationResult(duplicate=result.status == "DUPLICATE", seq=result.seq,
                              points=result.points, balance=result.balance)


def entry_message(entry):
    return pb.Entry(seq=entry.seq, kind=ENTRY_KINDS.get(entry.kind, pb.ENTRY_KIND_UNSPECIFIED),
                    member_id=entry.member_id, ref_id=entry.ref_id, points=entry.points,
                    balance=entry.balance, time_s=entry.time_s, program_version=entry.program_version)


def balance_message(balance):
    message = pb.Balance(
        member_id=balance.member_id, as_of_s=balance.as_of_s, balance=balance.balance,
        available=balance.available, debt=balance.debt, next_expiry_points=balance.next_expiry_points,
        tier=balance.tier, tier_year=balance.tier_year, spend_minor=balance.spend_minor,
        earned=balance.earned, redeemed=balance.redeemed, expired=balance.expired,
        clawed_back=balance.clawed_back, adjusted=balance.adjusted,
    )
    if balance.next_expiry_s is not None:
        message.next_expiry_s = balance.next_expiry_s
    return message


def item_error(index, error):
    return pb.ItemError(index=index, code=ITEM_CODES.get(error.code, pb.CODE_INTERNAL),
                        field=error.field or "", message=str(error))


def batch_response(batch_index, batch_id, raw_results):
    """The columnar answer to one batch, from the engine's raw (status, seq, points, balance, error)."""
    if not raw_results:
        return pb.IngestPurchasesResponse(batch_index=batch_index, batch_id=batch_id)
    names = [raw[0] for raw in raw_results]
    applied = names.count("APPLIED")
    if applied == len(names):  # the common case: no per-item look-ups
        statuses = [pb.ITEM_STATUS_APPLIED] * applied
        item_errors = []
    else:
        statuses = [ITEM_STATUSES.get(name, pb.ITEM_STATUS_REFUSED) for name in names]
        item_errors = [item_error(index, raw[4]) for index, raw in enumerate(raw_results) if raw[4] is not None]
    return pb.IngestPurchasesResponse(
        batch_index=batch_index, batch_id=batch_id, statuses=statuses,
        seqs=[raw[1] for raw in raw_results], points=[raw[2] for raw in raw_results],
        balances=[raw[3] for raw in raw_results], errors=item_errors, applied=applied,
        duplicates=len(names) - applied - len(item_errors), refused=len(item_errors),
    )


def liability_message(report):
    return pb.Liability(
        as_of_s=report.as_of_s, currency=report.currency, point_value=str(report.point_value),
        earned=report.earned, adjusted_positive=report.adjusted_positive,
        adjusted_negative=report.adjusted_negative, clawed_back=report.clawed_back,
        redeemed=report.redeemed, expired=report.expired, outstanding=report.outstanding,
        outstanding_value=str(report.outstanding_value),
        outstanding_by_tier=[pb.TierOutstanding(tier=tier, points=points)
                             for tier, points in report.outstanding_by_tier.items()],
        expiring_30_days=report.expiring_30_days, expiring_60_days=report.expiring_60_days,
        expiring_90_days=report.expiring_90_days, overdue=report.overdue, issued=report.issued,
    )


def program_message(version):
    return pb.ProgramVersion(version=version.version, effective_from_s=version.effective_from_s,
                             document_json=programs.canonical_json(version.document))


def _optional(message, field):
    return getattr(message, field) if message.HasField(field) else None


# --- the servicer -------------------------------------------------------------------------


class _Refused(Exception):
    """Raised inside a handler to end the call with a status that is not a LedgerError."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def rpc(scope):
    """Admit, run and account for one RPC (the one place errors become status codes)."""
    def decorate(method):
        name = method.__name__
        if inspect.isasyncgenfunction(method):
            async def stream_handler(self, request, context):
                started = time.perf_counter()
                code = "OK"
                try:
                    self._admit(context, name, scope)
                    async for response in method(self, request, context):
                        yield response
                except Exception as error:
                    status = self._status_of(name, error)
                    code = status[0].name
                    await context.abort(status[0], status[1], trailing_metadata=status[2])
                except BaseException:  # cancelled (client gone, deadline) or closed: grpc has answered
                    code = "CANCELLED"
                    raise
                finally:
                    self.metrics.request(name, code, time.perf_counter() - started)
            stream_handler.__name__ = name
            return stream_handler

        async def unary_handler(self, request, context):
            started = time.perf_counter()
            code = "OK"
            try:
                self._admit(context, name, scope)
                return await method(self, request, context)
            except Exception as error:
                status = self._status_of(name, error)
                code = status[0].name
                await context.abort(status[0], status[1], trailing_metadata=status[2])
            except BaseException:
                code = "CANCELLED"
                raise
            finally:
                self.metrics.request(name, code, time.perf_counter() - started)
        unary_handler.__name__ = name
        return unary_handler
    return decorate


class LedgerServicer(pb_grpc.LedgerServicer):
    def __init__(self, ledger, writer, metrics, *, tokens=None, read_pool=None,
                 stream_batch_items_max=stream_batch_items_max_default):
        self.ledger = ledger
        self.writer = writer
        self.metrics = metrics
        self.tokens = tokens
        self.read_pool = read_pool
        self.stream_batch_items_max = stream_batch_items_max
        self.stopping = False
        self._commit_event = asyncio.Event()
        self._stopping_event = asyncio.Event()

    # --- admission and errors (used by @rpc) --------------------------------------------

    def _admit(self, context, name, scope):
        if self.stopping:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        if self.tokens is None:
            return
        principal = self.tokens.authenticate(context.invocation_metadata())
        if principal is None:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED,
                           "a valid `authorization: Bearer <token>` is required")
        if scope not in principal.scopes:
            _log(logging.WARNING, "permission denied", rpc=name, token=principal.name, scope=scope)
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED,
                           f"{name} needs the {scope!r} scope; token {principal.name!r} has "
                           f"{', '.join(sorted(principal.scopes))}")

    @staticmethod
    def _status_of(name, error):
        """(grpc.StatusCode, message, trailing metadata) for an error raised by a handler."""
        if isinstance(error, (LedgerError, _Refused, DeadlineExpired)):
            # An expected refusal: its traceback is of no use, and it keeps the frames it
            # passed through alive, with their LMDB read transactions, each holding one of
            # the environment's reader slots until it is freed (py-lmdb frees the slot with
            # the object). grpc keeps the error around a while: with 64 busy clients the 256
            # slots ran out (ReadersFullError) before the garbage collector came by.
            error.__traceback__ = None
        if isinstance(error, _Refused):
            return error.code, error.message, ()
        if isinstance(error, DeadlineExpired):
            return grpc.StatusCode.DEADLINE_EXCEEDED, str(error), ()
        if isinstance(error, LedgerError):
            code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)
            metadata = ((FIELD_METADATA_KEY, str(error.field)),) if error.field is not None else ()
            return code, str(error), metadata
        log.error("internal error", exc_info=error, extra={"fields": {"rpc": name, "error": repr(error)}})
        return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}", ()

    def notify_commit(self):
        """Wake journal followers (called on the loop after each commit)."""
        self._commit_event.set()
        self._commit_event = asyncio.Event()

    def begin_shutdown(self):
        self.stopping = True
        self._stopping_event.set()
        self.notify_commit()

    async def _read(self, function, *arguments):
        return await asyncio.get_running_loop().run_in_executor(self.read_pool, function, *arguments)

    @staticmethod
    def _deadline(context):
        remaining = context.time_remaining()
        return None if remaining is None else time.monotonic() + remaining

    async def _write(self, operation, arguments, context):
        outcome = await self.writer.submit_grouped(operation, arguments, self._deadline(context))
        return operation_result(outcome)

    # --- writes -------------------------------------------------------------------------

    @rpc(SCOPE_WRITE)
    async def RecordPurchase(self, request, context):
        return await self._write("purchase", (request.order_id, request.member_id, request.amount_minor,
                                              request.category, request.time_s), context)

    @rpc(SCOPE_WRITE)
    async def Refund(self, request, context):
        return await self._write("refund", (request.refund_id, request.order_id, request.amount_minor,
                                            request.time_s), context)

    @rpc(SCOPE_WRITE)
    async def Redeem(self, request, context):
        return await self._write("redeem", (request.redemption_id, request.member_id, request.points,
                                            request.time_s), context)

    @rpc(SCOPE_ADMIN)
    async def Adjust(self, request, context):
        return await self._write("adjust", (request.adjustment_id, request.member_id, request.points,
                                            request.reason, request.time_s), context)

    @rpc(SCOPE_WRITE)
    async def IngestPurchases(self, request_iterator, context):
        """Read ahead up to `stream_batches_in_flight_max` batches; answer each in order once durable."""
        requests = request_iterator.__aiter__()
        pending = collections.deque()  # (batch_id, writer future), in stream order
        reading = asyncio.ensure_future(requests.__anext__())
        stopping = asyncio.ensure_future(self._stopping_event.wait())
        refusal = None  # what ends the stream once every batch before it is answered
        batch_index = 0
        try:
            while pending or reading is not None:
                waits = {stopping} if not stopping.done() else set()
                if pending:
                    waits.add(pending[0][1])
                if reading is not None and len(pending) < stream_batches_in_flight_max:
                    waits.add(reading)
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if pending and pending[0][1].done():
                    batch_id, future = pending.popleft()
                    yield batch_response(batch_index, batch_id, future.result())
                    batch_index += 1
                    continue
                if reading is not None and reading.done():
                    request, reading = self._take(reading), None
                    if request is not None:
                        try:
                            columns = self._batch_columns(request)
                        except LedgerError as error:
                            refusal = error  # read no further: the stream ends after the answers
                            continue
                        self.metrics.batch_size.observe(len(columns[0]))
                        future = self.writer.submit_batch(columns)
                        pending.append((request.batch_id, future))
                        reading = asyncio.ensure_future(requests.__anext__())
                if stopping.done() and reading is not None:
                    # Shutting down: read no more; answer what the writer has.
                    reading.cancel()
                    reading = None
                    refusal = _Refused(grpc.StatusCode.UNAVAILABLE,
                                       "the server is shutting down; resend the unanswered batches")
            if refusal is not None:
                raise refusal
        finally:
            stopping.cancel()
            if reading is not None:
                reading.cancel()
            for _, future in pending:  # the client left: its unanswered batches need not be applied
                future.cancel()

    @staticmethod
    def _take(reading):
        """The next request of a finished read, or None at the end of the stream."""
        try:
            return reading.result()
        except StopAsyncIteration:
            return None

    def _batch_columns(self, request):
        count = len(request.order_ids)
        if count > self.stream_batch_items_max:
            raise ResourceExhausted(
                f"a batch holds at most {self.stream_batch_items_max} purchases (got {count})", "order_ids")
        # Integer columns become int64 arrays (a copy of the packed field, read in C by the
        # Cython engine); text columns become lists of str.
        columns = (list(request.order_ids), list(request.member_ids),
                   numpy.array(request.amounts_minor, dtype=numpy.int64), list(request.categories),
                   numpy.array(request.times_s, dtype=numpy.int64))
        for name, column in zip(("member_ids", "amounts_minor", "categories", "times_s"), columns[1:]):
            if len(column) != count:
                raise InvalidArgument(name, len(column), f"must have {count} items like order_ids")
        return columns

    # --- queries ------------------------------------------------------------------------

    @rpc(SCOPE_READ)
    async def GetBalance(self, request, context):
        # A point read: one member record in one read transaction, on the loop (see the module doc).
        return balance_message(self.ledger.balance(request.member_id, _optional(request, "as_of_s")))

    @rpc(SCOPE_READ)
    async def GetBalances(self, request, context):
        count = len(request.member_ids)
        if count > balances_max:
            raise ResourceExhausted(f"at most {balances_max} member ids in one call (got {count})", "member_ids")
        as_of_s = _optional(request, "as_of_s")
        if as_of_s is not None:
            validate_time("as_of_s", as_of_s)  # refuse the call, not each item
        return await self._read(self._balances, list(request.member_ids), as_of_s)

    def _balances(self, member_ids, as_of_s):
        response = pb.GetBalancesResponse()
        balances, errors = response.balances, response.errors
        for index, member_id in enumerate(member_ids):
            try:
                balances.append(balance_message(self.ledger.balance(member_id, as_of_s)))
            except LedgerError as error:
                balances.add()
                errors.append(item_error(index, error))
        return response

    @rpc(SCOPE_READ)
    async def ListEntries(self, request, context):
        page = await self._read(self.ledger.history, request.member_id,
                                request.limit or history_limit_default, _optional(request, "before_seq"))
        response = pb.ListEntriesResponse(entries=[entry_message(entry) for entry in page.entries])
        if page.next_before_seq is not None:
            response.next_before_seq = page.next_before_seq
        return response

    @rpc(SCOPE_READ)
    async def ReadJournal(self, request, context):
        from_seq = request.from_seq or 1
        remaining = request.limit or None
        while True:
            wake = self._commit_event  # taken before reading, so no commit is missed
            chunk = journal_chunk_entries if remaining is None else min(remaining, journal_chunk_entries)
            entries = await self._read(self.ledger.journal, from_seq, chunk)
            if entries:
                yield pb.ReadJournalResponse(entries=[entry_message(entry) for entry in entries])
                from_seq = entries[-1].seq + 1
                if remaining is not None:
                    remaining -= len(entries)
                    if remaining <= 0:
                        return
                continue
            if not request.follow:
                return
            if self.stopping:
                raise _Refused(grpc.StatusCode.UNAVAILABLE,
                               f"the server is shutting down; follow again from seq {from_seq}")
            try:
                await asyncio.wait_for(wake.wait(), journal_follow_poll_s)
            except asyncio.TimeoutError:
                pass  # another process may have written: read again

    @rpc(SCOPE_READ)
    async def GetProgram(self, request, context):
        return program_message(self.ledger.get_program(_optional(request, "version")))

    @rpc(SCOPE_READ)
    async def GetLiability(self, request, context):
        return liability_message(await self._read(self.ledger.liability, _optional(request, "as_of_s")))

    # --- administration -----------------------------------------------------------------

    @rpc(SCOPE_ADMIN)
    async def SetProgram(self, request, context):
        ledger = self.ledger

        def set_and_read(document, effective_from_s):
            return ledger.get_program(ledger.set_program(document, effective_from_s))

        version = await self.writer.submit_alone(
            set_and_read, (request.document_json, _optional(request, "effective_from_s")),
            self._deadline(context))
        _log(logging.INFO, "programme set", version=version.version, effective_from_s=version.effective_from_s)
        return program_message(version)

    @rpc(SCOPE_ADMIN)
    async def RunExpiry(self, request, context):
        result = await self.writer.submit_alone(self.ledger.expire, (_optional(request, "as_of_s"),),
                                                self._deadline(context))
        _log(logging.INFO, "expiry run", as_of_s=result.as_of_s, members=result.members, points=result.points)
        return pb.RunExpiryResponse(as_of_s=result.as_of_s, members=result.members, points=result.points)


# --- the server ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """PEM files: the server's certificate and key; with client_ca, clients must present
    a certificate signed by it (mutual TLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def credentials(self):
        def read(path):
            with open(path, "rb") as handle:
                return handle.read()

        client_ca = read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(read(self.key_file), read(self.cert_file))],
            root_certificates=client_ca, require_client_auth=client_ca is not None,
        )


def is_loopback(address):
    """Whether a gRPC bind address only listens on this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind_policy(address, tokens, insecure):
    """Without tokens, only a loopback address, unless the caller says insecure (SPEC §10)."""
    if tokens is None and not insecure and not is_loopback(address):
        raise ValueError(
            f"refusing to serve {address} without tokens: bind to 127.0.0.1, give a token file, "
            "or say --insecure"
        )


class LedgerServer:
    """A started or startable server: the grpc.aio server, the writer, the read pool."""

    def __init__(self, ledger, grpc_server, servicer, writer, metrics, health_servicer, read_pool,
                 port, metrics_port=None, address=""):
        self.ledger = ledger
        self.grpc_server = grpc_server
        self.servicer = servicer
        self.writer = writer
        self.metrics = metrics
        self.health = health_servicer
        self.read_pool = read_pool
        self.port = port
        self.metrics_port = metrics_port
        self.address = address
        self._stopped = None

    async def start(self):
        self.writer.start(asyncio.get_running_loop())
        await self.grpc_server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        _log(logging.INFO, "serving", address=self.address, port=self.port, engine=self.ledger.engine_name,
             metrics_port=self.metrics_port, last_seq=self.writer.last_seq)

    async def stop(self, grace_s=shutdown_grace_s_default):
        """Refuse new calls, let the calls in flight finish (their writes commit), drain the writer.

        The ledger itself stays open: whoever opened it closes it.
        """
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop(grace_s))
        await asyncio.shield(self._stopped)

    async def _stop(self, grace_s):
        started = time.perf_counter()
        _log(logging.INFO, "stopping", grace_s=grace_s)
        await self.health.enter_graceful_shutdown()
        self.servicer.begin_shutdown()
        await self.grpc_server.stop(grace_s)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.writer.stop)
        self.read_pool.shutdown(wait=True)
        self.metrics.close()
        _log(logging.INFO, "stopped", seconds=round(time.perf_counter() - started, 3),
             last_seq=self.writer.last_seq, commits=self.writer.commits)

    async def wait_for_termination(self):
        await self.grpc_server.wait_for_termination()


def create_server(ledger, address="127.0.0.1:0", tokens=None, tls=None, *, insecure=False,
                  metrics_port=None, group_items_max=group_items_max_default,
                  batch_merge_items_max=batch_merge_items_max_default,
                  stream_batch_items_max=stream_batch_items_max_default,
                  message_bytes_max=message_bytes_max_default, read_threads=read_threads_default):
    """Build a server over `ledger` bound to `address`; return (server, port). Call start() on it.

    Call it from the event loop that will run the server (grpc.aio binds to it).
    `tokens`: a TokenStore, a {token: scopes} mapping or a token file path; None
    turns authentication off, which is only allowed on a loopback address unless
    `insecure=True`. `tls`: a TlsConfig (mutual TLS when it has client_ca_file).
    """
    if isinstance(tokens, (str, os.PathLike)):
        tokens = TokenStore.from_file(tokens)
    elif isinstance(tokens, dict):
        tokens = TokenStore.from_mapping(tokens)
    check_bind_policy(address, tokens, insecure)
    if not 1 <= stream_batch_items_max <= limits.batch_items_max:
        raise ValueError(f"stream_batch_items_max must be 1 to {limits.batch_items_max}")
    metrics = Metrics()
    read_pool = concurrent.futures.ThreadPoolExecutor(read_threads, thread_name_prefix="pointsledger-read")
    grpc_server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", message_bytes_max),
        ("grpc.max_send_message_length", message_bytes_max),
        ("grpc.so_reuseport", 0),
    ])
    servicer = None

    def on_commit():
        servicer.notify_commit()

    writer = GroupCommitWriter(ledger, metrics, group_items_max, batch_merge_items_max, on_commit)
    servicer = LedgerServicer(ledger, writer, metrics, tokens=tokens, read_pool=read_pool,
                              stream_batch_items_max=stream_batch_items_max)
    pb_grpc.add_LedgerServicer_to_server(servicer, grpc_server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                        grpc_server)
    if tls is not None:
        port = grpc_server.add_secure_port(address, tls.credentials())
    else:
        if tokens is not None and not is_loopback(address):
            _log(logging.WARNING, "tokens over plaintext", address=address,
                 hint="bearer tokens are readable on the network without TLS")
        port = grpc_server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    bound_metrics_port = None
    if metrics_port is not None:
        host = address.rsplit(":", 1)[0].strip("[]") if not address.startswith("unix") else "127.0.0.1"
        bound_metrics_port = metrics.serve(metrics_port, "127.0.0.1" if host == "localhost" else host)
    server = LedgerServer(ledger, grpc_server, servicer, writer, metrics, health_servicer, read_pool,
                          port, bound_metrics_port, address)
    return server, port


class BackgroundServer:
    """A server on its own event loop in a thread (tests, benchmarks, embedding).

        with BackgroundServer(ledger) as server:
            client = LedgerClient(f"127.0.0.1:{server.port}")
    """

    def __init__(self, ledger, address="127.0.0.1:0", **options):
        self._ready = threading.Event()
        self._error = None
        self.server = None
        self.port = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ledger, address, options),
                                        name="pointsledger-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self, ledger, address, options):
        asyncio.set_event_loop(self.loop)
        try:
            self.server, self.port = create_server(ledger, address, **options)
            self.loop.run_until_complete(self.server.start())
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def call(self, coroutine, timeout=60):
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace_s=5.0):
        if self.loop.is_closed() or not self._thread.is_alive():
            return
        self.call(self.server.stop(grace_s), timeout=grace_s + 60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


# --- `pointsledger serve` -------------------------------------------------------------------


def serve(data_path=DEFAULT_PATH, address="127.0.0.1:50051", tokens_file=None, tls_cert=None, tls_key=None,
          tls_client_ca=None, insecure=False, metrics_port=None, sync=True,
          switch_interval_s=gil_switch_interval_s, **options):
    """Serve the ledger at data_path until SIGTERM or SIGINT; then drain, commit and close.

    What `pointsledger serve` runs. The ledger gets the example programme if it
    has none (as the CLI does). Logs are JSON lines on stderr; the "serving" line
    carries the bound port (useful with port 0). `options` go to create_server.
    Returns 0 after a clean stop; a bad configuration raises before anything opens.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")
    if tls_client_ca is not None and tls_cert is None:
        raise ValueError("mutual TLS (--tls-client-ca) needs the server's certificate and key")
    tls = TlsConfig(tls_cert, tls_key, tls_client_ca) if tls_cert is not None else None
    tokens = TokenStore.from_file(tokens_file) if tokens_file is not None else None
    check_bind_policy(address, tokens, insecure)
    if not logging.getLogger("pointsledger").handlers:
        configure_logging()
    sys.setswitchinterval(switch_interval_s)
    ledger = open_with_example_program(data_path, sync=sync)
    try:
        asyncio.run(_serve_until_signal(ledger, address, tokens, tls, insecure, metrics_port, options))
    finally:
        ledger.close()
        _log(logging.INFO, "store closed", data=os.path.abspath(data_path))
    return 0


async def _serve_until_signal(ledger, address, tokens, tls, insecure, metrics_port, options):
    server, _ = create_server(ledger, address, tokens, tls, insecure=insecure,
                              metrics_port=metrics_port, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await server.start()
    await stop.wait()
    await server.stop()


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(prog="python -m pointsledger.service",
                                               description="Serve a ledger over gRPC.")
    parser.add_argument("--data", default=os.environ.get("POINTSLEDGER_DATA", DEFAULT_PATH),
                        help="ledger directory (default ./pointsledger-data or $POINTSLEDGER_DATA)")
    parser.add_argument("--address", default="127.0.0.1:50051", help="host:port to bind (port 0 picks one)")
    parser.add_argument("--tokens-file", help="bearer tokens and their scopes (see pointsledger.auth)")
    parser.add_argument("--tls-cert", help="server certificate (PEM)")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="CA of client certificates: turns on mutual TLS")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback address without tokens")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--no-sync", dest="sync", action="store_false",
                        help="do not fsync each commit (loses the durability of §9; benchmarks only)")
    parser.add_argument("--group-items-max", type=int, default=group_items_max_default,
                        help="unary writes sharing one commit at most")
    parser.add_argument("--batch-merge-items-max", type=int, default=batch_merge_items_max_default,
                        help="purchases of queued stream batches sharing one commit at most (1: no merging)")
    parser.add_argument("--stream-batch-items-max", type=int, default=stream_batch_items_max_default,
                        help="purchases per IngestPurchases batch at most")
    parser.add_argument("--message-bytes-max", type=int, default=message_bytes_max_default,
                        help="largest request message accepted")
    parser.add_argument("--switch-interval-ms", type=float, default=gil_switch_interval_s * 1000,
                        help=argparse.SUPPRESS)  # for measuring the GIL convoy (see gil_switch_interval_s)
    return parser


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return serve(arguments.data, arguments.address, arguments.tokens_file, arguments.tls_cert,
                     arguments.tls_key, arguments.tls_client_ca, arguments.insecure, arguments.metrics_port,
                     arguments.sync, group_items_max=arguments.group_items_max,
                     batch_merge_items_max=arguments.batch_merge_items_max,
                     stream_batch_items_max=arguments.stream_batch_items_max,
                     message_bytes_max=arguments.message_bytes_max,
                     switch_interval_s=arguments.switch_interval_ms / 1000)
    except (ValueError, OSError) as error:  # configuration: say what is wrong, no traceback
        parser.exit(2, f"pointsledger serve: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
