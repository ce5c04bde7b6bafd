"""Bad input (SPEC §2, §15): refused with INVALID_ARGUMENT naming the field and the
value, and nothing changes — not the journal, not verify(), not one byte of the store.
"""

import pytest

import pointsledger
from support import (
    INT64_MAX, T_2026_03_15, T_2100, T_MAX, T_MIN, assert_invalid, example_program, snapshot,
)

T = T_2026_03_15  # 2026-03-15T00:00:00Z

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 65, id="65-bytes"),
    pytest.param("€" * 22, id="66-bytes-of-euro"),  # 22 × 3 bytes
    pytest.param("a\x00b", id="U+0000"),
    pytest.param("a\x1fb", id="U+001F"),
    pytest.param("a\x7fb", id="U+007F"),
    pytest.param("\n", id="newline"),
    pytest.param(123, id="int"),
    pytest.param(None, id="None"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param("\ud800", id="lone-surrogate"),
]
BAD_CATEGORIES = [
    pytest.param("", id="empty"),
    pytest.param("x" * 33, id="33-bytes"),
    pytest.param("€" * 11, id="33-bytes-of-euro"),
    pytest.param("a\x00", id="U+0000"),
    pytest.param("a\x7f", id="U+007F"),
    pytest.param(7, id="int"),
    pytest.param(None, id="None"),
]
BAD_AMOUNTS = [
    pytest.param(0, id="zero"),
    pytest.param(-1, id="negative"),
    pytest.param(10**12 + 1, id="over-max"),
    pytest.param(True, id="True"),
    pytest.param(1.0, id="float"),
    pytest.param("100", id="str"),
    pytest.param(None, id="None"),
]
BAD_TIMES = [
    pytest.param(T_MIN - 1, id="946684799"),
    pytest.param(T_2100, id="4102444800"),
    pytest.param(-1, id="negative"),
    pytest.param(True, id="True"),
    pytest.param(float(T), id="float"),
    pytest.param(str(T), id="str"),
    pytest.param(None, id="None"),
]

# Each operation: its argument names, and a call that would be applied as is.
OPERATIONS = {
    "purchase": (("order_id", "member_id", "amount_minor", "category", "time_s"),
                 ("o-new", "m", 10_000, "books", T)),
    "refund": (("refund_id", "order_id", "amount_minor", "time_s"), ("r-new", "o-1", 100, T)),
    "redeem": (("redemption_id", "member_id", "points", "time_s"), ("rd-new", "m", 1, T)),
    "adjust": (("adjustment_id", "member_id", "points", "reason", "time_s"),
               ("adj-new", "m", 1, "goodwill", T)),
}


@pytest.fixture
def seeded(ledger):
    """A ledger with the example programme and one purchase: member "m" has 100 points."""
    ledger.set_program(example_program())
    ledger.purchase("o-1", "m", 10_000, "books", T)
    return ledger


def call_with(ledger, operation, field, value):
    names, arguments = OPERATIONS[operation]
    arguments = list(arguments)
    arguments[names.index(field)] = value
    return getattr(ledger, operation)(*arguments)


def assert_refused_unchanged(ledger, operation, field, value):
    before = snapshot(ledger)
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        call_with(ledger, operation, field, value)
    assert_invalid(error_info, field, value)
    assert snapshot(ledger) == before
    assert ledger.verify().ok


def id_cases():
    for operation, (names, _) in OPERATIONS.items():
        for field in names:
            if field.endswith("_id"):
                yield operation, field


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(("operation", "field"), list(id_cases()))
def test_bad_id(seeded, operation, field, bad):
    assert_refused_unchanged(seeded, operation, field, bad)


@pytest.mark.parametrize("bad", BAD_CATEGORIES)
def test_bad_category(seeded, bad):
    assert_refused_unchanged(seeded, "purchase", "category", bad)


@pytest.mark.parametrize("bad", BAD_AMOUNTS)
@pytest.mark.parametrize("operation", ["purchase", "refund"])
def test_bad_amount(seeded, operation, bad):
    assert_refused_unchanged(seeded, operation, "amount_minor", bad)


@pytest.mark.parametrize("bad", BAD_TIMES)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_bad_time(seeded, operation, bad):
    assert_refused_unchanged(seeded, operation, "time_s", bad)


@pytest.mark.parametrize("bad", [0, -1, 2**63, True, 1.0, "1", None])
def test_bad_redeem_points(seeded, bad):
    assert_refused_unchanged(seeded, "redeem", "points", bad)


@pytest.mark.parametrize("bad", [0, 2**63, -(2**63) - 1, True, -1.0, "1", None])
def test_bad_adjust_points(seeded, bad):
    assert_refused_unchanged(seeded, "adjust", "points", bad)


@pytest.mark.parametrize("bad", ["", None, 5, b"goodwill"])
def test_bad_adjust_reason(seeded, bad):
    assert_refused_unchanged(seeded, "adjust", "reason", bad)


# --- the edges that are accepted ----------------------------------------------------


@pytest.mark.parametrize(
    "good_id",
    [
        pytest.param("x" * 64, id="64-bytes"),
        pytest.param("€" * 21, id="63-bytes-of-euro"),
        pytest.param("é" * 32, id="64-bytes-of-e-acute"),
        pytest.param("a", id="1-byte"),
        pytest.param("a b~\u0080", id="space-tilde-and-U+0080"),  # only ASCII controls are refused
    ],
)
def test_ids_at_the_limits_are_accepted(seeded, good_id):
    # 10,000 of books at member earns 100.
    result = seeded.purchase(good_id, good_id, 10_000, "books", T)
    assert (result.status, result.points) == ("APPLIED", 100)
    assert seeded.balance(good_id, T).balance == 100
    assert seeded.redeem(good_id, good_id, 1, T).balance == 99
    assert seeded.adjust(good_id, good_id, 1, "reason", T).balance == 100
    assert seeded.refund(good_id, good_id, 100, T).points == -1  # floor(100 × 100/10000) = 1


def test_limits_of_amount_time_and_category_are_accepted(seeded):
    # 1 cent earns floor(0.01) = 0; 10^12 earns 10^10 (at member) — then silver.
    assert seeded.purchase("o-min", "a", 1, "x" * 32, T_MIN).points == 0
    assert seeded.purchase("o-max", "b", 10**12, "€" * 10, T_MAX).points == 10**10
    assert seeded.refund("r-max", "o-max", 10**12, T_MAX).points == -(10**10)
    assert seeded.redeem("rd-1", "m", 100, T).balance == 0
    seeded.adjust("adj-big", "m", INT64_MAX - 10**12, "x", T)
    seeded.adjust("adj-neg", "m", -(INT64_MAX - 10**12), "x", T)
    assert seeded.balance("m", T).balance == 0


# --- the first bad field in argument order is the one named ----------------------------


@pytest.mark.parametrize("fixed_count", range(5))
def test_purchase_names_the_first_bad_field(seeded, fixed_count):
    names = ("order_id", "member_id", "amount_minor", "category", "time_s")
    good = ("o-new", "m", 10_000, "books", T)
    bad = ("", "", 0, "", 0)
    arguments = good[:fixed_count] + bad[fixed_count:]
    before = snapshot(seeded)
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        seeded.purchase(*arguments)
    assert_invalid(error_info, names[fixed_count], bad[fixed_count])
    assert snapshot(seeded) == before


@pytest.mark.parametrize(
    ("operation", "bad", "expected_field"),
    [
        ("refund", ("", "", 0, 0), "refund_id"),
        ("refund", ("r", "", 0, 0), "order_id"),
        ("refund", ("r", "o-1", 0, 0), "amount_minor"),
        ("refund", ("r", "o-1", 1, 0), "time_s"),
        ("redeem", ("", "", 0, 0), "redemption_id"),
        ("redeem", ("rd", "", 0, 0), "member_id"),
        ("redeem", ("rd", "m", 0, 0), "points"),
        ("redeem", ("rd", "m", 1, 0), "time_s"),
        ("adjust", ("", "", 0, "", 0), "adjustment_id"),
        ("adjust", ("adj", "", 0, "", 0), "member_id"),
        ("adjust", ("adj", "m", 0, "", 0), "points"),
        ("adjust", ("adj", "m", 1, "", 0), "reason"),
        ("adjust", ("adj", "m", 1, "r", 0), "time_s"),
    ],
)
def test_other_operations_name_the_first_bad_field(seeded, operation, bad, expected_field):
    before = snapshot(seeded)
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        getattr(seeded, operation)(*bad)
    names = OPERATIONS[operation][0]
    assert_invalid(error_info, expected_field, bad[names.index(expected_field)])
    assert snapshot(seeded) == before


def test_batch_item_names_the_first_bad_field(seeded):
    results = seeded.purchases(["o-a", ""], ["", ""], [0, 0], [0, ""], [T, 0])
    assert [item.error.field for item in results] == ["member_id", "order_id"]


# --- as_of and other query arguments ------------------------------------------------------


@pytest.mark.parametrize("bad", [T_MIN - 1, T_2100, True, float(T), str(T)])
@pytest.mark.parametrize("query", ["balance", "liability", "expire"])
def test_bad_as_of(seeded, query, bad):
    before = snapshot(seeded)
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        if query == "balance":
            seeded.balance("m", bad)
        elif query == "liability":
            seeded.liability(bad)
        else:
            seeded.expire(bad)
    assert_invalid(error_info, "as_of_s", bad)
    assert snapshot(seeded) == before


def test_as_of_at_the_bounds_is_accepted(seeded):
    assert seeded.balance("m", T_MIN).balance == 100
    assert seeded.balance("m", T_MAX).balance == 100
    assert seeded.liability(T_MIN).outstanding == 100
    assert seeded.expire(T_MIN).points == 0


@pytest.mark.parametrize("bad", BAD_IDS[:4])
def test_bad_member_id_in_queries(seeded, bad):
    for query in (lambda: seeded.balance(bad, T), lambda: seeded.history(bad)):
        with pytest.raises(pointsledger.InvalidArgument) as error_info:
            query()
        assert_invalid(error_info, "member_id", bad)


@pytest.mark.parametrize(
    ("call", "field", "value"),
    [
        (lambda ledger: ledger.history("m", limit=0), "limit", 0),
        (lambda ledger: ledger.history("m", before_seq=0), "before_seq", 0),
        (lambda ledger: ledger.journal(from_seq=0), "from_seq", 0),
        (lambda ledger: ledger.journal(limit=0), "limit", 0),
        (lambda ledger: ledger.rollforward(T_MIN - 1, T), "from_s", T_MIN - 1),
        (lambda ledger: ledger.rollforward(T, T - 1), "to_s", T - 1),
    ],
    ids=["history-limit", "history-before", "journal-from", "journal-limit", "rollforward-from",
         "rollforward-to-before-from"],
)
def test_bad_query_arguments(seeded, call, field, value):
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        call(seeded)
    assert_invalid(error_info, field, value)


@pytest.mark.parametrize("bad", [T_MIN - 1, T_2100, True, float(T)])
def test_bad_effective_from_argument(seeded, bad):
    before = snapshot(seeded)
    document = example_program()
    del document["effective_from"]
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        seeded.set_program(document, bad)
    assert_invalid(error_info, "effective_from", bad)
    assert snapshot(seeded) == before
