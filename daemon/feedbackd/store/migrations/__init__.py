"""Schema migrations: every change to the tables ships as an Alembic revision in ``versions/``.

``store.db.connect()`` brings the database to the newest revision before anything uses it (and
``feedbackd db upgrade`` does it on demand), under a lock, so daemons starting together are safe.
When the database is already there, that costs one query of ``alembic_version`` and no Alembic at
all: this module reads the revision list from the file names.  A database made by feedbackd 0.1.0,
before there were migrations, is recognised and adopted as revision 0001 (see ``runner``).

Adding a revision (e.g. new columns):

1. Change ``store/models.py``.
2. ``.venv/bin/python -m feedbackd.store.migrations revision "add case channel"`` writes
   ``versions/0002_add_case_channel.py`` with what Alembic finds between the newest revision and the
   models.  Or write it by hand: a file ``versions/NNNN_what.py`` (NNNN: the next number) with
   ``revision = "NNNN"``, ``down_revision = "<the previous NNNN>"`` and ``upgrade()``.
3. Read and finish it.  Spell the columns out with plain SQLAlchemy types; never import the live
   models (they will change, the revision must not).  A new NOT NULL column needs a
   ``server_default`` so existing rows get a value.  ``op.add_column`` and ``op.create_index`` work
   everywhere; to alter or drop a column use ``with op.batch_alter_table("t") as batch:`` (SQLite
   rebuilds the table; foreign keys are off during migrations and checked before the commit).
4. ``.venv/bin/pytest -q tests/test_migrations.py``: the newest revision must equal the models on
   SQLite and PostgreSQL, and the chain must be linear and named after the file names.

History is linear (one head); revisions are four-digit numbers, so the newest is the largest file name.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent / "versions"
VERSION_TABLE = "alembic_version"
BASELINE = "0001"  # the schema of feedbackd 0.1.0, the last version without migrations
LEGACY = "0.1.0"  # how a database that 0.1.0 made (no alembic_version) is reported
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")

if logging.getLogger("alembic").level == logging.NOTSET:  # its set-up chatter stays out of the INFO log;
    logging.getLogger("alembic").setLevel(logging.WARNING)  # runner.upgrade logs what it did


class SchemaError(Exception):
    """The database cannot be used by this version of feedbackd; the message says why and what to do."""


@cache
def revisions() -> tuple[str, ...]:
    """Every revision this code knows, oldest first, from the file names in ``versions/``."""
    found = (_REVISION_FILE.match(p.name) for p in VERSIONS.iterdir())
    return tuple(sorted(m.group(1) for m in found if m))


def head() -> str:
    """The newest revision: the schema the models describe."""
    return revisions()[-1]


def refuse_unknown(where: str, stored: str) -> None:
    """A revision we do not know was written by a newer feedbackd: its tables may not suit this code."""
    if stored not in revisions():
        from feedbackd import __version__

        raise SchemaError(f"{where}: the database is at schema revision {stored}, which this feedbackd "
                          f"({__version__}, newest revision {head()}) does not know: it was upgraded by a "
                          f"newer feedbackd; run that version, or restore a backup from before the upgrade")
