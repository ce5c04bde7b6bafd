"""The ingest: one file into one sink, with rejects, resume point, progress and summary."""

import dataclasses
import os
import sys
import time

from .columns import make_batch
from .common import ACCEPTED, BATCH_ROWS_DEFAULT, NUMPY_SCALAR, SORT_RUN_ROWS_DEFAULT
from .order import OrderWatch, member_column
from .prefetch import Prefetch
from .progress import Progress
from .rejects import RejectFile, _original_rows, default_rejects_path, sort_by_line
from .resume import ResumePoint, file_identity
from .sort import ExternalSort, sorted_batch
from .sources import ParquetSource, Piece, rechunk


@dataclasses.dataclass
class Options:
    batch_rows: int = BATCH_ROWS_DEFAULT
    rejects_path: str | None = None
    resume_path: str | None = None  # None: no resume point
    sort: bool = False
    sort_run_rows: int = SORT_RUN_ROWS_DEFAULT
    scratch_directory: str | None = None
    progress: str = "auto"  # auto, bar, lines, none
    progress_interval_s: float = 5.0
    rejects_printed_max: int = 10
    delay_s: float = 0.0  # test hook: pause after each committed batch


@dataclasses.dataclass
class Summary:
    file: str
    format: str
    target: str
    rows: int
    applied: int
    duplicates: int
    rejected: int
    points: int
    seconds: float
    rows_per_s: float
    rows_this_run: int
    resumed_after_rows: int | None  # rows a resume point said were committed already
    resumed_from_line: int | None  # the first line this run read (not with --sort)
    rejects_file: str | None
    out_of_order: int  # rows out of time order in the file (order.py); applied so unless `sorted`
    sorted: bool  # --sort: applied in time order

    def as_dict(self):
        return dataclasses.asdict(self)


class Ingest:
    """One file into one sink. `run()` returns a Summary."""

    def __init__(self, source, sink, options, label=None, log=None):
        self.source = source
        self.sink = sink
        self.options = options
        self.label = label or os.path.basename(source.path)
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.rejects_path = options.rejects_path or default_rejects_path(source.path)
        self.resume = ResumePoint(options.resume_path, file_identity(source.path), sink.target,
                                  options.sort, self.rejects_path)
        self.printed_rejects = 0
        self.rows_this_run = 0
        self.showing = None  # the Progress on screen, if any: reject lines go above its bar

    def run(self):
        started = time.perf_counter()
        saved, why = self.resume.load()
        if why:
            self.log(f"{self.label}: {why}")
        if saved is not None and not self._probe_holds(saved):
            self.log(f"{self.label}: the target does not hold the last committed row of the resume point; "
                     "sending the file from the start")
            saved = None
        if saved is not None:
            self.resume.adopt(saved)
        state = self.resume.state
        resumed_after_rows = state["records_done"] if saved is not None and state["records_done"] else None
        resumed_from_line = None
        if resumed_after_rows and self.options.sort:
            self.log(f"{self.label}: resuming after {resumed_after_rows:,} rows in time order")
        elif resumed_after_rows:
            resumed_from_line = state["last_line"] + 1
            self.log(f"{self.label}: resuming after line {state['last_line']:,} "
                     f"({resumed_after_rows:,} rows already committed)")
        self.rejects = RejectFile(self.rejects_path, self.source.names,
                                  keep_bytes=state["rejects_bytes"] if saved is not None else 0)
        sorter, out_of_order = None, None
        try:
            if self.options.sort:
                sorter = ExternalSort(self.source, self.options.sort_run_rows, self.options.scratch_directory,
                                      self.options.batch_rows)
                self._sort_pass(sorter, already_reported=saved is not None)
                out_of_order = sorter.out_of_order
                batches = self._sorted_batches(sorter, state["records_done"])
                total_rows = sorter.total_rows
            else:
                batches = self._batches(state["records_done"], state["last_line"])
                total_rows = self.source.estimated_rows
            self.progress = Progress(self.options.progress, self.label, total_rows,
                                     self.options.progress_interval_s, initial_rows=state["records_done"],
                                     estimated=sorter is None and self.source.total_rows is None)
            self.showing = self.progress
            reader = Prefetch(batches)
            try:
                for batch, outcomes in self.sink.apply(reader):
                    self._committed(batch, outcomes)
                self.progress.complete()
            finally:
                reader.close()
                self.progress.close()
                self.showing = None
            self.sink.finish()
        except BaseException:
            self.rejects.close()
            raise
        finally:
            if sorter is not None:
                sorter.close()
        self.rejects.close(completed=True)
        if self.options.sort:
            sort_by_line(self.rejects_path)
        self.resume.remove()
        seconds = time.perf_counter() - started
        totals = state["totals"]
        return Summary(
            file=self.source.path, format=self.source.format, target=self.sink.target,
            rows=totals["applied"] + totals["duplicates"] + totals["rejected"],
            applied=totals["applied"], duplicates=totals["duplicates"], rejected=totals["rejected"],
            points=totals["points"], seconds=round(seconds, 3),
            rows_per_s=round(self.rows_this_run / seconds, 1) if seconds > 0 else 0.0,
            rows_this_run=self.rows_this_run, resumed_after_rows=resumed_after_rows,
            resumed_from_line=resumed_from_line,
            rejects_file=self.rejects_path if totals["rejected"] else None,
            out_of_order=totals.get("out_of_order", 0) if out_of_order is None else out_of_order,
            sorted=bool(self.options.sort),
        )

    def stopped_at(self):
        """How far an interrupted run got: what is committed, and what running it again does."""
        state = self.resume.state
        totals = state["totals"]
        done = state["records_done"]
        if not done and not totals["rejected"]:
            return f"{self.label}: nothing committed yet"
        where = ("in time order" if self.options.sort
                 else f"through {'line' if self.source.format == 'csv' else 'row'} {state['last_line']:,}")
        again = ("run the same command again to resume after them" if self.resume.path is not None
                 else "run it again: committed rows come back as duplicates")
        return (f"{self.label}: {done:,} rows committed {where} ({totals['applied']:,} applied, "
                f"{totals['duplicates']:,} duplicates, {totals['rejected']:,} rejected); {again}")

    def _probe_holds(self, saved):
        probe = saved.get("probe")
        if not probe or not saved.get("records_done"):
            return True
        holds = self.sink.holds(probe["member_id"], probe["order_id"])
        return holds is None or holds

    def _batches(self, records_done, last_line):
        """Batches of the file in its order, the first `records_done` rows skipped (not converted)."""
        if isinstance(self.source, ParquetSource):
            pieces = self.source.pieces(skip_rows=records_done, batch_rows=self.options.batch_rows)
            position = records_done
        else:
            pieces = self.source.pieces()
            position = 0
        watch = OrderWatch()
        for piece in rechunk(pieces, self.options.batch_rows):
            count = len(piece.lines)
            if position + count <= records_done:
                position += count
                continue
            invalid = [row for row in piece.invalid if row[0] > last_line]
            if position < records_done:
                skip = records_done - position
                piece = Piece(piece.batch.slice(skip), piece.lines[skip:], invalid)
                position = records_done
            else:
                piece = Piece(piece.batch, piece.lines, invalid)
            batch = make_batch(piece, position)
            batch.out_of_order = watch.count(member_column(piece.batch), batch.columns[4])
            yield batch
            position += len(piece.lines)

    def _sort_pass(self, sorter, already_reported):
        self.log(f"{self.label}: sorting by time (runs of {self.options.sort_run_rows:,} rows)")
        progress = Progress(self.options.progress, f"{self.label} (sort)", self.source.estimated_rows,
                            self.options.progress_interval_s, estimated=self.source.total_rows is None)

        def on_rejects(rejects):
            if not already_reported:
                self._report_rejects(rejects)

        self.showing = progress
        try:
            sorter.sort(on_rejects, progress.update)
        finally:
            progress.close()
            self.showing = None
        if not already_reported:
            self.resume.state["rejects_bytes"] = self.rejects.flush()
            self.resume.save()

    def _sorted_batches(self, sorter, records_done):
        position = records_done
        for piece in rechunk(sorter.pieces(skip_rows=records_done), self.options.batch_rows):
            yield sorted_batch(piece, position)
            position += len(piece.lines)

    def _report_rejects(self, rejects):
        self.rejects.write(rejects)
        totals = self.resume.state["totals"]
        totals["rejected"] += len(rejects)
        self.rows_this_run += len(rejects)
        for line, _, _, reason in rejects:
            if self.printed_rejects < self.options.rejects_printed_max:
                where = f"line {line}" if self.source.format == "csv" else f"row {line}"
                self._say(f"{self.source.path}: {where}: {reason}")
            elif self.printed_rejects == self.options.rejects_printed_max:
                self._say(f"{self.source.path}: more rejected rows: see {self.rejects_path}")
            self.printed_rejects += 1

    def _say(self, text):
        """A line while rows go by: never in the middle of a progress bar."""
        if self.showing is not None and self.showing.bar is not None:
            self.showing.write(text)
        else:
            self.log(text)

    def _committed(self, batch, outcomes):
        """One batch is committed: count it, write its rejects, then move the resume point."""
        state = self.resume.state
        totals = state["totals"]
        rejects = [(line, fields, "INVALID_ARGUMENT", reason) for line, fields, reason in batch.invalid]
        if len(outcomes) != len(batch):
            raise RuntimeError(f"{len(outcomes)} results for a batch of {len(batch)} rows")
        # Counted with list methods (C loops): this runs for every row of the file.
        statuses = [outcome[0] for outcome in outcomes]
        applied = statuses.count("APPLIED")
        duplicates = statuses.count("DUPLICATE")
        if applied == len(statuses):
            points = sum(outcome[2] for outcome in outcomes)
        else:  # a duplicate carries the points it earned the first time
            points = sum(outcome[2] for outcome in outcomes if outcome[0] == "APPLIED")
        refused = []
        if applied + duplicates < len(statuses):
            refused = [index for index, status in enumerate(statuses) if status not in ACCEPTED]
        probe_index = None
        for index in range(len(statuses) - 1, -1, -1):
            if statuses[index] in ACCEPTED:
                probe_index = index
                break
        if refused:
            for index, fields in zip(refused, _original_rows(batch.originals, refused)):
                status, error = outcomes[index][0], outcomes[index][4]
                rejects.append((int(batch.lines[index]), fields, status, self._reason(batch, index, error)))
            if batch.invalid:
                rejects.sort(key=lambda reject: reject[0])
        totals["applied"] += applied
        totals["duplicates"] += duplicates
        totals["out_of_order"] = totals.get("out_of_order", 0) + batch.out_of_order
        totals["points"] += points
        self.rows_this_run += applied + duplicates
        self._report_rejects(rejects)
        state["rejects_bytes"] = self.rejects.flush()
        state["records_done"] = batch.first_record + len(batch)
        if len(batch):
            state["last_line"] = max(state["last_line"], int(batch.lines.max()))
        elif batch.invalid:
            state["last_line"] = max(state["last_line"], max(row[0] for row in batch.invalid))
        if probe_index is not None:
            state["probe"] = {"member_id": batch.columns[1][probe_index],
                              "order_id": batch.columns[0][probe_index]}
        self.resume.save()
        self.progress.update(len(batch) + len(batch.invalid), totals["rejected"])
        if self.options.delay_s:
            time.sleep(self.options.delay_s)

    @staticmethod
    def _reason(batch, index, error):
        override = batch.overrides.get(index)
        if override is not None and getattr(error, "field", None) == override[0]:
            return override[1]
        # A value from an int64 column is a numpy scalar; its repr is noise in a reason.
        return NUMPY_SCALAR.sub(r"\1", str(error)) if error is not None else "refused"
