"""Moved to `pointsledger.service.auth`; this name stays importable (the same module object).

The public names are also copied here first: a thread that imports this module
while another is importing it gets this module object, not the one it becomes.
"""

import sys

from .service import auth as _moved
from .service.auth import *  # noqa: F401,F403

sys.modules[__name__] = _moved
