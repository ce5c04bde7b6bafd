"""Reading and writing across shards (SPEC §18): by member, or summed / checked over every shard.

A Router holds one ledger per shard, in shard order: embedded `Ledger`s (a list of
store directories) or `LedgerClient`s (a list of servers). Member calls go to
the member's shard (sharding.shard_of); liability and rollforward are the sums
of every shard's figures (each shard's counters are its members' only, so the
sum is the whole programme's); verify checks every shard and that each holds
only its own members. Each shard keeps its own gapless journal: no global order.
"""

import dataclasses
import fractions
import os

from ..store import format as fmt
from ..errors import FailedPrecondition, InvalidArgument
from ..queries import _half_even_6
from ..results import BatchResult, Breakage, VerifyReport
from .sharding import check_shards, shard_of

SUMMED_LIABILITY = ("earned", "adjusted_positive", "adjusted_negative", "clawed_back", "redeemed", "expired",
                    "outstanding", "expiring_30_days", "expiring_60_days", "expiring_90_days", "overdue", "bonus",
                    "pending")
SUMMED_ROLLFORWARD = ("opening", "earned", "adjusted", "clawed_back", "redeemed", "expired", "closing", "bonus")


def is_server(spec):
    """host:port, not a directory (a directory named like host:port would be ambiguous: the directory wins)."""
    host, _, port = spec.rpartition(":")
    return bool(host) and port.isdigit() and not os.path.isdir(spec)


class Router:
    def __init__(self, ledgers):
        self.ledgers = list(ledgers)
        self.shards = check_shards(len(self.ledgers))

    @classmethod
    def open(cls, specs, *, readonly=True, client_options=None):
        """A router over stores (directories) or servers (host:port), all of one kind."""
        from ..ledger import Ledger

        kinds = {is_server(spec) for spec in specs}
        if len(kinds) > 1:
            raise InvalidArgument("shards", ",".join(specs), "give stores or servers, not both")
        if kinds == {True}:
            from ..client import LedgerClient

            return cls([LedgerClient(spec, **(client_options or {})) for spec in specs])
        opened = []
        try:
            for spec in specs:
                opened.append(Ledger(spec, readonly=readonly))
        except BaseException:
            for ledger in opened:
                ledger.close()
            raise
        return cls(opened)

    def close(self):
        for ledger in self.ledgers:
            close = getattr(ledger, "close", None)
            if close is not None:
                close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- by member --------------------------------------------------------------------

    def shard_of(self, member_id):
        return shard_of(member_id, self.shards)

    def of(self, member_id):
        """The member's shard's ledger."""
        return self.ledgers[self.shard_of(member_id)]

    def balance(self, member_id, as_of_s=None):
        return self.of(member_id).balance(member_id, as_of_s)

    def history(self, member_id, limit=100, before_seq=None):
        return self.of(member_id).history(member_id, limit, before_seq)

    def redeem(self, redemption_id, member_id, points, time_s):
        return self.of(member_id).redeem(redemption_id, member_id, points, time_s)

    def adjust(self, adjustment_id, member_id, points, reason, time_s):
        return self.of(member_id).adjust(adjustment_id, member_id, points, reason, time_s)

    def refund(self, member_id, refund_id, order_id, amount_minor, time_s):
        """A refund names the order's member (the order lives on that member's shard)."""
        return self.of(member_id).refund(refund_id, order_id, amount_minor, time_s)

    def purchases(self, order_ids, member_ids, amounts_minor, categories, times_s):
        """A batch split by shard, one call per shard; the items' results in the batch's order."""
        columns = (order_ids, member_ids, amounts_minor, categories, times_s)
        by_shard = {}
        for index, member_id in enumerate(member_ids):
            by_shard.setdefault(self.shard_of(member_id), []).append(index)
        results = [None] * len(order_ids)
        for shard, indices in by_shard.items():
            taken = [[column[index] for index in indices] for column in columns]
            for index, item in zip(indices, self.ledgers[shard].purchases(*taken)):
                results[index] = item
        return results

    # --- over every shard ---------------------------------------------------------------

    def liability(self, as_of_s=None):
        reports = [ledger.liability(as_of_s) for ledger in self.ledgers]
        first = reports[0]
        for report in reports[1:]:
            if (report.currency, report.point_value, report.as_of_s) != (first.currency, first.point_value,
                                                                          first.as_of_s):
                raise FailedPrecondition(
                    f"the shards' programmes differ at {first.as_of_s}: {first.currency} {first.point_value} and "
                    f"{report.currency} {report.point_value}; a liability cannot be summed across them")
        sums = {name: sum(getattr(report, name) for report in reports) for name in SUMMED_LIABILITY}
        tiers = {}
        for report in reports:
            for tier, points in report.outstanding_by_tier.items():
                tiers[tier] = tiers.get(tier, 0) + points
        return dataclasses.replace(first, outstanding_value=sums["outstanding"] * first.point_value,
                                   outstanding_by_tier=tiers, **sums)

    def rollforward(self, from_s, to_s):
        reports = [ledger.rollforward(from_s, to_s) for ledger in self.ledgers]
        sums = {name: sum(getattr(report, name) for report in reports) for name in SUMMED_ROLLFORWARD}
        credited = sum(report.breakage.credited for report in reports)
        return dataclasses.replace(
            reports[0], **sums,
            breakage_rate=fractions.Fraction(sums["expired"], credited) if credited else None,
            breakage=Breakage(sums["expired"], credited, _half_even_6(sums["expired"], credited)),
        )

    def verify(self):
        """Every shard's own checks, and every member on its own shard; one VerifyReport.

        A store is checked here; a server checks itself (the Verify RPC, told its shard)."""
        problems, entries, members = [], 0, 0
        for shard, ledger in enumerate(self.ledgers):
            if hasattr(ledger, "store"):
                report, where = verify_shard(ledger, shard, self.shards), ledger.path
            else:
                report, where = ledger.verify(shard=shard, shards=self.shards), ledger.address
            problems += [f"shard {shard} ({where}): {problem}" for problem in report.problems]
            entries += report.entries
            members += report.members
        return VerifyReport(problems, entries, members)


def verify_shard(ledger, shard, shards):
    """The ledger's own checks, and that each of its members belongs to shard `shard` of `shards`."""
    report = ledger.verify()
    return VerifyReport(report.problems + misplaced_members(ledger, shard, shards), report.entries, report.members)


def misplaced_members(ledger, shard, shards, shown_max=10):
    """Problems: the ledger's members that belong to another shard (the first shown_max named)."""
    misplaced = []
    with ledger.store.read() as txn:
        for key in txn.cursor(db=ledger.store.dbs[fmt.DB_MEMBERS]).iternext(keys=True, values=False):
            member_id = bytes(key).decode("utf-8")
            if shard_of(member_id, shards) != shard:
                misplaced.append(member_id)
    found = [f"member {member_id!r} belongs to shard {shard_of(member_id, shards)} of {shards}"
             for member_id in misplaced[:shown_max]]
    if len(misplaced) > shown_max:
        found.append(f"{len(misplaced) - shown_max:,} more members of other shards")
    return found


__all__ = ["BatchResult", "Router", "is_server", "misplaced_members", "verify_shard"]
