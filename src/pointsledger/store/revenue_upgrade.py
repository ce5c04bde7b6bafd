"""The one-time upgrade of a store of format 1-4 to format 5 (lots by issue month, counters by version, §19).

A store written before §19 has buckets keyed by expiry instant alone and no
cohort counters. Its first writable open replays the journal once, in one
write transaction: each member's credits, debits and expiries in seq order
under the rules of §5 and §19 (debits take the soonest instant, the oldest
issue month first), which gives every bucket its issue month and every cohort
counter its value; the amounts come from the orders and refunds. The records
are written back as versions 3/4, and the counters' points by programme version
(cohort_values) from the entries' versions; the store becomes format 5. A store of
format 4 keeps its members and counters and only gains cohort_values. Pending lots
(§17) keep their points and get the issue month of the entry that created them;
the replay models them as the engines do (see _replay); where it still differs
from what a member holds, the months of its buckets are matched to what it
holds now (newest first), and `verify()` says if anything still disagrees.
"""

import types

import lmdb

from ..engine import _engine_py, engagement
from .. import calendar, limits
from . import format as fmt
from ..program import parse_document

NEVER = limits.never_expires_s


def needs_upgrade(store, txn):
    stored = txn.get(fmt.META_FORMAT, db=store.dbs[fmt.DB_META])
    version = fmt.U32.unpack(stored)[0] if stored else fmt.FORMAT_VERSION
    if version >= fmt.FORMAT_VERSION_VALUES:
        return False
    return txn.stat(store.dbs[fmt.DB_JOURNAL])["entries"] > 0


def upgrade(store):
    """Replay the journal into issue months and cohort counters (by version); write format 5.

    The map grows as for any write (the rewritten members are 4 bytes a bucket larger)."""
    with store.env.begin() as txn:
        if not needs_upgrade(store, txn):
            return False
    while True:
        try:
            return _upgrade_once(store)
        except lmdb.MapFullError:
            store._grow_map()


def _upgrade_once(store):
    with store.env.begin(write=True) as txn:
        if not needs_upgrade(store, txn):  # another process upgraded it meanwhile
            return False
        stored_format = fmt.U32.unpack(txn.get(fmt.META_FORMAT, db=store.dbs[fmt.DB_META]) or fmt.U32.pack(1))[0]
        members_db = store.dbs[fmt.DB_MEMBERS]
        # Read whole before rewriting: no put while a cursor walks the same sub-database.
        stored = [(bytes(key), _engine_py.MemberState.decode(value)) for key, value in txn.cursor(db=members_db)]
        lot_seqs = {lot[3] for _, state in stored if state.engagement is not None for lot in state.engagement.lots}
        members, cohorts, entry_times, values, takers = _replay(store, txn, _expiry_months(store, txn), lot_seqs)
        cohorts_db = store.dbs[fmt.DB_COHORTS]
        if stored_format < fmt.FORMAT_VERSION_LOTS:
            _amounts(store, txn, cohorts)
            for key, state in stored:
                replayed = members.get(key)
                state.buckets = _months_for(state.buckets, replayed.buckets if replayed else [])
                if state.engagement is not None:
                    for lot in state.engagement.lots:
                        lot[5] = calendar.issue_month_of(entry_times.get(lot[3], 0))
                txn.put(key, state.encode(), db=members_db)
            for (month, day), counters in sorted(cohorts.items()):
                if any(counters):
                    txn.put(fmt.COHORT_KEY.pack(month, day), fmt.COHORT.pack(*counters), db=cohorts_db)
        else:  # format 4: its counters stand; the taken-back points by version follow them
            kept = {fmt.COHORT_KEY.unpack(key): fmt.COHORT.unpack(value) for key, value in txn.cursor(db=cohorts_db)}
            _taken_back_as_stored(values, kept, takers)
        values_db = store.dbs[fmt.DB_COHORT_VALUES]
        for (month, day, version), (credited, taken_back) in sorted(values.items()):
            if credited or taken_back:
                txn.put(fmt.COHORT_VALUE_KEY.pack(month, day, version), fmt.COHORT_VALUE.pack(credited, taken_back),
                        db=values_db)
        txn.put(fmt.META_FORMAT, fmt.U32.pack(fmt.FORMAT_VERSION_VALUES), db=store.dbs[fmt.DB_META])
        stored = txn.get(fmt.META_COMMIT_COUNT, db=store.dbs[fmt.DB_META])
        count = fmt.U64.unpack(stored)[0] if stored else 0
        txn.put(fmt.META_COMMIT_COUNT, fmt.U64.pack(count + 1), db=store.dbs[fmt.DB_META])
    store.member_cache.clear()
    return True


def _taken_back_as_stored(values, kept, takers):
    """A format-4 store's taken-back counters are right; the replay gives their versions. Where the
    replay's sum differs (a model without pending lots), the stored sum goes to the version the
    replay took most under, else to that of the day's last clawback or negative adjustment."""
    replayed = {}
    for (month, day, version), (_, taken_back) in values.items():
        if taken_back:
            replayed.setdefault((month, day), {})[version] = taken_back
    for (month, day), counters in kept.items():
        stored = counters[fmt.COHORT_TAKEN_BACK]
        split = replayed.get((month, day), {})
        if sum(split.values()) == stored:
            continue
        for version in split:
            values[(month, day, version)][1] = 0
        if stored:
            version = max(split, key=lambda each: (split[each], each)) if split else takers.get(day, 0)
            values.setdefault((month, day, version), [0, 0])[1] = stored
    for (month, day) in replayed.keys() - kept.keys():
        for version in replayed[(month, day)]:
            values[(month, day, version)][1] = 0


def _expiry_months(store, txn):
    """Programme version -> (expiry_months, pending_days)."""
    months = {}
    for key, value in txn.cursor(db=store.dbs[fmt.DB_PROGRAMS]):
        version = fmt.U32.unpack(key)[0]
        document = parse_document(bytes(value[fmt.PROGRAM_HEAD.size:]).decode())
        months[version] = (document.get("expiry_months", 0), document.get("pending_days", 0))
    return months


def _replay(store, txn, expiry_months, lot_seqs):
    """Each member's buckets with months, the cohort counters, the times of the entries in lot_seqs,
    the counters' points by version ((month, day, version) -> [credited, taken back]) and the
    version of each day's last clawback or negative adjustment.

    Pending lots (§17) are modelled as the engines keep them (engagement.py): a purchase's
    points, and the bonuses paid with it, go to the order's lot when its version has
    pending_days; an operation releases the member's due lots after expiring its due points;
    a refund takes its own order's pending lot first."""
    members, cohorts, entry_times, values, takers = {}, {}, {}, {}, {}
    version = 0
    order_key = None  # the latest purchase's: a BONUS entry joins its lot
    refund_orders = {bytes(key): fmt.decode_tail(fmt.REFUND_HEAD, value)[1]
                     for key, value in txn.cursor(db=store.dbs[fmt.DB_REFUNDS])}

    def count(month, time_s, column, points):
        key = (month, calendar.day_of(time_s))
        counters = cohorts.setdefault(key, [0] * len(fmt.COHORT_FIELDS))
        counters[column] += points
        if column in (fmt.COHORT_CREDITED, fmt.COHORT_TAKEN_BACK):
            by_version = values.setdefault(key + (version,), [0, 0])
            by_version[0 if column == fmt.COHORT_CREDITED else 1] += points

    for key, value in txn.cursor(db=store.dbs[fmt.DB_JOURNAL]):
        seq = fmt.U64.unpack(key)[0]
        kind, points, _, time_s, version, _, member_key, ref_key = fmt.decode_entry(value)
        if seq in lot_seqs:
            entry_times[seq] = time_s
        state = members.get(member_key)
        if state is None:
            state = members[member_key] = _engine_py.MemberState(0)
            state.engagement = types.SimpleNamespace(lots=[])
        taken = {}
        if kind == fmt.KIND_EXPIRE:
            engagement.expire_due(state, time_s, {}, taken)
            _count_all(count, taken, time_s, fmt.COHORT_EXPIRED)
            continue
        engagement.release_due(state, time_s, {})
        if kind in (fmt.KIND_EARN, fmt.KIND_BONUS) or (kind == fmt.KIND_ADJUST and points > 0):
            months, pending_days = expiry_months.get(version, (0, 0))
            instant = calendar.expiry_instant(time_s, months) if months else NEVER
            month = calendar.issue_month_of(time_s)
            if kind == fmt.KIND_EARN:
                order_key = bytes(ref_key)
            if kind != fmt.KIND_ADJUST and pending_days:
                paid = engagement.credit_pending(state, points, time_s + pending_days * calendar.SECONDS_PER_DAY,
                                                 instant, seq, order_key, {}, month)
            else:
                paid = state.credit(points, instant, {}, month)
            count(month, time_s, fmt.COHORT_CREDITED, points)
            if paid:
                count(month, time_s, fmt.COHORT_TAKEN_BACK, paid)
        elif kind == fmt.KIND_REDEEM:
            state.debit(-points, {}, taken)
            _count_all(count, taken, time_s, fmt.COHORT_REDEEMED)
        elif kind == fmt.KIND_CLAWBACK:
            state.debt += engagement.claw_back(state, bytes(refund_orders.get(bytes(ref_key), b"")), -points, {},
                                               taken)
            _count_all(count, taken, time_s, fmt.COHORT_TAKEN_BACK)
            takers[calendar.day_of(time_s)] = version
        elif kind == fmt.KIND_ADJUST:
            state.debit(-points, {}, taken)
            _count_all(count, taken, time_s, fmt.COHORT_TAKEN_BACK)
            takers[calendar.day_of(time_s)] = version
    return members, cohorts, entry_times, values, takers


def _count_all(count, taken, time_s, column):
    for month, points in taken.items():
        if points:
            count(month, time_s, column, points)


def _months_for(stored, replayed):
    """The stored buckets with issue months: the replay's, matched newest first per instant."""
    by_instant = {}
    for instant, points, month in replayed:
        by_instant.setdefault(instant, []).append([month, points])
    result = []
    for instant, points, _ in stored:
        months = sorted(by_instant.get(instant, []), reverse=True)  # debits took the oldest first
        left = points
        parts = []
        for month, available in months:
            if not left:
                break
            used = min(left, available)
            parts.append([instant, used, month])
            left -= used
        if left:  # more than the replay holds at this instant (pending lots): the newest month known
            month = months[0][0] if months else (parts[-1][2] if parts else 0)
            parts.append([instant, left, month])
        merged = {}
        for _, used, month in parts:
            merged[month] = merged.get(month, 0) + used
        result.extend([instant, merged[month], month] for month in sorted(merged))
    return result


def _amounts(store, txn, cohorts):
    """A_c: each order's amount on its own day, each refund's (negative) on the refund's day."""
    order_times = {}
    for key, value in txn.cursor(db=store.dbs[fmt.DB_ORDERS]):
        amount, time_s, *_ = fmt.decode_order(value)
        order_times[bytes(key)] = time_s
        counters = cohorts.setdefault((calendar.issue_month_of(time_s), calendar.day_of(time_s)),
                                      [0] * len(fmt.COHORT_FIELDS))
        counters[fmt.COHORT_AMOUNT] += amount
    for _, value in txn.cursor(db=store.dbs[fmt.DB_REFUNDS]):
        (amount, time_s, _), order_key, _ = fmt.decode_tail(fmt.REFUND_HEAD, value)
        month = calendar.issue_month_of(order_times[order_key])
        counters = cohorts.setdefault((month, calendar.day_of(time_s)), [0] * len(fmt.COHORT_FIELDS))
        counters[fmt.COHORT_AMOUNT] -= amount
