"""The reject file: rejected rows with their line, code and reason."""

import csv
import os

import pyarrow as pa

from ..store.file import disk_full_reported
from .common import REJECT_EXTRA_COLUMNS

ENCODING_ERRORS = "surrogateescape"


def _cell_text(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        # Undecodable bytes ride as surrogates and are written back as the same bytes.
        return value.decode("utf-8", ENCODING_ERRORS)
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
    Cells are written as the file had them, bytes that are not UTF-8 included.
    Rows are written as they are committed; with --sort that is time order, so
    a completed sorted run puts the file in line order (sort_by_line).
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
            self.handle = open(self.path, "r+", newline="", encoding="utf-8", errors=ENCODING_ERRORS)
            self.handle.truncate(self.keep_bytes)
            self.handle.seek(self.keep_bytes)
            self.writer = csv.writer(self.handle)
        else:
            self.handle = open(self.path, "w", newline="", encoding="utf-8", errors=ENCODING_ERRORS)
            self.writer = csv.writer(self.handle)
            self.writer.writerow(list(self.names) + list(REJECT_EXTRA_COLUMNS))

    def write(self, rejects):
        """rejects: (line, fields, code, reason) each."""
        if not rejects:
            return
        with disk_full_reported(self.path, self._stopped):
            self._write(rejects)

    def _stopped(self):
        return (f"the rejects file stopped after {self.count:,} rejects; the ledger keeps every batch "
                "committed so far, and the ingest resumes where it stopped when run again")

    def _write(self, rejects):
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
        with disk_full_reported(self.path, self._stopped):
            self.handle.flush()
        return self.handle.tell()

    def close(self, completed=False):
        if self.handle is not None:
            with disk_full_reported(self.path, self._stopped):
                self.handle.close()
        elif completed and not self.keep_bytes and os.path.exists(self.path):
            os.remove(self.path)  # a stale reject file must not pass for this run's
        elif completed and self.keep_bytes:
            os.truncate(self.path, self.keep_bytes)


def sort_by_line(path):
    """Rewrite a reject file in line order (stable), byte for byte the same rows; a no-op when absent.

    The whole file is read into memory: rejects are the exceptions of a file.
    """
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8", errors=ENCODING_ERRORS) as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 3:
        return
    line_column = len(rows[0]) - len(REJECT_EXTRA_COLUMNS)
    body = sorted(rows[1:], key=lambda row: int(row[line_column]))
    if body == rows[1:]:
        return
    temporary = path + ".tmp"
    try:
        with disk_full_reported(path, lambda: "the rejects file is kept as written, not in line order"):
            with open(temporary, "w", newline="", encoding="utf-8", errors=ENCODING_ERRORS) as handle:
                writer = csv.writer(handle)
                writer.writerow(rows[0])
                writer.writerows(body)
            os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def default_rejects_path(path):
    return os.fspath(path) + ".rejects.csv"
