"""What all IngestPurchases streams may hold at once (issue 8, item 5; limits in limits.py).

Six streams of 15 MB batches took the server to 1.1 GB: each read ahead of the
writer without regard to the others. The budget is shared by every stream of a
server: `limits.ingest_streams_max` streams, and `limits.ingest_bytes_in_flight_max`
request bytes in batches read and not yet answered. A stream starts reading its
next batch only if the bytes in flight plus the reads under way (each counted at
the size of the latest batch read, a guess) leave room for one more; else it
waits for `released()`, and HTTP/2 flow control holds its client back meanwhile.
Waiting rather than refusing: a refused stream would have to resend what it had
sent. A new stream that arrives at a full budget is refused.

The limits are read at each call (tests lower them).
"""

import asyncio

import grpc

from .. import limits
from .status import Refusal


class IngestBudget:
    def __init__(self, first_guess_bytes):
        self.streams = 0
        self.bytes_in_flight = 0  # request bytes of batches read and not yet answered
        self.reads = 0  # batch reads under way
        self._guess_bytes = first_guess_bytes  # the size of the latest batch read
        self._waiters = []  # futures of streams waiting for room

    def open_stream(self):
        """Count a new stream in, or raise the RESOURCE_EXHAUSTED that refuses it."""
        if self.streams >= limits.ingest_streams_max:
            raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"at most {limits.ingest_streams_max} IngestPurchases streams at once; "
                          "retry later or send on a stream already open",
                          "TOO_MANY_STREAMS", {"limit": limits.ingest_streams_max})
        if self.bytes_in_flight >= limits.ingest_bytes_in_flight_max:
            raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self.bytes_in_flight} bytes of batches are waiting for the writer "
                          f"(at most {limits.ingest_bytes_in_flight_max}); retry later",
                          "TOO_MANY_BYTES_IN_FLIGHT",
                          {"limit": limits.ingest_bytes_in_flight_max, "in_flight": self.bytes_in_flight})
        self.streams += 1

    def close_stream(self):
        self.streams -= 1

    def may_read(self):
        """Whether one more read fits. When nothing is in flight or under way, one read may
        always start, so that a stream is never stuck behind a guess."""
        committed = self.bytes_in_flight + self.reads * self._guess_bytes
        return committed == 0 or committed + self._guess_bytes <= limits.ingest_bytes_in_flight_max

    def read_started(self):
        self.reads += 1

    def read_ended(self, size=None):
        """A read finished (size: the request bytes of the batch it brought, now in flight)
        or was cancelled (None)."""
        self.reads -= 1
        if size is not None:
            self.bytes_in_flight += size
            self._guess_bytes = max(size, 1)
        self._wake()

    def answered(self, size):
        """A batch of `size` request bytes was answered (or dropped): its bytes are free."""
        self.bytes_in_flight -= size
        self._wake()

    def waiter(self):
        """A future resolved the next time room may have been made."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def _wake(self):
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
