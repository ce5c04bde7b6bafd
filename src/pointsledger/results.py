"""What the Ledger returns: plain, immutable values."""

import dataclasses
import decimal
import fractions
import typing


class Bonus(typing.NamedTuple):
    """A BONUS entry a purchase wrote (§17): who, which rule (its ref_id), how many points."""

    member_id: str
    rule: str
    points: int


@dataclasses.dataclass(frozen=True)
class OperationResult:
    status: str  # "APPLIED" or "DUPLICATE"
    seq: int  # the operation's journal entry (EARN, CLAWBACK, REDEEM, ADJUST)
    points: int  # its signed change
    balance: int  # the member's balance after it (a purchase: after its own bonuses)
    bonuses: tuple = ()  # a purchase's Bonus entries, the referrer's included (§17)
    # Filled by Ledger.apply_group (the service's writes), else None:
    tier: str | None = None  # an applied purchase: the tier it earned at (held before it, §4)
    refunded_minor: int | None = None  # a refund: the order's amount refunded so far, this one included
    member_id: str | None = None  # the member of the journal entry at seq (a refund's: the order's member)
    program_version: int | None = None  # the programme version that entry was written under

    @property
    def duplicate(self):
        return self.status == "DUPLICATE"


@dataclasses.dataclass(frozen=True)
class RecordedOrder:
    """A purchase as recorded: what was sent, what is refunded so far, and its original result."""

    order_id: str
    member_id: str
    amount_minor: int
    category: str
    time_s: int
    refunded_minor: int
    clawed_back: int
    result: OperationResult  # APPLIED, with the EARN entry's seq, points and balance after


@dataclasses.dataclass(frozen=True)
class RecordedRefund:
    refund_id: str
    order_id: str
    amount_minor: int
    time_s: int
    result: OperationResult  # APPLIED, with the CLAWBACK entry


@dataclasses.dataclass(frozen=True)
class RecordedRedemption:
    redemption_id: str
    member_id: str
    points: int
    time_s: int
    result: OperationResult  # APPLIED, with the REDEEM entry


@dataclasses.dataclass(frozen=True)
class RecordedAdjustment:
    adjustment_id: str
    member_id: str
    points: int
    reason: str
    time_s: int
    result: OperationResult  # APPLIED, with the ADJUST entry


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """One item of a purchase batch: applied, duplicate, or refused with `error`."""

    status: str  # "APPLIED", "DUPLICATE" or an error code such as "INVALID_ARGUMENT"
    seq: int
    points: int
    balance: int
    error: Exception | None = None
    bonuses: tuple = ()  # Bonus entries of an applied (or resent) purchase

    @property
    def ok(self):
        return self.error is None


class BatchResult:
    """Per-item results of a purchase batch, in input order."""

    def __init__(self, raw_results):
        self._raw = raw_results

    @property
    def raw(self):
        """The per-item tuples (status, seq, points, balance, error[, bonuses]), uncopied; a purchase
        that wrote BONUS entries (§17) has a sixth element, its tuple of Bonus.

        A read-only sequence of those tuples: a list from the Python engine, a
        PurchaseResults from the Cython one (each tuple made as it is read; a
        slice is a list; equal to the list of the same tuples). For callers
        that turn a whole batch into another form (the service's protobuf, the
        importer's reject file) without an object per item.
        """
        return self._raw

    def __len__(self):
        return len(self._raw)

    def __getitem__(self, index):
        return ItemResult(*self._raw[index])

    def __iter__(self):
        return (ItemResult(*raw) for raw in self._raw)

    def _count(self, status):
        return sum(1 for raw in self._raw if raw[0] == status)

    @property
    def applied(self):
        if type(self._raw) is not list:  # PurchaseResults: counted in C
            return self._raw.applied
        return self._count("APPLIED")

    @property
    def duplicates(self):
        if type(self._raw) is not list:
            return self._raw.duplicates
        return self._count("DUPLICATE")

    @property
    def rejected(self):
        return len(self._raw) - self.applied - self.duplicates

    @property
    def points(self):
        if type(self._raw) is not list:
            return self._raw.applied_points
        return sum(raw[2] for raw in self._raw if raw[0] == "APPLIED")


@dataclasses.dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    member_id: str
    ref_id: str
    points: int
    balance: int
    time_s: int
    program_version: int


@dataclasses.dataclass(frozen=True)
class HistoryPage:
    entries: list
    next_before_seq: int | None  # pass as before_seq for the next page; None at the end


@dataclasses.dataclass(frozen=True)
class Balance:
    member_id: str
    as_of_s: int
    balance: int
    available: int
    debt: int
    next_expiry_s: int | None
    next_expiry_points: int
    tier: str
    tier_year: int
    spend_minor: int
    earned: int
    redeemed: int
    expired: int
    clawed_back: int
    adjusted: int
    bonus: int = 0  # lifetime BONUS points (§17)
    milestones: tuple = ()  # MilestoneProgress of each milestone in force at as_of
    pending: int = 0  # points pending at as_of (§17): counted in balance, not in available
    next_release_s: int | None = None  # the soonest release instant after as_of
    next_release_points: int = 0


@dataclasses.dataclass(frozen=True)
class Referral:
    """A referral (§17): open until the referee's first qualifying purchase settles it."""

    referral_id: str
    referrer_id: str
    referee_id: str
    time_s: int
    settled: bool
    order_id: str | None  # the settling order, once settled
    status: str = "APPLIED"  # of register_referral: "APPLIED" or "DUPLICATE"

    @property
    def duplicate(self):
        return self.status == "DUPLICATE"


@dataclasses.dataclass(frozen=True)
class Profile:
    """A member's profile (§17): the birthday as MM-DD, or None when cleared."""

    member_id: str
    birthday: str | None


@dataclasses.dataclass(frozen=True)
class MilestoneProgress:
    """One milestone's progress in the member's tier year (§17), for a progress bar."""

    milestone_id: str
    kind: str  # "purchases" or "spend_minor"
    target: int
    progress: int  # uncapped
    reached: bool


@dataclasses.dataclass(frozen=True)
class Breakage:
    """expired ÷ (earned + bonus + positive adjustments) of a period (§17)."""

    expired: int  # the numerator
    credited: int  # the denominator
    decimal: decimal.Decimal | None  # rounded half-even to 6 places; None when credited is 0


@dataclasses.dataclass(frozen=True)
class ExpireResult:
    as_of_s: int
    members: int
    points: int


@dataclasses.dataclass(frozen=True)
class ProgramVersion:
    version: int
    effective_from_s: int
    document: dict


@dataclasses.dataclass(frozen=True)
class Liability:
    as_of_s: int
    currency: str
    point_value: decimal.Decimal
    earned: int
    adjusted_positive: int
    adjusted_negative: int
    clawed_back: int
    redeemed: int
    expired: int
    outstanding: int
    outstanding_value: decimal.Decimal
    outstanding_by_tier: dict
    expiring_30_days: int
    expiring_60_days: int
    expiring_90_days: int
    overdue: int
    bonus: int = 0  # issued as BONUS entries (§17)
    pending: int = 0  # points pending at as_of (§17), part of outstanding

    @property
    def issued(self):
        """earned + bonus + positive adjustments (§17)."""
        return self.earned + self.bonus + self.adjusted_positive


@dataclasses.dataclass(frozen=True)
class Rollforward:
    from_s: int
    to_s: int
    opening: int
    earned: int
    adjusted: int
    clawed_back: int
    redeemed: int
    expired: int
    closing: int
    breakage_rate: fractions.Fraction | None  # expired / (earned + bonus + positive adjustments)
    bonus: int = 0  # issued as BONUS entries in the period (§17)
    breakage: Breakage | None = None


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    problems: list
    entries: int
    members: int

    @property
    def ok(self):
        return not self.problems
