"""Schema migrations on SQLite and PostgreSQL: a database of 0.1.0 upgraded with its data, head = models.

The 0.1.0 databases in tests/data were made by the code of that version (tests/data/make_old_db.py),
together with what its CLI listed and showed; the upgraded database must still list and show it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import mails
from conftest import REPO
from feedbackd import config as config_mod
from feedbackd.pipeline import Pipeline
from feedbackd.routing import RulesWatcher
from feedbackd.store import models  # registers the tables
from feedbackd.store.db import SCHEMA_LOCK, SchemaError, connect, upgrade
from feedbackd.store.migrations import BASELINE, VERSIONS, head, revisions, runner
from feedbackd.store.records import CASES, EVENTS, MESSAGES

DATA = Path(__file__).resolve().parent / "data"


def _dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _config(tmp: Path, url: str) -> Path:
    path = tmp / "feedbackd.toml"
    path.write_text(f"""[mailbox]\naddress = "feedback@city.example"\nname = "市民反馈中心"\n
[imap]\nhost = "127.0.0.1"\nusername = "feedback"\n[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\n
[database]\nurl = "{url}"\n[paths]\nrules = "{REPO / 'rules'}"\ntemplates = "{REPO / 'templates'}"
data = "{tmp / 'data'}"\n""", encoding="utf-8")
    return path


def _cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedbackd", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)


def _json(config: Path, *args: str) -> Any:
    result = _cli(config, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _load_0_1_0(url: str) -> None:
    """Restore the dump of a database that feedbackd 0.1.0 made."""
    dump = (DATA / f"db-0.1.0.{_dialect(url)}.sql").read_text(encoding="utf-8")
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executescript(dump)
        return
    import psycopg

    script = "".join(line for line in dump.splitlines(keepends=True) if not line.startswith("\\"))  # psql's \restrict
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(script.encode())


def _contains(new: Any, old: Any, where: str = "") -> None:
    """Everything the old version showed is shown the same (new keys are allowed)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        for key, value in old.items():
            assert key in new, f"{where}.{key} is gone"
            _contains(new[key], value, f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), where
        for i, (n, o) in enumerate(zip(new, old, strict=True)):
            _contains(n, o, f"{where}[{i}]")
    else:
        assert new == old, f"{where}: {new!r} != {old!r}"


def _schema(url: str) -> dict[str, Any]:
    engine = connect(url, create=False)
    with engine.connect() as conn:
        inspector = inspect(conn)
        shape: dict[str, Any] = {t: sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(t))
                                 for t in inspector.get_table_names()}
        shape["indexes"] = {t: sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                      for i in inspector.get_indexes(t)) for t in inspector.get_table_names()}
        shape["version"] = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    return shape


# -- the revisions themselves ---------------------------------------------------------------------


def test_the_newest_revision_is_what_the_models_describe(db_url: str) -> None:
    engine = connect(db_url, create=False)
    upgrade(engine)  # through every revision, as `db upgrade` does (connect() makes an empty one from the models)
    with engine.connect() as conn:
        opts = {"compare_type": True, "include_object": _described_by_the_models}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), SQLModel.metadata)
    engine.dispose()
    assert diff == [], ("the models differ from the newest migration; add a revision: "
                        f".venv/bin/python -m feedbackd.store.migrations revision 'what changed'\n{diff}")


def _described_by_the_models(_object: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any) -> bool:
    """Each database's own indexes of the report (models.SQLITE_INDEXES, POSTGRESQL_INDEXES) are DDL on
    create, not metadata; the next test checks that the models and the revisions make them alike."""
    return not (type_ == "index" and name in {*models.SQLITE_INDEXES, *models.POSTGRESQL_INDEXES})


def test_a_new_database_made_from_the_models_is_the_one_the_revisions_make(db_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, db_url)
    assert _cli(config, "db", "upgrade").returncode == 0  # through every revision
    migrated = _schema(db_url)
    _drop_all(db_url)
    connect(db_url).dispose()  # an empty database: made from the models and stamped, without Alembic
    assert _schema(db_url) == migrated


def _drop_all(url: str) -> None:
    engine = connect(url, create=False)
    with engine.begin() as conn:
        SQLModel.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()


def test_revisions_are_one_line_named_after_their_files() -> None:
    script = ScriptDirectory.from_config(runner.config())
    assert script.get_heads() == [head()]
    assert revisions()[0] == BASELINE
    previous = None
    for number in revisions():
        revision = script.get_revision(number)
        assert revision is not None and Path(revision.path).name.startswith(f"{number}_")
        assert revision.down_revision == previous, f"{number} must follow {previous}"
        previous = number
    for path in VERSIONS.glob("[0-9]*.py"):
        source = path.read_text(encoding="utf-8")
        assert "feedbackd" not in source.split('"""')[-1], f"{path.name} imports feedbackd (the live models)"


# -- upgrading ------------------------------------------------------------------------------------


def test_a_database_made_by_0_1_0_is_upgraded_with_all_its_data(db_url: str, tmp_path: Path) -> None:
    _load_0_1_0(db_url)
    config = _config(tmp_path, db_url)
    result = _cli(config, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database schema upgraded from 0.1.0 to revision {head()}"
    old = json.loads((DATA / f"db-0.1.0.{_dialect(db_url)}.json").read_text(encoding="utf-8"))
    cases = _json(config, "cases", "list")
    _contains(cases, old["cases"], "cases")
    assert len(cases) == 4
    for number, shown in old["shown"].items():
        _contains(_json(config, "cases", "show", number), shown, number)
    _contains(_json(config, "quarantine", "list", "--all"), old["quarantine"], "quarantine")
    _contains(_json(config, "outbox", "list", "--all"), old["outbox"], "outbox")
    _contains(_json(config, "unmatched", "list"), old["unmatched"], "unmatched")

    settings = config_mod.load(config)  # the pipeline goes on where 0.1.0 stopped
    engine = connect(settings.database.url)
    pipeline = Pipeline(settings, engine, RulesWatcher(settings.paths.rules, logging.getLogger()).current)
    reply = pipeline.process(mails.plain(subject=f"Re: [{cases[-1]['id']}] 小区路灯不亮", body="今天又坏了。"))
    new = pipeline.process(mails.english(sender="new.citizen@outlook.example"))
    engine.dispose()
    assert (reply.action, reply.case_number) == ("joined", cases[-1]["id"])
    assert new.action == "new-case" and new.case_number == "FB-000005"
    after = _json(config, "cases", "list")
    assert [c["id"] for c in after] == ["FB-000005", *[c["id"] for c in cases]]
    shown = _json(config, "cases", "show", cases[-1]["id"])
    assert len(shown["messages"]) == len(old["shown"][cases[-1]["id"]]["messages"]) + 1


def test_an_empty_database_is_made_from_nothing_and_a_second_upgrade_changes_nothing(db_url: str,
                                                                                    tmp_path: Path) -> None:
    config = _config(tmp_path, db_url)
    first = _cli(config, "db", "upgrade")
    assert first.returncode == 0 and first.stdout.strip() == f"database schema upgraded from nothing " \
                                                              f"(empty database) to revision {head()}", first.stderr
    schema = _schema(db_url)
    second = _cli(config, "db", "upgrade")
    assert second.returncode == 0 and second.stdout.strip() == f"database schema already at revision {head()}, " \
                                                               "the newest", second.stderr
    assert _schema(db_url) == schema and schema["version"] == [head()]
    assert _cli(config, "db", "current").stdout.strip() == f"{head()} (the newest)"


def test_two_processes_upgrading_a_fresh_postgresql_database_at_once_both_succeed(pg_url: str,
                                                                                 tmp_path: Path) -> None:
    """Both wait on the schema lock held here, then one upgrades and the other finds nothing to do."""
    import psycopg

    config = _config(tmp_path, pg_url)
    dsn = pg_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        env = {**os.environ}
        procs = [subprocess.Popen([sys.executable, "-m", "feedbackd", "--config", str(config), "db", "upgrade"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
        deadline = time.monotonic() + 60
        while _waiting_for_schema_lock(holder) < 2:  # both are inside the upgrade, queued on the lock
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no one waited"
            time.sleep(0.02)
        holder.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [f"database schema already at revision {head()}, the newest",
                       f"database schema upgraded from nothing (empty database) to revision {head()}"]
    assert _schema(pg_url)["version"] == [head()]


def _waiting_for_schema_lock(conn: Any) -> int:
    row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                       "AND objid = %s", (SCHEMA_LOCK & 0xFFFFFFFF,)).fetchone()
    return int(row[0])


def test_a_database_upgraded_by_a_newer_feedbackd_is_refused_with_one_clear_line(db_url: str,
                                                                                 tmp_path: Path) -> None:
    engine = connect(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaError, match=r"revision 9999.*newer feedbackd"):
        connect(db_url)
    config = _config(tmp_path, db_url)
    for command in (("cases", "list"), ("db", "upgrade"), ("run", "--once")):
        result = _cli(config, *command)
        assert result.returncode == 1 and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("feedbackd: ") and "schema revision 9999" in line and "newer feedbackd" in line
    assert _schema(db_url)["version"] == ["9999"]  # left alone
    assert "unknown to this feedbackd" in _cli(config, "db", "current").stdout


def test_a_database_already_at_the_newest_revision_is_checked_without_alembic(tmp_path: Path) -> None:
    """Start-up stays fast: one query of alembic_version; Alembic itself is never loaded."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    connect(url).dispose()
    probe = f"import sys; from feedbackd.store.db import connect; connect({url!r}).dispose(); " \
            "print('alembic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- 0006: the report's milestones on the case ----------------------------------------------------

MILESTONES = ("first_answered_at", "first_resolved_at", "reopened", "first_response_hours", "resolution_hours")


def _at_0005(url: str) -> Any:
    """An engine on a database brought to revision 0005 only (what feedbackd made before 0006)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        alembic_command.upgrade(runner.config(conn), "0005")
    return engine


def _old_table(table: Any) -> Any:
    """``table`` as revision 0005 had it: without 0006's columns."""
    return sa.table(table.name, *(sa.column(c.name, c.type) for c in table.c if c.name not in MILESTONES))


def test_revision_0006_backfills_the_milestones_from_messages_and_events(db_url: str) -> None:
    t = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    engine = _at_0005(db_url)
    case = {"status": "open", "kind": "problem", "subject": "路灯", "requester": "a@qq.com", "requester_name": "",
            "language": "zh-CN", "priority": "normal", "tags": [], "routing": {}, "message_count": 1,
            "created_at": t, "updated_at": t}
    mails = {1: [("in", "mail", 0), ("out", "acknowledgement", 0), ("out", "result", 5), ("out", "progress", 2)],
             2: [("in", "mail", 1), ("in", "progress", 1), ("out", "still-handling", 3)],
             3: [("in", "mail", 0)]}
    events = {1: [("status", {"from": "in-progress", "to": "resolved"}, 10),
                  ("status", {"from": "resolved", "to": "open"}, 12),  # #reopen
                  ("status", {"from": "open", "to": "closed"}, 20), ("reopened", {"from": "closed"}, 25),
                  ("status", {"from": "open", "to": "resolved"}, 8.5)],  # earlier, written later: the earliest counts
              2: [("status", {"from": "waiting", "to": "open"}, 2), ("status", {"from": "open", "to": "closed"}, 3)],
              3: [("answered", {"final": False}, 1), ("note", {}, 2)]}
    with engine.begin() as conn:
        for case_id in (1, 2, 3):
            conn.execute(sa.insert(_old_table(CASES)), {**case, "id": case_id})
            conn.execute(sa.insert(_old_table(MESSAGES)), [
                {"case_id": case_id, "direction": d, "kind": k, "dedupe_key": f"{case_id}:{i}", "references": [],
                 "from_addr": "", "from_name": "", "to_addrs": [], "cc_addrs": [], "subject": "", "text": "",
                 "defects": [], "received_at": t + timedelta(hours=hours)}
                for i, (d, k, hours) in enumerate(mails[case_id])])
            conn.execute(sa.insert(_old_table(EVENTS)), [
                {"case_id": case_id, "kind": k, "detail": detail, "at": t + timedelta(hours=hours)}
                for k, detail, hours in events[case_id]])
    assert upgrade(engine) == ("0005", head())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(CASES.c.id, *(CASES.c[name] for name in MILESTONES)).order_by(CASES.c.id)).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, t + timedelta(hours=2), t + timedelta(hours=8.5), 2, pytest.approx(2),
                                         pytest.approx(8.5)),
                                        (2, None, t + timedelta(hours=3), 0, None, pytest.approx(3)),
                                        (3, None, None, 0, None, None)]
