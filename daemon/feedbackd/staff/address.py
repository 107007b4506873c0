"""The staff reply address of a case: the feedback address with a signed sub-address.

``feedback+FB-000123.k7f3q2abcd@city.example`` names the case and carries an HMAC of the case
number under ``[staff] secret``.  Staff mail puts it in ``Reply-To``, so an answer from any mail
client comes back to us naming its case.  The signature is what a stranger cannot produce: it
proves the writer received the staff notice of *that* case (or was sent it), not who the writer
is; ``verify`` adds the sender and authentication checks.

Ten base32 characters are 50 bits: guessing one by sending mail is hopeless, and the address
stays short enough for every client.  The case number is signed upper-case, and parsed
case-insensitively, because some servers and clients change the case of local parts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

SIGNATURE_LENGTH = 10
_CASE = re.compile(r"[A-Z][A-Z0-9]{0,9}-[0-9]{1,12}")  # CaseSettings.prefix, a dash, the digits
_SIGNATURE = re.compile(r"[a-z2-7]{1,64}")  # lower-case base32; any length parses, only the full one is valid


@dataclass(frozen=True)
class SubAddress:
    """The case a staff reply address names, and the signature it carries (both as written, normalised)."""

    case_number: str  # upper-case, e.g. "FB-000123"
    signature: str  # lower-case


def signature(secret: str, case_number: str) -> str:
    """HMAC-SHA256 of the upper-cased case number under ``secret``, as 10 lower-case base32 characters."""
    if not secret:
        raise ValueError("staff reply addresses need a secret")
    digest = hmac.new(secret.encode(), case_number.strip().upper().encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:SIGNATURE_LENGTH].lower()


def reply_address(feedback_address: str, secret: str, case_number: str) -> str:
    """``local+CASE.sig@domain`` for the feedback address ``local@domain``."""
    local, at, domain = feedback_address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError("the feedback address has no local part or domain")
    number = case_number.strip().upper()
    if not _CASE.fullmatch(number):
        raise ValueError(f"not a case number: {number[:40]!r}")
    return f"{local}+{number}.{signature(secret, number)}@{domain}"


def parse_sub_address(address: str, own_addresses: frozenset[str]) -> SubAddress | None:
    """The case and signature of ``local+CASE.sig@domain`` when ``local@domain`` is ours, else None.

    Compared case-insensitively.  Any plausible signature parses, so that a wrong or truncated one
    can be told apart from mail that was never meant for a staff reply address.
    """
    address = address.strip().strip("<>").strip()
    if len(address) > 254:
        return None
    head, at, domain = address.rpartition("@")
    base, plus, tag = head.rpartition("+")
    if not (at and plus and base and domain):
        return None
    if f"{base}@{domain}".lower() not in _lowered(own_addresses):
        return None
    number, dot, sig = tag.rpartition(".")
    number, sig = number.upper(), sig.lower()
    if not dot or not _CASE.fullmatch(number) or not _SIGNATURE.fullmatch(sig):
        return None
    return SubAddress(case_number=number, signature=sig)


def valid(secret: str, sub: SubAddress) -> bool:
    """Whether the signature is the case's, compared in constant time; never with an empty secret."""
    if not secret:
        return False
    expected = signature(secret, sub.case_number).encode()
    return hmac.compare_digest(expected, sub.signature.lower().encode("utf-8", errors="replace"))


def _lowered(addresses: frozenset[str]) -> frozenset[str]:
    if all(a == a.lower() for a in addresses):
        return addresses
    return frozenset(a.strip().lower() for a in addresses)
