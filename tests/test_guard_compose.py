"""Pure logic: the loop guard, case numbers, and what outgoing mail looks like."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

import mails
from feedbackd.cases import CaseNumbers
from feedbackd.config import CaseSettings
from feedbackd.mail import guard
from feedbackd.mail.compose import clean_header_text, compose, wire_address
from feedbackd.mail.message import Address
from feedbackd.mail.parse import parse_message
from feedbackd.templates import Rendered

OWN = frozenset({"feedback@city.example"})


def verdict(raw: bytes) -> tuple[str, str | None]:
    msg = parse_message(raw)
    v = guard.classify(msg)
    return v.kind, guard.reply_refusal(msg, v, OWN)


def test_plain_mail_from_a_person_may_be_answered() -> None:
    assert verdict(mails.plain()) == ("mail", None)


@pytest.mark.parametrize("headers, kind", [
    ({"Auto-Submitted": "auto-replied"}, "auto-reply"),
    ({"Auto-Submitted": "auto-generated"}, "bulk"),
    ({"Auto-Submitted": "auto-notified"}, "bulk"),
    ({"X-Autoreply": "yes"}, "auto-reply"),
    ({"X-Autorespond": "yes"}, "auto-reply"),
    ({"Return-Path": "<>"}, "auto-reply"),
    ({"Precedence": "bulk"}, "bulk"),
    ({"Precedence": "junk"}, "bulk"),
    ({"Precedence": "list"}, "bulk"),
    ({"List-Id": "<a.lists.example>"}, "bulk"),
])
def test_automatic_mail_is_never_answered(headers: dict, kind: str) -> None:
    got_kind, refusal = verdict(mails.plain(headers=headers))
    assert got_kind == kind and refusal


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.example", "postmaster@mx.example",
                                    "feedback@city.example", "no-reply@shop.example"])
def test_senders_that_must_not_be_answered(sender: str) -> None:
    assert verdict(mails.plain(sender=sender, name=""))[1]


def test_a_dsn_is_a_bounce_and_names_the_message_it_returns() -> None:
    original = mails.plain(message_id="ours@city.example")
    raw = mails.bounce(original=original)
    assert verdict(raw)[0] == "bounce"
    assert "ours@city.example" in guard.quoted_message_ids(raw)


def test_case_numbers() -> None:
    numbers = CaseNumbers(CaseSettings(prefix="FB", digits=6))
    assert numbers.format(123) == "FB-000123"
    assert numbers.in_subject("回复：[FB-000123] 已收到 [fb-7]") == [123, 7]
    assert numbers.parse("FB-000123") == numbers.parse("fb123") == numbers.parse("123") == 123
    assert numbers.parse("XY-1") is None
    other = CaseNumbers(CaseSettings(prefix="SQ", digits=4))
    assert other.in_subject("[FB-000123]") == [] and other.format(5) == "SQ-0005"


def test_composed_mail_is_seven_bit_threaded_and_addressed_to_one_person() -> None:
    out = compose(Rendered("[FB-000001] 已收到\r\nBcc: evil@x.example", "正文：您好", "<p>您好</p>"),
                  sender=Address("市民反馈中心", "feedback@city.example"),
                  recipient=Address("张三", "zhang.san@qq.example"),
                  in_reply_to="a@b", references=["r1@b", "a@b"], automatic=True, case_number="FB-000001")
    assert all(byte < 128 for byte in out.raw)
    msg = message_from_bytes(out.raw, policy=policy.default)
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert msg["Subject"].startswith("[FB-000001] 已收到")
    assert msg["In-Reply-To"] == "<a@b>" and msg["References"] == "<r1@b> <a@b>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] == f"<{out.message_id}>"
    assert msg.get_body(("plain",)).get_content().strip() == "正文：您好"
    assert out.recipient == "zhang.san@qq.example"


def test_header_text_is_one_bounded_line() -> None:
    assert clean_header_text("a\r\nb\tc" + "长" * 500, 20) == "a b c" + "长" * 14 + "…"


@pytest.mark.parametrize("given, wire", [
    ("zhang.san@qq.example", "zhang.san@qq.example"),
    ("c@bücher.example", "c@xn--bcher-kva.example"),  # an IDN domain alone: IDNA, no SMTPUTF8 needed
    ("li@例子.中国", "li@xn--fsqu00a.xn--fiqs8s"),
    ("张三@例子.中国", "张三@例子.中国"),  # a UTF-8 local part needs SMTPUTF8 anyway: the domain as written
    ("a..b@docomo.example", '"a..b"@docomo.example'),  # not a dot-atom: quoted, the same mailbox
    ('a"b@x.example', '"a\\"b"@x.example'),
    ("a@b@x.example", '"a@b"@x.example'),
    ("a@" + "例" * 70 + ".中国", "a@" + "例" * 70 + ".中国"),  # the idna codec refuses a label over 63 octets
    ("nobody", ""), ("@x.example", ""), ("a@", ""), ("a b@x.example", ""), ("a@x_y.example", ""),
    ("a@x..example", ""), ("=?utf-8?q?x?=@x.example", ""), ("a\r\nBcc: e@x.example", ""),
    ("a@\ud800.example", ""), ("a" * 250 + "@x.example", ""),
])
def test_wire_address_converts_but_never_changes_the_mailbox(given: str, wire: str) -> None:
    assert wire_address(given) == wire
