"""Attachments on disk, named by their SHA-256 so writing twice is harmless.

A file is written (to a temporary name, then renamed) before the database row that names it is
committed, so a crash leaves at worst an unreferenced file, never a row without its file.

Citizens' attachments are private to the daemon's user whatever the umask: directories are made
0700 and files 0600 (the systemd unit also sets UMask=0077).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, digest: str, suffix: str) -> Path:
        return self.root / kind / digest[:2] / f"{digest}{suffix}"

    def put(self, kind: str, data: bytes, suffix: str = "") -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(kind, digest, suffix)
        if not path.exists():
            private_dirs(path.parent)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                _write_private(tmp, data)
            except OSError:
                tmp.unlink(missing_ok=True)  # a full disk keeps no half-written file
                raise
            os.replace(tmp, path)
        return digest

    def put_attachment(self, data: bytes) -> str:
        return self.put("attachments", data)


def private_dirs(path: Path) -> None:
    """``mkdir -p`` whose new directories are 0700 whatever the umask (``Path.mkdir`` makes parents 0777-umask)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it meanwhile
            continue
        os.chmod(directory, DIR_MODE)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), FILE_MODE)  # a leftover temporary file of an earlier crash keeps its mode
        out.write(data)
