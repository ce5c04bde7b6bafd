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
