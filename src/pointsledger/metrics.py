"""Moved to `pointsledger.service.metrics`; this name stays importable (the same module object)."""

import sys

from .service import metrics as _moved

sys.modules[__name__] = _moved
