"""benchmarks/run.py --rounds: each ceiling beside its backfill, the order flipped every other
round, and the summary's ratios the medians of the rounds' (SPEC §13: median of three runs)."""

import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def run_module():
    sys.path.insert(0, BENCHMARKS)
    try:
        import run
        yield run
    finally:
        sys.path.remove(BENCHMARKS)


def test_each_ceiling_runs_right_after_its_backfill(run_module):
    runs = run_module.planned_runs(["backfill-seq", "backfill-rand", "ceiling-seq", "ceiling-rand"],
                                   ["cython"], 1000, 100)
    assert runs == [("backfill-seq", "cython", 1000), ("ceiling-seq", None, 1000),
                    ("backfill-rand", "cython", 1000), ("ceiling-rand", None, 1000)]


def test_a_ceiling_without_its_backfill_still_runs(run_module):
    runs = run_module.planned_runs(["backfill-seq", "ceiling-seq", "ceiling-rand"], ["cython", "python"], 1000, 100)
    assert runs == [("backfill-seq", "cython", 1000), ("backfill-seq", "python", 100),
                    ("ceiling-seq", None, 1000), ("ceiling-rand", None, 1000)]


def test_even_rounds_swap_each_pair_and_reverse_the_pairs(run_module):
    runs = [("backfill-seq", "cython", 10), ("ceiling-seq", None, 10),
            ("backfill-rand", "cython", 10), ("ceiling-rand", None, 10)]
    assert run_module.round_order(runs, 0) == runs
    assert run_module.round_order(runs, 1) == [("ceiling-rand", None, 10), ("backfill-rand", "cython", 10),
                                               ("ceiling-seq", None, 10), ("backfill-seq", "cython", 10)]


def test_the_summary_of_rounds_is_each_ratios_median(run_module):
    rounds = [
        {"workload": "summary", "backfill_seq_over_ceiling_seq": 0.5, "cpu_backfill_seq_over_ceiling_seq": 0.4,
         "engaged_over_backfill_seq": None, "machine": "m"},
        {"workload": "summary", "backfill_seq_over_ceiling_seq": 0.9, "cpu_backfill_seq_over_ceiling_seq": 0.3,
         "engaged_over_backfill_seq": None, "machine": "m"},
        {"workload": "summary", "backfill_seq_over_ceiling_seq": 0.7, "cpu_backfill_seq_over_ceiling_seq": 0.35,
         "engaged_over_backfill_seq": None, "machine": "m"},
    ]
    summary = run_module.median_summary(rounds)
    assert summary["rounds"] == 3
    assert summary["backfill_seq_over_ceiling_seq"] == 0.7
    assert summary["rounds_backfill_seq_over_ceiling_seq"] == [0.5, 0.9, 0.7]
    assert summary["cpu_backfill_seq_over_ceiling_seq"] == 0.35
    assert summary["engaged_over_backfill_seq"] is None
    assert "rounds_engaged_over_backfill_seq" not in summary
