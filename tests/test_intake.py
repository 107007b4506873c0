"""The end-to-end loop against a real Dovecot, a real SMTP server and a real database.

Mail is delivered by IMAP APPEND; acknowledgements are read from the SMTP sink; cases are read
through the CLI's JSON, the interface admins and the outside checks use.
"""

from __future__ import annotations

import json
import re

import pytest

import mails
from conftest import Env
from feedbackd.service import Daemon


def run_once(env: Env) -> Daemon:
    daemon = Daemon(env.settings)
    daemon.run_once()
    daemon.engine.dispose()
    return daemon


def cases_json(env: Env) -> list[dict]:
    result = env.cli("cases", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def case_json(env: Env, number: str) -> dict:
    result = env.cli("cases", "show", number, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_new_mail_becomes_a_case_and_gets_one_acknowledgement(env_db: Env) -> None:
    env = env_db
    env.mailbox.append(
        mails.plain(),
        mails.plain(sender="qian@163.example", name="钱七", charset="gbk", subject="支付失败，钱被扣了",
                    body="我在缴纳水费时支付失败，但银行卡已经扣款。"),
        mails.html_only(),
        mails.with_attachment(),
        mails.english(),
    )
    run_once(env)
    acks = env.sink.wait_for(5)
    cases = cases_json(env)
    assert len(cases) == 5 and len(acks) == 5
    for case in cases:
        for key in ("id", "status", "subject", "requester", "priority", "department", "message_count",
                    "created_at", "updated_at"):
            assert key in case
        assert re.fullmatch(r"FB-\d{6}", case["id"])
        assert case["status"] == "new" and case["message_count"] == 1
    by_requester = {c["requester"]: c for c in cases}
    assert by_requester["qian@163.example"]["subject"] == "支付失败，钱被扣了"
    assert by_requester["li.si@163.example"]["subject"] == "垃圾清运不及时"

    for ack in acks:
        msg = ack.message
        (rcpt,) = ack.rcpt_tos
        case = by_requester[rcpt]
        assert msg["To"].addresses[0].addr_spec == rcpt
        assert msg["Cc"] is None and msg["Bcc"] is None
        assert msg["From"].addresses[0].addr_spec == "feedback@city.example"
        assert f"[{case['id']}]" in msg["Subject"]
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["Message-ID"] and msg["In-Reply-To"]
        assert msg["In-Reply-To"] in msg["References"]
        text = msg.get_body(("plain",)).get_content()
        assert case["id"] in text
        assert msg.get_body(("html",)) is not None
    english = next(a for a in acks if a.rcpt_tos == ["john.smith@outlook.example"])
    assert "We have received your feedback" in english.message["Subject"]
    chinese = next(a for a in acks if a.rcpt_tos == ["qian@163.example"])
    body = chinese.message.get_body(("plain",)).get_content()
    assert "支付失败" in body and "个人信息" in body and "回复本邮件" in body

    detail = case_json(env, by_requester["wang.wu@gmail.example"]["id"])
    (incoming, outgoing) = detail["messages"]
    assert incoming["direction"] == "in" and outgoing["direction"] == "out"
    assert incoming["attachments"][0]["filename"] == "现场照片.jpg"
    assert "噪音" in incoming["text"]
    for key in ("direction", "from", "to", "subject", "date", "text", "attachments"):
        assert key in incoming
    html_case = case_json(env, by_requester["li.si@163.example"]["id"])
    assert "小区垃圾三天没有清运了" in html_case["messages"][0]["text"]


def test_a_second_run_creates_nothing_new(env_db: Env) -> None:
    env = env_db
    env.mailbox.append(mails.plain(), mails.english())
    run_once(env)
    run_once(env)
    assert len(cases_json(env)) == 2
    assert len(env.sink.wait_for(3, timeout=1)) == 2


def test_the_same_message_delivered_twice_is_one_case(env: Env) -> None:
    raw = mails.plain(message_id="same-id@qq.example")
    no_id = mails.plain(sender="nobody@163.example", message_id="")
    env.mailbox.append(raw, raw, no_id, no_id)
    run_once(env)
    assert len(cases_json(env)) == 2
    assert len(env.sink.wait_for(3, timeout=1)) == 2


def test_uidvalidity_change_rereads_without_duplicates(env: Env) -> None:
    from sqlmodel import select

    from feedbackd.store.db import connect, session
    from feedbackd.store.models import MailboxState

    env.mailbox.append(mails.plain(), mails.english())
    run_once(env)
    engine = connect(env.settings.database.url)
    with session(engine) as db:
        (state,) = db.exec(select(MailboxState)).all()
        state.uidvalidity += 1  # as if the server had rebuilt the folder
        db.add(state)
        db.commit()
    env.mailbox.append(mails.plain(sender="new@qq.example"))
    run_once(env)
    assert len(cases_json(env)) == 3
    assert len(env.sink.wait_for(4, timeout=1)) == 3


def test_replies_join_their_case(env_db: Env) -> None:
    env = env_db
    first = mails.plain(message_id="first@qq.example")
    env.mailbox.append(first)
    run_once(env)
    (ack,) = env.sink.wait_for(1)
    ack_id = ack.message["Message-ID"].strip("<>")
    number = cases_json(env)[0]["id"]
    env.mailbox.append(
        # a reply to our acknowledgement, as every client threads it
        mails.plain(subject=f"回复：[{number}] 我们已收到您的反馈：小区路灯不亮", body="补充：是东门第三根灯杆。",
                    in_reply_to=ack_id, references=["first@qq.example", ack_id]),
        # a follow-up to the citizen's own first mail (References only, no token)
        mails.plain(subject="Re: 小区路灯不亮", body="还是没修。", references=["first@qq.example"]),
        # a reply with only the token, from the requester (headers stripped by a web client)
        mails.plain(subject=f"Re: [{number}] 路灯", body="请问什么时候修？"),
    )
    run_once(env)
    cases = cases_json(env)
    assert len(cases) == 1
    assert cases[0]["message_count"] == 4
    assert len(env.sink.wait_for(2, timeout=1)) == 1  # replies are not acknowledged again
    texts = [m["text"] for m in case_json(env, number)["messages"] if m["direction"] == "in"]
    assert any("东门第三根灯杆" in t for t in texts)


def test_a_token_from_a_stranger_starts_a_new_case(env: Env) -> None:
    env.mailbox.append(mails.plain())
    run_once(env)
    number = cases_json(env)[0]["id"]
    env.mailbox.append(mails.plain(sender="stranger@evil.example", name="陌生人",
                                   subject=f"Re: [{number}] 我也要看", body="让我看看这个案件"))
    run_once(env)
    cases = cases_json(env)
    assert len(cases) == 2
    stranger = next(c for c in cases if c["requester"] == "stranger@evil.example")
    assert stranger["id"] != number
    original = case_json(env, number)
    assert original["message_count"] == 1
    assert all(m["from"] != "stranger@evil.example" for m in original["messages"])
    acks = env.sink.wait_for(2)
    stranger_ack = next(a for a in acks if a.rcpt_tos == ["stranger@evil.example"])
    assert "zhang.san@qq.example" not in stranger_ack.data.decode("ascii", "replace")


def test_the_acknowledgement_never_shows_other_addresses(env: Env) -> None:
    env.mailbox.append(mails.plain(headers={"Cc": "neighbour@qq.example, other@163.example"}))
    run_once(env)
    (ack,) = env.sink.wait_for(1)
    assert ack.rcpt_tos == ["zhang.san@qq.example"]
    raw = ack.data.decode("ascii", "replace")
    assert "neighbour@qq.example" not in raw and "other@163.example" not in raw


@pytest.mark.parametrize("headers, sender, expect_case", [
    ({"Auto-Submitted": "auto-replied"}, "zhang.san@qq.example", False),
    ({"X-Autoreply": "yes"}, "zhang.san@qq.example", False),
    ({"Return-Path": "<>"}, "zhang.san@qq.example", False),
    ({"Auto-Submitted": "auto-generated"}, "alerts@system.example", True),
    ({"Precedence": "bulk"}, "news@shop.example", True),
    ({"Precedence": "junk"}, "news@shop.example", True),
    ({"Precedence": "list"}, "list@lists.example", True),
    ({"List-Id": "<residents.lists.example>"}, "list@lists.example", True),
    ({}, "MAILER-DAEMON@mx.example", False),
    ({}, "postmaster@mx.example", False),
    ({}, "feedback@city.example", True),
    ({}, "noreply@shop.example", True),
])
def test_no_acknowledgement_to_automatic_mail(env: Env, headers: dict, sender: str, expect_case: bool) -> None:
    env.mailbox.append(mails.plain(sender=sender, name="", headers=headers, subject="通知"))
    run_once(env)
    assert len(cases_json(env)) == (1 if expect_case else 0)
    assert env.sink.wait_for(1, timeout=0.5) == []


def test_auto_submitted_no_is_a_person(env: Env) -> None:
    env.mailbox.append(mails.plain(headers={"Auto-Submitted": "no"}))
    run_once(env)
    assert len(env.sink.wait_for(1)) == 1


def test_delivery_reports_get_no_answer(env: Env) -> None:
    env.mailbox.append(mails.bounce(original=mails.plain()))
    run_once(env)
    assert cases_json(env) == []
    assert env.sink.wait_for(1, timeout=0.5) == []


def test_bounces_and_out_of_office_replies_are_recorded_on_their_case(env_db: Env) -> None:
    env = env_db
    env.mailbox.append(mails.plain())
    run_once(env)
    (ack,) = env.sink.wait_for(1)
    ack_id = ack.message["Message-ID"].strip("<>")
    ack_bytes = ack.data.replace(b"\n", b"\r\n") if b"\r\n" not in ack.data else ack.data
    env.mailbox.append(mails.out_of_office(to_message_id=ack_id),
                       mails.out_of_office(to_message_id=ack_id, legacy=True),
                       mails.bounce(original=ack_bytes))
    run_once(env)
    (case,) = cases_json(env)
    assert case["message_count"] == 4
    kinds = [m["kind"] for m in case_json(env, case["id"])["messages"]]
    assert kinds.count("auto-reply") == 2 and kinds.count("bounce") == 1
    events = [e["kind"] for e in case_json(env, case["id"])["events"]]
    assert "bounce" in events and "auto-reply" in events
    assert len(env.sink.wait_for(2, timeout=0.5)) == 1


def test_acknowledgements_to_one_sender_are_rate_limited(env: Env) -> None:
    env.mailbox.append(*[mails.plain(subject=f"问题 {i}") for i in range(7)])
    run_once(env)
    assert len(cases_json(env)) == 7
    assert len(env.sink.wait_for(7, timeout=1)) == 5
    env.reconfigure(extra="[acknowledgement]\nrate_limit = 7\n")
    env.mailbox.append(mails.plain(subject="问题 8"))
    run_once(env)
    assert len(env.sink.wait_for(6, timeout=2)) == 6


def test_unhandleable_mail_is_quarantined_and_listed(env: Env) -> None:
    env.reconfigure(extra="[intake]\nmessage_max_size = \"2KB\"\n")
    big = mails.plain(subject="很长的信", body="很长的内容。" * 400)
    env.mailbox.append(big, mails.plain(sender="ok@qq.example"))
    run_once(env)
    assert len(cases_json(env)) == 1
    listing = env.cli("quarantine", "list")
    assert listing.returncode == 0
    assert "message_max_size" in listing.stdout and "很长的信" in listing.stdout
    rows = json.loads(env.cli("quarantine", "list", "--json").stdout)
    assert len(rows) == 1 and rows[0]["stage"] == "size"
    assert rows[0]["from"] == "zhang.san@qq.example" and rows[0]["subject"] == "很长的信"
    # the sender still hears from us: a person will look at it
    notice = next(a for a in env.sink.wait_for(2) if a.rcpt_tos == ["zhang.san@qq.example"])
    assert "人工查看" in notice.message["Subject"] and notice.message["Auto-Submitted"] == "auto-replied"
    env.reconfigure()
    replay = env.cli("quarantine", "replay", str(rows[0]["id"]))
    assert replay.returncode == 0, replay.stderr
    assert len(cases_json(env)) == 2
    assert json.loads(env.cli("quarantine", "list", "--json").stdout) == []
    assert len(env.cli("quarantine", "list", "--json", "--all").stdout) > 2


def test_run_once_cli_prints_a_summary(env: Env) -> None:
    env.mailbox.append(mails.plain(), mails.english())
    result = env.cli("run", "--once")
    assert result.returncode == 0, result.stderr
    assert "processed 2 message(s)" in result.stdout and "sent 2" in result.stdout
    assert "zhang.san" not in result.stderr  # no addresses in the INFO log


def test_a_message_the_parser_cannot_read_is_quarantined_not_dropped(env: Env) -> None:
    import logging

    from feedbackd.pipeline import Pipeline
    from feedbackd.routing import RulesWatcher
    from feedbackd.store.db import connect

    settings = env.settings
    engine = connect(settings.database.url)
    pipeline = Pipeline(settings, engine, RulesWatcher(settings.paths.rules, logging.getLogger()).current)
    outcome = pipeline.process(b" \r\n\r\n ")
    assert outcome.action == "quarantined" and outcome.detail.startswith("parse: ParseError")
    (row,) = json.loads(env.cli("quarantine", "list", "--json").stdout)
    assert row["stage"] == "parse" and "ParseError" in row["reason"]
    from feedbackd.store.db import session
    from feedbackd.store.records import raw_message

    with session(engine) as db:
        assert raw_message(db.connection(), row["raw_sha256"]) == b" \r\n\r\n "


def test_processed_mail_stays_on_the_server_with_our_keyword(env: Env) -> None:
    import hashlib

    from feedbackd.store.db import connect, session
    from feedbackd.store.records import raw_message

    first = mails.plain()
    env.mailbox.append(first, mails.english())
    run_once(env)
    engine = connect(env.settings.database.url)
    with session(engine) as db:  # the raw message is kept byte for byte, for audit and replay
        assert raw_message(db.connection(), hashlib.sha256(first).hexdigest()) == first
    client = env.mailbox.client()
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search()
        flags = client.get_flags(uids)
    finally:
        client.logout()
    assert len(uids) == 2  # nothing deleted or moved
    assert all(b"$FeedbackdProcessed" in f for f in flags.values())
    assert all(b"\\Seen" not in f for f in flags.values())  # BODY.PEEK: still unread for people


def test_someone_the_citizen_copied_may_follow_up_by_token(env: Env) -> None:
    env.mailbox.append(mails.plain(headers={"Cc": "wife@163.example"}))
    run_once(env)
    (case,) = cases_json(env)
    env.mailbox.append(mails.plain(sender="wife@163.example", name="", subject=f"Re: [{case['id']}] 路灯",
                                   body="我补充一下：是东门那根。"))
    run_once(env)
    (case,) = cases_json(env)
    assert case["message_count"] == 2
    acks = env.sink.wait_for(2, timeout=1)
    assert [a.rcpt_tos for a in acks] == [["zhang.san@qq.example"]]  # one acknowledgement, to the requester


def test_attachments_over_the_limit_are_listed_but_not_stored(env: Env) -> None:
    env.reconfigure(extra='[intake]\nattachment_max_size = "1KB"\n')
    env.mailbox.append(mails.with_attachment(filename="../../etc/照片.jpg", data=b"\xff\xd8" * 1500),
                       mails.with_attachment(sender="small@gmail.example", filename="小图.jpg", data=b"\xff\xd8" * 100))
    run_once(env)
    by_requester = {c["requester"]: c for c in cases_json(env)}
    (big,) = case_json(env, by_requester["wang.wu@gmail.example"]["id"])["messages"][0]["attachments"]
    assert big["filename"] == "照片.jpg" and big["size"] == 3000 and big["stored"] is False
    (small,) = case_json(env, by_requester["small@gmail.example"]["id"])["messages"][0]["attachments"]
    assert small["stored"] is True and small["size"] == 200
    stored = [p for p in (env.settings.paths.data / "attachments").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [b"\xff\xd8" * 100]  # named by hash, never by the sender


def test_a_message_that_fails_to_store_is_quarantined_alone(env_db: Env, monkeypatch) -> None:
    import feedbackd.cases as pipeline  # casework threads through cases.find_thread

    real = pipeline.find_thread

    def failing(conn, msg, *args, **kwargs):  # type: ignore[no-untyped-def]
        if "坏" in msg.subject:
            raise RuntimeError("storage failed for this one message")
        return real(conn, msg, *args, **kwargs)

    monkeypatch.setattr(pipeline, "find_thread", failing)
    env = env_db
    env.mailbox.append(mails.plain(sender="a@qq.example", subject="好的一封"),
                       mails.plain(sender="b@qq.example", subject="坏的一封"),
                       mails.plain(sender="c@qq.example", subject="又一封好的"))
    daemon = Daemon(env.settings)
    intake, _ = daemon.run_once()
    daemon.engine.dispose()
    assert intake.actions == {"new-case": 2, "quarantined": 1}
    assert sorted(c["requester"] for c in cases_json(env)) == ["a@qq.example", "c@qq.example"]
    (row,) = json.loads(env.cli("quarantine", "list", "--json").stdout)
    assert row["stage"] == "store" and "storage failed" in row["reason"] and row["from"] == "b@qq.example"
    monkeypatch.setattr(pipeline, "find_thread", real)
    run_once(env)  # the cursor moved past all three: nothing is processed twice
    assert len(cases_json(env)) == 2


def test_automatic_mail_answering_no_case_is_kept_and_listed(env: Env) -> None:
    env.mailbox.append(mails.out_of_office(to_message_id=None, sender="someone@corp.example"),
                       mails.bounce(original=mails.plain(message_id="not-ours@elsewhere.example")))
    run_once(env)
    assert cases_json(env) == []
    rows = json.loads(env.cli("unmatched", "list", "--json").stdout)
    assert sorted(r["kind"] for r in rows) == ["auto-reply", "bounce"]
    assert any(r["from"] == "someone@corp.example" for r in rows)
    assert "auto-reply" in env.cli("unmatched", "list").stdout


def test_citizen_text_is_escaped_in_the_html_acknowledgement(env: Env) -> None:
    env.mailbox.append(mails.plain(subject='<script>alert("x")</script>路灯', name="<b>张三</b>",
                                   body="<img src=x onerror=alert(1)>请修路灯"))
    run_once(env)
    (ack,) = env.sink.wait_for(1)
    html = ack.message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "<b>张三" not in html
    assert "\n" not in ack.message["Subject"] and "路灯" in ack.message["Subject"]


def test_fetch_batches_are_bounded_by_bytes_as_well_as_count(env: Env) -> None:
    env.reconfigure(extra="")
    text = env.config_path.read_text().replace('folder = "INBOX"', 'folder = "INBOX"\nbatch_bytes = "6KB"')
    env.config_path.write_text(text)
    env.mailbox.append(*[mails.plain(sender=f"s{i}@qq.example", body="路灯不亮。" * 150) for i in range(5)])
    daemon = Daemon(env.settings)
    batches: list[int] = []
    real_fetch = daemon.source._fetch_batch

    def recording(batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        return real_fetch(batch)

    daemon.source._fetch_batch = recording  # type: ignore[method-assign]
    intake, sent = daemon.run_once()
    assert intake.actions == {"new-case": 5} and sent.sent == 5
    assert batches and max(batches) <= 2 and sum(batches) == 5  # each message is ~3 KB
