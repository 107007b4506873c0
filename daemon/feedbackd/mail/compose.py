"""Building outgoing mail: one recipient, our own Message-ID, threading headers, 7-bit safe.

Only the one addressee ever appears in the headers: never another citizen's address, and never
the Cc list of the mail we answer.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid

from feedbackd.mail.message import Address
from feedbackd.templates import Rendered

MAX_REFERENCES = 20


@dataclass(frozen=True)
class Outgoing:
    message_id: str  # without angle brackets
    mail_from: str  # envelope sender
    recipient: str  # envelope recipient, the only address in To
    raw: bytes


def new_message_id(our_address: str) -> str:
    domain = our_address.rpartition("@")[2] or "feedbackd.invalid"
    return make_msgid(idstring="fb", domain=domain)[1:-1]


def clean_header_text(value: str, limit: int = 200) -> str:
    """One line, no control characters, bounded: citizen text may go into a Subject."""
    text = "".join(ch if ch.isprintable() else " " for ch in value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compose(
    rendered: Rendered,
    *,
    sender: Address,
    recipient: Address,
    in_reply_to: str | None,
    references: list[str],
    automatic: bool,
    case_number: str | None = None,
    message_id: str | None = None,
) -> Outgoing:
    """The wire bytes of one mail: multipart/alternative (text + HTML) or text only, base64 UTF-8.

    Written out directly rather than through ``EmailMessage``: the header registry of
    ``policy.default`` costs milliseconds per mail, and this is every acknowledgement's path.
    """
    message_id = message_id or new_message_id(sender.addr)
    headers = [
        ("From", _address(sender)),
        ("To", _address(recipient)),
        ("Subject", _encode(clean_header_text(rendered.subject, 250))),
        ("Date", format_datetime(datetime.now(UTC), usegmt=True)),
        ("Message-ID", f"<{message_id}>"),
    ]
    if in_reply_to:
        headers.append(("In-Reply-To", f"<{_clean_id(in_reply_to)}>"))
    refs = [_clean_id(ref) for ref in references if ref][-MAX_REFERENCES:]
    if refs:
        headers.append(("References", "\r\n ".join(f"<{ref}>" for ref in refs)))
    if automatic:
        headers.append(("Auto-Submitted", "auto-replied"))
        headers.append(("X-Auto-Response-Suppress", "All"))  # asks Exchange not to answer our answer
    if case_number:
        headers.append(("X-Feedbackd-Case", case_number))
    headers.append(("MIME-Version", "1.0"))
    if rendered.html:
        boundary = f"=_fb_{uuid.uuid4().hex}"
        headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
        body = b"".join(f"--{boundary}\r\n".encode() + _head(part_headers) + payload + b"\r\n"
                        for part_headers, payload in (_part("plain", rendered.text), _part("html", rendered.html)))
        body += f"--{boundary}--\r\n".encode()
    else:
        part_headers, body = _part("plain", rendered.text)
        headers.extend(part_headers)
    return Outgoing(message_id=message_id, mail_from=sender.addr, recipient=recipient.addr,
                    raw=_head(headers) + body)


def _head(headers: list[tuple[str, str]]) -> bytes:
    return ("".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n").encode("ascii")


def _part(subtype: str, content: str) -> tuple[list[tuple[str, str]], bytes]:
    """One text part: its headers and its base64 UTF-8 body with CRLF lines."""
    data = content.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    headers = [("Content-Type", f"text/{subtype}; charset=utf-8"), ("Content-Transfer-Encoding", "base64")]
    return headers, base64.encodebytes(data).replace(b"\n", b"\r\n")


def _encode(text: str) -> str:
    """A header value as RFC 2047 encoded words where it is not plain ASCII, folded for SMTP."""
    if text.isascii():
        return text
    return Header(text, "utf-8", maxlinelen=76, header_name="Subject").encode().replace("\n", "\r\n")


def _address(address: Address) -> str:
    name = clean_header_text(address.name, 80).replace('"', "'")
    if not name:
        return address.addr
    if name.isascii():
        return formataddr((name, address.addr))
    return f"{Header(name, 'utf-8').encode()} <{address.addr}>"


def _clean_id(value: str) -> str:
    """A Message-ID as we repeat it: no brackets, spaces or control characters."""
    return "".join(ch for ch in value if ch.isprintable() and ch not in " <>\t")[:250]
