"""Mail as the internet sends it, end to end through Dovecot, the pipeline and the SMTP sink.

Each test is one of the defects reproduced in issue 10: a message that stopped all intake, a
reflector, a stranger in someone else's case, bytes dropped as a duplicate.  Every message ends
as a case or a quarantine entry, and the run goes on to the mail behind it.
"""

from __future__ import annotations

import json
import re
from email import message_from_bytes, message_from_string, policy

import mails
from conftest import Env, run_once
from test_intake import case_json, cases_json


def outbox_json(env: Env) -> list[dict]:
    result = env.cli("outbox", "list", "--json", "--all")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def raw_utf8(sender_header: str, subject: str = "路灯坏了", body: str = "东门路灯坏了。",
             date: str = "Tue, 01 Dec 2026 08:00:00 +0800") -> bytes:
    """A message with raw UTF-8 headers (RFC 6532), as an internationalised client sends it."""
    return (f"From: {sender_header}\r\nTo: feedback@city.example\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\nMessage-ID: <{mails.msgid()}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
            ).encode()


def without_date(raw: bytes) -> bytes:
    return re.sub(rb"(?m)^Date: [^\r\n]*\r\n", b"", raw)


# -- 1: one message stops all intake ------------------------------------------------------------


def test_internationalised_senders_and_absurd_dates_become_cases_and_the_run_goes_on(env: Env) -> None:
    env.mailbox.append(
        raw_utf8("张三 <张三@例子.中国>"),
        raw_utf8("c@bücher.example", subject="Lamp", body="The lamp is out."),
        mails.plain(sender="year9999@qq.example", date=None, headers={"X-Test": "1"}).replace(
            b"Date: ", b"Date: Fri, 31 Dec 9999 23:59:59 -1200\r\nX-Old-Date: ", 1),
        mails.plain(sender="after@qq.example"),
    )
    result = env.cli("run", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    by_requester = {c["requester"]: c for c in cases_json(env)}
    assert set(by_requester) == {"张三@例子.中国", "c@bücher.example", "year9999@qq.example", "after@qq.example"}
    assert by_requester["张三@例子.中国"]["requester_name"] == "张三"
    sent_to = sorted(r for mail in env.sink.received for r in mail.rcpt_tos)
    # The IDN domain alone goes out as IDNA; the sink offers no SMTPUTF8, so the UTF-8 local part
    # is a clear permanent failure in the outbox, never a crash.
    assert sent_to == ["after@qq.example", "c@xn--bcher-kva.example", "year9999@qq.example"]
    failed = [o for o in outbox_json(env) if o["status"] == "failed"]
    assert len(failed) == 1 and "SMTPUTF8" in failed[0]["last_error"]
    assert json.loads(env.cli("quarantine", "list", "--json").stdout) == []


def test_an_answer_that_cannot_be_composed_never_fails_the_intake(env: Env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import feedbackd.stages.answer as answer

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise UnicodeEncodeError("ascii", "张", 0, 1, "composing is broken")

    monkeypatch.setattr(answer, "compose", broken)
    env.reconfigure(extra='[intake]\nmessage_max_size = "3KB"\n')
    env.mailbox.append(mails.plain(sender="a@qq.example"), mails.plain(sender="big@qq.example", body="长" * 2000),
                       mails.plain(sender="b@qq.example"))
    actions = run_once(env)
    assert actions == {"new-case": 2, "quarantined": 1}
    (case, _) = sorted(cases_json(env), key=lambda c: c["requester"])
    events = case_json(env, case["id"])["events"]
    refused = [e for e in events if e["kind"] == "no-acknowledgement"]
    assert refused and "could not compose" in refused[0]["detail"]["reason"]
    assert env.sink.received == []


# -- 3: reflector -------------------------------------------------------------------------------


def test_plus_address_variants_share_one_budget(env: Env) -> None:
    env.mailbox.append(*[mails.plain(sender=f"Victim+{i}@Example.org", subject=f"问题 {i}") for i in range(8)])
    actions = run_once(env)
    assert actions == {"new-case": 8}
    assert len(env.sink.received) == 5  # rate_limit = 5 per hour, for the mailbox behind the variants
    refusals = [e["detail"]["reason"] for c in cases_json(env) for e in case_json(env, c["id"])["events"]
                if e["kind"] == "no-acknowledgement"]
    assert len(refusals) == 3 and all("rate limit" in r for r in refusals)


def test_a_global_budget_caps_automatic_mail_per_hour(env: Env) -> None:
    env.reconfigure(extra="[acknowledgement]\nglobal_rate_limit = 3\n")
    env.mailbox.append(*[mails.plain(sender=f"c{i}@qq.example") for i in range(5)])
    actions = run_once(env)
    assert actions == {"new-case": 5}
    assert len(env.sink.received) == 3
    env.mailbox.append(mails.plain(sender="later@qq.example"))  # the next run still counts this hour
    run_once(env)
    assert len(env.sink.received) == 3 and len(cases_json(env)) == 6


def test_what_we_echo_is_short_whatever_comes_in(env: Env) -> None:
    from email.message import EmailMessage

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = f"{'买便宜药请访问 spam.example ' * 150} <victim@qq.example>"
    msg["To"] = "feedback@city.example"
    msg["Subject"] = "广告 " * 1000
    msg["Message-ID"] = f"<{mails.msgid()}>"
    msg.set_content("垃圾内容 spam.example " * 2000)
    for i in range(300):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream",
                           filename=f"{'很长的附件名' * 30}-{i}.bin")
    env.mailbox.append(msg.as_bytes())
    actions = run_once(env)
    assert actions == {"new-case": 1}
    (ack,) = env.sink.received
    # At most ~600 characters of theirs, twice (text and HTML), base64: 54 KB before, ~11 KB now.
    assert len(ack.data) < 12 * 1024, len(ack.data)
    text = message_from_bytes(ack.data, policy=policy.default).get_body(("plain",)).get_content()
    assert text.count("spam.example") <= 12  # a 40-character name and a 200-character excerpt, not 2,150
    assert len(text) < 1500
    assert "另有 295 个" in text


# -- 4: strangers in someone else's case --------------------------------------------------------


def test_a_stranger_quoting_a_citizens_message_id_opens_a_case_of_their_own(env_db: Env) -> None:
    env = env_db
    first = "her-first@qq.example"
    env.mailbox.append(mails.plain(sender="her@qq.example", message_id=first, headers={"Cc": "friend@qq.example"}))
    run_once(env)
    (hers,) = cases_json(env)
    env.reconfigure()
    env.mailbox.append(
        mails.plain(sender="stranger@evil.example", subject="Re: 路灯", in_reply_to=first, references=[first]),
        mails.plain(sender="friend@qq.example", subject="Re: 路灯", in_reply_to=first, references=[first]),
    )
    actions = run_once(env)
    assert actions == {"new-case": 1, "joined": 1}
    after = {c["requester"]: c for c in cases_json(env)}
    assert after["her@qq.example"]["message_count"] == 2  # the friend she copied joined
    stranger = case_json(env, after["stranger@evil.example"]["id"])
    note = next(e for e in stranger["events"] if e["kind"] == "threading")
    assert note["detail"]["references_case"] == hers["id"]
    her_case = case_json(env, hers["id"])
    assert all(m["from"] != "stranger@evil.example" for m in her_case["messages"])


def test_a_stranger_cannot_reopen_a_resolved_case_by_its_headers(env: Env) -> None:
    from sqlalchemy import update

    from feedbackd.store.db import connect
    from feedbackd.store.records import CASES

    env.mailbox.append(mails.plain(sender="her@qq.example", message_id="hers@qq.example"))
    run_once(env)
    engine = connect(env.settings.database.url)
    with engine.begin() as conn:
        conn.execute(update(CASES).values(status="resolved"))
    engine.dispose()
    env.mailbox.append(mails.plain(sender="stranger@evil.example", in_reply_to="hers@qq.example"))
    run_once(env)
    statuses = {c["requester"]: c["status"] for c in cases_json(env)}
    assert statuses == {"her@qq.example": "resolved", "stranger@evil.example": "new"}


# -- 5: the same Message-ID on different bytes ---------------------------------------------------


def test_different_bytes_under_one_message_id_are_never_dropped(env_db: Env) -> None:
    env = env_db
    first = without_date(mails.plain(sender="her@qq.example", message_id="reused@qq.example", body="第一封"))
    second = without_date(mails.plain(sender="her@qq.example", message_id="reused@qq.example", body="第二封，内容不同"))
    forged = without_date(mails.plain(sender="other@qq.example", message_id="reused@qq.example", body="冒用"))
    env.mailbox.append(first, second, first, forged)
    actions = run_once(env)
    assert actions == {"new-case": 2, "copy": 1, "duplicate": 1}
    by_requester = {c["requester"]: c for c in cases_json(env)}
    hers = case_json(env, by_requester["her@qq.example"]["id"])
    texts = [m["text"] for m in hers["messages"] if m["direction"] == "in"]
    assert texts == ["第一封", "第二封，内容不同"]  # both kept; the true duplicate is skipped
    assert len(env.sink.received) == 2  # one acknowledgement per case, none for the copy
    assert by_requester["other@qq.example"]["message_count"] == 1


def test_an_internationalised_sender_is_answered_with_smtputf8_where_the_server_offers_it(
        mailbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import _env
    from feedbackd.devstack import SmtpSink

    with SmtpSink(smtputf8=True) as sink:
        env = _env(mailbox, sink, f"sqlite:///{tmp_path / 'feedbackd.db'}", tmp_path)
        env.mailbox.append(raw_utf8("张三 <张三@例子.中国>"))
        actions = run_once(env)
        assert actions == {"new-case": 1}
        (ack,) = sink.received
    assert ack.rcpt_tos == ["张三@例子.中国"] and "SMTPUTF8" in ack.mail_options
    parsed = message_from_string(ack.data.decode("utf-8"), policy=policy.SMTPUTF8)  # RFC 6532 headers
    assert parsed["To"].addresses[0].addr_spec == "张三@例子.中国"
    assert f"[{cases_json(env)[0]['id']}]" in parsed["Subject"]


# -- 2: parser bombs ------------------------------------------------------------------------------


def many_parts(count: int, filename: str = "photo.jpg") -> bytes:
    parts = "".join(f"--b\r\nContent-Type: image/jpeg\r\nContent-Disposition: attachment; filename=\"{filename}\"\r\n"
                    f"Content-Transfer-Encoding: base64\r\n\r\n/9j/\r\n" for _ in range(count))
    return (f"From: many@qq.example\r\nTo: feedback@city.example\r\nSubject: parts\r\n"
            f"Message-ID: <{mails.msgid()}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nphotos\r\n{parts}--b--\r\n").encode()


def test_parser_bombs_are_cases_or_quarantined_with_the_reason_and_the_run_goes_on(env: Env) -> None:
    def spaces(count: int) -> bytes:
        return b"From: " + b" " * count + b"x@qq.example\r\nTo: feedback@city.example\r\nSubject: spaces\r\n" \
            b"Message-ID: <" + str(count).encode() + b"@qq.example>\r\n\r\nbody\r\n"

    env.mailbox.append(spaces(200_000), spaces(300_000), many_parts(900), many_parts(8000),
                       mails.plain(sender="after@qq.example"))
    actions = run_once(env)
    assert actions == {"new-case": 3, "quarantined": 2}
    header, parts = json.loads(env.cli("quarantine", "list", "--json").stdout)
    assert header["stage"] == "limits" and "max_header_bytes" in header["reason"]
    assert parts["stage"] == "limits" and "max_parts" in parts["reason"] and parts["from"] == "many@qq.example"
    by_requester = {c["requester"]: c for c in cases_json(env)}
    assert {"x@qq.example", "many@qq.example", "after@qq.example"} <= set(by_requester)
    names = [a["filename"] for a in case_json(env, by_requester["many@qq.example"]["id"])["messages"][0]["attachments"]]
    assert len(names) == 900 and len(set(names)) == 900 and names[:3] == ["photo.jpg", "photo-2.jpg", "photo-3.jpg"]
