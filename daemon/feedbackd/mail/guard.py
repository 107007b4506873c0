"""The loop guard (RFC 3834): which mail is automatic, and which may get an automatic answer.

Two pure predicates, documented so an admin can tell why a sender got no acknowledgement:

* ``classify`` sorts a message into ``mail`` (written by a person), ``auto-reply`` (an
  out-of-office or other automatic answer), ``bounce`` (a delivery status report) or ``bulk``
  (list, bulk or machine-generated mail).  Auto-replies and bounces never open a case: they are
  recorded on the case they answer.  Bulk mail opens a case but is never answered automatically.
* ``reply_refusal`` gives the reason not to answer a message automatically, or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from feedbackd.mail.message import ParsedMessage

Kind = Literal["mail", "auto-reply", "bounce", "bulk"]

_DAEMON_LOCALPARTS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"}
_NOREPLY = re.compile(r"^(no-?reply|do-?not-?reply|donotreply|bounces?)([+._-].*)?$")
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery status notification|delivery (has )?failed|returned mail|failure notice|"
    r"mail delivery (failed|system)|退信|投递失败|系统退信|无法投递|邮件未送达)",
    re.IGNORECASE,
)
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|autoreply|自动回复|自動回覆|"
    r"自动答复|休假|不在办公室)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str | None = None  # why it is not plain mail


def _localpart(addr: str) -> str:
    return addr.partition("@")[0].lower()


def _empty_return_path(msg: ParsedMessage) -> bool:
    value = msg.header("Return-Path")
    return value is not None and value.strip() in ("<>", "")


def classify(msg: ParsedMessage) -> Verdict:
    """What kind of mail this is, judged from its headers and shape."""
    content_type = msg.content_type
    sender = msg.sender.addr if msg.sender else ""
    if content_type == "multipart/report":
        return Verdict("bounce", "multipart/report (a delivery or disposition report)")
    if sender and _localpart(sender) in _DAEMON_LOCALPARTS:
        return Verdict("bounce", f"sent by {_localpart(sender).upper()}")
    if _empty_return_path(msg) and _BOUNCE_SUBJECT.search(msg.subject):
        return Verdict("bounce", "empty Return-Path and a bounce subject")
    auto = (msg.header("Auto-Submitted") or "").strip().lower()
    if auto.startswith("auto-replied"):
        return Verdict("auto-reply", "Auto-Submitted: auto-replied")
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply"):
        if msg.header(name) is not None:
            return Verdict("auto-reply", f"{name} header")
    if _empty_return_path(msg):
        return Verdict("auto-reply", "empty Return-Path")
    if _AUTOREPLY_SUBJECT.search(msg.subject) and (auto not in ("", "no") or _precedence(msg)):
        return Verdict("auto-reply", "automatic-reply subject")
    if auto and auto != "no":
        return Verdict("bulk", f"Auto-Submitted: {auto}")
    precedence = _precedence(msg)
    if precedence:
        return Verdict("bulk", f"Precedence: {precedence}")
    if msg.header("List-Id") is not None:
        return Verdict("bulk", "List-Id header")
    return Verdict("mail")


def _precedence(msg: ParsedMessage) -> str | None:
    value = (msg.header("Precedence") or "").strip().lower()
    return value if value in ("bulk", "junk", "list", "auto_reply") else None


def reply_refusal(msg: ParsedMessage, verdict: Verdict, own_addresses: frozenset[str]) -> str | None:
    """Why this message must not be answered automatically (None: it may be)."""
    if verdict.kind != "mail":
        return verdict.reason or verdict.kind
    if msg.sender is None:
        return "no sender address"
    sender = msg.sender.addr
    if sender in own_addresses:
        return "sent from our own address"
    if _NOREPLY.match(_localpart(sender)):
        return "sender is a no-reply address"
    suppress = (msg.header("X-Auto-Response-Suppress") or "").lower()
    if any(word in suppress for word in ("all", "autoreply", "oof")):
        return f"X-Auto-Response-Suppress: {suppress}"
    return None


def canonical_mailbox(addr: str) -> str:
    """The mailbox behind an address, as a budget counts it: ``Victim+1@Example.org`` → ``victim@example.org``.

    Case-folded, the sub-address (``+tag``) removed, an IDNA domain shown in Unicode, so the
    variants a reflector would use to multiply its budget all count as one recipient.
    """
    local, at, domain = addr.strip().rpartition("@")
    if not at:
        return addr.strip().casefold()
    local = local.partition("+")[0] or local
    if "xn--" in domain.lower():
        try:
            domain = domain.encode("ascii").decode("idna")
        except UnicodeError:
            pass
    return f"{local.casefold()}@{domain.casefold()}"


_MESSAGE_ID_LINE = re.compile(rb"^message-id:\s*<([^>\s]{1,250})>", re.IGNORECASE | re.MULTILINE)


def quoted_message_ids(raw: bytes) -> list[str]:
    """Message-IDs of the mail a bounce or auto-reply returns (from its body, after the headers).

    Delivery reports carry the original headers in a text/rfc822-headers or message/rfc822 part;
    a lookup of these IDs in our outgoing index tells which case the bounce belongs to.
    """
    header_end = raw.find(b"\r\n\r\n")
    if header_end < 0:
        header_end = raw.find(b"\n\n")
    body = raw[header_end:] if header_end >= 0 else b""
    return [m.decode("ascii", "replace") for m in _MESSAGE_ID_LINE.findall(body[:200_000])]
