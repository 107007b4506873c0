"""Queueing one outgoing mail: recorded as the case's outgoing message and put in the outbox.

Every mail feedbackd sends goes through here, in the transaction of whatever caused it, so the
case's history, the threading index (our Message-IDs) and the outbox never disagree.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from feedbackd.mail import guard
from feedbackd.mail.compose import Outgoing
from feedbackd.store import records
from feedbackd.store.models import utcnow

# Purge and privacy erase replace addresses by ``p-…@purged.invalid``; ``.invalid`` never resolves
# (RFC 6761), so such mail is recorded failed at once instead of being retried for days.
UNDELIVERABLE = "recipient erased (its address is a pseudonym); not sent"


def record_and_queue(conn: Connection, outgoing: Outgoing, *, case_id: int | None, purpose: str, subject: str,
                     text: str, from_addr: str, from_name: str, in_reply_to: str | None = None) -> int:
    """Record ``outgoing`` on the case (direction out, kind = purpose) and queue it; returns the outbox id."""
    records.insert_message(conn, {
        "case_id": case_id, "direction": "out", "kind": purpose,
        "message_id": outgoing.message_id, "dedupe_key": f"out:{outgoing.message_id}",
        "in_reply_to": in_reply_to, "from_addr": from_addr, "from_name": from_name,
        "to_addrs": [outgoing.recipient], "subject": subject[:1000], "date": utcnow(), "text": text,
    })
    key = guard.canonical_mailbox(outgoing.recipient)
    erased = key.endswith(".invalid")
    return records.queue_mail(conn, {
        "case_id": case_id, "purpose": purpose, "message_id": outgoing.message_id,
        "mail_from": outgoing.mail_from, "recipient": outgoing.recipient,
        "recipient_key": key, "raw": outgoing.raw,
        **({"status": "failed", "last_error": UNDELIVERABLE} if erased else {}),
    })
