"""The gRPC service (SPEC §9, §10): a grpc.aio server over one Ledger.

    python -m pointsledger.service --data ./pointsledger-data --address 127.0.0.1:50051

Parts (one module each):
- `server.py`: create_server, LedgerServer, BackgroundServer, `serve` and its flags.
- `servicer.py`, `group_commit.py`, `messages.py` (proto <-> ledger, request
  decoding), `status.py` (google.rpc.Status on every error), `ingest_budget.py`
  (what all streams may hold), `journal_tail.py` (the tail followers share),
  `reflection.py` (v1 and v1alpha), `security.py` (TLS, bind policy), `auth.py`
  (tokens), `metrics.py`, `logs.py`, `defaults.py` (the service's tuning),
  `client.py` (LedgerClient) and `headers.py` (the call metadata both the
  client and the server read).

Shape:
- `LedgerServicer` subclasses the generated base and stays thin: proto in,
  Ledger call, proto out. The `rpc` decorator is the one place where a call is
  admitted (shutting down → UNAVAILABLE, token and scope → UNAUTHENTICATED /
  PERMISSION_DENIED), where a LedgerError becomes its status code (the field
  named for INVALID_ARGUMENT), and where calls are counted and timed.
- `GroupCommitWriter` is the one thread that writes. Unary writes queue up; the
  writer takes everything queued (up to `group_items_max`) and applies it with
  `Ledger.apply_group` in ONE synced commit, then answers each caller with its
  own outcome: a caller is answered only after its commit is durable. Stream
  batches go through the same queue; batches queued back to back share one
  commit the same way (see GroupCommitWriter). Programme changes and expiry
  runs are commits of their own. So LMDB has one writer.
- Reads (balance, history, journal, liability, programme) are LMDB read
  transactions: they never wait for the writer. Point reads (a balance, a
  programme) take tens of microseconds and run on the event loop, where a
  thread hop would cost more than the read; reads that scan (history pages,
  journal chunks, many balances, the liability report) run in a thread pool so
  that one large read does not hold up the calls behind it. (All of it shares
  one GIL with the writer: the pool bounds stalls, it adds no parallelism.)
- Shutdown (SIGTERM/SIGINT, or `LedgerServer.stop`): new calls get
  UNAVAILABLE, ingest streams stop reading and answer what they sent to the
  writer, followers end with UNAVAILABLE; when every call has been answered
  (LedgerServicer.drain) grpc stops, the writer drains its queue and commits,
  then the store is closed.
"""

from .defaults import (
    balances_max, batch_merge_items_max_default, gil_switch_interval_s, group_items_max_default,
    group_wait_s_default, history_limit_default, journal_chunk_entries, journal_follow_poll_s, message_bytes_max_default,
    read_threads_default, shutdown_grace_s_default, stream_batch_items_max_default,
    stream_batches_in_flight_max,
)
from .group_commit import DeadlineExpired, GroupCommitWriter
from .headers import FIELD_METADATA_KEY
from .logs import JsonLogFormatter, configure_logging, log
from .messages import SERVICE_NAME
from .security import TlsConfig, check_bind_policy, is_loopback
from .server import BackgroundServer, LedgerServer, build_parser, create_server, main, serve
from .servicer import LedgerServicer, rpc

__all__ = [
    "BackgroundServer", "DeadlineExpired", "FIELD_METADATA_KEY", "GroupCommitWriter", "JsonLogFormatter",
    "LedgerServer", "LedgerServicer", "SERVICE_NAME", "TlsConfig", "build_parser", "check_bind_policy",
    "configure_logging", "create_server", "is_loopback", "log", "main", "rpc", "serve",
    # the service's limits and defaults (defaults.py)
    "balances_max", "batch_merge_items_max_default", "gil_switch_interval_s", "group_items_max_default",
    "group_wait_s_default", "history_limit_default", "journal_chunk_entries", "journal_follow_poll_s", "message_bytes_max_default",
    "read_threads_default", "shutdown_grace_s_default", "stream_batch_items_max_default",
    "stream_batches_in_flight_max",
]
