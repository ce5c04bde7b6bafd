"""The servicer: proto in, Ledger call, proto out; admission and errors in one decorator."""

import asyncio
import collections
import inspect
import logging
import time

import grpc
import numpy

from .. import limits
from ..validation import validate_time
from ..errors import InvalidArgument, LedgerError, ResourceExhausted
from ..v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from .auth import SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE
from .defaults import (
    balances_max, history_limit_default, journal_chunk_entries, journal_follow_message_entries_max,
    journal_follow_poll_s, journal_follow_publish_interval_s, malformed_log_interval_s,
    message_bytes_max_default, shutdown_quiet_s, stream_batch_items_max_default, stream_batches_in_flight_max,
)
from .group_commit import DeadlineExpired
from .ingest_budget import IngestBudget
from .journal_tail import JournalTail
from .logs import RateLimitedLog, log, log_event
from .messages import (
    BALANCES_COLUMNS, ID_FIELDS, REQUEST_FIELDS, Malformed, _optional, balance_message, batch_response, entry_message,
    item_error, liability_message, operation_result, profile_message, program_message, referral_message,
    simulation_message,
)
from .messages import estimate_message, revenue_message, rollforward_message, verify_message
from .status import Refusal, ledger_error_status, refusal_status, rich_status


def rpc(scope):
    """Admit, run and account for one RPC (the one place errors become status codes)."""
    def decorate(method):
        name = method.__name__
        if inspect.isasyncgenfunction(method):
            async def stream_handler(self, request, context):
                started = time.perf_counter()
                code = "OK"
                self._enter()
                try:
                    self._admit(context, name, scope)
                    if isinstance(request, Malformed):
                        raise self._malformed(name, request)
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
                    self._leave()
                    self.metrics.request(name, code, time.perf_counter() - started)
            stream_handler.__name__ = name
            return stream_handler

        async def unary_handler(self, request, context):
            started = time.perf_counter()
            code = "OK"
            self._enter()
            try:
                self._admit(context, name, scope)
                if isinstance(request, Malformed):
                    raise self._malformed(name, request)
                return await method(self, request, context)
            except Exception as error:
                status = self._status_of(name, error)
                code = status[0].name
                await context.abort(status[0], status[1], trailing_metadata=status[2])
            except BaseException:
                code = "CANCELLED"
                raise
            finally:
                self._leave()
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
        self._stopping_event = asyncio.Event()
        self.ingest = IngestBudget(message_bytes_max_default)  # shared by every IngestPurchases stream
        self.tail = JournalTail(ledger, self._read, journal_chunk_entries, journal_follow_publish_interval_s,
                                journal_follow_poll_s)
        self.calls_in_flight = 0  # handlers running, refusals included (see drain)
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_call_s = 0.0  # time.monotonic() when the last call arrived
        self._malformed_log = RateLimitedLog(malformed_log_interval_s)

    # --- admission and errors (used by @rpc) --------------------------------------------

    def _admit(self, context, name, scope):
        if self.stopping:
            raise Refusal(grpc.StatusCode.UNAVAILABLE, "the server is shutting down", "SHUTTING_DOWN")
        if self.tokens is None:
            return
        principal = self.tokens.authenticate(context.invocation_metadata())
        if principal is None:
            raise Refusal(grpc.StatusCode.UNAUTHENTICATED,
                          "a valid `authorization: Bearer <token>` is required", "TOKEN_MISSING_OR_UNKNOWN")
        if scope not in principal.scopes:
            log_event(logging.WARNING, "permission denied", rpc=name, token=principal.name, scope=scope)
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED,
                          f"{name} needs the {scope!r} scope; token {principal.name!r} has "
                          f"{', '.join(sorted(principal.scopes))}", "SCOPE_MISSING", {"scope": scope})

    @staticmethod
    def _status_of(name, error):
        """(grpc.StatusCode, message, trailing metadata) for an error raised by a handler."""
        if isinstance(error, (LedgerError, Refusal, DeadlineExpired)):
            # An expected refusal: its traceback is of no use, and it keeps the frames it
            # passed through alive, with their LMDB read transactions, each holding one of
            # the environment's reader slots until it is freed (py-lmdb frees the slot with
            # the object). grpc keeps the error around a while: with 64 busy clients the 256
            # slots ran out (ReadersFullError) before the garbage collector came by.
            error.__traceback__ = None
        if isinstance(error, Refusal):
            return refusal_status(error)
        if isinstance(error, DeadlineExpired):
            return rich_status(grpc.StatusCode.DEADLINE_EXCEEDED, str(error), "NOT_APPLIED_DEADLINE_PASSED")
        if isinstance(error, LedgerError):
            # The engine's purchase conflict names no field: the request's id field is meant.
            field = ID_FIELDS.get(name) if error.code == "ALREADY_EXISTS" and error.field is None else None
            # The API's argument names where the request's differ (SetProgram's document_json, ...).
            field = field or REQUEST_FIELDS.get(name, {}).get(error.field)
            return ledger_error_status(error, field)
        log.error("internal error", exc_info=error, extra={"fields": {"rpc": name, "error": repr(error)}})
        return rich_status(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}", "INTERNAL")

    def _malformed(self, name, malformed):
        """The INVALID_ARGUMENT for a request that did not decode (counted; logged at most once a while)."""
        self.metrics.malformed(name)
        self._malformed_log.log(logging.WARNING, "malformed request", rpc=name, error=malformed.error)
        return Refusal(grpc.StatusCode.INVALID_ARGUMENT,
                       f"the request is not a valid {malformed.type_name}: {malformed.error}",
                       "MALFORMED_REQUEST")

    def _enter(self):
        self.calls_in_flight += 1
        self._last_call_s = time.monotonic()
        self._idle.clear()

    def _leave(self):
        self.calls_in_flight -= 1
        if self.calls_in_flight == 0:
            self._idle.set()

    async def drain(self, timeout_s, quiet_s=shutdown_quiet_s):
        """After begin_shutdown: wait until every call has been answered and none has arrived
        for quiet_s (True), or until timeout_s passed (False).

        grpc.aio's own grace does not cover this: when its server stops, grpc core
        cancels the calls it has received but not yet handed to a handler, and the
        handlers still awaiting the writer were cancelled too, so callers got
        CANCELLED (not knowing whether their write happened) within milliseconds of
        SIGTERM. So the server keeps serving until it is quiet: each call still
        arriving is answered (a refusal, UNAVAILABLE, counts as a call in flight
        until it is sent), and only then does grpc stop and refuse connections.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            if self.calls_in_flight == 0 and now - self._last_call_s >= quiet_s:
                return True
            if now >= deadline:
                return False
            if self.calls_in_flight:
                try:
                    await asyncio.wait_for(self._idle.wait(), deadline - now)
                except asyncio.TimeoutError:
                    return False
            else:
                await asyncio.sleep(min(quiet_s - (now - self._last_call_s), deadline - now))

    def notify_commit(self):
        """Tell the journal tail (called on the loop after each commit)."""
        self.tail.notify_commit()

    def begin_shutdown(self):
        self.stopping = True
        self._stopping_event.set()
        self.tail.wake_all()

    async def _read(self, function, *arguments):
        return await asyncio.get_running_loop().run_in_executor(self.read_pool, function, *arguments)

    @staticmethod
    def _deadline(context):
        remaining = context.time_remaining()
        return None if remaining is None else time.monotonic() + remaining

    async def _write(self, operation, arguments, context):
        outcome = await self.writer.submit_grouped(operation, arguments, self._deadline(context))
        # The member (a refund's, too) and the programme version come from the journal entry,
        # which apply_group read in the write's transaction on the writer thread: no read
        # transaction per call on the event loop.
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
        """Read ahead up to `stream_batches_in_flight_max` batches; answer each in order once durable.

        Memory is bounded by the IngestBudget all streams share (see ingest_budget.py).
        """
        self.ingest.open_stream()
        try:
            async for response in self._ingest(request_iterator.__aiter__()):
                yield response
        finally:
            self.ingest.close_stream()

    async def _ingest(self, requests):
        budget = self.ingest
        pending = collections.deque()  # (batch_id, writer future, request bytes), in stream order
        reading = None  # the read of the next request, started only when the budget has room
        waiter = None  # resolved when the budget may have room again
        ended = False  # the client closed its side, or the stream is refused
        stopping = asyncio.ensure_future(self._stopping_event.wait())
        refusal = None  # what ends the stream once every batch before it is answered
        batch_index = 0
        try:
            while pending or not ended:
                room = len(pending) < stream_batches_in_flight_max
                if reading is None and not ended and room and budget.may_read():
                    reading = asyncio.ensure_future(requests.__anext__())
                    budget.read_started()
                waits = {stopping} if not stopping.done() else set()
                if pending:
                    waits.add(pending[0][1])
                if reading is not None:
                    waits.add(reading)
                elif not ended and room:
                    if waiter is None or waiter.done():
                        waiter = budget.waiter()
                    waits.add(waiter)
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if pending and pending[0][1].done():
                    batch_id, future, size = pending.popleft()
                    budget.answered(size)
                    yield batch_response(batch_index, batch_id, future.result())
                    batch_index += 1
                    continue
                if reading is not None and reading.done():
                    request, reading = self._take(reading), None
                    if request is None or isinstance(request, Malformed):
                        budget.read_ended()
                        ended = True  # the end of the stream, or bytes that are no request: read no further
                        if request is not None:
                            refusal = self._malformed("IngestPurchases", request)
                        continue
                    size = request.ByteSize()
                    budget.read_ended(size)
                    try:
                        columns = self._batch_columns(request)
                    except LedgerError as error:
                        budget.answered(size)
                        refusal, ended = error, True  # read no further: the stream ends after the answers
                        continue
                    self.metrics.batch_size.observe(len(columns[0]))
                    pending.append((request.batch_id, self.writer.submit_batch(columns), size))
                if stopping.done() and not ended:
                    # Shutting down: read no more; answer what the writer has.
                    if reading is not None:
                        reading.cancel()
                        reading = None
                        budget.read_ended()
                    ended = True
                    refusal = Refusal(grpc.StatusCode.UNAVAILABLE,
                                      "the server is shutting down; resend the unanswered batches",
                                      "SHUTTING_DOWN", {"batches_answered": batch_index + len(pending)})
            if refusal is not None:
                raise refusal
        finally:
            stopping.cancel()
            if reading is not None:
                reading.cancel()
                budget.read_ended()
            if waiter is not None:
                waiter.cancel()
            for _, future, size in pending:  # the client left: its unanswered batches need not be applied
                future.cancel()
                budget.answered(size)

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
                errors.append(item_error(index, error, BALANCES_COLUMNS))
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
        from_seq, remaining = request.from_seq or 1, request.limit or None
        if not request.follow:
            async for response in self._journal_pages(from_seq, remaining):
                yield response
            return
        if self.tail.followers >= limits.journal_followers_max:
            raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"at most {limits.journal_followers_max} journal followers at once; try again later",
                          "TOO_MANY_FOLLOWERS", {"limit": limits.journal_followers_max})
        self.tail.join()
        try:
            async for response in self._follow(from_seq, remaining):
                yield response
        finally:
            self.tail.leave()

    def _shutting_down(self, from_seq):
        return Refusal(grpc.StatusCode.UNAVAILABLE, f"the server is shutting down; follow again from seq {from_seq}",
                       "SHUTTING_DOWN", {"next_seq": from_seq})

    async def _journal_pages(self, from_seq, remaining):
        """The journal from from_seq as it is now, read by this call alone."""
        while remaining is None or remaining > 0:
            if self.stopping:
                raise self._shutting_down(from_seq)
            chunk = journal_chunk_entries if remaining is None else min(remaining, journal_chunk_entries)
            entries = await self._read(self.ledger.journal, from_seq, chunk)
            if not entries:
                return
            yield pb.ReadJournalResponse(entries=[entry_message(entry) for entry in entries])
            from_seq = entries[-1].seq + 1
            if remaining is not None:
                remaining -= len(entries)

    async def _follow(self, from_seq, remaining):
        """The journal from from_seq, then each entry as it commits: from the shared tail once
        this follower reaches it (see JournalTail), read by itself until then."""
        tail = self.tail
        while remaining is None or remaining > 0:
            if self.stopping:
                raise self._shutting_down(from_seq)
            entries_max = journal_follow_message_entries_max if remaining is None else min(
                remaining, journal_follow_message_entries_max)
            shared = tail.take(from_seq, entries_max)
            if shared is not None:
                payload, count, last_seq = shared
                yield payload  # bytes serialized once for every follower
                from_seq = last_seq + 1
                remaining = None if remaining is None else remaining - count
                continue
            wake = tail.changed  # taken before looking, so no publication is missed
            if from_seq > tail.last_seq:
                await wake.wait()  # caught up: the tail wakes us when it has more (or at shutdown)
                continue
            end_seq = tail.own_read_end(from_seq)
            chunk = min(entries_max, journal_chunk_entries)
            if end_seq is not None:
                chunk = min(chunk, end_seq - from_seq + 1)
            entries = await self._read(self.ledger.journal, from_seq, chunk)
            if not entries:
                await wake.wait()
                continue
            yield pb.ReadJournalResponse(entries=[entry_message(entry) for entry in entries])
            from_seq = entries[-1].seq + 1
            remaining = None if remaining is None else remaining - len(entries)

    @rpc(SCOPE_READ)
    async def GetProgram(self, request, context):
        return program_message(self.ledger.get_program(_optional(request, "version")))

    @rpc(SCOPE_READ)
    async def GetLiability(self, request, context):
        return liability_message(await self._read(self.ledger.liability, _optional(request, "as_of_s")))

    @rpc(SCOPE_READ)
    async def GetRollforward(self, request, context):
        return rollforward_message(await self._read(self.ledger.rollforward, request.from_s, request.to_s))

    @rpc(SCOPE_ADMIN)
    async def Verify(self, request, context):
        """The store's checks; told its shard (shards > 0), also that every member belongs to it (§18)."""
        from ..shards.routing import verify_shard
        from ..shards.sharding import check_shard

        if request.shards:
            check_shard(request.shard, request.shards)
            return verify_message(await self._read(verify_shard, self.ledger, request.shard, request.shards))
        if request.shard:
            raise InvalidArgument("shard", request.shard, "needs shards (the number of shards) too")
        return verify_message(await self._read(self.ledger.verify))

    # --- administration -----------------------------------------------------------------

    @rpc(SCOPE_ADMIN)
    async def SetProgram(self, request, context):
        ledger = self.ledger

        def set_and_read(document, effective_from_s):
            return ledger.get_program(ledger.set_program(document, effective_from_s))

        version = await self.writer.submit_alone(
            set_and_read, (request.document_json, _optional(request, "effective_from_s")),
            self._deadline(context))
        log_event(logging.INFO, "programme set", version=version.version, effective_from_s=version.effective_from_s)
        return program_message(version)

    @rpc(SCOPE_ADMIN)
    async def RunExpiry(self, request, context):
        result = await self.writer.submit_alone(self.ledger.expire, (_optional(request, "as_of_s"),),
                                                self._deadline(context))
        log_event(logging.INFO, "expiry run", as_of_s=result.as_of_s, members=result.members, points=result.points)
        return pb.RunExpiryResponse(as_of_s=result.as_of_s, members=result.members, points=result.points)

    # --- engagement (§14, §17) ----------------------------------------------------------

    @rpc(SCOPE_WRITE)
    async def RegisterReferral(self, request, context):
        referral = await self.writer.submit_alone(
            self.ledger.register_referral,
            (request.referral_id, request.referrer_id, request.referee_id, request.time_s),
            self._deadline(context))
        return referral_message(referral)

    @rpc(SCOPE_READ)
    async def GetReferral(self, request, context):
        return referral_message(await self._read(self.ledger.get_referral, request.referral_id))

    @rpc(SCOPE_WRITE)
    async def SetMemberProfile(self, request, context):
        profile = await self.writer.submit_alone(
            self.ledger.set_member_profile, (request.member_id, _optional(request, "birthday")),
            self._deadline(context))
        return profile_message(profile)

    @rpc(SCOPE_READ)
    async def GetMemberProfile(self, request, context):
        return profile_message(await self._read(self.ledger.get_member_profile, request.member_id))

    # --- what-if (§16, §17) ---------------------------------------------------------------

    @rpc(SCOPE_READ)
    async def Simulate(self, request, context):
        # A read: one snapshot in the read pool, scratch stores of its own; writers go on.
        result = await self._read(self.ledger.simulate, request.document_json, request.from_s, request.to_s)
        return simulation_message(result)

    # --- revenue (§19) ------------------------------------------------------------------

    @rpc(SCOPE_ADMIN)
    async def SetRedemptionEstimate(self, request, context):
        estimate = await self.writer.submit_alone(
            self.ledger.set_redemption_estimate, (request.estimate_id, request.effective_from_s, request.rate),
            self._deadline(context))
        log_event(logging.INFO, "redemption estimate set", estimate_id=estimate.estimate_id,
                  effective_from_s=estimate.effective_from_s, rate=str(estimate.rate))
        return estimate_message(estimate)

    @rpc(SCOPE_READ)
    async def GetRevenue(self, request, context):
        return revenue_message(await self._read(
            self.ledger.revenue, request.from_s, request.to_s, request.cohort or "year"))
