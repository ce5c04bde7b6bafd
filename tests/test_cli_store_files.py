"""The CLI on a damaged store and a full disk (issue 9), run as an operator runs it.

A truncated store: every command answers one line and exit 1 (verify lists it as
its problem), never a SIGBUS. A full disk under a backup, an export, a rejects
file or the store itself: one line saying "no space left on device", where, and
what was kept. The full disk is a small tmpfs, filled up (tests run as root);
where mounting is impossible the same commands run in-process with an ENOSPC
injected where the write would fail.
"""

import contextlib
import errno
import os
import subprocess
import sys

import pytest

import pointsledger
from pointsledger import cli
from pointsledger.store import file as store_file
from pointsledger.importer import rejects as rejects_module
from support import T_2026_03_15, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z
HEADER = "order_id,member_id,amount_minor,category,time_s"


def run(*arguments, data=None):
    command = [sys.executable, "-m", "pointsledger"]
    if data is not None:
        command += ["--data", str(data)]
    environment = {name: value for name, value in os.environ.items() if name != "POINTSLEDGER_DATA"}
    return subprocess.run(command + [str(argument) for argument in arguments], env=environment,
                          capture_output=True, text=True, timeout=120)


def make_ledger(path, purchases=300):
    with pointsledger.Ledger(path) as ledger:
        ledger.set_program(simple_program())
        ledger.purchases([f"o{index}" for index in range(purchases)],
                         [f"member-{index % 30}" for index in range(purchases)],
                         [1_000] * purchases, ["x"] * purchases, [T] * purchases)
    return os.path.getsize(path / "data.mdb")


def one_line(completed):
    assert "Traceback" not in completed.stderr, completed.stderr
    assert completed.stderr.count("\n") == 1, completed.stderr
    return completed.stderr.rstrip("\n")


def test_every_command_on_a_truncated_store_says_so_in_one_line(tmp_path):
    data = tmp_path / "ledger"
    whole = make_ledger(data)
    os.truncate(data / "data.mdb", 3 * 4096)
    with open(data / "data.mdb", "rb") as handle:
        txnid = max(meta[2] for meta in (store_file._read_meta(handle, 0), store_file._read_meta(handle, 4096))
                    if meta)
    problem = (f"{data / 'data.mdb'}: the data file is truncated: 12,288 bytes, but its meta page "
               f"(transaction {txnid}) needs {whole:,} bytes; restore it from a backup")
    for command in (["info"], ["balance", "member-0"], ["history", "member-0"], ["export"],
                    ["backup", tmp_path / "copy"], ["report", "liability"]):
        completed = run(*command, data=data)
        assert completed.returncode == 1, (command, completed.returncode, completed.stderr)
        assert one_line(completed) == f"pointsledger: DATA_LOSS: {problem}", command
    verified = run("verify", data=data)
    assert (verified.returncode, verified.stderr) == (1, "")
    assert verified.stdout == f"1 problem(s) in {data}:\n  {problem}\n"
    verified = run("verify", "--json", data=data)
    assert verified.returncode == 1
    assert verified.stdout == (
        '{"entries": 0, "members": 0, "ok": false, "problems": ["' + problem + '"]}\n')
    assert not (tmp_path / "copy").exists()


def test_damaged_pages_and_an_empty_data_file_are_one_line_naming_the_file(tmp_path):
    data = tmp_path / "ledger"
    make_ledger(data)
    with open(data / "data.mdb", "r+b") as handle:  # every byte after the two meta pages flipped
        handle.seek(2 * 4096)
        rest = handle.read()
        handle.seek(2 * 4096)
        handle.write(bytes(byte ^ 0x5A for byte in rest))
    damaged = (f"{data / 'data.mdb'}: the store file is damaged (LMDB: mdb_dbi_open: MDB_CORRUPTED: "
               "Located page was wrong type); restore it from a backup")
    empty = (f"{data / 'data.mdb'}: empty store file (0 bytes: its creation was interrupted); "
             "open it for writing to create it again, or restore it from a backup")
    for problem in (damaged, empty):
        for command in (["info"], ["balance", "member-0"], ["export"]):
            completed = run(*command, data=data)
            assert completed.returncode == 1, (command, completed.returncode, completed.stderr)
            assert one_line(completed) == f"pointsledger: DATA_LOSS: {problem}", command
        verified = run("verify", data=data)
        assert (verified.returncode, verified.stderr) == (1, "")
        assert verified.stdout == f"1 problem(s) in {data}:\n  {problem}\n"
        os.truncate(data / "data.mdb", 0)


# --- a full disk ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def full_tmpfs(directory, size_bytes, before_filling=None):
    """A tmpfs of size_bytes at directory, filled up to the last byte; None where it cannot be mounted."""
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory)],
                             capture_output=True).returncode == 0
    try:
        if before_filling:
            before_filling(directory)
        if mounted:
            with open(directory / "filler", "wb", buffering=0) as filler:
                with pytest.raises(OSError) as full:
                    while True:
                        filler.write(b"\0" * 4096)
                assert full.value.errno == errno.ENOSPC
        yield directory if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], check=True)


def run_on_full_disk(mounted, monkeypatch, capsys, inject, *arguments, data):
    """The command as a subprocess on the full tmpfs, or in-process with `inject` failing the write."""
    if mounted:
        return run(*arguments, data=data)
    inject(monkeypatch)
    returncode = cli.main(["--data", str(data)] + [str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(arguments, returncode, captured.out, captured.err)


def enospc(*_, **__):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_backup_on_a_full_disk_fails_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    data = tmp_path / "ledger"
    make_ledger(data, purchases=3_000)
    with full_tmpfs(tmp_path / "small", 256 * 1024) as small:
        # Room for part of the copy: free the filler's last 64 KiB.
        if small:
            os.truncate(small / "filler", os.path.getsize(small / "filler") - 64 * 1024)
        backups = small or tmp_path / "backups"
        backups.mkdir(exist_ok=True)
        destination = backups / "b1"

        def inject(patch):
            patch.setattr(store_file, "_fsync_path", enospc)

        completed = run_on_full_disk(small, monkeypatch, capsys, inject, "backup", destination, data=data)
        assert completed.returncode == 1
        line = one_line(completed)
        assert line.startswith(f"pointsledger: RESOURCE_EXHAUSTED: {destination}: no space left on device "
                               "after writing ")
        assert line.endswith(" bytes of the backup; the partial copy was removed and nothing is at the destination")
        assert sorted(os.listdir(backups)) == (["filler"] if small else [])
        # What it left: no ledger at the destination, and the source is whole.
        monkeypatch.undo()
        left = run("balance", "member-0", data=destination)
        assert (left.returncode, one_line(left)) == (1, f"pointsledger: NOT_FOUND: no ledger at {destination} "
                                                        "(`pointsledger ingest` or `serve` creates one)")
        assert run("verify", data=data).returncode == 0


def test_an_export_on_a_full_disk_says_so_and_removes_the_partial_file(tmp_path, monkeypatch, capsys):
    data = tmp_path / "ledger"
    make_ledger(data, purchases=3_000)
    with full_tmpfs(tmp_path / "small", 128 * 1024) as small:
        output = (small or tmp_path) / "journal.csv"

        def inject(patch):
            from pointsledger.cli import store_commands
            patch.setattr(store_commands, "write_csv", enospc)

        completed = run_on_full_disk(small, monkeypatch, capsys, inject, "export", "--output", output, data=data)
        assert completed.returncode == 1
        assert one_line(completed) == (f"pointsledger: RESOURCE_EXHAUSTED: {output}: no space left on device; "
                                       "the export stopped after 0 entries; the partial file was removed")
        assert not output.exists()


def test_a_rejects_file_on_a_full_disk_says_so(tmp_path, monkeypatch, capsys):
    data = tmp_path / "ledger"
    source = tmp_path / "purchases.csv"
    rows = [f"o{index},m{index % 5},1000,x,{T}" for index in range(5_000)]
    rows[10:4_000] = [f"bad{index},m,0,x,{T}" for index in range(10, 4_000)]  # amount 0: rejected
    source.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    with full_tmpfs(tmp_path / "small", 64 * 1024) as small:
        rejects = (small or tmp_path) / "rejects.csv"

        def inject(patch):
            patch.setattr(rejects_module.RejectFile, "_write", enospc)

        completed = run_on_full_disk(small, monkeypatch, capsys, inject, "ingest", source, "--rejects", rejects,
                                     "--progress", "none", "--no-resume", data=data)
        assert completed.returncode == 1
        last = completed.stderr.rstrip("\n").splitlines()[-1]
        assert last.startswith(f"pointsledger: RESOURCE_EXHAUSTED: {rejects}: no space left on device; "
                               "the rejects file stopped after ")
        assert last.endswith(" rejects; the ledger keeps every batch committed so far, and the ingest "
                             "resumes where it stopped when run again")
        assert "Traceback" not in completed.stderr


def test_a_commit_on_a_full_disk_says_so_and_what_the_ledger_holds(tmp_path, monkeypatch, capsys):
    source = tmp_path / "purchases.csv"
    source.write_text(HEADER + "\n" + "\n".join(
        f"order-{index},member-with-a-long-id-{index % 3_000},1000,x,{T}" for index in range(60_000)) + "\n")
    with full_tmpfs(tmp_path / "small", 2 * 1024 * 1024) as small:
        if small:
            os.remove(small / "filler")  # room for the store and a batch or two
        data = (small or tmp_path) / "ledger"

        def inject(patch):
            from pointsledger.store import faults
            patch.setattr(faults, "hook", store_full_after_two_commits())

        completed = run_on_full_disk(small, monkeypatch, capsys, inject, "ingest", source, "--batch-size",
                                     "5000", "--progress", "none", "--no-resume", data=data)
        assert completed.returncode == 1
        last = completed.stderr.rstrip("\n").splitlines()[-1]
        assert last.startswith(f"pointsledger: RESOURCE_EXHAUSTED: {data}: no space left on device; this write "
                               "was not committed; the ledger holds every write before it (journal through seq ")
        assert last.endswith("); free space and send it again")
        assert "Traceback" not in completed.stderr
        committed = int(last.split("through seq ")[1].split(")")[0].replace(",", ""))
        assert committed % 5_000 == 0  # whole batches
        monkeypatch.undo()
        with pointsledger.Ledger(data, readonly=True) as ledger:
            report = ledger.verify()
            assert report.ok, report.problems
            assert report.entries == committed


def store_full_after_two_commits():
    import lmdb

    commits = []

    def hook(point):
        if point == "commit":
            commits.append(point)
            if len(commits) > 2:
                raise lmdb.Error("mdb_txn_commit: No space left on device")

    return hook


def test_sorting_the_rejects_file_on_a_full_disk_keeps_it_as_written(tmp_path, monkeypatch):
    # `ingest --sort` rewrites the rejects file in line order at the end: on a full disk
    # the file stays as it was written and the partial rewrite is removed.
    unsorted = (HEADER + ",reject_line,reject_code,reject_reason\n"
                + "".join(f"bad{line},m,0,x,{T},{line},INVALID_ARGUMENT,amount_minor: must be positive\n"
                          for line in (9, 3, 7)))

    def write_rejects(directory):
        (directory / "rejects.csv").write_text(unsorted)

    with full_tmpfs(tmp_path / "small", 64 * 1024, before_filling=write_rejects) as small:
        directory = small or tmp_path / "small"
        if small is None:
            monkeypatch.setattr(rejects_module.os, "replace", enospc)
        path = str(directory / "rejects.csv")
        with pytest.raises(pointsledger.errors.DiskFull) as refused:
            rejects_module.sort_by_line(path)
        assert str(refused.value) == (f"{path}: no space left on device; the rejects file is kept as written, "
                                      "not in line order")
        assert (directory / "rejects.csv").read_text() == unsorted
        assert sorted(os.listdir(directory)) == (["filler", "rejects.csv"] if small else ["rejects.csv"])
