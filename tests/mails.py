"""Builders for the mail the tests deliver: shaped like what real clients send."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime


def msgid(domain: str = "mail.example") -> str:
    return f"{uuid.uuid4().hex}@{domain}"


def _encoded(text: str, charset: str) -> str:
    return Header(text, charset).encode() if not text.isascii() else text


def plain(
    *,
    sender: str = "zhang.san@qq.example",
    name: str = "张三",
    subject: str = "小区路灯不亮",
    body: str = "您好，我们小区东门的路灯已经坏了一个星期，晚上很不安全，请尽快维修。",
    to: str = "feedback@city.example",
    charset: str = "utf-8",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
) -> bytes:
    """A single-part text message, body base64 in the given charset (as QQ Mail and 163 do)."""
    mid = message_id if message_id is not None else msgid(sender.rpartition("@")[2])
    lines = [
        f"From: {_encoded(name, charset)} <{sender}>" if name else f"From: {sender}",
        f"To: {to}",
        f"Subject: {_encoded(subject, charset)}",
        f"Date: {format_datetime(date or datetime.now(UTC))}",
        "MIME-Version: 1.0",
        f"Content-Type: text/plain; charset={charset}",
        "Content-Transfer-Encoding: base64",
    ]
    if mid:
        lines.append(f"Message-ID: <{mid}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        lines.append("References: " + " ".join(f"<{r}>" for r in references))
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    payload = base64.encodebytes(body.encode(charset)).decode("ascii")
    return ("\r\n".join(lines) + "\r\n\r\n" + payload.replace("\n", "\r\n")).encode("ascii")


def html_only(*, sender: str = "li.si@163.example", name: str = "李四", subject: str = "垃圾清运不及时",
              html: str = "<html><body><div>小区垃圾<b>三天</b>没有清运了。</div><div>请尽快处理！</div>"
                          "</body></html>",
              charset: str = "gbk", message_id: str | None = None) -> bytes:
    mid = message_id or msgid("163.example")
    head = (f"From: {_encoded(name, charset)} <{sender}>\r\nTo: feedback@city.example\r\n"
            f"Subject: {_encoded(subject, charset)}\r\nMessage-ID: <{mid}>\r\n"
            f"Date: {format_datetime(datetime.now(UTC))}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/html; charset={charset}\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    return head.encode("ascii") + base64.encodebytes(html.encode(charset)).replace(b"\n", b"\r\n")


def with_attachment(*, sender: str = "wang.wu@gmail.example", name: str = "王五",
                    subject: str = "噪音扰民（附照片）", body: str = "夜里工地施工噪音很大，附上照片。",
                    filename: str = "现场照片.jpg", data: bytes = b"\xff\xd8\xff\xe0fakejpeg" * 100) -> bytes:
    from email.message import EmailMessage
    from email.policy import SMTP

    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "feedback@city.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{msgid('gmail.example')}>"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content(body)
    msg.add_attachment(data, maintype="image", subtype="jpeg", filename=filename)
    return msg.as_bytes()


def english(**kwargs: object) -> bytes:
    defaults: dict[str, object] = dict(sender="john.smith@outlook.example", name="John Smith",
                                       subject="Broken street light on Elm Road",
                                       body="Hello, the street light outside number 12 Elm Road has been "
                                            "out for a week. It is dangerous at night. Please fix it.")
    defaults.update(kwargs)
    return plain(**defaults)  # type: ignore[arg-type]


def out_of_office(*, to_message_id: str | None, sender: str = "zhang.san@qq.example",
                  legacy: bool = False) -> bytes:
    headers = {"X-Autoreply": "yes"} if legacy else {"Auto-Submitted": "auto-replied"}
    return plain(sender=sender, subject="自动回复：我正在休假", body="您好，我正在休假，回来后回复您。",
                 in_reply_to=to_message_id, references=[to_message_id] if to_message_id else None,
                 headers=headers)


def bounce(*, original: bytes, mta: str = "mx.qq.example") -> bytes:
    """A DSN (multipart/report) returning the original headers, as Postfix sends it."""
    head = original.split(b"\r\n\r\n", 1)[0]
    boundary = uuid.uuid4().hex
    return (
        f"From: MAILER-DAEMON@{mta} (Mail Delivery System)\r\n"
        f"To: feedback@city.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{msgid(mta)}>\r\nDate: {format_datetime(datetime.now(UTC))}\r\n"
        f"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is the mail system. Your message could not "
        f"be delivered.\r\n\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {mta}\r\n\r\nFinal-Recipient: rfc822; nobody@qq.example\r\nAction: failed\r\n"
        f"Status: 5.1.1\r\n\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ).encode("ascii") + head + f"\r\n\r\n--{boundary}--\r\n".encode("ascii")
