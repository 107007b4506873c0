"""Storage on SQLite and PostgreSQL: tables, the outbox's claims and leases, backoff."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from feedbackd.config import OutboxSettings, SmtpSettings
from feedbackd.outbox import Outbox
from feedbackd.store.db import connect, session
from feedbackd.store.models import Case, OutboxItem, utcnow

SMTP = SmtpSettings(host="127.0.0.1", port=25, security="none")


def _fill(engine, n: int) -> None:
    with session(engine) as db:
        for i in range(n):
            db.add(OutboxItem(purpose="acknowledgement", message_id=f"m{i}@x", mail_from="f@x",
                              recipient=f"r{i}@x", raw=b"Subject: x\r\n\r\nx"))
        db.commit()


def test_cases_round_trip_with_unicode_json_and_aware_times(db_url: str) -> None:
    engine = connect(db_url)
    with session(engine) as db:
        case = Case(requester="a@b.example", subject="小区路灯不亮", tags=["安全 safety"],
                    routing={"hits": [{"rule": "紧急"}]})
        db.add(case)
        db.commit()
    with session(engine) as db:
        got = db.exec(select(Case)).one()
        assert got.subject == "小区路灯不亮" and got.tags == ["安全 safety"]
        assert got.routing["hits"][0]["rule"] == "紧急"
        assert got.created_at.tzinfo is not None
    engine.dispose()


def test_concurrent_claims_never_take_the_same_mail(db_url: str) -> None:
    engine = connect(db_url)
    _fill(engine, 60)
    claimed: list[list[int]] = [[], [], []]

    def worker(slot: int) -> None:
        box = Outbox(engine, SMTP, OutboxSettings())
        while items := box.claim(limit=7):
            claimed[slot].extend(item.id or 0 for item in items)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in claimed for i in ids]
    assert sorted(everything) == sorted(set(everything)) and len(everything) == 60
    engine.dispose()


def test_a_lease_that_ran_out_is_claimed_again(db_url: str) -> None:
    engine = connect(db_url)
    _fill(engine, 1)
    box = Outbox(engine, SMTP, OutboxSettings())
    assert len(box.claim()) == 1
    assert box.claim() == []  # leased: a daemon may be sending it right now
    with session(engine) as db:
        item = db.exec(select(OutboxItem)).one()
        item.lease_until = utcnow() - timedelta(seconds=1)  # that daemon died
        db.add(item)
        db.commit()
    assert len(box.claim()) == 1
    engine.dispose()


def test_backoff_doubles_up_to_the_limit() -> None:
    box = Outbox(None, SMTP, OutboxSettings(retry_initial=timedelta(seconds=30),  # type: ignore[arg-type]
                                           retry_max=timedelta(minutes=5)))
    assert [box.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5, 6)] == [30, 60, 120, 240, 300, 300]


def test_a_database_from_before_0_1_0_is_refused_with_a_clear_message(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """No revision to start from (no alembic_version) and tables unlike 0.1.0's: refused, left alone."""
    import sqlite3

    from feedbackd.cli import main
    from feedbackd.store.db import SchemaError

    path = tmp_path / "old.db"
    dump = Path(__file__).resolve().parent / "data" / "db-0.1.0.sqlite.sql"  # 0.1.0's tables, whatever the models
    with sqlite3.connect(path) as conn:  # as if a development version before 0.1.0 had made the outbox table
        conn.executescript(dump.read_text(encoding="utf-8"))
        conn.execute("ALTER TABLE outbox DROP COLUMN claim")
    try:
        connect(f"sqlite:///{path}")
    except SchemaError as exc:
        assert "'outbox' lacks column(s) claim" in str(exc)
    else:
        raise AssertionError("an old schema was accepted")
    config = _config(tmp_path, f"sqlite:///{path}")
    assert main(["--config", str(config), "cases", "list"]) == 1
    assert "made by an older feedbackd" in capsys.readouterr().err
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'").fetchall() == []


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "feedbackd.toml"
    config.write_text(f"""[mailbox]\naddress = "feedback@city.example"\n[imap]\nhost = "127.0.0.1"\n
username = "feedback"\n[smtp]\nhost = "127.0.0.1"\n[database]\nurl = "{url}"\n""")
    return config


def test_listings_never_wait_for_a_writer_and_show_what_is_committed(tmp_path: Path) -> None:
    """A large intake group holds SQLite's write lock: the read-only commands read past it (WAL)."""
    url = f"sqlite:///{tmp_path / 'feedbackd.db'}"
    engine = connect(url)
    with session(engine) as db:
        db.add(Case(requester="a@b.example", subject="已提交"))
        db.commit()
    engine.dispose()
    writer = sqlite3.connect(tmp_path / "feedbackd.db", isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as intake does for a whole group
    writer.execute("""INSERT INTO "case" (status, kind, subject, requester, requester_name, language, priority,
                      tags, routing, message_count, created_at, updated_at) VALUES ('new', 'problem', '未提交',
                      'c@d.example', '', 'zh-CN', 'normal', '[]', '{}', 0, '2026-01-01', '2026-01-01')""")
    config = _config(tmp_path, url)
    env = {**os.environ, "FEEDBACKD_CONFIG": str(config)}
    try:
        for command in (["cases", "list"], ["cases", "show", "FB-000001"], ["quarantine", "list"],
                        ["unmatched", "list"], ["outbox", "list"]):
            started = time.monotonic()
            # the busy timeout is 30 s: a command that waited for the writer would run into this timeout
            result = subprocess.run([sys.executable, "-m", "feedbackd", *command, "--json"], env=env,
                                    capture_output=True, text=True, timeout=20)
            assert result.returncode == 0, (command, result.stderr)
            assert time.monotonic() - started < 10
            if command == ["cases", "list"]:
                assert [c["subject"] for c in json.loads(result.stdout)] == ["已提交"]
    finally:
        writer.execute("COMMIT")
        writer.close()
    result = subprocess.run([sys.executable, "-m", "feedbackd", "cases", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=20)
    assert [c["subject"] for c in json.loads(result.stdout)] == ["未提交", "已提交"]


def test_a_readonly_engine_reads_past_the_write_lock_that_a_writing_engine_waits_for(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedbackd.db'}"
    writer, reader = connect(url), connect(url, readonly=True)
    with writer.connect() as held:
        held.begin()  # BEGIN IMMEDIATE: the write lock, held
        with reader.connect() as conn:  # BEGIN DEFERRED: reads the last commit at once
            assert conn.exec_driver_sql('SELECT count(*) FROM "case"').scalar() == 0
        with writer.connect() as other:
            other.connection.dbapi_connection.execute("PRAGMA busy_timeout = 0")  # type: ignore[union-attr]
            with pytest.raises(OperationalError, match="locked"):
                other.begin()
    writer.dispose()
    reader.dispose()


def test_mail_to_an_erased_address_is_recorded_failed_and_never_claimed(db_url: str) -> None:
    """After a purge or a privacy erase the citizen's address is ``p-…@purged.invalid``: an answer a
    staff member still writes on that case is kept in its history but never tried."""
    from feedbackd.mail.compose import Outgoing
    from feedbackd.outgoing import UNDELIVERABLE, record_and_queue

    engine = connect(db_url)
    with engine.begin() as conn:
        for n, recipient in enumerate(["p-0123abcd@purged.invalid", "alive@example.org"]):
            record_and_queue(conn, Outgoing(f"m{n}@city.example", "feedback@city.example", recipient, b"x"),
                             case_id=None, purpose="progress", subject="s", text="t",
                             from_addr="feedback@city.example", from_name="Feedback")
    with session(engine) as db:
        items = {i.recipient: i for i in db.exec(select(OutboxItem))}
    assert items["p-0123abcd@purged.invalid"].status == "failed"
    assert items["p-0123abcd@purged.invalid"].last_error == UNDELIVERABLE
    assert items["alive@example.org"].status == "pending"
    claimed = Outbox(engine, SMTP, OutboxSettings()).claim(limit=10)
    assert [i.recipient for i in claimed] == ["alive@example.org"]
    engine.dispose()
