"""The CLI as an operator meets it (issue 9): exit codes, labelled reports, the rollforward's days,
out-of-order input, the reject file, progress, Ctrl-C, pipes, `serve` on a busy port, `program show`
round trips, `bench` text and the warning of an install without the compiled engine.

Each test runs the real command (`python -m pointsledger`), as tests/test_cli.py does.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from test_cli import (
    SCRATCH_CACHE, T_2026_03_15, child_environment, committed_rows, purchases_file, resume_state, run, run_json,
    start, wait_for,
)
from pointsledger import cli

T_2026_01_01 = 1_767_225_600
T_2026_01_02 = 1_767_312_000
T_2027_01_01 = 1_798_761_600
T_2026_12_31 = 1_798_675_200
HEADER = "order_id,member_id,amount_minor,category,time_s"
EXIT_STATUS_RULE = ("exit status: 0 done; 1 the ledger refused or the command failed; 2 bad usage or a bad argument\n"
                    "value (found before the ledger is touched); 3 an ingest finished with rejected rows; "
                    "130 interrupted")


@pytest.fixture(scope="module", autouse=True)
def scratch_cache(tmp_path_factory):
    SCRATCH_CACHE["path"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample") / "ledger"
    run("ingest", "--sample", "--quiet", data=data, check=0)
    return data


# --- item 4: the rollforward covers whole UTC days, and says which --------------------------------------


def test_rollforward_takes_dates_and_prints_the_days_it_covers(sample):
    report = run("report", "rollforward", "--from", "2026-01-01", "--to", "2027-01-01", data=sample, check=0)
    assert report.stdout.splitlines()[0] == (
        "Points rollforward for the UTC days 2026-01-01 through 2026-12-31 (365 days: "
        "2026-01-01T00:00:00Z up to 2027-01-01T00:00:00Z)")
    one_day = run_json("report", "rollforward", "--from", "2026-01-01", "--to", "2026-01-02", data=sample, check=0)
    assert (one_day["first_day"], one_day["last_day"], one_day["days"]) == ("2026-01-01", "2026-01-01", 1)
    assert (one_day["from_s"], one_day["to_s"], one_day["earned"], one_day["closing"]) == (
        T_2026_01_01, T_2026_01_02, 2_790, 2_790)


@pytest.mark.parametrize("option,value,why", [
    ("--from", "2026-01-01T12:00:00Z", "is not a date: give YYYY-MM-DD (the rollforward covers whole UTC days, "
                                       "midnight to midnight)"),
    ("--to", "1767312000", "is not a date: give YYYY-MM-DD (the rollforward covers whole UTC days, "
                           "midnight to midnight)"),
])
def test_rollforward_refuses_a_boundary_inside_a_day(sample, option, value, why):
    given = {"--from": "2026-01-01", "--to": "2026-02-01", option: value}
    completed = run("report", "rollforward", "--from", given["--from"], "--to", given["--to"], data=sample, check=2)
    assert completed.stdout == ""
    assert completed.stderr.splitlines()[-1] == (
        f"pointsledger report: error: argument {option}: {value!r} {why}")


def test_rollforward_refuses_a_reversed_period(sample):
    completed = run("report", "rollforward", "--from", "2026-02-02", "--to", "2026-02-01", data=sample, check=2)
    assert completed.stderr.splitlines()[-1] == (
        "pointsledger: error: --to must not be an earlier date than --from: the period is the days from --from "
        "up to, not including, --to")


# --- item 5: out-of-order input is counted -------------------------------------------------------------

# Times: A@+5, B@+1 (earlier than the row before), A@+3 (earlier than A's +5), C@+4, A@+6, B@+2 (earlier
# than the row before): 3 rows out of order.
OUT_OF_ORDER_ROWS = [("o1", "A", 5), ("o2", "B", 1), ("o3", "A", 3), ("o4", "C", 4), ("o5", "A", 6), ("o6", "B", 2)]


def out_of_order_file(path):
    path.write_text(HEADER + "\n" + "".join(f"{order},{member},1000,grocery,{T_2026_03_15 + offset}\n"
                                            for order, member, offset in OUT_OF_ORDER_ROWS))
    return path


def test_ingest_counts_rows_out_of_time_order_and_suggests_sort(tmp_path):
    path = out_of_order_file(tmp_path / "late.csv")
    completed = run("ingest", path, "--quiet", data=tmp_path / "unsorted", check=0)
    assert completed.stdout.splitlines()[1] == (
        "3 rows out of time order (earlier than the row before, or than an earlier row of the same member): "
        "tiers and expiry followed the file's order; --sort applies the rows in time order")
    summary = run_json("ingest", path, "--quiet", data=tmp_path / "again", check=0)
    assert (summary["out_of_order"], summary["sorted"], summary["applied"]) == (3, False, 6)
    in_order = run_json("ingest", "--sample", "--quiet", data=tmp_path / "sample", check=0)
    assert in_order["out_of_order"] == 0


def test_a_sorted_ingest_says_how_many_rows_it_moved(tmp_path):
    path = out_of_order_file(tmp_path / "late.csv")
    summary = run_json("ingest", path, "--sort", "--quiet", data=tmp_path / "sorted", check=0)
    assert (summary["out_of_order"], summary["sorted"]) == (3, True)
    text = run("ingest", path, "--sort", "--quiet", data=tmp_path / "text", check=0)
    assert text.stdout.splitlines()[1] == (
        "3 rows out of time order (earlier than the row before, or than an earlier row of the same member) "
        "in the file; applied in time order (--sort)")


# --- item 6: reports say which figures are all-time and which are as of a date ---------------------------


def test_liability_report_labels_all_time_totals_apart_from_as_of_figures(sample):
    report = run_json("report", "liability", "--as-of", "2026-12-31", data=sample, check=0)
    assert report == {
        "as_of_s": T_2026_12_31, "currency": "USD", "point_value": "0.01",
        "all_time": {"earned": 577_808, "adjusted_positive": 0, "adjusted_negative": 0, "clawed_back": 0,
                     "redeemed": 0, "expired": 0, "issued": 577_808, "outstanding": 577_808,
                     "outstanding_value": "5778.08",
                     "outstanding_by_tier": {"member": 6_975, "silver": 7_825, "gold": 563_008},
                     "bonus": 0,  # the engagement rules' line (§17): none in the example programme
                     # each total's money value, points x 0.01 (review item 7)
                     "earned_value": "5778.08", "adjusted_positive_value": "0.00", "adjusted_negative_value": "0.00",
                     "clawed_back_value": "0.00", "redeemed_value": "0.00", "expired_value": "0.00",
                     "issued_value": "5778.08", "bonus_value": "0.00",
                     "outstanding_by_tier_value": {"member": "69.75", "silver": "78.25", "gold": "5630.08"}},
        "as_of": {"expiring_30_days": 0, "expiring_60_days": 196_456, "expiring_90_days": 196_456, "overdue": 0,
                  "pending": 0, "expiring_30_days_value": "0.00", "expiring_60_days_value": "1964.56",
                  "expiring_90_days_value": "1964.56", "overdue_value": "0.00", "pending_value": "0.00"},
    }
    text = run("report", "liability", "--as-of", "2026-12-31", data=sample, check=0).stdout.splitlines()
    assert text[1] == "  all-time totals: everything recorded up to now, not cut at the as-of date"
    assert text[3] == "    earned                                   577,808            5,778.08"
    assert "  outstanding by tier (tiers as of 2026-12-31T00:00:00Z)" in text
    assert text[-5:] == [
        "  as of 2026-12-31T00:00:00Z: points held now, by expiry date",
        "    expiring in 30 days                            0                0.00",
        "    expiring in 60 days                      196,456            1,964.56",
        "    expiring in 90 days                      196,456            1,964.56",
        "    overdue (due, not yet expired)                   0                0.00",
    ]


def test_balance_as_of_labels_all_time_totals_apart_from_as_of_figures(sample):
    balance = run_json("balance", "member-001", "--as-of", "2026-12-31", data=sample, check=0)
    assert balance == {
        "member_id": "member-001", "as_of_s": T_2026_12_31,
        "as_of": {"available": 353_047, "next_expiry_s": 1_801_440_000, "next_expiry_points": 63_166,
                  "tier": "gold", "tier_year": 2026, "spend_minor": 22_875_870,
                  # the engagement rules' figures (§17): none in the example programme
                  "milestones": [], "pending": 0, "next_release_s": None, "next_release_points": 0},
        "all_time": {"balance": 353_047, "debt": 0, "earned": 353_047, "redeemed": 0, "expired": 0,
                     "clawed_back": 0, "adjusted": 0, "bonus": 0},
    }
    text = run("balance", "member-001", "--as-of", "2026-12-31", data=sample, check=0).stdout.splitlines()
    assert text[2:4] == ["as of 2026-12-31T00:00:00Z:", "  available           353,047"]
    assert text[9:11] == ["all-time totals: everything recorded up to now, not cut at the as-of date:",
                          "  balance             353,047"]


# --- item 7: one rule of exit codes ----------------------------------------------------------------------


def test_every_help_states_the_exit_status_rule():
    commands = [(), ("info",), ("ingest",), ("serve",), ("balance",), ("history",), ("refund",), ("redeem",),
                ("adjust",), ("expire",), ("program",), ("program", "set"), ("program", "show"), ("report",),
                ("export",), ("verify",), ("backup",), ("bench",)]
    for command in commands:
        completed = run(*command, "--help", check=0)
        assert EXIT_STATUS_RULE in completed.stdout, command


def test_an_ingest_with_rejected_rows_exits_3_and_a_refusal_1(tmp_path):
    path = tmp_path / "one-bad.csv"
    path.write_text(f"{HEADER}\ng1,m1,100,grocery,{T_2026_03_15}\ng2,m1,abc,grocery,{T_2026_03_15}\n")
    summary = run_json("ingest", path, "--quiet", data=tmp_path / "ledger", check=3)
    assert (summary["applied"], summary["rejected"]) == (1, 1)
    refused = run("redeem", "redemption-1", "m1", "999", "--time", "2026-03-16", data=tmp_path / "ledger", check=1)
    assert refused.stderr.startswith("pointsledger: FAILED_PRECONDITION: ")


@pytest.mark.parametrize("arguments,message", [
    (("redeem", "redemption-0", "member-001", "0"),
     "pointsledger redeem: error: argument points: 0 is not between 1 and 9,223,372,036,854,775,807"),
    (("adjust", "adjustment-0", "member-001", "5", "--reason", ""),
     "pointsledger adjust: error: argument --reason: must be non-empty, at most 256 bytes of UTF-8 (got '')"),
    (("adjust", "adjustment-0", "member-001", "0", "--reason", "x"),
     "pointsledger adjust: error: argument points: 0 is not allowed: give a non-zero integer"),
    (("ingest", "no-such-file.csv"), "pointsledger: error: no-such-file.csv: no such file"),
    (("refund", "refund-0", "sample-00003", "100", "--time", "1999-12-31"),
     "pointsledger refund: error: argument --time: '1999-12-31' is outside the event-time range "
     "2000-01-01T00:00:00Z to 2099-12-31T23:59:59Z"),
])
def test_a_bad_argument_value_exits_2_and_touches_nothing(sample, arguments, message):
    before = run_json("info", data=sample, check=0)["journal_entries"]
    completed = run(*arguments, data=sample, check=2)
    assert completed.stderr.splitlines()[-1] == message
    assert run_json("info", data=sample, check=0)["journal_entries"] == before


# --- item 8: the small things ------------------------------------------------------------------------------


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        completed = run("serve", "--address", f"127.0.0.1:{port}", data=tmp_path / "ledger", check=1)
    assert completed.stderr.splitlines() == [f"pointsledger: error: cannot listen on 127.0.0.1:{port}: "
                                             "the port is in use"]
    assert not os.path.exists(tmp_path / "ledger")


def test_serve_refuses_a_port_out_of_range(tmp_path):
    completed = run("serve", "--address", "127.0.0.1:70000", data=tmp_path / "ledger", check=2)
    assert completed.stderr.splitlines()[-1] == (
        "pointsledger serve: error: argument --address: port 70000 is not between 0 and 65,535")


def test_program_show_output_is_what_program_set_takes(tmp_path):
    data = tmp_path / "ledger"
    run("ingest", "--sample", "--quiet", data=data, check=0)
    shown = run("program", "show", data=data, check=0)
    assert shown.stderr == "# version 1, effective from 2000-01-01T00:00:00Z\n"
    (tmp_path / "programme.json").write_text(shown.stdout)
    assert run_json("program", "set", tmp_path / "programme.json", data=data, check=0) == {
        "version": 2, "effective_from_s": 946_684_800}
    first = run_json("program", "show", "--version", "1", data=data, check=0)
    second = run_json("program", "show", "--version", "2", data=data, check=0)
    assert second["document"] == first["document"]


def test_sorted_ingest_writes_rejects_in_line_order_with_their_original_bytes(tmp_path):
    path = tmp_path / "bytes.csv"
    path.write_bytes(
        f"{HEADER}\n".encode()
        + f"b1,m1,1000,grocery,{T_2026_03_15 + 100}\n".encode()  # line 2
        + f"b2,m1,abc,grocery,{T_2026_03_15 + 50}\n".encode()  # line 3: bad amount
        + b"b3,m\xff,1000,caf\xe9," + str(T_2026_03_15 + 10).encode() + b"\n"  # line 4: not UTF-8
        + f"b4,m2,1000,grocery,{T_2026_03_15 + 5}\n".encode()  # line 5
        + b"b5,m3,1000,grocery,bad\n"  # line 6: bad time (refused in the sort pass)
        + f"b6,m3,0,grocery,{T_2026_03_15}\n".encode())  # line 7: amount 0
    run("ingest", path, "--sort", "--quiet", data=tmp_path / "ledger", check=3)
    assert (tmp_path / "bytes.csv.rejects.csv").read_bytes() == (
        b"order_id,member_id,amount_minor,category,time_s,reject_line,reject_code,reject_reason\r\n"
        b"b2,m1,abc,grocery,1773532850,3,INVALID_ARGUMENT,amount_minor: must be an integer (got 'abc')\r\n"
        b"b3,m\xff,1000,caf\xe9,1773532810,4,INVALID_ARGUMENT,member_id: must be a string (got b'm\\xff')\r\n"
        b'b5,m3,1000,grocery,bad,6,INVALID_ARGUMENT,"time_s: must be Unix seconds, ISO 8601 UTC like '
        b"2026-03-15T00:00:00Z or a date like 2026-03-15 (got 'bad')\"\r\n"
        b"b6,m3,0,grocery,1773532800,7,INVALID_ARGUMENT,amount_minor: must be between 1 and 1000000000000 (got 0)\r\n")


def test_reject_lines_stand_on_their_own_lines_beside_a_progress_bar(tmp_path):
    path = purchases_file(tmp_path / "bad.csv", 3_000, bad_every=500)
    completed = run("ingest", path, "--batch-size", 250, "--progress", "bar", data=tmp_path / "ledger",
                    environment={cli.INGEST_DELAY_ENVIRONMENT: "0.01"}, check=3)
    segments = re.split(r"[\r\n]", completed.stderr)
    reject_segments = [segment for segment in segments if ": line " in segment]
    assert reject_segments == [f"{path}: line {9 + 500 * index}: amount_minor: must be an integer (got 'n/a')"
                               for index in range(6)]


def test_ctrl_c_says_how_far_the_ingest_got(tmp_path):
    data = tmp_path / "ledger"
    path = purchases_file(tmp_path / "big.csv", 20_000)
    ingest = start("ingest", path, "--batch-size", 1_000, "--quiet", data=data,
                   environment={cli.INGEST_DELAY_ENVIRONMENT: "0.05"})
    wait_for(lambda: committed_rows(data) >= 3_000, what="rows committed")
    ingest.send_signal(signal.SIGINT)
    _, stderr = ingest.communicate(timeout=60)
    assert ingest.returncode == 130
    state = resume_state(data)
    done, line = state["records_done"], state["last_line"]
    assert 3_000 <= done < 20_000 and line == done + 1
    assert stderr.splitlines()[-1] == (
        f"pointsledger: interrupted: big.csv: {done:,} rows committed through line {line:,} "
        f"({done:,} applied, 0 duplicates, 0 rejected); run the same command again to resume after them")
    resumed = run_json("ingest", path, "--quiet", data=data, check=0)
    assert (resumed["resumed_from_line"], resumed["applied"]) == (line + 1, 20_000)


def test_export_into_a_pipe_closed_early_exits_0_quietly(sample):
    command = [sys.executable, "-m", "pointsledger", "--data", str(sample), "export"]
    export = subprocess.Popen(command, env=child_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert export.stdout.readline() == b"seq,kind,member_id,ref_id,points,balance,time_s,program_version\r\n"
    export.stdout.close()  # what `head -1` does
    assert export.wait(timeout=60) == 0
    assert export.stderr.read() == b""


def test_a_date_in_time_s_is_midnight_utc_as_for_the_time_option(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text(f"{HEADER}\nd1,m1,1000,grocery,2026-03-15\nd2,m1,1000,grocery,2026-03-15T00:00:00Z\n")
    summary = run_json("ingest", path, "--quiet", data=tmp_path / "ledger", check=0)
    assert (summary["applied"], summary["rejected"]) == (2, 0)
    history = run_json("history", "m1", data=tmp_path / "ledger", check=0)
    assert [entry["time_s"] for entry in history["entries"]] == [T_2026_03_15, T_2026_03_15]
    run("refund", "refund-d1", "d1", "500", "--time", "2026-03-15", data=tmp_path / "ledger", check=0)


def test_bench_prints_a_readable_line_without_json():
    completed = run("bench", "--count", "2000", check=0)
    assert re.fullmatch(
        r"(builtin-)?backfill-seq on the (cython|python) engine: 2,000 purchases \(2,000 applied\) in [0-9.]+ s = "
        r"[0-9,]+ purchases/s; [0-9.,]+ bytes per purchase on disk; peak RSS [0-9.,]+ MiB; batches of 50,000\n",
        completed.stdout), completed.stdout
    as_json = run_json("bench", "--count", "2000", check=0)
    assert (as_json["count"], as_json["applied"]) == (2_000, 2_000)


def copy_of_the_package_without_its_engine(tmp_path):
    import pointsledger

    installed = os.path.dirname(pointsledger.__file__)
    copy = tmp_path / "site" / "pointsledger"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("_engine_c.*.so", "_engine_c.*.pyd",
                                                                   "_engine_c.build-error.txt", "__pycache__"))
    return copy


def import_warning(site):
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("POINTSLEDGER_REQUIRE_EXTENSION", "POINTSLEDGER_PURE_PYTHON")}
    environment["PYTHONPATH"] = str(site)
    completed = subprocess.run([sys.executable, "-c", "import pointsledger; print(pointsledger.ENGINE)"],
                               env=environment, capture_output=True, text=True, timeout=60, cwd=site)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "python\n"
    return completed.stderr


HOW_TO_GET_IT = ("to get it, install a C compiler and the Python headers (e.g. `apt-get install gcc python3-dev`), "
                 "then reinstall: `pip install --force-reinstall --no-cache-dir pointsledger` "
                 "(or `pip install .` in a source checkout)")


def test_without_the_compiled_engine_the_warning_says_it_was_not_built_and_how_to_get_it(tmp_path):
    copy = copy_of_the_package_without_its_engine(tmp_path)
    warning = import_warning(copy.parent)
    assert ("RuntimeWarning: pointsledger: running on the pure-Python engine, correct but many times slower: "
            f"the compiled engine was not built (no _engine_c extension in {copy / 'engine'}: most likely no C compiler "
            f"when the package was installed); {HOW_TO_GET_IT}") in warning
    assert "circular import" not in warning
    # When the install noted why it could not compile (setup.py does), the warning says that.
    (copy / "engine" / "_engine_c.build-error.txt").write_text(
        "could not compile pointsledger.engine._engine_c: the C compiler /bin/false exited with status 1\n")
    noted = import_warning(copy.parent)
    assert ("the compiled engine was not built (the install said: could not compile pointsledger.engine._engine_c: "
            f"the C compiler /bin/false exited with status 1); {HOW_TO_GET_IT}") in noted



def test_serve_refuses_a_group_wait_out_of_range(tmp_path):
    completed = run("serve", "--group-wait-ms", "5000", data=tmp_path / "ledger", check=2)
    assert completed.stderr.splitlines()[-1].startswith("pointsledger serve: error: argument --group-wait-ms: ")
    assert "5000" in completed.stderr.splitlines()[-1]
    assert not os.path.exists(tmp_path / "ledger")


def test_serve_hands_the_group_wait_to_the_server_in_seconds(tmp_path, monkeypatch):
    from pointsledger import service
    from pointsledger.cli.common import GROUP_WAIT_MS_DEFAULT

    assert GROUP_WAIT_MS_DEFAULT == service.group_wait_s_default * 1000  # the help text's default is the real one
    seen = []
    monkeypatch.setattr(service, "serve", lambda *arguments, **options: seen.append(options) or 0)
    assert cli.main(["serve", "--address", "127.0.0.1:0", "--data", str(tmp_path / "a"), "--group-wait-ms", "0"]) == 0
    assert cli.main(["serve", "--address", "127.0.0.1:0", "--data", str(tmp_path / "b")]) == 0
    assert seen[0]["group_wait_s"] == 0 and "group_wait_s" not in seen[1]  # absent: the service's default
