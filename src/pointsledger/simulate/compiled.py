"""The what-if's compiled loops (simulate/_walk.pyx), chosen as engine.py chooses the engine.

They belong to the Cython engine: with it (and when built) the journal walk and
the taking of the engine's results run in C; with the twin, source.py's and
scratch.py's Python loops do, which are the specification the compiled ones
follow (tests/test_simulate_walk.py and the engines' identical results check it).
POINTSLEDGER_REQUIRE_EXTENSION=1 turns a missing module into an import error.
"""

import os

from ..errors import ExtensionMissing

try:
    from . import _walk
except ImportError as error:
    _walk = None
    if os.environ.get("POINTSLEDGER_REQUIRE_EXTENSION") == "1":
        raise ExtensionMissing(f"POINTSLEDGER_REQUIRE_EXTENSION=1 but the what-if's compiled loops "
                               f"(pointsledger.simulate._walk) do not load: {error}") from error


def loops(engine):
    """The compiled module for this engine, or None: the Python loops."""
    return _walk if engine.ENGINE_NAME == "cython" else None
