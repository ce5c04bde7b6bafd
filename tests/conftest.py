"""Every behaviour test runs against both engines.

The "cython" parameter is never skipped: when the extension is missing,
`Ledger(..., engine="cython")` raises and those tests fail. A skipped test
must never stand in for a missing engine (CI also sets
POINTSLEDGER_REQUIRE_EXTENSION=1, which makes the import itself fail).
"""

import pytest

from pointsledger import Ledger

ENGINE_NAMES = ("python", "cython")
ENGINE_PARAMS = [
    pytest.param("python", id="python"),
    pytest.param("cython", id="cython", marks=pytest.mark.cython),
]


@pytest.fixture(params=ENGINE_PARAMS)
def engine_name(request):
    return request.param


@pytest.fixture
def ledger(tmp_path, engine_name):
    """An empty ledger (no programme) on the engine of the parameter."""
    opened = Ledger(tmp_path / "ledger", engine=engine_name)
    yield opened
    opened.close()


@pytest.fixture
def open_ledger(tmp_path, engine_name):
    """A factory for more ledgers (or other options) on the same engine; all closed after."""
    opened = []

    def factory(name="other", **options):
        options.setdefault("engine", engine_name)
        new = Ledger(tmp_path / name, **options)
        opened.append(new)
        return new

    yield factory
    for each in opened:
        try:
            each.close()
        except Exception:  # already closed by the test
            pass


# --- options: the slow tier, the fault simulator's seeds ------------------------------------------


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (the many-kills tier); .ci/run does")
    group = parser.getgroup("fault simulator")
    group.addoption("--seeds", type=int, default=None, metavar="N",
                    help="run the fault simulator on seeds 0..N-1 (default: its DEFAULT_SEEDS)")
    group.addoption("--seed", type=int, action="append", default=None, metavar="S",
                    help="run the fault simulator on seed S only (repeatable): replays a failure exactly")


def pytest_generate_tests(metafunc):
    if "fault_seed" in metafunc.fixturenames:
        seeds = metafunc.config.getoption("--seed")
        if seeds is None:
            count = metafunc.config.getoption("--seeds") or metafunc.module.DEFAULT_SEEDS
            seeds = range(count)
        metafunc.parametrize("fault_seed", list(seeds), ids=[f"seed={seed}" for seed in seeds])


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only with --slow (deselected, not skipped, otherwise)."""
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
