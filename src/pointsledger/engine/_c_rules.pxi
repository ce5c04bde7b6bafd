# Part of _engine_c.pyx (included there): the programme in C tables, and price_purchase.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- the programme in C tables -----------------------------------------------------


@cython.final
cdef class _CategoryRule:
    cdef int64_t multiplier_bp
    cdef uint64_t promotion_mask  # bit i: promotion i's category filter matches


@cython.final
cdef class _Rules:
    """A CompiledProgram as C arrays. Programmes are immutable, so this is built once."""
    cdef object program
    cdef int64_t version
    cdef int64_t earn_points
    cdef int64_t earn_per_minor_units
    cdef int64_t max_points_per_purchase
    cdef int64_t expiry_months
    cdef int tier_count
    cdef int64_t tier_min_spend_minor[RULES_MAX]
    cdef int64_t tier_multiplier_bp[RULES_MAX]
    cdef int promotion_count
    cdef int64_t promotion_start_s[RULES_MAX]
    cdef int64_t promotion_end_s[RULES_MAX]
    cdef int64_t promotion_multiplier_bp[RULES_MAX]
    cdef int64_t promotion_bonus_points[RULES_MAX]
    cdef int64_t promotion_min_amount_minor[RULES_MAX]
    cdef uint64_t promotion_tier_mask[RULES_MAX]
    cdef dict categories  # category (str) -> _CategoryRule
    cdef bint engaged  # an engagement rule of §14 is on: purchases take the engaged path
    # The §17 rules, for the engaged path's C fast path (apply_engaged_fast).
    cdef int64_t welcome_bonus
    cdef int64_t pending_days
    cdef int64_t birthday_bp  # -1: no birthday rule
    cdef bint has_referral
    cdef int64_t referral_min_purchase_minor
    cdef bint needs_engagement  # milestones or pending days: a purchase keeps engagement state
    cdef bint engaged_in_c  # every §17 value in its validated range: the fast path may run
    cdef tuple milestones  # ((milestone key, by purchases, target, bonus points, rule ref_id), ...)
    # The milestones in C (engaged_in_c): keys, rule ref_ids (bytes, and str for the results), numbers.
    cdef int milestone_count
    cdef tuple milestone_keys
    cdef tuple milestone_rules
    cdef tuple milestone_rule_ids
    cdef bint milestone_by_purchases[RULES_MAX]
    cdef int64_t milestone_target[RULES_MAX]
    cdef int64_t milestone_bonus[RULES_MAX]
    cdef bint in_c  # every value in the validated ranges the 128-bit product relies on

    cdef _CategoryRule category_rule(self, category):
        cdef PyObject* found = PyDict_GetItem(self.categories, category)
        if found != NULL:
            return <_CategoryRule>found
        cdef _CategoryRule rule = _CategoryRule.__new__(_CategoryRule)
        bp = self.program.category_bp(category)
        # Outside the validated range the twin prices it (price sees in_c false).
        rule.multiplier_bp = bp if 0 <= bp <= limits.multiplier_bp_max else 0
        if rule.multiplier_bp != bp:
            self.in_c = False
        cdef uint64_t mask = 0
        cdef int index
        for index, promotion in enumerate(self.program.promotions):
            if promotion.categories is None or category in promotion.categories:
                mask |= (<uint64_t>1) << index
        rule.promotion_mask = mask
        if len(self.categories) >= 100_000:  # a bound, not a working size
            self.categories.clear()
        self.categories[category] = rule
        return rule

    cdef inline int tier_rank_for_spend(self, int64_t spend_minor) noexcept:
        cdef int rank = 0
        cdef int index
        for index in range(self.tier_count):
            if spend_minor >= self.tier_min_spend_minor[index]:
                rank = index
        return rank

    cdef inline int tier_rank(self, int64_t spend_minor, int64_t carried_rank) noexcept:
        cdef int rank = self.tier_rank_for_spend(spend_minor)
        cdef int64_t highest = self.tier_count - 1
        cdef int64_t carried = carried_rank if carried_rank < highest else highest
        return <int>carried if carried > rank else rank

    cdef int price(self, int64_t amount_minor, _CategoryRule category, int tier, int64_t time_s,
                   int64_t* points, int64_t extra_bp=-1) noexcept:
        """price_purchase in 128-bit integers: 0 with *points set, or 1 when the
        product overflows 128 bits or the points exceed int64 (the caller then
        takes the twin's exact Python-int path). extra_bp >= 0: the birthday factor."""
        if not self.in_c:
            return 1
        # amount <= 2^63, earn.points and every multiplier <= 10^6: these four
        # factors stay below 2^127; only further factors need an overflow check.
        cdef pl_u128 numerator = <pl_u128>amount_minor * <pl_u128>self.earn_points
        numerator *= <pl_u128>category.multiplier_bp
        numerator *= <pl_u128>self.tier_multiplier_bp[tier]
        cdef pl_u128 bonus = 0
        cdef int divisions = 2  # one per basis-point factor
        cdef int index
        cdef uint64_t factor
        if extra_bp >= 0:  # the twin multiplies it in before the promotions; the product is the same
            factor = <uint64_t>extra_bp
            if factor == 0:
                numerator = 0
            elif numerator > PL_U128_MAX / factor:
                return 1
            else:
                numerator *= factor
            divisions += 1
        for index in range(self.promotion_count):
            if not (self.promotion_start_s[index] <= time_s < self.promotion_end_s[index]):
                continue
            if not (category.promotion_mask >> index) & 1:
                continue
            if not (self.promotion_tier_mask[index] >> tier) & 1:
                continue
            if amount_minor < self.promotion_min_amount_minor[index]:
                continue
            factor = <uint64_t>self.promotion_multiplier_bp[index]
            if factor == 0:
                numerator = 0
            elif numerator > PL_U128_MAX / factor:
                return 1
            else:
                numerator *= factor
            bonus += <pl_u128>self.promotion_bonus_points[index]
            divisions += 1
        # floor(n / (per x 10000^k)) as successive floors: exact for non-negative integers.
        cdef pl_u128 quotient
        cdef uint64_t small
        if pl_u128_fits_u64(numerator):
            small = <uint64_t>numerator / <uint64_t>self.earn_per_minor_units
            while divisions and small:
                small /= BASIS_POINTS_PER_UNIT
                divisions -= 1
            quotient = small
        else:
            quotient = numerator / <pl_u128>self.earn_per_minor_units
            while divisions and quotient:
                quotient /= BASIS_POINTS_PER_UNIT
                divisions -= 1
        quotient += bonus
        if self.max_points_per_purchase and quotient > <pl_u128>self.max_points_per_purchase:
            quotient = <pl_u128>self.max_points_per_purchase
        if quotient > <pl_u128>INT64_MAX:
            return 1
        points[0] = <int64_t>quotient
        return 0


cdef dict _RULES = {}  # id(program) -> _Rules; the _Rules holds the programme, so ids stay unique


cdef _Rules _rules_for(program):
    cdef PyObject* found = PyDict_GetItem(_RULES, id(program))
    if found != NULL and (<_Rules>found).program is program:
        return <_Rules>found
    cdef _Rules rules = _Rules.__new__(_Rules)
    cdef int index
    rules.program = program
    rules.version = program.version
    rules.earn_points = program.earn_points
    rules.earn_per_minor_units = program.earn_per_minor_units
    rules.max_points_per_purchase = program.max_points_per_purchase
    rules.expiry_months = program.expiry_months
    rules.engaged = program.engaged
    birthday = program.birthday_multiplier_bp
    rules.engaged_in_c = (
        0 <= program.welcome_bonus <= limits.bonus_points_max
        and 0 <= program.pending_days <= limits.pending_days_max
        and (birthday is None or limits.multiplier_bp_min <= birthday <= limits.multiplier_bp_max)
        and (program.referral is None
             or (0 <= program.referral.referrer_points <= limits.bonus_points_max
                 and 0 <= program.referral.referee_points <= limits.bonus_points_max
                 and INT64_MIN <= program.referral.min_purchase_minor <= INT64_MAX))
        and len(program.milestones) <= RULES_MAX
        and all(0 <= milestone.target <= INT64_MAX and 0 <= milestone.bonus_points <= limits.bonus_points_max
                for milestone in program.milestones)
    )
    if rules.engaged_in_c:
        rules.welcome_bonus = program.welcome_bonus
        rules.pending_days = program.pending_days
        rules.birthday_bp = -1 if birthday is None else birthday
        rules.milestone_count = len(program.milestones)
        rules.milestone_keys = tuple(milestone.milestone_id.encode() for milestone in program.milestones)
        rules.milestone_rules = tuple(_engagement.MILESTONE_RULE + key for key in rules.milestone_keys)
        rules.milestone_rule_ids = tuple(key.decode() for key in rules.milestone_rules)
        for index, milestone in enumerate(program.milestones):
            rules.milestone_by_purchases[index] = milestone.kind == "purchases"
            rules.milestone_target[index] = milestone.target
            rules.milestone_bonus[index] = milestone.bonus_points
    rules.has_referral = program.referral is not None
    if rules.has_referral and rules.engaged_in_c:
        rules.referral_min_purchase_minor = program.referral.min_purchase_minor
    rules.needs_engagement = bool(program.milestones or program.pending_days)
    rules.milestones = tuple(
        (milestone.milestone_id.encode(), milestone.kind == "purchases", milestone.target,
         milestone.bonus_points, _engagement.MILESTONE_RULE + milestone.milestone_id.encode())
        for milestone in program.milestones
    )
    if len(program.tier_names) > RULES_MAX or len(program.promotions) > RULES_MAX:
        raise RuntimeError("a programme with more than 64 tiers or promotions passed validation")
    rules.tier_count = len(program.tier_names)
    for index in range(rules.tier_count):
        rules.tier_min_spend_minor[index] = program.tier_min_spend_minor[index]
        rules.tier_multiplier_bp[index] = program.tier_multiplier_bp[index]
    rules.promotion_count = len(program.promotions)
    for index, promotion in enumerate(program.promotions):
        rules.promotion_start_s[index] = promotion.start_s
        rules.promotion_end_s[index] = promotion.end_s
        rules.promotion_multiplier_bp[index] = promotion.multiplier_bp
        rules.promotion_bonus_points[index] = promotion.bonus_points
        rules.promotion_min_amount_minor[index] = promotion.min_amount_minor
        rules.promotion_tier_mask[index] = promotion.tier_mask
    rules.categories = {}
    # Compiled programmes are validated (program.py); anything else is priced by the twin.
    rules.in_c = (
        limits.earn_value_min <= program.earn_points <= limits.earn_value_max
        and limits.earn_value_min <= program.earn_per_minor_units <= limits.earn_value_max
        and 0 <= program.max_points_per_purchase <= INT64_MAX
        and all(limits.multiplier_bp_min <= bp <= limits.multiplier_bp_max for bp in program.tier_multiplier_bp)
        and all(limits.multiplier_bp_min <= promotion.multiplier_bp <= limits.multiplier_bp_max
                and 0 <= promotion.bonus_points <= INT64_MAX for promotion in program.promotions)
    )
    if len(_RULES) >= 64:  # programmes are reloaded after a failed write; keep this bounded
        _RULES.clear()
    _RULES[id(program)] = rules
    return rules


def price_purchase(program, amount_minor, category, tier, time_s, extra_bp=None):
    """Points for one purchase (§3): exact integers, one floor, cap after bonuses."""
    cdef int64_t points
    cdef _Rules rules
    if (extra_bp is None and type(amount_minor) is int and type(tier) is int and type(time_s) is int
            and PyUnicode_CheckExact(category)
            and 0 <= amount_minor <= INT64_MAX and INT64_MIN <= time_s <= INT64_MAX):
        rules = _rules_for(program)
        if 0 <= tier < rules.tier_count:
            if rules.price(amount_minor, rules.category_rule(category), tier, time_s, &points) == 0:
                return points
    # Huge products, points past int64, unusual argument types and an extra factor: the twin's Python ints.
    return _py_price_purchase(program, amount_minor, category, tier, time_s, extra_bp)
