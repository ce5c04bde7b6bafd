"""The one place that chooses between the Cython engine and its pure-Python twin.

POINTSLEDGER_PURE_PYTHON=1 forces the twin. POINTSLEDGER_REQUIRE_EXTENSION=1
turns a missing extension into an import error, so CI cannot pass on the twin
alone. Otherwise a missing extension falls back to the twin, and
`pointsledger.ENGINE` / `pointsledger info` say so.
"""

import os
import warnings

from . import _engine_py
from .errors import ExtensionMissing

EXTENSION_IMPORT_ERROR = None
try:
    from . import _engine_c
except ImportError as error:  # not built, or built for another Python
    _engine_c = None
    EXTENSION_IMPORT_ERROR = error

if _engine_c is None and os.environ.get("POINTSLEDGER_REQUIRE_EXTENSION") == "1":
    raise ExtensionMissing(
        f"POINTSLEDGER_REQUIRE_EXTENSION=1 but the Cython engine did not import: {EXTENSION_IMPORT_ERROR}"
    )

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
        f"pointsledger: the Cython engine is not available ({EXTENSION_IMPORT_ERROR}); "
        "running on the pure-Python engine",
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
            + (f"; the extension failed to import: {EXTENSION_IMPORT_ERROR}" if name == "cython" else "")
            + ")"
        ) from None
