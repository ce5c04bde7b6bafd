"""verify(): every invariant of §7, the buckets and the counters, with where it fails.

One pass over the journal and one over the members, in a read transaction, so
it sees one committed state and can run while the ledger is being written.
"""

from . import calendar, limits, store_format as fmt
from .results import VerifyReport

PROBLEMS_MAX = 100  # past this, the report says how many more were found


class _Problems(list):
    def __init__(self):
        super().__init__()
        self.more = 0

    def add(self, text):
        if len(self) < PROBLEMS_MAX:
            self.append(text)
        else:
            self.more += 1


KIND_COUNTER = {
    fmt.KIND_EARN: fmt.COUNTER_EARNED,
    fmt.KIND_CLAWBACK: fmt.COUNTER_CLAWED_BACK,
    fmt.KIND_REDEEM: fmt.COUNTER_REDEEMED,
    fmt.KIND_EXPIRE: fmt.COUNTER_EXPIRED,
}


def verify(store, txn):
    problems = _Problems()
    dbs = store.dbs
    sums, previous_of, counts, kind_sums = {}, {}, {}, {}
    totals = [0] * len(fmt.COUNTER_FIELDS)
    days = {}
    bonus_days = {}
    expected_seq = 1
    entries = 0
    for key, value in txn.cursor(db=dbs[fmt.DB_JOURNAL]):
        seq = fmt.U64.unpack(key)[0]
        if seq != expected_seq:
            problems.add(f"journal: seq {seq} follows {expected_seq - 1} (gap or disorder)")
        expected_seq = seq + 1
        entries += 1
        try:
            kind, points, balance, time_s, _, previous_seq, member_key, _ = fmt.decode_entry(value)
        except (ValueError, Exception) as error:
            problems.add(f"journal seq {seq}: undecodable entry ({error})")
            continue
        running = sums.get(member_key, 0) + points
        sums[member_key] = running
        if running != balance:
            problems.add(f"journal seq {seq}: balance {balance} but the member's entries sum to {running}")
        if previous_of.get(member_key, 0) != previous_seq:
            problems.add(
                f"journal seq {seq}: links to {previous_seq}, the member's previous entry is "
                f"{previous_of.get(member_key, 0)}"
            )
        previous_of[member_key] = seq
        counts[member_key] = counts.get(member_key, 0) + 1
        per_kind = kind_sums.setdefault(member_key, {})
        per_kind[kind] = per_kind.get(kind, 0) + points
        if kind == fmt.KIND_BONUS:
            day = calendar.day_of(time_s)
            bonus_days[day] = bonus_days.get(day, 0) + points
        elif kind not in fmt.KIND_NAMES:
            problems.add(f"journal seq {seq}: unknown kind {kind}")
        counter, delta = _counter_of(kind, points)
        if counter is not None:
            totals[counter] += delta
            day = days.setdefault(calendar.day_of(time_s), [0] * len(fmt.COUNTER_FIELDS))
            day[counter] += delta
            if kind == fmt.KIND_EARN:
                totals[fmt.COUNTER_PURCHASES] += 1
                day[fmt.COUNTER_PURCHASES] += 1
    members = _verify_members(store, txn, problems, sums, previous_of, kind_sums)
    _verify_counters(store, txn, problems, totals, days, members)
    _verify_bonus_counters(store, txn, problems, bonus_days)
    _verify_referrals(store, txn, problems)
    if problems.more:
        problems.append(f"... and {problems.more} more problems")
    return VerifyReport(list(problems), entries, members)


def _counter_of(kind, points):
    if kind == fmt.KIND_ADJUST:
        return (fmt.COUNTER_ADJUSTED_POSITIVE, points) if points > 0 else (fmt.COUNTER_ADJUSTED_NEGATIVE, -points)
    if kind in KIND_COUNTER:
        return KIND_COUNTER[kind], abs(points)
    return None, 0


def _verify_members(store, txn, problems, sums, last_of, kind_sums):
    decode = store.engine.MemberState.decode
    expiry_expected = {}
    members = 0
    seen = set()
    for key, value in txn.cursor(db=store.dbs[fmt.DB_MEMBERS]):
        member_key = bytes(key)
        where = f"member {member_key.decode('utf-8', 'replace')!r}"
        members += 1
        seen.add(member_key)
        try:
            state = decode(value)
        except ValueError as error:
            problems.add(f"{where}: undecodable record ({error})")
            continue
        if state.balance != sums.get(member_key, 0):
            problems.add(f"{where}: balance {state.balance} but its entries sum to {sums.get(member_key, 0)}")
        if state.last_seq != last_of.get(member_key, 0):
            problems.add(f"{where}: last entry {state.last_seq}, the journal says {last_of.get(member_key, 0)}")
        lots = state.engagement.lots if state.engagement is not None else []
        bucket_sum = sum(points for _, points in state.buckets) + sum(lot[2] for lot in lots)
        if bucket_sum - state.debt != state.balance:
            problems.add(
                f"{where}: buckets and pending lots {bucket_sum} minus debt {state.debt} is not the balance {state.balance}"
            )
        if any(lot[2] <= 0 for lot in lots):
            problems.add(f"{where}: a pending lot that is not positive: {lots}")
        for lot in lots:
            expiry_expected[lot[1]] = expiry_expected.get(lot[1], 0) + lot[2]
        if state.debt < 0 or (state.debt and state.buckets):
            problems.add(f"{where}: debt {state.debt} while holding {bucket_sum} points in buckets")
        instants = [instant for instant, _ in state.buckets]
        if instants != sorted(set(instants)) or any(points <= 0 for _, points in state.buckets):
            problems.add(f"{where}: buckets not sorted, merged and positive: {state.buckets}")
        for instant, points in state.buckets:
            expiry_expected[instant] = expiry_expected.get(instant, 0) + points
        per_kind = kind_sums.get(member_key, {})
        lifetime = (
            ("earned", state.earned, per_kind.get(fmt.KIND_EARN, 0)),
            ("redeemed", state.redeemed, -per_kind.get(fmt.KIND_REDEEM, 0)),
            ("expired", state.expired, -per_kind.get(fmt.KIND_EXPIRE, 0)),
            ("clawed back", state.clawed_back, -per_kind.get(fmt.KIND_CLAWBACK, 0)),
            ("adjusted", state.adjusted, per_kind.get(fmt.KIND_ADJUST, 0)),
            ("bonus", state.engagement.bonus if state.engagement is not None else 0,
             per_kind.get(fmt.KIND_BONUS, 0)),
        )
        for name, stored, journal in lifetime:
            if stored != journal:
                problems.add(f"{where}: lifetime {name} {stored}, the journal says {journal}")
    for member_key in set(sums) - seen:
        problems.add(f"member {member_key.decode('utf-8', 'replace')!r}: has entries but no record")
    total_balances = sum(sums.get(key, 0) for key in seen)
    if total_balances != sum(sums.values()):
        problems.add(f"ledger: balances sum to {total_balances}, entries to {sum(sums.values())}")
    stored_expiry = {
        fmt.I64.unpack(key)[0]: fmt.I64.unpack(value)[0]
        for key, value in txn.cursor(db=store.dbs[fmt.DB_EXPIRY])
    }
    expiry_expected = {instant: points for instant, points in expiry_expected.items() if points}
    for instant in sorted(set(stored_expiry) | set(expiry_expected)):
        if stored_expiry.get(instant, 0) != expiry_expected.get(instant, 0):
            label = "never" if instant == limits.never_expires_s else calendar.format_utc(instant)
            problems.add(
                f"expiry totals at {label}: {stored_expiry.get(instant, 0)}, the buckets hold "
                f"{expiry_expected.get(instant, 0)}"
            )
    return members


def _verify_counters(store, txn, problems, totals, days, members):
    meta = store.dbs[fmt.DB_META]
    stored = txn.get(fmt.META_TOTALS, db=meta)
    stored_totals = list(fmt.COUNTERS.unpack(stored)) if stored else [0] * len(fmt.COUNTER_FIELDS)
    for index, name in enumerate(fmt.COUNTER_FIELDS):
        if stored_totals[index] != totals[index]:
            problems.add(f"totals: {name} {stored_totals[index]}, the journal says {totals[index]}")
    stored_days = {
        fmt.I32.unpack(key)[0]: list(fmt.COUNTERS.unpack(value))
        for key, value in txn.cursor(db=store.dbs[fmt.DB_DAYS])
    }
    zero = [0] * len(fmt.COUNTER_FIELDS)
    for day in sorted(set(stored_days) | set(days)):
        if stored_days.get(day, zero) != days.get(day, zero):
            problems.add(
                f"day counters of {calendar.format_utc(day * calendar.SECONDS_PER_DAY)[:10]}: "
                f"{stored_days.get(day, zero)}, the journal says {days.get(day, zero)}"
            )
    stored_count = txn.get(fmt.META_MEMBER_COUNT, db=meta)
    count = fmt.U64.unpack(stored_count)[0] if stored_count else 0
    if count != members:
        problems.add(f"meta: member count {count}, the store holds {members}")


def _verify_bonus_counters(store, txn, problems, bonus_days):
    """The bonus line (§17): its total and day counters against the BONUS entries."""
    stored = txn.get(fmt.META_BONUS_TOTAL, db=store.dbs[fmt.DB_META])
    total = fmt.I64.unpack(stored)[0] if stored else 0
    if total != sum(bonus_days.values()):
        problems.add(f"totals: bonus {total}, the journal says {sum(bonus_days.values())}")
    db = store.dbs.get(fmt.DB_BONUS_DAYS)
    stored_days = {} if db is None else {
        fmt.I32.unpack(key)[0]: fmt.I64.unpack(value)[0] for key, value in txn.cursor(db=db)
    }
    for day in sorted(set(stored_days) | set(bonus_days)):
        if stored_days.get(day, 0) != bonus_days.get(day, 0):
            problems.add(
                f"bonus counter of {calendar.format_utc(day * calendar.SECONDS_PER_DAY)[:10]}: "
                f"{stored_days.get(day, 0)}, the journal says {bonus_days.get(day, 0)}"
            )


def _verify_referrals(store, txn, problems):
    """Every referral is named by its referee's index entry, and every index entry by its referral."""
    referrals_db, referees_db = store.dbs.get(fmt.DB_REFERRALS), store.dbs.get(fmt.DB_REFEREES)
    if referrals_db is None or referees_db is None:
        return
    referees = {bytes(key): bytes(value) for key, value in txn.cursor(db=referees_db)}
    named = set()
    for key, value in txn.cursor(db=referrals_db):
        referral_key = bytes(key)
        where = f"referral {referral_key.decode('utf-8', 'replace')!r}"
        try:
            _, settled_seq, referrer_key, referee_key, order_key = fmt.decode_referral(value)
        except (ValueError, Exception) as error:
            problems.add(f"{where}: undecodable record ({error})")
            continue
        if referees.get(referee_key) != referral_key:
            problems.add(f"{where}: its referee {referee_key.decode('utf-8', 'replace')!r} is not indexed to it")
        named.add(referee_key)
        if bool(settled_seq) != bool(order_key):
            problems.add(f"{where}: settled by seq {settled_seq} with order {order_key!r}")
    for referee_key in set(referees) - named:
        problems.add(f"referees: {referee_key.decode('utf-8', 'replace')!r} names no referral")
