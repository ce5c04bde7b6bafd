"""Progress: a bar on a terminal, plain lines otherwise."""

import sys
import time


class Progress:
    """A tqdm bar (rows/s, ETA) on a terminal, else a plain line every `interval_s` seconds.

    A CSV's row count is not known before the end: `estimated` says the total
    is an estimate (from the first MiB's line length), shown with a "~".
    """

    def __init__(self, mode, label, total_rows, interval_s, initial_rows=0, estimated=False, stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.label = label
        self.total_rows = total_rows
        self.estimated = estimated
        self.interval_s = interval_s
        self.rows = initial_rows
        self.started_rows = initial_rows
        self.started = time.monotonic()
        self.last_print = self.started
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total_rows, initial=initial_rows, unit=" rows", unit_scale=True,
                            file=self.stream, desc=label, smoothing=0.1)

    def update(self, rows, rejected=0):
        self.rows += rows
        if self.total_rows is not None and self.rows > self.total_rows:
            self.total_rows = self.rows  # the estimate was short
            if self.bar is not None:
                self.bar.total = self.total_rows
        if self.bar is not None:
            if rejected:
                self.bar.set_postfix_str(f"{rejected:,} rejected", refresh=False)
            self.bar.update(rows)
            return
        now = time.monotonic()
        if self.mode == "lines" and now - self.last_print >= self.interval_s:
            self.last_print = now
            self.stream.write(self.line(rejected) + "\n")
            self.stream.flush()

    def line(self, rejected):
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.rows - self.started_rows) / elapsed
        total = self.total_rows
        text = f"{self.label}: {self.rows:,} rows"
        if total:
            text += f" of {'~' if self.estimated else ''}{total:,} ({100 * self.rows / total:.0f} %)"
        text += f", {rate:,.0f} rows/s"
        if total and rate > 0:
            text += f", ETA {_duration(max(total - self.rows, 0) / rate)}"
        if rejected:
            text += f", {rejected:,} rejected"
        return text

    def write(self, text):
        """A line of its own, above the bar: tqdm clears the bar, writes the line and redraws it."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def complete(self):
        """The end: the estimate gives way to the count."""
        self.total_rows = self.rows
        if self.bar is not None:
            self.bar.total = self.rows
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
