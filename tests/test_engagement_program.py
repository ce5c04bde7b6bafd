"""The engagement keys of the programme (SPEC §14, §17): validated like the rest."""

import pytest

import pointsledger
from support import T_2026_03_15, dump_ledger, simple_program

ENGAGEMENT = {
    "welcome_bonus": 100,
    "pending_days": 30,
    "referral": {"referrer_points": 500, "referee_points": 250, "min_purchase_minor": 2000},
    "milestones": [{"id": "ten-orders", "purchases": 10, "bonus_points": 500},
                   {"id": "big-spender", "spend_minor": 100000, "bonus_points": 1000}],
    "birthday": {"multiplier": 2},
}


def refused(ledger, document):
    before = dump_ledger(ledger)
    with pytest.raises(pointsledger.InvalidProgram) as error_info:
        ledger.set_program(document)
    assert dump_ledger(ledger) == before
    return error_info.value.problems


def test_the_spec_example_keys_are_valid_and_stored(ledger):
    assert ledger.set_program(simple_program(**ENGAGEMENT)) == 1
    stored = ledger.get_program(1).document
    for key, value in ENGAGEMENT.items():
        assert stored[key] == value
    compiled = ledger.store.programs[0]
    assert (compiled.welcome_bonus, compiled.pending_days) == (100, 30)
    assert (compiled.referral.referrer_points, compiled.referral.referee_points,
            compiled.referral.min_purchase_minor) == (500, 250, 2000)
    assert [(m.milestone_id, m.kind, m.target, m.bonus_points) for m in compiled.milestones] == [
        ("ten-orders", "purchases", 10, 500), ("big-spender", "spend_minor", 100000, 1000)]
    assert compiled.birthday_multiplier_bp == 20_000
    assert compiled.engaged


def test_absent_keys_are_off(ledger):
    ledger.set_program(simple_program())
    compiled = ledger.store.programs[0]
    assert not compiled.engaged
    assert (compiled.welcome_bonus, compiled.pending_days, compiled.referral, compiled.milestones,
            compiled.birthday_multiplier_bp) == (0, 0, None, (), None)


def test_referral_min_purchase_defaults_to_zero(ledger):
    ledger.set_program(simple_program(referral={"referrer_points": 0, "referee_points": 0}))
    assert ledger.store.programs[0].referral.min_purchase_minor == 0


@pytest.mark.parametrize("key", ["welcome_bonus", "pending_days", "referral", "milestones", "birthday"])
def test_an_explicit_null_is_refused(ledger, key):
    problems = refused(ledger, simple_program(**{key: None}))
    assert problems == [f"{key}: must not be null (leave it out for the default)"]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"welcome_bonus": -1}, "welcome_bonus: must be between 0 and 1000000000 (got -1)"),
        ({"welcome_bonus": 1_000_000_001}, "welcome_bonus: must be between 0 and 1000000000 (got 1000000001)"),
        ({"welcome_bonus": True}, "welcome_bonus: must be an integer (got true)"),
        ({"pending_days": 366}, "pending_days: must be between 0 and 365 (got 366)"),
        ({"pending_days": "30"}, "pending_days: must be an integer (got '30')"),
        ({"referral": {"referrer_points": 1}}, "referral.referee_points: required"),
        ({"referral": {"referrer_points": 1, "referee_points": 1, "bonus": 2}}, "referral.bonus: unknown key"),
        ({"referral": {"referrer_points": 1, "referee_points": 1, "min_purchase_minor": None}},
         "referral.min_purchase_minor: must not be null"),
        ({"referral": {"referrer_points": 1, "referee_points": 1, "min_purchase_minor": 10**12 + 1}},
         "referral.min_purchase_minor: must be between 0 and 1000000000000 (got 1000000000001)"),
        ({"referral": 5}, "referral: must be an object (got 5)"),
        ({"milestones": {}}, "milestones: must be a list (got {})"),
        ({"milestones": [{"id": "m", "bonus_points": 1}]},
         "milestones[0]: needs exactly one of purchases or spend_minor (got 0)"),
        ({"milestones": [{"id": "m", "purchases": 1, "spend_minor": 1, "bonus_points": 1}]},
         "milestones[0]: needs exactly one of purchases or spend_minor (got 2)"),
        ({"milestones": [{"id": "m", "purchases": 0, "bonus_points": 1}]},
         "milestones[0].purchases: must be between 1 and 1000000 (got 0)"),
        ({"milestones": [{"id": "m", "spend_minor": 10**15 + 1, "bonus_points": 1}]},
         "milestones[0].spend_minor: must be between 1 and 1000000000000000 (got 1000000000000001)"),
        ({"milestones": [{"id": "m", "purchases": 1}]}, "milestones[0].bonus_points: required"),
        ({"milestones": [{"id": "", "purchases": 1, "bonus_points": 1}]},
         "milestones[0].id: must be 1 to 64 bytes of UTF-8 (got '')"),
        ({"milestones": [{"id": "m", "purchases": 1, "bonus_points": 1},
                         {"id": "m", "spend_minor": 1, "bonus_points": 1}]},
         "milestones[1].id: duplicate milestone id 'm'"),
        ({"milestones": [{"id": f"m{index}", "purchases": 1, "bonus_points": 1} for index in range(65)]},
         "milestones: at most 64 (got 65)"),
        ({"birthday": {}}, "birthday.multiplier: required"),
        ({"birthday": {"multiplier": 101}},
         "birthday.multiplier: must be a number from 0 to 100 with at most 4 decimal places (got 101)"),
        ({"birthday": {"multiplier": 2, "month": 3}}, "birthday.month: unknown key"),
    ],
)
def test_a_bad_engagement_key_is_refused_naming_it(ledger, overrides, problem):
    assert refused(ledger, simple_program(**overrides)) == [problem]


def test_every_problem_of_the_engagement_keys_is_listed(ledger):
    problems = refused(ledger, simple_program(
        welcome_bonus=-1, pending_days=400, referral={"referee_points": -1},
        milestones=[{"id": "m", "purchases": 1, "bonus_points": -5}], birthday={"multiplier": -1},
    ))
    assert problems == [
        "welcome_bonus: must be between 0 and 1000000000 (got -1)",
        "pending_days: must be between 0 and 365 (got 400)",
        "referral.referrer_points: required",
        "referral.referee_points: must be between 0 and 1000000000 (got -1)",
        "milestones[0].bonus_points: must be between 0 and 1000000000 (got -5)",
        "birthday.multiplier: must be a number from 0 to 100 with at most 4 decimal places (got -1)",
    ]


def test_a_programme_without_the_rules_prices_as_before(ledger):
    ledger.set_program(simple_program(welcome_bonus=0, milestones=[]))
    assert not ledger.store.programs[0].engaged
    assert ledger.purchase("o-1", "m", 12_345, "any", T_2026_03_15).points == 123
