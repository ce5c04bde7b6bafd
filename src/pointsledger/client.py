"""Moved to `pointsledger.service.client`; this name stays importable (the same module object)."""

import sys

from .service import client as _moved

sys.modules[__name__] = _moved
