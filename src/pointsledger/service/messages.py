"""Conversions between the ledger's results and the protobuf messages of pointsledger.v1."""

from .. import program as programs
from ..v1 import ledger_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Ledger"].full_name  # "pointsledger.v1.Ledger"

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
