"""Retention through the real Dovecot and SMTP sink: cases come in by IMAP, are closed, time moves past
``jobs.retention``, and purge leaves none of the citizen's address, name or text in the database (the
SQLite file's bytes and WAL included), the data directory or the mailbox, while a case not yet expired
keeps everything and the figures reports are made of stay the same.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, insert, text, update
from sqlalchemy.engine import Engine, make_url
from sqlmodel import col

import mails
from conftest import Env, run_once
from feedbackd.config import Settings
from feedbackd.jobs.base import make_context
from feedbackd.jobs.purge import MARKER, pseudonym, pseudonym_key, purge, run_purge
from feedbackd.routing import load_ruleset
from feedbackd.store.db import connect
from feedbackd.store.models import Case, CaseEvent

CITIZEN = "purge.zhang@qq.example"
NAME = "张三丰"
SUBJECT = "东门路灯坏了请维修"
BODY = "我家住在幸福小区东门，路灯坏了一个星期，我的电话是13800138000。"
SECOND_SUBJECT = "垃圾桶满了没人清理"
FILENAME = "张三丰身份证.jpg"
PHOTO = b"\xff\xd8\xff\xe0PRIVATE-PHOTO-OF-ZHANG" * 50
KEPT = "keep.li@163.example"
KEPT_NAME = "李四光"
KEPT_SUBJECT = "公园长椅损坏"
KEPT_BODY = "人民公园西侧的长椅断了，老人坐着很危险。"
STAFF_NOTE = "已电话联系张三丰本人"




@pytest.fixture
def engine(env_db: Env) -> Iterator[Engine]:
    engine = connect(env_db.db_url)
    yield engine
    engine.dispose()


def personal_strings() -> list[bytes]:
    """What must not survive of the expired citizen, in the encodings a store could hold it."""
    words = [CITIZEN, NAME, SUBJECT, BODY, SECOND_SUBJECT, FILENAME, STAFF_NOTE, "13800138000"]
    encoded = [w.encode("utf-8") for w in words]
    encoded += [w.encode("utf-16-le") for w in (NAME, BODY)]
    return [*encoded, PHOTO[:40], base64.b64encode(PHOTO)[:40]]


def kept_strings() -> list[bytes]:
    return [w.encode("utf-8") for w in (KEPT, KEPT_NAME, KEPT_SUBJECT, KEPT_BODY)]


def dump(engine: Engine) -> bytes:
    """Every row of every table, as text: the database as a query sees it (both SQLite and PostgreSQL)."""
    meta = MetaData()
    meta.reflect(engine)
    out = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(table.select().order_by(*table.primary_key.columns)):
                out.append(repr(tuple(row)).encode("utf-8"))
                out.extend(v for v in row if isinstance(v, bytes))
    return b"\n".join(out)


def sqlite_files(env: Env) -> bytes:
    """The SQLite database file and its WAL, byte for byte (free pages included)."""
    database = make_url(env.db_url).database
    assert database
    data = b""
    for suffix in ("", "-wal"):
        path = Path(database + suffix)
        if path.exists():
            data += path.read_bytes()
    return data


def data_dir_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def mailbox_bytes(env: Env) -> bytes:
    client = env.mailbox.client()  # type: ignore[no-untyped-call]
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return b"\n".join(bytes(item[b"BODY[]"]) for item in fetched.values())
    finally:
        client.logout()


def assert_none_of(strings: list[bytes], haystack: bytes, where: str) -> None:
    found = [s.decode("utf-8", "replace") for s in strings if s in haystack]
    assert not found, f"left in {where}: {found}"


def figures(engine: Engine) -> list[Any]:
    """What reports read: times, kinds, routing, the satisfaction score, events' kinds and times."""
    with engine.connect() as conn:
        cases = conn.execute(text(
            "SELECT id, status, kind, department, priority, tags, created_at, resolved_at, closed_at, "
            "first_response_due, resolution_due, assignee, message_count FROM \"case\" ORDER BY id")).all()
        events = conn.execute(text(
            "SELECT case_id, kind, at FROM case_event WHERE kind NOT IN ('purged', 'mailbox-purged', "
            "'mailbox-purge-pending') ORDER BY id")).all()
        messages = conn.execute(text(
            "SELECT case_id, direction, kind, date, received_at FROM message ORDER BY id")).all()
        outbox = conn.execute(text(
            "SELECT case_id, purpose, status, created_at, sent_at FROM outbox ORDER BY id")).all()
        scores = conn.execute(text("SELECT id, satisfaction FROM \"case\" ORDER BY id")).all()
    score_only = [(i, json_of(s).get("score") if s is not None else None) for i, s in scores]
    return [list(cases), list(events), list(messages), list(outbox), score_only]


def json_of(value: Any) -> Any:
    """A JSON column read by plain SQL: a string on SQLite, already decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def cases_of(engine: Engine, requester: str) -> list[int]:
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(text('SELECT id FROM "case" WHERE requester = :r ORDER BY id'),
                                             {"r": requester}).scalars()]


def close(engine: Engine, case_ids: list[int], at: datetime, satisfaction: dict[str, Any] | None = None) -> None:
    with engine.begin() as conn:
        for case_id in case_ids:
            conn.execute(text('UPDATE "case" SET status = \'closed\', resolved_at = :at, closed_at = :at '
                              "WHERE id = :id"), {"at": at, "id": case_id})
    if satisfaction is not None:
        with engine.begin() as conn:
            conn.execute(update(Case).where(col(Case.id) == case_ids[0]).values(satisfaction=satisfaction))


def add_note(engine: Engine, case_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(CaseEvent), {"case_id": case_id, "kind": "note", "detail": {"text": STAFF_NOTE},
                                         "actor": "desk@city.example"})


def unreachable(settings: Settings) -> Settings:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return settings.model_copy(update={"imap": settings.imap.model_copy(update={"port": port})})


def test_purge_removes_personal_data_everywhere_and_keeps_the_figures(env_db: Env, engine: Engine) -> None:
    env = env_db
    env.mailbox.append(
        mails.with_attachment(sender=CITIZEN, name=NAME, subject=SUBJECT, body=BODY, filename=FILENAME, data=PHOTO),
        mails.plain(sender=CITIZEN, name=NAME, subject=SECOND_SUBJECT, body=BODY),
        mails.plain(sender=KEPT, name=KEPT_NAME, subject=KEPT_SUBJECT, body=KEPT_BODY))
    assert run_once(env) == {"new-case": 3}
    expired, kept = cases_of(engine, CITIZEN), cases_of(engine, KEPT)
    assert len(expired) == 2 and len(kept) == 1
    now = datetime.now(UTC)
    close(engine, expired, now - timedelta(days=400), satisfaction={"score": 4, "text": f"{NAME}很满意"})
    close(engine, kept, now - timedelta(days=10))
    add_note(engine, expired[0])
    data_dir = env.settings.paths.data
    assert PHOTO in data_dir_bytes(data_dir)
    before = figures(engine)

    # The dry run lists the two expired cases and changes nothing.
    unchanged = dump(engine)
    listed = env.cli("purge", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout)
    numbers = [c["case"] for c in answer["cases"]]
    assert numbers == [env.settings.cases.prefix + f"-{i:06d}" for i in expired]
    assert answer["counts"]["cases"] == 2 and answer["counts"]["mailbox_pending"] == 2
    assert dump(engine) == unchanged
    assert not (data_dir / "pseudonym.key").exists()

    # The IMAP server is away: the database is purged, the mailbox copies wait for the next run.
    first = run_purge(engine, unreachable(env.settings), now)
    assert first.counts["cases"] == 2 and first.counts["mailbox_pending"] == 2
    assert first.counts["attachment_files"] == 1 and first.counts["raw_messages"] == 2
    assert CITIZEN.encode() in mailbox_bytes(env)
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM case_event WHERE kind = 'mailbox-purge-pending'")).scalar()
    assert pending == 2

    # The next run (the command, at the real time) deletes them; the kept case is untouched.
    second = env.cli("purge", "--json")
    assert second.returncode == 0, second.stderr
    counts = json.loads(second.stdout)["counts"]
    assert counts["cases"] == 0 and counts["mailbox_deleted"] == 2

    engine.dispose()
    assert_none_of(personal_strings(), dump(engine), "the database")
    assert_none_of(personal_strings(), data_dir_bytes(data_dir), "the data directory")
    assert_none_of(personal_strings(), mailbox_bytes(env), "the mailbox")
    if env.db_url.startswith("sqlite"):
        assert_none_of(personal_strings(), sqlite_files(env), "the SQLite file or its WAL")
    for needle in kept_strings():
        assert needle in dump(engine), needle
    assert KEPT.encode() in mailbox_bytes(env)
    assert figures(engine) == before

    # One citizen, one pseudonym, across cases; the score stays, its words go; a purged event with counts.
    key = pseudonym_key(data_dir)
    stand_in = pseudonym(key, CITIZEN)
    assert pseudonym(key, CITIZEN.upper()) == stand_in != pseudonym(key, KEPT)
    assert cases_of(engine, stand_in) == expired
    with engine.connect() as conn:
        row = conn.execute(text('SELECT subject, requester_name, satisfaction, purged_at FROM "case" WHERE id = :i'),
                           {"i": expired[0]}).one()
        purged = conn.execute(text("SELECT actor, detail FROM case_event WHERE kind = 'purged' AND case_id = :i"),
                              {"i": expired[0]}).one()
    assert row[0] == MARKER and row[1] == "" and row[3] is not None
    satisfaction = json_of(row[2])
    assert satisfaction == {"score": 4}
    detail = json_of(purged[1])
    assert purged[0] == "system" and detail["messages"] >= 2 and detail["attachments"] == 1

    # Moving the job's clock past the kept case's retention purges it too, with the same key.
    settings = env.settings
    ctx = make_context(engine, settings, now + timedelta(days=400), lambda: load_ruleset(settings.paths.rules))
    assert purge(ctx)["cases"] == 1
    assert cases_of(engine, pseudonym(key, KEPT)) == kept
    engine.dispose()
    assert_none_of(kept_strings(), dump(engine), "the database")
    assert KEPT.encode() not in mailbox_bytes(env)
    if env.db_url.startswith("sqlite"):
        assert_none_of(kept_strings(), sqlite_files(env), "the SQLite file or its WAL")
    assert figures(engine) == before
    assert purge(ctx)["cases"] == 0  # nothing twice
