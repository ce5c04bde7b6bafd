"""The one thread that writes the ledger: group commit (SPEC §9)."""

import asyncio
import dataclasses
import itertools
import logging
import queue
import threading
import time

import numpy

from .. import limits
from .defaults import batch_merge_items_max_default, group_items_max_default, group_wait_s_default, group_wait_step_s
from .logs import log_event

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
                 batch_merge_items_max=batch_merge_items_max_default, on_commit=None,
                 group_wait_s=group_wait_s_default):
        for name, value in (("group_items_max", group_items_max), ("batch_merge_items_max", batch_merge_items_max)):
            if not 1 <= value <= limits.batch_items_max:
                raise ValueError(f"{name} must be 1 to {limits.batch_items_max}")
        if not 0 <= group_wait_s <= 1:
            raise ValueError("group_wait_s must be 0 to 1 second")
        self.group_wait_s = group_wait_s
        self._last_group_size = 0
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
            if job.kind == JOB_GROUPED:
                self._wait_for_company()
            jobs, carried = self._gather(job) if job.kind != JOB_ALONE else ([job], None)
            try:
                if job.kind == JOB_GROUPED:
                    self._run_group(jobs)
                elif job.kind == JOB_BATCH:
                    self._run_batches(jobs)
                else:
                    self._run_alone(job)
            except Exception as error:  # a bug: answer the callers rather than leave them waiting
                log_event(logging.ERROR, "writer error", error=repr(error))
                self._loop.call_soon_threadsafe(self._resolve, [(each.future, error) for each in jobs])

    def _wait_for_company(self):
        """Under concurrent unary writes, let a group fill before committing it.

        Committing the moment one write is queued makes many small commits (about six
        writes each with 64 callers here), and each one costs the event loop the GIL
        hand-offs, the wake-ups and the answers' hop of a whole commit: the loop, not the
        disk, was what bounded the rate. So while the last group had company and the queue
        still grows, wait a step at a time, up to `group_wait_s` in all. A lone caller (last
        group of one, nothing queued behind it) waits for nothing.
        """
        if self.group_wait_s <= 0 or (self._last_group_size <= 1 and self._queue.qsize() == 0):
            return
        deadline = time.monotonic() + self.group_wait_s
        queued = self._queue.qsize()
        while queued + 1 < self.group_items_max:
            time.sleep(group_wait_step_s)
            now_queued = self._queue.qsize()
            if now_queued == queued or time.monotonic() >= deadline:
                return
            queued = now_queued

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
                log_event(logging.ERROR, "group commit failed", error=repr(error), size=len(live))
                outcomes = [error] * len(live)
            self.metrics.commit("group", time.perf_counter() - started)
            self.metrics.group_size.observe(len(live))
        self._last_group_size = len(group)
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
            log_event(logging.ERROR, "batch commit failed", error=repr(error), batches=len(live))
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
