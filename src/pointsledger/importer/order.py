"""Out-of-order rows: counted so that a file applied in file order does not pass silently.

Points depend on the order purchases are applied (tiers, caps, expiry), and
the importer applies a file in its own order unless --sort is given. A row is
OUT OF ORDER when its time is earlier than
  - the time of the row before it (the previous row whose time converted), or
  - the latest time of an earlier row of the same member.
Only rows whose time converted to an instant of the event-time range and
that have a member id take part (ids compared as the file has them); such a
row counts even when the ledger rejects it for another field, since it is a
row of the file. A file sorted by time has none; every row a sort would move back
past a row of its own member is counted (the first rule alone misses the member
who is late by more than one row, the second alone misses a file sorted by
member).

The latest time of every member seen is held in memory (an Arrow table, about
one row per member). A run resumed after an interruption starts without it, so
it counts by the second rule only among the rows it reads itself.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import limits

NO_TIME = np.iinfo(np.int64).min
# Per-member running maxima over one batch in one numpy pass: member m's times
# are offset by m * GROUP_SPAN, so a running maximum never crosses members.
GROUP_SPAN = 1 << 33
# Rows kept before they are folded into one per member: a sorted file needs no look-ups, so it
# folds only to bound memory; a look-up folds first at a smaller size, since it scans them all.
KEPT_ROWS_MAX = 1 << 22
LOOKUP_FOLD_ROWS = 1 << 16

assert limits.time_s_max_exclusive - limits.time_s_min + 1 < GROUP_SPAN


class OrderWatch:
    """Counts out-of-order rows batch by batch, in file order.

    The rows seen are kept as Arrow tables of (member, time), folded into one
    row per member (its latest time) by Arrow's group-by now and then, so the
    bookkeeping runs in C without the GIL and costs next to nothing per batch.
    A row can be late by either rule only if its time is below the latest time
    of every row before it: a sorted file has none, and then nothing is looked
    up; otherwise only the members of such rows are looked up.
    """

    def __init__(self):
        self.seen = []  # Arrow tables (member, time_s): the rows seen, partly folded per member
        self.seen_rows = 0
        self.folded_rows = 0  # rows of the last fold (one per member then)
        self.previous = NO_TIME  # time of the last row seen
        self.high = NO_TIME  # the latest time of every row seen

    def count(self, member_ids, times_s):
        """Out-of-order rows among these (the next rows of the file); remembers them for the next call.

        member_ids: the member column as read (an Arrow array: binary, string or dictionary) or a list;
        times_s: the converted times (an int64 array, or a list holding cells that did not convert).
        """
        members, times = _comparable(member_ids, times_s)
        if not len(times):
            return 0
        highest = np.maximum.accumulate(times)
        earlier_high = np.empty(len(times), dtype=np.int64)
        earlier_high[0] = self.high
        earlier_high[1:] = np.maximum(highest[:-1], self.high)
        candidates = times < earlier_high
        late = self._count_late(members, times, candidates) if candidates.any() else 0
        self._remember(members, times)
        self.previous = int(times[-1])
        self.high = max(self.high, int(highest[-1]))
        return late

    def _count_late(self, members, times, candidates):
        encoded = pc.dictionary_encode(members)
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        carried = self._latest_of(encoded.dictionary, pc.unique(members.filter(pa.array(candidates))))

        order = np.argsort(codes, kind="stable")  # by member, file order within each
        grouped, grouped_times = codes[order], times[order]
        keyed = grouped * GROUP_SPAN + (grouped_times - limits.time_s_min + 1)
        running = np.maximum.accumulate(keyed)
        same_member = np.zeros(len(times), dtype=bool)
        same_member[1:] = grouped[1:] == grouped[:-1]
        before = np.full(len(times), NO_TIME, dtype=np.int64)
        before[1:] = running[:-1] - grouped[1:] * GROUP_SPAN - 1 + limits.time_s_min
        before = np.where(same_member, before, NO_TIME)
        member_late = np.empty(len(times), dtype=bool)
        member_late[order] = grouped_times < np.maximum(before, carried[grouped])

        previous = np.empty(len(times), dtype=np.int64)
        previous[0] = self.previous
        previous[1:] = times[:-1]
        return int(np.count_nonzero(member_late | (times < previous)))

    def _latest_of(self, names, wanted):
        """Per name of `names`: the latest time of the earlier rows of that member if it is `wanted`, else NO_TIME."""
        carried = np.full(len(names), NO_TIME, dtype=np.int64)
        self._fold_beyond(LOOKUP_FOLD_ROWS)  # a look-up scans every row kept: keep them few
        parts = [table.filter(pc.is_in(table["member"], value_set=wanted)) for table in self.seen]
        parts = [part for part in parts if part.num_rows]
        if not parts:
            return carried
        known = pa.concat_tables(parts).group_by("member").aggregate([("time_s", "max")])
        where = pc.index_in(names, value_set=known["member"])
        found = where.is_valid().to_numpy(zero_copy_only=False)
        positions = where.fill_null(0).to_numpy(zero_copy_only=False)
        carried[found] = known["time_s_max"].to_numpy()[positions[found]]
        return carried

    def _remember(self, members, times):
        self.seen.append(pa.table({"member": members, "time_s": pa.array(times)}))
        self.seen_rows += len(times)
        self._fold_beyond(KEPT_ROWS_MAX)

    def _fold_beyond(self, rows_min):
        """Fold the rows kept into one per member once they are twice the last fold and at least rows_min.

        Doubling makes each row folded O(1) times on average.
        """
        if len(self.seen) > 1 and self.seen_rows >= 2 * max(self.folded_rows, rows_min):
            folded = pa.concat_tables(self.seen).group_by("member").aggregate([("time_s", "max")])
            self.seen = [pa.table({"member": folded["member"], "time_s": folded["time_s_max"]})]
            self.seen_rows = self.folded_rows = folded.num_rows


def _comparable(member_ids, times_s):
    """(member ids as an Arrow array, int64 times) of the rows with a member id and a time in range."""
    members = member_ids if isinstance(member_ids, pa.Array) else pa.array(
        [member if isinstance(member, (str, bytes)) else None for member in member_ids],
        pa.binary() if any(isinstance(member, bytes) for member in member_ids) else pa.string())
    if pa.types.is_dictionary(members.type):
        members = members.dictionary_decode()
    if not pa.types.is_binary(members.type):
        members = members.cast(pa.binary())  # one type for every batch (string to binary copies nothing)
    if isinstance(times_s, np.ndarray):
        times = times_s.astype(np.int64, copy=False)
        keep = (times >= limits.time_s_min) & (times < limits.time_s_max_exclusive)
    else:
        usable = [isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                  and limits.time_s_min <= value < limits.time_s_max_exclusive for value in times_s]
        times = np.array([int(value) if ok else 0 for value, ok in zip(times_s, usable)], dtype=np.int64)
        keep = np.array(usable, dtype=bool)
    if members.null_count:
        keep &= members.is_valid().to_numpy(zero_copy_only=False)
    if keep.all():
        return members, times
    return members.filter(pa.array(keep)), times[keep]


def member_column(batch):
    """The member_id column of a piece's record batch, as read."""
    return batch.column(batch.schema.get_field_index("member_id"))
