"""The server: build it (create_server), run it (LedgerServer, BackgroundServer), `pointsledger serve`."""

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
import threading
import time

import grpc
import lmdb
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .. import limits
from ..ledger import DEFAULT_PATH, open_with_example_program
from .auth import TokenStore
from .defaults import (
    batch_merge_items_max_default, gil_switch_interval_s, group_items_max_default, group_wait_s_default,
    message_bytes_max_default,
    read_threads_default, shutdown_grace_s_default, stream_batch_items_max_default,
)
from .group_commit import GroupCommitWriter
from .logs import configure_logging, log_event
from .messages import SERVICE_NAME, add_servicer
from .metrics import Metrics
from .reflection import enable_server_reflection
from .security import TlsConfig, check_bind_policy, is_loopback
from .servicer import LedgerServicer


class LedgerServer:
    """A started or startable server: the grpc.aio server, the writer, the read pool."""

    def __init__(self, ledger, grpc_server, servicer, writer, metrics, health_servicer, read_pool,
                 port, metrics_port=None, address=""):
        self.ledger = ledger
        self.grpc_server = grpc_server
        self.servicer = servicer
        self.writer = writer
        self.metrics = metrics
        self.health = health_servicer
        self.read_pool = read_pool
        self.port = port
        self.metrics_port = metrics_port
        self.address = address
        self._stopped = None

    async def start(self):
        self.writer.start(asyncio.get_running_loop())
        await self.grpc_server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        log_event(logging.INFO, "serving", address=self.address, port=self.port, engine=self.ledger.engine_name,
             metrics_port=self.metrics_port, last_seq=self.writer.last_seq)

    async def stop(self, grace_s=shutdown_grace_s_default):
        """Refuse new calls, let the calls in flight finish (their writes commit), drain the writer.

        The ledger itself stays open: whoever opened it closes it.
        """
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop(grace_s))
        await asyncio.shield(self._stopped)

    async def _stop(self, grace_s):
        started = time.perf_counter()
        log_event(logging.INFO, "stopping", grace_s=grace_s)
        await self.health.enter_graceful_shutdown()
        self.servicer.begin_shutdown()
        # Every call in flight is answered before grpc stops (see LedgerServicer.drain); what
        # arrives from now on is refused with UNAVAILABLE, and once grpc stops, not accepted.
        drained = await self.servicer.drain(grace_s)
        if not drained:
            log_event(logging.WARNING, "grace period over", grace_s=grace_s,
                      calls_in_flight=self.servicer.calls_in_flight)
        await self.grpc_server.stop(max(0.0, grace_s - (time.perf_counter() - started)))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.writer.stop)
        self.read_pool.shutdown(wait=True)
        self.metrics.close()
        log_event(logging.INFO, "stopped", seconds=round(time.perf_counter() - started, 3),
             last_seq=self.writer.last_seq, commits=self.writer.commits)

    async def wait_for_termination(self):
        await self.grpc_server.wait_for_termination()


def _category_count(ledger):
    """The ledger's category count for a scrape; NaN once the store is closed."""
    try:
        return ledger.category_count()
    except lmdb.Error:
        return float("nan")


def create_server(ledger, address="127.0.0.1:0", tokens=None, tls=None, *, insecure=False,
                  metrics_port=None, group_items_max=group_items_max_default,
                  batch_merge_items_max=batch_merge_items_max_default,
                  stream_batch_items_max=stream_batch_items_max_default,
                  message_bytes_max=message_bytes_max_default, read_threads=read_threads_default,
                  group_wait_s=group_wait_s_default):
    """Build a server over `ledger` bound to `address`; return (server, port). Call start() on it.

    Call it from the event loop that will run the server (grpc.aio binds to it).
    `tokens`: a TokenStore, a {token: scopes} mapping or a token file path; None
    turns authentication off, which is only allowed on a loopback address unless
    `insecure=True`. `tls`: a TlsConfig (mutual TLS when it has client_ca_file).
    """
    if isinstance(tokens, (str, os.PathLike)):
        tokens = TokenStore.from_file(tokens)
    elif isinstance(tokens, dict):
        tokens = TokenStore.from_mapping(tokens)
    check_bind_policy(address, tokens, insecure)
    if not 1 <= stream_batch_items_max <= limits.batch_items_max:
        raise ValueError(f"stream_batch_items_max must be 1 to {limits.batch_items_max}")
    metrics = Metrics()
    metrics.categories.set_function(lambda: _category_count(ledger))
    read_pool = concurrent.futures.ThreadPoolExecutor(read_threads, thread_name_prefix="pointsledger-read")
    grpc_server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", message_bytes_max),
        ("grpc.max_send_message_length", message_bytes_max),
        ("grpc.so_reuseport", 0),
    ])
    servicer = None

    def on_commit():
        servicer.notify_commit()

    writer = GroupCommitWriter(ledger, metrics, group_items_max, batch_merge_items_max, on_commit, group_wait_s)
    servicer = LedgerServicer(ledger, writer, metrics, tokens=tokens, read_pool=read_pool,
                              stream_batch_items_max=stream_batch_items_max)
    metrics.watch(servicer)
    add_servicer(servicer, grpc_server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME), grpc_server)
    if tls is not None:
        port = grpc_server.add_secure_port(address, tls.credentials())
    else:
        if tokens is not None and not is_loopback(address):
            log_event(logging.WARNING, "tokens over plaintext", address=address,
                 hint="bearer tokens are readable on the network without TLS")
        port = grpc_server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    bound_metrics_port = None
    if metrics_port is not None:
        host = address.rsplit(":", 1)[0].strip("[]") if not address.startswith("unix") else "127.0.0.1"
        bound_metrics_port = metrics.serve(metrics_port, "127.0.0.1" if host == "localhost" else host)
    server = LedgerServer(ledger, grpc_server, servicer, writer, metrics, health_servicer, read_pool,
                          port, bound_metrics_port, address)
    return server, port


class BackgroundServer:
    """A server on its own event loop in a thread (tests, benchmarks, embedding).

        with BackgroundServer(ledger) as server:
            client = LedgerClient(f"127.0.0.1:{server.port}")
    """

    def __init__(self, ledger, address="127.0.0.1:0", **options):
        self._ready = threading.Event()
        self._error = None
        self.server = None
        self.port = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ledger, address, options),
                                        name="pointsledger-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self, ledger, address, options):
        asyncio.set_event_loop(self.loop)
        try:
            self.server, self.port = create_server(ledger, address, **options)
            self.loop.run_until_complete(self.server.start())
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def call(self, coroutine, timeout=60):
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace_s=5.0):
        if self.loop.is_closed() or not self._thread.is_alive():
            return
        self.call(self.server.stop(grace_s), timeout=grace_s + 60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


# --- `pointsledger serve` -------------------------------------------------------------------


def serve(data_path=DEFAULT_PATH, address="127.0.0.1:50051", tokens_file=None, tls_cert=None, tls_key=None,
          tls_client_ca=None, insecure=False, metrics_port=None, sync=True,
          switch_interval_s=gil_switch_interval_s, **options):
    """Serve the ledger at data_path until SIGTERM or SIGINT; then drain, commit and close.

    What `pointsledger serve` runs. The ledger gets the example programme if it
    has none (as the CLI does). Logs are JSON lines on stderr; the "serving" line
    carries the bound port (useful with port 0). `options` go to create_server.
    Returns 0 after a clean stop; a bad configuration raises before anything opens.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")
    if tls_client_ca is not None and tls_cert is None:
        raise ValueError("mutual TLS (--tls-client-ca) needs the server's certificate and key")
    tls = TlsConfig(tls_cert, tls_key, tls_client_ca) if tls_cert is not None else None
    tokens = TokenStore.from_file(tokens_file) if tokens_file is not None else None
    check_bind_policy(address, tokens, insecure, warn=False)  # fail before opening; create_server warns
    if not logging.getLogger("pointsledger").handlers:
        configure_logging()
    sys.setswitchinterval(switch_interval_s)
    ledger = open_with_example_program(data_path, sync=sync)
    try:
        asyncio.run(_serve_until_signal(ledger, address, tokens, tls, insecure, metrics_port, options))
    finally:
        ledger.close()
        log_event(logging.INFO, "store closed", data=os.path.abspath(data_path))
    return 0


async def _serve_until_signal(ledger, address, tokens, tls, insecure, metrics_port, options):
    server, _ = create_server(ledger, address, tokens, tls, insecure=insecure,
                              metrics_port=metrics_port, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await server.start()
    await stop.wait()
    await server.stop()


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(prog="python -m pointsledger.service",
                                               description="Serve a ledger over gRPC.")
    parser.add_argument("--data", default=os.environ.get("POINTSLEDGER_DATA", DEFAULT_PATH),
                        help="ledger directory (default ./pointsledger-data or $POINTSLEDGER_DATA)")
    parser.add_argument("--address", default="127.0.0.1:50051", help="host:port to bind (port 0 picks one)")
    parser.add_argument("--tokens-file", help="bearer tokens and their scopes (see pointsledger.auth)")
    parser.add_argument("--tls-cert", help="server certificate (PEM)")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="CA of client certificates: turns on mutual TLS")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback address without tokens")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--no-sync", dest="sync", action="store_false",
                        help="do not fsync each commit (loses the durability of §9; benchmarks only)")
    parser.add_argument("--group-items-max", type=int, default=group_items_max_default,
                        help="unary writes sharing one commit at most")
    parser.add_argument("--group-wait-ms", type=float, default=group_wait_s_default * 1000,
                        help="under concurrent unary writes, let a group fill for up to this long while "
                             "more arrive (0: commit at once)")
    parser.add_argument("--batch-merge-items-max", type=int, default=batch_merge_items_max_default,
                        help="purchases of queued stream batches sharing one commit at most (1: no merging)")
    parser.add_argument("--stream-batch-items-max", type=int, default=stream_batch_items_max_default,
                        help="purchases per IngestPurchases batch at most")
    parser.add_argument("--message-bytes-max", type=int, default=message_bytes_max_default,
                        help="largest request message accepted")
    parser.add_argument("--switch-interval-ms", type=float, default=gil_switch_interval_s * 1000,
                        help=argparse.SUPPRESS)  # for measuring the GIL convoy (see gil_switch_interval_s)
    return parser


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return serve(arguments.data, arguments.address, arguments.tokens_file, arguments.tls_cert,
                     arguments.tls_key, arguments.tls_client_ca, arguments.insecure, arguments.metrics_port,
                     arguments.sync, group_items_max=arguments.group_items_max,
                     batch_merge_items_max=arguments.batch_merge_items_max,
                     group_wait_s=arguments.group_wait_ms / 1000,
                     stream_batch_items_max=arguments.stream_batch_items_max,
                     message_bytes_max=arguments.message_bytes_max,
                     switch_interval_s=arguments.switch_interval_ms / 1000)
    except (ValueError, OSError) as error:  # configuration: say what is wrong, no traceback
        parser.exit(2, f"pointsledger serve: {error}\n")
