"""A Python client of the gRPC service, shaped like the embedded `Ledger` API.

    with LedgerClient("127.0.0.1:50051", token="…") as client:
        client.record_purchase("o-1", "m-1", 2500, "grocery", 1767225600)
        for result in client.ingest(batches, window=4):   # per-batch results, in order
            print(result.applied, result.duplicates, result.rejected)
        print(client.balance("m-1").available)

Results are the `pointsledger.results` types the embedded Ledger returns
(OperationResult, BatchResult, Balance, HistoryPage, Entry, Liability, …) and
refusals raise the `pointsledger.errors` exceptions (InvalidArgument with its
`field`, NotFound, …), so code written against a Ledger runs against a server.
Statuses that only a server gives have their own LedgerError subclasses below.
"""

import decimal
import fractions
import threading

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from ..errors import (  # the service statuses are re-exported here for callers of the client
    AlreadyExists, DeadlineExceeded, FailedPrecondition, InvalidArgument, LedgerError, NotFound,
    PermissionDenied, ResourceExhausted, ServiceError, Unauthenticated, Unavailable,
)
from ..program import canonical_json, parse_document
from ..results import (
    Balance, BatchResult, Bonus, Breakage, Entry, ExpireResult, HistoryPage, Liability, MilestoneProgress,
    OperationResult, Profile, ProgramVersion, Referral, Rollforward, VerifyReport,
)
from ..v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from .headers import FIELD_METADATA_KEY, authorization_metadata

message_bytes_max_default = 64 << 20
ingest_window_default = 4  # batches in flight: enough to keep the server's writer busy
ingest_window_max = 64
COLUMNS = ("order_ids", "member_ids", "amounts_minor", "categories", "times_s")


ERRORS_BY_CODE = {
    "INVALID_ARGUMENT": InvalidArgument, "NOT_FOUND": NotFound,
    "FAILED_PRECONDITION": FailedPrecondition, "ALREADY_EXISTS": AlreadyExists,
    "RESOURCE_EXHAUSTED": ResourceExhausted, "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied, "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}


def ledger_error(code, message, field=None, reason_code=None, info=None):
    """The pointsledger exception for a status code name, carrying the server's message."""
    cls = ERRORS_BY_CODE.get(code, ServiceError)
    error = cls.__new__(cls)
    LedgerError.__init__(error, message, field or None, reason_code=reason_code, info=info)
    if isinstance(error, InvalidArgument):
        error.reason = message
    if cls is ServiceError:
        error.code = code
    return error


def status_details(rpc_error):
    """(field, reason, metadata) from the google.rpc.Status of a failed call (each None if absent).

    The field is the first field violation of a google.rpc.BadRequest, else the
    `field` of the google.rpc.ErrorInfo, else the `pointsledger-field` trailer
    (servers before the status details).
    """
    field = reason_code = info = None
    try:
        status = rpc_status.from_call(rpc_error)
    except (ValueError, AttributeError):  # no trailers, or a status that disagrees with the call's
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            if bad_request.field_violations and field is None:
                field = bad_request.field_violations[0].field or None
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason_code, info = error_info.reason, dict(error_info.metadata)
    if field is None and info:
        field = info.get("field")
    if field is None:
        trailing = rpc_error.trailing_metadata() if hasattr(rpc_error, "trailing_metadata") else None
        for key, value in trailing or ():
            if key == FIELD_METADATA_KEY:
                field = value
    return field, reason_code, info


def error_from_rpc(rpc_error):
    """Translate a grpc.RpcError into the matching LedgerError (with field, reason_code, info)."""
    field, reason_code, info = status_details(rpc_error)
    code = rpc_error.code().name if rpc_error.code() is not None else "UNKNOWN"
    error = ledger_error(code, rpc_error.details() or code, field, reason_code, info)
    error.__cause__ = rpc_error
    return error


def _entry(message):
    return Entry(message.seq, pb.EntryKind.Name(message.kind).removeprefix("ENTRY_KIND_"),
                 message.member_id, message.ref_id, message.points, message.balance,
                 message.time_s, message.program_version)


def _balance(message):
    return Balance(
        member_id=message.member_id, as_of_s=message.as_of_s, balance=message.balance,
        available=message.available, debt=message.debt,
        next_expiry_s=message.next_expiry_s if message.HasField("next_expiry_s") else None,
        next_expiry_points=message.next_expiry_points, tier=message.tier, tier_year=message.tier_year,
        spend_minor=message.spend_minor, earned=message.earned, redeemed=message.redeemed,
        expired=message.expired, clawed_back=message.clawed_back, adjusted=message.adjusted,
        bonus=message.bonus, pending=message.pending,
        next_release_s=message.next_release_s if message.HasField("next_release_s") else None,
        next_release_points=message.next_release_points,
        milestones=tuple(MilestoneProgress(each.id, each.kind, each.target, each.progress, each.reached)
                         for each in message.milestones),
    )


def _bonuses(messages):
    return tuple(Bonus(each.member_id, each.rule, each.points) for each in messages)


def _referral(message):
    return Referral(message.referral_id, message.referrer_id, message.referee_id, message.time_s,
                    message.settled, message.order_id or None, "DUPLICATE" if message.duplicate else "APPLIED")


def _profile(message):
    return Profile(message.member_id, message.birthday if message.HasField("birthday") else None)


def _item_error(item):
    return ledger_error(pb.Code.Name(item.code).removeprefix("CODE_"), item.message, item.field)


def _operation_result(message):
    return OperationResult("DUPLICATE" if message.duplicate else "APPLIED", message.seq,
                           message.points, message.balance, _bonuses(message.bonuses))


ITEM_STATUS_NAMES = {pb.ITEM_STATUS_APPLIED: "APPLIED", pb.ITEM_STATUS_DUPLICATE: "DUPLICATE"}


def batch_result(response):
    """The response to one batch as the BatchResult Ledger.purchases returns."""
    errors = {item.index: _item_error(item) for item in response.errors}
    bonuses = {item.index: _bonuses(item.bonuses) for item in response.bonuses}
    raw = []
    for index, (status, seq, points, balance) in enumerate(
            zip(response.statuses, response.seqs, response.points, response.balances)):
        error = errors.get(index)
        name = error.code if error is not None else ITEM_STATUS_NAMES.get(status, "UNKNOWN")
        if index in bonuses:
            raw.append((name, seq, points, balance, error, bonuses[index]))
        else:
            raw.append((name, seq, points, balance, error))
    return BatchResult(raw)


def _column(values):
    return values.tolist() if hasattr(values, "tolist") else values


def batch_request(batch, batch_id=""):
    """An IngestPurchasesRequest from a dict of columns (COLUMNS) or a 5-tuple of columns."""
    columns = [batch[name] for name in COLUMNS] if isinstance(batch, dict) else list(batch)
    if len(columns) != len(COLUMNS):
        raise ValueError(f"a batch has the columns {', '.join(COLUMNS)}")
    return pb.IngestPurchasesRequest(
        order_ids=_column(columns[0]), member_ids=_column(columns[1]), amounts_minor=_column(columns[2]),
        categories=_column(columns[3]), times_s=_column(columns[4]), batch_id=batch_id,
    )


class LedgerClient:
    """A connection to a pointsledger server (one channel; thread-safe for unary calls)."""

    def __init__(self, address, token=None, tls_ca=None, *, tls_cert=None, tls_key=None,
                 timeout_s=None, server_name=None, message_bytes_max=message_bytes_max_default,
                 options=()):
        """tls_ca: the CA (PEM file) that signed the server's certificate; turns on TLS.
        tls_cert/tls_key: this client's certificate and key, for mutual TLS.
        timeout_s: deadline of each unary call (None: no deadline).
        server_name: the name to check the server's certificate against, if not the address's host.
        """
        channel_options = [
            ("grpc.max_receive_message_length", message_bytes_max),
            ("grpc.max_send_message_length", message_bytes_max),
            *options,
        ]
        if server_name:
            channel_options.append(("grpc.ssl_target_name_override", server_name))
        if tls_ca is not None or tls_cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca), private_key=_read(tls_key), certificate_chain=_read(tls_cert),
            )
            self.channel = grpc.secure_channel(address, credentials, options=channel_options)
        else:
            self.channel = grpc.insecure_channel(address, options=channel_options)
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = (authorization_metadata(token),) if token else ()
        self.stub = pb_grpc.LedgerStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _call(self, method, request, timeout_s=None):
        try:
            return method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    # --- writes -------------------------------------------------------------------------

    def record_purchase(self, order_id, member_id, amount_minor, category, time_s):
        return _operation_result(self._call(self.stub.RecordPurchase, pb.RecordPurchaseRequest(
            order_id=order_id, member_id=member_id, amount_minor=amount_minor, category=category,
            time_s=time_s)))

    purchase = record_purchase  # the Ledger's name

    def refund(self, refund_id, order_id, amount_minor, time_s):
        return _operation_result(self._call(self.stub.Refund, pb.RefundRequest(
            refund_id=refund_id, order_id=order_id, amount_minor=amount_minor, time_s=time_s)))

    def redeem(self, redemption_id, member_id, points, time_s):
        return _operation_result(self._call(self.stub.Redeem, pb.RedeemRequest(
            redemption_id=redemption_id, member_id=member_id, points=points, time_s=time_s)))

    def adjust(self, adjustment_id, member_id, points, reason, time_s):
        return _operation_result(self._call(self.stub.Adjust, pb.AdjustRequest(
            adjustment_id=adjustment_id, member_id=member_id, points=points, reason=reason, time_s=time_s)))

    def purchases(self, order_ids, member_ids, amounts_minor, categories, times_s):
        """One batch through IngestPurchases; its BatchResult (as Ledger.purchases)."""
        results = self.ingest([(order_ids, member_ids, amounts_minor, categories, times_s)], window=1)
        try:
            return next(results)
        finally:
            results.close()

    def ingest(self, batches, window=ingest_window_default, timeout_s=None):
        """Stream batches (dicts of COLUMNS or 5-tuples of columns) over one IngestPurchases call.

        Yields one BatchResult per batch, in order, each once that batch is
        durable on the server. At most `window` batches are in flight: the next
        batch is sent only when an earlier one is answered. If the stream breaks
        (the server stopped, the network failed), the error is raised after the
        results received: every batch yielded is committed, the rest may be
        resent as they are (order ids make it idempotent).
        """
        if not 1 <= window <= ingest_window_max:
            raise ValueError(f"window must be 1 to {ingest_window_max}")
        slots = threading.Semaphore(window)
        finished = threading.Event()

        def requests():
            for index, batch in enumerate(batches):
                while not slots.acquire(timeout=0.1):
                    if finished.is_set():
                        return
                if finished.is_set():
                    return
                yield batch_request(batch, str(index))

        call = self.stub.IngestPurchases(requests(), timeout=timeout_s, metadata=self._metadata)
        try:
            for response in call:
                slots.release()
                yield batch_result(response)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        finally:
            finished.set()
            call.cancel()

    # --- queries ------------------------------------------------------------------------

    def balance(self, member_id, as_of_s=None):
        return _balance(self._call(self.stub.GetBalance, pb.GetBalanceRequest(member_id=member_id, as_of_s=as_of_s)))

    def balances(self, member_ids, as_of_s=None):
        """Balances of many members in one call: a list in the order asked, each a Balance
        or the LedgerError (NotFound, InvalidArgument) that refused that member."""
        message = self._call(self.stub.GetBalances, pb.GetBalancesRequest(member_ids=member_ids, as_of_s=as_of_s))
        answers = [_balance(balance) for balance in message.balances]
        for item in message.errors:
            answers[item.index] = _item_error(item)
        return answers

    def history(self, member_id, limit=100, before_seq=None):
        message = self._call(self.stub.ListEntries, pb.ListEntriesRequest(
            member_id=member_id, limit=limit, before_seq=before_seq))
        return HistoryPage([_entry(entry) for entry in message.entries],
                           message.next_before_seq if message.HasField("next_before_seq") else None)

    def journal(self, from_seq=1, limit=None, follow=False, timeout_s=None):
        """Entries in seq order from from_seq; with follow, keeps yielding new ones as they commit.

        A following iterator ends when the caller stops iterating (or closes it),
        when timeout_s passes (DeadlineExceeded) or when the server stops (Unavailable).
        """
        call = self.stub.ReadJournal(pb.ReadJournalRequest(from_seq=from_seq, limit=limit or 0, follow=follow),
                                     timeout=timeout_s, metadata=self._metadata)
        try:
            for response in call:
                for entry in response.entries:
                    yield _entry(entry)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        finally:
            call.cancel()

    def liability(self, as_of_s=None):
        message = self._call(self.stub.GetLiability, pb.GetLiabilityRequest(as_of_s=as_of_s))
        return Liability(
            as_of_s=message.as_of_s, currency=message.currency,
            point_value=decimal.Decimal(message.point_value or "0"), earned=message.earned,
            adjusted_positive=message.adjusted_positive, adjusted_negative=message.adjusted_negative,
            clawed_back=message.clawed_back, redeemed=message.redeemed, expired=message.expired,
            outstanding=message.outstanding, outstanding_value=decimal.Decimal(message.outstanding_value or "0"),
            outstanding_by_tier={item.tier: item.points for item in message.outstanding_by_tier},
            expiring_30_days=message.expiring_30_days, expiring_60_days=message.expiring_60_days,
            expiring_90_days=message.expiring_90_days, overdue=message.overdue,
            bonus=message.bonus, pending=message.pending,
        )

    def rollforward(self, from_s, to_s):
        message = self._call(self.stub.GetRollforward, pb.GetRollforwardRequest(from_s=from_s, to_s=to_s))
        expired, credited = message.breakage_expired, message.breakage_credited
        return Rollforward(
            from_s=message.from_s, to_s=message.to_s, opening=message.opening, earned=message.earned,
            adjusted=message.adjusted, clawed_back=message.clawed_back, redeemed=message.redeemed,
            expired=message.expired, closing=message.closing, bonus=message.bonus,
            breakage_rate=fractions.Fraction(expired, credited) if credited else None,
            breakage=Breakage(expired, credited, decimal.Decimal(message.breakage_decimal)
                              if message.breakage_decimal else None),
        )

    def verify(self, shard=0, shards=0):
        """The server's store checked (scope admin); with shards, also that its members are all of shard."""
        message = self._call(self.stub.Verify, pb.VerifyRequest(shard=shard, shards=shards))
        return VerifyReport(list(message.problems), message.entries, message.members)

    # --- engagement (§14, §17) -------------------------------------------------------------

    def register_referral(self, referral_id, referrer_id, referee_id, time_s):
        return _referral(self._call(self.stub.RegisterReferral, pb.RegisterReferralRequest(
            referral_id=referral_id, referrer_id=referrer_id, referee_id=referee_id, time_s=time_s)))

    def set_redemption_estimate(self, estimate_id, effective_from_s, rate):
        """§19; rate as decimal text (or a Decimal). Returns the RedemptionEstimate message."""
        return self._call(self.stub.SetRedemptionEstimate, pb.SetRedemptionEstimateRequest(
            estimate_id=estimate_id, effective_from_s=effective_from_s, rate=str(rate)))

    def revenue(self, from_s, to_s, cohort="year"):
        """§19; returns the Revenue message (money in minor units)."""
        return self._call(self.stub.GetRevenue, pb.GetRevenueRequest(from_s=from_s, to_s=to_s, cohort=cohort))

    def get_referral(self, referral_id):
        return _referral(self._call(self.stub.GetReferral, pb.GetReferralRequest(referral_id=referral_id)))

    def set_member_profile(self, member_id, birthday):
        return _profile(self._call(self.stub.SetMemberProfile, pb.SetMemberProfileRequest(
            member_id=member_id, birthday=birthday)))

    def get_member_profile(self, member_id):
        return _profile(self._call(self.stub.GetMemberProfile, pb.GetMemberProfileRequest(member_id=member_id)))

    # --- administration -----------------------------------------------------------------

    def set_program(self, document, effective_from_s=None):
        """Store a new programme version (JSON text or dict); return its number (as Ledger.set_program)."""
        if not isinstance(document, str):
            document = canonical_json(parse_document(document))
        message = self._call(self.stub.SetProgram, pb.SetProgramRequest(
            document_json=document, effective_from_s=effective_from_s))
        return message.version

    def simulate(self, draft, from_s, to_s):
        """The what-if (as Ledger.simulate): a simulate.SimulationResult built from the Simulation message."""
        if not isinstance(draft, str):
            draft = canonical_json(parse_document(draft))
        message = self._call(self.stub.Simulate, pb.SimulateRequest(document_json=draft, from_s=from_s, to_s=to_s))
        return _simulation_result(message)

    def get_program(self, version=None):
        message = self._call(self.stub.GetProgram, pb.GetProgramRequest(version=version))
        return ProgramVersion(message.version, message.effective_from_s, parse_document(message.document_json))

    def run_expiry(self, as_of_s=None):
        message = self._call(self.stub.RunExpiry, pb.RunExpiryRequest(as_of_s=as_of_s))
        return ExpireResult(message.as_of_s, message.members, message.points)

    expire = run_expiry  # the Ledger's name

    def health(self, service=""):
        """The health status name of the server ("" = overall) or of one service."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def _read(path):
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def _simulation_result(message):
    from ..simulate import Comparison, Figures, SimulationResult

    def figures(item):
        return Figures(item.earned, item.bonus, item.clawed_back, decimal.Decimal(item.value))

    def comparison(item):
        return Comparison(figures(item.draft), figures(item.recorded))

    return SimulationResult(
        from_s=message.from_s, to_s=message.to_s, replay_from_s=message.replay_from_s, currency=message.currency,
        point_value=decimal.Decimal(message.point_value), engine=message.engine, purchases=message.purchases,
        refunds=message.refunds, refused=message.refused, total=comparison(message.total),
        draft_tiers={item.tier: figures(item.figures) for item in message.draft_tiers},
        recorded_tiers={item.tier: figures(item.figures) for item in message.recorded_tiers},
        categories={item.category: comparison(item.comparison) for item in message.categories},
    )
