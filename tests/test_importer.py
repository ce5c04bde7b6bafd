"""The bulk importer in-process (src/pointsledger/importer/): line numbers, cell
conversion, chunking, the external sort, the reject file, the resume point and its
probe, and the server sink's local refusals. The command itself is tested as a
subprocess in test_cli.py.
"""

import csv
import json
import os
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pa_parquet
import pytest

from pointsledger import EXAMPLE_PROGRAM, Ledger, importer

T_2026_01_01 = 1_767_225_600  # 2026-01-01T00:00:00Z
T_2026_03_15 = 1_773_532_800  # 2026-03-15T00:00:00Z
T_2026_03_15_123456 = 1_773_578_096  # 2026-03-15T12:34:56Z
HEADER = "order_id,member_id,amount_minor,category,time_s"


def write_text(path, text):
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def read_pieces(source):
    pieces = list(source.pieces())
    lines = np.concatenate([piece.lines for piece in pieces]) if pieces else np.zeros(0, np.int64)
    invalid = [row for piece in pieces for row in piece.invalid]
    return pieces, lines.tolist(), invalid


def new_ledger(path, **options):
    ledger = Ledger(path, **options)
    ledger.set_program(dict(EXAMPLE_PROGRAM, effective_from=946_684_800))
    return ledger


def options(**overrides):
    overrides.setdefault("progress", "none")
    return importer.Options(**overrides)


# --- line numbers ------------------------------------------------------------------------


def test_csv_line_numbers_count_the_header_blank_lines_skipped_rows_and_line_breaks_in_values(tmp_path):
    path = write_text(tmp_path / "f.csv", "\n".join([
        HEADER,                                   # line 1
        f"o1,m1,100,grocery,{T_2026_03_15}",      # line 2
        "",                                       # line 3: blank, skipped
        "o2,m1",                                  # line 4: 2 fields, rejected by the parser
        f'o3,m1,100,"gro\ncery",{T_2026_03_15}',  # lines 5-6: one row
        f"o4,m1,100,grocery,{T_2026_03_15}",      # line 7
        "o5,m1,1,2,3,4,5",                        # line 8: 7 fields
        f"o6,m1,100,grocery,{T_2026_03_15}",      # line 9
    ]) + "\n")
    _, lines, invalid = read_pieces(importer.open_source(path))
    assert lines == [2, 5, 7, 9]
    assert [(line, reason) for line, _, reason in invalid] == [
        (4, "expected 5 fields, found 2"), (8, "expected 5 fields, found 7"),
    ]
    assert invalid[0][1] == ["o2", "m1"]


def test_csv_line_numbers_hold_across_parser_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(importer.common, "CSV_BLOCK_BYTES", 512)  # many blocks
    rows, expected_lines, expected_invalid = [HEADER], [], []
    for number in range(2, 600):
        line = len(rows) + 1
        if number % 97 == 0:
            rows.append(f"short{number},m1")
            expected_invalid.append(line)
        elif number % 89 == 0:
            rows.append(f'q{number},m1,5,"two\nlines",{T_2026_03_15}')  # takes two lines
            rows.append("")  # keeps the list one entry per physical line
            expected_lines.append(line)
        else:
            rows.append(f"o{number},m{number % 7},{number},grocery,{T_2026_03_15}")
            expected_lines.append(line)
    text = "\n".join(row for row in rows if row != "") + "\n"
    path = write_text(tmp_path / "f.csv", text)
    pieces, lines, invalid = read_pieces(importer.open_source(path))
    assert len(pieces) > 5
    assert lines == expected_lines
    assert [line for line, _, _ in invalid] == expected_invalid


def test_csv_header_may_have_a_bom_extra_columns_and_any_order(tmp_path):
    path = write_text(tmp_path / "f.csv", "\ufeffnote,time_s,category,amount_minor,member_id,order_id\n"
                                          f"hello,{T_2026_03_15},toys,250,m9,o9\n")
    source = importer.open_source(path)
    batch = importer.make_batch(next(iter(source.pieces())))
    assert batch.columns[0] == ["o9"] and batch.columns[1] == ["m9"] and batch.columns[3] == ["toys"]
    assert batch.columns[2].tolist() == [250] and batch.columns[4].tolist() == [T_2026_03_15]
    assert source.names == ["note", "time_s", "category", "amount_minor", "member_id", "order_id"]


def test_a_missing_column_refuses_the_file_by_name(tmp_path):
    path = write_text(tmp_path / "f.csv", "order_id,member_id,amount,category,time_s\n")
    with pytest.raises(importer.InputError, match="missing column.*amount_minor"):
        importer.open_source(path)


# --- cell conversion ---------------------------------------------------------------------


def test_integer_cells_convert_only_when_they_are_plain_decimal_integers():
    overrides = {}
    values = importer.integer_values(
        pa.array(["007", "-5", "0x10", " 5", "", "1_000", "12.0", "99999999999999999999"]), "amount_minor", overrides)
    # Bad cells stay text so the engine refuses them naming the field and the value.
    assert values == [7, -5, "0x10", " 5", "", "1_000", "12.0", 99999999999999999999]
    assert importer.integer_values(pa.array(["1", "2"]), "amount_minor", {}).tolist() == [1, 2]


def test_time_cells_take_unix_seconds_or_iso_8601_utc():
    assert importer.time_values(pa.array([str(T_2026_03_15)]), {}).tolist() == [T_2026_03_15]
    iso = pa.array(["2026-03-15T00:00:00Z", "2026-03-15T12:34:56+00:00"])
    assert importer.time_values(iso, {}).tolist() == [T_2026_03_15, T_2026_03_15_123456]
    overrides = {}
    mixed = pa.array([str(T_2026_01_01), "2026-03-15T00:00:00Z", "2026-02-30T00:00:00Z", "yesterday",
                      "2026-03-15T00:00:00.5Z", "2026-03-15T01:00:00+01:00"])
    values = importer.time_values(mixed, overrides)
    assert values[:2] == [T_2026_01_01, T_2026_03_15]
    assert values[2:] == ["2026-02-30T00:00:00Z", "yesterday", "2026-03-15T00:00:00.5Z", "2026-03-15T01:00:00+01:00"]
    assert sorted(overrides) == [2, 3, 4, 5]
    assert overrides[2] == ("time_s", "time_s: must be Unix seconds, ISO 8601 UTC like 2026-03-15T00:00:00Z "
                                      "or a date like 2026-03-15 (got '2026-02-30T00:00:00Z')")


def test_parquet_timestamps_and_dates_convert_when_whole_seconds():
    milliseconds = pa.array([T_2026_03_15 * 1000, T_2026_03_15 * 1000 + 500, None], pa.timestamp("ms", tz="UTC"))
    overrides = {}
    assert importer.time_values(milliseconds, overrides) == [T_2026_03_15, "1773532800500ms", None]
    assert overrides == {1: ("time_s", "time_s: not a whole second (got 1773532800500 ms)"),
                         2: ("time_s", "time_s: missing")}
    microseconds = pa.array([T_2026_03_15 * 1_000_000], pa.timestamp("us"))
    assert importer.time_values(microseconds, {}).tolist() == [T_2026_03_15]
    dates = pa.array([20527], pa.date32())  # 2026-03-15
    assert importer.time_values(dates, {}).tolist() == [T_2026_03_15]


def test_text_cells_that_are_not_utf8_are_noted_per_row():
    overrides = {}
    values = importer.text_values(pa.array([b"m1", b"m\xff"], pa.binary()), "member_id", overrides)
    assert values == ["m1", b"m\xff"]
    assert overrides == {1: ("member_id", "member_id: not valid UTF-8 (got b'm\\xff')")}
    assert importer.text_values(pa.array([17, 18]), "order_id", {}) == ["17", "18"]


# --- chunking -------------------------------------------------------------------------------


def test_rechunk_gives_exact_sizes_and_keeps_lines_and_skipped_rows():
    def piece(first, count, invalid=()):
        batch = pa.RecordBatch.from_arrays([pa.array(range(first, first + count))], names=["x"])
        return importer.Piece(batch, np.arange(first, first + count), list(invalid))

    pieces = [piece(0, 7, [(100, [], "a")]), piece(7, 3), piece(10, 12, [(101, [], "b")])]
    chunks = list(importer.rechunk(iter(pieces), 5))
    assert [len(chunk.lines) for chunk in chunks] == [5, 5, 5, 5, 2]
    assert np.concatenate([chunk.lines for chunk in chunks]).tolist() == list(range(22))
    assert [chunk.batch.column(0).to_pylist() for chunk in chunks][1] == [5, 6, 7, 8, 9]
    assert [row[0] for chunk in chunks for row in chunk.invalid] == [100, 101]


# --- --sort -----------------------------------------------------------------------------------


def test_external_sort_orders_by_time_then_line_over_many_runs(tmp_path):
    generator = random.Random(7)
    rows = [f"o{index},m{index % 13},{index + 1},toys,{T_2026_01_01 + generator.randrange(0, 50) * 3600}"
            for index in range(3000)]
    rows.insert(1500, "bad,m1,5,toys,tomorrow")
    path = write_text(tmp_path / "f.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    sorter = importer.ExternalSort(importer.open_source(path), run_rows=1000, scratch_directory=str(tmp_path))
    rejects = []
    sorter.sort(rejects.extend)
    assert len(sorter.runs) == 3
    assert [(line, reason) for line, _, _, reason in rejects] == [
        (1502, "time_s: must be Unix seconds, ISO 8601 UTC like 2026-03-15T00:00:00Z or a date like 2026-03-15 (got 'tomorrow')")]
    pieces = list(sorter.pieces())
    lines = np.concatenate([piece.lines for piece in pieces]).tolist()
    times = np.concatenate([piece.batch.column(piece.batch.schema.get_field_index("__time_s")).to_numpy()
                            for piece in pieces]).tolist()
    assert len(lines) == 3000
    assert list(zip(times, lines)) == sorted(zip(times, lines))
    assert sorted(lines) == [line for line in range(2, 3003) if line != 1502]
    skipped = list(sorter.pieces(skip_rows=2500))
    assert np.concatenate([piece.lines for piece in skipped]).tolist() == lines[2500:]
    sorter.close()


# --- the ingest, the reject file, the resume point ----------------------------------------


def sample_file(tmp_path, count=1000, bad_every=100):
    rows = [HEADER]
    for index in range(count):
        amount = "lots" if index % bad_every == 5 else str(100 + index)
        rows.append(f"o{index:05d},m{index % 17},{amount},grocery,{T_2026_01_01 + index * 60}")
    return write_text(tmp_path / "purchases.csv", "\n".join(rows) + "\n")


def journal(ledger):
    return [vars(entry) for entry in ledger.journal(1, 100_000)]


class Interrupted(Exception):
    pass


class FailingSink(importer.EmbeddedSink):
    """Commits `batches` batches, then fails as a killed process would, before the next."""

    def __init__(self, ledger, batches):
        super().__init__(ledger)
        self.left = batches

    def apply(self, batches):
        for batch, outcomes in super().apply(batches):
            yield batch, outcomes
            self.left -= 1
            if self.left == 0:
                raise Interrupted()


def test_an_interrupted_ingest_resumes_after_its_last_committed_batch(tmp_path):
    path = sample_file(tmp_path)
    resume_path = str(tmp_path / "resume.json")
    rejects_path = str(tmp_path / "rejects.csv")
    with new_ledger(tmp_path / "whole") as ledger:
        whole = importer.Ingest(importer.open_source(path), importer.EmbeddedSink(ledger),
                                options(batch_rows=100, rejects_path=str(tmp_path / "whole.csv"))).run()
        expected = journal(ledger)
    with new_ledger(tmp_path / "parts") as ledger:
        run = importer.Ingest(importer.open_source(path), FailingSink(ledger, 3),
                              options(batch_rows=100, rejects_path=rejects_path, resume_path=resume_path))
        with pytest.raises(Interrupted):
            run.run()
        saved = json.load(open(resume_path))
        assert saved["records_done"] == 300 and saved["last_line"] == 301
        assert saved["totals"] == {"applied": 297, "duplicates": 0, "rejected": 3, "points": saved["totals"]["points"],
                                   "out_of_order": 0}
        resumed = importer.Ingest(importer.open_source(path), importer.EmbeddedSink(ledger),
                                  options(batch_rows=100, rejects_path=rejects_path, resume_path=resume_path)).run()
        assert journal(ledger) == expected
    assert resumed.resumed_from_line == 302
    assert resumed.rows_this_run == 700
    assert (resumed.applied, resumed.duplicates, resumed.rejected, resumed.points) == (
        whole.applied, whole.duplicates, whole.rejected, whole.points) == (990, 0, 10, whole.points)
    assert open(rejects_path).read() == open(tmp_path / "whole.csv").read()
    assert not os.path.exists(resume_path)  # a completed ingest leaves no resume point


def test_a_resume_point_is_ignored_when_the_ledger_lost_its_last_committed_row(tmp_path):
    path = sample_file(tmp_path)
    resume_path = str(tmp_path / "resume.json")
    with new_ledger(tmp_path / "first") as ledger:
        run = importer.Ingest(importer.open_source(path), FailingSink(ledger, 4),
                              options(batch_rows=100, resume_path=resume_path))
        with pytest.raises(Interrupted):
            run.run()
    # The same ledger path, but emptied (restored from an old backup, say): the probe fails.
    os.rename(tmp_path / "first", tmp_path / "gone")
    with new_ledger(tmp_path / "first") as ledger:
        logged = []
        summary = importer.Ingest(importer.open_source(path), importer.EmbeddedSink(ledger),
                                  options(batch_rows=100, resume_path=resume_path), log=logged.append).run()
        assert ledger.last_seq() == 990
    assert summary.resumed_from_line is None and summary.applied == 990
    assert any("from the start" in line for line in logged)


def test_a_resume_point_is_ignored_when_the_file_changed(tmp_path):
    path = sample_file(tmp_path)
    resume_path = str(tmp_path / "resume.json")
    with new_ledger(tmp_path / "l") as ledger:
        with pytest.raises(Interrupted):
            importer.Ingest(importer.open_source(path), FailingSink(ledger, 2),
                            options(batch_rows=100, resume_path=resume_path)).run()
        with open(path, "a") as handle:
            handle.write(f"o99999,m1,5,toys,{T_2026_03_15}\n")
        logged = []
        summary = importer.Ingest(importer.open_source(path), importer.EmbeddedSink(ledger),
                                  options(batch_rows=100, resume_path=resume_path), log=logged.append).run()
    assert summary.resumed_from_line is None
    assert (summary.applied, summary.duplicates) == (991 - 198, 198)
    assert "resume point ignored: the file changed" in logged[0]


def test_reject_file_keeps_the_original_fields_then_line_code_and_reason(tmp_path):
    path = write_text(tmp_path / "f.csv", "order_id,member_id,amount_minor,category,time_s,note\n"
                                          f"o1,m1,12.50,toys,{T_2026_03_15},first\n"
                                          f"o2,m1,100,toys,{T_2026_03_15},second\n"
                                          f"o2,m1,999,toys,{T_2026_03_15},conflict\n")
    with new_ledger(tmp_path / "l") as ledger:
        summary = importer.Ingest(importer.open_source(path), importer.EmbeddedSink(ledger), options()).run()
    assert (summary.applied, summary.rejected) == (1, 2)
    with open(summary.rejects_file, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["order_id", "member_id", "amount_minor", "category", "time_s", "note",
                       "reject_line", "reject_code", "reject_reason"]
    assert rows[1] == ["o1", "m1", "12.50", "toys", str(T_2026_03_15), "first", "2", "INVALID_ARGUMENT",
                       "amount_minor: must be an integer (got '12.50')"]
    assert rows[2][:8] == ["o2", "m1", "999", "toys", str(T_2026_03_15), "conflict", "4", "ALREADY_EXISTS"]


def test_parquet_resume_skips_whole_row_groups(tmp_path):
    count = 1000
    table = pa.table({
        "order_id": [f"o{index:05d}" for index in range(count)],
        "member_id": [f"m{index % 7}" for index in range(count)],
        "amount_minor": pa.array(range(1, count + 1), pa.int64()), "category": ["toys"] * count,
        "time_s": pa.array([T_2026_01_01 + index for index in range(count)], pa.int64()),
    })
    path = str(tmp_path / "f.parquet")
    pa_parquet.write_table(table, path, row_group_size=128)
    source = importer.open_source(path)
    pieces = list(source.pieces(skip_rows=300, batch_rows=100))
    lines = np.concatenate([piece.lines for piece in pieces]).tolist()
    assert lines == list(range(301, count + 1))
    assert pieces[0].batch.column(0)[0].as_py() == "o00300"


# --- the server sink ----------------------------------------------------------------------------


def test_rows_a_server_batch_cannot_carry_are_refused_locally_with_the_engines_reason():
    columns = (["o1", "o2", None, "o4"], ["m1", "m1", "m1", ""], [100, "abc", 5, 2 ** 70], ["x"] * 4,
               np.array([T_2026_03_15] * 4, dtype=np.int64))
    keep, local = importer._split_unsendable(columns)
    assert keep == [0]
    assert [outcome[0] for outcome in local[1:]] == ["INVALID_ARGUMENT"] * 3
    assert [str(outcome[4]) for outcome in local[1:]] == [
        "amount_minor: must be an integer (got 'abc')",
        "order_id: must be a string (got None)",
        "member_id: must be 1 to 64 bytes of UTF-8 (got '')",
    ]
    sent = importer._sendable_columns(columns, keep)
    assert sent[0] == ["o1"] and sent[4].tolist() == [T_2026_03_15]


def test_a_sorted_ingest_resumes_in_time_order(tmp_path):
    generator = random.Random(3)
    rows = [f"o{index:05d},m{index % 11},{100 + index},grocery,{T_2026_01_01 + generator.randrange(0, 400) * 86_400}"
            for index in range(1000)]
    rows.insert(500, "late,m1,5,toys,someday")
    path = write_text(tmp_path / "shuffled.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    resume_path = str(tmp_path / "resume.json")
    sort_options = dict(batch_rows=100, sort=True, sort_run_rows=1000, scratch_directory=str(tmp_path))
    with new_ledger(tmp_path / "whole") as ledger:
        whole = importer.Ingest(importer.open_source(path), importer.EmbeddedSink(ledger),
                                options(rejects_path=str(tmp_path / "whole.csv"), **sort_options)).run()
        expected = journal(ledger)
    with new_ledger(tmp_path / "parts") as ledger:
        with pytest.raises(Interrupted):
            importer.Ingest(importer.open_source(path), FailingSink(ledger, 4),
                            options(resume_path=resume_path, **sort_options)).run()
        resumed = importer.Ingest(importer.open_source(path), importer.EmbeddedSink(ledger),
                                  options(resume_path=resume_path, **sort_options)).run()
        assert journal(ledger) == expected
    assert (resumed.resumed_after_rows, resumed.resumed_from_line, resumed.rows_this_run) == (400, None, 600)
    assert (resumed.applied, resumed.rejected, resumed.points) == (whole.applied, whole.rejected, whole.points)
    assert (whole.applied, whole.rejected) == (1000, 1)
    assert open(f"{path}.rejects.csv").read() == open(tmp_path / "whole.csv").read()


def test_the_probe_of_a_write_only_client_trusts_the_resume_point():
    from pointsledger.client import PermissionDenied, ledger_error

    class WriteOnlyClient:
        def history(self, member_id, limit=100, before_seq=None):
            raise ledger_error("PERMISSION_DENIED", "this token lacks the read scope")

    class ReadingClient:
        def history(self, member_id, limit=100, before_seq=None):
            raise ledger_error("NOT_FOUND", f"member_id {member_id!r}: no such member")

    assert issubclass(PermissionDenied, Exception)
    assert importer.ServerSink(WriteOnlyClient(), "a:1", 4).holds("m1", "o1") is None
    assert importer.ServerSink(ReadingClient(), "a:1", 4).holds("m1", "o1") is False


def test_a_date_in_time_s_is_its_midnight_utc():
    assert importer.time_values(pa.array(["2026-03-15", "2026-03-15T00:00:01Z"]), {}).tolist() == [
        T_2026_03_15, T_2026_03_15 + 1]
    overrides = {}
    assert importer.time_values(pa.array(["2026-03-15", "2026-02-30", "15/03/2026"]), overrides) == [
        T_2026_03_15, "2026-02-30", "15/03/2026"]
    assert sorted(overrides) == [1, 2]


def test_rows_out_of_time_order_are_counted_against_the_previous_row_and_the_member():
    from pointsledger.importer.order import OrderWatch

    watch = OrderWatch()
    # A+5, B+1 (before the previous row), A+3 (before A's +5), C+4, A+6, B+2 (before the previous row)
    assert watch.count(["A", "B", "A", "C", "A", "B"],
                       np.array([5, 1, 3, 4, 6, 2], dtype=np.int64) + T_2026_03_15) == 3
    # The next batch goes on from there: B+2 is in order (B's latest is +2), A+5 is before A's +6.
    assert watch.count(["B", "A"], [T_2026_03_15 + 2, T_2026_03_15 + 5]) == 1
    # Rows without a member, or a time in range, take no part; Z at +0 is before the previous row (+5),
    # and the member that is not UTF-8 (compared as the file has it) at -10 before Z's +0.
    assert watch.count(["Z", b"x\xff", None, "Y"], [T_2026_03_15, T_2026_03_15 - 10, T_2026_03_15, 5]) == 2
    # A file sorted by member but not by time: only the first rule sees it.
    by_member = OrderWatch()
    assert by_member.count(["A", "A", "B", "B"], np.array([1, 9, 2, 3], dtype=np.int64) + T_2026_03_15) == 1


def test_out_of_order_counts_match_the_definition_across_batches_and_folds(monkeypatch):
    """The vectorised count (order.py) against the definition, row by row, with folds forced often."""
    from pointsledger.importer import order

    monkeypatch.setattr(order, "KEPT_ROWS_MAX", 16)
    monkeypatch.setattr(order, "LOOKUP_FOLD_ROWS", 8)

    def by_definition(members, times):
        latest, previous, late = {}, None, 0
        for member, time_s in zip(members, times):
            late += (previous is not None and time_s < previous) or time_s < latest.get(member, time_s)
            latest[member] = max(latest.get(member, time_s), time_s)
            previous = time_s
        return late

    rng = random.Random(9)
    for _ in range(100):
        count = rng.randrange(1, 300)
        members = [f"m{rng.randrange(20)}" for _ in range(count)]
        times = [T_2026_03_15 + rng.randrange(50) for _ in range(count)]
        cuts = sorted(rng.randrange(count + 1) for _ in range(5)) + [count]
        watch, start, counted = order.OrderWatch(), 0, 0
        for cut in cuts:
            counted += watch.count(pa.array(members[start:cut]), np.array(times[start:cut], dtype=np.int64))
            start = cut
        assert counted == by_definition(members, times)
