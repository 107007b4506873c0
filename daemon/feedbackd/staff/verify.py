"""Whether a reply to a staff reply address acts as staff.

Three checks, all required:
1. The From ADDRESS (``msg.sender.addr``, lower-cased) is staff or lead of some department.  Never
   the display name: ``"desk@city.example" <evil@x.example>`` is ``evil@x.example``.  A message with
   more than one From header is refused outright, so there is no question which one counts.
2. The reply address's signature is the case's (``address.valid``).  Anyone can write any From
   address in SMTP; the signature is what a stranger does not have.  Only staff mail carries it
   (citizens get mail from the plain feedback address), and it is bound to one case, so a reply
   address of case A never acts on case B.
3. With ``require_authentication``, the topmost ``Authentication-Results`` from ``authserv_id``
   shows DKIM, SPF (or DMARC) pass for the From domain (``authres``).  This closes the gap left by 1
   and 2: someone who saw a staff notice (it was forwarded, or a mailbox was read over a shoulder)
   and knows a staff address still cannot write as that staff member from another server.

Anything else is a failed claim: the caller handles the mail as citizen mail and records the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from feedbackd.config import StaffSettings
from feedbackd.mail.message import ParsedMessage
from feedbackd.staff import address, authres

RECIPIENT_HEADERS = ("delivered-to", "x-original-to")  # besides To and Cc: where servers note the envelope
MAX_RECIPIENTS = 200  # a hostile To of thousands of addresses is read this far
_HEADER_ADDRESS = re.compile(r"[^\s<>,;\"()]+@[^\s<>,;\"()]+")


@dataclass(frozen=True)
class StaffClaim:
    """A reply sent to one of our staff reply addresses, and whether it acts as staff."""

    case_number: str | None  # the case the reply address names (None when the sub-address does not parse)
    staff: bool  # True only when verified: the reply acts as staff
    reason: str  # "verified" or why not: "sender is not staff", "wrong signature", "authentication: …"


def claim(msg: ParsedMessage, staff_settings: StaffSettings, own_addresses: frozenset[str],
          staff_addresses: frozenset[str]) -> StaffClaim | None:
    """The claim of a message sent to a staff reply address of ours; None when no recipient is one.

    When several recipients are staff reply addresses, the first one whose signature is valid is the
    claim (else the first one), so that a stray copy to another address never spoils a real reply.
    """
    subs = sub_addresses(msg, own_addresses)
    if not subs:
        return None
    sub = next((s for s in subs if address.valid(staff_settings.secret, s)), subs[0])
    staff, reason = _verdict(msg, sub, staff_settings, staff_addresses)
    return StaffClaim(case_number=sub.case_number, staff=staff, reason=reason)


def sub_addresses(msg: ParsedMessage, own_addresses: frozenset[str]) -> list[address.SubAddress]:
    """The staff reply addresses of ours among the recipients (To, Cc, Delivered-To, X-Original-To), in order."""
    own = frozenset(a.strip().lower() for a in own_addresses)
    found: dict[address.SubAddress, None] = {}
    for candidate in _recipients(msg):
        sub = address.parse_sub_address(candidate, own)
        if sub is not None:
            found.setdefault(sub)
    return list(found)


def _recipients(msg: ParsedMessage) -> list[str]:
    addresses = [a.addr for a in msg.recipients[:MAX_RECIPIENTS]]
    for name, value in msg.headers:
        if name.strip().lower() in RECIPIENT_HEADERS:
            addresses.extend(_HEADER_ADDRESS.findall(value[:1000]))
    return addresses


def _verdict(msg: ParsedMessage, sub: address.SubAddress, staff_settings: StaffSettings,
             staff_addresses: frozenset[str]) -> tuple[bool, str]:
    sender = msg.sender
    if sender is None:
        return False, "no sender address"
    if len(msg.header_all("From")) > 1:
        return False, "more than one From header"
    if sender.addr.lower() not in {a.strip().lower() for a in staff_addresses}:
        return False, "sender is not staff"
    if not address.valid(staff_settings.secret, sub):
        return False, "wrong signature"
    if staff_settings.require_authentication:
        ok, why = authres.authenticated(msg.headers, staff_settings.authserv_id, sender.domain)
        if not ok:
            return False, f"authentication: {why}"
    return True, "verified"
