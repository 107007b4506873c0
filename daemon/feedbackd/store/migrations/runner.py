"""Running Alembic on feedbackd's own connection: upgrade under the schema lock, adopt 0.1.0 databases.

Imported only when there is work to do (a database behind the code, ``feedbackd db``, tests): Alembic
costs more to load than the check in ``store.db.migrate`` that usually finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

from feedbackd.store.db import SCHEMA_LOCK, SQLITE_BEGIN, where
from feedbackd.store.migrations import BASELINE, LEGACY, VERSION_TABLE, SchemaError, head, refuse_unknown

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent


def config(connection: Connection | None = None, target_metadata: MetaData | None = None) -> Config:
    """Alembic's configuration, made in code: the scripts live in this package, not beside an alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = connection
    cfg.attributes["target_metadata"] = target_metadata
    return cfg


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; returns (revision before, revision after).

    Before is None for an empty database and LEGACY ("0.1.0") for one made before migrations.

    One transaction under the schema lock (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE),
    re-reading the revision once the lock is held: of several processes starting at once, one
    upgrades and the others find nothing left to do.  A failed revision leaves the database as it was.
    """
    with _locked(engine) as conn:
        before = _revision_or_adopt(conn)
        stored = BASELINE if before == LEGACY else before
        if stored is not None:
            refuse_unknown(where(engine), stored)
        if stored != head():
            command.upgrade(config(conn), "head")
            _check_foreign_keys(conn)
    if before != head():
        log.info("database schema upgraded from %s to %s", before or "nothing", head())
    return before, head()


def current(engine: Engine) -> str | None:
    """The database's revision; LEGACY for a database made before migrations; None when empty."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if VERSION_TABLE in tables:
            return _stored(conn)
        return LEGACY if tables and tables & set(baseline_columns()) else None


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:  # SQLite can only switch foreign keys outside a transaction; rebuilt tables need them off
            _sqlite_pragma(conn, "PRAGMA foreign_keys=OFF")
        try:
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if not sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
                yield conn
        finally:
            if sqlite:
                _sqlite_pragma(conn, "PRAGMA foreign_keys=ON")


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    raw: Any = conn.connection.dbapi_connection
    raw.execute(pragma)


def _check_foreign_keys(conn: Connection) -> None:
    if conn.dialect.name == "sqlite" and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
        raise SchemaError(f"{where(conn.engine)}: a migration left rows whose foreign keys point nowhere; "
                          "nothing was changed (report this as a bug of the migration)")


def _stored(conn: Connection) -> str | None:
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise SchemaError(f"{where(conn.engine)}: {VERSION_TABLE} holds several revisions ({', '.join(rows)}); "
                          "feedbackd's migrations are linear: was the database shared with another application?")
    return str(rows[0]) if rows else None


def _revision_or_adopt(conn: Connection) -> str | None:
    """The revision under the lock; a database of 0.1.0 (our tables, no version table) is stamped 0001
    and reported as LEGACY."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        return _stored(conn)
    if not tables or not tables & set(baseline_columns()):
        return None  # empty (other applications' tables are left alone)
    _verify_baseline(conn, tables)
    command.stamp(config(conn), BASELINE)
    log.info("database made by feedbackd 0.1.0 adopted as schema revision %s", BASELINE)
    return LEGACY


def _verify_baseline(conn: Connection, tables: set[str]) -> None:
    """Refuse to adopt tables that differ from 0.1.0's: their revision could not be known."""
    inspector = inspect(conn)
    problems = []
    for table, expected in baseline_columns().items():
        if table not in tables:
            problems.append(f"table {table!r} is missing")
            continue
        present = {column["name"] for column in inspector.get_columns(table)}
        if missing := sorted(expected - present):
            problems.append(f"table {table!r} lacks column(s) {', '.join(missing)}")
        if extra := sorted(present - expected):
            problems.append(f"table {table!r} has unknown column(s) {', '.join(extra)}")
    if problems:
        more = f" (and {len(problems) - 1} more difference(s))" if len(problems) > 1 else ""
        raise SchemaError(f"{where(conn.engine)}: {problems[0]}{more}: the database was made by an older "
                          "feedbackd than 0.1.0 or a development version, and has no schema revision to "
                          "upgrade from; move it aside and let feedbackd make a new one")


@cache
def baseline_columns() -> dict[str, frozenset[str]]:
    """Table → column names of revision 0001, by running it on a scratch in-memory database."""
    scratch = create_engine("sqlite://")
    with scratch.begin() as conn:
        command.upgrade(config(conn), BASELINE)
        inspector = inspect(conn)
        columns = {table: frozenset(column["name"] for column in inspector.get_columns(table))
                   for table in inspector.get_table_names() if table != VERSION_TABLE}
    scratch.dispose()
    return columns


def new_revision(message: str) -> Path:
    """Write versions/NNNN_<message>.py with what autogenerate finds between the newest revision and the models."""
    from sqlmodel import SQLModel

    from feedbackd.store import models  # noqa: F401  (registers the tables)

    rev = f"{int(head()) + 1:04d}"
    scratch = create_engine("sqlite://")
    with scratch.begin() as conn:
        command.upgrade(config(conn), "head")
        script = command.revision(config(conn, SQLModel.metadata), message=message, autogenerate=True, rev_id=rev)
    scratch.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
