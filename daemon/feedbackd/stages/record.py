"""Recording: what was received, byte for byte, before anything is decided about it.

Deduplication compares the raw bytes only: the same bytes again (a redelivery of the same UID,
a re-read after a UIDVALIDITY change, a replay) are a duplicate; different bytes are always kept,
even under a Message-ID seen before (casework then decides whether they are a copy of a message
already on a case, or something new).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy.engine import Connection

from feedbackd.mail.message import ParsedMessage
from feedbackd.stages.state import MessageState
from feedbackd.store import records
from feedbackd.store.files import FileStore

MAX_ADDRESSES = 100  # To and Cc addresses kept per message
MAX_DEFECTS = 50
MAX_REFERENCES = 50


def dedupe_key(digest: str) -> str:
    """The unique key of a received message: its bytes (a second daemon storing them too fails on it)."""
    return f"raw:{digest}"


def keep_attachments(files: FileStore, msg: ParsedMessage) -> list[dict[str, Any]]:
    """Write the attachments (by hash, before the rows naming them commit); their rows' values."""
    return [{"filename": a.filename, "content_type": a.content_type, "size": a.size or len(a.data),
             "truncated": a.truncated, "sha256": None if a.truncated else files.put_attachment(a.data)}
            for a in msg.attachments]


def store_message(conn: Connection, state: MessageState, case_id: int | None, kind: str,
                  attachments: list[dict[str, Any]]) -> int:
    """The message's row (and its attachments' rows); returns the row id."""
    msg = state.msg
    row = records.insert_message(conn, {
        "case_id": case_id,
        "direction": "in",
        "kind": kind,
        "message_id": msg.message_id,
        "dedupe_key": dedupe_key(state.digest),
        "in_reply_to": msg.in_reply_to[0] if msg.in_reply_to else None,
        "references": msg.references[-MAX_REFERENCES:],
        "from_addr": msg.sender.addr if msg.sender else "",
        "from_name": msg.sender.name[:200] if msg.sender else "",
        "to_addrs": [a.addr for a in msg.to][:MAX_ADDRESSES],
        "cc_addrs": [a.addr for a in msg.cc][:MAX_ADDRESSES],
        "subject": msg.subject[:1000],
        "date": msg.date.astimezone(UTC) if msg.date else None,  # parse keeps only aware, sane dates
        "text": msg.text,
        "raw_sha256": state.digest,
        "mailbox_uid": state.uid,
        "defects": msg.defects[:MAX_DEFECTS],
    })
    records.add_attachments(conn, row, attachments)
    return row
