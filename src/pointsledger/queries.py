"""Read-only queries (§8) over one read transaction. Readers never wait for the writer."""

import decimal
import fractions

from . import calendar, limits
from .engine import engagement
from .store import format as fmt
from .errors import NotFound
from .validation import validate_midnight
from .results import (
    Balance, Breakage, Entry, MilestoneProgress, Profile, Referral, HistoryPage, Liability, OperationResult, RecordedAdjustment, RecordedOrder,
    RecordedRedemption, RecordedRefund, Rollforward,
)

NEVER = limits.never_expires_s


def entry_from_value(seq, value):
    kind, points, balance, time_s, version, _, member_key, ref_key = fmt.decode_entry(value)
    return Entry(seq, fmt.KIND_NAMES[kind], member_key.decode(), ref_key.decode(),
                 points, balance, time_s, version)


def _recorded(store, txn, db_name, key, id_field, id_value):
    value = txn.get(key, db=store.dbs[db_name])
    if value is None:
        # order_id -> ORDER_NOT_FOUND, refund_id -> REFUND_NOT_FOUND, ...
        raise NotFound(f"{id_field} {id_value!r}: none recorded", id_field, id_value,
                       reason_code=id_field.removesuffix("_id").upper() + "_NOT_FOUND")
    return value


def _original_result(store, txn, seq):
    """The result the operation got when it was applied, from its journal entry."""
    _, points, balance, *_ = fmt.decode_entry(txn.get(fmt.seq_key(seq), db=store.dbs[fmt.DB_JOURNAL]))
    return OperationResult("APPLIED", seq, points, balance)


def recorded_order(store, txn, order_id, order_key):
    amount, time_s, seq, refunded, clawed, code = fmt.decode_order(
        _recorded(store, txn, fmt.DB_ORDERS, order_key, "order_id", order_id))
    member_key = fmt.decode_entry(txn.get(fmt.seq_key(seq), db=store.dbs[fmt.DB_JOURNAL]))[6]
    # Read from the transaction, not the writer's category cache (readers never touch it).
    category = txn.get(fmt.encode_category_code(code), db=store.dbs[fmt.DB_CATEGORY_NAMES])
    journal = store.dbs[fmt.DB_JOURNAL]
    bonuses, balance = engagement.recorded_bonuses(
        lambda at: fmt.decode_entry(txn.get(fmt.seq_key(at), db=journal)), seq, order_key, store.last_seq(txn) + 1)
    _, points, _, *_ = fmt.decode_entry(txn.get(fmt.seq_key(seq), db=journal))
    return RecordedOrder(order_key.decode(), member_key.decode(), amount, bytes(category).decode(), time_s,
                         refunded, clawed, OperationResult("APPLIED", seq, points, balance, bonuses))


def recorded_refund(store, txn, refund_id, refund_key):
    (amount, time_s, seq), order_key, _ = fmt.decode_tail(
        fmt.REFUND_HEAD, _recorded(store, txn, fmt.DB_REFUNDS, refund_key, "refund_id", refund_id))
    return RecordedRefund(refund_key.decode(), order_key.decode(), amount, time_s,
                          _original_result(store, txn, seq))


def recorded_redemption(store, txn, redemption_id, redemption_key):
    (points, time_s, seq), member_key, _ = fmt.decode_tail(
        fmt.REDEMPTION_HEAD,
        _recorded(store, txn, fmt.DB_REDEMPTIONS, redemption_key, "redemption_id", redemption_id))
    return RecordedRedemption(redemption_key.decode(), member_key.decode(), points, time_s,
                              _original_result(store, txn, seq))


def recorded_adjustment(store, txn, adjustment_id, adjustment_key):
    (points, time_s, seq), member_key, reason = fmt.decode_tail(
        fmt.ADJUSTMENT_HEAD,
        _recorded(store, txn, fmt.DB_ADJUSTMENTS, adjustment_key, "adjustment_id", adjustment_id))
    return RecordedAdjustment(adjustment_key.decode(), member_key.decode(), points, reason.decode(), time_s,
                              _original_result(store, txn, seq))


def program_for_tier(store, txn, state, as_of_s):
    """The programme version whose thresholds name the member's tier as of as_of.

    Before the member's tier year a query reports the current state (§15), so
    the thresholds are those in force when that year began, not at as_of: a
    version that was never in force in the tier year must not name its tier.
    """
    tier_year_start_s = calendar.year_start(state.tier_year)
    if as_of_s < tier_year_start_s:
        return store.program_at(tier_year_start_s, txn)
    return store.program_at(as_of_s, txn)


def tier_as_of(program, state, as_of_s):
    """(tier rank, tier name, tier year, spend) as of as_of, without writing (§4, §15)."""
    year = calendar.year_of(as_of_s)
    tier_year, spend, carried = state.tier_year, state.spend_minor, state.carried_rank
    if year > tier_year:
        tier_year, spend, carried = state.rolled(year, program)
    rank = max(program.tier_rank_for_spend(spend), min(carried, len(program.tier_names) - 1))
    return rank, program.tier_names[rank], tier_year, spend


def balance(store, txn, member_id, member_key, as_of_s):
    value = txn.get(member_key, db=store.dbs[fmt.DB_MEMBERS])
    if value is None:
        raise NotFound(f"member_id {member_id!r}: no such member", "member_id", member_id,
                       reason_code="MEMBER_NOT_FOUND")
    state = store.engine.MemberState.decode(value)
    available = -state.debt
    next_expiry_s, next_expiry_points = None, 0
    buckets = {}
    for instant, points, _ in state.buckets:  # the issue months of one instant together
        buckets[instant] = buckets.get(instant, 0) + points
    pending, releases = 0, {}
    for release_s, expires_s, points, *_ in engagement.lots_of(state):
        if expires_s <= as_of_s:
            continue
        if release_s <= as_of_s:  # released by as_of: in its bucket (§17)
            buckets[expires_s] = buckets.get(expires_s, 0) + points
        else:
            pending += points
            releases[release_s] = releases.get(release_s, 0) + points
    for instant in sorted(buckets):
        points = buckets[instant]
        if instant > as_of_s:
            available += points
            if next_expiry_s is None and instant != NEVER:
                next_expiry_s, next_expiry_points = instant, points
    next_release_s = min(releases) if releases else None
    _, tier_name, tier_year, spend = tier_as_of(program_for_tier(store, txn, state, as_of_s), state, as_of_s)
    milestones = milestone_progress(store, txn, store.program_at(as_of_s, txn), state, tier_year, spend)
    return Balance(
        member_id=member_id, as_of_s=as_of_s, balance=state.balance, available=available,
        debt=state.debt, next_expiry_s=next_expiry_s, next_expiry_points=next_expiry_points,
        tier=tier_name, tier_year=tier_year, spend_minor=spend, earned=state.earned,
        redeemed=state.redeemed, expired=state.expired, clawed_back=state.clawed_back,
        adjusted=state.adjusted,
        bonus=state.engagement.bonus if state.engagement is not None else 0,
        milestones=milestones, pending=pending, next_release_s=next_release_s,
        next_release_points=releases.get(next_release_s, 0),
    )


def milestone_progress(store, txn, program, state, tier_year, spend):
    """Progress towards each milestone of the version in force at as_of (§17).

    tier_year and spend are those of tier_as_of: a later year than the member's
    has 0 of both and no milestone reached; before the member's tier year, the
    current one is reported (as for the tier).
    """
    if program is None or not program.milestones:
        return ()
    member = state.engagement
    if tier_year == state.tier_year:
        purchases = member.purchases_in(tier_year) if member is not None else None
        reached = set(member.reached_in(tier_year)) if member is not None else set()
    else:
        purchases, reached = 0, set()
    progress = []
    for milestone in program.milestones:
        if milestone.kind == "purchases":
            if purchases is None:
                journal = store.dbs[fmt.DB_JOURNAL]
                purchases = engagement.count_purchases(
                    lambda seq: fmt.decode_entry(txn.get(fmt.seq_key(seq), db=journal)), state, tier_year)
            value = purchases
        else:
            value = spend
        progress.append(MilestoneProgress(
            milestone.milestone_id, milestone.kind, milestone.target, value,
            milestone.milestone_id.encode() in reached,
        ))
    return tuple(progress)


def history(store, txn, member_id, member_key, limit, before_seq):
    value = txn.get(member_key, db=store.dbs[fmt.DB_MEMBERS])
    if value is None:
        raise NotFound(f"member_id {member_id!r}: no such member", "member_id", member_id,
                       reason_code="MEMBER_NOT_FOUND")
    journal = store.dbs[fmt.DB_JOURNAL]
    seq = store.engine.MemberState.decode(value).last_seq
    if before_seq is not None:
        # A cursor from an earlier page is the member's own entry: follow its link.
        anchor = txn.get(fmt.seq_key(before_seq), db=journal)
        if anchor is not None and fmt.decode_entry(anchor)[6] == member_key:
            seq = fmt.decode_entry(anchor)[5]
        else:
            while seq and seq >= before_seq:
                seq = fmt.decode_entry(txn.get(fmt.seq_key(seq), db=journal))[5]
    entries = []
    while seq and len(entries) < limit:
        value = txn.get(fmt.seq_key(seq), db=journal)
        entries.append(entry_from_value(seq, value))
        seq = fmt.decode_entry(value)[5]
    return HistoryPage(entries, entries[-1].seq if seq and entries else None)


def journal(store, txn, from_seq, limit):
    cursor = txn.cursor(db=store.dbs[fmt.DB_JOURNAL])
    entries = []
    if not cursor.set_range(fmt.seq_key(from_seq)):
        return entries
    for key, value in cursor:
        entries.append(entry_from_value(fmt.U64.unpack(key)[0], value))
        if len(entries) >= limit:
            break
    return entries


def read_totals(store, txn):
    stored = txn.get(fmt.META_TOTALS, db=store.dbs[fmt.DB_META])
    return list(fmt.COUNTERS.unpack(stored)) if stored else [0] * len(fmt.COUNTER_FIELDS)


def outstanding_of(counters):
    return (
        counters[fmt.COUNTER_EARNED] + counters[fmt.COUNTER_ADJUSTED_POSITIVE]
        - counters[fmt.COUNTER_ADJUSTED_NEGATIVE] - counters[fmt.COUNTER_CLAWED_BACK]
        - counters[fmt.COUNTER_REDEEMED] - counters[fmt.COUNTER_EXPIRED]
    )


def read_bonus_total(store, txn):
    stored = txn.get(fmt.META_BONUS_TOTAL, db=store.dbs[fmt.DB_META])
    return fmt.I64.unpack(stored)[0] if stored else 0


def liability(store, txn, as_of_s):
    totals = read_totals(store, txn)
    bonus = read_bonus_total(store, txn)
    outstanding = outstanding_of(totals) + bonus
    program = store.program_at(as_of_s, txn)
    point_value = program.point_value if program else 0
    horizons = {30: 0, 60: 0, 90: 0}
    overdue = 0
    for key, value in txn.cursor(db=store.dbs[fmt.DB_EXPIRY]):
        instant, points = fmt.I64.unpack(key)[0], fmt.I64.unpack(value)[0]
        if instant == NEVER:
            continue
        if instant <= as_of_s:
            overdue += points
            continue
        for days in horizons:
            if instant <= as_of_s + days * calendar.SECONDS_PER_DAY:
                horizons[days] += points
    by_tier = {}
    pending = 0
    if program is not None:
        # Tiers move with the calendar, not with writes, so this one figure is a
        # member scan (read-only, one pass); every other figure is a counter.
        by_tier = {name: 0 for name in program.tier_names}
        decode = store.engine.MemberState.decode
        as_of_year = calendar.year_of(as_of_s)
        tier_year_programs = {}  # members whose tier year is after as_of's year (§15)
        for _, value in txn.cursor(db=store.dbs[fmt.DB_MEMBERS]):
            state = decode(value)
            pending += sum(lot[2] for lot in engagement.lots_of(state) if lot[0] > as_of_s < lot[1])
            member_program = program
            if state.tier_year > as_of_year:
                member_program = tier_year_programs.get(state.tier_year)
                if member_program is None:
                    member_program = program_for_tier(store, txn, state, as_of_s)
                    tier_year_programs[state.tier_year] = member_program
            name = tier_as_of(member_program, state, as_of_s)[1]
            by_tier[name] = by_tier.get(name, 0) + state.balance
    return Liability(
        as_of_s=as_of_s, currency=program.currency if program else "",
        point_value=point_value, earned=totals[fmt.COUNTER_EARNED], bonus=bonus, pending=pending,
        adjusted_positive=totals[fmt.COUNTER_ADJUSTED_POSITIVE],
        adjusted_negative=totals[fmt.COUNTER_ADJUSTED_NEGATIVE],
        clawed_back=totals[fmt.COUNTER_CLAWED_BACK], redeemed=totals[fmt.COUNTER_REDEEMED],
        expired=totals[fmt.COUNTER_EXPIRED], outstanding=outstanding,
        outstanding_value=outstanding * point_value, outstanding_by_tier=by_tier,
        expiring_30_days=horizons[30], expiring_60_days=horizons[60], expiring_90_days=horizons[90],
        overdue=overdue,
    )


def require_midnight(field, time_s):
    """A rollforward boundary: a UTC midnight, since the report sums whole days' counters (SPEC §17)."""
    return validate_midnight(field, time_s, "the rollforward sums whole UTC days")


def rollforward(store, txn, from_s, to_s):
    """Opening + lines = closing over UTC days [day(from), day(to)), from day counters."""
    first_day, end_day = calendar.day_of(from_s), calendar.day_of(to_s)
    opening = [0] * len(fmt.COUNTER_FIELDS)
    period = [0] * len(fmt.COUNTER_FIELDS)
    for key, value in txn.cursor(db=store.dbs[fmt.DB_DAYS]):
        day = fmt.I32.unpack(key)[0]
        if day >= end_day:
            break
        target = opening if day < first_day else period
        for index, count in enumerate(fmt.COUNTERS.unpack(value)):
            target[index] += count
    opening_bonus, period_bonus = _bonus_days(store, txn, first_day, end_day)
    credited = period[fmt.COUNTER_EARNED] + period_bonus + period[fmt.COUNTER_ADJUSTED_POSITIVE]
    opening_points = outstanding_of(opening) + opening_bonus
    expired = period[fmt.COUNTER_EXPIRED]
    return Rollforward(
        from_s=from_s, to_s=to_s, opening=opening_points,
        earned=period[fmt.COUNTER_EARNED], bonus=period_bonus,
        adjusted=period[fmt.COUNTER_ADJUSTED_POSITIVE] - period[fmt.COUNTER_ADJUSTED_NEGATIVE],
        clawed_back=period[fmt.COUNTER_CLAWED_BACK], redeemed=period[fmt.COUNTER_REDEEMED],
        expired=expired, closing=opening_points + outstanding_of(period) + period_bonus,
        breakage_rate=fractions.Fraction(expired, credited) if credited else None,
        breakage=Breakage(expired, credited, _half_even_6(expired, credited)),
    )


def _bonus_days(store, txn, first_day, end_day):
    """BONUS points issued before first_day and in [first_day, end_day)."""
    db = store.dbs.get(fmt.DB_BONUS_DAYS)
    opening = period = 0
    if db is None:
        return 0, 0
    for key, value in txn.cursor(db=db):
        day = fmt.I32.unpack(key)[0]
        if day >= end_day:
            break
        if day < first_day:
            opening += fmt.I64.unpack(value)[0]
        else:
            period += fmt.I64.unpack(value)[0]
    return opening, period


def _half_even_6(numerator, denominator):
    """numerator / denominator as a decimal rounded half-even to 6 places; None for 0 / 0 (§17)."""
    if denominator == 0:
        return None
    context = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
    quotient = context.divide(decimal.Decimal(numerator), decimal.Decimal(denominator))
    return quotient.quantize(decimal.Decimal("0.000001"), rounding=decimal.ROUND_HALF_EVEN, context=context)


def referral_of(referral_id, value, status="APPLIED"):
    time_s, settled_seq, referrer_key, referee_key, order_key = fmt.decode_referral(value)
    return Referral(referral_id, referrer_key.decode(), referee_key.decode(), time_s, bool(settled_seq),
                    order_key.decode() if settled_seq else None, status)


def get_referral(store, txn, referral_id, referral_key):
    db = store.dbs.get(fmt.DB_REFERRALS)
    value = None if db is None else txn.get(referral_key, db=db)
    if value is None:
        raise NotFound(f"referral_id {referral_id!r}: no such referral", "referral_id", referral_id,
                       reason_code="REFERRAL_NOT_FOUND")
    return referral_of(referral_id, value)


def get_member_profile(store, txn, member_id, member_key):
    db = store.dbs.get(fmt.DB_PROFILES)
    prefix = fmt.profile_prefix(member_key)
    if db is not None:
        cursor = txn.cursor(db=db)
        if cursor.set_range(prefix) and bytes(cursor.key()).startswith(prefix):
            birthday = engagement.current_birthday(txn, store.dbs, member_key)
            return Profile(member_id, None if birthday is None else f"{birthday[0]:02d}-{birthday[1]:02d}")
    raise NotFound(f"member_id {member_id!r}: no profile", "member_id", member_id,
                   reason_code="PROFILE_NOT_FOUND")
