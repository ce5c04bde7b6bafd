"""The store's files on disk: a check that data.mdb is whole, a durable backup, disk-full errors.

LMDB maps data.mdb and reads its pages through the map: a page past the end of a
truncated file (a copy that hit a full disk) is a SIGBUS, not an error. So before
LMDB opens a store, its two meta pages are read with plain reads, the valid one
with the higher transaction id says how many pages the store uses, and a file
shorter than that is refused with both sizes.
"""

import contextlib
import errno
import os
import shutil
import struct
import tempfile

import lmdb

from ..errors import AlreadyExists, DiskFull, StoreDamaged, StoreFull

DATA_FILE = "data.mdb"
LMDB_MAGIC = 0xBEEFC0DE
LMDB_DATA_VERSION = 1
# A meta page: the 16-byte page header, then MDB_meta: magic, version, address,
# map size, two MDB_db of 48 bytes (the free DB's md_pad holds the page size),
# the last page number in use and the transaction id (lmdb's mdb.c; native order).
META_HEAD = struct.Struct("=IIQQI")  # at 16: magic, version, address, map size, page size
META_TAIL = struct.Struct("=QQ")  # at 136: last page number, txnid
META_HEAD_AT, META_TAIL_AT = 16, 136
META_BYTES = META_TAIL_AT + META_TAIL.size
# LMDB's errors for pages that are not what they should be (MDB_BAD_TXN: a transaction
# that hit one already): a damaged file, not a refusal or a bug.
DAMAGE_ERRORS = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.BadTxnError, lmdb.PanicError,
                 lmdb.InvalidError)
# Under this much free space, an I/O error of a write is taken for a full disk:
# LMDB turns a short write on a full disk into EIO.
DISK_FULL_FREE_BYTES = 1 << 20


def data_path(directory):
    return os.path.join(os.fspath(directory), DATA_FILE)


def _read_meta(handle, offset):
    """(page size, bytes the store needs, txnid) of the meta page at offset, or None if invalid."""
    handle.seek(offset)
    page = handle.read(META_BYTES)
    if len(page) < META_BYTES:
        return None
    magic, version, _, _, page_size = META_HEAD.unpack_from(page, META_HEAD_AT)
    if magic != LMDB_MAGIC or version != LMDB_DATA_VERSION or page_size < 512:
        return None
    last_page, txnid = META_TAIL.unpack_from(page, META_TAIL_AT)
    return page_size, (last_page + 1) * page_size, txnid


def damaged(directory, error):
    """The StoreDamaged of an LMDB error in DAMAGE_ERRORS met reading the store at directory."""
    return StoreDamaged(f"{data_path(directory)}: the store file is damaged (LMDB: {error}); "
                        f"restore it from a backup")


def check_whole(directory, readonly=False):
    """Refuse a data file shorter than its newest valid meta page says (StoreDamaged).

    A missing or empty file is left to LMDB when opening for writing: it creates
    one (an empty file is what a writer killed while creating the store leaves).
    Read-only, LMDB cannot, and an empty file is refused here.
    """
    path = data_path(directory)
    try:
        with open(path, "rb") as handle:
            length = os.fstat(handle.fileno()).st_size
            if length == 0:
                if readonly:
                    raise StoreDamaged(f"{path}: empty store file (0 bytes: its creation was interrupted); "
                                       f"open it for writing to create it again, or restore it from a backup")
                return
            first = _read_meta(handle, 0)
            second = _read_meta(handle, first[0]) if first else None
    except FileNotFoundError:
        return
    metas = [meta for meta in (first, second) if meta is not None]
    if not metas:
        raise StoreDamaged(f"{path}: not an LMDB data file ({length:,} bytes, no valid meta page)")
    page_size, needed, txnid = max(metas, key=lambda meta: meta[2])
    if length < needed:
        raise StoreDamaged(
            f"{path}: the data file is truncated: {length:,} bytes, but its meta page "
            f"(transaction {txnid}) needs {needed:,} bytes; restore it from a backup"
        )


# --- a full disk -------------------------------------------------------------------------------------


def is_disk_full(error, path):
    """Whether a failed write (OSError or lmdb.Error) means the disk at path is full."""
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
        return True
    if getattr(error, "errno", None) == errno.EIO or "Input/output error" in str(error):
        return free_bytes(path) < DISK_FULL_FREE_BYTES
    return False


@contextlib.contextmanager
def disk_full_reported(path, what_happened):
    """Turn a full disk while writing path into DiskFull: "PATH: no space left on device; " + what_happened()."""
    try:
        yield
    except OSError as error:
        if is_disk_full(error, path):
            raise DiskFull(f"{path}: no space left on device; {what_happened()}") from error
        raise


def free_bytes(path):
    """Free bytes for this process on the file system of path (of its nearest existing parent)."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        stat = os.statvfs(path)
    except OSError:
        return DISK_FULL_FREE_BYTES
    return stat.f_bavail * stat.f_frsize


# --- backup -----------------------------------------------------------------------------------------------


def backup(env, destination):
    """Copy the environment (compacted, from one read snapshot) to a new directory, durably.

    The copy is written into a temporary directory beside the destination, synced,
    and renamed into place only when complete: the destination never holds a
    partial copy. On any failure what was written is removed. Returns the copy's size.
    """
    destination = os.path.abspath(os.fspath(destination))
    if os.path.exists(destination) and (not os.path.isdir(destination) or os.listdir(destination)):
        raise AlreadyExists(f"{destination}: exists and is not an empty directory; give a new one")
    parent = os.path.dirname(destination)
    os.makedirs(parent, exist_ok=True)
    remove_abandoned_partials(destination)
    partial = tempfile.mkdtemp(prefix=f"{_partial_prefix(destination)}{os.getpid()}-", dir=parent)
    try:
        env.copy(partial, compact=True)
        copied = data_path(partial)
        _fsync_path(copied)
        _fsync_path(partial)
        size = os.path.getsize(copied)
        os.replace(partial, destination)  # replaces an empty directory too
        _fsync_path(parent)
        return size
    except BaseException as error:
        written = _bytes_under(partial)
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(error, Exception) and is_disk_full(error, parent):
            raise StoreFull(
                f"{destination}: no space left on device after writing {written:,} bytes of the "
                "backup; the partial copy was removed and nothing is at the destination"
            ) from error
        raise


def _partial_prefix(destination):
    return f".{os.path.basename(destination)}.partial-"


def remove_abandoned_partials(destination):
    """Remove the partial copies that killed backups (SIGKILL, power loss) left beside destination.

    A partial copy is named .NAME.partial-PID-RANDOM; it is abandoned when no process PID
    runs any more. A live PID (another backup running, or a reused PID) keeps it: removing
    a running backup's copy would be worse than leaving a stale one. Returns the paths removed.
    """
    parent, prefix = os.path.dirname(destination), _partial_prefix(destination)
    removed = []
    try:
        names = [name for name in os.listdir(parent) if name.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        pid_text = name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or _process_runs(int(pid_text)):
            continue
        path = os.path.join(parent, name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _process_runs(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _fsync_path(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _bytes_under(directory):
    try:
        return sum(entry.stat().st_size for entry in os.scandir(directory) if entry.is_file())
    except OSError:
        return 0
