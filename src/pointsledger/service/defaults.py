"""Limits and defaults of the gRPC service, units last (the ledger's own are in limits.py).

One module so that the writer, the servicer and the server share them without
importing each other.
"""

from .. import limits
group_items_max_default = 1024  # unary writes sharing one commit
# Under concurrent unary writes the writer lets a group fill for up to this long while the
# queue still grows, one step at a time (group_commit.GroupCommitWriter._wait_for_company).
group_wait_s_default = 0.004
group_wait_step_s = 0.001
# Purchases of queued stream batches sharing one commit. Bounded because the engine holds
# the GIL while it applies them, and unary calls and reads wait for the loop meanwhile.
batch_merge_items_max_default = 25_000
stream_batch_items_max_default = 100_000  # purchases in one IngestPurchases batch
message_bytes_max_default = 16 << 20  # a 100,000-item batch is about 5 MiB
stream_batches_in_flight_max = 4  # batches of one stream read ahead of their answers
journal_chunk_entries = 1_000  # entries per ReadJournal message
journal_follow_poll_s = 1.0  # the journal tail re-reads this often even without a commit (other writers)
# The shared journal tail publishes at most this often: followers get new entries within it,
# and each publication costs one send per follower, however many commits it holds.
journal_follow_publish_interval_s = 0.2
journal_follow_message_entries_max = 10_000  # entries in one message to a follower (~1 MB)
history_limit_default = 100
balances_max = 10_000  # member ids in one GetBalances call
read_threads_default = 4
# The writer thread gives up the GIL inside LMDB calls many times per batch, and each time
# waits up to the switch interval to get it back from a busy event loop (a convoy: with
# CPython's default 5 ms, a stream's commits slowed 3-40x under concurrent calls here).
# `serve` shortens the interval for its process; 1 ms measured best (0.1 ms costs more).
gil_switch_interval_s = 0.001
shutdown_grace_s_default = 30.0
# At shutdown the server stops accepting connections only after this long without a new call
# (each one refused with UNAVAILABLE meanwhile): grpc cancels calls it received but had not
# yet handed to a handler, and CANCELLED would leave their callers not knowing (see drain).
# 50 ms was too short on a loaded 2-core machine: a call can wait longer than that in grpc
# core before its handler starts (56 of 64 writers saw CANCELLED once), so half a second.
shutdown_quiet_s = 0.5
malformed_log_interval_s = 10.0  # one "malformed request" log line per this interval at most

assert stream_batch_items_max_default <= limits.batch_items_max
assert batch_merge_items_max_default <= limits.batch_items_max
assert journal_chunk_entries <= limits.journal_limit_max
