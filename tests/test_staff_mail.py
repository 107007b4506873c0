"""The staff loop's mail, read back as a mail client reads it (``policy.default``).

Staff mail: one recipient, From the feedback address, Reply-To the case's signed reply address,
``Auto-Submitted`` set, the citizen's address masked unless configured.  Citizen mail: to the
requester only, never a Reply-To, never a staff member's address or name, ``Auto-Submitted`` only
on a bare status notice.  Both bounded whatever comes in.
"""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings
from feedbackd.mail.compose import Outgoing
from feedbackd.routing import load_ruleset
from feedbackd.staff.address import reply_address
from feedbackd.staff.commands import help_text
from feedbackd.staff.mail import EVENTS, StaffMail, masked, thread_root
from feedbackd.templates import Rendered, Templates

REPO = Path(__file__).resolve().parents[1]
SECRET = "a-staff-secret-of-some-length"
FEEDBACK = "feedback@city.example"
STAFF = "wang.wei@staff.city.example"  # a staff member: must never reach a citizen
STAFF_NAME = "王伟"
CITIZEN = "zhang.san@qq.example"
REPLY = reply_address(FEEDBACK, SECRET, "FB-000123")
ROOT = "case-FB-000123@city.example"
LANGUAGES = ["zh-CN", "en"]


def settings(**staff: Any) -> Settings:
    return Settings.model_validate({
        "mailbox": {"address": FEEDBACK, "name": "市民反馈中心"},
        "imap": {"host": "127.0.0.1", "username": "feedback"}, "smtp": {"host": "127.0.0.1"},
        "staff": {"secret": SECRET, **staff},
    })


def staff_mail(**staff: Any) -> StaffMail:
    config = settings(**staff)
    return StaffMail(config, Templates(REPO / "templates"), CaseNumbers(config.cases))


def case(**changes: Any) -> dict[str, Any]:
    return {"id": 123, "subject": "小区路灯坏了", "kind": "problem", "status": "open", "priority": "urgent",
            "department": "general", "assignee": None, "requester": CITIZEN, "requester_name": "张三",
            "language": "zh-CN", "first_response_due": datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
            "resolution_due": None, **changes}


def read(out: Outgoing) -> EmailMessage:
    assert out.raw.isascii() and not out.smtputf8
    msg = email.message_from_bytes(out.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage) and msg.defects == []
    return msg


def everything(msg: EmailMessage) -> str:
    """Every header and every text part, decoded: what anyone could read in the mail."""
    parts = [f"{name}: {value}" for name, value in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            assert isinstance(part, EmailMessage)
            parts.append(part.get_content().replace("\r\n", "\n"))
    return "\n".join(parts)


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content()).replace("\r\n", "\n")


def one_address(msg: EmailMessage, header: str) -> tuple[str, str]:
    values = msg.get_all(header) or []
    assert len(values) == 1
    (address,) = msg[header].addresses
    return address.display_name, address.addr_spec


def notice(mail: StaffMail, event: str = "new-case", language: str = "zh-CN", **kw: Any) -> tuple[Rendered, Outgoing]:
    args: dict[str, Any] = {"event": event, "to": "desk@city.example", "text": "路灯坏了三天了。\n请尽快修理。",
                            "subject": "小区路灯坏了", "attachments": [{"filename": "路灯.jpg", "size": 123456}],
                            "rules": ["路灯 → general"], "from_name": "张三", "from_addr": CITIZEN,
                            "language": language, **kw}
    return mail.notice(case(), **args)


@pytest.mark.parametrize("address, shown", [
    ("zhang.san@qq.com", "zh***@qq.com"), ("ab@x.example", "a***@x.example"), ("a@x.example", "a***@x.example"),
    ("张三丰@例子.中国", "张三***@例子.中国"), ("no address", "***"), ("@x.example", "***"), ("", "***"),
])
def test_masked_keeps_the_domain_and_two_characters(address: str, shown: str) -> None:
    assert masked(address) == shown


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("event", sorted(EVENTS))
def test_a_notice_goes_to_one_staff_member_and_answers_come_back_to_the_case(event: str, language: str) -> None:
    rendered, out = notice(staff_mail(), event, language, ruleset=load_ruleset(REPO / "rules"))
    msg = read(out)
    assert out.recipient == "desk@city.example" and out.mail_from == FEEDBACK
    assert one_address(msg, "To") == ("", "desk@city.example")
    assert one_address(msg, "From") == ("市民反馈中心", FEEDBACK)
    assert one_address(msg, "Reply-To")[1] == REPLY
    assert msg["Cc"] is None and msg["Bcc"] is None
    assert msg["Subject"].startswith("[FB-000123] ") and msg["Subject"] == rendered.subject
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Feedbackd-Case"] == "FB-000123"
    assert msg["In-Reply-To"] == f"<{ROOT}>" and msg["References"] == f"<{ROOT}>"
    text = text_of(msg)
    assert text == rendered.text and msg.get_content_type() == "text/plain"
    for expected in ["FB-000123", "zh***@qq.example", "张三", "路灯.jpg", "121 KB", "路灯 → general", REPLY,
                     "2026-12-01", "综合受理组", "紧急", help_text(language).splitlines()[1].strip()]:
        assert expected in text, expected
    assert CITIZEN not in everything(msg)


def test_notices_of_a_case_thread_under_one_root_and_each_has_its_own_id() -> None:
    mail = staff_mail()
    first = read(notice(mail)[1])
    later = read(notice(mail, "follow-up", in_reply_to="c2@qq.example", references=["c1@qq.example"])[1])
    assert first["Message-ID"] != later["Message-ID"]
    assert later["In-Reply-To"] == "<c2@qq.example>"
    assert later["References"] == f"<{ROOT}> <c1@qq.example>"
    assert thread_root("fb-000123", FEEDBACK) == ROOT


def test_the_citizen_address_is_shown_when_configured() -> None:
    text = text_of(read(notice(staff_mail(show_citizen_address=True))[1]))
    assert f"<{CITIZEN}>" in text and "zh***" not in text


def test_a_notice_without_rules_names_keys_and_leaves_an_empty_message_out() -> None:
    rendered, out = notice(staff_mail(), "moved", "en", text="", attachments=[], rules=[])
    assert "Priority: urgent" in rendered.text and "Department: general" in rendered.text
    assert "The citizen's message" not in rendered.text and "Attachments" not in rendered.text
    assert read(out)["Subject"] == "[FB-000123] Case moved to you: 小区路灯坏了"


def test_a_huge_citizen_text_and_hostile_names_make_a_bounded_notice() -> None:
    attachments = [{"filename": "x" * 5000 + ".jpg", "size": 10**9}] * 500
    rendered, out = notice(staff_mail(), text="长" * 2_000_000 + "\nEND", subject="s\r\nBcc: evil@x.example" * 1000,
                           from_name="张三\r\nBcc: evil@x.example" * 100, attachments=attachments,
                           rules=["r" * 9999] * 99)
    msg = read(out)
    assert len(out.raw) < 150_000
    assert msg["Bcc"] is None and "END" not in rendered.text
    assert "以下省略" in rendered.text and "另有 480 个附件" in rendered.text and "另有 79 条" in rendered.text
    assert len(msg["Subject"]) <= 250


def test_help_answers_the_staff_member_with_the_errors_and_the_commands() -> None:
    errors = ["第 1 行「#状态 完成」：未知的状态", "line 2 '#frobnicate': unknown command"]
    for language in LANGUAGES:
        _, out = staff_mail().help(case(), to=STAFF, errors=errors, language=language,
                                          in_reply_to="r1@staff.city.example")
        msg = read(out)
        assert one_address(msg, "To")[1] == STAFF and one_address(msg, "From")[1] == FEEDBACK
        assert one_address(msg, "Reply-To")[1] == REPLY
        assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"
        assert msg["In-Reply-To"] == "<r1@staff.city.example>"
        assert msg["References"] == f"<{ROOT}> <r1@staff.city.example>"
        assert "[FB-000123]" in msg["Subject"]
        text = text_of(msg)
        assert all(error in text for error in errors) and help_text(language).strip() in text


def test_staff_mail_needs_staff_mail_on_but_citizen_mail_does_not() -> None:
    config = settings().model_copy(update={"staff": None})
    mail = StaffMail(config, Templates(REPO / "templates"), CaseNumbers(config.cases))
    with pytest.raises(RuntimeError):
        notice(mail)
    with pytest.raises(RuntimeError):
        mail.help(case(), to=STAFF, errors=["x"])
    assert mail.to_citizen(case(), purpose="progress", text="", in_reply_to=None, references=[])[1].recipient == CITIZEN


STAFF_ANSWER = f"您好，已安排维修。\n如有疑问请联系 {STAFF}，{STAFF_NAME.upper()}\n<script>alert(1)</script>"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("purpose, text, status, automatic", [
    pytest.param("progress", STAFF_ANSWER, "in-progress", None, id="relayed-answer"),
    pytest.param("progress", "", "waiting", "auto-generated", id="bare-waiting"),
    pytest.param("progress", "", "closed", "auto-generated", id="bare-closed"),
    pytest.param("result", STAFF_ANSWER, "resolved", None, id="result"),
    pytest.param("satisfaction-thanks", "", None, "auto-replied", id="thanks"),
])
def test_citizen_mail_goes_to_the_requester_alone_and_names_no_staff(
        language: str, purpose: str, text: str, status: str | None, automatic: str | None) -> None:
    rendered, out = staff_mail().to_citizen(
        case(language=language, status="resolved"), purpose=purpose, text=text, in_reply_to="c1@qq.example",
        references=["c0@qq.example", "c1@qq.example"], status=status, conceal_words=[STAFF, STAFF_NAME], score=2)
    msg = read(out)
    assert out.recipient == CITIZEN and one_address(msg, "To") == ("张三", CITIZEN)
    assert one_address(msg, "From") == ("市民反馈中心", FEEDBACK)
    assert msg["Reply-To"] is None and msg["Cc"] is None and msg["Bcc"] is None
    assert msg["Subject"] == rendered.subject and rendered.subject.startswith("[FB-000123] ")
    assert ("小区路灯坏了" in rendered.subject) == (purpose != "satisfaction-thanks")
    assert msg["Auto-Submitted"] == automatic and msg["X-Auto-Response-Suppress"] == "All"
    assert msg["In-Reply-To"] == "<c1@qq.example>" and msg["References"] == "<c0@qq.example> <c1@qq.example>"
    seen = everything(msg)
    assert "staff.city.example" not in seen and "wang.wei" not in seen and STAFF_NAME not in seen
    assert "+FB-000123" not in seen  # nor the staff reply address
    html = msg.get_body(("html",))
    assert html is None or "<script>" not in html.get_content()
    if text:
        assert "已安排维修" in text_of(msg) and "<script>" in text_of(msg)
    if purpose == "result":
        assert ("1-5" in seen or "5 非常满意" in seen or "5 very satisfied" in seen) and "14" in seen
    assert rendered.text == text_of(msg)


def test_a_bare_status_notice_names_the_status_in_the_citizen_language() -> None:
    mail = staff_mail()
    zh = mail.to_citizen(case(), purpose="progress", text="", in_reply_to=None, references=[], status="waiting")[0]
    en = mail.to_citizen(case(language="en"), purpose="progress", text="", in_reply_to=None, references=[],
                         status="in-progress")[0]
    assert "等待您补充信息" in zh.text and "being handled" in en.text
    assert zh.subject.startswith("[FB-000123] 您的反馈有新进展") and en.subject.startswith("[FB-000123] News")


def test_a_huge_staff_answer_makes_a_bounded_citizen_mail() -> None:
    rendered, out = staff_mail().to_citizen(case(), purpose="result", text="答" * 3_000_000 + "END",
                                            in_reply_to=None, references=[])
    assert len(out.raw) < 250_000 and "END" not in rendered.text and "以下省略" in rendered.text


def test_unknown_events_and_purposes_are_refused() -> None:
    mail = staff_mail()
    with pytest.raises(ValueError):
        notice(mail, "lunch")
    with pytest.raises(ValueError):
        mail.to_citizen(case(), purpose="gossip", text="", in_reply_to=None, references=[])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", ["staff-notice", "staff-help", "progress", "result", "satisfaction-thanks"])
def test_every_template_is_written_in_both_languages(name: str, language: str) -> None:
    assert Templates(REPO / "templates").exists_exactly(name, language)
