"""Moved to `pointsledger.service.auth`; this name stays importable (the same module object)."""

import sys

from .service import auth as _moved

sys.modules[__name__] = _moved
