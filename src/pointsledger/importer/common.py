"""What several files of the importer share: the columns, sizes and the input error."""

import re

from .. import limits
from ..errors import LedgerError

COLUMNS = ("order_id", "member_id", "amount_minor", "category", "time_s")
TEXT_COLUMNS = ("order_id", "member_id", "category")
BATCH_ROWS_DEFAULT = 50_000
# pyarrow parses a block at a time and reads up to 32 blocks ahead: 1 MiB blocks bound
# that read-ahead to 32 MiB whatever the file's size (4 MiB blocks are no faster).
CSV_BLOCK_BYTES = 1 << 20
CSV_SAMPLE_BYTES = 1 << 20  # the first MiB estimates a CSV's rows for the progress bar
HEAD_HASH_BYTES = 1 << 20  # the file's identity hashes its first MiB
SORT_RUN_ROWS_DEFAULT = 1_000_000  # rows sorted in memory per run of the external sort
SORT_RUN_BATCH_ROWS = 65_536  # rows per record batch in a run file (the merge reads one at a time)
PREFETCH_BATCHES = 2  # batches the reader thread may have ready ahead of the sink
PROBE_HISTORY_LIMIT = 1_000  # entries of the probe member searched for the probe order
RESUME_FORMAT = 1
REJECT_EXTRA_COLUMNS = ("reject_line", "reject_code", "reject_reason")
ACCEPTED = ("APPLIED", "DUPLICATE")  # a row the target holds
# Sort key: (time - time_s_min) in the high 32 bits, the line in the low 31.
SORT_LINE_BITS = 31
SORT_TIME_MAX = (1 << 32) - 1

INTEGER_PATTERN = r"^-?[0-9]{1,18}$"  # 18 digits always fit int64
ISO_OR_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|\+00:00))?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MIDNIGHT_SUFFIX = "T00:00:00Z"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
INTEGER_TEXT = re.compile(r"-?[0-9]+")
NUMPY_SCALAR = re.compile(r"np\.u?int(?:8|16|32|64)\((-?[0-9]+)\)")
TIME_REASON = "must be Unix seconds, ISO 8601 UTC like 2026-03-15T00:00:00Z or a date like 2026-03-15"
TIMESTAMP_UNITS_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

assert BATCH_ROWS_DEFAULT <= limits.batch_items_max
assert limits.time_s_max_exclusive - limits.time_s_min <= SORT_TIME_MAX


class InputError(LedgerError):
    """The input file as a whole cannot be read as purchases (missing column, not CSV...)."""

    code = "INVALID_ARGUMENT"
