"""Who a request is about, and every row that holds something of them (shared by export and erase).

An address matches in its canonical mailbox form (``guard.canonical_mailbox``: case-folded, the
``+tag`` removed, an IDNA domain in Unicode), so ``Zhang+city@QQ.example`` and ``zhang@qq.example``
are one person.  Where it is looked for: the requester of a case, the participants (people the
requester copied), the senders of messages, the addresses in messages' To/Cc, the recipients of
outgoing mail, the sender of quarantined mail, and the actors and details of case events.

The database narrows by a LIKE on the local part (the indexed address columns), Python decides
by the canonical form, so no SQL dialect has to know what canonical means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import KeyedColumnElement

from feedbackd.mail.guard import canonical_mailbox
from feedbackd.store.records import CASES, EVENTS, MESSAGES, OUTBOX, PARTICIPANTS, QUARANTINE


@dataclass(frozen=True)
class Person:
    """The one the request is about, by the address they gave."""

    address: str
    canonical: str

    @classmethod
    def of(cls, address: str) -> Person:
        return cls(address.strip(), canonical_mailbox(address))

    def matches(self, address: Any) -> bool:
        return isinstance(address, str) and "@" in address and canonical_mailbox(address) == self.canonical

    def mentioned_in(self, value: Any) -> bool:
        """An address of theirs anywhere in a JSON value (event details, routing)."""
        if isinstance(value, dict):
            return any(self.mentioned_in(v) for v in value.values())
        if isinstance(value, list):
            return any(self.mentioned_in(v) for v in value)
        return self.matches(value)

    def like(self, column: KeyedColumnElement[Any]) -> ColumnElement[bool]:
        """A prefilter the database can run: the lower-cased column starts with the local part."""
        local = self.canonical.rpartition("@")[0]
        if not local.isascii():  # casefold and SQL lower() may disagree: let Python decide on every row
            return column.is_not(None)
        escaped = local.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return func.lower(column).like(f"{escaped}%@%", escape="\\")


@dataclass
class Holdings:
    """Row ids of everything held about one person (what export writes and erase removes)."""

    own_cases: list[int] = field(default_factory=list)  # they are the requester
    other_cases: list[int] = field(default_factory=list)  # they were copied, wrote or were written to
    their_messages: list[int] = field(default_factory=list)  # sent by them, outside their own cases
    mentioning: list[int] = field(default_factory=list)  # others' messages naming them in To/Cc
    outbox: list[int] = field(default_factory=list)  # outgoing mail to them
    quarantine: list[int] = field(default_factory=list)  # quarantined mail from them
    participants: list[int] = field(default_factory=list)  # their participant rows in others' cases
    events: list[int] = field(default_factory=list)  # events in others' cases by or about them

    def empty(self) -> bool:
        return not (self.own_cases or self.other_cases or self.their_messages or self.outbox or self.quarantine)


def find(conn: Connection, person: Person) -> Holdings:
    """Everything held about ``person`` (read in the caller's transaction)."""
    found = Holdings()
    found.own_cases = _matching(conn, CASES.c.id, CASES.c.requester, person)
    own = set(found.own_cases)
    participant_rows = _matching_rows(conn, PARTICIPANTS.c.id, PARTICIPANTS.c.case_id, PARTICIPANTS.c.address, person)
    found.participants = [row for row, case in participant_rows if case not in own]
    sent = _matching_rows(conn, MESSAGES.c.id, MESSAGES.c.case_id, MESSAGES.c.from_addr, person)
    found.their_messages = [row for row, case in sent if case not in own]
    outbox = _matching_rows(conn, OUTBOX.c.id, OUTBOX.c.case_id, OUTBOX.c.recipient, person)
    found.outbox = [row for row, _ in outbox]
    found.quarantine = _matching(conn, QUARANTINE.c.id, QUARANTINE.c.sender, person)
    others = {case for _, case in [*participant_rows, *sent, *outbox] if case is not None} - own
    found.other_cases = sorted(others)
    found.mentioning = _mentioning(conn, person, others, set(found.their_messages))
    found.events = _events(conn, person, found.other_cases)
    return found


def _matching(conn: Connection, key: KeyedColumnElement[Any], column: KeyedColumnElement[Any],
              person: Person) -> list[int]:
    rows = conn.execute(select(key, column).where(person.like(column)).order_by(key))
    return [int(row_id) for row_id, address in rows if person.matches(address)]


def _matching_rows(conn: Connection, key: KeyedColumnElement[Any], case: KeyedColumnElement[Any],
                   column: KeyedColumnElement[Any], person: Person) -> list[tuple[int, int | None]]:
    rows = conn.execute(select(key, case, column).where(person.like(column)).order_by(key))
    return [(int(row_id), None if case_id is None else int(case_id))
            for row_id, case_id, address in rows if person.matches(address)]


def _mentioning(conn: Connection, person: Person, cases: Iterable[int], theirs: set[int]) -> list[int]:
    """Others' messages naming them in To/Cc, in the cases they take part in (JSON lists: looked at in Python)."""
    cases = sorted(cases)
    if not cases:
        return []
    query = (select(MESSAGES.c.id, MESSAGES.c.to_addrs, MESSAGES.c.cc_addrs)
             .where(MESSAGES.c.case_id.in_(cases)).order_by(MESSAGES.c.id))
    return [int(row_id) for row_id, to_addrs, cc_addrs in conn.execute(query)
            if row_id not in theirs and any(person.matches(a) for a in [*(to_addrs or []), *(cc_addrs or [])])]


def _events(conn: Connection, person: Person, cases: list[int]) -> list[int]:
    if not cases:
        return []
    query = select(EVENTS.c.id, EVENTS.c.actor, EVENTS.c.detail).where(EVENTS.c.case_id.in_(cases))
    return [int(row_id) for row_id, actor, detail in conn.execute(query.order_by(EVENTS.c.id))
            if person.matches(actor) or person.mentioned_in(detail)]
