"""The resume point: how far a file's ingest got into a target."""

import hashlib
import json
import os

from .common import HEAD_HASH_BYTES, RESUME_FORMAT


def file_identity(path):
    status = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(HEAD_HASH_BYTES))
    return {"path": os.path.abspath(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "head_sha256": digest.hexdigest()}


def default_resume_path(input_path, target, data_directory=None):
    """Embedded: inside the ledger directory (it goes when the ledger goes); server: the user's cache."""
    key = hashlib.sha256(f"{target}\0{os.path.abspath(input_path)}".encode()).hexdigest()[:20]
    if data_directory is not None:
        directory = os.path.join(data_directory, "ingest-resume")
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(cache, "pointsledger", "ingest-resume")
    return os.path.join(directory, f"{key}.json")


class ResumePoint:
    """How far a file's ingest got into a target, saved after every committed batch."""

    def __init__(self, path, identity, target, sort, rejects_path):
        self.path = path
        self.state = {
            "format": RESUME_FORMAT, "file": identity, "target": target, "sort": bool(sort),
            "rejects_path": os.path.abspath(rejects_path), "rejects_bytes": 0,
            "records_done": 0, "last_line": 0, "probe": None,
            "totals": {"applied": 0, "duplicates": 0, "rejected": 0, "points": 0, "out_of_order": 0},
        }

    def load(self):
        """The saved state if it belongs to this file, target and mode; else None (and why)."""
        if self.path is None or not os.path.exists(self.path):
            return None, None
        try:
            with open(self.path, encoding="utf-8") as handle:
                saved = json.load(handle)
        except (OSError, ValueError) as error:
            return None, f"unreadable resume point {self.path} ({error})"
        for key, why in (("format", "another format"), ("file", "the file changed"),
                         ("target", "another target"), ("sort", "another --sort setting"),
                         ("rejects_path", "another reject file")):
            if saved.get(key) != self.state[key]:
                return None, f"resume point ignored: {why}"
        rejects_bytes = saved.get("rejects_bytes", 0)
        if rejects_bytes and (not os.path.exists(saved["rejects_path"])
                              or os.path.getsize(saved["rejects_path"]) < rejects_bytes):
            return None, "resume point ignored: the reject file is missing or shorter"
        return saved, None

    def adopt(self, saved):
        self.state = saved

    def save(self):
        if self.path is None:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self.state, handle, sort_keys=True)
        os.replace(temporary, self.path)

    def remove(self):
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)
