"""Make the 'database of feedbackd 0.1.0' fixtures with the code of that version (commit 5f13df2).

The fixtures in this folder were made by this script; they are committed so the tests never need the
old code.  To make them again (only if they must change; they stand for databases in the field):

    git worktree add /tmp/old 5f13df2
    PYTHONPATH=/tmp/old/daemon .venv/bin/python tests/data/make_old_db.py sqlite
    PYTHONPATH=/tmp/old/daemon .venv/bin/python tests/data/make_old_db.py postgresql
    git worktree remove /tmp/old

Each run processes the same kinds of mail through the old Pipeline (new cases in Chinese, GBK HTML,
an attachment, English, a reply, an auto-reply and a bounce, two quarantined messages), sends part of
the outbox to a sink, then writes the database as SQL text (``sqlite3 .dump`` or
``pg_dump --inserts --no-owner --no-privileges``) and what the old CLI lists and shows as JSON, which
tests/test_migrations.py expects the upgraded database to still list and show.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/mails.py

import feedbackd  # noqa: E402
import mails  # noqa: E402
from feedbackd import config as config_mod  # noqa: E402
from feedbackd.devstack import SmtpSink, write_config  # noqa: E402
from feedbackd.outbox import Outbox  # noqa: E402
from feedbackd.pipeline import Cursor, Pipeline  # noqa: E402
from feedbackd.routing import RulesWatcher  # noqa: E402
from feedbackd.store import records  # noqa: E402
from feedbackd.store.db import connect  # noqa: E402

OLD = Path(feedbackd.__file__).resolve().parents[2]  # the worktree of the old version
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_NAME = "fb_fixture_0_1_0"
KEY = "feedback@127.0.0.1:143/INBOX"


def config(tmp: Path, url: str, sink: SmtpSink, extra: dict[str, dict[str, object]] | None = None) -> Path:
    sections: dict[str, dict[str, object]] = {
        "mailbox": {"address": "feedback@city.example", "name": "市民反馈中心", "language": "zh-CN"},
        "imap": {"host": "127.0.0.1", "port": 143, "security": "none", "username": "feedback", "password": "x"},
        "smtp": {"host": sink.host, "port": sink.port, "security": "none"},
        "database": {"url": url},
        "paths": {"rules": str(OLD / "rules"), "templates": str(OLD / "templates"), "data": str(tmp / "data")},
        **(extra or {}),
    }
    return write_config(tmp / ("small.toml" if extra else "feedbackd.toml"), sections)  # type: ignore[arg-type]


def fill(tmp: Path, url: str) -> Path:
    """Run the old version on a little of everything; returns its configuration file."""
    sink = SmtpSink().start()
    path = config(tmp, url, sink)
    small = config_mod.load(config(tmp, url, sink, {"intake": {"message_max_size": "2KB"}}))
    settings = config_mod.load(path)
    engine = connect(url)
    rules = RulesWatcher(settings.paths.rules, logging.getLogger()).current
    pipeline = Pipeline(settings, engine, rules)
    with engine.begin() as conn:
        records.folder_cursor(conn, KEY, 1700000001)
    first_id = mails.msgid("qq.example")
    first = mails.plain(message_id=first_id)
    inbox = [first, mails.html_only(), mails.with_attachment(), mails.english(),
             mails.out_of_office(to_message_id=None, sender="away@163.example")]
    uid = 0
    for raw in inbox:
        uid += 1
        print(uid, pipeline.process(raw, Cursor(KEY, uid)).action)
    Outbox(engine, settings.smtp, settings.outbox).flush()
    later = [mails.plain(subject="Re: 小区路灯不亮", body="还是没有修好。", in_reply_to=first_id,
                         references=[first_id]),
             mails.bounce(original=mails.plain(sender="feedback@city.example", to="nobody@qq.example")),
             b" \r\n\r\n "]
    for raw in later:
        uid += 1
        print(uid, pipeline.process(raw, Cursor(KEY, uid)).action)
    uid += 1
    big = mails.plain(sender="zhao.liu@qq.example", subject="很长的信", body="很长的内容。" * 400)
    print(uid, Pipeline(small, engine, rules).process(big, Cursor(KEY, uid)).action)
    engine.dispose()
    sink.stop()
    return path


def listings(config_path: Path) -> dict[str, object]:
    """What the old CLI shows of this database."""
    def cli(*args: str) -> object:
        env = {**os.environ, "PYTHONPATH": str(OLD / "daemon")}
        out = subprocess.run([sys.executable, "-m", "feedbackd", "--config", str(config_path), *args, "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    cases = cli("cases", "list")
    assert isinstance(cases, list)
    return {"version": feedbackd.__version__, "cases": cases,
            "shown": {case["id"]: cli("cases", "show", case["id"]) for case in cases},
            "quarantine": cli("quarantine", "list", "--all"), "outbox": cli("outbox", "list", "--all"),
            "unmatched": cli("unmatched", "list")}


def make_sqlite(tmp: Path) -> tuple[str, Path]:
    db = tmp / "old.db"
    path = fill(tmp, f"sqlite:///{db}")
    dump = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, text=True, check=True).stdout
    return dump, path


def make_postgresql(tmp: Path) -> tuple[str, Path]:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_NAME}"')
    path = fill(tmp, f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_NAME}")
    dump = subprocess.run(["pg_dump", "--inserts", "--no-owner", "--no-privileges", "-h", "127.0.0.1",
                           "-U", "postgres", PG_NAME], capture_output=True, text=True, check=True).stdout
    return dump, path


def main(kind: str) -> None:
    assert str(OLD) != str(HERE.parents[1]), "run with PYTHONPATH=<worktree of 5f13df2>/daemon"
    with tempfile.TemporaryDirectory() as tmp:
        dump, path = (make_sqlite if kind == "sqlite" else make_postgresql)(Path(tmp))
        (HERE / f"db-0.1.0.{kind}.sql").write_text(dump, encoding="utf-8")
        expected = json.dumps(listings(path), ensure_ascii=False, indent=1)
        (HERE / f"db-0.1.0.{kind}.json").write_text(expected + "\n", encoding="utf-8")
    if kind == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main(sys.argv[1])
