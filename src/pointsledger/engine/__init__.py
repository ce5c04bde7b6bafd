"""The one place that chooses between the Cython engine and its pure-Python twin.

    _engine_py.py        the twin: the specification of a purchase, in Python
    _engine_c.pyx        the same purchase compiled (Cython), byte for byte the twin's
    engagement.py        the engagement rules of a purchase (§14, §17), which both engines follow
    member_engagement.py a member's engagement state as the twin keeps it

POINTSLEDGER_PURE_PYTHON=1 forces the twin. POINTSLEDGER_REQUIRE_EXTENSION=1
turns a missing extension into an import error, so CI cannot pass on the twin
alone. Otherwise a missing extension falls back to the twin, and
`pointsledger.ENGINE` / `pointsledger info` say so.
"""

import importlib.machinery
import os
import warnings

from . import _engine_py
from ..errors import ExtensionMissing

BUILD_NOTE = "_engine_c.build-error.txt"  # written by setup.py when the compile failed
EXTENSION_IMPORT_ERROR = None
EXTENSION_PROBLEM = None  # why the compiled engine is missing, in words for an operator
try:
    from . import _engine_c
except ImportError as error:  # not built, or built for another Python
    _engine_c = None
    EXTENSION_IMPORT_ERROR = error


def _extension_problem(error):
    """What is wrong with the compiled engine, and how to get it: the import error alone misleads.

    With no compiled file at all, `from . import _engine_c` inside the package's
    own import says "partially initialized module ... circular import", which is
    not the cause: the build was skipped (pip builds the package from source and
    falls back to pure Python when it cannot compile, e.g. with no C compiler).
    """
    package = os.path.dirname(os.path.abspath(__file__))
    built = [name for name in os.listdir(package)
             if name.startswith("_engine_c.") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]
    how = ("to get it, install a C compiler and the Python headers (e.g. `apt-get install gcc python3-dev`), "
           "then reinstall: `pip install --force-reinstall --no-cache-dir pointsledger` "
           "(or `pip install .` in a source checkout)")
    if not built:
        return f"the compiled engine was not built ({_build_note(package)}); {how}"
    return f"the compiled engine {built[0]} is there but does not load ({error}); {how}"


def _build_note(package):
    """Why the build skipped the engine, as setup.py noted it; else the likely cause."""
    try:
        with open(os.path.join(package, BUILD_NOTE), encoding="utf-8") as handle:
            return f"the install said: {handle.read().strip()}"
    except OSError:
        return f"no _engine_c extension in {package}: most likely no C compiler when the package was installed"


if _engine_c is None:
    EXTENSION_PROBLEM = _extension_problem(EXTENSION_IMPORT_ERROR)
    if os.environ.get("POINTSLEDGER_REQUIRE_EXTENSION") == "1":
        raise ExtensionMissing(f"POINTSLEDGER_REQUIRE_EXTENSION=1 but {EXTENSION_PROBLEM}")

ENGINES = {"python": _engine_py}
if _engine_c is not None:
    ENGINES["cython"] = _engine_c

if os.environ.get("POINTSLEDGER_PURE_PYTHON") == "1" or _engine_c is None:
    DEFAULT = _engine_py
else:
    DEFAULT = _engine_c

ENGINE = DEFAULT.ENGINE_NAME

if _engine_c is None and os.environ.get("POINTSLEDGER_PURE_PYTHON") != "1":
    # Never a silent fallback: the twin is correct but many times slower.
    warnings.warn(
        f"pointsledger: running on the pure-Python engine, correct but many times slower: {EXTENSION_PROBLEM}",
        RuntimeWarning,
        stacklevel=2,
    )


def get(name=None):
    """The engine module by name ("cython", "python"), or the default one."""
    if name is None:
        return DEFAULT
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(
            f"engine {name!r} is not available (available: {sorted(ENGINES)}"
            + (f"; {EXTENSION_PROBLEM}" if name == "cython" and EXTENSION_PROBLEM else "")
            + ")"
        ) from None
