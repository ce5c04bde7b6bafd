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
"""

import collections
import csv
import dataclasses
import hashlib
import json
import os
import queue
import re
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pa_parquet

from . import calendar, limits
from .errors import LedgerError, NotFound

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
ISO_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|\+00:00)$"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
INTEGER_TEXT = re.compile(r"-?[0-9]+")
NUMPY_SCALAR = re.compile(r"np\.u?int(?:8|16|32|64)\((-?[0-9]+)\)")
TIME_REASON = "must be Unix seconds or ISO 8601 UTC like 2026-03-15T00:00:00Z"
TIMESTAMP_UNITS_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

assert BATCH_ROWS_DEFAULT <= limits.batch_items_max
assert limits.time_s_max_exclusive - limits.time_s_min <= SORT_TIME_MAX


class InputError(LedgerError):
    """The input file as a whole cannot be read as purchases (missing column, not CSV...)."""

    code = "INVALID_ARGUMENT"


# --- sources: pieces of rows with their line numbers ----------------------------------


@dataclasses.dataclass
class Piece:
    """Rows as read, before conversion.

    `batch` holds the file's columns as read (CSV: every column, as binary;
    Parquet: the five purchase columns, typed); `lines` the line (CSV) or row
    (Parquet) number of each row; `invalid` the rows the parser could not split
    into columns that come before or among these rows: (line, fields, reason).
    """

    batch: pa.RecordBatch
    lines: np.ndarray
    invalid: list


def open_source(path, file_format=None):
    """A CsvSource or ParquetSource for `path`; the format from the name unless given."""
    file_format = file_format or guess_format(path)
    if file_format == "csv":
        return CsvSource(path)
    if file_format == "parquet":
        return ParquetSource(path)
    raise InputError(f"{path}: unknown format {file_format!r} (csv or parquet)")


def guess_format(path):
    lowered = os.fspath(path).lower()
    if lowered.endswith((".parquet", ".parq", ".pq")):
        return "parquet"
    if lowered.endswith((".csv", ".txt")) or _compressed(lowered):
        return "csv"
    with open(path, "rb") as handle:
        return "parquet" if handle.read(4) == b"PAR1" else "csv"


def _compressed(path):
    return os.fspath(path).lower().endswith((".gz", ".bz2", ".zst", ".lz4", ".br"))


def _require_columns(path, names):
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(names) or 'none'} "
            f"(needed: {', '.join(COLUMNS)})"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputError(f"{path}: column(s) {', '.join(duplicated)} appear more than once")


class CsvSource:
    """A CSV file read by pyarrow's streaming reader, every column as binary.

    Columns are read as bytes and converted here, so one bad cell (not a
    number, not UTF-8) rejects its row instead of failing the whole block.
    pyarrow reports rows it cannot split (wrong number of fields) to a handler
    with their record number; parsing is single-threaded so that number is
    known, and a reader thread overlaps the parsing with the ledger's work.
    Quoted values may hold line breaks (newlines_in_values: no slower here, and
    a break across a block boundary would otherwise stop the whole file).
    Compressed files (.gz, .bz2, .zst, ...) are read as pyarrow detects them.
    """

    format = "csv"

    def __init__(self, path):
        self.path = os.fspath(path)
        self.size_bytes = os.path.getsize(self.path)
        self.names = self._header()
        _require_columns(self.path, self.names)
        self.total_rows = None  # unknown until the end
        self.estimated_rows = self._estimate_rows()

    def _header(self):
        # pa.input_stream decompresses .gz, .bz2, .zst... as open_csv does.
        with pa.input_stream(self.path) as stream:
            first = stream.read(CSV_SAMPLE_BYTES).split(b"\n", 1)[0]
        try:
            text = first.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: line 1: the header is not UTF-8 text") from None
        rows = list(csv.reader([text]))
        return [name.strip() for name in rows[0]] if rows else []

    def _estimate_rows(self):
        if _compressed(self.path):
            return None  # compressed: the file's size says little about its rows
        with open(self.path, "rb") as handle:
            sample = handle.read(CSV_SAMPLE_BYTES)
        lines = sample.count(b"\n")
        if lines < 2 or len(sample) == self.size_bytes:
            return max(lines - 1, 0)
        return max(int(self.size_bytes * lines / len(sample)) - 1, 1)

    def pieces(self):
        invalid_records = []  # (record number, text) in file order, filled by the parser

        def on_invalid_row(row):
            invalid_records.append((row.number, row.text, row.actual_columns))
            return "skip"

        reader = pa_csv.open_csv(
            self.path,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid_row, ignore_empty_lines=False,
                                              newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.binary() for name in self.names}, strings_can_be_null=False,
            ),
        )
        lines = _CsvLines(len(self.names))
        try:
            for batch in reader:
                batch, row_lines, invalid = lines.place(batch, invalid_records)
                yield Piece(batch, row_lines, invalid)
        except pa.ArrowInvalid as error:
            raise InputError(f"{self.path}: cannot be read as CSV: {error}") from None
        invalid = lines.place_rest(invalid_records)
        if invalid:
            empty = pa.RecordBatch.from_arrays([pa.array([], pa.binary())] * len(self.names), names=self.names)
            yield Piece(empty, np.zeros(0, np.int64), invalid)


class _CsvLines:
    """Turns pyarrow's record numbers into the file's line numbers.

    pyarrow counts records (the header is record 1); a quoted value holding a
    line break makes a record span lines, so every line break inside values
    (of good rows and of rows the parser skipped) pushes the later lines on.
    """

    def __init__(self, column_count):
        self.column_count = column_count
        self.next_record = 2
        self.extra_lines = 0  # line breaks inside values so far

    def place(self, batch, invalid_records):
        count = batch.num_rows
        records = self.next_record + np.arange(count, dtype=np.int64)
        consumed = []
        while invalid_records and count and invalid_records[0][0] is not None \
                and invalid_records[0][0] <= records[-1]:
            record, text, actual_columns = invalid_records.pop(0)
            records[np.searchsorted(records, record):] += 1  # the skipped row takes its record number
            consumed.append((record, text, actual_columns))
        breaks = self._breaks(batch)
        if breaks is None and not any("\n" in text for _, text, _ in consumed):
            lines = records + self.extra_lines
            invalid = [self._invalid(record + self.extra_lines, text, columns) for record, text, columns in consumed]
        else:
            lines, invalid = self._place_slowly(records, breaks, consumed)
        if count:
            self.next_record = int(records[-1]) + 1
        batch, lines = self._drop_blank(batch, lines)
        return batch, lines, invalid

    def _place_slowly(self, records, breaks, consumed):
        # Rare: a value holds a line break. Walk records and skipped rows in file order.
        breaks = np.zeros(len(records), np.int64) if breaks is None else breaks
        events = [(int(record), 0, index) for index, record in enumerate(records)]
        events += [(record, 1, index) for index, (record, _, _) in enumerate(consumed)]
        events.sort()
        lines = np.empty(len(records), np.int64)
        invalid = []
        for record, is_invalid, index in events:
            line = record + self.extra_lines
            if is_invalid:
                _, text, columns = consumed[index]
                invalid.append(self._invalid(line, text, columns))
                self.extra_lines += text.count("\n")
            else:
                lines[index] = line
                self.extra_lines += int(breaks[index])
        return lines, invalid

    @staticmethod
    def _breaks(batch):
        total = None
        for column in batch.columns:
            if batch.num_rows and pc.any(pc.match_substring(column, "\n")).as_py():
                counts = pc.count_substring(column, "\n").to_numpy(zero_copy_only=False).astype(np.int64)
                total = counts if total is None else total + counts
        return total

    def _invalid(self, line, text, actual_columns):
        fields = next(csv.reader([text]), []) if text else []
        reason = f"expected {self.column_count} fields, found {actual_columns}"
        return (line, fields, reason)

    @staticmethod
    def _drop_blank(batch, lines):
        # A blank line reads as a row of empty fields; it is skipped, not rejected.
        if batch.num_rows == 0:
            return batch, lines
        lengths = None
        for column in batch.columns:
            column_lengths = pc.binary_length(column)
            lengths = column_lengths if lengths is None else pc.add(lengths, column_lengths)
        blank = pc.equal(lengths, 0)
        if not pc.any(blank).as_py():
            return batch, lines
        keep = pc.invert(blank)
        return batch.filter(keep), lines[keep.to_numpy(zero_copy_only=False)]

    def place_rest(self, invalid_records):
        rest = []
        for record, text, columns in invalid_records:
            record = self.next_record if record is None else record
            rest.append(self._invalid(record + self.extra_lines, text, columns))
            self.extra_lines += text.count("\n")
        invalid_records.clear()
        return rest


class ParquetSource:
    """A Parquet file read batch by batch (pyarrow decodes one row group at a time)."""

    format = "parquet"

    def __init__(self, path):
        self.path = os.fspath(path)
        self.size_bytes = os.path.getsize(self.path)
        try:
            self.file = pa_parquet.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(f"{self.path}: cannot be read as Parquet: {error}") from None
        self.names = list(self.file.schema_arrow.names)
        _require_columns(self.path, self.names)
        self.names = list(COLUMNS)  # only these are read
        self.total_rows = self.file.metadata.num_rows
        self.estimated_rows = self.total_rows

    def pieces(self, skip_rows=0, batch_rows=BATCH_ROWS_DEFAULT):
        """Rows from `skip_rows` on; whole row groups before it are not read at all."""
        metadata = self.file.metadata
        groups, first_row = [], 0
        for index in range(metadata.num_row_groups):
            group_rows = metadata.row_group(index).num_rows
            if first_row + group_rows > skip_rows:
                groups.append(index)
            else:
                first_row += group_rows
        if not groups:
            return
        row = first_row
        for batch in self.file.iter_batches(batch_size=batch_rows, row_groups=groups, columns=list(COLUMNS)):
            if row + batch.num_rows <= skip_rows:
                row += batch.num_rows
                continue
            if row < skip_rows:
                batch = batch.slice(skip_rows - row)
                row = skip_rows
            lines = np.arange(row + 1, row + 1 + batch.num_rows, dtype=np.int64)
            row += batch.num_rows
            yield Piece(batch, lines, [])


# --- conversion: columns the engine takes --------------------------------------------


@dataclasses.dataclass
class Batch:
    """What one ledger call gets, and what is needed to report each row."""

    columns: tuple  # order_ids, member_ids, amounts_minor, categories, times_s
    lines: np.ndarray
    originals: pa.RecordBatch  # the rows as read, for the reject file
    overrides: dict  # row index -> (field, reason): a better reason when that field is refused
    invalid: list  # unsplittable rows before or among these: (line, fields, reason)
    first_record: int = 0  # position of the first row in the stream of rows sent

    def __len__(self):
        return len(self.lines)


def make_batch(piece, first_record=0, times_s=None):
    """Convert a piece's columns; cells that do not convert stay as they are, for the engine to refuse."""
    batch = piece.batch
    overrides = {}
    columns = []
    for name in COLUMNS:
        array = batch.column(batch.schema.get_field_index(name))
        if name in TEXT_COLUMNS:
            columns.append(text_values(array, name, overrides))
        elif name == "amount_minor":
            columns.append(integer_values(array, name, overrides))
        elif times_s is not None:
            columns.append(times_s)
        else:
            columns.append(time_values(array, overrides))
    return Batch(tuple(columns), piece.lines, batch, overrides, piece.invalid, first_record)


def _as_string(array, field, overrides):
    """A binary column as a string column, or None when some cell is not UTF-8 (noted per row)."""
    try:
        return array.cast(pa.string())
    except pa.ArrowInvalid:
        return None


def text_values(array, field, overrides):
    """A list of str. Integer ids become their decimal text; other cells go as they are."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        as_string = _as_string(array, field, overrides)
        if as_string is None:
            return _decode_cells(array.to_pylist(), field, overrides)
        array, kind = as_string, as_string.type
    if pa.types.is_integer(kind):
        array = array.cast(pa.string())
    values = array.to_pylist()
    if array.null_count:
        _note_missing(values, field, overrides)
    return values


def _decode_cells(cells, field, overrides):
    values = []
    for index, cell in enumerate(cells):
        if cell is None:
            overrides[index] = (field, f"{field}: missing")
            values.append(None)
            continue
        try:
            values.append(cell.decode("utf-8"))
        except UnicodeDecodeError:
            overrides[index] = (field, f"{field}: not valid UTF-8 (got {cell!r})")
            values.append(cell)  # bytes: the engine refuses it, the note says why
    return values


def _note_missing(values, field, overrides):
    for index, value in enumerate(values):
        if value is None:
            overrides[index] = (field, f"{field}: missing")


def _all_match(array, pattern):
    return len(array) > 0 and array.null_count == 0 and bool(pc.all(pc.match_substring_regex(array, pattern)).as_py())


def integer_values(array, field, overrides):
    """An int64 numpy array when every cell is an integer; else a list with the bad cells as they are."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    if pa.types.is_integer(kind):
        if array.null_count == 0:
            try:
                return array.cast(pa.int64()).to_numpy()
            except pa.ArrowInvalid:  # uint64 past int64: the engine names the value
                pass
        values = array.to_pylist()
        _note_missing(values, field, overrides)
        return values
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        as_string = _as_string(array, field, overrides)
        if as_string is None:
            return _integer_cells(_decode_cells(array.to_pylist(), field, overrides), field, overrides)
        array, kind = as_string, as_string.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if _all_match(array, INTEGER_PATTERN):
            return pc.cast(array, pa.int64()).to_numpy()
        return _integer_cells(array.to_pylist(), field, overrides)
    values = array.to_pylist()  # floats, decimals, booleans: refused by the engine, by name
    _note_missing(values, field, overrides)
    return values


def _integer_cells(cells, field, overrides):
    values = []
    for index, cell in enumerate(cells):
        if isinstance(cell, str) and INTEGER_TEXT.fullmatch(cell):
            values.append(int(cell))
        else:
            if cell is None:
                overrides.setdefault(index, (field, f"{field}: missing"))
            values.append(cell)
    return values


def time_values(array, overrides):
    """Unix seconds as an int64 numpy array when every cell converts; else a list with the bad cells as text.

    A cell is Unix seconds (an integer) or ISO 8601 UTC, YYYY-MM-DDTHH:MM:SSZ or
    with +00:00 (no fractions); Parquet timestamps (tz-naive ones are taken as
    UTC) and dates (midnight UTC) convert when they are whole seconds.
    """
    field = "time_s"
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    if pa.types.is_timestamp(kind):
        return _timestamp_values(array, kind, overrides)
    if pa.types.is_date32(kind):
        days = array.cast(pa.int32()).to_numpy(zero_copy_only=False) if array.null_count == 0 else None
        if days is not None:
            return days.astype(np.int64) * calendar.SECONDS_PER_DAY
        values = [None if day is None else int(day) * calendar.SECONDS_PER_DAY
                  for day in array.cast(pa.int32()).to_pylist()]
        _note_missing(values, field, overrides)
        return values
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        as_string = _as_string(array, field, overrides)
        if as_string is None:
            return _time_cells(_decode_cells(array.to_pylist(), field, overrides), overrides)
        array, kind = as_string, as_string.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if _all_match(array, INTEGER_PATTERN):
            return pc.cast(array, pa.int64()).to_numpy()
        if _all_match(array, ISO_PATTERN):
            normal = pc.replace_substring(array, "+00:00", "Z")
            parsed = pc.strptime(normal, format=ISO_FORMAT, unit="s")
            # strptime rolls 2026-02-30 over into March: only a round trip proves the date exists.
            if pc.all(pc.equal(pc.strftime(parsed, format=ISO_FORMAT), normal)).as_py():
                return parsed.cast(pa.int64()).to_numpy()
        return _time_cells(array.to_pylist(), overrides)
    return integer_values(array, field, overrides)


def _timestamp_values(array, kind, overrides):
    per_s = TIMESTAMP_UNITS_PER_S[kind.unit]
    raw = array.cast(pa.int64())
    if raw.null_count == 0:
        values = raw.to_numpy()
        if per_s == 1:
            return values
        if not np.any(values % per_s):
            return values // per_s
    values = []
    for index, value in enumerate(raw.to_pylist()):
        if value is None:
            overrides[index] = ("time_s", "time_s: missing")
            values.append(None)
        elif value % per_s:
            overrides[index] = ("time_s", f"time_s: not a whole second (got {value} {kind.unit})")
            values.append(f"{value}{kind.unit}")
        else:
            values.append(value // per_s)
    return values


def _time_cells(cells, overrides):
    values = []
    for index, cell in enumerate(cells):
        if isinstance(cell, str):
            if INTEGER_TEXT.fullmatch(cell):
                values.append(int(cell))
                continue
            parsed = calendar.parse_utc(cell)
            if parsed is not None:
                values.append(parsed)
                continue
            overrides.setdefault(index, ("time_s", f"time_s: {TIME_REASON} (got {cell!r})"))
        elif cell is None:
            overrides.setdefault(index, ("time_s", "time_s: missing"))
        values.append(cell)
    return values


# --- chunking ---------------------------------------------------------------------------


def rechunk(pieces, rows):
    """Pieces of exactly `rows` rows (the last may be shorter), with their invalid rows kept in order."""
    held, held_rows = [], 0
    for piece in pieces:
        held.append(piece)
        held_rows += len(piece.lines)
        while held_rows >= rows:
            first, held = _take(held, rows)
            held_rows -= rows
            yield first
    if held:
        yield _join(held)


def _take(held, rows):
    taken, taken_rows = [], 0
    while taken_rows < rows:
        piece = held[0]
        want = rows - taken_rows
        if len(piece.lines) <= want:
            taken.append(held.pop(0))
            taken_rows += len(piece.lines)
        else:
            taken.append(Piece(piece.batch.slice(0, want), piece.lines[:want], piece.invalid))
            held[0] = Piece(piece.batch.slice(want), piece.lines[want:], [])
            taken_rows += want
    return _join(taken), held


def _join(pieces):
    if len(pieces) == 1:
        return pieces[0]
    table = pa.Table.from_batches([piece.batch for piece in pieces]).combine_chunks()
    batches = table.to_batches()
    batch = batches[0] if batches else pieces[0].batch.slice(0, 0)
    return Piece(batch, np.concatenate([piece.lines for piece in pieces]),
                 [row for piece in pieces for row in piece.invalid])


# --- --sort: an external merge sort by time -------------------------------------------


class ExternalSort:
    """Sort the rows of a source by (time, line), in runs of `run_rows` rows on disk.

    Pass 1 reads the file once, converts each row's time, rejects rows whose
    time does not convert (reported with every other pass-1 reject through
    `on_rejects`), sorts each run in memory and writes it to an Arrow IPC file.
    Pass 2 merges the runs a batch at a time: all rows up to the smallest
    last-key of the runs' current batches are safe to emit, so memory holds one
    batch per run. Memory: about run_rows rows (a few hundred bytes each) in
    pass 1, (runs x SORT_RUN_BATCH_ROWS) in pass 2; disk: a copy of the rows.
    """

    def __init__(self, source, run_rows, scratch_directory=None, batch_rows=BATCH_ROWS_DEFAULT):
        self.source = source
        self.run_rows = run_rows
        self.batch_rows = batch_rows
        self.scratch = tempfile.TemporaryDirectory(prefix="pointsledger-sort-", dir=scratch_directory)
        self.runs = []
        self.total_rows = 0

    def close(self):
        self.scratch.cleanup()

    def sort(self, on_rejects, on_progress=None):
        """Pass 1. on_rejects(list of (line, fields, code, reason)); on_progress(rows)."""
        held, held_rows = [], 0
        for piece in rechunk(self.source.pieces(), min(SORT_RUN_BATCH_ROWS, self.run_rows)):
            rejects = [(line, fields, "INVALID_ARGUMENT", reason) for line, fields, reason in piece.invalid]
            batch = make_batch(piece)
            times = batch.columns[4]
            if not isinstance(times, np.ndarray):
                good = np.array([isinstance(value, int) for value in times], dtype=bool)
                for index in np.flatnonzero(~good):
                    reason = batch.overrides.get(int(index), ("time_s", f"time_s: {TIME_REASON}"))[1]
                    rejects.append((int(batch.lines[index]), _original_fields(piece.batch, int(index)),
                                    "INVALID_ARGUMENT", reason))
                times = np.array([value if ok else 0 for value, ok in zip(times, good)], dtype=np.int64)
                kept = piece.batch.filter(pa.array(good))
                lines, times = batch.lines[good], times[good]
            else:
                kept, lines = piece.batch, batch.lines
            if rejects:
                on_rejects(sorted(rejects, key=lambda reject: reject[0]))
            if on_progress:
                on_progress(len(piece.lines) + len(piece.invalid))
            if kept.num_rows:
                held.append(self._keyed(kept, lines, times))
                held_rows += kept.num_rows
            if held_rows >= self.run_rows:
                self._write_run(held)
                held, held_rows = [], 0
        if held:
            self._write_run(held)

    @staticmethod
    def _keyed(batch, lines, times):
        offset = np.clip(times - limits.time_s_min, 0, SORT_TIME_MAX)
        keys = (offset << SORT_LINE_BITS) | np.minimum(lines, (1 << SORT_LINE_BITS) - 1)
        arrays = list(batch.columns) + [pa.array(keys), pa.array(lines), pa.array(times)]
        return pa.RecordBatch.from_arrays(arrays, names=list(batch.schema.names) + ["__key", "__line", "__time_s"])

    def _write_run(self, batches):
        table = pa.Table.from_batches(batches)
        table = table.take(pc.sort_indices(table, sort_keys=[("__key", "ascending")]))
        path = os.path.join(self.scratch.name, f"run-{len(self.runs):05d}.arrow")
        with pa.OSFile(path, "wb") as sink, pa_ipc.new_file(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=SORT_RUN_BATCH_ROWS):
                writer.write_batch(batch)
        self.runs.append(path)
        self.total_rows += table.num_rows

    def pieces(self, skip_rows=0):
        """Pass 2: the rows in (time, line) order, as pieces carrying their times in `__time_s`."""
        readers = [_RunReader(path) for path in self.runs]
        row = 0
        try:
            for table in self._merge(readers):
                if row + table.num_rows <= skip_rows:
                    row += table.num_rows
                    continue
                if row < skip_rows:
                    table = table.slice(skip_rows - row)
                    row = skip_rows
                row += table.num_rows
                table = table.combine_chunks()
                for batch in table.to_batches():
                    yield Piece(batch, batch.column(batch.schema.get_field_index("__line")).to_numpy(), [])
        finally:
            for reader in readers:
                reader.close()

    @staticmethod
    def _merge(readers):
        live = [reader for reader in readers if reader.current is not None]
        while live:
            bound = min(reader.last_key for reader in live)
            parts = [reader.take_through(bound) for reader in live]
            merged = pa.concat_tables([part for part in parts if part.num_rows])
            yield merged.take(pc.sort_indices(merged, sort_keys=[("__key", "ascending")]))
            live = [reader for reader in live if reader.current is not None]


class _RunReader:
    """One sorted run file, read one record batch at a time."""

    def __init__(self, path):
        self.file = pa.OSFile(path, "rb")
        self.reader = pa_ipc.open_file(self.file)
        self.next_index = 0
        self.current = None
        self.offset = 0
        self._advance()

    def _advance(self):
        self.current, self.offset = None, 0
        while self.next_index < self.reader.num_record_batches:
            batch = self.reader.get_batch(self.next_index)
            self.next_index += 1
            if batch.num_rows:
                self.current = batch
                self.keys = batch.column(batch.schema.get_field_index("__key")).to_numpy()
                self.last_key = int(self.keys[-1])
                return

    def take_through(self, bound):
        stop = int(np.searchsorted(self.keys, bound, side="right"))
        part = pa.Table.from_batches([self.current.slice(self.offset, stop - self.offset)])
        self.offset = stop
        if self.offset >= self.current.num_rows:
            self._advance()
        return part

    def close(self):
        self.file.close()


def sorted_batch(piece, first_record):
    """A Batch from a piece of the merge: its times were converted in pass 1."""
    batch = piece.batch
    times = batch.column(batch.schema.get_field_index("__time_s")).to_numpy()
    return make_batch(piece, first_record, times_s=times)


# --- rejects ------------------------------------------------------------------------------


def _cell_text(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _original_fields(batch, index):
    return _original_rows(batch, [index])[0]


def _original_rows(batch, indices):
    """The fields of rows `indices` as text, the file's columns only."""
    names = [name for name in batch.schema.names if not name.startswith("__")]
    taken = batch.select(names).take(pa.array(indices, pa.int64()))
    columns = [[_cell_text(value) for value in column.to_pylist()] for column in taken.columns]
    return [list(row) for row in zip(*columns)] if columns else [[] for _ in indices]


class RejectFile:
    """The rejected rows: the original fields, then reject_line, reject_code, reject_reason.

    Opened on the first reject, so a run that rejects nothing leaves no file
    (a stale one from an earlier run is removed when the run completes). The
    original columns come first: a fixed reject file can be ingested as it is.
    Resuming keeps the first `keep_bytes` (what the committed batches wrote).
    """

    def __init__(self, path, names, keep_bytes=0):
        self.path = path
        self.names = [name for name in names if not name.startswith("__")]
        self.keep_bytes = keep_bytes
        self.handle = None
        self.writer = None
        self.count = 0

    def _open(self):
        if self.keep_bytes:
            self.handle = open(self.path, "r+", newline="", encoding="utf-8")
            self.handle.truncate(self.keep_bytes)
            self.handle.seek(self.keep_bytes)
            self.writer = csv.writer(self.handle)
        else:
            self.handle = open(self.path, "w", newline="", encoding="utf-8")
            self.writer = csv.writer(self.handle)
            self.writer.writerow(list(self.names) + list(REJECT_EXTRA_COLUMNS))

    def write(self, rejects):
        """rejects: (line, fields, code, reason) each."""
        if not rejects:
            return
        if self.handle is None:
            self._open()
        width = len(self.names)
        for line, fields, code, reason in rejects:
            row = list(fields) + [""] * max(0, width - len(fields))
            if len(row) > width:
                # A row with too many fields: the extra ones stay in the last column, so
                # reject_line and the reason are always in their columns.
                row = row[:width - 1] + [",".join(row[width - 1:])]
            self.writer.writerow(row + [line, code, reason])
        self.count += len(rejects)

    def flush(self):
        """Flush; the size that holds every reject written so far."""
        if self.handle is None:
            return self.keep_bytes
        self.handle.flush()
        return self.handle.tell()

    def close(self, completed=False):
        if self.handle is not None:
            self.handle.close()
        elif completed and not self.keep_bytes and os.path.exists(self.path):
            os.remove(self.path)  # a stale reject file must not pass for this run's
        elif completed and self.keep_bytes:
            os.truncate(self.path, self.keep_bytes)


def default_rejects_path(path):
    return os.fspath(path) + ".rejects.csv"


# --- the resume point ----------------------------------------------------------------------


def file_identity(path):
    status = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(HEAD_HASH_BYTES))
    return {"path": os.path.abspath(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "head_sha256": digest.hexdigest()}


def default_resume_path(input_path, target, data_directory=None):
    """Embedded: inside the ledger directory (it goes when the ledger goes); server: the user's cache."""
    key = hashlib.sha256(f"{target}\0{os.path.abspath(input_path)}".encode()).hexdigest()[:20]
    if data_directory is not None:
        directory = os.path.join(data_directory, "ingest-resume")
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(cache, "pointsledger", "ingest-resume")
    return os.path.join(directory, f"{key}.json")


class ResumePoint:
    """How far a file's ingest got into a target, saved after every committed batch."""

    def __init__(self, path, identity, target, sort, rejects_path):
        self.path = path
        self.state = {
            "format": RESUME_FORMAT, "file": identity, "target": target, "sort": bool(sort),
            "rejects_path": os.path.abspath(rejects_path), "rejects_bytes": 0,
            "records_done": 0, "last_line": 0, "probe": None,
            "totals": {"applied": 0, "duplicates": 0, "rejected": 0, "points": 0},
        }

    def load(self):
        """The saved state if it belongs to this file, target and mode; else None (and why)."""
        if self.path is None or not os.path.exists(self.path):
            return None, None
        try:
            with open(self.path, encoding="utf-8") as handle:
                saved = json.load(handle)
        except (OSError, ValueError) as error:
            return None, f"unreadable resume point {self.path} ({error})"
        for key, why in (("format", "another format"), ("file", "the file changed"),
                         ("target", "another target"), ("sort", "another --sort setting"),
                         ("rejects_path", "another reject file")):
            if saved.get(key) != self.state[key]:
                return None, f"resume point ignored: {why}"
        rejects_bytes = saved.get("rejects_bytes", 0)
        if rejects_bytes and (not os.path.exists(saved["rejects_path"])
                              or os.path.getsize(saved["rejects_path"]) < rejects_bytes):
            return None, "resume point ignored: the reject file is missing or shorter"
        return saved, None

    def adopt(self, saved):
        self.state = saved

    def save(self):
        if self.path is None:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self.state, handle, sort_keys=True)
        os.replace(temporary, self.path)

    def remove(self):
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)


# --- progress --------------------------------------------------------------------------------


class Progress:
    """A tqdm bar (rows/s, ETA) on a terminal, else a plain line every `interval_s` seconds.

    A CSV's row count is not known before the end: `estimated` says the total
    is an estimate (from the first MiB's line length), shown with a "~".
    """

    def __init__(self, mode, label, total_rows, interval_s, initial_rows=0, estimated=False, stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.label = label
        self.total_rows = total_rows
        self.estimated = estimated
        self.interval_s = interval_s
        self.rows = initial_rows
        self.started_rows = initial_rows
        self.started = time.monotonic()
        self.last_print = self.started
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total_rows, initial=initial_rows, unit=" rows", unit_scale=True,
                            file=self.stream, desc=label, smoothing=0.1)

    def update(self, rows, rejected=0):
        self.rows += rows
        if self.total_rows is not None and self.rows > self.total_rows:
            self.total_rows = self.rows  # the estimate was short
            if self.bar is not None:
                self.bar.total = self.total_rows
        if self.bar is not None:
            if rejected:
                self.bar.set_postfix_str(f"{rejected:,} rejected", refresh=False)
            self.bar.update(rows)
            return
        now = time.monotonic()
        if self.mode == "lines" and now - self.last_print >= self.interval_s:
            self.last_print = now
            self.stream.write(self.line(rejected) + "\n")
            self.stream.flush()

    def line(self, rejected):
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.rows - self.started_rows) / elapsed
        total = self.total_rows
        text = f"{self.label}: {self.rows:,} rows"
        if total:
            text += f" of {'~' if self.estimated else ''}{total:,} ({100 * self.rows / total:.0f} %)"
        text += f", {rate:,.0f} rows/s"
        if total and rate > 0:
            text += f", ETA {_duration(max(total - self.rows, 0) / rate)}"
        if rejected:
            text += f", {rejected:,} rejected"
        return text

    def complete(self):
        """The end: the estimate gives way to the count."""
        self.total_rows = self.rows
        if self.bar is not None:
            self.bar.total = self.rows
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


# --- sinks: where batches go ------------------------------------------------------------------


def _outcomes(result):
    """[(status, seq, points, balance, error)] of a batch result, in one pass over it."""
    raw = getattr(result, "raw", None)
    if raw is not None:
        return raw
    return [(item.status, item.seq, item.points, item.balance, item.error) for item in result]


class EmbeddedSink:
    """Straight into the store: relaxed sync, one sync at the end (SPEC §9)."""

    def __init__(self, ledger):
        self.ledger = ledger
        self.target = f"embedded:{os.path.abspath(ledger.path)}"

    def apply(self, batches):
        for batch in batches:
            outcomes = _outcomes(self.ledger.purchases(*batch.columns))
            # Keep peak RSS flat over a long backfill (see Store.release_mapped_pages).
            self.ledger.release_mapped_pages()
            yield batch, outcomes

    def holds(self, member_id, order_id):
        # Order ids are unique: a stored order is the committed row itself.
        return self.ledger.has_order(order_id)

    def finish(self):
        self.ledger.sync()


def _history_holds(history, member_id, order_id):
    try:
        page = history(member_id, limit=PROBE_HISTORY_LIMIT)
    except NotFound:
        return False
    return any(entry.kind == "EARN" and entry.ref_id == order_id for entry in page.entries)


class ServerSink:
    """Through a running server's IngestPurchases stream, `window` batches in flight.

    A batch travels in typed columns (repeated string / int64 fields), so a
    cell that is not a str or an int64 (text in an amount, a missing or non
    UTF-8 id) cannot be sent: that row is refused here, by the same checks in
    the same order as the engine (so with the same reason), and the rest of
    the batch is sent without it.
    """

    def __init__(self, client, address, window):
        self.client = client
        self.window = window
        self.target = f"server:{address}"

    def apply(self, batches):
        sent = collections.deque()

        def columns():
            for batch in batches:
                keep, local = _split_unsendable(batch.columns)
                sent.append((batch, keep, local))
                yield _sendable_columns(batch.columns, keep)

        for result in self.client.ingest(columns(), window=self.window):
            batch, keep, local = sent.popleft()
            outcomes = _outcomes(result)
            if keep is not None:
                merged = list(local)
                for index, outcome in zip(keep, outcomes):
                    merged[index] = outcome
                outcomes = merged
            yield batch, outcomes

    def holds(self, member_id, order_id):
        """Whether the server holds the order; None when this client may not read (a write-only token)."""
        history = getattr(self.client, "history", None)
        if history is None:
            return None
        try:
            return _history_holds(history, member_id, order_id)
        except LedgerError as error:
            if error.code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
                return None  # cannot tell: the resume point is taken on trust
            raise

    def finish(self):
        pass


def _sendable(value, is_text):
    if is_text:
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool) and limits.INT64_MIN <= value <= limits.INT64_MAX


def _split_unsendable(columns):
    """(indices to send or None for all, [outcome or None per row]) of a batch's columns."""
    from ._engine_py import validate_amount, validate_id, validate_time

    bad = set()
    for position, column in enumerate(columns):
        if isinstance(column, np.ndarray):
            continue
        is_text = COLUMNS[position] in TEXT_COLUMNS
        bad.update(index for index, value in enumerate(column) if not _sendable(value, is_text))
    if not bad:
        return None, None
    local = [None] * len(columns[0])
    for index in bad:
        order_id, member_id, amount_minor, category, time_s = (column[index] for column in columns)
        try:
            validate_id("order_id", order_id)
            validate_id("member_id", member_id)
            validate_amount("amount_minor", amount_minor)
            validate_id("category", category, limits.category_bytes_max)
            validate_time("time_s", time_s)
        except LedgerError as error:
            local[index] = (error.code, 0, 0, 0, error)
    keep = [index for index in range(len(local)) if index not in bad]
    return keep, local


def _sendable_columns(columns, keep):
    if keep is None:
        return columns
    taken = []
    for column in columns:
        if isinstance(column, np.ndarray):
            taken.append(column[keep])
        else:
            taken.append([column[index] for index in keep])
    return tuple(taken)


# --- the reader thread ---------------------------------------------------------------------


class Prefetch:
    """Iterate `iterator` in a reader thread, `depth` items ahead; its exceptions surface here.

    close() stops and joins the thread whatever state either side is in: the
    consumer may be the sink's own thread (the gRPC client pulls requests from
    one), so no side ever blocks without looking at the stop flag.
    """

    _DONE = object()

    def __init__(self, iterator, depth=PREFETCH_BATCHES):
        self.iterator = iterator
        self.items = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pointsledger-reader", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for item in self.iterator:
                if not self._put((item, None)):
                    return
            self._put((self._DONE, None))
        except BaseException as error:  # handed to the consumer
            self._put((self._DONE, error))
        finally:
            close = getattr(self.iterator, "close", None)
            if close is not None:
                close()  # in this thread, which ran it: the file is closed here

    def _put(self, entry):
        while not self.stop.is_set():
            try:
                self.items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            try:
                item, error = self.items.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if item is self._DONE:
                if error is not None:
                    raise error
                return
            yield item

    def close(self):
        self.stop.set()
        self.thread.join(timeout=30)


# --- the ingest ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    batch_rows: int = BATCH_ROWS_DEFAULT
    rejects_path: str | None = None
    resume_path: str | None = None  # None: no resume point
    sort: bool = False
    sort_run_rows: int = SORT_RUN_ROWS_DEFAULT
    scratch_directory: str | None = None
    progress: str = "auto"  # auto, bar, lines, none
    progress_interval_s: float = 5.0
    rejects_printed_max: int = 10
    delay_s: float = 0.0  # test hook: pause after each committed batch


@dataclasses.dataclass
class Summary:
    file: str
    format: str
    target: str
    rows: int
    applied: int
    duplicates: int
    rejected: int
    points: int
    seconds: float
    rows_per_s: float
    rows_this_run: int
    resumed_after_rows: int | None  # rows a resume point said were committed already
    resumed_from_line: int | None  # the first line this run read (not with --sort)
    rejects_file: str | None

    def as_dict(self):
        return dataclasses.asdict(self)


class Ingest:
    """One file into one sink. `run()` returns a Summary."""

    def __init__(self, source, sink, options, label=None, log=None):
        self.source = source
        self.sink = sink
        self.options = options
        self.label = label or os.path.basename(source.path)
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.rejects_path = options.rejects_path or default_rejects_path(source.path)
        self.resume = ResumePoint(options.resume_path, file_identity(source.path), sink.target,
                                  options.sort, self.rejects_path)
        self.printed_rejects = 0
        self.rows_this_run = 0

    def run(self):
        started = time.perf_counter()
        saved, why = self.resume.load()
        if why:
            self.log(f"{self.label}: {why}")
        if saved is not None and not self._probe_holds(saved):
            self.log(f"{self.label}: the target does not hold the last committed row of the resume point; "
                     "sending the file from the start")
            saved = None
        if saved is not None:
            self.resume.adopt(saved)
        state = self.resume.state
        resumed_after_rows = state["records_done"] if saved is not None and state["records_done"] else None
        resumed_from_line = None
        if resumed_after_rows and self.options.sort:
            self.log(f"{self.label}: resuming after {resumed_after_rows:,} rows in time order")
        elif resumed_after_rows:
            resumed_from_line = state["last_line"] + 1
            self.log(f"{self.label}: resuming after line {state['last_line']:,} "
                     f"({resumed_after_rows:,} rows already committed)")
        self.rejects = RejectFile(self.rejects_path, self.source.names,
                                  keep_bytes=state["rejects_bytes"] if saved is not None else 0)
        sorter = None
        try:
            if self.options.sort:
                sorter = ExternalSort(self.source, self.options.sort_run_rows, self.options.scratch_directory,
                                      self.options.batch_rows)
                self._sort_pass(sorter, already_reported=saved is not None)
                batches = self._sorted_batches(sorter, state["records_done"])
                total_rows = sorter.total_rows
            else:
                batches = self._batches(state["records_done"], state["last_line"])
                total_rows = self.source.estimated_rows
            self.progress = Progress(self.options.progress, self.label, total_rows,
                                     self.options.progress_interval_s, initial_rows=state["records_done"],
                                     estimated=sorter is None and self.source.total_rows is None)
            reader = Prefetch(batches)
            try:
                for batch, outcomes in self.sink.apply(reader):
                    self._committed(batch, outcomes)
                self.progress.complete()
            finally:
                reader.close()
                self.progress.close()
            self.sink.finish()
        except BaseException:
            self.rejects.close()
            raise
        finally:
            if sorter is not None:
                sorter.close()
        self.rejects.close(completed=True)
        self.resume.remove()
        seconds = time.perf_counter() - started
        totals = state["totals"]
        return Summary(
            file=self.source.path, format=self.source.format, target=self.sink.target,
            rows=totals["applied"] + totals["duplicates"] + totals["rejected"],
            applied=totals["applied"], duplicates=totals["duplicates"], rejected=totals["rejected"],
            points=totals["points"], seconds=round(seconds, 3),
            rows_per_s=round(self.rows_this_run / seconds, 1) if seconds > 0 else 0.0,
            rows_this_run=self.rows_this_run, resumed_after_rows=resumed_after_rows,
            resumed_from_line=resumed_from_line,
            rejects_file=self.rejects_path if totals["rejected"] else None,
        )

    def _probe_holds(self, saved):
        probe = saved.get("probe")
        if not probe or not saved.get("records_done"):
            return True
        holds = self.sink.holds(probe["member_id"], probe["order_id"])
        return holds is None or holds

    def _batches(self, records_done, last_line):
        """Batches of the file in its order, the first `records_done` rows skipped (not converted)."""
        if isinstance(self.source, ParquetSource):
            pieces = self.source.pieces(skip_rows=records_done, batch_rows=self.options.batch_rows)
            position = records_done
        else:
            pieces = self.source.pieces()
            position = 0
        for piece in rechunk(pieces, self.options.batch_rows):
            count = len(piece.lines)
            if position + count <= records_done:
                position += count
                continue
            invalid = [row for row in piece.invalid if row[0] > last_line]
            if position < records_done:
                skip = records_done - position
                piece = Piece(piece.batch.slice(skip), piece.lines[skip:], invalid)
                position = records_done
            else:
                piece = Piece(piece.batch, piece.lines, invalid)
            yield make_batch(piece, position)
            position += len(piece.lines)

    def _sort_pass(self, sorter, already_reported):
        self.log(f"{self.label}: sorting by time (runs of {self.options.sort_run_rows:,} rows)")
        progress = Progress(self.options.progress, f"{self.label} (sort)", self.source.estimated_rows,
                            self.options.progress_interval_s, estimated=self.source.total_rows is None)

        def on_rejects(rejects):
            if not already_reported:
                self._report_rejects(rejects)

        try:
            sorter.sort(on_rejects, progress.update)
        finally:
            progress.close()
        if not already_reported:
            self.resume.state["rejects_bytes"] = self.rejects.flush()
            self.resume.save()

    def _sorted_batches(self, sorter, records_done):
        position = records_done
        for piece in rechunk(sorter.pieces(skip_rows=records_done), self.options.batch_rows):
            yield sorted_batch(piece, position)
            position += len(piece.lines)

    def _report_rejects(self, rejects):
        self.rejects.write(rejects)
        totals = self.resume.state["totals"]
        totals["rejected"] += len(rejects)
        self.rows_this_run += len(rejects)
        for line, _, _, reason in rejects:
            if self.printed_rejects < self.options.rejects_printed_max:
                where = f"line {line}" if self.source.format == "csv" else f"row {line}"
                self.log(f"{self.source.path}: {where}: {reason}")
            elif self.printed_rejects == self.options.rejects_printed_max:
                self.log(f"{self.source.path}: more rejected rows: see {self.rejects_path}")
            self.printed_rejects += 1

    def _committed(self, batch, outcomes):
        """One batch is committed: count it, write its rejects, then move the resume point."""
        state = self.resume.state
        totals = state["totals"]
        rejects = [(line, fields, "INVALID_ARGUMENT", reason) for line, fields, reason in batch.invalid]
        if len(outcomes) != len(batch):
            raise RuntimeError(f"{len(outcomes)} results for a batch of {len(batch)} rows")
        # Counted with list methods (C loops): this runs for every row of the file.
        statuses = [outcome[0] for outcome in outcomes]
        applied = statuses.count("APPLIED")
        duplicates = statuses.count("DUPLICATE")
        if applied == len(statuses):
            points = sum(outcome[2] for outcome in outcomes)
        else:  # a duplicate carries the points it earned the first time
            points = sum(outcome[2] for outcome in outcomes if outcome[0] == "APPLIED")
        refused = []
        if applied + duplicates < len(statuses):
            refused = [index for index, status in enumerate(statuses) if status not in ACCEPTED]
        probe_index = None
        for index in range(len(statuses) - 1, -1, -1):
            if statuses[index] in ACCEPTED:
                probe_index = index
                break
        if refused:
            for index, fields in zip(refused, _original_rows(batch.originals, refused)):
                status, error = outcomes[index][0], outcomes[index][4]
                rejects.append((int(batch.lines[index]), fields, status, self._reason(batch, index, error)))
            if batch.invalid:
                rejects.sort(key=lambda reject: reject[0])
        totals["applied"] += applied
        totals["duplicates"] += duplicates
        totals["points"] += points
        self.rows_this_run += applied + duplicates
        self._report_rejects(rejects)
        state["rejects_bytes"] = self.rejects.flush()
        state["records_done"] = batch.first_record + len(batch)
        if len(batch):
            state["last_line"] = max(state["last_line"], int(batch.lines.max()))
        elif batch.invalid:
            state["last_line"] = max(state["last_line"], max(row[0] for row in batch.invalid))
        if probe_index is not None:
            state["probe"] = {"member_id": batch.columns[1][probe_index],
                              "order_id": batch.columns[0][probe_index]}
        self.resume.save()
        self.progress.update(len(batch) + len(batch.invalid), totals["rejected"])
        if self.options.delay_s:
            time.sleep(self.options.delay_s)

    @staticmethod
    def _reason(batch, index, error):
        override = batch.overrides.get(index)
        if override is not None and getattr(error, "field", None) == override[0]:
            return override[1]
        # A value from an int64 column is a numpy scalar; its repr is noise in a reason.
        return NUMPY_SCALAR.sub(r"\1", str(error)) if error is not None else "refused"
