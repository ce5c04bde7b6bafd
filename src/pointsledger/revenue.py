"""Revenue and contract liability under IFRS 15 / ASC 606 (SPEC §19).

Everything is read from the cohort counters (issue month, event day) kept at
commit time, the redemption estimates and the programme versions: no journal
scan. Money is exact (`Fraction`) until one half-even rounding per figure.
"""

import dataclasses
import decimal
from fractions import Fraction

from . import calendar, limits
from .store import format as fmt
from .validation import validate_id, validate_midnight, validate_time
from .errors import FailedPrecondition, InvalidArgument, already_used
from .program import parse_document
from .store.revenue_upgrade import needs_upgrade

COHORTS = ("year", "quarter", "month")
RATE_PLACES = 4  # an estimate has at most 4 decimal places: basis points
# ISO 4217 minor-unit exponents other than 2 (0, 3 and 4) (every other currency has 2).
CURRENCY_EXPONENTS = {
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "CLF": 4, "UYW": 4,
}


@dataclasses.dataclass(frozen=True)
class Estimate:
    estimate_id: str
    effective_from_s: int
    rate: decimal.Decimal  # 0 … 1, at most 4 places
    status: str = "APPLIED"  # or DUPLICATE (a resent estimate)

    @property
    def rate_bp(self):
        return int(self.rate * limits.basis_points_per_unit)


@dataclasses.dataclass(frozen=True)
class CohortRevenue:
    """One cohort's figures of §19; money in minor units, rounded half-even."""

    cohort: str  # "2026", "2026-Q1" or "2026-01"
    start_s: int
    amount_minor: int  # A_c at `to`
    points: int  # P_c at `to`
    rate: decimal.Decimal  # r_c, fixed for the cohort
    allocated_minor: int  # D_c at `to`
    redeemed: int  # R_c at `to`
    expired: int  # points expired by `to`
    estimate_from: decimal.Decimal  # r(from)
    estimate_to: decimal.Decimal  # r(to)
    revenue_minor: int  # Rev_c(to) - Rev_c(from)
    liability_from_minor: int
    liability_to_minor: int
    exact: dict  # the same figures as Fractions, before rounding


@dataclasses.dataclass(frozen=True)
class Revenue:
    from_s: int
    to_s: int
    cohort: str
    currency: str
    exponent: int
    cohorts: list
    total: CohortRevenue  # sums of the rounded figures (rates: those at from and to)
    observed: Fraction | None  # redeemed / P_c over the cohorts whose points are all gone
    observed_decimal: decimal.Decimal | None  # half-even, 6 places
    observed_redeemed: int = 0  # the numerator and denominator, as summed (not reduced)
    observed_points: int = 0


# --- estimates -----------------------------------------------------------------------------


def parse_rate(value):
    """An estimate's rate: a decimal 0 … 1 with at most 4 places (a string, Decimal or 0/1).

    A string is plain ASCII, as point_value is (program.py): digits, optionally a point
    and 1 to 4 digits; no sign, exponent, spaces or other scripts' digits, and no fifth
    place even if it is a zero ("0.50000" is refused: §19 says at most 4 places).
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidArgument("rate", value, "must be a decimal string such as \"0.95\" (no floats)")
    if isinstance(value, int):
        number = decimal.Decimal(value)
    elif isinstance(value, str):
        whole, point, fraction = value.partition(".")
        if not (_ascii_digits(whole) and (not point or _ascii_digits(fraction))):
            raise InvalidArgument("rate", value, "must be a plain decimal such as \"0.95\" (ASCII digits, "
                                                 "no sign, exponent or spaces)")
        if len(fraction) > RATE_PLACES:
            raise InvalidArgument("rate", value, f"must have at most {RATE_PLACES} decimal places")
        number = decimal.Decimal(value)
    elif isinstance(value, decimal.Decimal):
        number = value
        if number.is_finite() and number.as_tuple().exponent < -RATE_PLACES:
            raise InvalidArgument("rate", value, f"must have at most {RATE_PLACES} decimal places")
    else:
        raise InvalidArgument("rate", value, "must be a decimal string such as \"0.95\"")
    if not number.is_finite() or not 0 <= number <= 1:
        raise InvalidArgument("rate", value, "must be between 0 and 1")
    return number


def _ascii_digits(text):
    return text.isascii() and text.isdigit()


def _rate_of_bp(rate_bp):
    return (decimal.Decimal(rate_bp) / limits.basis_points_per_unit).quantize(decimal.Decimal("0.0001"))


def read_estimates(store, txn):
    """Every estimate, in the order they apply: (effective_from, serial)."""
    db = store.dbs.get(fmt.DB_ESTIMATES)
    if db is None:
        return []
    rows = []
    for key, value in txn.cursor(db=db):
        effective_from_s, rate_bp, serial = fmt.ESTIMATE.unpack(value)
        rows.append((effective_from_s, serial, Estimate(bytes(key).decode(), effective_from_s, _rate_of_bp(rate_bp))))
    return [estimate for _, _, estimate in sorted(rows)]


def set_estimate(writer, estimate_id, effective_from_s, rate):
    """§19: idempotent on its id (§6), checks in §15's order."""
    key = validate_id("estimate_id", estimate_id)
    effective_from_s = validate_time("effective_from_s", effective_from_s)
    rate = parse_rate(rate)
    rate_bp = int(rate * limits.basis_points_per_unit)
    stored = writer.get(fmt.DB_ESTIMATES, key)
    if stored is not None:
        stored_from, stored_bp, _ = fmt.ESTIMATE.unpack(stored)
        fields = (("effective_from_s", stored_from, effective_from_s),
                  ("rate", str(_rate_of_bp(stored_bp)), str(_rate_of_bp(rate_bp))))
        if any(old != new for _, old, new in fields):
            raise already_used("estimate_id", estimate_id, "redemption estimate", fields)
        return Estimate(estimate_id, stored_from, _rate_of_bp(stored_bp), "DUPLICATE")
    estimates = read_estimates(writer.store, writer.txn) + writer.new_estimates
    if estimates and effective_from_s < estimates[-1].effective_from_s:
        raise FailedPrecondition(
            f"effective_from_s {effective_from_s}: before the previous estimate's "
            f"({estimates[-1].effective_from_s}, {estimates[-1].estimate_id!r})",
            "effective_from_s", effective_from_s, reason_code="ESTIMATE_BEFORE_PREVIOUS",
        )
    serial = len(estimates) + 1
    writer.put(fmt.DB_ESTIMATES, key, fmt.ESTIMATE.pack(effective_from_s, rate_bp, serial))
    estimate = Estimate(estimate_id, effective_from_s, _rate_of_bp(rate_bp))
    writer.new_estimates.append(estimate)
    return estimate


# --- revenue ---------------------------------------------------------------------------------


def _cohort_of(month, cohort):
    """(label, first instant) of the cohort that holds an issue month."""
    year, month_index = divmod(month, 12)
    if cohort == "year":
        return f"{year:04d}", calendar.month_start(year * 12)
    if cohort == "quarter":
        quarter = month_index // 3
        return f"{year:04d}-Q{quarter + 1}", calendar.month_start(year * 12 + quarter * 3)
    return f"{year:04d}-{month_index + 1:02d}", calendar.month_start(month)


def _estimate_at(estimates, instant, strictly_before):
    """The latest estimate effective before (or at) instant; the first one before them all."""
    chosen = estimates[0]
    for estimate in estimates:
        if estimate.effective_from_s < instant or (not strictly_before and estimate.effective_from_s == instant):
            chosen = estimate
        else:
            break
    return Fraction(chosen.rate), chosen.rate


def _round(value):
    """Half-even to an integer (minor units)."""
    whole, rest = divmod(value.numerator, value.denominator)
    twice = 2 * rest
    if twice > value.denominator or (twice == value.denominator and whole % 2):
        whole += 1
    return whole


class _Position:
    """Sums of one cohort's counter rows before an instant."""

    def __init__(self):
        self.amount = self.credited = self.redeemed = self.taken_back = self.expired = 0
        self.value = Fraction(0)  # Σ points x point value (minor units) credited, less taken back

    def add(self, counters):
        amount, credited, redeemed, taken_back, expired = counters
        self.amount += amount
        self.credited += credited
        self.redeemed += redeemed
        self.taken_back += taken_back
        self.expired += expired

    @property
    def points(self):
        return self.credited - self.taken_back

    def allocated(self, rate):
        """D_c = A S / (A + S); S = Σ points x the point value of the version of their entry x r_c,
        less the same for points taken back (docs/design.md)."""
        stand_alone = self.value * rate
        total = self.amount + stand_alone
        return Fraction(0) if total == 0 else self.amount * stand_alone / total

    def revenue(self, rate, estimate):
        allocated = self.allocated(rate)
        if self.credited and self.points - self.redeemed - self.expired == 0:
            return allocated, allocated  # no points left: the whole D_c
        expected = self.points * estimate
        if expected <= 0:
            share = Fraction(1 if self.redeemed > 0 else 0)
        else:
            share = min(Fraction(1), Fraction(self.redeemed) / expected)
        return allocated, allocated * share


def revenue(store, txn, from_s, to_s, cohort):
    db = store.dbs.get(fmt.DB_COHORTS)
    if db is None or needs_upgrade(store, txn):
        raise FailedPrecondition(f"{store.path}: a store of an earlier format lacks the cohort counters revenue reads; "
                                 "open it once for writing to upgrade it", reason_code="STORE_NOT_UPGRADED")
    estimates = read_estimates(store, txn)
    if not estimates:
        raise FailedPrecondition("no redemption estimate is set: set one before asking for revenue",
                                 reason_code="NO_REDEMPTION_ESTIMATE")
    program = store.program_at(to_s - 1, txn) or store.program_at(from_s, txn)
    currency = program.currency if program is not None else "USD"
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    from_day, to_day = from_s // calendar.SECONDS_PER_DAY, to_s // calendar.SECONDS_PER_DAY
    at_from, at_to, starts = {}, {}, {}
    for key, value in txn.cursor(db=db):
        month, day = fmt.COHORT_KEY.unpack(key)
        if day >= to_day:
            continue
        label, start_s = _cohort_of(month, cohort)
        starts[label] = start_s
        counters = fmt.COHORT.unpack(value)
        at_to.setdefault(label, _Position()).add(counters)
        if day < from_day:
            at_from.setdefault(label, _Position()).add(counters)
    point_values = _point_values(store, txn, exponent)
    values_db = store.dbs.get(fmt.DB_COHORT_VALUES)  # absent only from an empty store of an earlier format
    for key, value in (txn.cursor(db=values_db) if values_db is not None else ()):
        month, day, version = fmt.COHORT_VALUE_KEY.unpack(key)
        if day >= to_day:
            continue
        credited, taken_back = fmt.COHORT_VALUE.unpack(value)
        worth = (credited - taken_back) * point_values.get(version, 0)
        label = _cohort_of(month, cohort)[0]
        at_to.setdefault(label, _Position()).value += worth
        if day < from_day:
            at_from.setdefault(label, _Position()).value += worth
    rate_from, shown_from = _estimate_at(estimates, from_s, True)
    rate_to, shown_to = _estimate_at(estimates, to_s, True)
    rows, gone_redeemed, gone_points = [], 0, 0
    for label in sorted(starts):
        rate_c, shown_c = _estimate_at(estimates, starts[label], False)
        position = at_to[label]
        before = at_from.get(label, _Position())
        allocated, revenue_to = position.revenue(rate_c, rate_to)
        allocated_from, revenue_from = before.revenue(rate_c, rate_from)
        exact = {
            "allocated": allocated, "revenue": revenue_to - revenue_from,
            "liability_from": allocated_from - revenue_from, "liability_to": allocated - revenue_to,
        }
        rows.append(CohortRevenue(
            label, starts[label], position.amount, position.points, shown_c, _round(allocated),
            position.redeemed, position.expired, shown_from, shown_to, _round(exact["revenue"]),
            _round(exact["liability_from"]), _round(exact["liability_to"]), exact,
        ))
        if position.credited and position.points - position.redeemed - position.expired == 0:
            gone_redeemed += position.redeemed
            gone_points += position.points
    total = CohortRevenue(
        "total", min(starts.values(), default=from_s), sum(row.amount_minor for row in rows),
        sum(row.points for row in rows), None, sum(row.allocated_minor for row in rows),
        sum(row.redeemed for row in rows), sum(row.expired for row in rows), shown_from, shown_to,
        sum(row.revenue_minor for row in rows), sum(row.liability_from_minor for row in rows),
        sum(row.liability_to_minor for row in rows), {},
    )
    observed = Fraction(gone_redeemed, gone_points) if gone_points else None
    observed_decimal = None
    if observed is not None:
        observed_decimal = decimal.Decimal(_round(observed * 10**6)).scaleb(-6)
    return Revenue(from_s, to_s, cohort, currency, exponent, rows, total, observed, observed_decimal,
                   gone_redeemed, gone_points)


def _point_values(store, txn, exponent):
    """Programme version -> its point_value in minor units of the currency (exact)."""
    values = {}
    for key, value in txn.cursor(db=store.dbs[fmt.DB_PROGRAMS]):
        document = parse_document(bytes(value[fmt.PROGRAM_HEAD.size:]).decode())
        values[fmt.U32.unpack(key)[0]] = Fraction(decimal.Decimal(document["point_value"])) * 10**exponent
    return values


def check_period(from_s, to_s, cohort):
    """§19: from and to are UTC midnights, from < to; cohort year, quarter or month."""
    from_s = _require_midnight("from_s", validate_time("from_s", from_s))
    if isinstance(to_s, bool) or not isinstance(to_s, int):
        raise InvalidArgument("to_s", to_s, "must be an integer")
    if not from_s < to_s <= limits.time_s_max_exclusive:
        raise InvalidArgument("to_s", to_s, f"must be after from_s ({from_s}) and at most "
                                            f"{limits.time_s_max_exclusive}")
    to_s = _require_midnight("to_s", to_s)
    if cohort not in COHORTS:
        raise InvalidArgument("cohort", cohort, "must be year, quarter or month")
    return from_s, to_s, cohort


def _require_midnight(field, time_s):
    """Revenue's positions are known at UTC midnights only: the cohort counters are kept per UTC day."""
    return validate_midnight(field, time_s, "revenue positions are known only at UTC midnights (the cohort "
                                            "counters are kept per UTC day)")
