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
                quoted_ids: list[str] | None = None) -> Thread:
    """The case this message continues, and how we know; ``Thread(None, "new")`` for a new case."""
    case = _by_message_ids(conn, [*msg.in_reply_to, *reversed(msg.references)])
    if case is not None:
        return Thread(case, "headers")
    note = ""
    sender = msg.sender.addr if msg.sender else None
    for case_id in numbers.in_subject(msg.subject):
        case = records.case_by_id(conn, case_id)
        if case is None:
            note = f"subject names unknown case {numbers.format(case_id)}"
            continue
        if sender and (sender == case["requester"] or records.is_participant(conn, case_id, sender)):
            return Thread(case, "token")
        note = f"subject names {numbers.format(case_id)} but the sender does not take part in it"
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
