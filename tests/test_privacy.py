"""``feedbackd privacy export`` and ``privacy erase`` through the real Dovecot and SMTP sink, on SQLite and
PostgreSQL: a citizen with a case of their own (an attachment, another citizen copied) who was also copied
on another citizen's case and wrote there; a third citizen who has nothing to do with them.
"""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

import mails
from conftest import Env, run_once
from feedbackd.jobs.purge import pseudonym, pseudonym_key
from feedbackd.store.db import connect
from test_purge import assert_none_of, data_dir_bytes, dump, mailbox_bytes, sqlite_files

CITIZEN = "Erase.Me@qq.example"
NAME = "赵六顺"
SUBJECT = "楼道灯不亮需要维修"
BODY = "赵六顺家住光明小区七栋，独特短语甲乙丙丁，电话13912345678。"
FOLLOW_UP = "我也是这栋楼的住户，独特短语戊己庚辛。"
FILENAME = "赵六顺房产证.jpg"
PHOTO = b"\xff\xd8\xff\xe0ZHAO-PRIVATE-PHOTO" * 40
OTHER = "neighbour.qian@163.example"
OTHER_SUBJECT = "电梯经常停运"
OTHER_BODY = "钱七家的电梯一周停了三次，老人上下楼很困难。"
KEPT = "kept.sun@126.example"
KEPT_BODY = "孙八反映公园路面塌陷。"
TODAY = date.today()
SPAN = ("--from", str(TODAY - timedelta(days=3)), "--to", str(TODAY + timedelta(days=3)))  # the same twice


@pytest.fixture
def engine(env_db: Env) -> Iterator[Engine]:
    engine = connect(env_db.db_url)
    yield engine
    engine.dispose()


def cc(message: bytes, address: str) -> bytes:
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = message.partition(b"\n\n")
        return head + f"\nCc: {address}".encode() + sep + body
    return head + f"\r\nCc: {address}".encode() + sep + body


def case_of(engine: Engine, requester: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text('SELECT id FROM "case" WHERE requester = :r'), {"r": requester}).scalar_one())


def number(env: Env, case_id: int) -> str:
    return f"{env.settings.cases.prefix}-{case_id:06d}"


def deliver(env: Env, engine: Engine) -> tuple[int, int, int]:
    """Their own case (OTHER copied), OTHER's case (they copied), KEPT's case; they then write on OTHER's."""
    own = mails.with_attachment(sender=CITIZEN, name=NAME, subject=SUBJECT, body=BODY, filename=FILENAME, data=PHOTO)
    env.mailbox.append(cc(own, OTHER))
    env.mailbox.append(cc(mails.plain(sender=OTHER, name="钱七", subject=OTHER_SUBJECT, body=OTHER_BODY), CITIZEN))
    env.mailbox.append(mails.plain(sender=KEPT, name="孙八", subject="路面塌陷", body=KEPT_BODY))
    assert run_once(env) == {"new-case": 3}
    theirs, others, kept = case_of(engine, CITIZEN.lower()), case_of(engine, OTHER), case_of(engine, KEPT)
    env.mailbox.append(mails.plain(sender=CITIZEN, name=NAME, subject=f"Re: [{number(env, others)}] {OTHER_SUBJECT}",
                                   body=FOLLOW_UP))
    assert run_once(env) == {"joined": 1}
    return theirs, others, kept


def cli(env: Env, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The command in this process (a new interpreter per call costs a second); the contract's main
    calls go through ``env.cli``."""
    from feedbackd.cli import main

    capsys.readouterr()
    code = main(["--config", str(env.config_path), *args])
    return code, capsys.readouterr().out


def personal() -> list[bytes]:
    words = [CITIZEN.lower(), CITIZEN, NAME, SUBJECT, BODY, FOLLOW_UP, FILENAME, "13912345678", "甲乙丙丁", "戊己庚辛"]
    return [w.encode("utf-8") for w in words] + [PHOTO[:40]]


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_export(files: dict[str, bytes], env: Env, theirs: int, others: int) -> None:
    index = json.loads(files["index.json"])
    roles = {c["number"]: c["role"] for c in index["cases"]}
    assert roles == {number(env, theirs): "requester", number(env, others): "participant"}
    own = next(c for c in index["cases"] if c["role"] == "requester")
    assert own["subject"] == SUBJECT and own["messages"][0]["text"].strip() == BODY
    assert own["messages"][0]["cc"] == ["[someone else]"]
    assert [o["purpose"] for o in own["outgoing"]] == ["acknowledgement"]
    attachment = own["messages"][0]["attachments"][0]
    assert attachment["filename"] == FILENAME and files[attachment["file"]] == PHOTO
    assert BODY.encode() in files[f"cases/{number(env, theirs)}/case.txt"]
    assert f"<{CITIZEN}>".encode() in files[own["messages"][0]["eml"]]
    participant = next(c for c in index["cases"] if c["role"] == "participant")
    assert "subject" not in participant and [m["text"].strip() for m in participant["messages"]] == [FOLLOW_UP]
    assert SUBJECT.encode() in files["README.txt"] and b"Cases you opened: 1" in files["README.txt"]
    everything = b"\n".join(files.values())
    assert OTHER.encode() not in everything and OTHER_BODY.encode() not in everything, "another citizen's data"
    assert KEPT.encode() not in everything and KEPT_BODY.encode() not in everything


def test_export_and_erase_one_citizen(env_db: Env, engine: Engine, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    env = env_db
    theirs, others, kept = deliver(env, engine)
    data_dir = env.settings.paths.data
    assert PHOTO in data_dir_bytes(data_dir)

    # Export to a folder and to a zip: the same files, private, nobody else's address.
    folder, archive = tmp_path / "export", tmp_path / "out" / "export.zip"
    code, said = cli(env, capsys, "privacy", "export", CITIZEN.upper(), "--out", str(folder))
    assert code == 0 and str(folder) in said and "2 case(s)" in said
    code, said = cli(env, capsys, "privacy", "export", CITIZEN, "--out", str(archive))
    assert code == 0 and str(archive) in said
    check_export(files_of(folder), env, theirs, others)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")} | {stat.S_IMODE(folder.stat().st_mode)}
    assert modes == {0o600, 0o700}
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with zipfile.ZipFile(archive) as z:
        zipped = {name: z.read(name) for name in z.namelist()}
        assert {stat.S_IMODE(i.external_attr >> 16) for i in z.infolist()} == {0o600}
    assert zipped.keys() == files_of(folder).keys()
    check_export(zipped, env, theirs, others)
    code, said = cli(env, capsys, "privacy", "export", CITIZEN, "--out", str(folder))
    assert code == 2 and "not empty" in said

    # The dry run lists, changes nothing.
    code, report = cli(env, capsys, "report", "--json", *SPAN)
    assert code == 0
    unchanged = dump(engine)
    code, dry = cli(env, capsys, "privacy", "erase", CITIZEN, "--dry-run", "--json")
    assert code == 0
    planned = json.loads(dry)
    assert planned["dry_run"] and planned["cases"] == [number(env, theirs)]
    assert planned["other_cases"] == [number(env, others)]
    assert planned["counts"]["messages"] == 3 and planned["counts"]["outgoing"] == 1
    assert dump(engine) == unchanged

    # Staff are refused.
    code, said = cli(env, capsys, "privacy", "erase", env.settings.mailbox.address)
    assert code == 2 and said.startswith("refused: ")

    erased = env.cli("privacy", "erase", CITIZEN, "--json")
    assert erased.returncode == 0, erased.stderr
    counts = json.loads(erased.stdout)["counts"]
    assert counts["cases"] == 1 and counts["other_cases"] == 1 and counts["messages"] == 3
    assert counts["attachment_files"] == 1 and counts["mailbox_deleted"] == 2 and counts["participants"] == 1

    engine.dispose()
    assert_none_of(personal(), dump(engine), "the database")
    assert_none_of(personal(), data_dir_bytes(data_dir), "the data directory")
    assert_none_of(personal()[2:], mailbox_bytes(env), "the mailbox")  # OTHER's mail still names them in Cc
    if env.db_url.startswith("sqlite"):
        assert_none_of(personal(), sqlite_files(env), "the SQLite file or its WAL")
    for kept_word in (OTHER, OTHER_SUBJECT, OTHER_BODY, KEPT, KEPT_BODY):
        assert kept_word.encode() in dump(engine), kept_word
    assert OTHER.encode() in mailbox_bytes(env) and KEPT.encode() in mailbox_bytes(env)
    code, after = cli(env, capsys, "report", "--json", *SPAN)
    assert json.loads(after) == json.loads(report)

    stand_in = pseudonym(pseudonym_key(data_dir), CITIZEN.lower())
    with engine.connect() as conn:
        requester = conn.execute(text('SELECT requester, status FROM "case" WHERE id = :i'), {"i": theirs}).one()
        kinds = {r[0]: r[1] for r in conn.execute(text(
            "SELECT case_id, kind FROM case_event WHERE kind IN ('erased', 'participant-erased')"))}
        details = conn.execute(text("SELECT detail FROM case_event WHERE kind LIKE '%erased'")).scalars().all()
        copied = conn.execute(text("SELECT address FROM participant WHERE case_id = :i"), {"i": others}).scalars().all()
    assert requester[0] == stand_in and requester[1] == "new"
    assert kinds == {theirs: "erased", others: "participant-erased"}
    assert all("@" not in json.dumps(d) for d in details)
    assert copied == [stand_in]
    assert case_of(engine, OTHER) == others and case_of(engine, KEPT) == kept

    # Nothing twice; a later mail from them starts afresh, even naming their old case.
    assert "nothing held" in cli(env, capsys, "privacy", "erase", CITIZEN)[1]
    env.mailbox.append(mails.plain(sender=CITIZEN, subject=f"Re: [{number(env, theirs)}] 还没修", body="还是不亮。"))
    assert run_once(env) == {"new-case": 1}
