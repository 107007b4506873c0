"""The database connection: SQLite by default (WAL), PostgreSQL by URL; tables made on first use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from feedbackd.store import models  # noqa: F401  (registers the tables)


def connect(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url``; on SQLite with WAL, a busy timeout and foreign keys on.

    ``hide_parameters``: a database error names the statement, never the values (addresses,
    message text), so errors can be logged and stored without personal data.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if create:
        create_tables(engine)
    return engine


SCHEMA_LOCK = 0x46424B44  # "FBKD": serialises table creation between daemons on PostgreSQL


class SchemaError(Exception):
    """The database was made by another version of feedbackd; the message says what differs."""


def create_tables(engine: Engine) -> None:
    """Create missing tables, and refuse a database whose tables lack columns this version needs.

    Safe when several daemons start at once.  There are no migrations yet: a missing column is
    reported clearly rather than failing later in the middle of a message.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        SQLModel.metadata.create_all(conn)
        inspector = inspect(conn)
        for table in SQLModel.metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            missing = [column.name for column in table.columns if column.name not in present]
            if missing:
                raise SchemaError(f"{engine.url.render_as_string(hide_password=True)}: table {table.name!r} "
                                  f"lacks column(s) {', '.join(missing)}: it was made by an older feedbackd")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy issues BEGIN itself (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash of the process loses nothing
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Take the write lock at BEGIN: a transaction that reads, then writes, can otherwise fail
    or stall when another thread or process committed in between (SQLITE_BUSY on upgrade)."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
