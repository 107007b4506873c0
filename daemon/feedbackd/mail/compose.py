"""Building outgoing mail: one recipient, our own Message-ID, threading headers, 7-bit safe.

Only the one addressee ever appears in the headers: never another citizen's address, and never
the Cc list of the mail we answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
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
    message_id = message_id or new_message_id(sender.addr)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((clean_header_text(sender.name, 80), sender.addr))
    msg["To"] = formataddr((clean_header_text(recipient.name, 80), recipient.addr))
    msg["Subject"] = clean_header_text(rendered.subject, 250)
    msg["Date"] = format_datetime(datetime.now(UTC), usegmt=True)
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    refs = [ref for ref in references if ref][-MAX_REFERENCES:]
    if refs:
        msg["References"] = " ".join(f"<{ref}>" for ref in refs)
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"  # asks Exchange not to answer our answer
    if case_number:
        msg["X-Feedbackd-Case"] = case_number
    msg.set_content(rendered.text, charset="utf-8", cte="base64")
    if rendered.html:
        msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="base64")
    return Outgoing(message_id=message_id, mail_from=sender.addr, recipient=recipient.addr,
                    raw=msg.as_bytes())
