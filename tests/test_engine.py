"""The engine twins: the extension is loaded, both expose the same API, selection works.

None of these is skipped when the extension is missing: they fail, so a
missing Cython engine can never pass as a green run.
"""

import os
import subprocess
import sys

import pytest

import pointsledger
from pointsledger import engine as engines


def test_engine_c_loaded():
    # Like yarl's test_quoting_c_loaded: under POINTSLEDGER_REQUIRE_EXTENSION=1 (CI) the
    # default engine is the compiled one unless the pure twin is forced.
    if os.environ.get("POINTSLEDGER_REQUIRE_EXTENSION") == "1":
        if os.environ.get("POINTSLEDGER_PURE_PYTHON") == "1":
            assert pointsledger.ENGINE == "python"
        else:
            assert pointsledger.ENGINE == "cython"
    # Whatever this process's environment, the extension must be importable.
    from pointsledger.engine import _engine_c

    assert _engine_c.ENGINE_NAME == "cython"
    assert engines.get("cython") is _engine_c


def run_python(code, **environment):
    env = dict(os.environ)
    env.pop("POINTSLEDGER_PURE_PYTHON", None)
    env.pop("POINTSLEDGER_REQUIRE_EXTENSION", None)
    env.update(environment)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)


def test_require_extension_selects_cython_by_default():
    done = run_python("import pointsledger; print(pointsledger.ENGINE)",
                      POINTSLEDGER_REQUIRE_EXTENSION="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cython"


def test_pure_python_forces_the_twin():
    done = run_python("import pointsledger; print(pointsledger.ENGINE)",
                      POINTSLEDGER_REQUIRE_EXTENSION="1", POINTSLEDGER_PURE_PYTHON="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python"


def test_api_parity():
    from pointsledger.engine import _engine_c, _engine_py

    assert sorted(_engine_py.__all__) == sorted(_engine_c.__all__)
    for name in _engine_py.__all__:
        assert hasattr(_engine_c, name), name
        assert hasattr(_engine_py, name), name


def test_engine_names():
    assert engines.get("python").ENGINE_NAME == "python"
    assert engines.get("cython").ENGINE_NAME == "cython"


def test_unknown_engine_name_is_refused(tmp_path):
    with pytest.raises(ValueError):
        pointsledger.Ledger(tmp_path / "x", engine="fortran")


def test_ledger_reports_its_engine(ledger, engine_name):
    assert ledger.engine_name == engine_name
