"""The `pointsledger` command (SPEC §11), run as a user runs it: a subprocess.

Each test starts `python -m pointsledger` with this interpreter and the
environment of the test run (PYTHONPATH passes through), in a scratch
directory. Exit status: 0 success, 1 refused, 2 bad usage.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import lmdb
import pyarrow as pa
import pyarrow.parquet as pa_parquet
import pytest

import pointsledger
from pointsledger import cli
from pointsledger.store import format as store_format

T_2026_01_01 = 1_767_225_600  # 2026-01-01T00:00:00Z
T_2026_03_15 = 1_773_532_800  # 2026-03-15T00:00:00Z
HEADER = "order_id,member_id,amount_minor,category,time_s"
# The bundled sample: 2,000 purchases of 52 members in 2026 (src/pointsledger/data/). Its
# totals are checked for agreeing with each other here (ingest, journal, balance, report);
# exact figures worked by hand are in test_cli_hand_worked.py, on a sample small enough.
SAMPLE_ROWS = 2_000
KILL_AFTER_ROWS = 6_000
RUN_TIMEOUT_S = 120
SCRATCH_CACHE = {}  # the scratch $XDG_CACHE_HOME of this module's children, set by a fixture


def child_environment(extra=None):
    """This test run's environment; PYTHONPATH made absolute, since children run in other directories.

    --server keeps its resume points in $XDG_CACHE_HOME: a scratch one, never the user's.
    """
    env = {name: value for name, value in os.environ.items() if name != "POINTSLEDGER_DATA"}
    env["XDG_CACHE_HOME"] = SCRATCH_CACHE["path"]
    env.update(extra or {})
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) for entry in env["PYTHONPATH"].split(os.pathsep))
    return env


@pytest.fixture(scope="module", autouse=True)
def scratch_cache(tmp_path_factory):
    SCRATCH_CACHE["path"] = str(tmp_path_factory.mktemp("cache"))


def run(*arguments, cwd=None, data=None, environment=None, check=None, stdin=None):
    """Run the command; return the CompletedProcess (text). check: the expected exit status."""
    command = [sys.executable, "-m", "pointsledger"]
    if data is not None:
        command += ["--data", str(data)]
    command += [str(argument) for argument in arguments]
    env = child_environment(environment)
    completed = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=RUN_TIMEOUT_S, input=stdin)
    if check is not None:
        assert completed.returncode == check, (command, completed.returncode, completed.stdout, completed.stderr)
    return completed


def start(*arguments, data, environment=None):
    command = [sys.executable, "-m", "pointsledger", "--data", str(data)] + [str(argument) for argument in arguments]
    return subprocess.Popen(command, env=child_environment(environment), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_json(*arguments, **options):
    completed = run(*arguments, "--json", **options)
    return json.loads(completed.stdout)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def purchases_file(path, count, bad_every=0):
    """count rows, times ascending from 2026-01-01; every bad_every-th row has a bad amount."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(HEADER + "\n")
        for index in range(count):
            amount = "n/a" if bad_every and index % bad_every == 7 else str(100 + index % 9_000)
            handle.write(f"o{index:07d},m{index % 1_000:04d},{amount},grocery,{T_2026_01_01 + index}\n")
    return str(path)


def journal_totals(data, tmp_path):
    """(sum of every entry's points, member-001's last balance), from the exported journal."""
    rows = list(csv.DictReader(export_journal(data, tmp_path, "totals").splitlines()))
    assert len(rows) == SAMPLE_ROWS and {row["kind"] for row in rows} == {"EARN"}
    member_001 = [int(row["balance"]) for row in rows if row["member_id"] == "member-001"]
    return sum(int(row["points"]) for row in rows), member_001[-1]


def export_journal(data, tmp_path, name):
    output = tmp_path / f"{name}.csv"
    run("export", "--output", output, data=data, check=0)
    return output.read_text()


def wait_for(condition, timeout_s=60, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def resume_state(data):
    directory = os.path.join(data, "ingest-resume")
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        if name.endswith(".json"):
            try:
                with open(os.path.join(directory, name)) as handle:
                    return json.load(handle)
            except (OSError, ValueError):  # being replaced right now
                return None
    return None


def committed_rows(data):
    state = resume_state(data)
    return state["records_done"] if state else 0


# --- zero set-up --------------------------------------------------------------------------


def test_the_readme_first_command_works_with_no_set_up(tmp_path):
    """`pointsledger ingest --sample && pointsledger balance member-001 && pointsledger report liability`."""
    ingest = run("ingest", "--sample", cwd=tmp_path, check=0)
    assert ingest.stdout.startswith("sample_purchases.csv: 2,000 rows: 2,000 applied, 0 duplicates, 0 rejected, ")
    assert os.path.exists(tmp_path / "pointsledger-data" / "data.mdb")
    points, member_001_balance = journal_totals(tmp_path / "pointsledger-data", tmp_path)
    assert ingest.stdout.startswith(f"sample_purchases.csv: 2,000 rows: 2,000 applied, 0 duplicates, 0 rejected, "
                                    f"{points:,} points")
    balance = run("balance", "member-001", cwd=tmp_path, check=0)
    assert f"balance             {member_001_balance:,}\n" in balance.stdout
    report = run_json("report", "liability", cwd=tmp_path, check=0)
    assert (report["all_time"]["issued"], report["all_time"]["outstanding"]) == (points, points)
    # The Parquet sample holds the same purchases: all duplicates, nothing changes.
    again = run_json("ingest", "--sample", "parquet", cwd=tmp_path, check=0)
    assert (again["applied"], again["duplicates"], again["points"]) == (0, SAMPLE_ROWS, 0)
    program = run_json("program", "show", cwd=tmp_path, check=0)
    assert program["version"] == 1 and program["document"]["currency"] == "USD"


def test_data_directory_from_the_environment_and_after_the_command(tmp_path):
    run("ingest", "--sample", "--quiet", cwd=tmp_path, environment={"POINTSLEDGER_DATA": "env"}, check=0)
    info = run_json("info", "--data", tmp_path / "env", check=0)
    assert info["journal_entries"] == SAMPLE_ROWS and info["members"] == 52 and info["orders"] == SAMPLE_ROWS
    assert info["engine"] == pointsledger.ENGINE
    assert info["store_bytes"] == os.path.getsize(tmp_path / "env" / "data.mdb")
    assert (info["categories"], info["format_version"]) == (8, 5)  # the sample's 8 categories; format 5: counters by version (§19)


# --- ingest: bad rows -------------------------------------------------------------------------


BAD_CSV = "\n".join([
    "order_id,member_id,amount_minor,category,time_s,note",
    f"c1,m1,1000,grocery,{T_2026_03_15},ok",                 # line 2
    f"c2,m1,abc,grocery,{T_2026_03_15},bad amount",          # line 3
    "",                                                      # line 4: blank, skipped
    "c3,m2,500,grocery,2026-03-15T00:00:00Z,iso time",       # line 5
    "c4,m2,500",                                             # line 6: too few fields
    "c5,m3,500,grocery,2026-02-30T00:00:00Z,no such day",    # line 7
    f'c6,m4,700,"elec\ntronics",{T_2026_03_15},line break',  # lines 8-9
    f"c7,m4,800,toys,{T_2026_03_15},ok",                     # line 10
    f"c1,m1,999,grocery,{T_2026_03_15},same id, new content",  # line 11: 7 fields
    f"c1,m1,999,grocery,{T_2026_03_15},conflict",            # line 12
    f"c8,,5,toys,{T_2026_03_15},no member",                  # line 13
    "c9,m5,5,toys,1990-01-01T00:00:00Z,too early",           # line 14
    f"c10,m6,12,toys,{T_2026_03_15},ok",                     # line 15
]) + "\n"
BAD_CSV_REJECTS = [  # (line, code, reason)
    ("3", "INVALID_ARGUMENT", "amount_minor: must be an integer (got 'abc')"),
    ("6", "INVALID_ARGUMENT", "expected 6 fields, found 3"),
    ("7", "INVALID_ARGUMENT", "time_s: must be Unix seconds, ISO 8601 UTC like 2026-03-15T00:00:00Z or a date "
                              "like 2026-03-15 (got '2026-02-30T00:00:00Z')"),
    ("8", "INVALID_ARGUMENT", "category: must not contain control characters (got 'elec\\ntronics')"),
    ("11", "INVALID_ARGUMENT", "expected 6 fields, found 7"),
    ("12", "ALREADY_EXISTS", "order_id 'c1' was already used for a different purchase: "
                            "amount_minor stored 1000, sent 999"),
    ("13", "INVALID_ARGUMENT", "member_id: must be 1 to 64 bytes of UTF-8 (got '')"),
    ("14", "INVALID_ARGUMENT", "time_s: must be between 946684800 and 4102444799 (got 631152000)"),
]


def test_ingest_csv_reports_bad_rows_by_line_and_keeps_the_good_ones(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(BAD_CSV)
    completed = run("ingest", path, "--json", data=tmp_path / "ledger", check=3)
    summary = json.loads(completed.stdout)
    assert (summary["applied"], summary["duplicates"], summary["rejected"]) == (4, 0, 8)
    assert summary["rejects_file"] == f"{path}.rejects.csv"
    rows = read_csv(f"{path}.rejects.csv")
    assert rows[0] == ["order_id", "member_id", "amount_minor", "category", "time_s", "note",
                       "reject_line", "reject_code", "reject_reason"]
    assert [tuple(row[6:]) for row in rows[1:]] == BAD_CSV_REJECTS
    assert rows[1][:6] == ["c2", "m1", "abc", "grocery", str(T_2026_03_15), "bad amount"]
    assert rows[4][3] == "elec\ntronics"  # the original field, line break and all
    assert rows[5][5] == "same id, new content"  # too many fields: the extra ones stay in the last column
    assert f"{path}: line 3: amount_minor: must be an integer (got 'abc')" in completed.stderr.splitlines()
    # The good rows are in: c1 earned 10 points (1000 minor units, grocery x1, tier member).
    assert run_json("balance", "m1", data=tmp_path / "ledger", check=0)["all_time"]["balance"] == 10
    # A second run changes nothing and rejects the same rows the same way.
    again = run_json("ingest", path, data=tmp_path / "ledger", check=3)
    assert (again["applied"], again["duplicates"], again["rejected"]) == (0, 4, 8)
    assert read_csv(f"{path}.rejects.csv") == rows


def test_ingest_parquet_reports_bad_rows_by_row_number(tmp_path):
    path = tmp_path / "orders.parquet"
    table = pa.table({
        "order_id": pa.array(["p1", "p2", None, "p4", "p5", "p6", "p7"]),
        "member_id": pa.array(["m1", "m2", "m3", "m4", "m5", "m6", "m7"]),
        "amount_minor": pa.array([100, None, 300, 400, 500, 600, 700], pa.int64()),
        "category": pa.array(["a", "b", "c", "d", "e", "f", "g"]).dictionary_encode(),
        "time_s": pa.array([T_2026_03_15 * 1000, T_2026_03_15 * 1000, T_2026_03_15 * 1000,
                            T_2026_03_15 * 1000 + 500, T_2026_03_15 * 1000, None, T_2026_03_15 * 1000],
                           pa.timestamp("ms", tz="UTC")),
    })
    pa_parquet.write_table(table, path, row_group_size=3)
    rejects = tmp_path / "bad-rows.csv"
    completed = run("ingest", path, "--rejects", rejects, "--json", data=tmp_path / "ledger", check=3)
    summary = json.loads(completed.stdout)
    assert (summary["applied"], summary["rejected"], summary["points"]) == (3, 4, 1 + 5 + 7)
    assert [tuple(row[5:]) for row in read_csv(rejects)[1:]] == [
        ("2", "INVALID_ARGUMENT", "amount_minor: missing"),
        ("3", "INVALID_ARGUMENT", "order_id: missing"),
        ("4", "INVALID_ARGUMENT", "time_s: not a whole second (got 1773532800500 ms)"),
        ("6", "INVALID_ARGUMENT", "time_s: missing"),
    ]
    assert f"{path}: row 2: amount_minor: missing" in completed.stderr


def test_ingest_sort_applies_rows_in_time_order(tmp_path):
    count = 3_000
    rows = [(f"s{index:05d}", f"m{index % 40}", 100 + index * 37 % 20_000, "grocery",
             T_2026_01_01 + (index * 7_919) % (400 * 86_400)) for index in range(count)]
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(HEADER + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    ordered = tmp_path / "ordered.csv"
    ordered.write_text(HEADER + "\n" + "".join(",".join(map(str, row)) + "\n"
                                               for row in sorted(rows, key=lambda row: row[4])))
    run("ingest", shuffled, "--sort", "--sort-run-rows", 1_000, "--batch-size", 700,
        data=tmp_path / "sorted", check=0)
    run("ingest", ordered, data=tmp_path / "reference", check=0)
    # Tiers and expiry depend on order: the same journal means the same order.
    assert export_journal(tmp_path / "sorted", tmp_path, "a") == export_journal(tmp_path / "reference", tmp_path, "b")


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    path = purchases_file(tmp_path / "p.csv", 3_000)
    completed = run("ingest", path, "--batch-size", 500, "--progress-interval", 0.01,
                    data=tmp_path / "ledger", environment={cli.INGEST_DELAY_ENVIRONMENT: "0.02"}, check=0)
    lines = [line for line in completed.stderr.splitlines() if "rows/s" in line]
    assert lines and lines[-1].startswith("p.csv: ")
    quiet = run("ingest", path, "--quiet", data=tmp_path / "ledger", check=0)
    assert quiet.stderr == ""


# --- ingest: interruption and resume ----------------------------------------------------------


def test_an_ingest_killed_mid_file_resumes_to_the_journal_of_an_uninterrupted_one(tmp_path):
    path = purchases_file(tmp_path / "big.csv", 20_000, bad_every=997)
    reference = run_json("ingest", path, "--batch-size", 1_000, "--rejects", tmp_path / "reference-rejects.csv",
                         data=tmp_path / "reference", check=3)
    victim = start("ingest", path, "--batch-size", 1_000, data=tmp_path / "ledger",
                   environment={cli.INGEST_DELAY_ENVIRONMENT: "0.4"})  # slow: the kill lands mid-file, even under load
    wait_for(lambda: committed_rows(tmp_path / "ledger") >= KILL_AFTER_ROWS, what="rows committed")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = committed_rows(tmp_path / "ledger")
    assert KILL_AFTER_ROWS <= killed_at < 20_000
    resumed = run_json("ingest", path, "--batch-size", 1_000, data=tmp_path / "ledger", check=3)
    # Every row is one line after the header: row k (from 0) is line k + 2.
    assert resumed["resumed_from_line"] == killed_at + 2
    assert resumed["rows_this_run"] == 20_000 - killed_at
    # Rows the killed run committed after its last resume point come back as duplicates.
    assert resumed["applied"] + resumed["duplicates"] == reference["applied"] == 20_000 - 21
    assert resumed["rejected"] == reference["rejected"] == 21
    assert export_journal(tmp_path / "ledger", tmp_path, "resumed") == export_journal(
        tmp_path / "reference", tmp_path, "reference")
    assert read_csv(f"{path}.rejects.csv") == read_csv(tmp_path / "reference-rejects.csv")
    assert resume_state(tmp_path / "ledger") is None
    run("verify", data=tmp_path / "ledger", check=0)


# --- verify and backup ----------------------------------------------------------------------------


def corrupt_member_balance(data, member_id, delta):
    """Add delta to a member record's balance, straight through lmdb, as a bad write would."""
    env = lmdb.open(str(data), max_dbs=16)
    try:
        members = env.open_db(store_format.DB_MEMBERS)
        with env.begin(write=True, db=members) as txn:
            value = txn.get(member_id.encode())
            fields = list(store_format.MEMBER_HEAD.unpack_from(value))
            fields[1] += delta  # balance
            txn.put(member_id.encode(), store_format.MEMBER_HEAD.pack(*fields) + value[store_format.MEMBER_HEAD.size:])
    finally:
        env.close()


def test_verify_finds_a_store_corrupted_on_purpose(tmp_path):
    data = tmp_path / "ledger"
    run("ingest", "--sample", "--quiet", data=data, check=0)
    assert run("verify", data=data, check=0).stdout == "ok: 2,000 journal entries, 52 members, every invariant holds\n"
    _, balance = journal_totals(data, tmp_path)
    corrupt_member_balance(data, "member-001", 5)
    completed = run("verify", data=data, check=1)
    assert f"member 'member-001': balance {balance + 5} but its entries sum to {balance}" in completed.stdout
    report = run_json("verify", data=data, check=1)
    assert report["ok"] is False and any("member-001" in problem for problem in report["problems"])


def test_backup_taken_during_an_ingest_is_consistent(tmp_path):
    data = tmp_path / "ledger"
    path = purchases_file(tmp_path / "big.csv", 20_000)
    ingest = start("ingest", path, "--batch-size", 1_000, data=data,
                   environment={cli.INGEST_DELAY_ENVIRONMENT: "0.4"})  # >= 8 s: the backup runs inside it, even under load
    try:
        wait_for(lambda: committed_rows(data) >= 4_000, what="rows committed")
        backup = run_json("backup", tmp_path / "copy", "--verify", data=data, check=0)
        assert ingest.poll() is None, "the ingest ended before the backup: not a backup during an ingest"
    finally:
        ingest.wait(timeout=RUN_TIMEOUT_S)
    assert ingest.returncode == 0
    assert backup["verified"] is True and backup["problems"] == []
    assert 4_000 <= backup["entries"] < 20_000
    assert run_json("verify", data=tmp_path / "copy", check=0)["entries"] == backup["entries"]
    assert run_json("info", data=data, check=0)["journal_entries"] == 20_000
    # A backup never overwrites anything.
    run("backup", tmp_path / "copy", data=data, check=1)


# --- export -------------------------------------------------------------------------------------------


def test_export_the_journal_to_csv_and_parquet_from_a_seq(tmp_path):
    data = tmp_path / "ledger"
    run("ingest", "--sample", "--quiet", data=data, check=0)
    run("export", "--output", tmp_path / "all.csv", data=data, check=0)
    rows = read_csv(tmp_path / "all.csv")
    assert rows[0] == list(cli.JOURNAL_FIELDS) and len(rows) == SAMPLE_ROWS + 1
    assert rows[1][:2] == ["1", "EARN"]
    run("export", "--output", tmp_path / "tail.parquet", "--from-seq", 1_501, data=data, check=0)
    table = pa_parquet.read_table(tmp_path / "tail.parquet")
    assert table.num_rows == 500 and table.column("seq")[0].as_py() == 1_501
    assert table.column("member_id").to_pylist() == [row[2] for row in rows[1_501:]]
    stdout = run("export", "--from-seq", 1_999, data=data, check=0).stdout
    assert [line.split(",")[0] for line in stdout.splitlines()] == ["seq", "1999", "2000"]


# --- the other commands: success, refusal, usage ------------------------------------------------------


@pytest.fixture(scope="module")
def sample_ledger(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample") / "ledger"
    run("ingest", "--sample", "--quiet", data=data, check=0)
    run("refund", "refund-fixture", "sample-00005", "100", "--time", "2026-11-01", data=data, check=0)
    return data


PROGRAM_2030 = {"currency": "USD", "earn": {"points": 2, "per_minor_units": 100},
                "tiers": [{"name": "member", "min_spend_minor": 0, "multiplier": 1}], "point_value": "0.01",
                "effective_from": "2030-01-01T00:00:00Z"}
PROGRAM_BAD = {"currency": "usd", "earn": {"points": 0, "per_minor_units": 100}, "tiers": [], "point_value": "0.01"}

SUCCESS = [
    ("info",),
    ("balance", "member-001", "--as-of", "2026-12-31"),
    ("history", "member-001", "--limit", "3"),
    ("refund", "refund-ok", "sample-00003", "1000", "--time", "2026-11-01T00:00:00Z"),
    ("refund", "refund-ok", "sample-00003", "1000", "--time", "2026-11-01T00:00:00Z"),  # duplicate: same result
    ("redeem", "redemption-ok", "member-001", "100", "--time", "2026-11-01"),
    ("adjust", "adjustment-ok", "member-001", "-5", "--reason", "typo", "--time", "2026-11-01"),
    ("expire", "--as-of", "2026-11-01"),
    ("program", "show", "--version", "1"),
    ("program", "set", "{program_2030}"),
    ("report", "liability", "--as-of", "2026-12-31"),
    ("report", "rollforward", "--from", "2026-01-01", "--to", "2027-01-01"),
    ("export", "--output", "{tmp}/journal.csv"),
    ("verify",),
    ("backup", "{tmp}/backup"),
    ("ingest", "--sample"),
    ("bench", "--count", "2000"),
]
REFUSED = [  # (arguments, the status code named on stderr)
    (("balance", "nobody"), "NOT_FOUND"),
    (("history", "nobody"), "NOT_FOUND"),
    (("refund", "refund-x", "no-such-order", "100"), "NOT_FOUND"),
    (("refund", "refund-y", "sample-00003", "999999999"), "FAILED_PRECONDITION"),
    (("refund", "refund-fixture", "sample-00005", "200", "--time", "2026-11-01"), "ALREADY_EXISTS"),
    (("redeem", "redemption-x", "member-001", "999999999999"), "FAILED_PRECONDITION"),
    (("redeem", "redemption-z", "nobody", "5"), "NOT_FOUND"),
    (("adjust", "adjustment-x", "member-001", "-999999999999", "--reason", "x"), "FAILED_PRECONDITION"),
    (("program", "show", "--version", "99"), "NOT_FOUND"),
    (("backup", "{tmp}"), "ALREADY_EXISTS"),
]
USAGE = [
    (),
    ("balance",),
    ("balance", "member-001", "--as-of", "yesterday"),
    ("refund", "r", "o", "ten"),
    ("redeem", "r", "m"),
    ("adjust", "a", "m", "5"),
    ("ingest",),
    ("ingest", "x.csv", "--sample"),
    ("ingest", "--batch-size", "0", "--sample"),
    ("report", "rollforward"),
    ("report", "liability", "--from", "2026-01-01"),
    ("export", "--format", "parquet"),
    ("program",),
    ("frobnicate",),
    ("verify", "--no-such-flag"),
    ("serve", "--address", "0.0.0.0:0"),
    # A bad argument value is found before the ledger is touched: 2, whatever the command (issue 9).
    ("redeem", "redemption-y", "member-001", "0"),
    ("adjust", "adjustment-y", "member-001", "5", "--reason", ""),
    ("adjust", "adjustment-z", "member-001", "0", "--reason", "nothing"),
    ("refund", "refund-z", "sample-00003", "100", "--time", "1999-12-31"),
    ("balance", "a\tb"),
    ("ingest", "no-such-file.csv"),
    ("program", "set", "no-such-programme.json"),
    ("serve", "--address", "127.0.0.1:70000"),
    ("report", "rollforward", "--from", "2026-01-01T12:00:00Z", "--to", "2026-02-01"),
    ("report", "rollforward", "--from", "2026-02-02", "--to", "2026-02-01"),
]


def _fill(arguments, tmp_path):
    program_path = tmp_path / "program-2030.json"
    program_path.write_text(json.dumps(PROGRAM_2030))
    return [argument.format(tmp=tmp_path, program_2030=program_path) for argument in arguments]


@pytest.mark.parametrize("arguments", SUCCESS, ids=" ".join)
def test_commands_exit_0_on_success(sample_ledger, tmp_path, arguments):
    completed = run(*_fill(arguments, tmp_path), data=sample_ledger, check=0)
    assert completed.stdout


@pytest.mark.parametrize("arguments,code", REFUSED,
                         ids=lambda value: " ".join(value) if isinstance(value, tuple) else value)
def test_commands_exit_1_on_refusal_with_one_line_naming_the_problem(sample_ledger, tmp_path, arguments, code):
    completed = run(*_fill(arguments, tmp_path), data=sample_ledger, check=1)
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pointsledger: {code}: "), completed.stderr


@pytest.mark.parametrize("arguments", USAGE, ids=lambda arguments: " ".join(arguments) or "nothing")
def test_commands_exit_2_on_bad_usage(sample_ledger, arguments):
    completed = run(*arguments, data=sample_ledger, check=2)
    assert "error:" in completed.stderr.splitlines()[-1]


def test_reads_refuse_a_ledger_that_does_not_exist(tmp_path):
    for arguments in (("balance", "m1"), ("report", "liability"), ("verify",), ("export",)):
        completed = run(*arguments, data=tmp_path / "nothing", check=1)
        assert "NOT_FOUND: no ledger at" in completed.stderr
    assert not os.path.exists(tmp_path / "nothing")


def test_program_set_lists_every_problem_in_one_line(tmp_path):
    data = tmp_path / "ledger"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(PROGRAM_BAD))
    completed = run("program", "set", bad, data=data, check=1)
    assert completed.stderr.splitlines() == [
        "pointsledger: INVALID_ARGUMENT: invalid programme, 3 problems: "
        "currency: must be three capital letters (got 'usd'); "
        "earn.points: must be between 1 and 1000000 (got 0); "
        "tiers: must be a non-empty list (got [])",
    ]
    good = run_json("program", "set", "-", data=data, stdin=json.dumps(PROGRAM_2030), check=0)
    assert good == {"version": 2, "effective_from_s": 1_893_456_000}  # 2030-01-01T00:00:00Z
    shown = run_json("program", "show", data=data, check=0)
    assert shown["version"] == 2 and shown["document"]["earn"] == {"points": 2, "per_minor_units": 100}


def test_write_commands_print_their_result(sample_ledger, tmp_path):
    redeem = ("redeem", "redemption-json", "member-001", "7", "--time", "2026-11-02")
    result = run_json(*redeem, data=sample_ledger, check=0)
    assert result["status"] == "APPLIED" and result["points"] == -7
    again = run_json(*redeem, data=sample_ledger, check=0)
    assert again == dict(result, status="DUPLICATE")


def test_every_command_has_help_with_an_example(capsys):
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"info", "ingest", "serve", "balance", "history", "refund", "redeem", "adjust",
                             "expire", "program", "report", "export", "verify", "backup", "bench",
                             "referral", "profile", "simulate", "estimate", "publish", "consume", "split"}
    for name, subparser in commands.items():
        assert "example:\n  pointsledger " in subparser.format_help(), name
    for action in ("set", "show"):
        assert "example:" in commands["program"]._subparsers._group_actions[0].choices[action].format_help()
    for action in ("set", "list"):
        assert "example:" in commands["estimate"]._subparsers._group_actions[0].choices[action].format_help()
    with pytest.raises(SystemExit) as exited:
        cli.main(["ingest", "--help"])
    assert exited.value.code == 0 and "--sort" in capsys.readouterr().out


# --- through a running server ------------------------------------------------------------------------


def test_ingest_through_a_running_server_matches_the_embedded_ingest(tmp_path):
    pytest.importorskip("pointsledger.service")
    path = tmp_path / "orders.csv"
    path.write_text(BAD_CSV)
    server = start("serve", "--address", "127.0.0.1:0", data=tmp_path / "served")
    try:
        port = wait_for(lambda: _bound_port(server), what="the server's port")
        address = f"127.0.0.1:{port}"
        completed = run("ingest", path, "--server", address, "--rejects", tmp_path / "served-rejects.csv", "--json",
                        check=3)
        summary = json.loads(completed.stdout)
        assert (summary["applied"], summary["rejected"], summary["target"]) == (4, 8, f"server:{address}")
        again = run_json("ingest", path, "--server", address, "--rejects", tmp_path / "served-rejects.csv", check=3)
        assert (again["applied"], again["duplicates"]) == (0, 4)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    run("ingest", path, "--rejects", tmp_path / "embedded-rejects.csv", data=tmp_path / "embedded", check=3)
    assert read_csv(tmp_path / "served-rejects.csv") == read_csv(tmp_path / "embedded-rejects.csv")
    assert export_journal(tmp_path / "served", tmp_path, "served") == export_journal(
        tmp_path / "embedded", tmp_path, "embedded")


def _bound_port(server):
    """The port from the server's "serving" log line (JSON on stderr), once it is there."""
    line = server.stderr.readline()
    if not line:
        raise AssertionError(f"the server exited ({server.poll()})")
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("port") if record.get("event") == "serving" else None


def test_ingest_through_a_server_with_tokens_needs_one(tmp_path):
    pytest.importorskip("pointsledger.service")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("pipeline-token-0123456789   write   pipeline\n")
    (tmp_path / "token.txt").write_text("pipeline-token-0123456789\n")
    server = start("serve", "--address", "127.0.0.1:0", "--tokens-file", tokens, data=tmp_path / "served")
    try:
        address = f"127.0.0.1:{wait_for(lambda: _bound_port(server), what='the server port')}"
        refused = run("ingest", "--sample", "--server", address, check=1)
        assert refused.stderr.startswith("pointsledger: UNAUTHENTICATED: ") and len(refused.stderr.splitlines()) == 1
        # A write-only token ingests (the resume probe, which reads, is skipped: it may not read).
        summary = run_json("ingest", "--sample", "--server", address, "--token-file", tmp_path / "token.txt",
                           check=0)
        assert summary["applied"] == SAMPLE_ROWS
        embedded = run_json("ingest", "--sample", data=tmp_path / "embedded", check=0)
        assert summary["points"] == embedded["points"]  # the same purchases earn the same over the service
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
