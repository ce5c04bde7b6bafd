"""Operating errors: what a caller handles. Each carries a gRPC-style code.

The codes are the status names of §10, so the service maps them one to one
and a batch result can carry them per item.
"""


class LedgerError(Exception):
    """Base of every refusal. `code` is the gRPC status name.

    `reason_code` (UPPER_SNAKE_CASE) and `info` ({str: str}) say what a program
    reading the error needs beyond the code, e.g. INSUFFICIENT_POINTS with the
    points available; the service sends them as google.rpc.ErrorInfo (reason,
    metadata). None: the service names the reason after the code.
    """

    code = "UNKNOWN"

    def __init__(self, message, field=None, value=None, *, reason_code=None, info=None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value
        self.reason_code = reason_code
        self.info = {key: str(item) for key, item in (info or {}).items()}


class InvalidArgument(LedgerError):
    code = "INVALID_ARGUMENT"

    def __init__(self, field, value, reason):
        super().__init__(f"{field}: {reason} (got {value!r})", field, value)
        self.reason = reason


class NotFound(LedgerError):
    code = "NOT_FOUND"


class FailedPrecondition(LedgerError):
    code = "FAILED_PRECONDITION"


class StoreFormatUnknown(FailedPrecondition):
    """The store was written in a format this release does not read (a newer release's)."""


class AlreadyExists(LedgerError):
    """The same id was used before with different content.

    `differences` maps each field that differs to (stored value, sent value).
    """

    code = "ALREADY_EXISTS"

    def __init__(self, message, field=None, value=None, differences=None):
        super().__init__(message, field, value)
        self.differences = dict(differences or {})


def already_used(id_field, id_value, what, fields):
    """ALREADY_EXISTS naming every field that differs, stored value then sent value.

    fields: (name, stored, sent) in the operation's argument order; strings are
    shown quoted, integers as they are, e.g. "refund_id 'r-1' was already used
    for a different refund: amount_minor stored 5000, sent 5001".
    """
    differences = {name: (stored, sent) for name, stored, sent in fields if stored != sent}
    listed = "; ".join(
        f"{name} stored {shown(stored)}, sent {shown(sent)}" for name, (stored, sent) in differences.items()
    )
    return AlreadyExists(f"{id_field} {id_value!r} was already used for a different {what}: {listed}",
                         id_field, id_value, differences=differences)


def shown(value):
    """A value in an error as its JSON or its caller wrote it: strings quoted, 1.0 (not
    Decimal('1.0')), true, null; numbers and the rest as str() gives them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


class ResourceExhausted(LedgerError):
    code = "RESOURCE_EXHAUSTED"


class StoreFull(ResourceExhausted):
    """The map or the disk is full; the batch was not committed."""


class DiskFull(ResourceExhausted):
    """A file the command writes (an export, a rejects file) hit a full disk."""


class StoreDamaged(LedgerError):
    """The store's files are damaged (a truncated data file): opening it would crash."""

    code = "DATA_LOSS"


class InvalidProgram(InvalidArgument):
    """A programme document with one or more problems, all listed."""

    def __init__(self, problems):
        LedgerError.__init__(
            self, "invalid programme: " + "; ".join(problems), "document", None
        )
        self.reason = "invalid programme"
        self.problems = list(problems)


class ExtensionMissing(ImportError):
    """POINTSLEDGER_REQUIRE_EXTENSION=1 and the Cython engine did not import."""


# Statuses of the service that are not refusals by the ledger itself; the client
# raises them so that a caller catches every failure as a LedgerError.


class ServiceError(LedgerError):
    """A status that is not one of the ledger's refusals; `code` names it."""

    code = "UNKNOWN"

    def __init__(self, message, field=None, value=None, code=None):
        super().__init__(message, field, value)
        if code is not None:
            self.code = code


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class PermissionDenied(ServiceError):
    code = "PERMISSION_DENIED"


class Unavailable(ServiceError):
    """The server is shutting down or unreachable: safe to retry (ids make writes idempotent)."""

    code = "UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    """The call's deadline passed; a write may or may not have been applied: retry with the same id."""

    code = "DEADLINE_EXCEEDED"
