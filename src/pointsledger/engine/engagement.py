"""The engagement rules of a purchase (§14, §17): welcome, referral, milestones, birthday.

A purchase under a version with any of these rules (or by a member that has
engagement state) takes this path in the twin. The Cython engine runs a C
transcription of apply_purchase (_engine_c._Batch.apply_engaged_fast) and hands
the rare cases here; this module is the specification both follow, and the
differential test holds them to the same bytes. A programme without the rules
never comes here, and its purchases cost what they did before.

The entries of one purchase (§17): EXPIRE if due, EARN, the purchaser's bonuses
(welcome, referral, milestones in document order), then the referrer's EXPIRE
if due and its BONUS. Every check runs before anything is written.
"""

from . import _engine_py
from .. import calendar, limits
from ..store import format as fmt
from ..errors import InvalidArgument
from .member_engagement import Engagement
from ..results import Bonus

SECONDS_PER_DAY = calendar.SECONDS_PER_DAY
WELCOME_RULE = b"welcome"
REFERRAL_RULE = b"referral:"
MILESTONE_RULE = b"milestone:"


def apply_purchase(writer, order_key, member_key, amount_minor, category_key, category, time_s, program):
    """A new order under `program`: the twin's checks and writes plus the bonuses of §17."""
    state = writer.member(member_key)
    is_new = state is None
    year = calendar.year_of(time_s)
    if is_new:
        state = writer.store.engine.MemberState(year)
    due = due_points(state, time_s)
    tier_year, spend, carried = state.rolled(year, program)
    tier = _engine_py.tier_rank(program, spend, carried)
    points = _engine_py.price_purchase(
        program, amount_minor, category, tier, time_s, birthday_bp(writer, member_key, program, time_s),
    )
    if points > limits.INT64_MAX:
        raise InvalidArgument("points", points, "the purchase would earn more than int64 points")
    counts_towards_year = year == tier_year
    engagement = _engagement_for(writer, state, is_new, tier_year, program.milestones or program.pending_days)
    referral = _qualifying_referral(writer, member_key, program, amount_minor, time_s)
    own, reached = _own_bonuses(program, is_new, referral, engagement, counts_towards_year,
                                tier_year, spend + amount_minor)
    if own and engagement is None:  # its lifetime bonus is kept in the engagement state
        engagement = _engagement_for(writer, state, is_new, tier_year, True)
    own_total = sum(bonus_points for _, bonus_points in own)
    if state.balance - due + points + own_total > limits.INT64_MAX:
        raise InvalidArgument("balance", state.balance - due + points + own_total, "the balance would overflow int64")
    referrer = _referrer_of(writer, referral, program, time_s)
    writer.check_credit(points + own_total + (referrer[2] if referrer else 0))
    writer.check_category(category_key)
    if counts_towards_year and spend + amount_minor > limits.INT64_MAX:
        raise InvalidArgument("amount_minor", amount_minor, "the member's spend would overflow int64")

    # Every check passed: from here on the purchase is applied.
    writer.engaged = True
    if writer.tier_ranks is not None:
        writer.tier_ranks.append(tier)
    if is_new:
        writer.add_member(member_key, state)
    if engagement is not None:
        state.engagement = engagement
    expired = expire_and_count(writer, state, time_s)
    if expired:
        writer.append_entry(fmt.KIND_EXPIRE, -expired, state, member_key, order_key, time_s, program.version)
        writer.count(time_s, fmt.COUNTER_EXPIRED, expired)
    release_due(state, time_s, writer.expiry_deltas)
    writer.count_amount(time_s, amount_minor)
    state.tier_year, state.spend_minor, state.carried_rank = tier_year, spend, carried
    instant = credit_instant(program, time_s)
    credit = _Credit(program, order_key, instant, time_s)
    credit.add(writer, state, points)
    if counts_towards_year:
        state.spend_minor += amount_minor
    state.earned += points
    seq = writer.append_entry(fmt.KIND_EARN, points, state, member_key, order_key, time_s, program.version)
    writer.count(time_s, fmt.COUNTER_EARNED, points)
    writer.count(time_s, fmt.COUNTER_PURCHASES, 1)
    if engagement is not None:
        engagement.enter_year(tier_year)
        if counts_towards_year:
            engagement.purchases += 1
            engagement.reached.extend(reached)
    bonuses = [_pay(writer, state, member_key, rule, bonus_points, credit, time_s, program)
               for rule, bonus_points in own]
    balance = state.balance
    writer.mark_dirty(member_key, state)
    if referral is not None:
        bonuses.extend(_settle(writer, referral, referrer, order_key, seq, credit, time_s, program))
    category_code = writer.category_code(category_key)
    if writer.orders_kept is None or order_key in writer.orders_kept:
        writer.put(fmt.DB_ORDERS, order_key, fmt.encode_order(amount_minor, time_s, seq, 0, 0, category_code))
    if bonuses:
        return ("APPLIED", seq, points, balance, None, tuple(bonuses))
    return ("APPLIED", seq, points, balance, None)


def credit_instant(program, time_s):
    if program.expiry_months:
        return calendar.expiry_instant(time_s, program.expiry_months)
    return limits.never_expires_s


class _Credit:
    """Where a purchase's points go (§17): its bucket, or its pending lot when pending_days > 0."""

    def __init__(self, program, order_key, instant, time_s):
        self.order_key = order_key
        self.instant = instant
        self.time_s = time_s
        self.month = calendar.issue_month_of(time_s)
        self.release_s = time_s + program.pending_days * SECONDS_PER_DAY if program.pending_days else None

    def add(self, writer, state, points):
        """Credit points (debt first); the entry about to be written gets writer.next_seq."""
        if self.release_s is None:
            paid = state.credit(points, self.instant, writer.expiry_deltas, self.month)
        else:
            paid = credit_pending(state, points, self.release_s, self.instant, writer.next_seq, self.order_key,
                                  writer.expiry_deltas, self.month)
        if paid:  # points that paid a debt are taken back from their cohort (§19, docs/design.md)
            writer.count_cohort(self.month, self.time_s, fmt.COHORT_TAKEN_BACK, paid)


def _pay(writer, state, member_key, rule, bonus_points, credit, time_s, program):
    """One BONUS entry: a credit (pays debt first) into the purchase's bucket or lot (§17)."""
    credit.add(writer, state, bonus_points)
    state.engagement.bonus += bonus_points
    writer.append_entry(fmt.KIND_BONUS, bonus_points, state, member_key, rule, time_s, program.version)
    writer.count_bonus(time_s, bonus_points)
    return Bonus(member_key.decode(), rule.decode(), bonus_points)


# --- milestones ------------------------------------------------------------------------


def _engagement_for(writer, state, is_new, tier_year, needed):
    """The member's engagement state to update, or None when it has none and none is `needed`.

    A member gets one when a rule of its purchase needs it (milestones count,
    lots hold pending points, a bonus is kept in its lifetime figures). An
    existing member without one gets its purchase count for the tier year from
    its journal (EARN entries whose year is the tier year: exactly the applied
    purchases that counted), once.
    """
    if state.engagement is not None:
        return state.engagement  # read until every check has passed; changed only after
    if not needed:
        return None
    if is_new or tier_year != state.tier_year:
        return Engagement(tier_year)
    return Engagement(tier_year, count_purchases(writer.entry, state, tier_year))


def count_purchases(entry, state, year):
    """The member's EARN entries with time in `year`, walking its journal links.

    entry: seq -> the decoded journal entry (the writer's, or a reader's).
    """
    count = 0
    seq = state.last_seq
    while seq:
        kind, _, _, time_s, _, previous_seq, _, _ = entry(seq)
        if kind == fmt.KIND_EARN and calendar.year_of(time_s) == year:
            count += 1
        seq = previous_seq
    return count


def _own_bonuses(program, is_new, referral, engagement, counts_towards_year, tier_year, spend_after):
    """[(rule ref_id, points)] the purchaser earns, in §17 order, and the milestone ids reached."""
    own = []
    if is_new and program.welcome_bonus:
        own.append((WELCOME_RULE, program.welcome_bonus))
    if referral is not None and program.referral.referee_points:
        own.append((REFERRAL_RULE + referral[0], program.referral.referee_points))
    reached = []
    if counts_towards_year and program.milestones:
        already = set(engagement.reached_in(tier_year))
        purchases = engagement.purchases_in(tier_year) + 1
        for milestone in program.milestones:
            milestone_key = milestone.milestone_id.encode()
            if milestone_key in already:
                continue
            progress = purchases if milestone.kind == "purchases" else spend_after
            if progress >= milestone.target:
                reached.append(milestone_key)
                if milestone.bonus_points:
                    own.append((MILESTONE_RULE + milestone_key, milestone.bonus_points))
    return own, reached


# --- referrals ---------------------------------------------------------------------------


def _qualifying_referral(writer, member_key, program, amount_minor, time_s):
    """(referral key, record) of the member's open referral that this purchase settles, or None."""
    if program.referral is None:
        return None
    referee_keys = writer.store.referee_keys
    if referee_keys is not None and member_key not in referee_keys:
        return None
    referral_key = writer.get(fmt.DB_REFEREES, member_key)
    if referral_key is None:
        return None
    referral_key = bytes(referral_key)
    record = fmt.decode_referral(writer.get(fmt.DB_REFERRALS, referral_key))
    registered_s, settled_seq = record[0], record[1]
    if settled_seq or time_s < registered_s or amount_minor < program.referral.min_purchase_minor:
        return None
    return referral_key, record


def _referrer_of(writer, referral, program, time_s):
    """(referrer key, state, points) when the referrer is paid; the int64 check of its balance."""
    if referral is None or not program.referral.referrer_points:
        return None
    referrer_key = referral[1][2]
    state = writer.member(referrer_key)
    points = program.referral.referrer_points
    if state.balance - due_points(state, time_s) + points > limits.INT64_MAX:
        raise InvalidArgument(
            "balance", state.balance - due_points(state, time_s) + points,
            "the referrer's balance would overflow int64",
        )
    return referrer_key, state, points


def _settle(writer, referral, referrer, order_key, seq, credit, time_s, program):
    """The referrer's EXPIRE (if due) and BONUS; the referral settled by this order."""
    referral_key, (registered_s, _, referrer_key, referee_key, _) = referral
    bonuses = []
    if referrer is not None:
        _, state, points = referrer
        if state.engagement is None:
            state.engagement = Engagement(state.tier_year, count_purchases(writer.entry, state, state.tier_year))
        expired = expire_and_count(writer, state, time_s)
        if expired:
            writer.append_entry(fmt.KIND_EXPIRE, -expired, state, referrer_key, order_key, time_s, program.version)
            writer.count(time_s, fmt.COUNTER_EXPIRED, expired)
        release_due(state, time_s, writer.expiry_deltas)
        bonuses.append(_pay(writer, state, referrer_key, REFERRAL_RULE + referral_key, points, credit,
                            time_s, program))
        writer.mark_dirty(referrer_key, state)
    writer.put(fmt.DB_REFERRALS, referral_key,
               fmt.encode_referral(registered_s, seq, referrer_key, referee_key, order_key))
    return bonuses


# --- birthdays ----------------------------------------------------------------------------


def birthday_bp(writer, member_key, program, time_s):
    """The birthday multiplier when the purchase falls in the member's birthday month, else None."""
    if program.birthday_multiplier_bp is None:
        return None
    store = writer.store
    cache = store.profile_cache
    if member_key in cache:
        birthday = cache[member_key]
    elif store.profiles_complete:
        birthday = None
    else:
        birthday = current_birthday(writer.txn, writer.dbs, member_key, writer.overlay[fmt.DB_PROFILES])
        if len(cache) >= limits.profile_cache_entries_max:
            cache.clear()
        cache[member_key] = birthday
    if birthday is None or birthday[0] != calendar.month_of(time_s):
        return None
    return program.birthday_multiplier_bp


def prepare_lookups(writer, item_count):
    """Before a large batch: make the profile cache complete and load the referee keys.

    A new member's purchase otherwise reads the profiles and referees indexes
    once each (a cursor, a get), though most members have neither. One pass
    over an index that is small against the batch costs less, and stays valid
    (Store.refresh and Store.forget drop it; set_member_profile and
    register_referral keep it current). Only reads: nothing written changes.
    """
    store = writer.store
    if item_count < limits.lookup_scan_items_min or (store.profiles_complete and store.referee_keys is not None):
        return
    bound = item_count * limits.lookup_scan_records_per_item
    if not store.profiles_complete:
        _load_profiles(writer, min(bound, limits.profile_cache_entries_max))
    if store.referee_keys is None:
        _load_referees(writer, bound)


def _load_profiles(writer, records_max):
    store, db = writer.store, writer.dbs.get(fmt.DB_PROFILES)
    records = 0 if db is None else writer.txn.stat(db)["entries"]
    if records > records_max or len(store.profile_cache) + records > limits.profile_cache_entries_max:
        return
    cache, overlay = store.profile_cache, writer.overlay[fmt.DB_PROFILES]
    if db is not None:
        # Keys are (length, member key, seq): a member's records are adjacent, latest last.
        latest = {}
        for key, value in writer.txn.cursor(db=db):
            latest[bytes(key[1:1 + key[0]])] = _birthday_of(value)
        for member_key, birthday in latest.items():
            # One already cached is as new or newer (set_member_profile in this write).
            cache.setdefault(member_key, birthday)
    for key in overlay:
        member_key = bytes(key[1:1 + key[0]])
        if member_key not in cache:
            cache[member_key] = current_birthday(writer.txn, writer.dbs, member_key, overlay)
    store.profiles_complete = True


def _load_referees(writer, records_max):
    db = writer.dbs.get(fmt.DB_REFEREES)
    keys = set()
    if db is not None:
        if writer.txn.stat(db)["entries"] > records_max:
            return
        keys.update(bytes(key) for key in writer.txn.cursor(db=db).iternext(keys=True, values=False))
    # A superset is enough (a key found is checked in the store): the overlay's keys are in.
    keys.update(writer.overlay[fmt.DB_REFEREES])
    writer.store.referee_keys = keys


def current_birthday(txn, dbs, member_key, overlay=None):
    """(month, day) of the member's latest profile, None when none or cleared."""
    prefix = fmt.profile_prefix(member_key)
    size = len(prefix) + fmt.PROFILE_SEQ.size
    if overlay:
        latest = max((key for key in overlay if len(key) == size and key.startswith(prefix)), default=None)
        if latest is not None:
            return _birthday_of(overlay[latest])
    db = dbs.get(fmt.DB_PROFILES)
    if db is None:
        return None
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix + b"\xff" * fmt.PROFILE_SEQ.size):
        found = cursor.prev()
    else:
        found = cursor.last()
    if not found:
        return None
    key = bytes(cursor.key())
    if len(key) != size or not key.startswith(prefix):
        return None
    return _birthday_of(cursor.value())


def _birthday_of(value):
    return (value[0], value[1]) if len(value) == 2 else None


def recorded_bonuses(entry, seq, order_key, end_seq):
    """The bonuses an applied purchase reported (its EARN at seq), and the purchaser's balance after them.

    entry: seq -> decoded journal entry; end_seq: one past the last entry. The
    bonuses follow the EARN entry, interleaved only with the referrer's EXPIRE
    that carries the same order id (§17).
    """
    bonuses = []
    earn = entry(seq)
    purchaser, balance = earn[6], earn[2]
    next_seq = seq + 1
    while next_seq < end_seq:
        kind, points, entry_balance, _, _, _, member_key, ref_key = entry(next_seq)
        if kind == fmt.KIND_BONUS:
            bonuses.append(Bonus(member_key.decode(), ref_key.decode(), points))
            if member_key == purchaser:
                balance = entry_balance
        elif not (kind == fmt.KIND_EXPIRE and ref_key == order_key and member_key != purchaser):
            break
        next_seq += 1
    return tuple(bonuses), balance


# --- pending points (§17) ------------------------------------------------------------------
# A lot is [release instant, expiry instant, points, credit seq, order key]. Its
# points are in the member's balance and in the expiry totals from the credit
# on; at its release instant they join the bucket of their expiry instant
# (no journal entry). While a member holds lots it has no debt: a clawback
# takes lots before it makes debt, and a credit pays debt before it fills a lot.


def lots_of(state):
    return state.engagement.lots if state.engagement is not None else ()


def due_points(state, time_s):
    """Points that expire at time_s: due buckets and due lots."""
    return state.due_points(time_s) + sum(lot[2] for lot in lots_of(state) if lot[1] <= time_s)


def expire_and_count(writer, state, time_s):
    """expire_due, with the points expired counted by issue month (§19)."""
    taken = {}
    expired = expire_due(state, time_s, writer.expiry_deltas, taken)
    writer.count_taken(time_s, fmt.COHORT_EXPIRED, taken)
    return expired


def expire_due(state, time_s, expiry_deltas, taken=None):
    """state.expire_due, lots included: their total is one EXPIRE entry (§5, §17).

    taken: issue month -> points, added to."""
    total = state.expire_due(time_s, expiry_deltas, taken)
    lots = lots_of(state)
    if lots and any(lot[1] <= time_s for lot in lots):
        expired = 0
        for lot in lots:
            if lot[1] <= time_s:
                expired += lot[2]
                expiry_deltas[lot[1]] = expiry_deltas.get(lot[1], 0) - lot[2]
                if taken is not None:
                    taken[lot[5]] = taken.get(lot[5], 0) + lot[2]
        state.engagement.lots = [lot for lot in lots if lot[1] > time_s]
        state.balance -= expired
        state.expired += expired
        total += expired
    return total


def release_due(state, time_s, expiry_deltas):
    """Lots whose release instant is <= time_s join their buckets; the balance does not change."""
    lots = lots_of(state)
    if not lots or all(lot[0] > time_s for lot in lots):
        return
    for lot in lots:
        if lot[0] <= time_s:
            # credit() would count the points in the expiry totals again: they are there already.
            state.credit(lot[2], lot[1], expiry_deltas, lot[5])
            state.balance -= lot[2]
            expiry_deltas[lot[1]] = expiry_deltas.get(lot[1], 0) - lot[2]
    state.engagement.lots = [lot for lot in lots if lot[0] > time_s]


def released_points(state, time_s):
    """Points of lots released by time_s and not expired at it (not yet in buckets)."""
    return sum(lot[2] for lot in lots_of(state) if lot[0] <= time_s < lot[1])


def available_points(state, time_s):
    """What a redemption or a negative adjustment may use at time_s: released, unexpired (§17)."""
    return state.unexpired_points(time_s) + released_points(state, time_s)


def credit_pending(state, points, release_s, instant, seq, order_key, expiry_deltas, month):
    """A purchase's credit: pays debt first, the rest joins the purchase's lot; return the debt paid."""
    paid = min(state.debt, points)
    state.debt -= paid
    state.balance += points
    rest = points - paid
    if rest == 0:
        return paid
    expiry_deltas[instant] = expiry_deltas.get(instant, 0) + rest
    for lot in state.engagement.lots:
        if lot[4] == order_key and lot[0] == release_s and lot[1] == instant:
            lot[2] += rest
            return paid
    state.engagement.lots.append([release_s, instant, rest, seq, order_key, month])
    return paid


def claw_back(state, order_key, points, expiry_deltas, taken):
    """Take `points` in the order of §17; return what none could cover (the debt to add).

    Due points have expired and due lots have been released before this. First
    the refunded order's own pending lot; then, by expiry instant, released
    points first and pending lots by release instant, then credit seq.
    """
    lots = lots_of(state)
    if not lots:
        return state.debit(points, expiry_deltas, taken)
    remaining = points
    for lot in lots:
        if lot[4] == order_key and remaining:
            remaining -= _take(lot, remaining, expiry_deltas, taken)
    buckets = {}
    for instant, bucket_points, _ in state.buckets:
        buckets[instant] = buckets.get(instant, 0) + bucket_points
    from_buckets = 0
    for instant in sorted(set(buckets) | {lot[1] for lot in lots}):
        if not remaining:
            break
        used = min(buckets.get(instant, 0), remaining)
        from_buckets += used
        remaining -= used
        for lot in sorted((lot for lot in lots if lot[1] == instant), key=lambda lot: (lot[0], lot[3])):
            if remaining:
                remaining -= _take(lot, remaining, expiry_deltas, taken)
    taken_from_lots = points - remaining - from_buckets
    state.engagement.lots = [lot for lot in lots if lot[2]]
    # The buckets used are a prefix of the soonest-expiring: debit takes exactly those.
    state.debit(from_buckets, expiry_deltas, taken)
    state.balance -= taken_from_lots + remaining
    return remaining


def _take(lot, wanted, expiry_deltas, taken):
    used = min(lot[2], wanted)
    lot[2] -= used
    expiry_deltas[lot[1]] = expiry_deltas.get(lot[1], 0) - used
    taken[lot[5]] = taken.get(lot[5], 0) + used
    return used
