"""The newest journal entries, read once and shared by every ReadJournal follower (issue 8, item 6).

Before, each follower read the journal itself after every commit: 300 followers
made 300 reads, 300 protobuf builds and 300 serializations per commit, and a
single writer's p50 latency went from 1.5 ms to 52 ms. Now one task reads what
was committed since its last look, at most every `publish_interval_s`, builds
one ReadJournalResponse per chunk and serializes it once; a follower that has
caught up sends those same bytes (grpc sends bytes as they are, see
messages.add_servicer), several chunks joined into one message (serialized
protobuf messages concatenate into one whose repeated field holds all their
entries). A follower that is behind, or slow to take its answers, reads the
store itself until it reaches a chunk boundary of the tail, then joins it.

The task runs only while someone follows: without followers a commit costs
nothing here. It wakes on each commit of this server and every
`poll_s` besides (another process may write the same store).
"""

import asyncio
import bisect
import collections
import itertools
import logging

from .. import limits
from ..v1 import ledger_pb2 as pb
from .logs import log_event
from .messages import entry_message


class JournalTail:
    def __init__(self, ledger, read, chunk_entries, publish_interval_s, poll_s,
                 entries_max=limits.journal_tail_entries_max):
        self.ledger = ledger
        self._read = read  # async (function, *arguments) -> its result, off the event loop
        self.chunk_entries = chunk_entries
        self.publish_interval_s = publish_interval_s
        self.poll_s = poll_s
        self.entries_max = entries_max
        self._chunks = collections.deque()  # (first_seq, last_seq, serialized ReadJournalResponse)
        self._firsts = []  # first_seq of each chunk, for bisect (rebuilt when chunks are dropped)
        self._entries = 0
        self.last_seq = 0  # the last seq published (valid while followers > 0)
        self.changed = asyncio.Event()  # replaced by a new one at each publication
        self.followers = 0
        self._committed = asyncio.Event()
        self._task = None
        self.publications = 0

    # --- followers ----------------------------------------------------------------------

    def join(self):
        self.followers += 1
        if self._task is None or self._task.done():
            self._chunks.clear()
            self._firsts = []
            self._entries = 0
            self.last_seq = self.ledger.last_seq()
            self._task = asyncio.ensure_future(self._run())

    def leave(self):
        self.followers -= 1
        if self.followers == 0 and self._task is not None:
            self._task.cancel()
            self._task = None
            self._chunks.clear()
            self._firsts = []
            self._entries = 0

    def take(self, from_seq, entries_max):
        """(joined bytes, entry count, last seq) of the chunks from from_seq, which must start
        one, up to entries_max entries; None when no chunk starts at from_seq or the first
        is larger than entries_max."""
        index = bisect.bisect_left(self._firsts, from_seq)
        if index == len(self._firsts) or self._firsts[index] != from_seq:
            return None
        parts, count, last = [], 0, None
        for first, last_of_chunk, payload in itertools.islice(self._chunks, index, None):
            size = last_of_chunk - first + 1
            if count + size > entries_max:
                break
            parts.append(payload)
            count += size
            last = last_of_chunk
        if not parts:
            return None
        return b"".join(parts), count, last

    def own_read_end(self, from_seq):
        """The last seq a follower at from_seq should read itself: up to the end of the chunk
        holding from_seq (so that it then starts at a chunk), else None (no limit)."""
        index = bisect.bisect_right(self._firsts, from_seq) - 1
        if index < 0:
            return self._firsts[0] - 1 if self._firsts else None
        first, last, _ = self._chunks[index]
        return last if first < from_seq <= last else None

    # --- the reader ---------------------------------------------------------------------

    def notify_commit(self):
        self._committed.set()

    def wake_all(self):
        """Wake every waiting follower (shutdown: they look at `stopping`)."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def _run(self):
        while True:
            try:
                await asyncio.wait_for(self._committed.wait(), self.poll_s)
            except asyncio.TimeoutError:
                pass  # poll: another process may have written
            self._committed.clear()
            try:
                await self._publish()
            except Exception as error:  # a bug or a store error: keep the followers waiting, try again
                log_event(logging.ERROR, "journal tail error", error=repr(error))
            await asyncio.sleep(self.publish_interval_s)  # at most one publication per interval

    async def _publish(self):
        published = False
        while True:
            entries = await self._read(self.ledger.journal, self.last_seq + 1, self.chunk_entries)
            if not entries:
                break
            message = pb.ReadJournalResponse(entries=[entry_message(entry) for entry in entries])
            first, last = entries[0].seq, entries[-1].seq
            self._chunks.append((first, last, message.SerializeToString()))
            self._firsts.append(first)
            self._entries += last - first + 1
            self.last_seq = last
            published = True
            if len(entries) < self.chunk_entries:
                break
        if not published:
            return
        dropped = False
        while self._entries > self.entries_max and len(self._chunks) > 1:
            first, last, _ = self._chunks.popleft()
            self._entries -= last - first + 1
            dropped = True
        if dropped:
            self._firsts = [chunk[0] for chunk in self._chunks]
        self.publications += 1
        self.wake_all()

