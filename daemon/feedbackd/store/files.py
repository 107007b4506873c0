"""Attachments on disk, named by their SHA-256 so writing twice is harmless.

A file is written (to a temporary name, then renamed) before the database row that names it is
committed, so a crash leaves at worst an unreferenced file, never a row without its file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, digest: str, suffix: str) -> Path:
        return self.root / kind / digest[:2] / f"{digest}{suffix}"

    def put(self, kind: str, data: bytes, suffix: str = "") -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(kind, digest, suffix)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return digest

    def put_attachment(self, data: bytes) -> str:
        return self.put("attachments", data)
