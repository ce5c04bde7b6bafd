"""A store of format 3 (engagement records, written by the release before lots by issue month)
opens, is upgraded to format 4 (§19) and continues, on both engines.

tests/fixtures/store-format-3/data.mdb was written by commit ac50843 (see
tests/fixtures/make_store_format_3.py): pending lots, bonuses, expiry, a debt.
"""

import importlib.util
import shutil
from pathlib import Path

import pytest

import pointsledger
from pointsledger.store import format as fmt
from pointsledger.errors import FailedPrecondition
from support import dump_ledger, entries

FIXTURES = Path(__file__).parent / "fixtures"
DAY = 86_400
T = 1_767_571_200  # 2026-01-05, the fixture's first event
JAN, FEB, MAR, APR = 2026 * 12, 2026 * 12 + 1, 2026 * 12 + 2, 2026 * 12 + 3


def copy_fixture(tmp_path, name="ledger"):
    target = tmp_path / name
    target.mkdir()
    shutil.copy(FIXTURES / "store-format-3" / "data.mdb", target / "data.mdb")
    return target


def build_fresh(path):
    spec = importlib.util.spec_from_file_location("make_store_format_3", FIXTURES / "make_store_format_3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(path)


def without_commit_count(dump):
    dump = dict(dump)
    dump[fmt.DB_META] = [item for item in dump[fmt.DB_META] if item[0] != fmt.META_COMMIT_COUNT]
    return dump


def continue_it(ledger):
    ledger.purchase("o-7", "m-3", 4_000, "goods", T + 110 * DAY)
    ledger.refund("f-3", "o-6", 3_000, T + 104 * DAY)  # o-6's own pending lot first
    ledger.redeem("r-3", "m-2", 60, T + 111 * DAY)
    ledger.expire(T + 160 * DAY)


def test_a_format_3_store_is_upgraded_and_continues(tmp_path, engine_name):
    path = copy_fixture(tmp_path)
    with pointsledger.Ledger(path, engine=engine_name, readonly=True) as old:
        journal = entries(old)
        assert len(journal) == 16
        assert old.verify().ok  # read as it is: issue months unknown, no cohort counters to check
        with pytest.raises(FailedPrecondition) as refused:
            old.revenue(T - 4 * DAY, T + 361 * DAY)
        assert "open it once for writing to upgrade it" in str(refused.value)
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        assert entries(ledger) == journal
        assert ledger.verify().ok
        upgraded = dump_ledger(ledger)
        with ledger.store.read() as txn:
            assert fmt.U32.unpack(txn.get(fmt.META_FORMAT, db=ledger.store.dbs[fmt.DB_META]))[0] == 5
            cohorts = {fmt.COHORT_KEY.unpack(key): fmt.COHORT.unpack(value)
                       for key, value in txn.cursor(db=ledger.store.dbs[fmt.DB_COHORTS])}
        # By issue month: January credited 100 + 50 + 200 + 50 + 70 + 50 = 520; m-1 redeemed 120 of
        # it, m-2 240; f-1 took m-1's last 30 of January and 20 of February; f-2 m-2's last 10 of
        # January (190 became debt, paid by March's o-4); m-3's 120 expired on 2026-04-05.
        by_month = {}
        for (month, _), counters in cohorts.items():
            by_month[month] = [a + b for a, b in zip(by_month.get(month, [0] * 5), counters)]
        assert by_month[JAN] == [10_000 + 20_000 + 7_000 - 20_000, 520, 360, 40, 120]
        assert by_month[FEB] == [5_000 - 5_000, 50, 0, 20 + 10, 0]  # a-2 took 10 of February's last 30
        assert by_month[MAR] == [30_000, 300, 0, 190, 0]
        assert by_month[APR] == [9_000, 30 + 90, 0, 0, 0]
        continue_it(ledger)
        assert ledger.verify().ok
        continued = dump_ledger(ledger)
    # What this release writes from scratch for the same operations, but for the upgrade's commit.
    fresh_path = tmp_path / "fresh"
    build_fresh(fresh_path)
    with pointsledger.Ledger(fresh_path, engine=engine_name) as fresh:
        assert without_commit_count(dump_ledger(fresh)) == without_commit_count(upgraded)
        continue_it(fresh)
        assert without_commit_count(dump_ledger(fresh)) == without_commit_count(continued)


SIMPLE = {"currency": "USD", "earn": {"points": 1, "per_minor_units": 100},
          "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1}], "point_value": "1.00",
          "effective_from": T - 4 * DAY}


def test_a_format_4_store_gains_its_counters_by_version(tmp_path, engine_name):
    """A store of format 4 (cohort counters without versions) is upgraded to format 5 at its first
    writable open: cohort_values from the journal's versions, everything else as it was."""
    path = tmp_path / "ledger"
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(SIMPLE)
        ledger.set_program(dict(SIMPLE, point_value="2.00", effective_from=T + 12 * 3600))  # v2 from noon
        ledger.purchases(["o-1", "o-2"], ["m-1", "m-2"], [10_000, 10_000], ["goods", "goods"],
                         [T + 3600, T + 13 * 3600])  # 100 points under v1, 100 under v2, one day
        ledger.refund("f-1", "o-1", 10_000, T + 2 * DAY)  # m-1's 100 taken back under v2
        ledger.adjust("a-1", "m-2", -30, "correction", T + 3 * DAY)
        ledger.redeem("r-1", "m-2", 20, T + 4 * DAY)
        ledger.set_redemption_estimate("e-1", T - 4 * DAY, "1")
        expected = dump_ledger(ledger)
        report = ledger.revenue(T - 4 * DAY, T + 361 * DAY)
        values_db, meta = ledger.store.dbs[fmt.DB_COHORT_VALUES], ledger.store.dbs[fmt.DB_META]
        with ledger.store.env.begin(write=True) as txn:
            day = T // DAY
            assert {fmt.COHORT_VALUE_KEY.unpack(key): fmt.COHORT_VALUE.unpack(value)
                    for key, value in txn.cursor(db=values_db)} == {
                (JAN, day, 1): (100, 0), (JAN, day, 2): (100, 0),
                (JAN, day + 2, 2): (0, 100), (JAN, day + 3, 2): (0, 30)}
            txn.drop(values_db, delete=False)  # as the release before wrote it
            txn.put(fmt.META_FORMAT, fmt.U32.pack(fmt.FORMAT_VERSION_LOTS), db=meta)
    # A = 20,000 - 10,000 = 10,000; S = (100 x 100 + 100 x 200 - 100 x 200 - 30 x 200) x 1 = 4,000;
    # D = 10,000 x 4,000 / 14,000 = 2,857.14 -> 2,857.
    assert report.cohorts[0].allocated_minor == 2_857
    with pointsledger.Ledger(path, engine=engine_name, readonly=True) as old:
        with pytest.raises(FailedPrecondition):
            old.revenue(T - 4 * DAY, T + 361 * DAY)
        assert old.verify().ok
    with pointsledger.Ledger(path, engine=engine_name) as upgraded:
        assert without_commit_count(dump_ledger(upgraded)) == without_commit_count(expected)
        assert upgraded.revenue(T - 4 * DAY, T + 361 * DAY).cohorts[0].allocated_minor == 2_857
        assert upgraded.verify().ok


def test_the_upgrade_models_pending_lots(tmp_path, engine_name):
    """A refund inside the return window takes its own order's pending lot first (§17): the
    upgrade's replay must do the same, or it takes January's released points instead."""
    path = tmp_path / "ledger"
    jan_10, feb_10, feb_15, mar_2 = T + 5 * DAY, T + 36 * DAY, T + 41 * DAY, T + 56 * DAY
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(dict(SIMPLE, point_value="0.01", expiry_months=1, pending_days=30))
        ledger.purchase("p-0", "m", 10_000, "goods", jan_10)  # 100 points, pending until 2026-02-09
        ledger.purchase("p-1", "m", 10_000, "goods", feb_10)  # releases p-0's; 100 pending until 2026-03-12
        ledger.refund("f-1", "p-1", 10_000, feb_15)  # takes p-1's own pending 100 (February's)
        ledger.expire(mar_2)  # January's 100 expire (their instant is 2026-03-01)
        expected = dump_ledger(ledger)
        with ledger.store.env.begin(write=True) as txn:
            cohorts = {fmt.COHORT_KEY.unpack(key): fmt.COHORT.unpack(value)
                       for key, value in txn.cursor(db=ledger.store.dbs[fmt.DB_COHORTS])}
            # As a store of format 3 has them: no counters (its member records are read as they are).
            for name in (fmt.DB_COHORTS, fmt.DB_COHORT_VALUES):
                txn.drop(ledger.store.dbs[name], delete=False)
            txn.put(fmt.META_FORMAT, fmt.U32.pack(fmt.FORMAT_VERSION_ENGAGEMENT), db=ledger.store.dbs[fmt.DB_META])
    # January: 10,000, 100 credited, 100 expired on 2026-03-02; February: 100 credited, 100 taken back.
    assert cohorts == {(JAN, jan_10 // DAY): (10_000, 100, 0, 0, 0), (FEB, feb_10 // DAY): (10_000, 100, 0, 0, 0),
                       (FEB, feb_15 // DAY): (-10_000, 0, 0, 100, 0), (JAN, mar_2 // DAY): (0, 0, 0, 0, 100)}
    with pointsledger.Ledger(path, engine=engine_name) as upgraded:
        assert without_commit_count(dump_ledger(upgraded)) == without_commit_count(expected)
        assert upgraded.verify().ok
