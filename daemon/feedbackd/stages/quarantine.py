"""Quarantine: a message no stage could handle is kept whole and listed, with the reason.

The raw bytes are kept (``quarantine replay ID`` runs them through the pipeline again); the
listing shows the stage and the reason, and the sender and subject where the headers alone can
still be read.  The answer stage then tells the sender that a person will look at it.
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Connection

from feedbackd.logmask import mask_addresses
from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.parse import parse_message
from feedbackd.store import records

log = logging.getLogger(__name__)

HEAD_LIMIT = 256 * 1024  # bytes of the header block read to name the sender of a quarantined message


def keep(conn: Connection, raw: bytes, digest: str, uid: int | None, stage: str, reason: str) -> ParsedMessage | None:
    """Record the message in quarantine; returns its headers when they can be read (for the notice)."""
    head = headers_only(raw)
    records.keep_raw(conn, digest, raw)
    item = records.insert_quarantine(conn, {
        "mailbox_uid": uid, "raw_sha256": digest, "size": len(raw), "stage": stage,
        "reason": reason[:1000], "subject": head.subject[:300] if head else "",
        "sender": head.sender.addr if head and head.sender else ""})
    log.warning("uid=%s quarantined as #%s at stage %s: %s", uid, item, stage, mask_addresses(reason[:200]))
    return head


def headers_only(raw: bytes) -> ParsedMessage | None:
    """The header block of a message the pipeline could not take, parsed on its own (bounded)."""
    end = raw.find(b"\r\n\r\n", 0, HEAD_LIMIT)
    if end < 0:
        end = raw.find(b"\n\n", 0, HEAD_LIMIT)
    head = raw[: end if end >= 0 else HEAD_LIMIT]
    try:
        return parse_message(head + b"\r\n\r\n")
    except Exception:  # noqa: BLE001 - nothing readable: list it without sender or subject
        return None
