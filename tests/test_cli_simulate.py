"""`pointsledger simulate` (SPEC §16, §17): the table, --json, exit statuses; and the README example."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pointsledger import Ledger, cli
from support import T_2026_03_10, T_2026_03_15, T_2026_03_25, simple_program

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def ledger_dir(tmp_path, engine_name):
    path = tmp_path / "ledger"
    with Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())
        ledger.purchase("p1", "m1", 10_000, "electronics", T_2026_03_10)  # 100
        ledger.purchase("p2", "m1", 5_050, "food", T_2026_03_15)  # 50
        ledger.refund("r1", "p1", 2_500, T_2026_03_25)  # 25
    return path


@pytest.fixture
def draft_file(tmp_path):
    path = tmp_path / "draft.json"
    path.write_text(json.dumps(simple_program(category_multipliers={"electronics": 2})))
    return path


def simulate(capsys, ledger_dir, *arguments):
    status = cli.main(["--data", str(ledger_dir), "simulate", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_table_shows_both_sides_and_the_difference(capsys, ledger_dir, draft_file):
    status, out, err = simulate(capsys, ledger_dir, draft_file, "--from", "2026-01-01", "--to", "2027-01-01")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"What-if: {draft_file} against what was recorded, events from 2026-01-01 up to 2027-01-01"
    assert lines[1].startswith("  2 purchases and 1 refund counted, replayed from 2025-01-01 (engine ")
    # Draft 200 + 50 earned, 50 clawed back; recorded 150 earned, 25 clawed back.
    total = lines[lines.index("total") + 1:lines.index("total") + 4]
    assert total[0].split() == ["draft", "250", "0", "50", "200", "2.00"]
    assert total[1].split() == ["recorded", "150", "0", "25", "125", "1.25"]
    assert total[2].split() == ["difference", "+75", "+0.75"]
    assert lines[lines.index("by tier, draft") + 1].split() == ["member", "250", "0", "50", "200", "2.00"]
    electronics = lines.index("  electronics")
    assert lines[electronics + 3].split() == ["difference", "+75", "+0.75"]


def test_json_is_the_result_as_data(capsys, ledger_dir, draft_file, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    status, out, _ = simulate(capsys, ledger_dir, draft_file, "--from", "2026-01-01", "--to", "2027-01-01", "--json",
                              "--scratch-dir", scratch)
    assert status == 0 and os.listdir(scratch) == []
    result = json.loads(out)
    assert result["total"]["draft"] == {"earned": 250, "bonus": 0, "clawed_back": 50, "net": 200, "value": "2.00"}
    assert result["total"]["difference"] == 75 and result["total"]["difference_value"] == "0.75"
    assert result["categories"]["food"]["difference"] == 0
    assert (result["purchases"], result["refunds"], result["from_s"]) == (2, 1, 1_767_225_600)


def test_an_invalid_draft_is_exit_1_listing_every_problem(capsys, ledger_dir, tmp_path):
    draft = tmp_path / "bad.json"
    draft.write_text('{"currency": "usd", "earn": {"points": 1, "per_minor_units": 100}}')
    status, out, err = simulate(capsys, ledger_dir, draft, "--from", "2026-01-01", "--to", "2027-01-01")
    assert status == 1 and out == ""
    assert err.startswith("pointsledger: INVALID_ARGUMENT: invalid programme, 3 problems: ")
    assert "currency" in err and "tiers" in err and "point_value" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("arguments, words", [
    (("--from", "2026-13-01", "--to", "2027-01-01"), "'2026-13-01' is not a time"),
    (("--from", "2026-01-01", "--to", "2100-01-02"), "outside the event-time range"),
    (("--from", "2026-01-01"), "--to"),
])
def test_bad_dates_are_exit_2(capsys, ledger_dir, draft_file, arguments, words):
    with pytest.raises(SystemExit) as exited:
        simulate(capsys, ledger_dir, draft_file, *arguments)
    assert exited.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("to", ["2026-01-01", "2027-01-01"])
def test_to_not_after_from_is_exit_2(capsys, ledger_dir, draft_file, to):
    with pytest.raises(SystemExit) as exited:
        simulate(capsys, ledger_dir, draft_file, "--from", "2027-01-01", "--to", to)
    assert exited.value.code == 2 and "--to must be after --from" in capsys.readouterr().err


def test_a_missing_draft_file_is_exit_2(capsys, ledger_dir, tmp_path):
    with pytest.raises(SystemExit) as exited:
        simulate(capsys, ledger_dir, tmp_path / "nope.json", "--from", "2026-01-01", "--to", "2027-01-01")
    assert exited.value.code == 2 and "no such file" in capsys.readouterr().err


def readme_example():
    section = README.read_text(encoding="utf-8").split("## What-if", 1)[1]
    script = section.split("```sh", 1)[1].split("```", 1)[0]
    output = section.split("```text", 1)[1].split("```", 1)[0]
    return script, output


def test_the_readme_example_runs_as_written_and_prints_its_table(tmp_path):
    script, output = readme_example()
    environment = {name: value for name, value in os.environ.items() if name != "POINTSLEDGER_DATA"}
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment.get("PATH", "")
    completed = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=environment, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert completed.returncode == 0, completed.stderr
    printed = completed.stdout.split("What-if:", 1)[1]
    engine = "python" if os.environ.get("POINTSLEDGER_PURE_PYTHON") == "1" else "cython"
    assert "What-if:" + printed == output.lstrip("\n").replace("(engine cython)", f"(engine {engine})")
