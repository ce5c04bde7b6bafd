"""Sources: a CSV or Parquet file read as pieces of rows with their line numbers, and rechunked."""

import csv
import dataclasses
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from . import common
from .common import BATCH_ROWS_DEFAULT, COLUMNS, CSV_SAMPLE_BYTES, InputError


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
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=common.CSV_BLOCK_BYTES),
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
