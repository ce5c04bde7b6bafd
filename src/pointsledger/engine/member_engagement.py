"""A member's engagement state (§17): what a version-2 member record adds.

Both engines keep it as a plain Python object on their MemberState
(`state.engagement`, None for a member that never needed it, whose record stays
version 1 and byte-for-byte what the release before wrote). It is small and
touched only on the engagement path, so it is not worth a C layout.
"""

from ..store import format as fmt


class Engagement:
    """Lifetime bonus points; purchases and milestones reached in tier year `year`; pending lots."""

    __slots__ = ("bonus", "year", "purchases", "reached", "lots")

    def __init__(self, year, purchases=0):
        self.bonus = 0
        self.year = year
        self.purchases = purchases
        self.reached = []  # milestone ids (bytes) reached in `year`, in the order reached
        self.lots = []  # pending lots, see store_format (unused until pending points land)

    def purchases_in(self, year):
        return self.purchases if year == self.year else 0

    def reached_in(self, year):
        return self.reached if year == self.year else []

    def enter_year(self, year):
        """The counts belong to the member's tier year; they reset when it rolls (§17)."""
        if year > self.year:
            self.year, self.purchases, self.reached = year, 0, []

    def encode(self):
        parts = [fmt.ENGAGEMENT_HEAD.pack(self.bonus, self.year, self.purchases, len(self.reached))]
        for milestone_key in self.reached:
            parts.append(bytes((len(milestone_key),)) + milestone_key)
        parts.append(fmt.LOT_COUNT.pack(len(self.lots)))
        for release_s, expires_s, points, seq, order_key, month in self.lots:
            parts.append(fmt.LOT_HEAD_MONTH.pack(release_s, expires_s, points, seq, month, len(order_key))
                         + order_key)
        return b"".join(parts)

    @classmethod
    def decode(cls, value, offset, with_months=True):
        """The state encoded at value[offset:] (to its end).

        with_months False: a record of format 3, whose lots have no issue month
        (0 until the upgrade of revenue_upgrade.py sets it)."""
        bonus, year, purchases, reached_count = fmt.ENGAGEMENT_HEAD.unpack_from(value, offset)
        state = cls(year, purchases)
        state.bonus = bonus
        offset += fmt.ENGAGEMENT_HEAD.size
        for _ in range(reached_count):
            length = value[offset]
            state.reached.append(bytes(value[offset + 1:offset + 1 + length]))
            offset += 1 + length
        (lot_count,) = fmt.LOT_COUNT.unpack_from(value, offset)
        offset += fmt.LOT_COUNT.size
        for _ in range(lot_count):
            if with_months:
                release_s, expires_s, points, seq, month, length = fmt.LOT_HEAD_MONTH.unpack_from(value, offset)
                offset += fmt.LOT_HEAD_MONTH.size
            else:
                release_s, expires_s, points, seq, length = fmt.LOT_HEAD.unpack_from(value, offset)
                offset += fmt.LOT_HEAD.size
                month = 0
            state.lots.append([release_s, expires_s, points, seq, bytes(value[offset:offset + length]), month])
            offset += length
        if offset != len(value):
            raise ValueError(f"member record of {len(value)} bytes has a bad length")
        return state
