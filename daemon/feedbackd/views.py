"""Cases, messages, quarantine and outbox rows as plain data, for JSON and for the terminal.

The JSON field names are a contract (checked from outside): add fields, never rename them.
A case's ``status`` is one of new, open, in-progress, waiting, resolved, closed (``staff.actions``
decides the changes); every event has an ``actor``: citizen, a staff address, admin or system.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from feedbackd.cases import CaseNumbers
from feedbackd.store.models import (
    Case,
    CaseEvent,
    MailMessage,
    OutboxItem,
    QuarantineItem,
    StoredAttachment,
)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def case_summary(case: Case, numbers: CaseNumbers) -> dict[str, Any]:
    return {
        "id": numbers.format(case.id or 0),
        "status": case.status,
        "subject": case.subject,
        "requester": case.requester,
        "requester_name": case.requester_name,
        "priority": case.priority,
        "department": case.department,
        "kind": case.kind,
        "tags": list(case.tags),
        "assignee": case.assignee,
        "language": case.language,
        "message_count": case.message_count,
        "first_response_due": iso(case.first_response_due),
        "resolution_due": iso(case.resolution_due),
        "created_at": iso(case.created_at),
        "updated_at": iso(case.updated_at),
        "resolved_at": iso(case.resolved_at),
        "satisfaction": _satisfaction(case.satisfaction),
        "linked_case": numbers.format(case.linked_case) if case.linked_case else None,
    }


def _satisfaction(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The citizen's answer as {score: 1-5, text}, or None when they gave none."""
    if not stored:
        return None
    return {"score": stored.get("score"), "text": stored.get("text", "")}


def case_detail(db: Session, case: Case, numbers: CaseNumbers) -> dict[str, Any]:
    messages = list(db.exec(select(MailMessage).where(MailMessage.case_id == case.id)
                            .order_by(col(MailMessage.received_at), col(MailMessage.id))))
    attachments: dict[int, list[dict[str, Any]]] = {}
    if messages:
        rows = db.exec(select(StoredAttachment).where(
            col(StoredAttachment.message_id).in_([m.id for m in messages])))
        for row in rows:
            attachments.setdefault(row.message_id, []).append(
                {"filename": row.filename, "content_type": row.content_type, "size": row.size,
                 "stored": row.sha256 is not None})
    events = db.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)
                     .order_by(col(CaseEvent.at), col(CaseEvent.id)))
    return {
        **case_summary(case, numbers),
        "routing": case.routing,
        "messages": [message_view(m, attachments.get(m.id or 0, [])) for m in messages],
        "events": [{"at": iso(e.at), "kind": e.kind, "detail": e.detail, "actor": e.actor} for e in events],
    }


def message_view(m: MailMessage, attachments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "direction": m.direction,
        "kind": m.kind,
        "message_id": m.message_id,
        "from": m.from_addr,
        "from_name": m.from_name,
        "to": list(m.to_addrs),
        "cc": list(m.cc_addrs),
        "subject": m.subject,
        "date": iso(m.date or m.received_at),
        "received_at": iso(m.received_at),
        "text": m.text,
        "attachments": attachments,
    }


def quarantine_view(q: QuarantineItem) -> dict[str, Any]:
    return {"id": q.id, "received_at": iso(q.received_at), "uid": q.mailbox_uid, "stage": q.stage,
            "reason": q.reason, "subject": q.subject, "from": q.sender, "size": q.size,
            "raw_sha256": q.raw_sha256, "resolved": q.resolved}


def outbox_view(o: OutboxItem, case_number: str | None) -> dict[str, Any]:
    return {"id": o.id, "case": case_number, "purpose": o.purpose, "to": o.recipient,
            "status": o.status, "attempts": o.attempts, "next_attempt_at": iso(o.next_attempt_at),
            "last_error": o.last_error, "created_at": iso(o.created_at), "sent_at": iso(o.sent_at)}
