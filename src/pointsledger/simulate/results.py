"""What a what-if reports (§17), and the tallies that build it."""

import dataclasses
import decimal


@dataclasses.dataclass(frozen=True)
class Figures:
    """Points of one side over the counted events, and their money value.

    value: net points in money; recorded points are valued at the point_value
    of the version each entry was applied under, draft points at the draft's.
    """

    earned: int
    bonus: int
    clawed_back: int
    value: decimal.Decimal

    @property
    def net(self):
        return self.earned + self.bonus - self.clawed_back

    def to_dict(self):
        return {"earned": self.earned, "bonus": self.bonus, "clawed_back": self.clawed_back,
                "net": self.net, "value": str(self.value)}


@dataclasses.dataclass(frozen=True)
class Comparison:
    draft: Figures
    recorded: Figures

    @property
    def difference(self):
        """Net points the draft would have issued, minus those recorded."""
        return self.draft.net - self.recorded.net

    @property
    def difference_value(self):
        return self.draft.value - self.recorded.value

    def to_dict(self):
        return {"draft": self.draft.to_dict(), "recorded": self.recorded.to_dict(),
                "difference": self.difference, "difference_value": str(self.difference_value)}


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """Ledger.simulate: the draft against what was recorded, over events in [from_s, to_s).

    Per tier, each side under its own tier names (the tier a purchase earned
    at; a clawback counts under its purchase's tier and category).
    """

    from_s: int
    to_s: int
    replay_from_s: int  # 1 January of the year before from_s: where the replay starts
    currency: str
    point_value: decimal.Decimal  # the draft's
    engine: str
    purchases: int  # purchases counted (time in [from_s, to_s))
    refunds: int  # refunds counted whose purchase the replay holds
    refused: int  # counted purchases the draft refused (e.g. points past int64): no draft points
    total: Comparison
    draft_tiers: dict  # tier name -> Figures
    recorded_tiers: dict  # tier name -> Figures
    categories: dict  # category -> Comparison

    def to_dict(self):
        return {
            "from_s": self.from_s, "to_s": self.to_s, "replay_from_s": self.replay_from_s,
            "currency": self.currency, "point_value": str(self.point_value), "engine": self.engine,
            "purchases": self.purchases, "refunds": self.refunds, "refused": self.refused,
            "total": self.total.to_dict(),
            "draft_tiers": {name: figures.to_dict() for name, figures in self.draft_tiers.items()},
            "recorded_tiers": {name: figures.to_dict() for name, figures in self.recorded_tiers.items()},
            "categories": {name: comparison.to_dict() for name, comparison in self.categories.items()},
        }


class _Sums:
    """earned, bonus, clawed back, and net points by programme version (for the money value)."""

    __slots__ = ("earned", "bonus", "clawed_back", "net_by_version")

    def __init__(self):
        self.earned = self.bonus = self.clawed_back = 0
        self.net_by_version = {}

    def add(self, version, earned=0, bonus=0, clawed_back=0):
        self.earned += earned
        self.bonus += bonus
        self.clawed_back += clawed_back
        self.net_by_version[version] = self.net_by_version.get(version, 0) + earned + bonus - clawed_back

    def figures(self, point_values):
        value = sum((net * point_values[version] for version, net in self.net_by_version.items()),
                    decimal.Decimal(0))
        return Figures(self.earned, self.bonus, self.clawed_back, value)


class _Side:
    def __init__(self):
        self.total = _Sums()
        self.tiers = {}
        self.categories = {}

    def add(self, tier, category, version, earned=0, bonus=0, clawed_back=0):
        for sums in (self.total, _of(self.tiers, tier), _of(self.categories, category)):
            sums.add(version, earned, bonus, clawed_back)


def _of(groups, key):
    sums = groups.get(key)
    if sums is None:
        sums = groups[key] = _Sums()
    return sums


class Tally:
    """Sums both sides batch by batch; keeps only what refunds in the window will need."""

    def __init__(self, from_s, draft_program, recorded_programs, refunded_orders, category_name):
        self.from_s = from_s
        self.draft_program = draft_program
        self.recorded_names = {program.version: program.tier_names for program in recorded_programs}
        self.point_values = {program.version: program.point_value for program in recorded_programs}
        self.refunded_orders = refunded_orders
        self.category_name = category_name
        self.kept = {}  # order key -> (category, draft tier, recorded tier) for refunded orders
        self.draft, self.recorded = _Side(), _Side()
        self.purchases = self.refunds = self.refused = 0

    def add(self, batch, draft, recorded):
        from_s, draft_names, recorded_names = self.from_s, self.draft_program.tier_names, self.recorded_names
        refunded, kept, category_name = self.refunded_orders, self.kept, self.category_name
        for index, time_s in enumerate(batch.times):
            version = batch.recorded_versions[index]
            category = category_name(batch.category_codes[index])
            draft_tier = draft_names[draft.tiers[index]] if draft.applied[index] else None
            recorded_tier = recorded_names[version][recorded.tiers[index]]
            order_key = batch.order_keys[index]
            if order_key in refunded:
                kept[order_key] = (category, draft_tier, recorded_tier)
            if time_s < from_s:
                continue
            self.purchases += 1
            self.recorded.add(recorded_tier, category, version,
                              earned=batch.recorded_points[index], bonus=batch.recorded_bonus[index])
            if draft_tier is None:
                self.refused += 1
            else:
                self.draft.add(draft_tier, category, 1, earned=draft.points[index], bonus=draft.bonus[index])
        for index, (_, _, _, time_s) in enumerate(batch.refunds):
            if time_s < from_s:
                continue
            self.refunds += 1
            category, draft_tier, recorded_tier = kept[batch.refund_order_keys[index]]
            self.recorded.add(recorded_tier, category, batch.refund_versions[index],
                              clawed_back=batch.refund_points[index])
            if draft.clawed_back[index] is not None:
                self.draft.add(draft_tier, category, 1, clawed_back=draft.clawed_back[index])

    def result(self, to_s, replay_from_s, engine_name):
        draft_values = {1: self.draft_program.point_value}
        categories = {}
        for name in sorted(set(self.draft.categories) | set(self.recorded.categories)):
            categories[name] = Comparison(
                self.draft.categories.get(name, _Sums()).figures(draft_values),
                self.recorded.categories.get(name, _Sums()).figures(self.point_values),
            )
        return SimulationResult(
            from_s=self.from_s, to_s=to_s, replay_from_s=replay_from_s,
            currency=self.draft_program.currency, point_value=self.draft_program.point_value,
            engine=engine_name, purchases=self.purchases, refunds=self.refunds, refused=self.refused,
            total=Comparison(self.draft.total.figures(draft_values), self.recorded.total.figures(self.point_values)),
            draft_tiers=_tiers(self.draft.tiers, self.draft_program.tier_names, draft_values),
            recorded_tiers=_tiers(self.recorded.tiers, _all_names(self.recorded_names), self.point_values),
            categories=categories,
        )


def _all_names(names_by_version):
    ordered = []
    for version in sorted(names_by_version):
        ordered.extend(name for name in names_by_version[version] if name not in ordered)
    return ordered


def _tiers(groups, names, point_values):
    """Every tier of the programme(s), in rank order, 0 where nothing was counted."""
    return {name: groups.get(name, _Sums()).figures(point_values) for name in names}
