"""publish, consume, split: the scale-out commands (SPEC §18, docs/scale-out.md)."""

import asyncio
import os
import signal

from .arguments import integer_argument, positive_seconds
from .common import EXIT_OK, EXIT_REJECTED_ROWS, Failed, INGEST_BATCH_ROWS_DEFAULT, open_ledger, Usage
from .ingest import ingest_input, run_ingest
from .output import plural, print_json

SHARDS_MAX = 1024


def add_shard_parsers(commands, add_command, parents):
    publish = add_command(
        commands, "publish", cmd_publish,
        "publish a CSV or Parquet file of purchases (as `ingest` reads it) to a NATS JetStream stream, "
        "in columnar batches, each to its members' shard subject <prefix>.<shard>; exit status 3 when rows "
        "were rejected",
        ["pointsledger publish purchases.parquet --nats nats://127.0.0.1:4222 --stream ORDERS --shards 3"], parents)
    publish.add_argument("file", metavar="FILE")
    add_broker_arguments(publish)
    publish.add_argument("--shards", type=integer_argument(1, SHARDS_MAX), required=True, metavar="S")
    publish.add_argument("--format", choices=["csv", "parquet"], help="default: from the file name")
    publish.add_argument("--batch-size", type=integer_argument(1, 1_000_000), default=INGEST_BATCH_ROWS_DEFAULT,
                         metavar="ROWS", help=f"rows read at a time (default {INGEST_BATCH_ROWS_DEFAULT:,})")
    publish.add_argument("--message-rows", type=integer_argument(1, 20_000), default=4_096, metavar="ROWS",
                         help="purchases per message at most (default 4,096)")
    publish.add_argument("--rejects", metavar="FILE", help="reject file (default FILE.rejects.csv)")
    publish.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto")
    publish.add_argument("--progress-interval", type=positive_seconds, default=5.0, metavar="SECONDS")
    publish.add_argument("--quiet", action="store_true", help="no progress output")

    consume = add_command(
        commands, "consume", cmd_consume,
        "apply shard K's subject of a NATS JetStream stream to the ledger at --data, exactly once: each "
        "fetched batch in one transaction with the last stream sequence, then acked; SIGTERM stops after "
        "the batch in hand",
        ["pointsledger consume --nats nats://127.0.0.1:4222 --stream ORDERS --shard 0 --shards 3 --data shard-0"],
        parents)
    add_broker_arguments(consume)
    consume.add_argument("--shard", type=integer_argument(0, SHARDS_MAX - 1), required=True, metavar="K")
    consume.add_argument("--shards", type=integer_argument(1, SHARDS_MAX), required=True, metavar="S")
    consume.add_argument("--fetch", type=integer_argument(1, 10_000), default=64, metavar="MESSAGES",
                         help="messages per fetch, applied in one transaction (default 64)")
    consume.add_argument("--metrics-port", type=integer_argument(1, 65_535), metavar="PORT")
    consume.add_argument("--progress-interval", type=positive_seconds, default=5.0, metavar="SECONDS",
                         help="seconds between progress lines on stderr (default 5)")
    consume.add_argument("--until-caught-up", action="store_true",
                         help="stop when the subject has nothing more (a backfill; default: run until SIGTERM)")

    split = add_command(
        commands, "split", cmd_split,
        "split a CSV or Parquet file of purchases into one file per shard (streaming), each for its "
        "shard's `ingest`; exit status 3 when rows were rejected",
        ["pointsledger split --shards 3 purchases-2025.parquet"], parents)
    split.add_argument("file", metavar="FILE")
    split.add_argument("--shards", type=integer_argument(1, SHARDS_MAX), required=True, metavar="S")
    split.add_argument("--format", choices=["csv", "parquet"], help="default: from the file name")
    split.add_argument("--output-dir", metavar="DIR", help="default: beside FILE")
    split.add_argument("--rejects", metavar="FILE", help="reject file (default FILE.rejects.csv)")


def add_broker_arguments(parser):
    parser.add_argument("--nats", required=True, metavar="URL", help="NATS server, e.g. nats://127.0.0.1:4222")
    parser.add_argument("--stream", required=True, metavar="NAME", help="the JetStream stream")
    parser.add_argument("--prefix", metavar="PREFIX", help="subjects are PREFIX.<shard> (default: the stream name)")


def check_broker_arguments(arguments):
    from ..shards.broker import check_stream_name

    try:
        check_stream_name(arguments.stream)
    except ValueError as error:
        raise Usage(str(error)) from None
    if arguments.prefix is not None and not arguments.prefix.strip(".") or " " in (arguments.prefix or ""):
        raise Usage(f"--prefix {arguments.prefix!r}: a subject prefix like orders or acme.orders")


# --- publish ---------------------------------------------------------------------------------


def cmd_publish(arguments):
    from .. import importer
    from ..shards.publish_sink import PublishSink

    check_broker_arguments(arguments)
    arguments.sample = None
    path, file_format = ingest_input(arguments)
    source = importer.open_source(path, file_format)
    options = importer.Options(batch_rows=arguments.batch_size, rejects_path=arguments.rejects,
                               progress="none" if arguments.quiet else arguments.progress,
                               progress_interval_s=arguments.progress_interval)
    try:
        with PublishSink(arguments.nats, arguments.stream, arguments.shards, source,
                         prefix=arguments.prefix, message_rows=arguments.message_rows) as sink:
            summary = run_ingest(importer.Ingest(source, sink, options))
            messages, duplicates = sink.producer.published, sink.producer.duplicates
    except broker_errors() as error:
        raise Failed(broker_failure(error)) from None
    published = summary.applied + summary.duplicates
    if arguments.json:
        print_json({"file": summary.file, "rows": summary.rows, "published": published, "rejected": summary.rejected,
                    "messages": messages, "messages_already_in_stream": duplicates, "shards": arguments.shards,
                    "stream": arguments.stream, "seconds": summary.seconds, "rows_per_s": summary.rows_per_s,
                    "rejects_file": summary.rejects_file})
    else:
        print(f"{os.path.basename(summary.file)}: {plural(summary.rows, 'row')}: {published:,} published to "
              f"{arguments.shards} shards of stream {arguments.stream} in {plural(messages, 'message')} "
              f"({duplicates:,} already in the stream), {summary.rejected:,} rejected; {summary.seconds:,.1f} s "
              f"({summary.rows_per_s:,.0f} rows/s)")
        if summary.rejects_file:
            print(f"rejected rows (with line numbers and reasons): {summary.rejects_file}")
    return EXIT_OK if summary.rejected == 0 else EXIT_REJECTED_ROWS


def broker_errors():
    """What the broker can answer with: our BrokerError (its message is the line) and nats-py's
    own errors (a refusal the commands did not expect). Either is one line, exit 1."""
    import nats

    from ..shards.broker import BrokerError

    return BrokerError, nats.errors.Error


def broker_failure(error):
    from ..shards.broker import BrokerError

    if isinstance(error, BrokerError):
        return str(error)
    return f"NATS: {type(error).__name__}" + (f": {error}" if str(error) else "")


# --- consume ---------------------------------------------------------------------------------


def cmd_consume(arguments):
    import sys

    from ..shards.consumer import Consumer

    check_broker_arguments(arguments)
    if arguments.shard >= arguments.shards:
        raise Usage(f"--shard {arguments.shard}: must be below --shards {arguments.shards} (0 to "
                    f"{arguments.shards - 1})")

    def log(text):
        print(text, file=sys.stderr, flush=True)

    with open_ledger(arguments) as ledger:
        consumer = Consumer(ledger, arguments.nats, arguments.stream, arguments.shard, arguments.shards,
                            prefix=arguments.prefix, fetch_messages=arguments.fetch, log=log,
                            progress_interval_s=arguments.progress_interval)
        consumer.metrics.categories.set_function(ledger.category_count)
        if arguments.metrics_port:
            port = consumer.metrics.serve(arguments.metrics_port)
            log(f"shard {arguments.shard}: metrics on http://127.0.0.1:{port}/metrics")
        try:
            progress = asyncio.run(_consume(consumer, arguments.until_caught_up))
        except broker_errors() as error:
            raise Failed(broker_failure(error)) from None
        finally:
            consumer.metrics.close()
    if arguments.json:
        print_json({"shard": arguments.shard, "shards": arguments.shards, "stream_seq": progress.position,
                    "lag": progress.lag, "messages": progress.messages, "applied": progress.applied,
                    "duplicates": progress.duplicates, "refused": progress.refused, "skipped": progress.skipped,
                    "applying_seconds": round(progress.applying_seconds, 3)})
    return EXIT_OK


async def _consume(consumer, until_caught_up):
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, consumer.stop)
    return await consumer.run(until_caught_up=until_caught_up)


# --- split -----------------------------------------------------------------------------------


def cmd_split(arguments):
    from ..shards.split import split

    arguments.sample = None
    path, file_format = ingest_input(arguments)
    if arguments.output_dir and not os.path.isdir(arguments.output_dir):
        raise Usage(f"--output-dir {arguments.output_dir}: no such directory")
    summary = split(path, arguments.shards, file_format=file_format, directory=arguments.output_dir,
                    rejects_path=arguments.rejects)
    if arguments.json:
        print_json(summary.as_dict())
    else:
        for shard, (file, rows) in enumerate(zip(summary.files, summary.rows)):
            print(f"shard {shard}: {file}: {plural(rows, 'row')}")
        if summary.rejects_file:
            print(f"{plural(summary.rejected, 'row')} rejected (no readable member id): {summary.rejects_file}")
    return EXIT_OK if summary.rejected == 0 else EXIT_REJECTED_ROWS


# --- --shards on balance, report and verify ------------------------------------------------------


def add_shards_option(parser):
    parser.add_argument("--shards", dest="shard_list", type=shard_list_argument, metavar="LIST",
                        help="every shard, in shard order, comma-separated: store directories, or servers "
                             "host:port; a member goes to its shard, reports and verify cover all")


def shard_list_argument(text):
    import argparse

    specs = [spec.strip() for spec in text.split(",")]
    if not all(specs) or len(specs) > SHARDS_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of 1 to {SHARDS_MAX} stores or servers")
    return specs


def open_reader(arguments):
    """The ledger at --data, read-only, or with --shards a Router over every shard's store or server."""
    from .common import _require_store, open_existing

    specs = getattr(arguments, "shard_list", None)
    if not specs:
        return open_existing(arguments)
    from ..shards.routing import Router, is_server

    for spec in specs:
        if not is_server(spec):
            _require_store(spec)
    client_options = None
    if any(is_server(spec) for spec in specs):
        from .ingest import read_token

        # Commands without --token take $POINTSLEDGER_TOKEN (verify over servers needs an admin token).
        client_options = {"token": read_token(arguments) if hasattr(arguments, "token")
                          else os.environ.get("POINTSLEDGER_TOKEN") or None}
    return Router.open(specs, client_options=client_options)
