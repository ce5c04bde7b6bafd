"""The servicer: proto in, Ledger call, proto out; admission and errors in one decorator."""

import asyncio
import collections
import inspect
import logging
import time

import grpc
import numpy

from .._engine_py import validate_time
from ..errors import InvalidArgument, LedgerError, ResourceExhausted
from ..v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from .auth import SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE
from .defaults import (
    balances_max, history_limit_default, journal_chunk_entries, journal_follow_poll_s,
    stream_batch_items_max_default, stream_batches_in_flight_max,
)
from .group_commit import DeadlineExpired
from .headers import FIELD_METADATA_KEY
from .logs import log, log_event
from .messages import (
    _optional, balance_message, batch_response, entry_message, item_error, liability_message,
    operation_result, program_message,
)


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
            log_event(logging.WARNING, "permission denied", rpc=name, token=principal.name, scope=scope)
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
        log_event(logging.INFO, "programme set", version=version.version, effective_from_s=version.effective_from_s)
        return program_message(version)

    @rpc(SCOPE_ADMIN)
    async def RunExpiry(self, request, context):
        result = await self.writer.submit_alone(self.ledger.expire, (_optional(request, "as_of_s"),),
                                                self._deadline(context))
        log_event(logging.INFO, "expiry run", as_of_s=result.as_of_s, members=result.members, points=result.points)
        return pb.RunExpiryResponse(as_of_s=result.as_of_s, members=result.members, points=result.points)
