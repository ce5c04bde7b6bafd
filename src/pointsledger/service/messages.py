"""Conversions between the ledger's results and the protobuf messages of pointsledger.v1,
and the registration of the servicer with request decoders that never raise."""

import grpc
from google.protobuf import message_factory

from .. import program as programs
from ..v1 import ledger_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Ledger"].full_name  # "pointsledger.v1.Ledger"

ENTRY_KINDS = {name: pb.EntryKind.Value("ENTRY_KIND_" + name)
               for name in ("EARN", "CLAWBACK", "REDEEM", "ADJUST", "EXPIRE", "BONUS")}
ITEM_STATUSES = {"APPLIED": pb.ITEM_STATUS_APPLIED, "DUPLICATE": pb.ITEM_STATUS_DUPLICATE}
ITEM_CODES = {name: pb.Code.Value("CODE_" + name) for name in
              ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION")}


def operation_result(result):
    """The answer to a unary write from its OperationResult (filled by Ledger.apply_group)."""
    return pb.OperationResult(duplicate=result.status == "DUPLICATE", seq=result.seq,
                              points=result.points, balance=result.balance, member_id=result.member_id,
                              program_version=result.program_version, tier=result.tier or "",
                              refunded_minor=result.refunded_minor or 0,
                              bonuses=bonus_messages(getattr(result, "bonuses", ())))


def bonus_messages(bonuses):
    return [pb.Bonus(member_id=member_id, rule=rule, points=points) for member_id, rule, points in bonuses]


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
        clawed_back=balance.clawed_back, adjusted=balance.adjusted, bonus=balance.bonus,
        pending=balance.pending, next_release_points=balance.next_release_points,
        milestones=[pb.MilestoneProgress(id=each.milestone_id, kind=each.kind, target=each.target,
                                         progress=each.progress, reached=each.reached)
                    for each in balance.milestones],
    )
    if balance.next_expiry_s is not None:
        message.next_expiry_s = balance.next_expiry_s
    if balance.next_release_s is not None:
        message.next_release_s = balance.next_release_s
    return message


def referral_message(referral):
    return pb.Referral(duplicate=referral.duplicate, referral_id=referral.referral_id,
                       referrer_id=referral.referrer_id, referee_id=referral.referee_id,
                       time_s=referral.time_s, settled=referral.settled, order_id=referral.order_id or "")


def profile_message(profile):
    message = pb.MemberProfile(member_id=profile.member_id)
    if profile.birthday is not None:
        message.birthday = profile.birthday
    return message


# The id field a request's ALREADY_EXISTS is about, where the error names none (the engine's).
ID_FIELDS = {"RecordPurchase": "order_id", "Refund": "refund_id", "Redeem": "redemption_id",
             "Adjust": "adjustment_id", "RegisterReferral": "referral_id",
             "SetRedemptionEstimate": "estimate_id"}
# The request fields named otherwise than the Ledger arguments an error names.
REQUEST_FIELDS = {"SetProgram": {"document": "document_json", "effective_from": "effective_from_s"},
                  "Simulate": {"document": "document_json"}}
# Batch requests are columns: an item's error names the request's column, not the Ledger argument.
PURCHASE_COLUMNS = {"order_id": "order_ids", "member_id": "member_ids", "amount_minor": "amounts_minor",
                    "category": "categories", "time_s": "times_s"}
BALANCES_COLUMNS = {"member_id": "member_ids"}


def item_error(index, error, columns=PURCHASE_COLUMNS):
    field = error.field
    if field is None and error.code == "ALREADY_EXISTS":
        field = "order_id"  # an order id used before (or earlier in the batch) for another purchase
    field = columns.get(field, field) if field is not None else ""
    return pb.ItemError(index=index, code=ITEM_CODES.get(error.code, pb.CODE_INTERNAL),
                        field=field, message=str(error))


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
        # Only purchases that wrote bonuses carry a sixth element (engagement rules, §17).
        bonuses=[pb.ItemBonuses(index=index, bonuses=bonus_messages(raw[5]))
                 for index, raw in enumerate(raw_results) if len(raw) > 5],
    )


LIABILITY_TOTALS = ("earned", "adjusted_positive", "adjusted_negative", "clawed_back", "redeemed", "expired",
                    "outstanding", "expiring_30_days", "expiring_60_days", "expiring_90_days", "overdue", "issued",
                    "bonus", "pending")


def liability_message(report):
    """Every total with its money value, points × point_value, exact decimal text (as outstanding_value)."""
    point_value = report.point_value
    fields = {name: getattr(report, name) for name in LIABILITY_TOTALS}
    values = {f"{name}_value": str(points * point_value) for name, points in fields.items()}
    return pb.Liability(
        as_of_s=report.as_of_s, currency=report.currency, point_value=str(point_value), **fields, **values,
        outstanding_by_tier=[pb.TierOutstanding(tier=tier, points=points, value=str(points * point_value))
                             for tier, points in report.outstanding_by_tier.items()],
    )


def rollforward_message(report):
    """A Rollforward as pointsledger.v1.Rollforward: points, and the breakage ratio as its two integers and
    its 6-place decimal text ("" when nothing was credited)."""
    breakage = report.breakage
    return pb.Rollforward(
        from_s=report.from_s, to_s=report.to_s, opening=report.opening, earned=report.earned,
        adjusted=report.adjusted, clawed_back=report.clawed_back, redeemed=report.redeemed, expired=report.expired,
        closing=report.closing, bonus=report.bonus, breakage_expired=breakage.expired,
        breakage_credited=breakage.credited, breakage_decimal="" if breakage.decimal is None else str(breakage.decimal),
    )


def verify_message(report):
    return pb.VerifyReport(ok=report.ok, problems=report.problems, entries=report.entries, members=report.members)


def simulation_message(result):
    """A simulate.SimulationResult as pointsledger.v1.Simulation (money as exact decimal text)."""
    return pb.Simulation(
        from_s=result.from_s, to_s=result.to_s, replay_from_s=result.replay_from_s, currency=result.currency,
        point_value=str(result.point_value), engine=result.engine, purchases=result.purchases,
        refunds=result.refunds, refused=result.refused, total=_comparison_message(result.total),
        draft_tiers=[pb.SimulationTier(tier=name, figures=_figures_message(figures))
                     for name, figures in result.draft_tiers.items()],
        recorded_tiers=[pb.SimulationTier(tier=name, figures=_figures_message(figures))
                        for name, figures in result.recorded_tiers.items()],
        categories=[pb.SimulationCategory(category=name, comparison=_comparison_message(comparison))
                    for name, comparison in result.categories.items()],
    )


def _figures_message(figures):
    return pb.SimulationFigures(earned=figures.earned, bonus=figures.bonus, clawed_back=figures.clawed_back,
                                net=figures.net, value=str(figures.value))


def _comparison_message(comparison):
    return pb.SimulationComparison(draft=_figures_message(comparison.draft),
                                   recorded=_figures_message(comparison.recorded),
                                   difference=comparison.difference,
                                   difference_value=str(comparison.difference_value))


def program_message(version):
    return pb.ProgramVersion(version=version.version, effective_from_s=version.effective_from_s,
                             document_json=programs.canonical_json(version.document))


def _optional(message, field):
    return getattr(message, field) if message.HasField(field) else None


# --- request decoding ----------------------------------------------------------------------


class Malformed:
    """What a request decodes to when its bytes are not a valid message (the handler refuses it)."""

    __slots__ = ("type_name", "error")

    def __init__(self, type_name, error):
        self.type_name = type_name
        self.error = error


def safe_decoder(message_class):
    """FromString that returns a Malformed instead of raising.

    grpc answers a decoder's exception with UNKNOWN (INTERNAL on a stream) and
    logs a traceback per message; a malformed request is the caller's mistake,
    INVALID_ARGUMENT, and the handler decides how to say it (see servicer).
    """
    type_name = message_class.DESCRIPTOR.full_name
    from_string = message_class.FromString

    def decode(data):
        try:
            return from_string(data)
        except Exception as error:  # DecodeError, invalid UTF-8, nesting too deep: all the caller's
            return Malformed(type_name, f"{type(error).__name__}: {error}"[:200])
    return decode


def _serializer(message_class):
    serialize = message_class.SerializeToString

    def serialize_or_pass(response):
        # Bytes are a response serialized already, once for many calls (the journal tail).
        return response if type(response) is bytes else serialize(response)
    return serialize_or_pass


def add_servicer(servicer, server, service_descriptor=pb.DESCRIPTOR.services_by_name["Ledger"]):
    """Register the servicer's methods as the generated add_LedgerServicer_to_server does,
    with safe_decoder request decoders."""
    handler_kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    handlers = {}
    for method in service_descriptor.methods:
        make = handler_kinds[(method.client_streaming, method.server_streaming)]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = make(getattr(servicer, method.name),
                                     request_deserializer=safe_decoder(request_class),
                                     response_serializer=_serializer(response_class))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_descriptor.full_name, handlers),))
    server.add_registered_method_handlers(service_descriptor.full_name, handlers)


# --- revenue (§19) ------------------------------------------------------------------------


def estimate_message(estimate):
    return pb.RedemptionEstimate(duplicate=estimate.status == "DUPLICATE", estimate_id=estimate.estimate_id,
                                 effective_from_s=estimate.effective_from_s, rate=str(estimate.rate))


def _cohort_revenue_message(row):
    return pb.CohortRevenue(
        cohort=row.cohort, start_s=row.start_s, amount_minor=row.amount_minor, points=row.points,
        rate="" if row.rate is None else str(row.rate), allocated_minor=row.allocated_minor,
        redeemed=row.redeemed, expired=row.expired, estimate_from=str(row.estimate_from),
        estimate_to=str(row.estimate_to), revenue_minor=row.revenue_minor,
        liability_from_minor=row.liability_from_minor, liability_to_minor=row.liability_to_minor,
    )


def revenue_message(report):
    return pb.Revenue(
        from_s=report.from_s, to_s=report.to_s, cohort=report.cohort, currency=report.currency,
        exponent=report.exponent, cohorts=[_cohort_revenue_message(row) for row in report.cohorts],
        total=_cohort_revenue_message(report.total), observed_redeemed=report.observed_redeemed,
        observed_points=report.observed_points,
        observed="" if report.observed_decimal is None else str(report.observed_decimal),
    )
