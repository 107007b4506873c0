"""The parsed form of one inbound message, as every later stage sees it.

Parsing (``feedbackd.mail.parse``) produces it; the loop guard, threading, routing and storage
only read it.  Everything here is decoded Unicode, so no later stage touches charsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: ``addr`` is lower-cased for comparison, ``name`` is the decoded display name."""

    name: str
    addr: str

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2]


@dataclass(slots=True)
class Attachment:
    """One attachment; ``filename`` is already made safe for a file system (no path parts)."""

    filename: str
    content_type: str
    data: bytes
    truncated: bool = False  # larger than the configured limit: ``data`` is empty, ``size`` is the real size
    size: int = 0


@dataclass(slots=True)
class ParsedMessage:
    """A message reduced to what feedbackd needs, with every header decoded."""

    message_id: str | None  # without angle brackets; None when the message has none
    in_reply_to: list[str]
    references: list[str]
    subject: str
    sender: Address | None  # From (None when there is no usable From address)
    to: list[Address]
    cc: list[Address]
    reply_to: list[Address]
    date: datetime | None
    headers: list[tuple[str, str]]  # every header, name as written, value decoded, in order
    text: str  # the best text body (HTML converted to text where there is no plain part)
    html: str | None  # the HTML body as received, when there is one
    attachments: list[Attachment] = field(default_factory=list)
    content_type: str = "text/plain"  # of the top-level entity, lower-case
    defects: list[str] = field(default_factory=list)
    language: str | None = None  # "zh" or "en" or None, filled by parse when it can tell

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    @property
    def recipients(self) -> list[Address]:
        return [*self.to, *self.cc]
