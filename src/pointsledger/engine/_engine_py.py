"""The pure-Python engine: the readable reference of the accrual and balance logic.

`_engine_c.pyx` is its compiled twin and follows it function by function. Both
expose the same names (`__all__`): `MemberState`, the member's balance logic,
and `apply_purchases`, the hot path that prices and applies a batch of
purchases inside one write transaction (`writer.Writer`).
"""

from .. import calendar, limits
from . import engagement
from ..store import format as fmt
from ..errors import FailedPrecondition, InvalidArgument, LedgerError, already_used
from .member_engagement import Engagement
from ..validation import validate_amount, validate_id, validate_int, validate_time  # noqa: F401 (the engines' API)

__all__ = [
    "ENGINE_NAME", "MemberState", "apply_purchases", "journal_items", "member_items",
    "price_purchase", "sorted_items", "validate_id",
]

ENGINE_NAME = "python"
NEVER = limits.never_expires_s
# member record version -> (bucket layout, engagement state follows)
_BUCKET_LAYOUT = {
    fmt.MEMBER_RECORD_VERSION: (fmt.BUCKET, False),
    fmt.MEMBER_RECORD_VERSION_ENGAGED: (fmt.BUCKET, True),
    fmt.MEMBER_RECORD_VERSION_LOTS: (fmt.BUCKET_MONTH, False),
    fmt.MEMBER_RECORD_VERSION_LOTS_ENGAGED: (fmt.BUCKET_MONTH, True),
}


class MemberState:
    """One member's record: balances, tier state, buckets. Mutated in place."""

    __slots__ = (
        "balance", "debt", "tier_year", "spend_minor", "carried_rank", "earned",
        "redeemed", "expired", "clawed_back", "adjusted", "last_seq", "buckets", "engagement",
    )

    def __init__(self, tier_year):
        self.balance = 0
        self.debt = 0
        self.tier_year = tier_year
        self.spend_minor = 0
        self.carried_rank = 0
        self.earned = 0
        self.redeemed = 0
        self.expired = 0
        self.clawed_back = 0
        self.adjusted = 0
        self.last_seq = 0
        self.buckets = []  # [[expiry instant, points, issue month]], by (instant, issue month)
        self.engagement = None  # member_engagement.Engagement, once a rule of §14 needs it

    @classmethod
    def decode(cls, value):
        fields = fmt.MEMBER_HEAD.unpack_from(value)
        version = fields[0]
        if version not in _BUCKET_LAYOUT:
            raise ValueError(f"member record version {version} is not supported")
        state = cls(fields[3])
        (_, state.balance, state.debt, _, state.spend_minor, state.carried_rank,
         state.earned, state.redeemed, state.expired, state.clawed_back, state.adjusted,
         state.last_seq, bucket_count) = fields
        layout, engaged = _BUCKET_LAYOUT[version]
        offset = fmt.MEMBER_HEAD.size
        end = offset + bucket_count * layout.size
        if len(value) < end or (not engaged and len(value) != end):
            raise ValueError(f"member record of {len(value)} bytes has a bad length")
        if layout is fmt.BUCKET:  # a record of format 1-3: issue months unknown (0) until the upgrade
            state.buckets = [[instant, points, 0] for instant, points in fmt.BUCKET.iter_unpack(value[offset:end])]
        else:
            state.buckets = [list(bucket) for bucket in layout.iter_unpack(value[offset:end])]
        if engaged:
            state.engagement = Engagement.decode(value, end, layout is fmt.BUCKET_MONTH)
        return state

    def encode(self):
        version = (fmt.MEMBER_RECORD_VERSION_LOTS if self.engagement is None
                   else fmt.MEMBER_RECORD_VERSION_LOTS_ENGAGED)
        head = fmt.MEMBER_HEAD.pack(
            version, self.balance, self.debt, self.tier_year,
            self.spend_minor, self.carried_rank, self.earned, self.redeemed, self.expired,
            self.clawed_back, self.adjusted, self.last_seq, len(self.buckets),
        )
        value = head + b"".join(fmt.BUCKET_MONTH.pack(*bucket) for bucket in self.buckets)
        if self.engagement is not None:
            value += self.engagement.encode()
        return value

    # --- expiry (§5) ---------------------------------------------------------

    def due_points(self, time_s):
        """Points in buckets whose instant is <= time_s (they expire at time_s)."""
        total = 0
        for instant, points, _ in self.buckets:
            if instant > time_s:
                break
            total += points
        return total

    def unexpired_points(self, time_s):
        """Points still usable at time_s: buckets with instant > time_s."""
        return sum(points for instant, points, _ in self.buckets if instant > time_s)

    def expire_due(self, time_s, expiry_deltas, taken=None):
        """Drop the due buckets; return their total (the EXPIRE entry's size).

        taken: a dict issue month -> points, added to (§19's cohort counters).
        """
        total = 0
        while self.buckets and self.buckets[0][0] <= time_s:
            instant, points, month = self.buckets.pop(0)
            expiry_deltas[instant] = expiry_deltas.get(instant, 0) - points
            if taken is not None:
                taken[month] = taken.get(month, 0) + points
            total += points
        self.balance -= total
        self.expired += total
        return total

    # --- tiers (§4) ------------------------------------------------------------

    def rolled(self, year, program):
        """(tier_year, spend, carried_rank) after an event in `year`, without writing."""
        if year <= self.tier_year:
            return self.tier_year, self.spend_minor, self.carried_rank
        if year == self.tier_year + 1:
            # The tier earned by last year's spend is kept through this year (§4).
            carried = program.tier_rank_for_spend(self.spend_minor)
        else:
            carried = 0
        return year, 0, carried

    def roll_to(self, year, program):
        self.tier_year, self.spend_minor, self.carried_rank = self.rolled(year, program)

    # --- credits and debits (§5, §6) -------------------------------------------

    def credit(self, points, instant, expiry_deltas, month):
        """Pay debt first, put the rest in the bucket (instant, issue month); return the debt paid."""
        paid = min(self.debt, points)
        self.debt -= paid
        rest = points - paid
        self.balance += points
        if rest == 0:
            return paid
        expiry_deltas[instant] = expiry_deltas.get(instant, 0) + rest
        buckets = self.buckets
        index = len(buckets)
        # Credits arrive mostly in time order, so the bucket is usually the last.
        while index > 0 and (buckets[index - 1][0] > instant
                             or (buckets[index - 1][0] == instant and buckets[index - 1][2] > month)):
            index -= 1
        if index > 0 and buckets[index - 1][0] == instant and buckets[index - 1][2] == month:
            buckets[index - 1][1] += rest
        else:
            buckets.insert(index, [instant, rest, month])
        return paid

    def debit(self, points, expiry_deltas, taken=None):
        """Consume soonest-expiring first, oldest issue month first at one instant (§19);
        return what no bucket could cover. taken: issue month -> points, added to."""
        remaining = points
        buckets = self.buckets
        while remaining and buckets:
            instant, available, month = buckets[0]
            used = min(available, remaining)
            expiry_deltas[instant] = expiry_deltas.get(instant, 0) - used
            if taken is not None:
                taken[month] = taken.get(month, 0) + used
            remaining -= used
            if used == available:
                buckets.pop(0)
            else:
                buckets[0][1] = available - used
        self.balance -= points
        return remaining


def tier_rank(program, spend_minor, carried_rank):
    """max(tier_for(S), C), with C clamped to this version's tiers (§4, §15)."""
    return max(
        program.tier_rank_for_spend(spend_minor),
        min(carried_rank, len(program.tier_names) - 1),
    )


def price_purchase(program, amount_minor, category, tier, time_s, extra_bp=None):
    """Points for one purchase (§3): exact integers, one floor, cap after bonuses.

    extra_bp: one more multiplier inside the product (the birthday month, §17).
    """
    factors = [
        amount_minor,
        program.earn_points,
        program.category_bp(category),
        program.tier_multiplier_bp[tier],
    ]
    if extra_bp is not None:
        factors.append(extra_bp)
    bonus = 0
    for promotion in program.promotions:
        if program.promotion_matches(promotion, category, tier, amount_minor, time_s):
            factors.append(promotion.multiplier_bp)
            bonus += promotion.bonus_points
    numerator = 1
    for factor in factors:
        numerator *= factor
    denominator = program.earn_per_minor_units * limits.basis_points_per_unit ** (len(factors) - 2)
    points = numerator // denominator + bonus
    cap = program.max_points_per_purchase
    if cap and points > cap:
        points = cap
    return points


# --- the hot path ----------------------------------------------------------------


def apply_purchases(writer, order_ids, member_ids, amounts_minor, categories, times_s):
    """Apply a batch in order; one result tuple per item (see writer.ItemResult)."""
    count = len(order_ids)
    engagement.prepare_lookups(writer, count)
    results = []
    for index in range(count):
        try:
            results.append(_apply_purchase(
                writer, order_ids[index], member_ids[index], amounts_minor[index],
                categories[index], times_s[index],
            ))
        except LedgerError as error:
            results.append((error.code, 0, 0, 0, error))
    return results


def _apply_purchase(writer, order_id, member_id, amount_minor, category, time_s):
    order_key = validate_id("order_id", order_id)
    member_key = validate_id("member_id", member_id)
    amount_minor = validate_amount("amount_minor", amount_minor)
    category_key = validate_id("category", category, limits.category_bytes_max)
    time_s = validate_time("time_s", time_s)

    existing = writer.get(fmt.DB_ORDERS, order_key)
    if existing is not None:
        return _duplicate_purchase(writer, order_id, existing, member_key, amount_minor, category_key, time_s)

    program = writer.program_at(time_s)
    if program is None:
        raise FailedPrecondition("no programme is set: set one before recording purchases")

    state = writer.member(member_key)
    if program.engaged or (state is not None and state.engagement is not None):
        return engagement.apply_purchase(
            writer, order_key, member_key, amount_minor, category_key, category, time_s, program,
        )
    is_new = state is None
    year = calendar.year_of(time_s)
    if is_new:
        state = MemberState(year)
    due = state.due_points(time_s)
    tier_year, spend, carried = state.rolled(year, program)
    tier = tier_rank(program, spend, carried)
    points = price_purchase(program, amount_minor, category, tier, time_s)
    if points > limits.INT64_MAX:
        raise InvalidArgument("points", points, "the purchase would earn more than int64 points")
    if state.balance - due + points > limits.INT64_MAX:
        raise InvalidArgument("balance", state.balance - due + points, "the balance would overflow int64")
    writer.check_credit(points)
    writer.check_category(category_key)
    counts_towards_year = year == tier_year
    if counts_towards_year and spend + amount_minor > limits.INT64_MAX:
        raise InvalidArgument("amount_minor", amount_minor, "the member's spend would overflow int64")

    # Every check passed: from here on the purchase is applied.
    if writer.tier_ranks is not None:
        writer.tier_ranks.append(tier)
    if is_new:
        writer.add_member(member_key, state)
    if due:
        taken = {}
        expired = state.expire_due(time_s, writer.expiry_deltas, taken)
        writer.append_entry(fmt.KIND_EXPIRE, -expired, state, member_key, order_key, time_s, program.version)
        writer.count(time_s, fmt.COUNTER_EXPIRED, expired)
        writer.count_taken(time_s, fmt.COHORT_EXPIRED, taken)
    state.tier_year, state.spend_minor, state.carried_rank = tier_year, spend, carried
    if program.expiry_months:
        instant = calendar.expiry_instant(time_s, program.expiry_months)
    else:
        instant = NEVER
    month = calendar.issue_month_of(time_s)
    paid = state.credit(points, instant, writer.expiry_deltas, month)
    if paid:
        writer.count_cohort(month, time_s, fmt.COHORT_TAKEN_BACK, paid)
    writer.count_amount(time_s, amount_minor)
    if counts_towards_year:
        state.spend_minor += amount_minor
    state.earned += points
    seq = writer.append_entry(fmt.KIND_EARN, points, state, member_key, order_key, time_s, program.version)
    writer.mark_dirty(member_key, state)
    writer.count(time_s, fmt.COUNTER_EARNED, points)
    writer.count(time_s, fmt.COUNTER_PURCHASES, 1)
    category_code = writer.category_code(category_key)
    if writer.orders_kept is None or order_key in writer.orders_kept:
        writer.put(fmt.DB_ORDERS, order_key, fmt.encode_order(amount_minor, time_s, seq, 0, 0, category_code))
    return ("APPLIED", seq, points, state.balance, None)


def _duplicate_purchase(writer, order_id, existing, member_key, amount_minor, category_key, time_s):
    amount, time, seq, _, _, category_code = fmt.decode_order(existing)
    entry = writer.entry(seq)
    _, points, balance, _, _, _, entry_member, _ = entry
    stored_category = writer.category_name(category_code)
    same = (
        entry_member == member_key
        and amount == amount_minor
        and time == time_s
        and stored_category == category_key
    )
    if not same:
        raise already_used("order_id", order_id, "purchase", (
            ("member_id", entry_member.decode(), member_key.decode()),
            ("amount_minor", amount, amount_minor),
            ("category", stored_category.decode(), category_key.decode()),
            ("time_s", time, time_s),
        ))
    if seq + 1 < writer.next_seq:
        bonuses, bonus_balance = engagement.recorded_bonuses(
            writer.entry, seq, validate_id("order_id", order_id), writer.next_seq)
        if bonuses:
            return ("DUPLICATE", seq, points, bonus_balance, None, bonuses)
    return ("DUPLICATE", seq, points, balance, None)



# --- what writer.flush hands to putmulti -------------------------------------------


class _SortedItems(list):
    @property
    def first_key(self):
        """The smallest key (None when empty), for putmulti's append decision."""
        return self[0][0] if self else None


def sorted_items(changes):
    """sorted(changes.items()) for a dict with bytes keys."""
    return _SortedItems(sorted(changes.items()))


def member_items(dirty_members):
    """[(member key, encoded record)] in key order."""
    return _SortedItems((key, dirty_members[key].encode()) for key in sorted(dirty_members))


def journal_items(first_seq, values):
    """[(seq key, value)] of the journal values; seq keys are big-endian u64."""
    return zip(map(fmt.U64.pack, range(first_seq, first_seq + len(values))), values)
