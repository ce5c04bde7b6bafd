"""pytest-benchmark of the hot path: one 10,000-purchase batch into a fresh ledger.

    python -m pytest benchmarks/test_hot_path.py --benchmark-only

Not part of the test suite (`tests/`): timings are for reading, not asserting.
Each round gets a new ledger (made in the untimed setup), so every round pays
for the same inserts instead of later rounds finding their orders already there.
"""

import itertools
import os
import sys

import pytest

# This file is run by path; make its sibling importable whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import backfill  # noqa: E402
import workload  # noqa: E402
from pointsledger import Ledger  # noqa: E402

BATCH_PURCHASES = 10_000
ROUNDS = 10


@pytest.fixture(scope="module")
def batch():
    return workload.generate_backfill(BATCH_PURCHASES, seed=7, order_ids="rand")


def benchmark_one_batch(benchmark, tmp_path, engine, batch):
    round_numbers = itertools.count()
    opened = []

    def new_ledger():
        ledger = Ledger(tmp_path / f"round-{next(round_numbers)}", sync=False, engine=engine)
        ledger.set_program(backfill.backfill_program())
        opened.append(ledger)
        return (ledger,), {}

    def apply_batch(ledger):
        return ledger.purchases(batch["order_ids"], batch["member_ids"], batch["amounts_minor"],
                                batch["categories"], batch["times_s"])

    try:
        result = benchmark.pedantic(apply_batch, setup=new_ledger, rounds=ROUNDS, iterations=1)
    finally:
        for ledger in opened:
            ledger.close()
    # With --benchmark-disable the target runs once and its result is still checked.
    assert result.applied == BATCH_PURCHASES


@pytest.mark.cython
def test_backfill_batch_cython(benchmark, tmp_path, batch):
    pytest.importorskip("pointsledger.engine._engine_c", reason="the Cython engine is not built")
    benchmark_one_batch(benchmark, tmp_path, "cython", batch)


def test_backfill_batch_python(benchmark, tmp_path, batch):
    benchmark_one_batch(benchmark, tmp_path, "python", batch)
