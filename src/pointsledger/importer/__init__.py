"""The bulk importer behind `pointsledger ingest` (SPEC §11): files in, batches of purchases out.

    source (CSV or Parquet, read in chunks by pyarrow)
      -> pieces (rows + their file line numbers + rows the parser could not split)
      -> [--sort: an external merge sort by time, in runs on disk]
      -> batches (columns the engine takes: lists of str, int64 arrays)
      -> sink (embedded Ledger, or a running server through LedgerClient)
      -> per-row outcomes -> reject file, resume point, progress, summary

Nothing holds the whole file: a CSV is parsed by pyarrow's streaming reader in
blocks, a Parquet file is read batch by batch (a row group at most is decoded at
a time), and a reader thread prepares the next batch while the sink applies
this one (pyarrow parses without the GIL).

Line numbers: for CSV, the file's line number of the row (the header is line 1,
a quoted value that spans lines counts every line); for Parquet, the row number
(the first row is 1). Blank lines are skipped, not rejected.

Re-running after an interruption is always correct, because order ids are
idempotent: rows the ledger already holds come back DUPLICATE. The resume point
makes it fast: after every committed batch, a small JSON file records the input
file's identity, how many rows are committed, the reject file's size and the
running totals; a re-run skips those rows (Parquet: without reading them; CSV:
parsed, not converted or sent). It is checked before use: a different file, a
different target, a shorter reject file, or a ledger that no longer holds the
last committed order (a "probe", looked up read-only) means it is ignored and the
file is sent again from the start.

Modules: sources (files -> pieces), columns (pieces -> engine columns), sort (--sort),
rejects, resume, sinks, prefetch (the reader thread), progress, run (the ingest itself);
common holds what several of them share.
"""

from .columns import Batch, integer_values, make_batch, text_values, time_values
from .common import BATCH_ROWS_DEFAULT, COLUMNS, CSV_BLOCK_BYTES, SORT_RUN_ROWS_DEFAULT, TEXT_COLUMNS, InputError
from .prefetch import Prefetch
from .progress import Progress
from .rejects import RejectFile, default_rejects_path
from .resume import ResumePoint, default_resume_path, file_identity
from .run import Ingest, Options, Summary
from .sinks import EmbeddedSink, ServerSink, _sendable_columns, _split_unsendable
from .sort import ExternalSort, sorted_batch
from .sources import CsvSource, ParquetSource, Piece, guess_format, open_source, rechunk

__all__ = [
    "BATCH_ROWS_DEFAULT", "COLUMNS", "CSV_BLOCK_BYTES", "SORT_RUN_ROWS_DEFAULT", "TEXT_COLUMNS", "Batch",
    "CsvSource", "EmbeddedSink", "ExternalSort", "Ingest", "InputError", "Options", "ParquetSource", "Piece",
    "Prefetch", "Progress", "RejectFile", "ResumePoint", "ServerSink", "Summary", "default_rejects_path",
    "default_resume_path", "file_identity", "guess_format", "integer_values", "make_batch", "open_source",
    "rechunk", "sorted_batch", "text_values", "time_values", "_sendable_columns", "_split_unsendable",
]
