"""Answering internationalised addresses through a real SMTP server (aiosmtpd on loopback).

A UTF-8 local part goes only with SMTPUTF8, and fails for good, with the reason, where the server
lacks it; an IDN domain alone goes as IDNA and needs nothing; one bad mail never stops the others.
"""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from email import policy
from typing import Any

import aiosmtplib
import pytest

from feedbackd.config import SmtpSettings
from feedbackd.devstack import SmtpSink
from feedbackd.mail.compose import Outgoing, compose
from feedbackd.mail.message import Address
from feedbackd.mail.send import Envelope, SendResult, SmtpPool
from feedbackd.templates import Rendered

ZHANG = "张三@例子.中国"


@pytest.fixture
def utf8_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(smtputf8=True).start()
    yield sink
    sink.stop()


@pytest.fixture
def plain_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def acknowledgement(addr: str, name: str = "张三") -> Outgoing:
    return compose(Rendered("[FB-000001] 已收到", "您好，来信已收到。", "<p>您好</p>"),
                   sender=Address("市民反馈中心", "feedback@city.example"), recipient=Address(name, addr),
                   in_reply_to="q1@qq.example", references=["q1@qq.example"], automatic=True,
                   case_number="FB-000001")


def send(sink: SmtpSink, *envelopes: Envelope) -> dict[int, SendResult]:
    """Send through the daemon's pool; when this returns, the server has answered every mail."""
    pool = SmtpPool(SmtpSettings(host=sink.host, port=sink.port, security="none", timeout="10s", connections=1))

    async def run() -> list[SendResult]:
        try:
            return await pool.send_all(envelopes)
        finally:
            await pool.close()

    results = asyncio.run(run())
    assert len(results) == len(envelopes)
    return {result.key: result for result in results}


def envelope(key: int, out: Outgoing) -> Envelope:
    return Envelope(key, out.mail_from, out.recipient, out.raw)


def test_a_utf8_address_goes_with_smtputf8_where_the_server_offers_it(utf8_sink: SmtpSink) -> None:
    out = acknowledgement(ZHANG)
    assert out.smtputf8 and out.recipient == ZHANG
    assert send(utf8_sink, envelope(1, out))[1].ok
    (got,) = utf8_sink.wait_for(1)
    assert got.rcpt_tos == [ZHANG] and "SMTPUTF8" in got.mail_options
    assert f"To: =?utf-8?b?5byg5LiJ?= <{ZHANG}>\r\n".encode() in got.data  # raw UTF-8 address (RFC 6532)
    msg = email.message_from_string(got.data.decode("utf-8"), policy=policy.SMTPUTF8)
    (to,) = msg["To"].addresses
    assert (to.display_name, to.username, to.domain) == ("张三", "张三", "例子.中国")
    assert msg.get_body(("plain",)).get_content().strip() == "您好，来信已收到。"


def test_a_utf8_address_fails_for_good_with_the_reason_where_the_server_lacks_smtputf8(
        plain_sink: SmtpSink) -> None:
    results = send(plain_sink, envelope(1, acknowledgement(ZHANG)), envelope(2, acknowledgement("li@qq.example")))
    assert not results[1].ok and results[1].permanent
    assert results[1].error == f"recipient {ZHANG} needs SMTPUTF8, which the server does not offer"
    assert results[2].ok  # the next mail on the same session still goes
    assert [r.rcpt_tos for r in plain_sink.received] == [["li@qq.example"]]


def test_a_utf8_sender_is_named_when_it_is_the_one_that_needs_smtputf8(plain_sink: SmtpSink) -> None:
    result = send(plain_sink, Envelope(1, "反馈@city.example", "li@qq.example", b"Subject: x\r\n\r\nx\r\n"))[1]
    assert result.permanent and result.error.startswith("sender 反馈@city.example needs SMTPUTF8")


@pytest.mark.parametrize("given, wire", [("c@bücher.example", "c@xn--bcher-kva.example"),
                                         ("li@例子.中国", "li@xn--fsqu00a.xn--fiqs8s")])
def test_an_idn_domain_alone_goes_as_idna_without_smtputf8(plain_sink: SmtpSink, given: str, wire: str) -> None:
    out = acknowledgement(given, name="Bücher")
    assert not out.smtputf8 and out.recipient == wire and out.raw.isascii()
    assert send(plain_sink, envelope(1, out))[1].ok
    (got,) = plain_sink.wait_for(1)
    assert got.rcpt_tos == [wire] and "SMTPUTF8" not in got.mail_options
    assert email.message_from_bytes(got.data, policy=policy.default)["To"].addresses[0].addr_spec == wire


def test_an_envelope_that_cannot_go_on_the_wire_is_a_permanent_result(utf8_sink: SmtpSink) -> None:
    results = send(utf8_sink, Envelope(1, "feedback@city.example", "", b"x"),
                   Envelope(2, "feedback@city.example", "x@y.example> NOTIFY=NEVER", b"x"),
                   Envelope(3, "feedback@city.example", "x@y.example\r\nRSET", b"x"),
                   Envelope(4, "feedback@city.example", "a b@y.example", b"x"),
                   envelope(5, acknowledgement(ZHANG)))
    assert results[1].permanent and results[1].error == "no usable recipient address"
    for key in (2, 3):  # aiosmtplib would have sent these to x@y.example
        assert results[key].permanent and results[key].error.endswith("would not go on the wire as it is")
    assert results[4].permanent and results[4].error.startswith("cannot be sent: ValueError")
    assert results[5].ok and [r.rcpt_tos for r in utf8_sink.wait_for(1)] == [[ZHANG]]


def test_an_unexpected_error_with_one_mail_becomes_its_result(plain_sink: SmtpSink,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = aiosmtplib.SMTP.sendmail

    async def flaky(self: aiosmtplib.SMTP, sender: str, recipients: list[str], message: bytes, **kw: Any) -> Any:
        if b"boom" in message:
            raise RuntimeError("a bug somewhere")
        return await real(self, sender, recipients, message, **kw)

    monkeypatch.setattr(aiosmtplib.SMTP, "sendmail", flaky)
    results = send(plain_sink, Envelope(1, "f@city.example", "a@qq.example", b"Subject: boom\r\n\r\nx\r\n"),
                   envelope(2, acknowledgement("b@qq.example")))
    assert not results[1].ok and not results[1].permanent
    assert results[1].error == "unexpected RuntimeError: a bug somewhere"
    assert results[2].ok and [r.rcpt_tos for r in plain_sink.wait_for(1)] == [["b@qq.example"]]
