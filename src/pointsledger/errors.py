"""Operating errors: what a caller handles. Each carries a gRPC-style code.

The codes are the status names of §10, so the service maps them one to one
and a batch result can carry them per item.
"""


class LedgerError(Exception):
    """Base of every refusal. `code` is the gRPC status name."""

    code = "UNKNOWN"

    def __init__(self, message, field=None, value=None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value


class InvalidArgument(LedgerError):
    code = "INVALID_ARGUMENT"

    def __init__(self, field, value, reason):
        super().__init__(f"{field}: {reason} (got {value!r})", field, value)
        self.reason = reason


class NotFound(LedgerError):
    code = "NOT_FOUND"


class FailedPrecondition(LedgerError):
    code = "FAILED_PRECONDITION"


class AlreadyExists(LedgerError):
    """The same id was used before with different content."""

    code = "ALREADY_EXISTS"


class ResourceExhausted(LedgerError):
    code = "RESOURCE_EXHAUSTED"


class StoreFull(ResourceExhausted):
    """The map or the disk is full; the batch was not committed."""


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
