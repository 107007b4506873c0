"""The staff loop end to end: notice → staff reply from a real client's shape → the citizen hears.

Everything goes through Dovecot (IMAP APPEND), the pipeline and the SMTP sink; the citizen's and
the staff's mail are read back from the sink as their clients would see them.
"""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

import mails
from conftest import Env, run_once
from feedbackd.devstack import Received
from test_intake import case_json, cases_json

SECRET = "0123456789abcdef0123456789abcdef"
CITIZEN = "zhang.san@qq.example"
DESK = ["desk@city.example", "desk2@city.example"]


@pytest.fixture
def staff_env(env: Env) -> Env:
    env.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\n')
    return env




def parsed(mail: Received) -> EmailMessage:
    msg = message_from_bytes(mail.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(mail: Received) -> str:
    body = parsed(mail).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def to(env: Env, address: str) -> list[Received]:
    return [m for m in env.sink.received if m.rcpt_tos == [address]]


def open_case(env: Env, **kwargs: object) -> tuple[dict, Received]:
    """A citizen writes; returns the case and the notice its first staff member got."""
    env.mailbox.append(mails.plain(**kwargs))  # type: ignore[arg-type]
    assert run_once(env) == {"new-case": 1}
    (case,) = cases_json(env)
    (notice,) = to(env, DESK[0])
    return case, notice


def staff_reply(notice: Received, body: str, *, sender: str = DESK[0], name: str = "综合受理组 小王",
                subject: str | None = None, headers: dict[str, str] | None = None) -> bytes:
    msg = parsed(notice)
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    return mails.plain(sender=sender, name=name, to=reply_to, subject=subject or f"回复：{msg['Subject']}",
                       body=body, in_reply_to=msg["Message-ID"].strip("<>"), headers=headers)


QQ_QUOTE = ("\n\n------------------&nbsp;原始邮件&nbsp;------------------\n".replace("&nbsp;", " ")
            + "发件人: \"市民反馈中心\"<feedback@city.example>;\n发送时间: 2026年12月1日(星期二) 上午9:00\n"
              "收件人: \"desk\"<desk@city.example>;\n主题: [FB-000001] 小区路灯不亮\n\n"
              f"市民 {CITIZEN} 反映：东门的路灯坏了。\n")
OUTLOOK_QUOTE = ("\n\n________________________________\nFrom: Feedback <feedback@city.example>\n"
                 "Sent: Tuesday, December 1, 2026 9:00 AM\nTo: desk@city.example\nSubject: [FB-000001]\n\n"
                 "quoted text that must not reach the citizen\n")


def test_a_new_case_is_mailed_to_its_department_with_a_signed_reply_address(staff_env: Env) -> None:
    case, notice = open_case(staff_env)
    msg = parsed(notice)
    assert to(staff_env, DESK[1])  # every staff address of the department (no assignee)
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith(f"feedback+{case['id']}.") and reply_to.endswith("@city.example")
    assert f"[{case['id']}]" in msg["Subject"] and msg["From"].addresses[0].addr_spec == "feedback@city.example"
    assert msg["Auto-Submitted"] and msg["Auto-Submitted"] != "no"
    text = text_of(notice)
    assert "路灯" in text and CITIZEN not in text and "zh***@qq.example" in text  # masked by default
    assert "#resolve" in text or "#办结" in text  # the command help


def test_a_staff_answer_reaches_the_citizen_from_the_feedback_address_without_quotes(staff_env: Env) -> None:
    case, notice = open_case(staff_env)
    staff_env.mailbox.append(staff_reply(notice, "您好，我们已安排维修人员明天上午到场。" + QQ_QUOTE))
    assert run_once(staff_env) == {"staff-reply": 1}
    answers = [m for m in to(staff_env, CITIZEN) if "维修人员" in text_of(m)]
    (answer,) = answers
    msg = parsed(answer)
    assert msg["From"].addresses[0].addr_spec == "feedback@city.example" and msg["Reply-To"] is None
    assert f"[{case['id']}]" in msg["Subject"]
    body = text_of(answer)
    assert "原始邮件" not in body and "desk@city.example" not in body and "小王" not in body
    assert "desk@city.example" not in answer.data.decode("ascii", "replace")
    shown = case_json(staff_env, case["id"])
    assert shown["status"] == "in-progress"
    assert any(e["actor"] == DESK[0] for e in shown["events"])
    # the citizen's reply to that answer comes back to the case and is forwarded to staff
    staff_env.mailbox.append(mails.plain(subject=f"Re: {msg['Subject']}", body="好的，谢谢！",
                                         in_reply_to=msg["Message-ID"].strip("<>")))
    before = len(to(staff_env, DESK[0]))
    assert run_once(staff_env) == {"joined": 1}
    forwarded = to(staff_env, DESK[0])[before:]
    assert forwarded and "好的，谢谢" in text_of(forwarded[0])


STATUS_COMMANDS = [("#status waiting", "waiting"), ("#状态 等待补充", "waiting"),
                   ("#status in-progress", "in-progress"), ("#状态 处理中", "in-progress"),
                   ("#close", "closed"), ("#关闭", "closed")]


@pytest.mark.parametrize(("command", "status"), STATUS_COMMANDS)
def test_status_commands_in_both_languages(staff_env: Env, command: str, status: str) -> None:
    case, notice = open_case(staff_env)
    staff_env.mailbox.append(staff_reply(notice, f"{command}\n\n请补充具体位置。" + OUTLOOK_QUOTE))
    run_once(staff_env)
    assert case_json(staff_env, case["id"])["status"] == status


def test_note_stays_internal_and_resolve_sends_the_result_with_the_satisfaction_question(staff_env: Env) -> None:
    case, notice = open_case(staff_env)
    staff_env.mailbox.append(staff_reply(notice, "#备注\n内部：已联系物业。"))
    run_once(staff_env)
    assert len(to(staff_env, CITIZEN)) == 1  # only the acknowledgement
    staff_env.mailbox.append(staff_reply(notice, "#办结\n路灯已于今天修复。"))
    run_once(staff_env)
    result = to(staff_env, CITIZEN)[-1]
    body = text_of(result)
    assert "路灯已于今天修复" in body and "满意" in body
    assert case_json(staff_env, case["id"])["status"] == "resolved"
    staff_env.mailbox.append(mails.plain(subject=f"Re: {parsed(result)['Subject']}", body="满意\n\n谢谢你们",
                                         in_reply_to=parsed(result)["Message-ID"].strip("<>")))
    run_once(staff_env)
    shown = case_json(staff_env, case["id"])
    assert shown["satisfaction"]["score"] == 5 and shown["status"] == "resolved"


def test_an_unsatisfied_citizen_reopens_the_case_and_the_lead_hears(staff_env: Env) -> None:
    case, notice = open_case(staff_env)
    staff_env.mailbox.append(staff_reply(notice, "#resolve\nThe lamp was replaced."))
    run_once(staff_env)
    result = to(staff_env, CITIZEN)[-1]
    staff_env.mailbox.append(mails.plain(subject=f"Re: {parsed(result)['Subject']}", body="不满意，还是不亮。",
                                         in_reply_to=parsed(result)["Message-ID"].strip("<>")))
    run_once(staff_env)
    shown = case_json(staff_env, case["id"])
    assert shown["satisfaction"]["score"] == 1 and shown["status"] == "open"
    assert to(staff_env, "desk-lead@city.example")


def test_a_bad_command_relays_nothing_and_answers_the_staff_member_with_help(staff_env: Env) -> None:
    _case, notice = open_case(staff_env)
    staff_env.mailbox.append(staff_reply(notice, "#frobnicate now\n这段话不应该发给市民。"))
    run_once(staff_env)
    assert all("不应该发给市民" not in text_of(m) for m in to(staff_env, CITIZEN))
    help_mail = to(staff_env, DESK[0])[-1]
    assert "frobnicate" in text_of(help_mail)


def test_assign_and_move(staff_env: Env) -> None:
    case, notice = open_case(staff_env)
    staff_env.mailbox.append(staff_reply(notice, "#指派 desk2@city.example\n#优先级 high"))
    run_once(staff_env)
    shown = case_json(staff_env, case["id"])
    assert shown["assignee"] == "desk2@city.example" and shown["priority"] == "high"
    staff_env.mailbox.append(staff_reply(notice, "#转办 quality"))
    run_once(staff_env)
    assert case_json(staff_env, case["id"])["department"] == "quality"
    assert to(staff_env, "quality@city.example")


@pytest.mark.parametrize("forgery", ["display-name", "not-staff", "wrong-signature", "other-case"])
def test_forged_staff_replies_never_act_as_staff(staff_env: Env, forgery: str) -> None:
    case, notice = open_case(staff_env)
    reply_to = parsed(notice)["Reply-To"].addresses[0].addr_spec
    body = "#办结\n伪造的处理结果。"
    if forgery == "display-name":
        raw = mails.plain(sender="evil@attacker.example", name="desk@city.example", to=reply_to, body=body)
    elif forgery == "not-staff":
        raw = mails.plain(sender="evil@attacker.example", to=reply_to, body=body)
    elif forgery == "wrong-signature":
        raw = mails.plain(sender=DESK[0], to=reply_to.replace(".", ".x", 1), body=body)
    else:
        signature = reply_to.split("@")[0].rsplit(".", 1)[1]  # this case's signature on another case's number
        raw = mails.plain(sender=DESK[0], to=f"feedback+FB-999999.{signature}@city.example", body=body)
    staff_env.mailbox.append(raw)
    run_once(staff_env)
    shown = case_json(staff_env, case["id"])
    assert shown["status"] == "new"
    assert all("伪造" not in text_of(m) for m in to(staff_env, CITIZEN))
    if forgery != "other-case":
        assert any(e["kind"] == "staff-claim-failed" for e in shown["events"])


def test_authentication_results_are_required_when_configured(staff_env: Env) -> None:
    staff_env.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\nrequire_authentication = true\n'
                                 'authserv_id = "mx.city.example"\n')
    case, notice = open_case(staff_env)
    forged = staff_reply(notice, "#办结\n伪造。", headers={
        "Authentication-Results": "mx.city.example; dkim=fail header.d=city.example; spf=fail"})
    staff_env.mailbox.append(forged)
    run_once(staff_env)
    assert case_json(staff_env, case["id"])["status"] == "new"
    good = staff_reply(notice, "#办结\n已修复。", headers={
        "Authentication-Results": "mx.city.example; dkim=pass header.d=city.example; spf=pass "
                                  "smtp.mailfrom=desk@city.example"})
    staff_env.mailbox.append(good)
    run_once(staff_env)
    assert case_json(staff_env, case["id"])["status"] == "resolved"


def test_a_late_reply_to_a_resolved_case_opens_a_linked_one(staff_env: Env) -> None:
    from sqlalchemy import update

    from feedbackd.store.db import connect
    from feedbackd.store.models import utcnow
    from feedbackd.store.records import CASES

    case, notice = open_case(staff_env)
    staff_env.mailbox.append(staff_reply(notice, "#resolve\n已修复。"))
    run_once(staff_env)
    result = parsed(to(staff_env, CITIZEN)[-1])
    engine = connect(staff_env.settings.database.url)
    from datetime import timedelta

    with engine.begin() as conn:
        conn.execute(update(CASES).values(resolved_at=utcnow() - timedelta(days=30), awaiting_satisfaction=False))
    engine.dispose()
    staff_env.mailbox.append(mails.plain(subject=f"Re: {result['Subject']}", body="又坏了。",
                                         in_reply_to=result["Message-ID"].strip("<>")))
    assert run_once(staff_env) == {"new-case": 1}
    newest = cases_json(staff_env)[0]
    assert newest["id"] != case["id"] and case_json(staff_env, newest["id"])["linked_case"] == case["id"]


def test_admins_act_from_the_shell(staff_env: Env) -> None:
    case, _notice = open_case(staff_env)
    result = staff_env.cli("cases", "reply", case["id"], "--text", "我们正在处理。")
    assert result.returncode == 0, result.stderr
    result = staff_env.cli("cases", "resolve", case["id"], "--text", "已处理完毕。")
    assert result.returncode == 0, result.stderr
    shown = json.loads(staff_env.cli("cases", "show", case["id"], "--json").stdout)
    assert shown["status"] == "resolved" and any(e["actor"] == "admin" for e in shown["events"])
    assert staff_env.cli("run", "--once").returncode == 0
    texts = [text_of(m) for m in to(staff_env, CITIZEN)]
    assert any("我们正在处理" in t for t in texts) and any("已处理完毕" in t for t in texts)
