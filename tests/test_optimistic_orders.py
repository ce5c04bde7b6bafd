"""Order ids taken as new without a store lookup (writer.check_orders false).

The Cython engine skips the LMDB lookup of an order id that is not in the
batch's overlay; flush proves the skipped ids new (putmulti without overwrite)
or raises OrdersConflict, and Store.write runs the batch again looking every id
up. Each case here has a stored order id among new ones, in the places where
an optimistic run would go wrong if the redo were missing, and checks that
both engines answer and store the same as a run that looks every id up.
"""

import pytest

import pointsledger
from pointsledger.store import writer as writer_module
from support import T_2026_03_01, T_2026_03_10, dump_ledger, simple_program

ENGINES = ("python", "cython")


def plain(result):
    return [
        (item.status, item.seq, item.points, item.balance,
         None if item.error is None else (item.error.code, item.error.field))
        for item in result
    ]


def columns(rows):
    return [list(column) for column in zip(*rows)]


def run_everywhere(tmp_path, steps, monkeypatch):
    """steps(ledger) -> outcomes, on each engine, and on the Cython engine forced careful."""
    outcomes, dumps = {}, {}
    for engine in ENGINES:
        with pointsledger.Ledger(tmp_path / engine, engine=engine) as ledger:
            outcomes[engine] = steps(ledger)
            dumps[engine] = dump_ledger(ledger)
            assert ledger.verify().ok, ledger.verify().problems
    with monkeypatch.context() as patch:
        original = writer_module.Writer.__init__

        def careful(self, store, txn, *, check_orders=False):
            original(self, store, txn, check_orders=True)

        patch.setattr(writer_module.Writer, "__init__", careful)
        with pointsledger.Ledger(tmp_path / "careful", engine="cython") as ledger:
            outcomes["careful"] = steps(ledger)
            dumps["careful"] = dump_ledger(ledger)
    assert outcomes["cython"] == outcomes["python"] == outcomes["careful"]
    assert dumps["cython"] == dumps["python"] == dumps["careful"]
    return outcomes["python"]


def test_a_stored_order_id_among_new_random_ids_is_a_duplicate(tmp_path, monkeypatch):
    first = [("c3", "m1", 1000, "grocery", T_2026_03_01), ("a7", "m2", 2000, "grocery", T_2026_03_01)]
    second = [
        ("f1", "m1", 500, "grocery", T_2026_03_10),
        ("a7", "m2", 2000, "grocery", T_2026_03_01),  # stored: a duplicate
        ("0b", "m3", 700, "grocery", T_2026_03_10),
        ("c3", "m1", 999, "grocery", T_2026_03_01),  # stored, other fields: a conflict
        ("b2", "m2", 300, "grocery", T_2026_03_10),
    ]

    def steps(ledger):
        ledger.set_program(simple_program())
        return [plain(ledger.purchases(*columns(first))), plain(ledger.purchases(*columns(second))),
                plain(ledger.purchases(*columns(second)))]

    outcomes = run_everywhere(tmp_path, steps, monkeypatch)
    statuses = [item[0] for item in outcomes[1]]
    assert statuses[0] == "APPLIED" and statuses[1] == "DUPLICATE" and statuses[3] != "APPLIED"
    assert all(item[0] != "APPLIED" for item in outcomes[2])


def test_a_stored_order_id_whose_purchase_would_be_refused_is_still_a_duplicate(tmp_path, monkeypatch):
    """Careful order: id already used comes before the int64 checks (§15)."""
    # 1 minor unit earns 10^8 points: 5 * 10^10 minor units earn 5 * 10^18.
    program = simple_program(earn={"points": 1_000_000, "per_minor_units": 1},
                             tiers=[{"name": "member", "min_spend_minor": 0, "multiplier": 100}])
    big, smaller = 5 * 10**10, 4 * 10**10

    def steps(ledger):
        ledger.set_program(program)
        results = [plain(ledger.purchases(*columns([("b5", "m1", big, "grocery", T_2026_03_01)])))]
        results.append(plain(ledger.purchases(*columns([("a1", "m1", smaller, "grocery", T_2026_03_01)]))))
        # b5 again: applied, it would overflow m1's balance, but the id is stored.
        results.append(plain(ledger.purchases(*columns([
            ("c1", "m2", 10, "grocery", T_2026_03_10),
            ("b5", "m1", big, "grocery", T_2026_03_01),
            ("c2", "m1", big, "grocery", T_2026_03_10),  # new: refused, naming the balance
        ]))))
        return results

    outcomes =     run_everywhere(tmp_path, steps, monkeypatch)


def test_a_group_with_a_refund_and_a_resent_purchase(tmp_path, monkeypatch):
    def steps(ledger):
        ledger.set_program(simple_program())
        ledger.purchases(*columns([("d4", "m1", 5000, "grocery", T_2026_03_01),
                                   ("e9", "m2", 3000, "grocery", T_2026_03_01)]))
        outcomes = ledger.apply_group([
            ("refund", ("r1", "d4", 1000, T_2026_03_10)),
            ("purchase", ("a0", "m3", 100, "grocery", T_2026_03_10)),
            ("purchase", ("e9", "m2", 3000, "grocery", T_2026_03_01)),  # stored: a duplicate
            ("purchase", ("ff", "m2", 200, "grocery", T_2026_03_10)),
        ])
        again = ledger.apply_group([
            ("refund", ("r2", "d4", 500, T_2026_03_10)),
            ("purchase", ("a5", "m3", 100, "grocery", T_2026_03_10)),
        ])
        return [repr(outcome) for outcome in outcomes + again]

    run_everywhere(tmp_path, steps, monkeypatch)


def test_after_a_resent_order_the_next_writes_look_every_id_up(tmp_path):
    from pointsledger.store import store as store_module

    with pointsledger.Ledger(tmp_path / "ledger", engine="cython") as ledger:
        ledger.set_program(simple_program())
        ledger.purchases(*columns([("a1", "m1", 100, "grocery", T_2026_03_01)]))
        assert ledger.store.careful_writes_left == 0
        result = ledger.purchases(*columns([("b1", "m1", 100, "grocery", T_2026_03_01),
                                            ("a1", "m1", 100, "grocery", T_2026_03_01)]))
        assert [item.status for item in result] == ["APPLIED", "DUPLICATE"]
        assert ledger.store.careful_writes_left == store_module.CAREFUL_WRITES_AFTER_CONFLICT
        ledger.purchases(*columns([("c1", "m1", 100, "grocery", T_2026_03_10)]))
        assert ledger.store.careful_writes_left == store_module.CAREFUL_WRITES_AFTER_CONFLICT - 1
