"""Raw bytes → the standard library's MIME tree, with explicit caps checked while it is built.

The stdlib parser is linear in the size of the mail except in three places that hostile mail can
reach: every line is matched against the boundary of every open multipart (work × nesting depth,
and a RecursionError near 1,000 levels), ``_parseparam`` is quadratic in the ``;`` of a
Content-Type or Content-Disposition, and every part costs a Message object.  The caps below are
enforced from hooks the parser calls as it goes (the policy's ``header_source_parse`` for every
header, the ``message_factory`` for every part, ``attach`` for every nesting), so a message over a
cap costs no more than the cap allows before :class:`ParseLimitError` stops it.
"""

from __future__ import annotations

import email.parser
import re
from dataclasses import dataclass
from email.message import Message
from email.policy import Compat32, Policy
from typing import Any

__all__ = [
    "DEFAULT_LIMITS", "MAX_PARAMETERS", "POLICY", "ParseError", "ParseLimitError", "ParseLimits", "RawPolicy",
    "build_tree",
]

# Parameters (";") in one Content-Type or Content-Disposition.  The stdlib's parameter parser costs
# parameters × header length on every call; real headers carry fewer than 40 (RFC 2231 continuations
# of a long file name included).  Not a setting: no real mail comes near it.
MAX_PARAMETERS = 100
_PARAMETER_HEADERS = frozenset({"content-type", "content-disposition"})


class ParseError(Exception):
    """The input holds nothing usable as a message (empty, or neither headers nor body)."""


class ParseLimitError(ParseError):
    """The message is over one of the :class:`ParseLimits`; the text names the cap and its setting."""


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Caps beyond which a message is quarantined instead of parsed (each keeps parsing linear)."""

    max_parts: int = 1000  # MIME entities, the top-level message and forwarded messages included
    max_header_bytes: int = 256 * 1024  # one header block (the message's, or any one part's)
    max_depth: int = 20  # multipart / message/rfc822 nesting below the top-level message


class _Budget:
    """What one parse has used so far; raises :class:`ParseLimitError` at the first cap passed."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.parts = 0
        self.block = 0  # bytes of the header block being read

    def new_part(self) -> None:
        self.parts += 1
        self.block = 0
        cap = self.limits.max_parts
        if self.parts > cap:
            raise ParseLimitError(f"more than {cap:,} MIME parts, over the limit of {cap:,} (intake.max_parts)")

    def nest(self, depth: int) -> None:
        cap = self.limits.max_depth
        if depth > cap:
            raise ParseLimitError(
                f"MIME parts nested more than {cap:,} deep, over the limit of {cap:,} (intake.max_depth)"
            )

    def header(self, lines: list[str]) -> None:
        """One header as the parser read it (its lines); called for every header, so kept cheap."""
        self.block += sum(map(len, lines))
        cap = self.limits.max_header_bytes
        if self.block > cap:
            where = "the header block" if self.parts <= 1 else f"the header block of MIME part {self.parts:,}"
            raise ParseLimitError(
                f"{where} has more than {cap:,} bytes, over the limit of {cap:,} (intake.max_header_bytes)"
            )
        if lines[0][:1] in "cC":
            name = lines[0].partition(":")[0]
            if name.lower() in _PARAMETER_HEADERS:
                count = sum(line.count(";") for line in lines)
                if count > MAX_PARAMETERS:
                    raise ParseLimitError(
                        f"a {name} header with {count:,} parameters, over the fixed limit of {MAX_PARAMETERS}"
                    )


class RawPolicy(Compat32):
    """compat32, but header access returns the stored str (8-bit bytes as surrogates), never a
    ``Header`` object: charset.decode_header recovers the bytes and decodes them itself.

    With a ``budget`` (set by :func:`build_tree` on a clone) every header is counted as it is read.
    """

    budget: _Budget | None = None

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        if self.budget is not None:
            self.budget.header(sourcelines)
        return super().header_source_parse(sourcelines)


DEFAULT_LIMITS = ParseLimits()
_PLAIN_POLICY = RawPolicy()


class _Part(Message):
    """A Message that counts itself into the budget and knows how deep it sits."""

    mime_depth = 0

    def __init__(self, policy: Policy[Any] = _PLAIN_POLICY) -> None:
        super().__init__(policy)
        budget = getattr(policy, "budget", None)
        if budget is not None:
            budget.new_part()

    def attach(self, payload: Any) -> None:
        if isinstance(payload, _Part):
            payload.mime_depth = self.mime_depth + 1
            budget = getattr(self.policy, "budget", None)
            if budget is not None:
                budget.nest(payload.mime_depth)
        super().attach(payload)


POLICY = RawPolicy(message_factory=_Part)


# The top-level header lines as the stdlib parser takes them (an optional Unix "From " line, then
# "Name:" or continuation lines), stopping early at anything unusual: a lower bound, never more.
_HEADER_RUN = re.compile(
    rb"(From [^\r\n]*(?:\r\n|\r|\n))?"
    rb"(?:(?:[\x21-\x39\x3b-\x7e]+:|[ \t])[^\r\n\x0b\x0c\x1c-\x1e]*(?:\r\n|\r|\n|\Z))*"
)


def _check_header_block(data: bytes, limits: ParseLimits) -> None:
    """Refuse an oversized top-level header block from the first ``max_header_bytes`` alone.

    The stdlib would read a 50 MB header line whole (1.4 s, 500 MB) before the budget sees it.
    """
    cap = limits.max_header_bytes
    match = _HEADER_RUN.match(data, 0, cap + 1 + 8192)
    if match is None:
        return
    unix_from = match.end(1) if match.group(1) is not None else 0  # not a header: the parser keeps it aside
    if match.end() - unix_from > cap:
        _Budget(limits).header([" " * (cap + 1)])


def build_tree(data: bytes, limits: ParseLimits, *, headersonly: bool = False) -> Message:
    """The stdlib MIME tree of ``data``; :class:`ParseLimitError` as soon as a cap is passed."""
    _check_header_block(data, limits)
    policy = POLICY.clone(budget=_Budget(limits))  # type: ignore[call-arg]  # typeshed lists only stdlib fields
    return email.parser.BytesParser(policy=policy).parsebytes(data, headersonly=headersonly)
