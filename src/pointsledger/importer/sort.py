"""--sort: an external merge sort by time."""

import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as pa_ipc

from .. import limits
from .columns import make_batch
from .common import BATCH_ROWS_DEFAULT, SORT_LINE_BITS, SORT_RUN_BATCH_ROWS, SORT_TIME_MAX, TIME_REASON
from .order import OrderWatch, member_column
from .rejects import _original_fields
from .sources import Piece, rechunk


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
        self.out_of_order = 0  # rows out of time order in the file (order.py)

    def close(self):
        self.scratch.cleanup()

    def sort(self, on_rejects, on_progress=None):
        """Pass 1. on_rejects(list of (line, fields, code, reason)); on_progress(rows)."""
        held, held_rows = [], 0
        watch = OrderWatch()
        for piece in rechunk(self.source.pieces(), min(SORT_RUN_BATCH_ROWS, self.run_rows)):
            rejects = [(line, fields, "INVALID_ARGUMENT", reason) for line, fields, reason in piece.invalid]
            batch = make_batch(piece)
            self.out_of_order += watch.count(member_column(piece.batch), batch.columns[4])
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
