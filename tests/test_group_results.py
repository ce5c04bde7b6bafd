"""Ledger.apply_group answers each write with its journal entry's member and programme version.

The service answers a unary write from these (no read transaction per call), so they must be
the journal's own: the request's member for a purchase, the order's member for a refund, the
original entry's for a resent purchase, and the version in force at the event's own time (§15).
"""

from pointsledger import InvalidArgument
from support import T_2026_01_15, T_2026_03_01, T_2026_03_10, entries, simple_program


def test_group_outcomes_carry_the_entry_member_and_programme_version(ledger):
    ledger.set_program(simple_program())  # version 1: 1 point per 100 minor units
    ledger.set_program(simple_program(earn={"points": 1, "per_minor_units": 50}, effective_from=T_2026_03_01))  # v2
    first = ledger.apply_group([("purchase", ("o1", "m1", 5000, "grocery", T_2026_01_15))])
    outcomes = ledger.apply_group([
        ("purchase", ("o2", "m2", 3000, "grocery", T_2026_03_10)),
        ("refund", ("r1", "o1", 1000, T_2026_03_10)),
        ("purchase", ("o1", "m1", 5000, "grocery", T_2026_01_15)),  # resent: the original entry
        ("purchase", ("o3", "m2", 0, "grocery", T_2026_03_10)),  # refused
    ])
    seen = [(each.status, each.seq, each.points, each.member_id, each.program_version)
            for each in first + outcomes[:3]]
    assert seen == [
        ("APPLIED", 1, 50, "m1", 1),  # 5000 / 100
        ("APPLIED", 2, 60, "m2", 2),  # 3000 / 50 under version 2
        ("APPLIED", 3, -10, "m1", 2),  # 1000 of 5000 refunded: 10 of its 50 points; version at its time
        ("DUPLICATE", 1, 50, "m1", 1),
    ]
    assert isinstance(outcomes[3], InvalidArgument)
    journal = {entry.seq: (entry.member_id, entry.program_version) for entry in ledger.journal(1, 10)}
    assert journal == {1: ("m1", 1), 2: ("m2", 2), 3: ("m1", 2)}


TIERED = {"tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1},
                    {"name": "gold", "min_spend_minor": 10_000, "multiplier": 2}]}
GROUP = [
    ("purchase", ("a1", "m1", 12_000, "grocery", T_2026_03_10)),
    ("purchase", ("a2", "m2", 500, "grocery", T_2026_03_10)),
    ("purchase", ("a3", "m1", 1_000, "grocery", T_2026_03_10)),  # m1 is gold now: its spend is 12,000
    ("purchase", ("a4", "m3", 0, "grocery", T_2026_03_10)),  # refused
    ("refund", ("r1", "a2", 500, T_2026_03_10)),
    ("purchase", ("a2", "m2", 500, "grocery", T_2026_03_10)),  # resent
    ("purchase", ("a5", "m2", 100, "grocery", T_2026_03_10)),
]


def plain(outcomes):
    return [(type(each).__name__, each.code) if isinstance(each, Exception) else
            (each.status, each.seq, each.points, each.balance, each.tier, each.member_id, each.program_version)
            for each in outcomes]


def test_a_group_answers_as_its_writes_one_by_one(ledger, open_ledger):
    """Consecutive purchases share one engine call; each still earns at the tier it held before it."""
    ledger.set_program(simple_program(**TIERED))
    grouped = plain(ledger.apply_group(GROUP))
    assert grouped == [
        ("APPLIED", 1, 120, 120, "member", "m1", 1),
        ("APPLIED", 2, 5, 5, "member", "m2", 1),
        ("APPLIED", 3, 20, 140, "gold", "m1", 1),  # 1,000 / 100 x 2
        ("InvalidArgument", "INVALID_ARGUMENT"),
        ("APPLIED", 4, -5, 0, None, "m2", 1),
        ("DUPLICATE", 2, 5, 5, None, "m2", 1),
        ("APPLIED", 5, 1, 1, "member", "m2", 1),
    ]
    alone = open_ledger("alone")
    alone.set_program(simple_program(**TIERED))
    assert [each for request in GROUP for each in plain(alone.apply_group([request]))] == grouped
    assert entries(alone) == entries(ledger)
