"""Sinks: where batches go (the embedded Ledger, or a running server)."""

import collections
import os

import numpy as np

from .. import limits
from ..errors import LedgerError, NotFound
from .common import COLUMNS, PROBE_HISTORY_LIMIT, TEXT_COLUMNS


def _outcomes(result):
    """[(status, seq, points, balance, error)] of a batch result, in one pass over it."""
    raw = getattr(result, "raw", None)
    if raw is not None:
        # A list: the Cython engine's PurchaseResults makes each tuple as it is read, and the
        # importer reads them more than once.
        return list(raw)
    return [(item.status, item.seq, item.points, item.balance, item.error) for item in result]


class EmbeddedSink:
    """Straight into the store: relaxed sync, one sync at the end (SPEC §9)."""

    def __init__(self, ledger):
        self.ledger = ledger
        self.target = f"embedded:{os.path.abspath(ledger.path)}"

    def apply(self, batches):
        # Ledger.purchase_batches: batch k+1 applied while batch k is written (two cores);
        # a result comes once its batch has committed, as from purchases().
        sent = collections.deque()

        def columns():
            for batch in batches:
                sent.append(batch)
                yield batch.columns

        for result in self.ledger.purchase_batches(columns()):
            outcomes = _outcomes(result)
            # Keep peak RSS flat over a long backfill (see Store.release_mapped_pages).
            self.ledger.release_mapped_pages()
            yield sent.popleft(), outcomes

    def holds(self, member_id, order_id):
        # Order ids are unique: a stored order is the committed row itself.
        return self.ledger.has_order(order_id)

    def finish(self):
        self.ledger.sync()


def _history_holds(history, member_id, order_id):
    try:
        page = history(member_id, limit=PROBE_HISTORY_LIMIT)
    except NotFound:
        return False
    return any(entry.kind == "EARN" and entry.ref_id == order_id for entry in page.entries)


class ServerSink:
    """Through a running server's IngestPurchases stream, `window` batches in flight.

    A batch travels in typed columns (repeated string / int64 fields), so a
    cell that is not a str or an int64 (text in an amount, a missing or non
    UTF-8 id) cannot be sent: that row is refused here, by the same checks in
    the same order as the engine (so with the same reason), and the rest of
    the batch is sent without it.
    """

    def __init__(self, client, address, window):
        self.client = client
        self.window = window
        self.target = f"server:{address}"

    def apply(self, batches):
        sent = collections.deque()

        def columns():
            for batch in batches:
                keep, local = _split_unsendable(batch.columns)
                sent.append((batch, keep, local))
                yield _sendable_columns(batch.columns, keep)

        for result in self.client.ingest(columns(), window=self.window):
            batch, keep, local = sent.popleft()
            outcomes = _outcomes(result)
            if keep is not None:
                merged = list(local)
                for index, outcome in zip(keep, outcomes):
                    merged[index] = outcome
                outcomes = merged
            yield batch, outcomes

    def holds(self, member_id, order_id):
        """Whether the server holds the order; None when this client may not read (a write-only token)."""
        history = getattr(self.client, "history", None)
        if history is None:
            return None
        try:
            return _history_holds(history, member_id, order_id)
        except LedgerError as error:
            if error.code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
                return None  # cannot tell: the resume point is taken on trust
            raise

    def finish(self):
        pass


def _sendable(value, is_text):
    if is_text:
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool) and limits.INT64_MIN <= value <= limits.INT64_MAX


def _split_unsendable(columns):
    """(indices to send or None for all, [outcome or None per row]) of a batch's columns."""
    from ..validation import validate_amount, validate_id, validate_time

    bad = set()
    for position, column in enumerate(columns):
        if isinstance(column, np.ndarray):
            continue
        is_text = COLUMNS[position] in TEXT_COLUMNS
        bad.update(index for index, value in enumerate(column) if not _sendable(value, is_text))
    if not bad:
        return None, None
    local = [None] * len(columns[0])
    for index in bad:
        order_id, member_id, amount_minor, category, time_s = (column[index] for column in columns)
        try:
            validate_id("order_id", order_id)
            validate_id("member_id", member_id)
            validate_amount("amount_minor", amount_minor)
            validate_id("category", category, limits.category_bytes_max)
            validate_time("time_s", time_s)
        except LedgerError as error:
            local[index] = (error.code, 0, 0, 0, error)
    keep = [index for index in range(len(local)) if index not in bad]
    return keep, local


def _sendable_columns(columns, keep):
    if keep is None:
        return columns
    taken = []
    for column in columns:
        if isinstance(column, np.ndarray):
            taken.append(column[keep])
        else:
            taken.append([column[index] for index in keep])
    return tuple(taken)
