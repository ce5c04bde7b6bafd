"""pointsledger: the system of record for a loyalty programme's points."""

from . import errors
from .engine import ENGINE
from .errors import (
    AlreadyExists, FailedPrecondition, InvalidArgument, InvalidProgram, LedgerError,
    NotFound, ResourceExhausted, StoreDamaged, StoreFull,
)
from .ledger import DEFAULT_PATH, Ledger
from .program import EXAMPLE_PROGRAM

__version__ = "0.1.0"
__all__ = [
    "ENGINE", "EXAMPLE_PROGRAM", "DEFAULT_PATH", "Ledger", "errors", "LedgerError",
    "InvalidArgument", "InvalidProgram", "NotFound", "FailedPrecondition", "AlreadyExists",
    "ResourceExhausted", "StoreDamaged", "StoreFull", "__version__",
]
