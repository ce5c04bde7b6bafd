"""refund, redeem, adjust, expire and set_program, inside one write transaction.

These are not the hot path: they run the same Python code whichever engine is
selected, over the engine's MemberState. Checks run in the order of §15:
fields, id already used, existence, state, and last int64 range; nothing is
written until every check has passed.
"""

from . import calendar, limits, program as programs
from .engine import engagement
from .store import format as fmt
from .validation import utf8_of, validate_amount, validate_id, validate_int, validate_time
from .errors import FailedPrecondition, InvalidArgument, NotFound, already_used

REASON_FIELD = "reason"


def validate_reason(reason):
    """An adjustment's reason: free text, non-empty (§15), at most reason_bytes_max bytes.

    Unlike an id it may hold any character (a line break, a tab): it is read by
    people, never used as a key.
    """
    key = utf8_of(REASON_FIELD, reason)
    if not 1 <= len(key) <= limits.reason_bytes_max:
        raise InvalidArgument(
            REASON_FIELD, reason, f"must be non-empty, at most {limits.reason_bytes_max} bytes of UTF-8"
        )
    return key


def _roll_and_expire(writer, state, member_key, ref_key, time_s, program):
    """Expire the member's due buckets (one EXPIRE entry), release its due lots, roll its tier year."""
    expired = engagement.expire_and_count(writer, state, time_s)
    if expired:
        writer.append_entry(fmt.KIND_EXPIRE, -expired, state, member_key, ref_key, time_s, program.version)
        writer.count(time_s, fmt.COUNTER_EXPIRED, expired)
    engagement.release_due(state, time_s, writer.expiry_deltas)
    state.roll_to(calendar.year_of(time_s), program)


roll_and_expire = _roll_and_expire  # the what-if rolls members at recorded redemptions (simulate/)


def _duplicate(writer, id_field, ref_id, what, seq, fields):
    """The recorded result of a resent operation, or ALREADY_EXISTS naming what differs.

    fields: (name, stored, sent) of every field but the id, in argument order.
    """
    if any(stored != sent for _, stored, sent in fields):
        raise already_used(id_field, ref_id, what, fields)
    _, points, balance, *_ = writer.entry(seq)
    return ("DUPLICATE", seq, points, balance)


def refund(writer, refund_id, order_id, amount_minor, time_s):
    refund_key = validate_id("refund_id", refund_id)
    order_key = validate_id("order_id", order_id)
    amount_minor = validate_amount("amount_minor", amount_minor)
    time_s = validate_time("time_s", time_s)

    existing = writer.get(fmt.DB_REFUNDS, refund_key)
    if existing is not None:
        (amount, time, seq), stored_order, _ = fmt.decode_tail(fmt.REFUND_HEAD, existing)
        return _duplicate(writer, "refund_id", refund_id, "refund", seq, (
            ("order_id", stored_order.decode(), order_key.decode()),
            ("amount_minor", amount, amount_minor),
            ("time_s", time, time_s),
        ))

    order = writer.get(fmt.DB_ORDERS, order_key)
    if order is None:
        raise NotFound(f"order_id {order_id!r}: no such order", "order_id", order_id, reason_code="ORDER_NOT_FOUND")
    order_amount, order_time, earn_seq, refunded, clawed, category_code = fmt.decode_order(order)
    if refunded + amount_minor > order_amount:
        raise FailedPrecondition(
            f"amount_minor {amount_minor}: order {order_id!r} of {order_amount} has "
            f"{order_amount - refunded} left to refund", "amount_minor", amount_minor,
            reason_code="REFUND_EXCEEDS_AMOUNT",
            info={"order_amount_minor": order_amount, "refunded_minor": refunded,
                  "refundable_minor": order_amount - refunded},
        )
    _, earned_points, _, _, _, _, member_key, _ = writer.entry(earn_seq)
    refunded_total = refunded + amount_minor
    # floor(P x R / A) - already clawed (§6); P x R may exceed int64, Python ints are exact.
    clawback = earned_points * refunded_total // order_amount - clawed
    state = writer.member(member_key)
    program = writer.program_at(time_s)
    due = engagement.due_points(state, time_s)
    if state.balance - due - clawback < limits.INT64_MIN:
        raise InvalidArgument("balance", state.balance - due - clawback, "the balance would overflow int64")

    _roll_and_expire(writer, state, member_key, refund_key, time_s, program)
    if calendar.year_of(order_time) == state.tier_year:
        state.spend_minor = max(0, state.spend_minor - amount_minor)
    taken = {}
    uncovered = engagement.claw_back(state, order_key, clawback, writer.expiry_deltas, taken)
    writer.count_taken(time_s, fmt.COHORT_TAKEN_BACK, taken)
    # The refund lowers the amount of the purchase's cohort (§19), on the refund's day.
    writer.count_cohort(calendar.issue_month_of(order_time), time_s, fmt.COHORT_AMOUNT, -amount_minor)
    state.debt += uncovered
    state.clawed_back += clawback
    seq = writer.append_entry(fmt.KIND_CLAWBACK, -clawback, state, member_key, refund_key, time_s, program.version)
    writer.mark_dirty(member_key, state)
    writer.count(time_s, fmt.COUNTER_CLAWED_BACK, clawback)
    writer.put(fmt.DB_ORDERS, order_key, fmt.encode_order(
        order_amount, order_time, earn_seq, refunded_total, clawed + clawback, category_code))
    writer.put(fmt.DB_REFUNDS, refund_key, fmt.encode_tail(fmt.REFUND_HEAD, (amount_minor, time_s, seq), order_key))
    return ("APPLIED", seq, -clawback, state.balance)


def _too_few_points(points, member_id, available):
    """FAILED_PRECONDITION naming `points`, with the available figure (§17) in the message and on the error."""
    error = FailedPrecondition(
        f"points {points}: member {member_id!r} has {available} points available", "points", points,
        reason_code="INSUFFICIENT_POINTS", info={"available_points": available, "requested_points": abs(points)},
    )
    error.available = available
    return error


def _member_or_not_found(writer, member_key, member_id):
    state = writer.member(member_key)
    if state is None:
        raise NotFound(f"member_id {member_id!r}: no such member", "member_id", member_id,
                       reason_code="MEMBER_NOT_FOUND")
    return state


def redeem(writer, redemption_id, member_id, points, time_s):
    redemption_key = validate_id("redemption_id", redemption_id)
    member_key = validate_id("member_id", member_id)
    points = validate_int("points", points, 1, limits.INT64_MAX)
    time_s = validate_time("time_s", time_s)

    existing = writer.get(fmt.DB_REDEMPTIONS, redemption_key)
    if existing is not None:
        (stored_points, time, seq), stored_member, _ = fmt.decode_tail(fmt.REDEMPTION_HEAD, existing)
        return _duplicate(writer, "redemption_id", redemption_id, "redemption", seq, (
            ("member_id", stored_member.decode(), member_key.decode()),
            ("points", stored_points, points),
            ("time_s", time, time_s),
        ))

    state = _member_or_not_found(writer, member_key, member_id)
    available = engagement.available_points(state, time_s)
    if points > available:
        raise _too_few_points(points, member_id, available)

    program = writer.program_at(time_s)
    _roll_and_expire(writer, state, member_key, redemption_key, time_s, program)
    taken = {}
    state.debit(points, writer.expiry_deltas, taken)
    writer.count_taken(time_s, fmt.COHORT_REDEEMED, taken)
    state.redeemed += points
    seq = writer.append_entry(fmt.KIND_REDEEM, -points, state, member_key, redemption_key, time_s, program.version)
    writer.mark_dirty(member_key, state)
    writer.count(time_s, fmt.COUNTER_REDEEMED, points)
    writer.put(fmt.DB_REDEMPTIONS, redemption_key,
               fmt.encode_tail(fmt.REDEMPTION_HEAD, (points, time_s, seq), member_key))
    return ("APPLIED", seq, -points, state.balance)


def adjust(writer, adjustment_id, member_id, points, reason, time_s):
    adjustment_key = validate_id("adjustment_id", adjustment_id)
    member_key = validate_id("member_id", member_id)
    points = validate_int("points", points, limits.INT64_MIN, limits.INT64_MAX)
    if points == 0:
        raise InvalidArgument("points", points, "must not be zero")
    reason_key = validate_reason(reason)
    time_s = validate_time("time_s", time_s)

    existing = writer.get(fmt.DB_ADJUSTMENTS, adjustment_key)
    if existing is not None:
        (stored_points, time, seq), stored_member, stored_reason = fmt.decode_tail(fmt.ADJUSTMENT_HEAD, existing)
        return _duplicate(writer, "adjustment_id", adjustment_id, "adjustment", seq, (
            ("member_id", stored_member.decode(), member_key.decode()),
            ("points", stored_points, points),
            ("reason", stored_reason.decode(), reason_key.decode()),
            ("time_s", time, time_s),
        ))

    state = _member_or_not_found(writer, member_key, member_id)
    program = writer.program_at(time_s)
    if points < 0:
        available = engagement.available_points(state, time_s)
        if -points > available:
            raise _too_few_points(points, member_id, available)
    else:
        due = engagement.due_points(state, time_s)
        if state.balance - due + points > limits.INT64_MAX:
            raise InvalidArgument("balance", state.balance - due + points, "the balance would overflow int64")
        writer.check_credit(points)

    _roll_and_expire(writer, state, member_key, adjustment_key, time_s, program)
    if points > 0:
        instant = (
            calendar.expiry_instant(time_s, program.expiry_months)
            if program.expiry_months else limits.never_expires_s
        )
        month = calendar.issue_month_of(time_s)
        paid = state.credit(points, instant, writer.expiry_deltas, month)
        if paid:
            writer.count_cohort(month, time_s, fmt.COHORT_TAKEN_BACK, paid)
        writer.count(time_s, fmt.COUNTER_ADJUSTED_POSITIVE, points)
    else:
        taken = {}
        state.debit(-points, writer.expiry_deltas, taken)
        writer.count_taken(time_s, fmt.COHORT_TAKEN_BACK, taken)
        writer.count(time_s, fmt.COUNTER_ADJUSTED_NEGATIVE, -points)
    state.adjusted += points
    seq = writer.append_entry(fmt.KIND_ADJUST, points, state, member_key, adjustment_key, time_s, program.version)
    writer.mark_dirty(member_key, state)
    writer.put(fmt.DB_ADJUSTMENTS, adjustment_key,
               fmt.encode_tail(fmt.ADJUSTMENT_HEAD, (points, time_s, seq), member_key, reason_key))
    return ("APPLIED", seq, points, state.balance)


def expire(writer, as_of_s):
    """Expire every member's due buckets at as_of (§5); safe to run again."""
    as_of_s = validate_time("as_of_s", as_of_s)
    if not _anything_due(writer, as_of_s):
        return (0, 0)
    program = writer.program_at(as_of_s)
    ref_key = f"expire-run@{as_of_s}".encode()
    members = points = 0
    # Member-id byte order is the key order of the members sub-database (§15).
    for member_key in writer.txn.cursor(db=writer.dbs[fmt.DB_MEMBERS]).iternext(values=False):
        member_key = bytes(member_key)
        state = writer.member(member_key)
        expired = engagement.expire_and_count(writer, state, as_of_s)
        if not expired:
            continue
        writer.append_entry(fmt.KIND_EXPIRE, -expired, state, member_key, ref_key, as_of_s, program.version)
        writer.count(as_of_s, fmt.COUNTER_EXPIRED, expired)
        writer.mark_dirty(member_key, state)
        members += 1
        points += expired
    return (members, points)


def _anything_due(writer, as_of_s):
    """The expiry totals say whether any bucket is due, without a member scan."""
    cursor = writer.txn.cursor(db=writer.dbs[fmt.DB_EXPIRY])
    for key, value in cursor:
        if fmt.I64.unpack(key)[0] > as_of_s:
            return False
        if fmt.I64.unpack(value)[0] != 0:
            return True
    return False


def set_program(writer, document, effective_from_s, now_s):
    """Validate and store a new programme version; return its number."""
    parsed = programs.parse_document(document)
    problems, fields = programs.validate(parsed)
    if problems:
        raise programs.InvalidProgram(problems)
    in_document = fields.get("effective_from")
    if effective_from_s is not None:
        effective_from_s = validate_time("effective_from", effective_from_s)
        if in_document is not None and in_document != effective_from_s:
            raise InvalidArgument(
                "effective_from", effective_from_s,
                f"differs from the document's effective_from ({in_document})",
            )
    elif in_document is not None:
        effective_from_s = in_document
    else:
        effective_from_s = now_s
    existing = writer.store.programs + writer.new_programs
    if existing and effective_from_s < existing[-1].effective_from_s:
        raise FailedPrecondition(
            f"effective_from {effective_from_s}: earlier than version {existing[-1].version}'s "
            f"({existing[-1].effective_from_s})", "effective_from", effective_from_s,
            reason_code="EFFECTIVE_FROM_BEFORE_LATEST",
            info={"latest_version": existing[-1].version, "latest_effective_from_s": existing[-1].effective_from_s},
        )
    version = len(existing) + 1
    compiled = programs.compile_program(parsed, version, effective_from_s)
    stored = dict(parsed)
    stored["effective_from"] = effective_from_s
    writer.put(fmt.DB_PROGRAMS, fmt.U32.pack(version),
               fmt.PROGRAM_HEAD.pack(effective_from_s) + programs.canonical_json(stored).encode())
    writer.new_programs.append(compiled)
    return version


# --- engagement (§14, §17) ---------------------------------------------------------


def register_referral(writer, referral_id, referrer_id, referee_id, time_s):
    """Record an open referral; it is settled by the referee's first qualifying purchase."""
    referral_key = validate_id("referral_id", referral_id)
    referrer_key = validate_id("referrer_id", referrer_id)
    referee_key = validate_id("referee_id", referee_id)
    if referee_key == referrer_key:
        raise InvalidArgument("referee_id", referee_id, "a member cannot refer itself")
    time_s = validate_time("time_s", time_s)

    existing = writer.get(fmt.DB_REFERRALS, referral_key)
    if existing is not None:
        stored_time, settled_seq, stored_referrer, stored_referee, order_key = fmt.decode_referral(existing)
        fields = (
            ("referrer_id", stored_referrer.decode(), referrer_key.decode()),
            ("referee_id", stored_referee.decode(), referee_key.decode()),
            ("time_s", stored_time, time_s),
        )
        if any(stored != sent for _, stored, sent in fields):
            raise already_used("referral_id", referral_id, "referral", fields)
        return ("DUPLICATE", stored_time, settled_seq, order_key)

    if writer.member(referrer_key) is None:
        raise NotFound(f"referrer_id {referrer_id!r}: no such member", "referrer_id", referrer_id,
                       reason_code="MEMBER_NOT_FOUND")
    if writer.member(referee_key) is not None:
        raise FailedPrecondition(
            f"referee_id {referee_id!r}: already a member (it has a purchase)", "referee_id", referee_id,
            reason_code="REFEREE_NOT_ELIGIBLE")
    named_by = writer.get(fmt.DB_REFEREES, referee_key)
    if named_by is not None:
        raise FailedPrecondition(
            f"referee_id {referee_id!r}: already named by referral {bytes(named_by).decode()!r}",
            "referee_id", referee_id, reason_code="REFEREE_NOT_ELIGIBLE")

    writer.engaged = True
    writer.put(fmt.DB_REFERRALS, referral_key, fmt.encode_referral(time_s, 0, referrer_key, referee_key, b""))
    writer.put(fmt.DB_REFEREES, referee_key, referral_key)
    if writer.store.referee_keys is not None:  # a superset of the referees: kept so if this write fails
        writer.store.referee_keys.add(referee_key)
    return ("APPLIED", time_s, 0, b"")


def set_member_profile(writer, member_id, birthday):
    """Store the member's birthday (MM-DD, or None to clear) from the next journal position on."""
    member_key = validate_id("member_id", member_id)
    month_day = validate_birthday(birthday)
    writer.engaged = True
    key = fmt.profile_prefix(member_key) + fmt.PROFILE_SEQ.pack(writer.next_seq)
    writer.put(fmt.DB_PROFILES, key, b"" if month_day is None else bytes(month_day))
    # A failed commit empties the cache (Store.forget), so it never runs ahead of the store.
    writer.store.profile_cache[member_key] = month_day
    return month_day


DAYS_IN_MONTH_OF_A_LEAP_YEAR = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def validate_birthday(birthday):
    """(month, day) of an MM-DD date that exists in a leap year; None clears (§17)."""
    if birthday is None:
        return None
    if not isinstance(birthday, str) or len(birthday) != 5 or birthday[2] != "-" or not (
            birthday[:2].isascii() and birthday[:2].isdigit() and birthday[3:].isascii() and birthday[3:].isdigit()):
        raise InvalidArgument("birthday", birthday, "must be MM-DD (or null to clear it)")
    month, day = int(birthday[:2]), int(birthday[3:])
    if not 1 <= month <= 12 or not 1 <= day <= DAYS_IN_MONTH_OF_A_LEAP_YEAR[month - 1]:
        raise InvalidArgument("birthday", birthday, "must be a date that exists (MM-DD)")
    return month, day
