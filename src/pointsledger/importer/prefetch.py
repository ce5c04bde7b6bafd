"""The reader thread: the next batches are prepared while the sink applies this one."""

import queue
import threading

from .common import PREFETCH_BATCHES


class Prefetch:
    """Iterate `iterator` in a reader thread, `depth` items ahead; its exceptions surface here.

    close() stops and joins the thread whatever state either side is in: the
    consumer may be the sink's own thread (the gRPC client pulls requests from
    one), so no side ever blocks without looking at the stop flag.
    """

    _DONE = object()

    def __init__(self, iterator, depth=PREFETCH_BATCHES):
        self.iterator = iterator
        self.items = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pointsledger-reader", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for item in self.iterator:
                if not self._put((item, None)):
                    return
            self._put((self._DONE, None))
        except BaseException as error:  # handed to the consumer
            self._put((self._DONE, error))
        finally:
            close = getattr(self.iterator, "close", None)
            if close is not None:
                close()  # in this thread, which ran it: the file is closed here

    def _put(self, entry):
        while not self.stop.is_set():
            try:
                self.items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            try:
                item, error = self.items.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if item is self._DONE:
                if error is not None:
                    raise error
                return
            yield item

    def close(self):
        self.stop.set()
        self.thread.join(timeout=30)
