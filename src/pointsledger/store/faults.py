"""Fault injection points of the write path, for the fault simulator (tests/test_fault_simulator.py).

`hook` is None in production, and the write path only tests it against None:
one module attribute lookup per point, nothing else. A test sets it to a
callable taking the point's name; the callable may raise (an injected ENOSPC,
MapFullError, ...) or kill the process, to strike exactly there.

The points, in the order one write meets them:
- "flush": `Writer.flush` starts, before the first putmulti;
- "putmulti": after each putmulti of a flush, so between two and after the last;
- "commit": `Store.write`, after the flush, just before the commit;
- "committed": after the commit, before the caller is answered;
- "grow": `Store._grow_map`, before the map is grown after a MapFullError.
"""

hook = None
