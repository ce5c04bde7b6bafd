"""What a what-if reports (§17), and the tallies that build it."""

import dataclasses
import decimal

import numpy


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
        # Started from 0 at the finest point value, so "0.00" reads as money, not "0".
        zero = sum((0 * point_value for point_value in point_values.values()), decimal.Decimal(0))
        value = sum((net * point_values[version] for version, net in self.net_by_version.items()), zero)
        return Figures(self.earned, self.bonus, self.clawed_back, value)


DENSE_KEYS_MAX = 1 << 16  # keys below this are summed into arrays indexed by key (no sort)


def _group_sums(keys, columns):
    """{key: [sum of each column]} over the rows: numpy for the many, exact Python ints throughout.

    keys are >= 0. int64 sums are exact while (largest value) x (rows) < 2^63
    (every value here is >= 0 and <= int64); a batch past that is summed in Python.
    """
    found = {}
    if not len(keys):
        return found
    size = int(keys.max()) + 1
    dense = size <= DENSE_KEYS_MAX  # the usual case: few (category, version, tier) keys, no sort
    if dense:
        unique = numpy.flatnonzero(numpy.bincount(keys, minlength=size))
        slots, inverse = size, keys  # a key's sums are at the key itself
    else:
        unique, inverse = numpy.unique(keys, return_inverse=True)
        slots = len(unique)  # a key's sums are at its place in unique
    sums = []
    for column in columns:
        if int(column.max()) * len(column) < 1 << 63:
            total = numpy.zeros(slots, dtype=numpy.int64)
            numpy.add.at(total, inverse, column)
            sums.append(total.tolist())
        else:
            exact = [0] * slots
            for index, value in zip(inverse.tolist(), column.tolist()):
                exact[index] += value
            sums.append(exact)
    for position, key in enumerate(unique.tolist()):
        slot = key if dense else position
        found[key] = [each[slot] for each in sums]
    return found


class _Side:
    """One side's sums by (category number, version, tier rank); totals, tiers, categories at the end."""

    def __init__(self):
        self.groups = {}

    def add(self, category, version, tier, earned=0, bonus=0, clawed_back=0, value_version=None):
        """version: the programme whose tier names the row; value_version: the one whose point value
        prices it, when another (a clawback: named by its purchase's tier, valued at its own version)."""
        sums = self.groups.get((category, version, tier))
        if sums is None:
            sums = self.groups[(category, version, tier)] = _Sums()
        sums.add(version if value_version is None else value_version, earned, bonus, clawed_back)

    def add_many(self, categories, versions, tiers, earned, bonus):
        """Purchases by column (int64 arrays): category numbers, versions and tier ranks are small."""
        if not len(categories):
            return
        width, ranks = int(categories.max()) + 1, int(tiers.max()) + 1
        keys = (versions * ranks + tiers) * width + categories
        for key, (earned_sum, bonus_sum) in _group_sums(keys, (earned, bonus)).items():
            version_rank, category = divmod(key, width)
            version, tier = divmod(version_rank, ranks)
            self.add(category, version, tier, earned=earned_sum, bonus=bonus_sum)

    def by(self, name_of):
        """{name: _Sums} grouped by name_of((category, version, tier))."""
        grouped = {}
        for key, sums in self.groups.items():
            target = grouped.get(name_of(key))
            if target is None:
                target = grouped[name_of(key)] = _Sums()
            target.earned += sums.earned
            target.bonus += sums.bonus
            target.clawed_back += sums.clawed_back
            for version, net in sums.net_by_version.items():
                target.net_by_version[version] = target.net_by_version.get(version, 0) + net
        return grouped


class Tally:
    """Sums both sides batch by batch; keeps only what refunds in the window will need."""

    def __init__(self, from_s, draft_program, recorded_programs, refunded_orders, category_list):
        self.from_s = from_s
        self.draft_program = draft_program
        self.recorded_names = {program.version: program.tier_names for program in recorded_programs}
        self.point_values = {program.version: program.point_value for program in recorded_programs}
        self.refunded_orders = refunded_orders
        self.category_list = category_list
        self.kept = {}  # order key -> (category, draft tier, recorded tier, recorded version), refunded orders
        self.draft, self.recorded = _Side(), _Side()
        self.purchases = self.refunds = self.refused = 0

    def add(self, batch, draft, recorded):
        """One replayed batch; `recorded` gives the recorded tiers (the draft's own when they must agree)."""
        for index, order_key in batch.refunded_keys.items():
            self.kept[order_key] = (batch.category_numbers[index], draft.tiers[index] if draft.applied[index] else None,
                                    recorded.tiers[index], batch.recorded_versions[index])
        if len(batch):
            self._add_purchases(batch, draft, recorded)
        for index, (_, _, _, time_s) in enumerate(batch.refunds):
            if time_s < self.from_s:
                continue
            self.refunds += 1
            category, draft_tier, recorded_tier, purchase_version = self.kept[batch.refund_order_keys[index]]
            # §17: under the tier (so the tier names) of the purchase; valued at the refund's version.
            self.recorded.add(category, purchase_version, recorded_tier, clawed_back=batch.refund_points[index],
                              value_version=batch.refund_versions[index])
            if draft_tier is not None and draft.clawed_back[index] is not None:
                self.draft.add(category, 1, draft_tier, clawed_back=draft.clawed_back[index])

    def _add_purchases(self, batch, draft, recorded):
        def array(values):
            return numpy.asarray(values, dtype=numpy.int64)

        counted = array(batch.times) >= self.from_s
        if not counted.any():
            return
        applied = numpy.asarray(draft.applied, dtype=bool)
        categories = array(batch.category_numbers)
        bonus = numpy.zeros(len(batch), dtype=numpy.int64)
        for index, points in batch.recorded_bonus.items():
            bonus[index] = points
        self.purchases += int(counted.sum())
        self.recorded.add_many(categories[counted], array(batch.recorded_versions)[counted],
                               array(recorded.tiers)[counted], array(batch.recorded_points)[counted], bonus[counted])
        rows = counted & applied
        self.refused += int((counted & ~applied).sum())
        self.draft.add_many(categories[rows], numpy.ones(int(rows.sum()), dtype=numpy.int64),
                            array(draft.tiers)[rows], array(draft.points)[rows], array(draft.bonus)[rows])

    def result(self, to_s, replay_from_s, engine_name):
        draft_values = {1: self.draft_program.point_value}
        names = self.category_list
        draft_categories = self.draft.by(lambda key: names[key[0]])
        recorded_categories = self.recorded.by(lambda key: names[key[0]])
        categories = {
            name: Comparison(draft_categories.get(name, _Sums()).figures(draft_values),
                             recorded_categories.get(name, _Sums()).figures(self.point_values))
            for name in sorted(set(draft_categories) | set(recorded_categories))
        }
        draft_names, recorded_names = self.draft_program.tier_names, self.recorded_names
        return SimulationResult(
            from_s=self.from_s, to_s=to_s, replay_from_s=replay_from_s,
            currency=self.draft_program.currency, point_value=self.draft_program.point_value,
            engine=engine_name, purchases=self.purchases, refunds=self.refunds, refused=self.refused,
            total=Comparison(self.draft.by(lambda key: None).get(None, _Sums()).figures(draft_values),
                             self.recorded.by(lambda key: None).get(None, _Sums()).figures(self.point_values)),
            draft_tiers=_tiers(self.draft.by(lambda key: draft_names[key[2]]), draft_names, draft_values),
            recorded_tiers=_tiers(self.recorded.by(lambda key: recorded_names[key[1]][key[2]]),
                                  _all_names(recorded_names), self.point_values),
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
