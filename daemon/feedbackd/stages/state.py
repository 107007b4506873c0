"""What the stages know about one message, and what the pipeline reports about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedbackd.mail import guard
from feedbackd.mail.message import ParsedMessage

Events = list[tuple[str, dict[str, Any]]]


@dataclass
class Outcome:
    action: str  # new-case, joined, copy, recorded, duplicate, quarantined
    case_number: str | None = None
    detail: str = ""
    queued: int = 0  # outgoing mails queued
    uid: int | None = None  # the message's IMAP UID, when it came from IMAP


@dataclass(frozen=True)
class AnswerRequest:
    """What the answer stage is asked to write to the sender, once the message is recorded.

    ``purpose`` is ``acknowledgement`` (a new case) or ``quarantine-notice`` (a person will look at
    it).  ``refusal`` is set when an earlier stage already knows no answer may go (a rule said so).
    """

    purpose: str
    template: str
    language: str
    msg: ParsedMessage
    verdict: guard.Verdict
    context: dict[str, Any]
    case_id: int | None = None
    case_number: str | None = None
    refusal: str | None = None


@dataclass
class MessageState:
    """One message as the stages see it so far (passed down, never up)."""

    raw: bytes
    digest: str
    uid: int | None
    msg: ParsedMessage
    verdict: guard.Verdict
    events: Events = field(default_factory=list)
