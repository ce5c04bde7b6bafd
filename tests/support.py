"""Shared constants and helpers of the test suite (not a test module).

Every instant is a fixed Unix second with its UTC date in the comment, so a
test reads as the SPEC's worked examples. Expected numbers in the tests are
worked by hand from the SPEC's rules and written out; nothing here computes
an expected value with the code under test.
"""

import copy

import lmdb

import pointsledger
from pointsledger.store import format as store_format

DAY_S = 86_400

T_MIN = 946_684_800  # 2000-01-01T00:00:00Z, the first valid event time
T_MAX = 4_102_444_799  # 2099-12-31T23:59:59Z, the last valid event time
T_2100 = 4_102_444_800  # 2100-01-01T00:00:00Z, one past the event range

T_2025_06_01 = 1_748_736_000  # 2025-06-01T00:00:00Z
T_2026_01_01 = 1_767_225_600  # 2026-01-01T00:00:00Z
T_2026_01_15 = 1_768_435_200  # 2026-01-15T00:00:00Z
T_2026_01_31 = 1_769_817_600  # 2026-01-31T00:00:00Z
T_2026_02_01 = 1_769_904_000  # 2026-02-01T00:00:00Z
T_2026_03_01 = 1_772_323_200  # 2026-03-01T00:00:00Z
T_2026_03_10 = 1_773_100_800  # 2026-03-10T00:00:00Z
T_2026_03_12 = 1_773_273_600  # 2026-03-12T00:00:00Z
T_2026_03_15 = 1_773_532_800  # 2026-03-15T00:00:00Z
T_2026_03_25 = 1_774_396_800  # 2026-03-25T00:00:00Z
T_2026_04_01 = 1_775_001_600  # 2026-04-01T00:00:00Z
T_2026_05_01 = 1_777_593_600  # 2026-05-01T00:00:00Z
T_2026_06_01 = 1_780_272_000  # 2026-06-01T00:00:00Z
T_2026_07_01 = 1_782_864_000  # 2026-07-01T00:00:00Z
T_2026_12_01 = 1_796_083_200  # 2026-12-01T00:00:00Z
T_2026_12_15 = 1_797_292_800  # 2026-12-15T00:00:00Z
T_2027_01_01 = 1_798_761_600  # 2027-01-01T00:00:00Z
T_2027_01_15 = 1_799_971_200  # 2027-01-15T00:00:00Z
T_2027_02_01 = 1_801_440_000  # 2027-02-01T00:00:00Z
T_2027_03_01 = 1_803_859_200  # 2027-03-01T00:00:00Z
T_2027_03_02 = 1_803_945_600  # 2027-03-02T00:00:00Z
T_2027_03_15 = 1_805_068_800  # 2027-03-15T00:00:00Z
T_2027_04_01 = 1_806_537_600  # 2027-04-01T00:00:00Z
T_2027_06_01 = 1_811_808_000  # 2027-06-01T00:00:00Z
T_2028_01_01 = 1_830_297_600  # 2028-01-01T00:00:00Z
T_2028_06_01 = 1_843_430_400  # 2028-06-01T00:00:00Z

INT64_MAX = 9_223_372_036_854_775_807


def example_program(**overrides):
    """The SPEC §3 example programme, in force since 2000-01-01 (a deep copy)."""
    document = copy.deepcopy(pointsledger.EXAMPLE_PROGRAM)
    document["effective_from"] = T_MIN
    document.update(overrides)
    return document


def simple_program(**overrides):
    """1 point per 100 cents, one tier of multiplier 1, no expiry, no promotions."""
    document = {
        "currency": "USD",
        "earn": {"points": 1, "per_minor_units": 100},
        "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1}],
        "point_value": "0.01",
        "effective_from": T_MIN,
    }
    document.update(overrides)
    return document


def always_on_promotion(promotion_id, **fields):
    """A promotion active over the whole event range unless told otherwise."""
    promotion = {"id": promotion_id, "start": T_MIN, "end": T_2100, "multiplier": 1}
    promotion.update(fields)
    return promotion


def entries(ledger, from_seq=1):
    """The journal as plain tuples: (seq, kind, member, ref, points, balance, time, version)."""
    return [
        (entry.seq, entry.kind, entry.member_id, entry.ref_id, entry.points, entry.balance,
         entry.time_s, entry.program_version)
        for entry in ledger.journal(from_seq=from_seq, limit=100_000)
    ]


def dump_env(env, dbs):
    """Every key and value of every sub-database, from one read transaction."""
    dump = {}
    with env.begin() as txn:
        for name in store_format.ALL_DBS:
            dump[name] = [(bytes(key), bytes(value)) for key, value in txn.cursor(db=dbs[name])]
    return dump


def dump_ledger(ledger):
    """The full store of an open ledger (through its own environment: LMDB must not be
    opened twice in one process)."""
    return dump_env(ledger.store.env, ledger.store.dbs)


def dump_path(path):
    """The full store of a closed ledger directory."""
    env = lmdb.open(str(path), max_dbs=32, readonly=True, lock=False)
    try:
        dbs = {name: env.open_db(name, create=False) for name in store_format.ALL_DBS}
        return dump_env(env, dbs)
    finally:
        env.close()


def snapshot(ledger):
    """What must not change when an operation is refused."""
    return entries(ledger), ledger.verify().problems, dump_ledger(ledger)


def assert_invalid(error_info, field, value):
    """A refusal of INVALID_ARGUMENT naming `field`, with the value in the message."""
    error = error_info.value
    assert isinstance(error, pointsledger.InvalidArgument)
    assert error.code == "INVALID_ARGUMENT"
    assert error.field == field
    assert repr(value) in str(error), f"{value!r} not in {str(error)!r}"
