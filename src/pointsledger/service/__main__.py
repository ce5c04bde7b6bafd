"""`python -m pointsledger.service`: the same as `pointsledger serve`'s flags (see server.build_parser)."""

import sys

from .server import main

sys.exit(main())
