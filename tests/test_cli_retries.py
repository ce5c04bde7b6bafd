"""A CLI write sent again without --time is exactly-once (issue 9 item 3).

Without --time a write takes the clock's time, so a retry used to be a
different operation (ALREADY_EXISTS on the time). Now a retry with the same
other fields answers the original result marked DUPLICATE (exit 0), and one
with other fields names them, stored and sent (exit 1). Run as a user runs
it, in a subprocess, on each engine.
"""

import json
import os
import subprocess
import sys

import pytest

RUN_TIMEOUT_S = 120


def runner(data, engine_name):
    environment = {name: value for name, value in os.environ.items() if name != "POINTSLEDGER_DATA"}
    if engine_name == "python":
        environment["POINTSLEDGER_PURE_PYTHON"] = "1"
    if environment.get("PYTHONPATH"):
        environment["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(entry) for entry in environment["PYTHONPATH"].split(os.pathsep))

    def run(*arguments, check):
        command = [sys.executable, "-m", "pointsledger", "--data", str(data), *map(str, arguments)]
        completed = subprocess.run(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, timeout=RUN_TIMEOUT_S)
        assert completed.returncode == check, (command, completed.returncode, completed.stdout, completed.stderr)
        return completed

    return run


@pytest.fixture
def run(tmp_path, engine_name):
    run = runner(tmp_path / "ledger", engine_name)
    run("ingest", "--sample", "--quiet", check=0)
    return run


def journal_length(run):
    return json.loads(run("info", "--json", check=0).stdout)["journal_entries"]


SAMPLE_ROWS = 2_000

# (first command, a changed field: (arguments, the ALREADY_EXISTS message))
WRITES = {
    # sample-00005 is member-001's order of 27,921 earning 349: floor(349 × 100 / 27,921) = 1.
    "refund": (("refund", "r1", "sample-00005", "100"),
               (("refund", "r1", "sample-00005", "101"),
                "refund_id 'r1' was already used for a different refund: amount_minor stored 100, sent 101")),
    "redeem": (("redeem", "rd1", "member-001", "50"),
               (("redeem", "rd1", "member-002", "50"),
                "redemption_id 'rd1' was already used for a different redemption: "
                "member_id stored 'member-001', sent 'member-002'")),
    "adjust": (("adjust", "a1", "member-001", "7", "--reason", "goodwill"),
               (("adjust", "a1", "member-001", "-7", "--reason", "typo"),
                "adjustment_id 'a1' was already used for a different adjustment: "
                "points stored 7, sent -7; reason stored 'goodwill', sent 'typo'")),
}


@pytest.mark.parametrize("command", list(WRITES))
def test_a_write_retried_without_time_returns_the_original_result(run, command):
    arguments, (changed, message) = WRITES[command]
    first = json.loads(run(*arguments, "--json", check=0).stdout)
    assert first["status"] == "APPLIED" and first["seq"] > SAMPLE_ROWS
    entries = journal_length(run)
    # The clock has moved on; the retry is the same operation.
    again = json.loads(run(*arguments, "--json", check=0).stdout)
    assert again == dict(first, status="DUPLICATE")
    text = run(*arguments, check=0).stdout
    assert text.splitlines()[0].split() == ["status", "DUPLICATE"]
    # Other fields: refused, naming what differs (not the time, which the retry takes from the record).
    refused = run(*changed, check=1)
    assert refused.stdout == ""
    assert refused.stderr == f"pointsledger: ALREADY_EXISTS: {message}\n"
    assert journal_length(run) == entries


def test_an_explicit_time_is_still_judged_as_sent(run):
    first = json.loads(run("refund", "r1", "sample-00005", "100", "--json", check=0).stdout)
    history = json.loads(run("history", "member-001", "--limit", "1", "--json", check=0).stdout)
    recorded_time = history["entries"][0]["time_s"]
    assert history["entries"][0]["seq"] == first["seq"]
    refused = run("refund", "r1", "sample-00005", "100", "--time", "2026-11-01", check=1)
    # 2026-11-01T00:00:00Z = 1793491200
    assert refused.stderr == (
        "pointsledger: ALREADY_EXISTS: refund_id 'r1' was already used for a different refund: "
        f"time_s stored {recorded_time}, sent 1793491200\n"
    )
    same = json.loads(run("refund", "r1", "sample-00005", "100", "--time", recorded_time, "--json", check=0).stdout)
    assert same == dict(first, status="DUPLICATE")
