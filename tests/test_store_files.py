"""The store's files under damage and a full disk (issue 9): a truncated data file is an
error naming the file and both sizes, never a SIGBUS; a backup is complete or absent;
a full disk says "no space left on device", where, and what the ledger still holds.

The full-disk tests run on a small tmpfs (tests run as root); where mounting is
impossible they fall back to an injected ENOSPC at the same place.
"""

import contextlib
import os
import signal
import subprocess
import sys

import lmdb
import pytest

import pointsledger
from pointsledger.store import faults, file as store_file
from support import T_2026_03_15, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z


def make_ledger(path, engine_name, purchases=300):
    """A closed ledger of `purchases` purchases of 1,000 cents (10 points each) by 30 members."""
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())
        ledger.purchases([f"o{index}" for index in range(purchases)],
                         [f"member-{index % 30}" for index in range(purchases)],
                         [1_000] * purchases, ["x"] * purchases, [T] * purchases)
    return os.path.getsize(path / "data.mdb")


# --- a truncated store --------------------------------------------------------------------------------


def test_a_truncated_store_is_refused_with_the_file_and_both_sizes(tmp_path, engine_name):
    path = tmp_path / "ledger"
    whole = make_ledger(path, engine_name)
    # A fresh LMDB file ends exactly at its last page: its length is what the meta page needs.
    assert whole % 4096 == 0 and whole >= 5 * 4096
    os.truncate(path / "data.mdb", 3 * 4096)
    for readonly in (False, True):
        with pytest.raises(pointsledger.StoreDamaged) as refused:
            pointsledger.Ledger(path, engine=engine_name, readonly=readonly)
        message = str(refused.value)
        assert refused.value.code == "DATA_LOSS"
        assert message.startswith(f"{path / 'data.mdb'}: the data file is truncated: 12,288 bytes, ")
        assert f"needs {whole:,} bytes" in message
    assert os.path.getsize(path / "data.mdb") == 3 * 4096  # refused, not "repaired"


def test_a_data_file_without_a_valid_meta_page_is_refused(tmp_path):
    path = tmp_path / "ledger"
    path.mkdir()
    (path / "data.mdb").write_bytes(b"not a database" * 1_000)
    with pytest.raises(pointsledger.StoreDamaged) as refused:
        pointsledger.Ledger(path)
    assert str(refused.value) == f"{path / 'data.mdb'}: not an LMDB data file (14,000 bytes, no valid meta page)"


def test_the_newer_meta_page_decides_the_length(tmp_path, engine_name):
    # After a second commit the file is longer than the older meta page needs:
    # cutting it back to that older length must still be refused.
    path = tmp_path / "ledger"
    first = make_ledger(path, engine_name, purchases=50)
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.purchases([f"p{index}" for index in range(400)], ["m"] * 400, [1_000] * 400, ["x"] * 400,
                         [T] * 400)
    whole = os.path.getsize(path / "data.mdb")
    assert whole > first
    os.truncate(path / "data.mdb", first)
    with pytest.raises(pointsledger.StoreDamaged, match=f"{first:,} bytes, .* needs {whole:,} bytes"):
        pointsledger.Ledger(path, engine=engine_name)


def test_verify_reports_a_data_file_truncated_while_open(tmp_path, engine_name):
    path = tmp_path / "ledger"
    whole = make_ledger(path, engine_name)
    ledger = pointsledger.Ledger(path, engine=engine_name, readonly=True)
    os.truncate(path / "data.mdb", 2 * 4096)
    report = ledger.verify()
    assert not report.ok
    assert report.problems == [
        f"{path / 'data.mdb'}: the data file is truncated: 8,192 bytes, but its meta page "
        f"(transaction {ledger_txnid(path)}) needs {whole:,} bytes; restore it from a backup"
    ]
    ledger.store.env.close()


def ledger_txnid(path):
    with open(path / "data.mdb", "rb") as handle:
        return max(store_file._read_meta(handle, offset)[2] for offset in (0, 4096))


def test_an_empty_data_file_is_left_to_lmdb_to_create(tmp_path, engine_name):
    # What a writer killed while creating the store leaves: the store is created again.
    path = tmp_path / "ledger"
    path.mkdir()
    (path / "data.mdb").write_bytes(b"")
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())
        assert ledger.purchase("o", "m", 1_000, "x", T).balance == 10


def damage_pages(path):
    """Flip every byte after the two meta pages: the pages LMDB reads are garbage."""
    with open(path / "data.mdb", "r+b") as handle:
        handle.seek(2 * 4096)
        rest = handle.read()
        handle.seek(2 * 4096)
        handle.write(bytes(byte ^ 0x5A for byte in rest))


def test_damaged_pages_are_store_damaged_naming_the_file_and_lmdbs_error(tmp_path, engine_name):
    path = tmp_path / "ledger"
    make_ledger(path, engine_name)
    ledger = pointsledger.Ledger(path, engine=engine_name, readonly=True)
    damage_pages(path)  # while open: verify and reads meet the damage, not the opening
    prefix = f"{path / 'data.mdb'}: the store file is damaged (LMDB: "
    suffix = ": MDB_BAD_TXN: Transaction must abort, has a child, or is invalid); restore it from a backup"
    report = ledger.verify()
    assert (report.ok, report.problems) == (False, [prefix + "mdb_cursor_get" + suffix])
    with pytest.raises(pointsledger.StoreDamaged) as damaged:
        ledger.balance("member-0")
    assert (damaged.value.code, str(damaged.value)) == ("DATA_LOSS", prefix + "mdb_get" + suffix)
    ledger.store.env.close()
    with pytest.raises(pointsledger.StoreDamaged) as damaged:  # opening reads the main database
        pointsledger.Ledger(path, engine=engine_name, readonly=True)
    assert str(damaged.value) == (prefix + "mdb_dbi_open: MDB_CORRUPTED: Located page was wrong type); "
                                  "restore it from a backup")


def test_an_empty_data_file_is_refused_read_only(tmp_path, engine_name):
    path = tmp_path / "ledger"
    make_ledger(path, engine_name)
    os.truncate(path / "data.mdb", 0)  # lock.mdb stays: a store whose creation was cut short
    with pytest.raises(pointsledger.StoreDamaged) as damaged:
        pointsledger.Ledger(path, engine=engine_name, readonly=True)
    assert str(damaged.value) == (
        f"{path / 'data.mdb'}: empty store file (0 bytes: its creation was interrupted); "
        "open it for writing to create it again, or restore it from a backup")


# --- backup -----------------------------------------------------------------------------------------------


def test_backup_is_complete_synced_and_leaves_nothing_beside_it(tmp_path, engine_name):
    path = tmp_path / "ledger"
    make_ledger(path, engine_name)
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "empty").mkdir()
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        size = ledger.backup(backups / "b1")
        assert ledger.backup(backups / "empty") == size  # an empty directory is taken too
        assert ledger.backup(tmp_path / "new" / "parents" / "b2") == size  # missing parents are made
        with pytest.raises(pointsledger.AlreadyExists, match="exists and is not an empty directory"):
            ledger.backup(backups / "b1")
    assert sorted(os.listdir(backups)) == ["b1", "empty"]
    assert os.listdir(backups / "b1") == ["data.mdb"]
    assert os.path.getsize(backups / "b1" / "data.mdb") == size
    assert os.listdir(tmp_path / "new" / "parents") == ["b2"]
    with pointsledger.Ledger(backups / "b1", engine=engine_name, readonly=True) as copy:
        report = copy.verify()
        assert report.ok, report.problems
        assert (report.entries, report.members) == (300, 30)
        assert copy.balance("member-0", T).balance == 100  # 10 purchases of 10 points


_BACKUP_KILLED_MID_COPY = """
import sys, time
import pointsledger
from pointsledger.store import file as store_file

class CopyThatHangs:  # the copy is under way: part of the file written, then the process is killed
    def copy(self, path, compact=True):
        with open(path + "/data.mdb", "wb") as handle:
            handle.write(b"\\0" * 50_000)
        print("copying", flush=True)
        time.sleep(600)

store_file.backup(CopyThatHangs(), sys.argv[1])
"""


def test_a_backup_killed_mid_copy_leaves_a_partial_that_the_next_backup_removes(tmp_path, engine_name):
    path = tmp_path / "ledger"
    make_ledger(path, engine_name)
    backups = tmp_path / "backups"
    killed = subprocess.Popen([sys.executable, "-c", _BACKUP_KILLED_MID_COPY, str(backups / "nightly")],
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline() == "copying\n"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (abandoned,) = os.listdir(backups)
    assert abandoned.startswith(f".nightly.partial-{killed.pid}-")
    assert not os.path.exists(backups / "nightly")  # never a partial copy at the destination
    live = backups / f".nightly.partial-{os.getpid()}-running"  # a backup still under way: kept
    live.mkdir()
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        size = ledger.backup(backups / "nightly")
    assert sorted(os.listdir(backups)) == [live.name, "nightly"]
    assert os.path.getsize(backups / "nightly" / "data.mdb") == size
    with pointsledger.Ledger(backups / "nightly", engine=engine_name, readonly=True) as copy:
        assert copy.verify().ok


@contextlib.contextmanager
def small_tmpfs(directory, size_bytes):
    """A tmpfs of size_bytes mounted at directory, or None where mounting is impossible."""
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory)],
                             capture_output=True).returncode == 0
    try:
        yield directory if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], check=True)


class _CopyHitsAFullDisk:
    """Stands in for the environment where no tmpfs can be mounted: copy() writes part, then ENOSPC."""

    def copy(self, path, compact=True):
        with open(os.path.join(path, "data.mdb"), "wb") as handle:
            handle.write(b"\0" * 20_000)
        raise lmdb.Error(f"{path}: No space left on device")


def test_a_backup_on_a_full_disk_says_so_and_removes_what_it_wrote(tmp_path, engine_name):
    path = tmp_path / "ledger"
    whole = make_ledger(path, engine_name, purchases=3_000)
    assert whole > 256 * 1024
    with small_tmpfs(tmp_path / "small", 128 * 1024) as small, \
            pointsledger.Ledger(path, engine=engine_name) as ledger:
        target = (small or tmp_path / "backups") / "backup"
        target.parent.mkdir(exist_ok=True)
        with pytest.raises(pointsledger.StoreFull) as refused:
            store_file.backup(ledger.store.env if small else _CopyHitsAFullDisk(), target)
        message = str(refused.value)
        assert message.startswith(f"{target}: no space left on device after writing ")
        assert message.endswith("bytes of the backup; the partial copy was removed and nothing is at the destination")
        assert os.listdir(target.parent) == []
        if small is None:
            return
        # The ledger itself is untouched and goes on.
        assert ledger.verify().ok
        assert ledger.purchase("after", "m", 1_000, "x", T).balance == 10


# --- a full disk under the store --------------------------------------------------------------------------


def test_a_commit_on_a_full_disk_says_no_space_and_what_the_ledger_holds(tmp_path, engine_name):
    with small_tmpfs(tmp_path / "small", 1024 * 1024) as small:
        path = (small or tmp_path) / "ledger"
        ledger = pointsledger.Ledger(path, engine=engine_name, map_size_bytes=64 * 1024)
        ledger.set_program(simple_program())
        committed = 0
        with pytest.raises(pointsledger.StoreFull) as refused:
            for batch in range(1_000):
                if small is None and batch == 3:
                    faults.hook = _enospc_at_commit
                try:
                    ledger.purchases([f"o{batch}-{item}" for item in range(200)],
                                     [f"member-{item}" for item in range(200)],
                                     [1_000] * 200, ["x"] * 200, [T] * 200)
                finally:
                    faults.hook = None
                committed = batch + 1
        assert committed >= 3
        assert str(refused.value) == (
            f"{path}: no space left on device; this write was not committed; the ledger holds every "
            f"write before it (journal through seq {committed * 200:,}); free space and send it again"
        )
        assert ledger.last_seq() == committed * 200
        ledger.close()
        with pointsledger.Ledger(path, engine=engine_name, readonly=True) as reopened:
            report = reopened.verify()
            assert report.ok, report.problems
            assert report.entries == committed * 200
            assert reopened.balance("member-0", T).balance == 10 * committed


def _enospc_at_commit(point):
    if point == "commit":
        raise lmdb.Error("mdb_txn_commit: No space left on device")


def test_an_io_error_of_a_commit_on_a_nearly_full_disk_is_a_full_disk(tmp_path, engine_name, monkeypatch):
    # LMDB reports a short write on a full disk as EIO: with no space left, say so.
    path = tmp_path / "ledger"
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())
        ledger.purchase("o-1", "m", 1_000, "x", T)
        faults.hook = lambda point: _raise_at(point, "commit", "mdb_txn_commit: Input/output error")
        try:
            with pytest.raises(lmdb.Error, match="^mdb_txn_commit: Input/output error$"):
                ledger.purchase("o-2", "m", 1_000, "x", T)  # space left: an I/O error is an I/O error
            monkeypatch.setattr(store_file, "free_bytes", lambda path: 4096)
            with pytest.raises(pointsledger.StoreFull) as refused:
                ledger.purchase("o-2", "m", 1_000, "x", T)
        finally:
            faults.hook = None
        assert str(refused.value) == (
            f"{path}: no space left on device; this write was not committed; the ledger holds every "
            "write before it (journal through seq 1); free space and send it again"
        )
        assert ledger.purchase("o-2", "m", 1_000, "x", T).balance == 20


def _raise_at(point, target, text):
    if point == target:
        raise lmdb.Error(text)


def test_a_map_that_cannot_grow_on_a_full_disk_says_so(tmp_path, engine_name):
    path = tmp_path / "ledger"
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        ledger.set_program(simple_program())
        ledger.purchase("o-1", "m", 1_000, "x", T)

        def full(point):
            if point == "flush":
                raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached")
            if point == "grow":
                raise lmdb.Error("mdb_env_set_mapsize: No space left on device")

        faults.hook = full
        try:
            with pytest.raises(pointsledger.StoreFull) as refused:
                ledger.purchase("o-2", "m", 1_000, "x", T)
        finally:
            faults.hook = None
        assert str(refused.value) == (
            f"{path}: the map is full and cannot grow (no space left on device); this write was not "
            "committed; the ledger holds every write before it (journal through seq 1); free space and "
            "send it again"
        )
        assert ledger.purchase("o-2", "m", 1_000, "x", T).balance == 20
        assert ledger.verify().ok
