"""Threading: which case a message belongs to, and the public case numbers.

Order of evidence (as in Roundup's mail gateway): first the In-Reply-To/References headers
against the index of every Message-ID we received or sent; then the subject token ``[FB-000123]``,
accepted only from an address that already takes part in that case.  A token from anyone else
cannot open someone else's case: the message starts a new case instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import Connection, RowMapping

from feedbackd.config import CaseSettings
from feedbackd.mail.message import ParsedMessage
from feedbackd.store import records

How = Literal["headers", "token", "quoted", "new"]


@dataclass(frozen=True)
class Thread:
    case: RowMapping | None  # the case's row
    how: How
    note: str = ""  # e.g. why a token was refused


class CaseNumbers:
    """Formats and recognises public numbers: ``FB-000123`` and the token ``[FB-000123]``."""

    def __init__(self, settings: CaseSettings) -> None:
        self.prefix = settings.prefix
        self.digits = settings.digits
        self._token = re.compile(rf"\[\s*{re.escape(self.prefix)}-(\d{{1,12}})\s*\]", re.IGNORECASE)
        self._number = re.compile(rf"^\s*{re.escape(self.prefix)}-?(\d{{1,12}})\s*$", re.IGNORECASE)

    def format(self, case_id: int) -> str:
        return f"{self.prefix}-{case_id:0{self.digits}d}"

    def token(self, number: str) -> str:
        return f"[{number}]"

    def in_subject(self, subject: str) -> list[str]:
        """Every case number named by a token in the subject, normalised."""
        return [self.format(int(digits)) for digits in self._token.findall(subject)]

    def parse(self, text: str) -> str | None:
        """A number as a user types it (``FB-123``, ``fb000123``, ``123``) → ``FB-000123``."""
        match = self._number.match(text)
        if match:
            return self.format(int(match[1]))
        if text.strip().isdigit():
            return self.format(int(text))
        return None


def find_thread(conn: Connection, msg: ParsedMessage, numbers: CaseNumbers,
                quoted_ids: list[str] | None = None) -> Thread:
    """The case this message continues, and how we know; ``Thread(None, "new")`` for a new case."""
    case = _by_message_ids(conn, [*msg.in_reply_to, *reversed(msg.references)])
    if case is not None:
        return Thread(case, "headers")
    note = ""
    sender = msg.sender.addr if msg.sender else None
    for number in numbers.in_subject(msg.subject):
        case = records.case_by_number(conn, number)
        if case is None:
            note = f"subject names unknown case {number}"
            continue
        if sender and (sender == case["requester"] or records.is_participant(conn, case["id"], sender)):
            return Thread(case, "token")
        note = f"subject names {number} but the sender does not take part in it"
    if quoted_ids:
        case = _by_message_ids(conn, quoted_ids)
        if case is not None:
            return Thread(case, "quoted")
    return Thread(None, "new", note)


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
