"""`pointsledger split`: one file of purchases into one file per shard, streaming (SPEC §18).

The importer's sources read the file in pieces (bounded memory); each piece's rows
go to their member's shard file, in file order, with the file's own columns
(CSV in, CSV out; Parquet in, Parquet out). Each shard's file is then ingested by
that shard's `pointsledger ingest`, anywhere, in parallel. A row whose member id
cannot be read (missing, not UTF-8) has no shard: it goes to the rejects file,
as ingest would reject it.
"""

import dataclasses
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..importer import RejectFile, default_rejects_path, open_source, rechunk
from ..importer.common import BATCH_ROWS_DEFAULT
from .sharding import check_shards, shard_of


@dataclasses.dataclass
class SplitSummary:
    file: str
    shards: int
    files: list
    rows: list  # rows written to each shard's file
    rejected: int
    rejects_file: str | None

    def as_dict(self):
        return dataclasses.asdict(self)


def shard_path(path, shard, shards, directory=None):
    """<stem>.shard-K-of-S<ext>, beside the input or in directory."""
    stem, extension = os.path.splitext(os.path.basename(path))
    return os.path.join(directory or os.path.dirname(os.path.abspath(path)),
                        f"{stem}.shard-{shard}-of-{shards}{extension or '.csv'}")


class _Outputs:
    def __init__(self, source, shards, directory):
        self.format = source.format
        self.paths = [shard_path(source.path, shard, shards, directory) for shard in range(shards)]
        self.writers = [None] * shards
        self.rows = [0] * shards

    def write(self, shard, batch):
        writer = self.writers[shard]
        if writer is None:
            writer = self.writers[shard] = self._open(self.paths[shard], batch.schema)
        writer.write_batch(batch)
        self.rows[shard] += batch.num_rows

    def _open(self, path, schema):
        partial = path + ".partial"
        if self.format == "parquet":
            return pq.ParquetWriter(partial, schema)
        return pa_csv.CSVWriter(partial, schema)

    def close(self, completed):
        for path, writer in zip(self.paths, self.writers):
            if writer is not None:
                writer.close()
                if completed:
                    os.replace(path + ".partial", path)
                else:
                    os.remove(path + ".partial")


def split(path, shards, *, file_format=None, directory=None, rejects_path=None, batch_rows=BATCH_ROWS_DEFAULT):
    """Split the file; a SplitSummary. Every shard gets a file, empty ones included (a header)."""
    check_shards(shards)
    source = open_source(path, file_format)
    rejects_path = rejects_path or default_rejects_path(source.path)
    outputs = _Outputs(source, shards, directory)
    rejects = RejectFile(rejects_path, source.names)
    completed = False
    schema = None
    try:
        for piece in rechunk(source.pieces(), batch_rows):
            rejects.write([(line, fields, "INVALID_ARGUMENT", reason) for line, fields, reason in piece.invalid])
            batch, bad = _readable(piece)
            schema = batch.schema if schema is None else schema
            rejects.write(bad)
            members = batch.column(batch.schema.get_field_index("member_id")).to_pylist()
            by_shard = [[] for _ in range(shards)]
            for index, member_id in enumerate(members):
                by_shard[shard_of(member_id, shards)].append(index)
            for shard, indices in enumerate(by_shard):
                if indices:
                    outputs.write(shard, batch.take(pa.array(indices, pa.int64())))
        for shard in range(shards):
            if outputs.writers[shard] is None and schema is not None:
                outputs.writers[shard] = outputs._open(outputs.paths[shard], schema)
        completed = True
    finally:
        outputs.close(completed)
        rejects.close(completed=completed)
    return SplitSummary(source.path, shards, outputs.paths, outputs.rows, rejects.count,
                        rejects_path if rejects.count else None)


def _readable(piece):
    """The piece's rows as written out (CSV's binary cells as text), and the rejects of rows that
    cannot be (a member id missing, empty or not UTF-8; for CSV, any cell not UTF-8)."""
    batch = piece.batch
    names = [name for name in batch.schema.names if not name.startswith("__")]
    batch = batch.select(names)
    arrays = []
    for array in batch.columns:
        try:
            arrays.append(array.cast(pa.string()) if pa.types.is_binary(array.type) else array)
        except pa.ArrowInvalid:  # a cell that is not UTF-8
            return _readable_rows(piece, names)
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    members = batch.column(names.index("member_id"))
    if not pa.types.is_string(members.type) or members.null_count or 0 in pc.utf8_length(members).to_pylist():
        return _readable_rows(piece, names)
    return batch, []


def _readable_rows(piece, names):
    """The slow path, row by row: keep the readable rows, reject the others."""
    batch = piece.batch.select(names)
    columns = [column.to_pylist() for column in batch.columns]
    member_at = names.index("member_id")
    keep, bad = [], []
    for index in range(batch.num_rows):
        cells = [column[index] for column in columns]
        member = cells[member_at]
        readable = all(not isinstance(cell, bytes) or _utf8(cell) for cell in cells)
        member_ok = isinstance(member, (str, bytes)) and member and (not isinstance(member, bytes) or _utf8(member))
        if readable and member_ok:
            keep.append(index)
        else:
            fields = [cell.decode("utf-8", "replace") if isinstance(cell, bytes) else cell for cell in cells]
            bad.append((int(piece.lines[index]), fields, "INVALID_ARGUMENT",
                        "member_id: a non-empty UTF-8 id is needed to choose the shard" if not member_ok
                        else "a cell is not UTF-8 text"))
    taken = batch.take(pa.array(keep, pa.int64()))
    arrays = [array.cast(pa.string()) if pa.types.is_binary(array.type) else array for array in taken.columns]
    return pa.RecordBatch.from_arrays(arrays, names=names), bad


def _utf8(value):
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
