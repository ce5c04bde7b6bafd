"""The what-if's two journal walks (issue 13): the compiled one gives source.py's batches, field for field.

Never skipped: without the compiled walk `from pointsledger.simulate import _walk` fails, and so does this test.
"""

import os
import subprocess
import sys

import pytest

from pointsledger import Ledger, calendar
from pointsledger.simulate import _walk
from pointsledger.simulate.source import Source
from test_simulate import T_2025_07_01, T_2026_01_01, T_2027_01_01, build_random_store

FIELDS = ("steps", "ensure", "early_profiles", "order_ids", "member_ids", "amounts", "categories",
          "category_numbers", "times", "recorded_points", "recorded_versions", "recorded_bonus",
          "refunded_keys", "refunds", "refund_order_keys", "refund_points", "refund_versions")


def walked(store, from_s, to_s, walk, size):
    """[(seq, {field: value as a list})] of every batch, and the categories in order of first use."""
    with store.read() as txn:
        source = Source(store, txn, calendar.year_start(calendar.year_of(from_s) - 1), to_s)
        found = [(seq, {name: (list(getattr(batch, name)) if not isinstance(getattr(batch, name), dict)
                               else getattr(batch, name)) for name in FIELDS})
                 for batch, seq in walk(source, size)]
        return found, source.category_list


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("walk") / "ledger"
    with Ledger(path, engine="python", sync=False) as ledger:
        build_random_store(ledger, seed=5)
    return path


@pytest.mark.cython
@pytest.mark.parametrize("from_s, to_s", [(T_2026_01_01, T_2027_01_01), (T_2025_07_01, T_2026_01_01 + 86_400 * 40)])
@pytest.mark.parametrize("size", [1, 37, 50_000])
def test_the_compiled_walk_gives_the_same_batches(store_path, from_s, to_s, size):
    with Ledger(store_path, engine="cython", readonly=True) as ledger:
        compiled = walked(ledger.store, from_s, to_s, _walk.batches, size)
        twin = walked(ledger.store, from_s, to_s, lambda source, size: source.batches(size), size)
    assert compiled == twin
    batches, categories = compiled
    assert sum(len(fields["times"]) for _, fields in batches) > 300 and len(categories) == 4
    assert any(fields["refunds"] for _, fields in batches) and any(fields["recorded_bonus"] for _, fields in batches)
    assert any(step[0] == "roll" for _, fields in batches for step in fields["steps"])
    assert any(step[0] == "profile" for _, fields in batches for step in fields["steps"])


def run_python(code, **environment):
    env = {name: value for name, value in os.environ.items()
           if name not in ("POINTSLEDGER_PURE_PYTHON", "POINTSLEDGER_REQUIRE_EXTENSION")}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


# The compiled walk made unimportable, as a failed build would leave it.
WITHOUT_WALK = "import sys; sys.modules['pointsledger.simulate._walk'] = None; "


def test_a_missing_compiled_walk_is_an_import_error_when_the_extension_is_required():
    done = run_python(WITHOUT_WALK + "import pointsledger.simulate", POINTSLEDGER_REQUIRE_EXTENSION="1")
    assert done.returncode == 1
    assert "ExtensionMissing: POINTSLEDGER_REQUIRE_EXTENSION=1 but the what-if's compiled loops" in done.stderr


def test_without_the_compiled_walk_the_cython_engine_takes_the_python_loops():
    done = run_python(WITHOUT_WALK + "from pointsledger import engine; from pointsledger.simulate import compiled; "
                      "print(compiled.loops(engine.get('cython')), compiled.loops(engine.get('python')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]


@pytest.mark.cython
def test_the_cython_engine_takes_the_compiled_loops_and_the_twin_the_python_ones():
    from pointsledger import engine as engines
    from pointsledger.simulate import compiled

    assert compiled.loops(engines.get("cython")) is _walk
    assert compiled.loops(engines.get("python")) is None
