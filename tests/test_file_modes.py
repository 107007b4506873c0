"""Citizens' mail stays private: whatever the umask, feedbackd creates files 0600 and directories 0700."""

from __future__ import annotations

import configparser
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import mails
from conftest import REPO, Env

PROBE = """
import json, sys
from pathlib import Path
from feedbackd.store.db import connect, session
from feedbackd.store.files import FileStore
from feedbackd.store.models import Case

root = Path(sys.argv[1])
(root / "control").write_text("made by open() under the same umask")
engine = connect(f"sqlite:///{root / 'feedbackd.db'}")
with session(engine) as db:
    db.add(Case(requester="a@b.example", subject="x"))
    db.commit()
    FileStore(root / "var" / "data").put_attachment(b"photo")
    # the engine is open: the -wal and -shm files exist now
    print(json.dumps({str(p.relative_to(root)): p.stat().st_mode for p in sorted(root.rglob("*"))}))
"""


def _private(mode: int) -> bool:
    return stat.S_IMODE(mode) == (0o700 if stat.S_ISDIR(mode) else 0o600)


def test_database_wal_shm_and_attachments_are_private_under_umask_022(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                            umask=0o022, timeout=60)
    assert result.returncode == 0, result.stderr
    modes = json.loads(result.stdout)
    assert stat.S_IMODE(modes.pop("control")) == 0o644  # the umask really was 022
    assert {"feedbackd.db", "feedbackd.db-wal", "feedbackd.db-shm", "var", "var/data",
            "var/data/attachments"} <= modes.keys()
    assert any(name.startswith("var/data/attachments/") and stat.S_ISREG(m) for name, m in modes.items())
    assert {name: oct(stat.S_IMODE(m)) for name, m in modes.items() if not _private(m)} == {}


def test_run_once_under_umask_022_creates_nothing_others_can_read(env: Env) -> None:
    before = set(env.tmp.rglob("*"))
    env.mailbox.append(mails.with_attachment())
    result = subprocess.run([sys.executable, "-m", "feedbackd", "run", "--once"], capture_output=True, text=True,
                            env={**os.environ, "FEEDBACKD_CONFIG": str(env.config_path)}, umask=0o022, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "processed 1 message(s)" in result.stdout
    created = {path: path.stat().st_mode for path in set(env.tmp.rglob("*")) - before}
    assert env.tmp / "feedbackd.db" in created and env.tmp / "data" / "attachments" in created
    assert any(stat.S_ISREG(mode) and "attachments" in path.parts for path, mode in created.items())
    assert {str(p.relative_to(env.tmp)): oct(stat.S_IMODE(m)) for p, m in created.items() if not _private(m)} == {}


def test_the_systemd_unit_keeps_new_files_private() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "feedbackd.service")
    assert unit["Service"]["UMask"] == "0077"
    assert unit["Service"]["StateDirectoryMode"] == "0700"
