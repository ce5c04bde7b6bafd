"""info, export, verify, backup: the store as a whole."""

import csv
import os
import sys
import time

import lmdb

from .. import engine as engines
from ..store import file as store_file, put as store_put
from ..errors import DiskFull, StoreDamaged
from ..ledger import Ledger
from ..results import VerifyReport
from .common import (
    data_directory, EXIT_OK, EXIT_REFUSED, EXPORT_CHUNK_ENTRIES, JOURNAL_FIELDS, open_existing, store_exists, Usage,
)
from .output import emit, print_json
from .shard_commands import open_reader


def cmd_info(arguments):
    import pointsledger

    path = data_directory(arguments)
    info = {
        "version": pointsledger.__version__,
        "engine": engines.ENGINE,
        "engines_available": ", ".join(sorted(engines.ENGINES)),
        "extension_error": engines.EXTENSION_PROBLEM,
        # How a write's records go into LMDB: the GIL-free C put, or putmulti (and why).
        "store_put": "c" if store_put.c_put_problem() is None else "putmulti",
        "store_put_problem": store_put.c_put_problem(),
        "data": os.path.abspath(path),
        "store_exists": store_exists(path),
    }
    if info["store_exists"]:
        with Ledger(path, readonly=True) as ledger:
            info.update(ledger.statistics())
    emit(arguments, info)
    return EXIT_OK


def cmd_export(arguments):
    file_format = arguments.format or ("parquet" if arguments.output.endswith((".parquet", ".pq")) else "csv")
    if file_format == "parquet" and arguments.output == "-":
        raise Usage("Parquet export needs --output FILE")
    if arguments.to_seq is not None and arguments.to_seq < arguments.from_seq:
        raise Usage(f"--to-seq {arguments.to_seq} is before --from-seq {arguments.from_seq}: nothing to export")
    with open_existing(arguments) as ledger:
        last_seq = ledger.last_seq()
        to_seq = last_seq if arguments.to_seq is None else min(arguments.to_seq, last_seq)
        chunks = journal_chunks(ledger, arguments.from_seq, to_seq)
        count = write_export(arguments.output, file_format, chunks)
    fields = {"entries": count, "from_seq": arguments.from_seq, "to_seq": to_seq, "output": arguments.output,
              "format": file_format}
    if arguments.output == "-":
        print(f"exported {count:,} entries", file=sys.stderr)
    else:
        emit(arguments, fields)
    return EXIT_OK


def journal_chunks(ledger, from_seq, to_seq):
    """Lists of entries from from_seq through to_seq; each chunk is one read snapshot.

    The journal only grows, so chunks read from later snapshots still form one
    consistent prefix: the entries up to to_seq, fixed when the export began.
    """
    seq = from_seq
    while seq <= to_seq:
        entries = read_adopting_map_growth(ledger, ledger.journal, seq, min(EXPORT_CHUNK_ENTRIES, to_seq - seq + 1))
        entries = [entry for entry in entries if entry.seq <= to_seq]
        if not entries:
            return
        yield entries
        seq = entries[-1].seq + 1


def read_adopting_map_growth(ledger, read, *arguments):
    """read(*arguments); if a writer in another process grew the map meanwhile, adopt its size and read again."""
    try:
        return read(*arguments)
    except lmdb.MapResizedError:
        ledger.store.env.set_mapsize(0)  # 0: take the size the environment has now
        return read(*arguments)


def write_export(output, file_format, chunks):
    """Write the export; on a full disk remove the partial file and say how far it got (DiskFull)."""
    counted = _Counted(chunks)
    write = write_parquet if file_format == "parquet" else write_csv
    partial = "" if output == "-" else "; the partial file was removed"
    try:
        with store_file.disk_full_reported(
                output, lambda: f"the export stopped after {counted.entries:,} entries{partial}"):
            return write(output, counted)
    except DiskFull:
        if output != "-" and os.path.exists(output):
            os.remove(output)
        raise


class _Counted:
    """The chunks, counting the entries handed out."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.entries = 0

    def __iter__(self):
        for entries in self.chunks:
            yield entries
            self.entries += len(entries)


def write_csv(output, chunks):
    handle = sys.stdout if output == "-" else open(output, "w", newline="", encoding="utf-8")
    count = 0
    try:
        writer = csv.writer(handle)
        writer.writerow(JOURNAL_FIELDS)
        for entries in chunks:
            writer.writerows([getattr(entry, name) for name in JOURNAL_FIELDS] for entry in entries)
            count += len(entries)
    finally:
        if handle is not sys.stdout:
            handle.close()
        else:
            handle.flush()
    return count


def write_parquet(output, chunks):
    import pyarrow as pa
    import pyarrow.parquet as pa_parquet

    schema = pa.schema([("seq", pa.int64()), ("kind", pa.string()), ("member_id", pa.string()),
                        ("ref_id", pa.string()), ("points", pa.int64()), ("balance", pa.int64()),
                        ("time_s", pa.int64()), ("program_version", pa.int64())])
    count = 0
    with pa_parquet.ParquetWriter(output, schema) as writer:
        for entries in chunks:
            columns = {name: [getattr(entry, name) for entry in entries] for name in JOURNAL_FIELDS}
            writer.write_table(pa.table(columns, schema=schema))
            count += len(entries)
    return count


def cmd_verify(arguments):
    try:
        with open_reader(arguments) as ledger:
            report = ledger.verify()
    except StoreDamaged as error:
        # A damaged file cannot be opened: that is verify's finding, reported as one.
        report = VerifyReport([error.message], 0, 0)
    if arguments.json:
        print_json({"ok": report.ok, "entries": report.entries, "members": report.members,
                    "problems": report.problems})
    elif report.ok:
        print(f"ok: {report.entries:,} journal entries, {report.members:,} members, every invariant holds")
    else:
        where = (f"{len(arguments.shard_list)} shards" if getattr(arguments, "shard_list", None)
                 else os.path.abspath(data_directory(arguments)))
        print(f"{len(report.problems)} problem(s) in {where}:")
        for problem in report.problems:
            print(f"  {problem}")
    return EXIT_OK if report.ok else EXIT_REFUSED


def cmd_backup(arguments):
    destination = arguments.destination
    started = time.perf_counter()
    with open_existing(arguments) as ledger:
        # One read snapshot while writers go on; complete and synced, or nothing (Ledger.backup).
        size = ledger.backup(destination)
    fields = {"backup": os.path.abspath(destination), "bytes": size,
              "seconds": round(time.perf_counter() - started, 3)}
    if arguments.verify:
        with Ledger(destination, readonly=True) as copy:
            report = copy.verify()
        fields.update(verified=report.ok, entries=report.entries, problems=report.problems)
        if not report.ok:
            emit(arguments, fields)
            return EXIT_REFUSED
    emit(arguments, fields)
    return EXIT_OK
