"""Errors as a contract any gRPC client can read (the header of ledger.proto says it in full).

Every refusal ends the call with a gRPC status code whose trailer
`grpc-status-details-bin` holds a google.rpc.Status (grpcio-status) with:
- a google.rpc.ErrorInfo: `reason` (UPPER_SNAKE_CASE, e.g. INSUFFICIENT_POINTS),
  `domain` "pointsledger", `metadata` (the field named, and numbers such as the
  points available), on every error;
- a google.rpc.BadRequest with one field violation naming the request's field,
  on every INVALID_ARGUMENT.
The field also travels in the `pointsledger-field` trailer (older clients).
"""

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..errors import AlreadyExists, InvalidProgram, StoreFull
from .headers import FIELD_METADATA_KEY

ERROR_DOMAIN = "pointsledger"

# The reason of an error that names none: after its class, else its code.
REASONS_BY_CLASS = ((StoreFull, "STORE_FULL"), (InvalidProgram, "INVALID_PROGRAM"), (AlreadyExists, "ID_REUSED"))
REASONS_BY_CODE = {
    "INVALID_ARGUMENT": "INVALID_FIELD", "NOT_FOUND": "NOT_FOUND", "ALREADY_EXISTS": "ID_REUSED",
    "FAILED_PRECONDITION": "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED": "LIMIT_EXCEEDED",
}


class Refusal(Exception):
    """Raised inside a handler to end the call with a status that is not a LedgerError's."""

    def __init__(self, code, message, reason_code, info=None, field=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason_code = reason_code
        self.info = {key: str(value) for key, value in (info or {}).items()}
        self.field = field


def reason_of(error):
    if error.reason_code:
        return error.reason_code
    for cls, reason in REASONS_BY_CLASS:
        if isinstance(error, cls):
            return reason
    return REASONS_BY_CODE.get(error.code, error.code)


def rich_status(code, message, reason_code, field=None, info=None):
    """(grpc.StatusCode, message, trailing metadata) carrying a google.rpc.Status."""
    metadata = dict(info or {})
    if field:
        metadata.setdefault("field", field)
    details = [error_details_pb2.ErrorInfo(reason=reason_code, domain=ERROR_DOMAIN, metadata=metadata)]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=field or "", description=message, reason=reason_code)
        details.insert(0, error_details_pb2.BadRequest(field_violations=[violation]))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=packed))
    trailing = tuple(status.trailing_metadata)
    if field:
        trailing += ((FIELD_METADATA_KEY, field),)
    return status.code, status.details, trailing


def ledger_error_status(error, field=None):
    """The status of a LedgerError; `field` overrides the one it names (see servicer)."""
    code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)
    field = field or (str(error.field) if error.field is not None else None)
    info = dict(error.info)
    differences = getattr(error, "differences", None)  # ALREADY_EXISTS: the fields that differ
    if differences:
        info["differing_fields"] = ",".join(differences)
    return rich_status(code, str(error), reason_of(error), field, info)


def refusal_status(refusal):
    return rich_status(refusal.code, refusal.message, refusal.reason_code, refusal.field, refusal.info)
