"""ingest: files of purchases into the ledger, embedded or through a server."""

import importlib.resources
import os

from .common import EXIT_OK, EXIT_REJECTED_ROWS, INGEST_DELAY_ENVIRONMENT, Interrupted, open_ledger, SAMPLES, Usage
from .output import plural, print_json


def cmd_ingest(arguments):
    from .. import importer

    path, file_format = ingest_input(arguments)
    source = importer.open_source(path, file_format)
    delay_s = float(os.environ.get(INGEST_DELAY_ENVIRONMENT, "0") or 0)
    options = importer.Options(
        batch_rows=arguments.batch_size, rejects_path=arguments.rejects, sort=arguments.sort,
        sort_run_rows=arguments.sort_run_rows, scratch_directory=arguments.scratch_dir,
        progress="none" if arguments.quiet else arguments.progress,
        progress_interval_s=arguments.progress_interval, delay_s=delay_s,
    )
    if arguments.server:
        summary = ingest_through_server(arguments, source, options)
    else:
        with open_ledger(arguments, sync=False) as ledger:
            sink = importer.EmbeddedSink(ledger)
            options.resume_path = resume_path(arguments, path, sink.target, ledger.path)
            summary = run_ingest(importer.Ingest(source, sink, options))
    report_ingest(arguments, summary)
    return EXIT_OK if summary.rejected == 0 else EXIT_REJECTED_ROWS


def run_ingest(ingest):
    """ingest.run(); on Ctrl-C, say how far it got (what is committed stays committed)."""
    try:
        return ingest.run()
    except KeyboardInterrupt:
        raise Interrupted(ingest.stopped_at()) from None


def ingest_input(arguments):
    if arguments.sample and arguments.file:
        raise Usage("give FILE or --sample, not both")
    if arguments.sample:
        resource = importlib.resources.files("pointsledger") / "data" / SAMPLES[arguments.sample]
        return str(resource), arguments.sample
    if not arguments.file:
        raise Usage("ingest needs FILE (or --sample)")
    if not os.path.exists(arguments.file):
        raise Usage(f"{arguments.file}: no such file")
    if os.path.isdir(arguments.file):
        raise Usage(f"{arguments.file}: a directory, not a file of purchases")
    return arguments.file, arguments.format


def resume_path(arguments, path, target, data_path=None):
    from .. import importer

    if arguments.no_resume:
        return None
    if arguments.resume_file:
        return arguments.resume_file
    return importer.default_resume_path(path, target, data_path)


def ingest_through_server(arguments, source, options):
    from .. import importer
    from ..client import LedgerClient

    client = LedgerClient(arguments.server, token=read_token(arguments), tls_ca=arguments.tls_ca)
    try:
        sink = importer.ServerSink(client, arguments.server, arguments.window)
        options.resume_path = resume_path(arguments, source.path, sink.target)
        return run_ingest(importer.Ingest(source, sink, options))
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


def read_token(arguments):
    if arguments.token_file:
        with open(arguments.token_file, encoding="utf-8") as handle:
            return handle.read().strip()
    return arguments.token or os.environ.get("POINTSLEDGER_TOKEN") or None


def report_ingest(arguments, summary):
    if arguments.json:
        print_json(summary.as_dict())
        return
    text = (f"{os.path.basename(summary.file)}: {plural(summary.rows, 'row')}: {summary.applied:,} applied, "
            f"{summary.duplicates:,} duplicates, {summary.rejected:,} rejected, {summary.points:,} points; "
            f"{plural(summary.rows_this_run, 'row')} in {summary.seconds:,.1f} s "
            f"({summary.rows_per_s:,.0f} rows/s)")
    if summary.resumed_from_line:
        text += f"; resumed at line {summary.resumed_from_line:,}"
    elif summary.resumed_after_rows:
        text += f"; resumed after {plural(summary.resumed_after_rows, 'row')}"
    print(text)
    if summary.out_of_order:
        print(out_of_order_note(summary))
    if summary.rejects_file:
        print(f"rejected rows (with line numbers and reasons): {summary.rejects_file}")


def out_of_order_note(summary):
    counted = (f"{plural(summary.out_of_order, 'row')} out of time order (earlier than the row before, "
               "or than an earlier row of the same member)")
    if summary.sorted:
        return f"{counted} in the file; applied in time order (--sort)"
    return f"{counted}: tiers and expiry followed the file's order; --sort applies the rows in time order"
