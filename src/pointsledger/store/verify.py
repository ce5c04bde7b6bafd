"""verify(): every invariant of §7, the buckets, the counters and the id records, with where it fails.

One pass over the journal, one over the members and one over each record
sub-database, in a read transaction, so it sees one committed state and can
run while the ledger is being written. Each problem names the place (journal
seq, member, order, refund, redemption, adjustment, day, instant, category).
"""

from .. import calendar, limits
from . import format as fmt
from ..results import VerifyReport
from .revenue_upgrade import needs_upgrade

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

# The id record each kind of entry has (EXPIRE has none), and what it is called.
RECORD_OF_KIND = {
    fmt.KIND_EARN: (fmt.DB_ORDERS, "order"),
    fmt.KIND_CLAWBACK: (fmt.DB_REFUNDS, "refund"),
    fmt.KIND_REDEEM: (fmt.DB_REDEMPTIONS, "redemption"),
    fmt.KIND_ADJUST: (fmt.DB_ADJUSTMENTS, "adjustment"),
}

# The sign each kind's points must have (§6, §15: a clawback and an expiry may be 0 only
# where the SPEC says so: a CLAWBACK of 0 is written, an EXPIRE of 0 never is).
SIGN_OK = {
    fmt.KIND_EARN: lambda points: points >= 0,
    fmt.KIND_CLAWBACK: lambda points: points <= 0,
    fmt.KIND_REDEEM: lambda points: points < 0,
    fmt.KIND_ADJUST: lambda points: points != 0,
    fmt.KIND_EXPIRE: lambda points: points < 0,
    fmt.KIND_BONUS: lambda points: points > 0,  # a rule worth 0 writes no entry (§17)
}

# The kinds whose entry is written at the member's own event, which rolls its tier year (§4).
TIER_EVENT_KINDS = frozenset((fmt.KIND_EARN, fmt.KIND_CLAWBACK, fmt.KIND_REDEEM, fmt.KIND_ADJUST))


def _text(key):
    return repr(bytes(key).decode("utf-8", "replace"))


def _instant(time_s):
    return "never" if time_s == limits.never_expires_s else calendar.format_utc(time_s)


class _Journal:
    """What the journal pass learns: per member, per kind, per day."""

    def __init__(self):
        self.sums, self.last_of, self.kind_sums = {}, {}, {}
        self.totals = [0] * len(fmt.COUNTER_FIELDS)
        self.days = {}
        self.kind_counts = {}
        self.bonus_days = {}  # BONUS points per day (§17): their own counters, not a COUNTER_FIELDS column
        self.entries = 0
        self.positive_adjust_days = {}  # (§19) credits of a day: EARN + BONUS + positive ADJUST
        self.credits_by_version = {}  # (§19) (day, programme version) -> those credits
        # (§4) member -> the latest year of its own events (purchase, refund, redemption, adjustment):
        # each rolled the member's tier year to at least its year. Not BONUS (a referrer's bonus is
        # written at the referee's purchase) nor EXPIRE (written at the bucket's instant).
        self.event_year_of = {}


def verify(store, txn):
    problems = _Problems()
    journal = _scan_journal(store, txn, problems)
    members, held_by_month = _verify_members(store, txn, problems, journal)
    _verify_counters(store, txn, problems, journal, members)
    _verify_cohorts(store, txn, problems, journal, held_by_month)
    categories = _verify_categories(store, txn, problems)
    _verify_records(store, txn, problems, journal, categories)
    _verify_bonus_counters(store, txn, problems, journal.bonus_days)
    _verify_referrals(store, txn, problems)
    if problems.more:
        problems.append(f"... and {problems.more} more problems")
    return VerifyReport(list(problems), journal.entries, members)


def _program_starts(store, txn):
    return [fmt.PROGRAM_HEAD.unpack_from(value)[0] for _, value in txn.cursor(db=store.dbs[fmt.DB_PROGRAMS])]


def _scan_journal(store, txn, problems):
    journal = _Journal()
    starts = _program_starts(store, txn)
    expected_seq = 1
    for key, value in txn.cursor(db=store.dbs[fmt.DB_JOURNAL]):
        seq = fmt.U64.unpack(key)[0]
        if seq != expected_seq:
            problems.add(f"journal: seq {seq} follows {expected_seq - 1} (gap or disorder)")
        expected_seq = seq + 1
        journal.entries += 1
        try:
            kind, points, balance, time_s, version, previous_seq, member_key, _ = fmt.decode_entry(value)
        except Exception as error:  # struct.error or ValueError: either way, say where
            problems.add(f"journal seq {seq}: undecodable entry ({error})")
            continue
        if kind not in SIGN_OK:
            problems.add(f"journal seq {seq}: unknown kind {kind}")
        elif not SIGN_OK[kind](points):
            problems.add(f"journal seq {seq}: {fmt.KIND_NAMES[kind]} of {points} points has the wrong sign")
        # A version set later may start before this entry's time, so the entry's version
        # is not a function of its time; it must exist and have started by then (§15).
        if not 1 <= version <= len(starts) or (version > 1 and starts[version - 1] > time_s):
            problems.add(
                f"journal seq {seq}: programme version {version}, not one in force at "
                f"{calendar.format_utc(time_s)} ({len(starts)} versions stored)"
            )
        _add_entry(journal, problems, seq, kind, points, balance, time_s, previous_seq, member_key)
        if points > 0 and kind in (fmt.KIND_EARN, fmt.KIND_BONUS, fmt.KIND_ADJUST):
            key = (calendar.day_of(time_s), version)
            journal.credits_by_version[key] = journal.credits_by_version.get(key, 0) + points
        if kind == fmt.KIND_ADJUST and points > 0:
            day = calendar.day_of(time_s)
            journal.positive_adjust_days[day] = journal.positive_adjust_days.get(day, 0) + points
    return journal


def _add_entry(journal, problems, seq, kind, points, balance, time_s, previous_seq, member_key):
    running = journal.sums.get(member_key, 0) + points
    journal.sums[member_key] = running
    if running != balance:
        problems.add(f"journal seq {seq}: balance {balance} but the member's entries sum to {running}")
    if journal.last_of.get(member_key, 0) != previous_seq:
        problems.add(
            f"journal seq {seq}: links to {previous_seq}, the member's previous entry is "
            f"{journal.last_of.get(member_key, 0)}"
        )
    journal.last_of[member_key] = seq
    if kind in TIER_EVENT_KINDS:
        year = calendar.year_of(time_s)
        if year > journal.event_year_of.get(member_key, year - 1):
            journal.event_year_of[member_key] = year
    journal.kind_counts[kind] = journal.kind_counts.get(kind, 0) + 1
    per_kind = journal.kind_sums.setdefault(member_key, {})
    per_kind[kind] = per_kind.get(kind, 0) + points
    if kind == fmt.KIND_BONUS:
        day = calendar.day_of(time_s)
        journal.bonus_days[day] = journal.bonus_days.get(day, 0) + points
    counter, delta = _counter_of(kind, points)
    if counter is not None:
        journal.totals[counter] += delta
        day = journal.days.setdefault(calendar.day_of(time_s), [0] * len(fmt.COUNTER_FIELDS))
        day[counter] += delta
        if kind == fmt.KIND_EARN:
            journal.totals[fmt.COUNTER_PURCHASES] += 1
            day[fmt.COUNTER_PURCHASES] += 1


def _counter_of(kind, points):
    if kind == fmt.KIND_ADJUST:
        return (fmt.COUNTER_ADJUSTED_POSITIVE, points) if points > 0 else (fmt.COUNTER_ADJUSTED_NEGATIVE, -points)
    if kind in KIND_COUNTER:
        return KIND_COUNTER[kind], abs(points)
    return None, 0


# --- members, buckets, expiry totals -------------------------------------------------


def _verify_members(store, txn, problems, journal):
    decode = store.engine.MemberState.decode
    # A carried tier is a rank of some programme version's tiers (§4).
    tiers_max = max((len(compiled.tier_names) for compiled in store.programs), default=1)
    expiry_expected = {}
    held_by_month = {}  # issue month -> points in buckets and lots (§19)
    members = 0
    seen = set()
    for key, value in txn.cursor(db=store.dbs[fmt.DB_MEMBERS]):
        member_key = bytes(key)
        where = f"member {_text(member_key)}"
        members += 1
        seen.add(member_key)
        try:
            state = decode(value)
        except Exception as error:  # struct.error or ValueError
            problems.add(f"{where}: undecodable record ({error})")
            continue
        _verify_member(problems, where, state, journal, member_key, tiers_max)
        for instant, points, month in state.buckets:
            expiry_expected[instant] = expiry_expected.get(instant, 0) + points
            held_by_month[month] = held_by_month.get(month, 0) + points
        for lot in _lots(state):  # pending points count at their expiry instant too (§17)
            expiry_expected[lot[1]] = expiry_expected.get(lot[1], 0) + lot[2]
            held_by_month[lot[5]] = held_by_month.get(lot[5], 0) + lot[2]
        held_by_month[DEBT] = held_by_month.get(DEBT, 0) + state.debt
    for member_key in sorted(set(journal.sums) - seen):
        problems.add(f"member {_text(member_key)}: has entries but no record")
    # The sum of all balances equals the sum of all entries (§7) follows from the two
    # checks above: every member with entries has a record, each record's balance is
    # the sum of its own entries.
    _verify_expiry_totals(store, txn, problems, expiry_expected)
    return members, held_by_month


def _verify_member(problems, where, state, journal, member_key, tiers_max):
    entries_sum = journal.sums.get(member_key, 0)
    if state.balance != entries_sum:
        problems.add(f"{where}: balance {state.balance} but its entries sum to {entries_sum}")
    if state.last_seq != journal.last_of.get(member_key, 0):
        problems.add(f"{where}: last entry {state.last_seq}, the journal says {journal.last_of.get(member_key, 0)}")
    buckets = state.buckets
    lots = _lots(state)
    bucket_sum = sum(bucket[1] for bucket in buckets) + sum(lot[2] for lot in lots)
    if bucket_sum - state.debt != state.balance:
        held = "buckets and pending lots" if lots else "buckets"
        problems.add(f"{where}: {held} {bucket_sum} minus debt {state.debt} is not the balance {state.balance}")
    if any(lot[2] <= 0 for lot in lots):
        problems.add(f"{where}: a pending lot that is not positive: {lots}")
    # Debt is only what a clawback could not cover: never negative, never beside points (§15).
    if state.debt < 0 or (state.debt and buckets):
        problems.add(f"{where}: debt {state.debt} while holding {bucket_sum} points in buckets")
    keys = [(instant, month) for instant, _, month in buckets]  # (expiry instant, issue month), §19
    if keys != sorted(set(keys)) or any(points <= 0 for _, points, _ in buckets):
        listed = ", ".join(f"{_instant(instant)} issued {_month(month)}: {points}" for instant, points, month in buckets)
        problems.add(f"{where}: buckets not sorted, merged and positive: {listed}")
    _verify_tier_state(problems, where, state, journal.event_year_of.get(member_key), tiers_max)
    per_kind = journal.kind_sums.get(member_key, {})
    lifetime = (
        ("earned", state.earned, per_kind.get(fmt.KIND_EARN, 0)),
        ("redeemed", state.redeemed, -per_kind.get(fmt.KIND_REDEEM, 0)),
        ("expired", state.expired, -per_kind.get(fmt.KIND_EXPIRE, 0)),
        ("clawed back", state.clawed_back, -per_kind.get(fmt.KIND_CLAWBACK, 0)),
        ("adjusted", state.adjusted, per_kind.get(fmt.KIND_ADJUST, 0)),
        ("bonus", state.engagement.bonus if state.engagement is not None else 0, per_kind.get(fmt.KIND_BONUS, 0)),
    )
    for name, stored, from_journal in lifetime:
        if stored != from_journal:
            problems.add(f"{where}: lifetime {name} {stored}, the journal says {from_journal}")


def _verify_tier_state(problems, where, state, event_year, tiers_max):
    """§4's (Y, S, C): S is never negative, C is a tier rank, and Y is at least the year of the
    member's latest event (every event rolls Y forward to its own year; a late one leaves it)."""
    if state.spend_minor < 0:
        problems.add(f"{where}: tier-year spend {state.spend_minor} is negative")
    if not 0 <= state.carried_rank < tiers_max:
        problems.add(f"{where}: carried tier rank {state.carried_rank} is not a rank of the programme's "
                     f"tiers (0 to {tiers_max - 1})")
    if event_year is not None and state.tier_year < event_year:
        problems.add(f"{where}: tier year {state.tier_year}, but it has an event in {event_year}")


def _month(month):
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def _lots(state):
    return state.engagement.lots if state.engagement is not None else []


def _verify_expiry_totals(store, txn, problems, expiry_expected):
    """The per-instant counters: points of all buckets at each expiry instant."""
    stored_expiry = {
        fmt.I64.unpack(key)[0]: fmt.I64.unpack(value)[0]
        for key, value in txn.cursor(db=store.dbs[fmt.DB_EXPIRY])
    }
    expiry_expected = {instant: points for instant, points in expiry_expected.items() if points}
    for instant in sorted(set(stored_expiry) | set(expiry_expected)):
        if stored_expiry.get(instant, 0) != expiry_expected.get(instant, 0):
            problems.add(
                f"expiry totals at {_instant(instant)}: {stored_expiry.get(instant, 0)}, the buckets hold "
                f"{expiry_expected.get(instant, 0)}"
            )


# --- counters ---------------------------------------------------------------------------


def _differences(stored, expected):
    return ", ".join(
        f"{name} {stored[index]} (journal {expected[index]})"
        for index, name in enumerate(fmt.COUNTER_FIELDS) if stored[index] != expected[index]
    )


def _verify_counters(store, txn, problems, journal, members):
    meta = store.dbs[fmt.DB_META]
    stored = txn.get(fmt.META_TOTALS, db=meta)
    stored_totals = list(fmt.COUNTERS.unpack(stored)) if stored else [0] * len(fmt.COUNTER_FIELDS)
    for index, name in enumerate(fmt.COUNTER_FIELDS):
        if stored_totals[index] != journal.totals[index]:
            problems.add(f"totals: {name} {stored_totals[index]}, the journal says {journal.totals[index]}")
    stored_days = {
        fmt.I32.unpack(key)[0]: list(fmt.COUNTERS.unpack(value))
        for key, value in txn.cursor(db=store.dbs[fmt.DB_DAYS])
    }
    zero = [0] * len(fmt.COUNTER_FIELDS)
    for day in sorted(set(stored_days) | set(journal.days)):
        stored_day, expected_day = stored_days.get(day, zero), journal.days.get(day, zero)
        if stored_day != expected_day:
            label = calendar.format_utc(day * calendar.SECONDS_PER_DAY)[:10]
            problems.add(f"day counters of {label}: {_differences(stored_day, expected_day)}")
    stored_count = txn.get(fmt.META_MEMBER_COUNT, db=meta)
    count = fmt.U64.unpack(stored_count)[0] if stored_count else 0
    if count != members:
        problems.add(f"meta: member count {count}, the store holds {members}")


# --- the category dictionary ---------------------------------------------------------------


def _verify_categories(store, txn, problems):
    """The two directions of the dictionary are one bijection; return code -> name."""
    codes = {bytes(name): fmt.decode_category_code(code)
             for name, code in txn.cursor(db=store.dbs[fmt.DB_CATEGORIES])}
    names = {fmt.decode_category_code(code): bytes(name)
             for code, name in txn.cursor(db=store.dbs[fmt.DB_CATEGORY_NAMES])}
    for name, code in sorted(codes.items()):
        if names.get(code) != name:
            other = "missing" if code not in names else _text(names[code])
            problems.add(f"categories: {_text(name)} has code {code}, but code {code} names {other}")
    for code, name in sorted(names.items()):
        if codes.get(name) != code:
            other = "no code" if name not in codes else f"code {codes[name]}"
            problems.add(f"categories: code {code} names {_text(name)}, which has {other}")
    if sorted(names) != list(range(len(names))):
        problems.add(f"categories: codes {sorted(names)} are not 0 to {len(names) - 1}")
    return names


# --- orders, refunds, redemptions, adjustments --------------------------------------------


def _entry(txn, journal_db, seq):
    value = txn.get(fmt.seq_key(seq), db=journal_db)
    if value is None:
        return None
    try:
        return fmt.decode_entry(value)
    except Exception:  # reported by the journal pass
        return None


def _linked_entry(txn, journal_db, problems, where, seq, kind, ref_key):
    """The entry a record names, if it is of `kind` and refers back to the record."""
    entry = _entry(txn, journal_db, seq)
    if entry is None:
        problems.add(f"{where}: its entry {seq} is not in the journal")
        return None
    if entry[0] != kind or entry[7] != ref_key:
        problems.add(
            f"{where}: its entry {seq} is {fmt.KIND_NAMES.get(entry[0], 'kind ' + str(entry[0]))} of "
            f"{_text(entry[7])}, not {fmt.KIND_NAMES[kind]} of {_text(ref_key)}"
        )
        return None
    return entry


def _verify_records(store, txn, problems, journal, categories):
    journal_db = store.dbs[fmt.DB_JOURNAL]
    refunds_of, refund_count = _verify_refunds(store, txn, problems, journal_db)
    counts = {
        fmt.KIND_EARN: _verify_orders(store, txn, problems, journal_db, refunds_of, categories),
        fmt.KIND_CLAWBACK: refund_count,
        fmt.KIND_REDEEM: _verify_member_records(store, txn, problems, journal_db, fmt.KIND_REDEEM),
        fmt.KIND_ADJUST: _verify_member_records(store, txn, problems, journal_db, fmt.KIND_ADJUST),
    }
    if any(counts[kind] != journal.kind_counts.get(kind, 0) for kind in counts):
        # Every record names a distinct entry of its kind; more entries than records
        # means some entry has no record: find which (only on this failure path).
        _find_entries_without_record(store, txn, problems)


def _verify_refunds(store, txn, problems, journal_db):
    """Each refund's CLAWBACK entry; return (order key -> [(where, amount, clawback)], count)."""
    refunds_of = {}
    count = 0
    for key, value in txn.cursor(db=store.dbs[fmt.DB_REFUNDS]):
        count += 1
        where = f"refund {_text(key)}"
        (amount, time_s, seq), order_key, _ = fmt.decode_tail(fmt.REFUND_HEAD, value)
        entry = _linked_entry(txn, journal_db, problems, where, seq, fmt.KIND_CLAWBACK, bytes(key))
        if entry is None:
            continue
        if entry[3] != time_s:
            problems.add(f"{where}: time {time_s}, its entry {seq} says {entry[3]}")
        refunds_of.setdefault(order_key, []).append((where, amount, -entry[1]))
    return refunds_of, count


def _verify_orders(store, txn, problems, journal_db, refunds_of, categories):
    """Each order's EARN entry, its refunds and clawbacks (§6), its category; return the count."""
    count = 0
    for key, value in txn.cursor(db=store.dbs[fmt.DB_ORDERS]):
        count += 1
        order_key = bytes(key)
        where = f"order {_text(order_key)}"
        amount, time_s, seq, refunded, clawed, category_code = fmt.decode_order(value)
        if category_code not in categories:
            problems.add(f"{where}: category code {category_code} is not in the dictionary")
        entry = _linked_entry(txn, journal_db, problems, where, seq, fmt.KIND_EARN, order_key)
        if entry is None:
            continue
        if entry[3] != time_s:
            problems.add(f"{where}: time {time_s}, its entry {seq} says {entry[3]}")
        refunds = refunds_of.pop(order_key, [])
        refunded_sum = sum(refund[1] for refund in refunds)
        clawed_sum = sum(refund[2] for refund in refunds)
        if refunded != refunded_sum or refunded > amount:
            problems.add(f"{where}: refunded {refunded} of {amount}, its refunds sum to {refunded_sum}")
        elif clawed != clawed_sum:
            problems.add(f"{where}: clawed back {clawed}, its refunds' entries sum to {clawed_sum}")
        elif clawed != entry[1] * refunded // amount:
            # floor(P x R / A) (§6): the clawbacks so far are what the refunds so far call for.
            problems.add(
                f"{where}: clawed back {clawed}, floor({entry[1]} x {refunded} / {amount}) is "
                f"{entry[1] * refunded // amount}"
            )
    for order_key, refunds in sorted(refunds_of.items()):
        for refund_where, *_ in refunds:
            problems.add(f"{refund_where}: refunds order {_text(order_key)}, which is not stored")
    return count


def _verify_member_records(store, txn, problems, journal_db, kind):
    """Redemptions or adjustments: points, member and time as their entry says; return the count."""
    db_name, noun = RECORD_OF_KIND[kind]
    head = fmt.REDEMPTION_HEAD if kind == fmt.KIND_REDEEM else fmt.ADJUSTMENT_HEAD
    sign = -1 if kind == fmt.KIND_REDEEM else 1
    count = 0
    for key, value in txn.cursor(db=store.dbs[db_name]):
        count += 1
        where = f"{noun} {_text(key)}"
        (points, time_s, seq), member_key, _ = fmt.decode_tail(head, value)
        entry = _linked_entry(txn, journal_db, problems, where, seq, kind, bytes(key))
        if entry is None:
            continue
        stored = (sign * points, member_key, time_s)
        in_entry = (entry[1], entry[6], entry[3])
        if stored != in_entry:
            problems.add(
                f"{where}: {points} points for {_text(member_key)} at {time_s}, its entry {seq} "
                f"says {sign * entry[1]} for {_text(entry[6])} at {entry[3]}"
            )
    return count


def _find_entries_without_record(store, txn, problems):
    dbs = store.dbs
    for key, value in txn.cursor(db=dbs[fmt.DB_JOURNAL]):
        try:
            entry = fmt.decode_entry(value)
        except Exception:  # reported by the journal pass
            continue
        if entry[0] not in RECORD_OF_KIND:
            continue
        db_name, noun = RECORD_OF_KIND[entry[0]]
        record = txn.get(entry[7], db=dbs[db_name])
        seq = fmt.U64.unpack(key)[0]
        if record is None:
            problems.add(f"journal seq {seq}: {fmt.KIND_NAMES[entry[0]]} of {noun} {_text(entry[7])}, "
                         f"which has no record")
        else:
            # Every record layout holds its entry's seq third (store_format).
            named = (fmt.ORDER_HEAD if db_name == fmt.DB_ORDERS else fmt.REFUND_HEAD).unpack_from(record)[2]
            if named != seq:
                problems.add(f"journal seq {seq}: {fmt.KIND_NAMES[entry[0]]} of {noun} "
                             f"{_text(entry[7])}, whose record names entry {named}")


# --- engagement (§17): bonus counters, referrals -------------------------------------------


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
    for referee_key in sorted(set(referees) - named):  # in key order: the same report every time
        problems.add(f"referees: {referee_key.decode('utf-8', 'replace')!r} names no referral")


# --- cohort counters (§19) ----------------------------------------------------------------


DEBT = "debt"  # held_by_month's key for the members' total debt


def _verify_cohorts(store, txn, problems, journal, held_by_month):
    """The cohort counters against the members' lots, the journal and the orders."""
    db = store.dbs.get(fmt.DB_COHORTS)
    if db is None:  # a store of format 1-3 opened read-only: it has no cohort counters yet
        return
    debt = held_by_month.pop(DEBT, 0)
    per_month, per_day = {}, {}
    for key, value in txn.cursor(db=db):
        month, day = fmt.COHORT_KEY.unpack(key)
        counters = fmt.COHORT.unpack(value)
        if counters[fmt.COHORT_CREDITED] and month != calendar.issue_month_of_day(day):
            problems.add(f"cohort {_month(month)} day {calendar.format_utc(day * 86400)[:10]}: "
                         f"credits {counters[fmt.COHORT_CREDITED]} outside their issue month")
        _add_counters(per_month, month, counters)
        _add_counters(per_day, day, counters)
    for month in sorted(set(per_month) | set(held_by_month)):
        counters = per_month.get(month, (0,) * len(fmt.COHORT_FIELDS))
        left = (counters[fmt.COHORT_CREDITED] - counters[fmt.COHORT_REDEEMED]
                - counters[fmt.COHORT_TAKEN_BACK] - counters[fmt.COHORT_EXPIRED])
        if left != held_by_month.get(month, 0):
            problems.add(f"cohort {_month(month)}: counters leave {left} points, the members' buckets and "
                         f"lots of that issue month hold {held_by_month.get(month, 0)}")
    for day in sorted(set(per_day) | set(journal.days) | set(journal.bonus_days)):
        counters = per_day.get(day, (0,) * len(fmt.COHORT_FIELDS))
        from_journal = journal.days.get(day, [0] * len(fmt.COUNTER_FIELDS))
        credited = (from_journal[fmt.COUNTER_EARNED] + journal.bonus_days.get(day, 0)
                    + journal.positive_adjust_days.get(day, 0))
        for name, stored, expected in (
            ("credited", counters[fmt.COHORT_CREDITED], credited),
            ("redeemed", counters[fmt.COHORT_REDEEMED], from_journal[fmt.COUNTER_REDEEMED]),
            ("expired", counters[fmt.COHORT_EXPIRED], from_journal[fmt.COUNTER_EXPIRED]),
        ):
            if stored != expected:
                problems.add(f"cohort counters of day {calendar.format_utc(day * 86400)[:10]}: {name} "
                             f"{stored}, the journal says {expected}")
    # Taken back: clawbacks and negative adjustments, less the debt still owed (a credit
    # that pays debt counts what it paid as taken back from its own cohort).
    taken_back = sum(counters[fmt.COHORT_TAKEN_BACK] for counters in per_month.values())
    expected = journal.totals[fmt.COUNTER_CLAWED_BACK] + journal.totals[fmt.COUNTER_ADJUSTED_NEGATIVE] - debt
    if taken_back != expected:
        problems.add(f"cohort counters: taken back {taken_back}, the journal's clawbacks and negative "
                     f"adjustments less the members' debt {debt} are {expected}")
    _verify_cohort_amounts(store, txn, problems, per_month)
    _verify_cohort_values(store, txn, problems, journal)


def _verify_cohort_values(store, txn, problems, journal):
    """cohort_values (format 5): per (month, day) the cohorts row's credited and taken back; per
    (day, version) the journal's credits applied under that version."""
    db = store.dbs.get(fmt.DB_COHORT_VALUES)
    if db is None or needs_upgrade(store, txn):  # format 1-4 read-only: not upgraded yet
        return
    per_row, per_version = {}, {}
    for key, value in txn.cursor(db=db):
        month, day, version = fmt.COHORT_VALUE_KEY.unpack(key)
        credited, taken_back = fmt.COHORT_VALUE.unpack(value)
        _add_counters(per_row, (month, day), (credited, taken_back))
        per_version[(day, version)] = per_version.get((day, version), 0) + credited
    for key, value in txn.cursor(db=store.dbs[fmt.DB_COHORTS]):
        month, day = fmt.COHORT_KEY.unpack(key)
        counters = fmt.COHORT.unpack(value)
        expected = (counters[fmt.COHORT_CREDITED], counters[fmt.COHORT_TAKEN_BACK])
        stored = per_row.pop((month, day), (0, 0))
        if stored != expected:
            problems.add(f"cohort values {_month(month)} day {calendar.format_utc(day * 86400)[:10]}: credited, "
                         f"taken back {stored}, the cohort counters say {expected}")
    for month, day in sorted(key for key, stored in per_row.items() if any(stored)):
        problems.add(f"cohort values {_month(month)} day {calendar.format_utc(day * 86400)[:10]}: "
                     f"{per_row[(month, day)]} without a cohort counter row")
    for day, version in sorted(set(per_version) | set(journal.credits_by_version)):
        stored, expected = per_version.get((day, version), 0), journal.credits_by_version.get((day, version), 0)
        if stored != expected:
            problems.add(f"cohort values of day {calendar.format_utc(day * 86400)[:10]}, version {version}: "
                         f"credited {stored}, the journal says {expected}")


def _add_counters(into, key, counters):
    total = into.get(key)
    into[key] = counters if total is None else tuple(a + b for a, b in zip(total, counters))


def _verify_cohort_amounts(store, txn, problems, per_month):
    """Each issue month's amount is its orders' amounts less their refunds."""
    expected = {}
    for _, value in txn.cursor(db=store.dbs[fmt.DB_ORDERS]):
        try:
            amount, time_s, _, refunded, _, _ = fmt.decode_order(value)
        except Exception:  # reported by the order checks
            continue
        month = calendar.issue_month_of(time_s)
        expected[month] = expected.get(month, 0) + amount - refunded
    for month in sorted(set(expected) | set(per_month)):
        stored = per_month.get(month, (0,) * len(fmt.COHORT_FIELDS))[fmt.COHORT_AMOUNT]
        if stored != expected.get(month, 0):
            problems.add(f"cohort {_month(month)}: amount {stored}, its orders less refunds are "
                         f"{expected.get(month, 0)}")
