"""The database connection: SQLite by default (WAL), PostgreSQL by URL; the schema migrated on first use."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session, SQLModel, create_engine

from feedbackd.store import migrations, models  # noqa: F401  (models: the tables)
from feedbackd.store.migrations import SchemaError

__all__ = ["SCHEMA_LOCK", "SchemaError", "connect", "current", "migrate", "session", "upgrade"]

SCHEMA_LOCK = 0x46424B44  # "FBKD": serialises migrations between daemons on PostgreSQL
SQLITE_BEGIN = "feedbackd_sqlite_begin"  # execution option: how a SQLite transaction begins


def connect(url: str, *, create: bool = True, readonly: bool = False) -> Engine:
    """An engine for ``url``, its schema brought to the newest revision (``create=False``: left alone).

    SQLite runs with WAL, a busy timeout and foreign keys on; a new database file is made private
    (0600) before SQLite opens it, and its -wal and -shm files take the same mode.  ``readonly``:
    transactions begin DEFERRED instead of IMMEDIATE, so listings never wait for a writer and see
    the last committed state (use it only for commands that do not write).

    ``hide_parameters``: a database error names the statement, never the values (addresses,
    message text), so errors can be logged and stored without personal data.
    """
    if url.startswith("sqlite"):
        _create_private(url)
        begin = "DEFERRED" if readonly else "IMMEDIATE"
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               hide_parameters=True, execution_options={SQLITE_BEGIN: begin})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if create:
        migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, or refuse a database a newer feedbackd upgraded.

    When it is there already (every start but the first after an upgrade) this is one query, in
    a read transaction that never waits for a writer; Alembic is loaded only when there is work.
    """
    stored = _stored_revision(engine)
    if stored == migrations.head():
        return
    if stored is not None:
        migrations.refuse_unknown(where(engine), stored)
    elif _create_fresh(engine):
        return
    upgrade(engine)


def _create_fresh(engine: Engine) -> bool:
    """Make an empty database from the models and stamp it with the newest revision; False if not empty.

    Alembic's cookbook way to build an up-to-date database from scratch, without loading Alembic
    (0.2 s and 10 MB of a first ``run --once``).  The models equal the newest revision (a test
    compares both ways of making a database), so later revisions apply to it as to any other.
    Under the same lock as a migration: of several daemons starting at once, one creates.
    """
    with engine.connect() as conn:
        conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
            if inspect(conn).get_table_names():
                return False  # 0.1.0's tables (adopted by the upgrade), or made meanwhile by another daemon
            SQLModel.metadata.create_all(conn)
            table = migrations.VERSION_TABLE
            conn.execute(text(f"CREATE TABLE {table} (version_num VARCHAR(32) NOT NULL, "
                              f"CONSTRAINT {table}_pkc PRIMARY KEY (version_num))"))
            conn.execute(text(f"INSERT INTO {table} (version_num) VALUES (:head)"), {"head": migrations.head()})
    return True


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade under the schema lock (see migrations.runner.upgrade); returns (before, after)."""
    from feedbackd.store.migrations import runner

    return runner.upgrade(engine)


def current(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision, the newest this code knows); "0.1.0": made before migrations; None: empty."""
    from feedbackd.store.migrations import runner

    return runner.current(engine), migrations.head()


def where(engine: Engine) -> str:
    """The database as named in messages: its URL without the password."""
    return engine.url.render_as_string(hide_password=True)


def _stored_revision(engine: Engine) -> str | None:
    """The revision in alembic_version, or None when there is none (empty, or made by 0.1.0)."""
    with engine.connect() as conn:
        conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        try:
            rows = conn.execute(text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).scalars().all()
        except (OperationalError, ProgrammingError):  # no such table: the upgrade looks closer, under the lock
            return None
    return str(rows[0]) if len(rows) == 1 else None


def _create_private(url: str) -> None:
    """Create the SQLite file 0600 whatever the umask; SQLite gives -wal and -shm the file's mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        pass  # it exists (and keeps the mode its owner gave it), or SQLite will say why it cannot open it


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy issues BEGIN itself (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash of the process loses nothing
    cursor.execute("PRAGMA foreign_keys=ON")
    # Freed space is overwritten (in the pages written anyway), so personal data that retention
    # removes, or that an update replaced, does not linger in the file's free pages.
    cursor.execute("PRAGMA secure_delete=FAST")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Writers take the write lock at BEGIN (IMMEDIATE): a transaction that reads, then writes, can
    otherwise fail or stall when another thread or process committed in between (SQLITE_BUSY on
    upgrade).  Readers begin DEFERRED: in WAL mode they see the last commit and never wait."""
    connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get(SQLITE_BEGIN, 'IMMEDIATE')}")


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
