"""Conversion: a piece's cells into the columns the engine takes."""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import calendar
from .common import (
    COLUMNS, DATE_PATTERN, DATE_TEXT, INTEGER_PATTERN, INTEGER_TEXT, ISO_FORMAT, ISO_OR_DATE_PATTERN, MIDNIGHT_SUFFIX,
    TEXT_COLUMNS, TIME_REASON, TIMESTAMP_UNITS_PER_S,
)


@dataclasses.dataclass
class Batch:
    """What one ledger call gets, and what is needed to report each row."""

    columns: tuple  # order_ids, member_ids, amounts_minor, categories, times_s
    lines: np.ndarray
    originals: pa.RecordBatch  # the rows as read, for the reject file
    overrides: dict  # row index -> (field, reason): a better reason when that field is refused
    invalid: list  # unsplittable rows before or among these: (line, fields, reason)
    first_record: int = 0  # position of the first row in the stream of rows sent
    out_of_order: int = 0  # rows out of time order among these (order.py), in file order only

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
    UTC) and dates (midnight UTC) convert when they are whole seconds. A text
    date, YYYY-MM-DD, is its midnight UTC (as the CLI's --time takes it).
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
        if _all_match(array, ISO_OR_DATE_PATTERN):
            normal = pc.replace_substring(array, "+00:00", "Z")
            is_date = pc.match_substring_regex(normal, DATE_PATTERN)
            if pc.any(is_date).as_py():  # a date is its midnight UTC, as `--time 2026-03-15` is
                normal = pc.if_else(is_date, pc.binary_join_element_wise(normal, MIDNIGHT_SUFFIX, ""), normal)
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
            parsed = calendar.parse_utc(cell + MIDNIGHT_SUFFIX if DATE_TEXT.fullmatch(cell) else cell)
            if parsed is not None:
                values.append(parsed)
                continue
            overrides.setdefault(index, ("time_s", f"time_s: {TIME_REASON} (got {cell!r})"))
        elif cell is None:
            overrides.setdefault(index, ("time_s", "time_s: missing"))
        values.append(cell)
    return values
