"""The programme document (SPEC §3, §15): validation, versions, get_program."""

import json
from decimal import Decimal

import pytest

import pointsledger
from support import (
    T_2025_06_01, T_2026_01_01, T_2026_03_15, T_2026_06_01, T_2026_07_01, T_2100, T_MAX, T_MIN,
    always_on_promotion, dump_ledger, entries, example_program, simple_program,
)


def refused_problems(ledger, document, *arguments):
    """set_program refuses the document; the store is unchanged; return the problem list."""
    before = dump_ledger(ledger)
    with pytest.raises(pointsledger.InvalidProgram) as error_info:
        ledger.set_program(document, *arguments)
    error = error_info.value
    assert isinstance(error, pointsledger.InvalidArgument)
    assert error.code == "INVALID_ARGUMENT"
    assert dump_ledger(ledger) == before
    for problem in error.problems:
        assert problem in str(error)
    return error.problems


def assert_one_problem_about(problems, path):
    matching = [problem for problem in problems if problem.startswith(path)]
    assert matching, f"no problem about {path!r} in {problems!r}"


def test_the_example_programme_is_valid(ledger):
    assert ledger.set_program(example_program()) == 1


def test_every_problem_is_listed(ledger):
    document = simple_program(
        currency="usd",
        earn={"points": 0, "per_minor_units": 100},
        tiers=[{"name": "member", "min_spend_minor": 5, "multiplier": 1}],
        point_value=1,
        expiry_months=1201,
        max_points_per_purchase=-1,
        default_multiplier=101,
    )
    problems = refused_problems(ledger, document)
    for path in ("currency", "earn.points", "tiers[0].min_spend_minor", "point_value",
                 "expiry_months", "max_points_per_purchase", "default_multiplier"):
        assert_one_problem_about(problems, path)
    assert len(problems) == 7


def test_missing_required_keys_are_all_listed(ledger):
    problems = refused_problems(ledger, {})
    for key in ("currency", "earn", "tiers", "point_value"):
        assert_one_problem_about(problems, key)


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"expiry_month": 12}, "expiry_month"),  # a typo must not pass silently
        ({"earn": {"points": 1, "per_minor_units": 100, "per": 1}}, "earn.per"),
        ({"tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1, "colour": "x"}]},
         "tiers[0].colour"),
        ({"promotions": [always_on_promotion("p", bonus=5)]}, "promotions[0].bonus"),
    ],
)
def test_unknown_keys_are_refused(ledger, overrides, path):
    assert_one_problem_about(refused_problems(ledger, simple_program(**overrides)), path)


@pytest.mark.parametrize(
    "key",
    ["default_multiplier", "category_multipliers", "promotions", "max_points_per_purchase",
     "expiry_months", "effective_from"],
)
def test_explicit_null_for_an_optional_key_is_refused(ledger, key):
    assert_one_problem_about(refused_problems(ledger, simple_program(**{key: None})), key)


@pytest.mark.parametrize("key", ["bonus_points", "min_amount_minor"])
def test_explicit_null_for_optional_promotion_numbers_is_refused(ledger, key):
    document = simple_program(promotions=[always_on_promotion("p", **{key: None})])
    assert_one_problem_about(refused_problems(ledger, document), f"promotions[0].{key}")


def test_null_promotion_filters_are_allowed(ledger):
    document = simple_program(promotions=[
        always_on_promotion("p", categories=None, tiers=None, bonus_points=7),
    ])
    assert ledger.set_program(document) == 1
    # 10,000 cents: 100 + 7 (null filters match everything).
    assert ledger.purchase("o-1", "m", 10_000, "any", T_2026_03_15).points == 107


@pytest.mark.parametrize(
    ("tiers", "path"),
    [
        ([], "tiers"),
        ([{"name": "a", "min_spend_minor": 1, "multiplier": 1}], "tiers[0].min_spend_minor"),
        ([{"name": "a", "min_spend_minor": 0, "multiplier": 1},
          {"name": "b", "min_spend_minor": 0, "multiplier": 1}], "tiers[1].min_spend_minor"),
        ([{"name": "a", "min_spend_minor": 0, "multiplier": 1},
          {"name": "b", "min_spend_minor": 100, "multiplier": 1},
          {"name": "c", "min_spend_minor": 50, "multiplier": 1}], "tiers[2].min_spend_minor"),
        ([{"name": "a", "min_spend_minor": 0, "multiplier": 1},
          {"name": "a", "min_spend_minor": 100, "multiplier": 1}], "tiers[1].name"),
        ([{"name": "", "min_spend_minor": 0, "multiplier": 1}], "tiers[0].name"),
        ([{"name": "x" * 33, "min_spend_minor": 0, "multiplier": 1}], "tiers[0].name"),
        ([{"name": "a", "min_spend_minor": 0}], "tiers[0].multiplier"),
        ([{"name": "a", "min_spend_minor": 0, "multiplier": -1}], "tiers[0].multiplier"),
    ],
    ids=["empty", "first-not-zero", "equal", "descending", "duplicate-name", "empty-name",
         "name-33-bytes", "missing-multiplier", "negative-multiplier"],
)
def test_bad_tiers(ledger, tiers, path):
    assert_one_problem_about(refused_problems(ledger, simple_program(tiers=tiers)), path)


def test_promotion_tiers_filter_must_name_tiers_of_the_document(ledger):
    document = simple_program(promotions=[always_on_promotion("p", tiers=["member", "platinum"])])
    problems = refused_problems(ledger, document)
    assert_one_problem_about(problems, "promotions[0].tiers[1]")
    assert any("platinum" in problem for problem in problems)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("categories", []),
        ("tiers", []),
        ("categories", "books"),
        ("bonus_points", -1),
        ("min_amount_minor", -1),
        ("multiplier", Decimal("100.0001")),
        ("id", ""),
        ("id", "x" * 65),
        ("id", "a\x00"),
        ("id", "a\x7f"),
        ("id", 5),
    ],
)
def test_bad_promotion_fields(ledger, field, value):
    document = simple_program(promotions=[always_on_promotion("p", **{field: value})])
    assert_one_problem_about(refused_problems(ledger, document), f"promotions[0].{field}")


def test_promotion_ids_are_unique_and_required_fields_listed(ledger):
    document = simple_program(promotions=[
        always_on_promotion("p"), always_on_promotion("p"), {"id": "q"},
    ])
    problems = refused_problems(ledger, document)
    assert_one_problem_about(problems, "promotions[1].id")
    for key in ("start", "end", "multiplier"):
        assert_one_problem_about(problems, f"promotions[2].{key}")


@pytest.mark.parametrize(
    ("start", "end", "inside", "outside"),
    [
        # ISO with Z; [2026-06-01, 2026-07-01)
        ("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z", T_2026_06_01, T_2026_07_01),
        # +00:00
        ("2026-06-01T00:00:00+00:00", "2026-07-01T00:00:00+00:00", T_2026_06_01, T_2026_07_01),
        # Unix seconds
        (T_2026_06_01, T_2026_07_01, T_2026_07_01 - 1, T_2026_06_01 - 1),
        # the bounds: 2000-01-01 and 2100-01-01 itself (so the last second is inside)
        ("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z", T_MAX, None),
        (T_MIN, T_2100, T_MIN, None),
    ],
)
def test_promotion_time_formats(ledger, start, end, inside, outside):
    ledger.set_program(simple_program(promotions=[
        always_on_promotion("p", start=start, end=end, bonus_points=1_000),
    ]))
    # 10,000 cents: 100, + 1,000 inside the window.
    assert ledger.purchase("in", "m", 10_000, "x", inside).points == 1_100
    if outside is not None:
        assert ledger.purchase("out", "m", 10_000, "x", outside).points == 100


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start", "1999-12-31T23:59:59Z"),
        ("start", T_MIN - 1),
        ("end", "2100-01-01T00:00:01Z"),
        ("end", T_2100 + 1),
        ("start", "2026-06-01T00:00:00.000Z"),  # no fractions
        ("start", "2026-06-01T00:00:00+01:00"),  # UTC only
        ("start", "2026-06-01T00:00:00"),  # no zone
        ("start", "2026-06-01"),
        ("start", "2026-02-30T00:00:00Z"),
        ("start", Decimal("1780272000.5")),
        ("start", True),
    ],
)
def test_bad_promotion_times(ledger, field, value):
    document = simple_program(promotions=[always_on_promotion("p", **{field: value})])
    assert_one_problem_about(refused_problems(ledger, document), f"promotions[0].{field}")


def test_promotion_start_must_be_before_end(ledger):
    document = simple_program(promotions=[
        always_on_promotion("p", start=T_2026_06_01, end=T_2026_06_01),
    ])
    assert_one_problem_about(refused_problems(ledger, document), "promotions[0].end")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (Decimal("1.2345"), True),
        (Decimal("1.23456"), False),  # 5 decimal places
        (Decimal("0.00001"), False),
        (0, True),
        (100, True),
        (Decimal("100.0001"), False),
        (Decimal("-0.0001"), False),
        ("1.5", False),  # a string is not a number
        (True, False),
    ],
)
def test_multiplier_places_and_range(ledger, value, valid):
    document = simple_program(category_multipliers={"c": value})
    if valid:
        assert ledger.set_program(document) == 1
    else:
        assert_one_problem_about(refused_problems(ledger, document), "category_multipliers.c")


def test_multiplier_with_five_places_refused_in_json_text(ledger):
    text = json.dumps(simple_program(), separators=(",", ":"))
    text = text[:-1] + ',"default_multiplier":1.23456}'
    assert_one_problem_about(refused_problems(ledger, text), "default_multiplier")


def test_invalid_json_text_is_refused(ledger):
    problems = refused_problems(ledger, '{"currency": "USD",')
    assert problems


# --- versions and effective_from ---------------------------------------------------------


def test_effective_from_in_the_document_and_argument_must_agree(ledger):
    document = simple_program(effective_from=T_2026_01_01)
    before = dump_ledger(ledger)
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        ledger.set_program(document, T_2026_06_01)
    assert error_info.value.code == "INVALID_ARGUMENT"
    assert error_info.value.field == "effective_from"
    assert dump_ledger(ledger) == before
    # the same value twice is fine
    assert ledger.set_program(document, T_2026_01_01) == 1
    assert ledger.get_program(1).effective_from_s == T_2026_01_01


def test_effective_from_as_an_argument_only(ledger):
    document = simple_program()
    del document["effective_from"]
    assert ledger.set_program(document, T_2026_06_01) == 1
    assert ledger.get_program().effective_from_s == T_2026_06_01


def test_effective_from_defaults_to_the_time_of_the_call(tmp_path, engine_name):
    with pointsledger.Ledger(tmp_path / "clocked", engine=engine_name,
                             clock=lambda: T_2026_03_15) as clocked:
        document = simple_program()
        del document["effective_from"]
        assert clocked.set_program(document) == 1
        program = clocked.get_program()
        assert program.effective_from_s == T_2026_03_15
        assert program.document["effective_from"] == T_2026_03_15


def test_effective_from_earlier_than_the_previous_is_failed_precondition(ledger):
    assert ledger.set_program(simple_program(effective_from=T_2026_06_01)) == 1
    before = dump_ledger(ledger)
    with pytest.raises(pointsledger.FailedPrecondition) as error_info:
        ledger.set_program(simple_program(effective_from=T_2026_01_01))
    assert error_info.value.code == "FAILED_PRECONDITION"
    assert dump_ledger(ledger) == before
    # Equal to the previous is allowed (not earlier), and gets version 2.
    assert ledger.set_program(simple_program(effective_from=T_2026_06_01)) == 2


def test_rejected_documents_use_no_version_number(ledger):
    assert ledger.set_program(simple_program(effective_from=T_2026_01_01)) == 1
    with pytest.raises(pointsledger.InvalidProgram):
        ledger.set_program(simple_program(currency="dollars"))
    with pytest.raises(pointsledger.FailedPrecondition):
        ledger.set_program(simple_program(effective_from=T_MIN))
    assert ledger.set_program(simple_program(effective_from=T_2026_06_01)) == 2
    with pytest.raises(pointsledger.NotFound):
        ledger.get_program(3)


def test_versions_apply_by_event_time(ledger):
    ledger.set_program(simple_program(effective_from=T_2026_01_01))  # 1 point per 100
    ledger.set_program(simple_program(effective_from=T_2026_06_01,
                                      earn={"points": 2, "per_minor_units": 100}))
    # A live purchase under v2: 10,000 → 200.
    assert ledger.purchase("o-live", "m", 10_000, "x", T_2026_07_01).points == 200
    # A backfilled one from before v2: v1, 100.
    assert ledger.purchase("o-back", "m", 10_000, "x", T_2026_03_15).points == 100
    # Before v1's effective_from: version 1 still applies.
    assert ledger.purchase("o-old", "m", 10_000, "x", T_2025_06_01).points == 100
    # Exactly at v2's effective_from: v2.
    assert ledger.purchase("o-edge", "m", 10_000, "x", T_2026_06_01).points == 200
    assert entries(ledger) == [
        (1, "EARN", "m", "o-live", 200, 200, T_2026_07_01, 2),
        (2, "EARN", "m", "o-back", 100, 300, T_2026_03_15, 1),
        (3, "EARN", "m", "o-old", 100, 400, T_2025_06_01, 1),
        (4, "EARN", "m", "o-edge", 200, 600, T_2026_06_01, 2),
    ]


def test_history_is_not_recomputed_when_the_programme_changes(ledger):
    ledger.set_program(simple_program(effective_from=T_2026_01_01))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_07_01)  # v1: 100
    ledger.set_program(simple_program(effective_from=T_2026_06_01,
                                      earn={"points": 5, "per_minor_units": 100}))
    assert entries(ledger) == [(1, "EARN", "m", "o-1", 100, 100, T_2026_07_01, 1)]
    assert ledger.balance("m", T_2026_07_01).balance == 100
    # The duplicate of o-1 still returns the recorded result.
    again = ledger.purchase("o-1", "m", 10_000, "x", T_2026_07_01)
    assert (again.status, again.points) == ("DUPLICATE", 100)


def test_get_program_round_trip(ledger):
    document = example_program()
    assert ledger.set_program(document) == 1
    program = ledger.get_program()
    assert (program.version, program.effective_from_s) == (1, T_MIN)
    assert program.document == document
    assert program.document["tiers"][1]["multiplier"] == Decimal("1.25")
    second = simple_program(effective_from=T_2026_06_01)
    ledger.set_program(json.dumps(second))
    assert ledger.get_program().version == 2
    assert ledger.get_program().document == second
    assert ledger.get_program(1).document == document


def test_get_program_before_any_is_not_found(ledger):
    with pytest.raises(pointsledger.NotFound) as error_info:
        ledger.get_program()
    assert error_info.value.code == "NOT_FOUND"


def test_optional_keys_default(ledger):
    # A minimal document: default multiplier 1, no categories, no promotions, no cap, no expiry.
    ledger.set_program(simple_program())
    assert ledger.purchase("o-1", "m", 12_345, "electronics", T_2026_03_15).points == 123
    assert ledger.balance("m", T_2026_03_15).next_expiry_s is None


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"earn": {"points": 0, "per_minor_units": 100}}, "earn.points"),
        ({"earn": {"points": 1_000_001, "per_minor_units": 100}}, "earn.points"),
        ({"earn": {"points": 1, "per_minor_units": 0}}, "earn.per_minor_units"),
        ({"earn": {"points": 1, "per_minor_units": 1_000_001}}, "earn.per_minor_units"),
        ({"earn": {"points": 1}}, "earn.per_minor_units"),
        ({"earn": {"points": True, "per_minor_units": 100}}, "earn.points"),
        ({"category_multipliers": {"x" * 33: 2}}, "category_multipliers"),
        ({"category_multipliers": {"": 2}}, "category_multipliers"),
        ({"point_value": "-0.01"}, "point_value"),
        ({"point_value": "1e-2"}, "point_value"),
        ({"point_value": ""}, "point_value"),
        ({"point_value": 0.01}, "point_value"),
        ({"currency": "US"}, "currency"),
        ({"currency": "USDX"}, "currency"),
        ({"expiry_months": -1}, "expiry_months"),
        ({"max_points_per_purchase": -1}, "max_points_per_purchase"),
    ],
)
def test_bad_top_level_fields(ledger, overrides, path):
    assert_one_problem_about(refused_problems(ledger, simple_program(**overrides)), path)


@pytest.mark.parametrize(
    ("point_value", "expected_value"),
    [("0.01", "4.00"), ("1", "400"), ("0.0025", "1.0000"), ("0.003", "1.200")],
)
def test_point_value_is_a_decimal(ledger, point_value, expected_value):
    ledger.set_program(simple_program(point_value=point_value))
    ledger.purchase("o-1", "m", 40_000, "x", T_2026_03_15)  # 400 points
    report = ledger.liability(T_2026_03_15)
    assert report.point_value == Decimal(point_value)
    assert report.outstanding_value == Decimal(expected_value)  # 400 × point_value


def test_clawback_entry_records_the_version_at_the_refund_time(ledger):
    ledger.set_program(simple_program(effective_from=T_2026_01_01))
    ledger.set_program(simple_program(effective_from=T_2026_06_01,
                                      earn={"points": 2, "per_minor_units": 100}))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_03_15)  # v1: 100
    # The clawback comes from what the purchase earned, not from v2's rules:
    # floor(100 × 5000 / 10000) = 50, recorded under version 2.
    ledger.refund("r-1", "o-1", 5_000, T_2026_07_01)
    assert entries(ledger) == [
        (1, "EARN", "m", "o-1", 100, 100, T_2026_03_15, 1),
        (2, "CLAWBACK", "m", "r-1", -50, 50, T_2026_07_01, 2),
    ]


def test_versions_survive_reopening(open_ledger):
    first = open_ledger("reopened")
    first.set_program(simple_program(effective_from=T_2026_06_01))
    first.close()
    again = open_ledger("reopened")
    with pytest.raises(pointsledger.FailedPrecondition):
        again.set_program(simple_program(effective_from=T_2026_01_01))
    assert again.set_program(simple_program(effective_from=T_2026_07_01,
                                            earn={"points": 3, "per_minor_units": 100})) == 2
    # 10,000 cents at 2026-07-01: v2, 300 points; at 2026-03-15: v1, 100.
    assert again.purchase("o-1", "m", 10_000, "x", T_2026_07_01).points == 300
    assert again.purchase("o-2", "m", 10_000, "x", T_2026_03_15).points == 100
