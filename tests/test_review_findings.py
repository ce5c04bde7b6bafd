"""Review findings: behaviours that contradict SPEC §2–§8 / §15 (both engines).

Each test is written from the SPEC text quoted in its docstring; the expected
numbers are worked by hand in the comments.
"""

from support import (
    T_2026_03_15, T_2026_06_01, T_2027_01_01, T_2027_03_01, simple_program,
)


def test_balance_as_of_before_the_tier_year_reports_the_current_tier_across_versions(ledger):
    """§15 Members and tiers: "A balance query with `as_of` before the member's tier
    year reports the current state."

    v1 (from 2000): member 0 / silver 50,000 / gold 200,000.
    v2 (from 2027-01-01): basic 0 / plus 10,000 / max 50,000 (renamed and cheaper).
    The member is created by a 60,000-cent purchase on 2027-03-01: Y = 2027, S = 60,000,
    C = rank 0. Only v2 is ever in force during the member's tier year, so its current
    tier is max(tier_for_v2(60,000) = "max", C) = "max" -- which is what a query as of
    2027 reports.

    A query as of 2026-06-01 (before Y) must report that same current state:
    tier "max", tier year 2027, spend 60,000. The ledger instead re-evaluates the
    current spend against v1's thresholds (the version in force at as_of) and reports
    "silver" -- a tier of a programme that was never in force in the member's tier
    year, next to tier_year 2027, a mix of two states the member never held.
    """
    ledger.set_program(simple_program(tiers=[
        {"name": "member", "min_spend_minor": 0, "multiplier": 1},
        {"name": "silver", "min_spend_minor": 50_000, "multiplier": 1},
        {"name": "gold", "min_spend_minor": 200_000, "multiplier": 1},
    ]))
    ledger.set_program(simple_program(tiers=[
        {"name": "basic", "min_spend_minor": 0, "multiplier": 1},
        {"name": "plus", "min_spend_minor": 10_000, "multiplier": 1},
        {"name": "max", "min_spend_minor": 50_000, "multiplier": 1},
    ], effective_from=T_2027_01_01))
    ledger.purchase("o-1", "m", 60_000, "c", T_2027_03_01)

    current = ledger.balance("m", T_2027_03_01)
    assert (current.tier, current.tier_year, current.spend_minor) == ("max", 2027, 60_000)

    earlier = ledger.balance("m", T_2026_06_01)
    assert (earlier.tier, earlier.tier_year, earlier.spend_minor) == ("max", 2027, 60_000)


def test_adjust_reason_is_only_required_to_be_non_empty(ledger):
    """§15 Input: "adjust points are any non-zero int64 and the reason is non-empty."

    The SPEC's only rule for the reason is that it is non-empty (the id rules of §2,
    which refuse control characters, are for ids, and the reason is not an id). A
    free-text reason with a line break or a tab is non-empty, so the adjustment applies:
    the member holds 100 points (10,000 cents at 1 point per 100), +5 -> balance 105.
    The ledger refuses it with INVALID_ARGUMENT naming `reason` ("must not contain
    control characters"); docs/design.md lists this as a decision "where the SPEC is
    silent", but §15 is not silent on the reason.
    """
    ledger.set_program(simple_program())
    ledger.purchase("o-1", "m", 10_000, "c", T_2026_03_15)

    result = ledger.adjust("adj-1", "m", 5, "goodwill:\tlate delivery\nticket 42", T_2026_03_15 + 1)

    assert (result.status, result.points, result.balance) == ("APPLIED", 5, 105)
