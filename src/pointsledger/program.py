"""The programme document (§3, §15): validation, canonical form, compilation.

A document is validated whole and every problem is listed. A valid document is
compiled into `CompiledProgram`, plain integers only (multipliers in basis
points), which is all the engines see.
"""

import dataclasses
import decimal
import json

from . import calendar, limits
from .errors import InvalidProgram, shown

REQUIRED_KEYS = ("currency", "earn", "tiers", "point_value")
OPTIONAL_DEFAULTS = {
    "default_multiplier": 1,
    "category_multipliers": {},
    "promotions": [],
    "max_points_per_purchase": 0,
    "expiry_months": 0,
    "effective_from": None,
    # §17 engagement rules: absent means the rule is off.
    "welcome_bonus": 0,
    "pending_days": 0,
    "referral": None,
    "milestones": [],
    "birthday": None,
}
REFERRAL_KEYS = ("referrer_points", "referee_points", "min_purchase_minor")
MILESTONE_KINDS = ("purchases", "spend_minor")
PROMOTION_REQUIRED = ("id", "start", "end", "multiplier")
PROMOTION_OPTIONAL = ("bonus_points", "min_amount_minor", "categories", "tiers")

EXAMPLE_PROGRAM = {
    "currency": "USD",
    "earn": {"points": 1, "per_minor_units": 100},
    "default_multiplier": 1,
    "category_multipliers": {"electronics": 2, "gift_cards": 0},
    "tiers": [
        {"name": "member", "min_spend_minor": 0, "multiplier": 1},
        {"name": "silver", "min_spend_minor": 50000, "multiplier": decimal.Decimal("1.25")},
        {"name": "gold", "min_spend_minor": 200000, "multiplier": decimal.Decimal("1.5")},
    ],
    "promotions": [
        {
            "id": "double-december",
            "start": "2026-12-01T00:00:00Z",
            "end": "2027-01-01T00:00:00Z",
            "multiplier": 2,
            "bonus_points": 0,
            "categories": None,
            "tiers": None,
            "min_amount_minor": 0,
        }
    ],
    "max_points_per_purchase": 0,
    "expiry_months": 12,
    "point_value": "0.01",
}


@dataclasses.dataclass(frozen=True)
class Promotion:
    promotion_id: str
    start_s: int
    end_s: int
    multiplier_bp: int
    bonus_points: int
    min_amount_minor: int
    categories: frozenset | None  # category names; None matches every category
    tier_mask: int  # bit r set when tier rank r matches; all ones when unfiltered


@dataclasses.dataclass(frozen=True)
class Referral:
    referrer_points: int
    referee_points: int
    min_purchase_minor: int


@dataclasses.dataclass(frozen=True)
class Milestone:
    milestone_id: str
    kind: str  # "purchases" or "spend_minor"
    target: int
    bonus_points: int


@dataclasses.dataclass(frozen=True)
class CompiledProgram:
    version: int
    effective_from_s: int
    earn_points: int
    earn_per_minor_units: int
    default_multiplier_bp: int
    category_multiplier_bp: dict
    tier_names: tuple
    tier_min_spend_minor: tuple
    tier_multiplier_bp: tuple
    promotions: tuple
    max_points_per_purchase: int
    expiry_months: int
    point_value: decimal.Decimal
    currency: str
    # §17 engagement rules; the defaults are "off".
    welcome_bonus: int = 0
    pending_days: int = 0
    referral: Referral | None = None
    milestones: tuple = ()
    birthday_multiplier_bp: int | None = None

    @property
    def engaged(self):
        """Whether any engagement rule is on: purchases then take the engagement path."""
        return bool(
            self.welcome_bonus or self.pending_days or self.referral is not None
            or self.milestones or self.birthday_multiplier_bp is not None
        )

    def tier_rank_for_spend(self, spend_minor):
        rank = 0
        for index, threshold in enumerate(self.tier_min_spend_minor):
            if spend_minor >= threshold:
                rank = index
        return rank

    def category_bp(self, category):
        return self.category_multiplier_bp.get(category, self.default_multiplier_bp)

    def promotion_matches(self, promotion, category, tier_rank, amount_minor, time_s):
        """Whether a promotion applies to one purchase (§3)."""
        if not promotion.start_s <= time_s < promotion.end_s:
            return False
        if promotion.categories is not None and category not in promotion.categories:
            return False
        if not (promotion.tier_mask >> tier_rank) & 1:
            return False
        return amount_minor >= promotion.min_amount_minor


def points_for(numerator_factors, per_minor_units, bonus_points, cap):
    """floor(product / (per_minor_units x 10000^k)) + bonuses, then the cap.

    `numerator_factors` is (amount, earn.points, multiplier_bp...): every factor
    after the first two is in basis points. Exact, Python integers.
    """
    numerator = 1
    for factor in numerator_factors:
        numerator *= factor
    denominator = per_minor_units * limits.basis_points_per_unit ** (len(numerator_factors) - 2)
    points = numerator // denominator + bonus_points
    if cap and points > cap:
        points = cap
    return points


# --- canonical JSON -----------------------------------------------------------


def parse_document(document):
    """A document from JSON text/bytes (numbers as Decimal) or a Python dict."""
    if isinstance(document, (bytes, bytearray)):
        document = document.decode("utf-8")
    if isinstance(document, str):
        if len(document.encode("utf-8")) > limits.program_document_bytes_max:
            raise InvalidProgram([f"document: larger than {limits.program_document_bytes_max} bytes"])
        too_deep = InvalidProgram([f"document: nested deeper than {limits.program_document_depth_max} levels"])
        try:
            parsed = json.loads(document, parse_float=decimal.Decimal, parse_int=int)
        except ValueError as error:
            raise InvalidProgram([f"document: not valid JSON ({error})"]) from None
        except RecursionError:  # nested deeper than the parser's stack can follow
            raise too_deep from None
        if _depth_exceeds(parsed, limits.program_document_depth_max):
            raise too_deep
        return parsed
    if _depth_exceeds(document, limits.program_document_depth_max):
        raise InvalidProgram([f"document: nested deeper than {limits.program_document_depth_max} levels"])
    return _floats_to_decimal(document)


def _depth_exceeds(value, depth_max):
    """Whether objects and arrays nest deeper than depth_max (iterative: no recursion to overflow)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > depth_max:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _floats_to_decimal(value):
    # A float typed into a Python dict (1.25) is taken by its shortest repr, which
    # is the decimal the user wrote; it never takes part in arithmetic.
    if isinstance(value, float):
        return decimal.Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _floats_to_decimal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_floats_to_decimal(item) for item in value]
    return value


def canonical_json(value):
    """Sorted keys, no spaces, decimals as JSON numbers: the stored bytes."""
    if isinstance(value, dict):
        items = ",".join(
            json.dumps(key) + ":" + canonical_json(value[key]) for key in sorted(value)
        )
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


# --- validation ---------------------------------------------------------------


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(problems, path, value, low, high):
    if not _is_int(value):
        problems.append(f"{path}: must be an integer (got {shown(value)})")
        return None
    if not low <= value <= high:
        problems.append(f"{path}: must be between {low} and {high} (got {shown(value)})")
        return None
    return value


def multiplier_to_bp(value):
    """A multiplier (int or Decimal, at most 4 places) in basis points, or None."""
    if _is_int(value):
        quantity = decimal.Decimal(value)
    elif isinstance(value, decimal.Decimal) and value.is_finite():
        quantity = value
    else:
        return None
    scaled = quantity * limits.basis_points_per_unit
    if scaled != scaled.to_integral_value():
        return None
    bp = int(scaled)
    if not limits.multiplier_bp_min <= bp <= limits.multiplier_bp_max:
        return None
    return bp


def _check_multiplier(problems, path, value):
    bp = multiplier_to_bp(value)
    if bp is None:
        problems.append(
            f"{path}: must be a number from 0 to 100 with at most 4 decimal places (got {shown(value)})"
        )
    return bp


def check_text(value, min_bytes, max_bytes):
    """None when `value` is a str of the allowed UTF-8 size without control characters."""
    if not isinstance(value, str):
        return "must be a string"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if not min_bytes <= size <= max_bytes:
        return f"must be {min_bytes} to {max_bytes} bytes of UTF-8"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return "must not contain control characters"
    return None


def _check_name(problems, path, value, max_bytes):
    reason = check_text(value, 1, max_bytes)
    if reason:
        problems.append(f"{path}: {reason} (got {shown(value)})")
        return None
    return value


def parse_program_time(value, path, problems, low, high_inclusive):
    """Unix seconds or YYYY-MM-DDTHH:MM:SSZ / +00:00 within [low, high]."""
    if _is_int(value):
        time_s = value
    elif isinstance(value, str):
        time_s = calendar.parse_utc(value)
        if time_s is None:
            problems.append(
                f"{path}: must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ (got {shown(value)})"
            )
            return None
    else:
        problems.append(f"{path}: must be Unix seconds or an ISO 8601 UTC string (got {shown(value)})")
        return None
    if not low <= time_s <= high_inclusive:
        problems.append(
            f"{path}: must be from {calendar.format_utc(low)} to {calendar.format_utc(high_inclusive)} (got {shown(value)})"
        )
        return None
    return time_s


def _validate_tiers(problems, tiers):
    if not isinstance(tiers, list) or not tiers:
        problems.append(f"tiers: must be a non-empty list (got {tiers!r})")
        return None
    if len(tiers) > limits.tiers_max:
        problems.append(f"tiers: at most {limits.tiers_max} tiers (got {len(tiers)})")
        return None
    names, thresholds, multipliers = [], [], []
    for index, tier in enumerate(tiers):
        path = f"tiers[{index}]"
        if not isinstance(tier, dict):
            problems.append(f"{path}: must be an object (got {tier!r})")
            continue
        for key in sorted(set(tier) - {"name", "min_spend_minor", "multiplier"}):
            problems.append(f"{path}.{key}: unknown key")
        for key in ("name", "min_spend_minor", "multiplier"):
            if key not in tier:
                problems.append(f"{path}.{key}: required")
        name = _check_name(problems, f"{path}.name", tier.get("name"), limits.tier_name_bytes_max) if "name" in tier else None
        if name is not None and name in names:
            problems.append(f"{path}.name: duplicate tier name {name!r}")
        threshold = (
            _check_int(problems, f"{path}.min_spend_minor", tier["min_spend_minor"], 0, limits.INT64_MAX)
            if "min_spend_minor" in tier
            else None
        )
        if threshold is not None:
            if index == 0 and threshold != 0:
                problems.append(f"{path}.min_spend_minor: the first tier must start at 0 (got {threshold})")
            if index > 0 and thresholds and thresholds[-1] is not None and threshold <= thresholds[-1]:
                problems.append(
                    f"{path}.min_spend_minor: thresholds must be strictly ascending (got {threshold} after {thresholds[-1]})"
                )
        multiplier = _check_multiplier(problems, f"{path}.multiplier", tier["multiplier"]) if "multiplier" in tier else None
        names.append(name)
        thresholds.append(threshold)
        multipliers.append(multiplier)
    return names, thresholds, multipliers


def _validate_promotion(problems, index, promotion, tier_names, seen_ids):
    path = f"promotions[{index}]"
    if not isinstance(promotion, dict):
        problems.append(f"{path}: must be an object (got {promotion!r})")
        return None
    for key in sorted(set(promotion) - set(PROMOTION_REQUIRED) - set(PROMOTION_OPTIONAL)):
        problems.append(f"{path}.{key}: unknown key")
    for key in PROMOTION_REQUIRED:
        if key not in promotion:
            problems.append(f"{path}.{key}: required")
    for key in ("bonus_points", "min_amount_minor"):
        if key in promotion and promotion[key] is None:
            problems.append(f"{path}.{key}: must not be null")
    promotion_id = None
    if "id" in promotion:
        promotion_id = _check_name(problems, f"{path}.id", promotion["id"], limits.id_bytes_max)
        if promotion_id is not None and promotion_id in seen_ids:
            problems.append(f"{path}.id: duplicate promotion id {promotion_id!r}")
        seen_ids.add(promotion_id)
    high = limits.promotion_time_s_max
    start = parse_program_time(promotion["start"], f"{path}.start", problems, limits.time_s_min, high) if "start" in promotion else None
    end = parse_program_time(promotion["end"], f"{path}.end", problems, limits.time_s_min, high) if "end" in promotion else None
    if start is not None and end is not None and not start < end:
        problems.append(f"{path}.end: must be after start (got {promotion['end']!r})")
    multiplier = _check_multiplier(problems, f"{path}.multiplier", promotion["multiplier"]) if "multiplier" in promotion else None
    bonus = promotion.get("bonus_points", 0)
    bonus = _check_int(problems, f"{path}.bonus_points", bonus, 0, limits.INT64_MAX) if bonus is not None else None
    minimum = promotion.get("min_amount_minor", 0)
    minimum = _check_int(problems, f"{path}.min_amount_minor", minimum, 0, limits.INT64_MAX) if minimum is not None else None
    categories = promotion.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not categories:
            problems.append(f"{path}.categories: must be null or a non-empty list (got {categories!r})")
            categories = None
        else:
            for position, category in enumerate(categories):
                _check_name(problems, f"{path}.categories[{position}]", category, limits.category_bytes_max)
            categories = frozenset(category for category in categories if isinstance(category, str))
    tier_mask = (1 << limits.tiers_max) - 1
    tiers = promotion.get("tiers")
    if tiers is not None:
        if not isinstance(tiers, list) or not tiers:
            problems.append(f"{path}.tiers: must be null or a non-empty list (got {tiers!r})")
        else:
            tier_mask = 0
            for position, name in enumerate(tiers):
                if not isinstance(name, str) or name not in tier_names:
                    problems.append(f"{path}.tiers[{position}]: not a tier of this programme (got {name!r})")
                else:
                    tier_mask |= 1 << tier_names.index(name)
    if None in (promotion_id, start, end, multiplier, bonus, minimum):
        return None
    return Promotion(promotion_id, start, end, multiplier, bonus, minimum, categories, tier_mask)


def validate(document):
    """Return (problems, compiled-fields dict). `problems` lists every error."""
    problems = []
    if not isinstance(document, dict):
        return [f"document: must be a JSON object (got {type(document).__name__})"], None
    for key in sorted(set(document) - set(REQUIRED_KEYS) - set(OPTIONAL_DEFAULTS)):
        problems.append(f"{key}: unknown key")
    for key in REQUIRED_KEYS:
        if key not in document:
            problems.append(f"{key}: required")
    for key in OPTIONAL_DEFAULTS:
        if key in document and document[key] is None:
            problems.append(f"{key}: must not be null (leave it out for the default)")
    fields = {}
    currency = document.get("currency")
    if "currency" in document:
        if not (isinstance(currency, str) and len(currency) == 3 and all("A" <= c <= "Z" for c in currency)):
            problems.append(f"currency: must be three capital letters (got {currency!r})")
        fields["currency"] = currency
    earn = document.get("earn")
    if "earn" in document:
        if not isinstance(earn, dict):
            problems.append(f"earn: must be an object (got {earn!r})")
        else:
            for key in sorted(set(earn) - {"points", "per_minor_units"}):
                problems.append(f"earn.{key}: unknown key")
            for key in ("points", "per_minor_units"):
                if key not in earn:
                    problems.append(f"earn.{key}: required")
                else:
                    fields[f"earn_{key}"] = _check_int(
                        problems, f"earn.{key}", earn[key], limits.earn_value_min, limits.earn_value_max
                    )
    default = document.get("default_multiplier", 1)
    if default is not None:
        fields["default_multiplier_bp"] = _check_multiplier(problems, "default_multiplier", default)
    category_multipliers = document.get("category_multipliers", {})
    fields["category_multiplier_bp"] = {}
    if category_multipliers is not None:
        if not isinstance(category_multipliers, dict):
            problems.append(f"category_multipliers: must be an object (got {category_multipliers!r})")
        else:
            for name, value in category_multipliers.items():
                path = f"category_multipliers.{name}"
                if _check_name(problems, path, name, limits.category_bytes_max) is not None:
                    fields["category_multiplier_bp"][name] = _check_multiplier(problems, path, value)
    tier_names = []
    if "tiers" in document:
        validated = _validate_tiers(problems, document["tiers"])
        if validated:
            tier_names = [name for name in validated[0] if name is not None]
            fields["tiers"] = validated
    promotions = document.get("promotions", [])
    compiled_promotions = []
    if promotions is not None:
        if not isinstance(promotions, list):
            problems.append(f"promotions: must be a list (got {promotions!r})")
        elif len(promotions) > limits.promotions_max:
            problems.append(f"promotions: at most {limits.promotions_max} (got {len(promotions)})")
        else:
            seen_ids = set()
            for index, promotion in enumerate(promotions):
                compiled_promotions.append(
                    _validate_promotion(problems, index, promotion, tier_names, seen_ids)
                )
    fields["promotions"] = compiled_promotions
    cap = document.get("max_points_per_purchase", 0)
    if cap is not None:
        fields["max_points_per_purchase"] = _check_int(problems, "max_points_per_purchase", cap, 0, limits.INT64_MAX)
    expiry = document.get("expiry_months", 0)
    if expiry is not None:
        fields["expiry_months"] = _check_int(problems, "expiry_months", expiry, 0, limits.expiry_months_max)
    if "point_value" in document:
        fields["point_value"] = _check_point_value(problems, document["point_value"])
    _validate_engagement(problems, document, fields)
    effective = document.get("effective_from")
    if effective is not None:
        fields["effective_from"] = parse_program_time(
            effective, "effective_from", problems, limits.time_s_min, limits.time_s_max_exclusive - 1
        )
    return problems, fields


def _check_object(problems, path, value, required, optional):
    """Whether value is an object; lists its unknown, missing and null keys."""
    if not isinstance(value, dict):
        problems.append(f"{path}: must be an object (got {value!r})")
        return False
    for key in sorted(set(value) - set(required) - set(optional)):
        problems.append(f"{path}.{key}: unknown key")
    for key in required:
        if key not in value:
            problems.append(f"{path}.{key}: required")
    for key in (*required, *optional):
        if key in value and value[key] is None:
            problems.append(f"{path}.{key}: must not be null")
    return True


def _validate_engagement(problems, document, fields):
    """The §17 keys: welcome_bonus, pending_days, referral, milestones, birthday."""
    welcome = document.get("welcome_bonus", 0)
    if welcome is not None:
        fields["welcome_bonus"] = _check_int(problems, "welcome_bonus", welcome, 0, limits.bonus_points_max)
    pending = document.get("pending_days", 0)
    if pending is not None:
        fields["pending_days"] = _check_int(problems, "pending_days", pending, 0, limits.pending_days_max)
    referral = document.get("referral")
    fields["referral"] = None
    if referral is not None and _check_object(
            problems, "referral", referral, REFERRAL_KEYS[:2], REFERRAL_KEYS[2:]):
        values = [
            _check_int(problems, f"referral.{key}", referral[key], 0, limits.bonus_points_max)
            if referral.get(key) is not None else None
            for key in REFERRAL_KEYS[:2]
        ]
        minimum = referral.get("min_purchase_minor", 0)
        values.append(
            _check_int(problems, "referral.min_purchase_minor", minimum, 0,
                       limits.referral_min_purchase_minor_max) if minimum is not None else None
        )
        if None not in values:
            fields["referral"] = Referral(*values)
    milestones = document.get("milestones", [])
    fields["milestones"] = ()
    if milestones is not None:
        if not isinstance(milestones, list):
            problems.append(f"milestones: must be a list (got {milestones!r})")
        elif len(milestones) > limits.milestones_max:
            problems.append(f"milestones: at most {limits.milestones_max} (got {len(milestones)})")
        else:
            seen_ids = set()
            compiled = [_validate_milestone(problems, index, milestone, seen_ids)
                        for index, milestone in enumerate(milestones)]
            fields["milestones"] = tuple(compiled)
    birthday = document.get("birthday")
    fields["birthday_multiplier_bp"] = None
    if birthday is not None and _check_object(problems, "birthday", birthday, ("multiplier",), ()):
        if birthday.get("multiplier") is not None:
            fields["birthday_multiplier_bp"] = _check_multiplier(
                problems, "birthday.multiplier", birthday["multiplier"])


def _validate_milestone(problems, index, milestone, seen_ids):
    path = f"milestones[{index}]"
    if not _check_object(problems, path, milestone, ("id", "bonus_points"), MILESTONE_KINDS):
        return None
    milestone_id = None
    if milestone.get("id") is not None:
        milestone_id = _check_name(problems, f"{path}.id", milestone["id"], limits.id_bytes_max)
        if milestone_id is not None and milestone_id in seen_ids:
            problems.append(f"{path}.id: duplicate milestone id {milestone_id!r}")
        seen_ids.add(milestone_id)
    kinds = [kind for kind in MILESTONE_KINDS if kind in milestone]
    target = None
    if len(kinds) != 1:
        problems.append(f"{path}: needs exactly one of purchases or spend_minor (got {len(kinds)})")
    elif milestone[kinds[0]] is not None:
        high = limits.milestone_purchases_max if kinds[0] == "purchases" else limits.milestone_spend_minor_max
        target = _check_int(problems, f"{path}.{kinds[0]}", milestone[kinds[0]], 1, high)
    bonus = None
    if milestone.get("bonus_points") is not None:
        bonus = _check_int(problems, f"{path}.bonus_points", milestone["bonus_points"], 0, limits.bonus_points_max)
    if None in (milestone_id, target, bonus):
        return None
    return Milestone(milestone_id, kinds[0], target, bonus)


def _check_point_value(problems, value):
    if not isinstance(value, str):
        problems.append(f"point_value: must be a decimal string such as \"0.01\" (got {value!r})")
        return None
    whole, _, fraction = value.partition(".")
    if not (whole.isascii() and whole.isdigit() and (fraction == "" or (fraction.isascii() and fraction.isdigit()))):
        problems.append(f"point_value: must be a non-negative decimal string such as \"0.01\" (got {value!r})")
        return None
    if "." in value and not fraction:
        problems.append(f"point_value: must be a non-negative decimal string such as \"0.01\" (got {value!r})")
        return None
    return decimal.Decimal(value)


def compile_program(document, version, effective_from_s):
    """Validate and compile; raise InvalidProgram listing every problem."""
    problems, fields = validate(document)
    if problems:
        raise InvalidProgram(problems)
    names, thresholds, multipliers = fields["tiers"]
    return CompiledProgram(
        version=version,
        effective_from_s=effective_from_s,
        earn_points=fields["earn_points"],
        earn_per_minor_units=fields["earn_per_minor_units"],
        default_multiplier_bp=fields["default_multiplier_bp"],
        category_multiplier_bp=dict(fields["category_multiplier_bp"]),
        tier_names=tuple(names),
        tier_min_spend_minor=tuple(thresholds),
        tier_multiplier_bp=tuple(multipliers),
        promotions=tuple(fields["promotions"]),
        max_points_per_purchase=fields["max_points_per_purchase"],
        expiry_months=fields["expiry_months"],
        point_value=fields["point_value"],
        currency=fields["currency"],
        welcome_bonus=fields["welcome_bonus"],
        pending_days=fields["pending_days"],
        referral=fields["referral"],
        milestones=fields["milestones"],
        birthday_multiplier_bp=fields["birthday_multiplier_bp"],
    )
