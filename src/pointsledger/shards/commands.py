"""Commands on the log (SPEC §18): what a producer publishes and a consumer applies.

One JetStream message is one command: its payload is the request message of the
proto (IngestPurchasesRequest for a columnar batch of purchases; RefundRequest,
RedeemRequest, AdjustRequest), its headers say which, and the member it routes
by. A refund's request names no member, so the header carries the order's member;
the consumer refuses the refund when the order is not that member's.

`Nats-Msg-Id` (JetStream's de-duplication within the stream's window) is the
command's own id, so a publish retried after a lost acknowledgement is stored
once; a duplicate published later anyway is applied once by the ledger's ids.
"""

import dataclasses

from ..v1 import ledger_pb2 as pb

COMMAND_HEADER = "Pointsledger-Command"
MEMBER_HEADER = "Pointsledger-Member"
MESSAGE_ID_HEADER = "Nats-Msg-Id"
PURCHASES, REFUND, REDEEM, ADJUST = "purchases", "refund", "redeem", "adjust"
MESSAGES = {PURCHASES: pb.IngestPurchasesRequest, REFUND: pb.RefundRequest,
            REDEEM: pb.RedeemRequest, ADJUST: pb.AdjustRequest}


class BadCommand(Exception):
    """A message that is not a command this release reads: refused and reported, never applied."""


@dataclasses.dataclass
class Command:
    kind: str
    member_id: str | None  # None for a batch of purchases (each item names its member)
    request: object  # the proto message

    def encode(self, message_id):
        headers = {COMMAND_HEADER: self.kind, MESSAGE_ID_HEADER: message_id}
        if self.member_id is not None:
            headers[MEMBER_HEADER] = self.member_id
        return headers, self.request.SerializeToString()


def purchases(order_ids, member_ids, amounts_minor, categories, times_s, batch_id=""):
    request = pb.IngestPurchasesRequest(
        order_ids=list(order_ids), member_ids=list(member_ids), amounts_minor=[int(value) for value in amounts_minor],
        categories=list(categories), times_s=[int(value) for value in times_s], batch_id=batch_id,
    )
    return Command(PURCHASES, None, request)


def refund(member_id, refund_id, order_id, amount_minor, time_s):
    return Command(REFUND, member_id, pb.RefundRequest(
        refund_id=refund_id, order_id=order_id, amount_minor=amount_minor, time_s=time_s))


def redeem(redemption_id, member_id, points, time_s):
    return Command(REDEEM, member_id, pb.RedeemRequest(
        redemption_id=redemption_id, member_id=member_id, points=points, time_s=time_s))


def adjust(adjustment_id, member_id, points, reason, time_s):
    return Command(ADJUST, member_id, pb.AdjustRequest(
        adjustment_id=adjustment_id, member_id=member_id, points=points, reason=reason, time_s=time_s))


def decode(headers, payload):
    """The Command of a message's headers and payload; BadCommand when it is not one."""
    headers = headers or {}
    kind = headers.get(COMMAND_HEADER)
    message_type = MESSAGES.get(kind)
    if message_type is None:
        raise BadCommand(f"header {COMMAND_HEADER}: {kind!r} is not one of {sorted(MESSAGES)}")
    request = message_type()
    try:
        request.ParseFromString(payload)
    except Exception as error:  # protobuf's DecodeError, or worse
        raise BadCommand(f"a {kind} command whose payload does not parse: {error}") from None
    member_id = headers.get(MEMBER_HEADER)
    if kind == PURCHASES:
        count = len(request.order_ids)
        if any(len(column) != count for column in (request.member_ids, request.amounts_minor,
                                                     request.categories, request.times_s)):
            raise BadCommand("a purchases command whose columns differ in length")
        return Command(kind, None, request)
    if not member_id:
        raise BadCommand(f"a {kind} command without the {MEMBER_HEADER} header")
    if kind != REFUND and member_id != request.member_id:
        raise BadCommand(f"a {kind} command whose {MEMBER_HEADER} {member_id!r} is not its member_id "
                         f"{request.member_id!r}")
    return Command(kind, member_id, request)


def message_id(command):
    """The command's own id, for JetStream's de-duplication (a batch: its batch_id)."""
    request = command.request
    if command.kind == PURCHASES:
        return request.batch_id or None
    own_id = {REFUND: "refund_id", REDEEM: "redemption_id", ADJUST: "adjustment_id"}[command.kind]
    return f"{command.kind}:{getattr(request, own_id)}"
