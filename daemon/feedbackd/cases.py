"""Threading: which case a message belongs to, and the public case numbers.

One rule decides who may join a case, whatever the evidence: the sender must take part in it
(the requester, people the requester copied, and staff).  The evidence is tried in this order
(as in Roundup's mail gateway): another copy of a message already on a case (same Message-ID,
other bytes); the In-Reply-To/References headers against the index of every Message-ID we
received or sent; the subject token ``[FB-000123]``.  A message that names someone else's case
by any of these opens a new case, which records the reference.  Automatic mail (bounces,
auto-replies) is only noted on the case it answers, never joins it, so it is matched by the
headers and by the Message-IDs it quotes without the participant rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import Connection, RowMapping

from feedbackd.config import CaseSettings
from feedbackd.mail.message import ParsedMessage
from feedbackd.store import records

How = Literal["copy", "headers", "token", "quoted", "new"]


@dataclass(frozen=True)
class Thread:
    case: RowMapping | None  # the case's row
    how: How
    note: str = ""  # e.g. why a reference was refused
    referenced: int | None = None  # a case the message named but may not join


class CaseNumbers:
    """Formats and recognises public numbers: ``FB-000123`` and the token ``[FB-000123]``.

    The number is the case's row id with the configured prefix, so it is derived, never stored.
    """

    def __init__(self, settings: CaseSettings) -> None:
        self.prefix = settings.prefix
        self.digits = settings.digits
        self._token = re.compile(rf"\[\s*{re.escape(self.prefix)}-(\d{{1,12}})\s*\]", re.IGNORECASE)
        self._number = re.compile(rf"^\s*{re.escape(self.prefix)}-?(\d{{1,12}})\s*$", re.IGNORECASE)

    def format(self, case_id: int) -> str:
        return f"{self.prefix}-{case_id:0{self.digits}d}"

    def token(self, number: str) -> str:
        return f"[{number}]"

    def in_subject(self, subject: str) -> list[int]:
        """The case ids named by tokens in the subject."""
        return [int(digits) for digits in self._token.findall(subject)]

    def parse(self, text: str) -> int | None:
        """The case id of a number as a user types it (``FB-000123``, ``fb123``, ``123``)."""
        match = self._number.match(text)
        if match:
            return int(match[1])
        if text.strip().isdigit():
            return int(text)
        return None


def find_thread(conn: Connection, msg: ParsedMessage, numbers: CaseNumbers,
                quoted_ids: list[str] | None = None, *, automatic: bool = False) -> Thread:
    """The case this message continues, and how we know; ``Thread(None, "new")`` for a new case.

    One query looks up the message's own Message-ID (another copy of it is on a case) and the
    ones it answers (In-Reply-To, then the newest References first).
    """
    sender = msg.sender.addr if msg.sender else ""
    own = msg.message_id if msg.message_id and not automatic else None
    answered = [i for i in dict.fromkeys([*msg.in_reply_to, *reversed(msg.references)]) if i and i != own][:50]
    found = records.case_ids_by_message_ids(conn, [own, *answered] if own else answered) if own or answered else {}
    refused: RowMapping | None = None
    if own is not None and own in found:
        case = records.case_by_id(conn, found[own])
        if case is not None and takes_part(conn, case, sender):
            return Thread(case, "copy")
        refused = case
    case = next((records.case_by_id(conn, found[i]) for i in answered if i in found), None)
    if case is not None:
        if automatic or takes_part(conn, case, sender):
            return Thread(case, "headers")
        refused = refused or case
    unknown = None
    for case_id in numbers.in_subject(msg.subject):
        case = records.case_by_id(conn, case_id)
        if case is None:
            unknown = unknown or case_id
        elif takes_part(conn, case, sender):
            return Thread(case, "token")
        else:
            refused = refused or case
    if automatic and quoted_ids:
        case = _by_message_ids(conn, quoted_ids)
        if case is not None:
            return Thread(case, "quoted")
    if refused is not None:
        number = numbers.format(refused["id"])
        return Thread(None, "new", f"refers to {number}, but the sender does not take part in it", refused["id"])
    if unknown is not None:
        return Thread(None, "new", f"subject names unknown case {numbers.format(unknown)}")
    return Thread(None, "new")


def takes_part(conn: Connection, case: RowMapping, sender: str) -> bool:
    """The one rule for joining a case: the sender is its requester or one of its participants."""
    return bool(sender) and (sender == case["requester"] or records.is_participant(conn, case["id"], sender))


def _by_message_ids(conn: Connection, ids: list[str]) -> RowMapping | None:
    ids = [i for i in dict.fromkeys(ids) if i][:50]
    if not ids:
        return None
    found = records.case_ids_by_message_ids(conn, ids)
    # Prefer the ID named first (In-Reply-To, then the newest reference).
    for message_id in ids:
        if message_id in found:
            return records.case_by_id(conn, found[message_id])
    return None
