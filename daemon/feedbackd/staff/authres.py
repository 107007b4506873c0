"""Whether the receiving server authenticated the sender's domain (RFC 8601 ``Authentication-Results``).

Trust: only the TOPMOST ``Authentication-Results`` header counts, and only when its authserv-id is
the configured ``[staff] authserv_id``.  Anything below it was written before the mail reached our
server, so anyone could have written it.  This holds only if the server named by ``authserv_id``
adds its header to every message it accepts (Postfix with OpenDKIM/OpenDMARC, rspamd, Exim,
Microsoft 365 and Gmail all do); RFC 8601 section 5 also asks it to remove forged headers
carrying its own id.  If a later hop adds one of its own above it, name that hop instead.

What passes, for the From domain ``sender_domain``:
- ``dkim=pass`` whose ``header.d`` (or the domain of ``header.i``) is the sender's domain;
- ``spf=pass`` whose ``smtp.mailfrom`` (an address or a domain) is the sender's domain;
- ``dmarc=pass`` whose ``header.from`` is the sender's domain (DMARC is an aligned DKIM or SPF pass).
Subdomains (``relaxed``, the default): the sender's domain may be a subdomain of the authenticated
one (``desk@hq.city.example`` with ``d=city.example``), as DMARC's relaxed alignment allows; whoever
publishes keys or SPF for ``city.example`` controls its subdomains anyway.  The other way round is
refused (``d=mail.city.example`` does not vouch for ``city.example``: a subdomain may belong to
someone else, such as a hosting customer), and a single-label domain never vouches for anything.
Domain authentication trusts the sender's provider to keep its users from using each other's
From addresses (the large providers enforce that); the signed reply address is the second factor.

The parser is linear in the header's length (one left-to-right scan; nested comments are counted,
not recursed into) and refuses a header longer than ``max_length`` instead of cutting it, since a
cut value (``city.example.evil`` → ``city.example``) could turn into a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER = "authentication-results"
MAX_LENGTH = 64 * 1024  # real headers are well under 4 KiB, even with ARC and many signatures

_WS = re.compile(r"\s+")
_ATOM = re.compile(r'[^\s()";=\\]+')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)  # an unterminated string runs to the end
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_COMMENT_MARK = re.compile(r"[()\\]")
_VERSION = re.compile(r"[0-9]{1,9}")
_DOMAIN = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word", ";" or "="
    text: str
    glued: bool  # nothing (no space, no comment) between it and the token before


@dataclass
class Result:
    """One ``method=result`` with its properties (``header.d``, ``smtp.mailfrom``, ``reason``…)."""

    method: str
    result: str
    props: dict[str, str] = field(default_factory=dict)

    def prop(self, name: str) -> str:
        return self.props.get(name, "")


@dataclass
class Header:
    authserv_id: str
    results: list[Result]


def authenticated(headers: list[tuple[str, str]], authserv_id: str, sender_domain: str, *,
                  relaxed: bool = True, max_length: int = MAX_LENGTH) -> tuple[bool, str]:
    """Whether the topmost ``Authentication-Results`` from ``authserv_id`` shows a pass for ``sender_domain``.

    Returns (ok, reason): the reason names the pass, or why there is none (domains only, bounded).
    """
    if not authserv_id.strip():
        return False, "no authserv_id configured"
    value = next((v for name, v in headers if name.strip().lower() == HEADER), None)
    if value is None:
        return False, "no Authentication-Results header"
    if len(value) > max_length:
        return False, f"topmost Authentication-Results header longer than {max_length} characters"
    header = parse(value)
    if header is None:
        return False, "topmost Authentication-Results header unreadable"
    if header.authserv_id.lower() != authserv_id.strip().lower():
        return False, f"topmost Authentication-Results is from {_shown(header.authserv_id)}, not {authserv_id.strip()}"
    sender = normal_domain(sender_domain)
    if not sender:
        return False, "no sender domain"
    for result in header.results:
        domain = passed_domain(result)
        if domain and aligned(domain, sender, relaxed=relaxed):
            return True, f"{result.method}=pass for {_shown(domain)}"
    return False, f"no dkim or spf pass for {_shown(sender)}" + _summary(header.results)


def parse(value: str) -> Header | None:
    """The authserv-id and the results of one header value; None when there is no readable authserv-id.

    A result that does not read as ``method=result *(property=value)`` is dropped, never guessed at.
    """
    segments = _segments(tokenize(value))
    head = [t for t in segments[0] if t.kind == "word"]
    if not head or len(head) != len(segments[0]) or len(head) > 2:
        return None
    if len(head) == 2 and not _VERSION.fullmatch(head[1].text):
        return None
    results = [r for r in (_result(s) for s in segments[1:]) if r is not None]
    return Header(authserv_id=head[0].text, results=results)


def tokenize(value: str) -> list[Token]:
    """Words, ``;`` and ``=``, with comments and white space (folding included) dropped, in one scan."""
    tokens: list[Token] = []
    pieces: list[str] = []  # the word being read: atoms and quoted strings with nothing between them
    pos, end, glued, word_glued = 0, len(value), False, False
    while pos < end:
        char = value[pos]
        if char.isspace() or char in "();=":
            if pieces:
                tokens.append(Token("word", "".join(pieces), word_glued))  # "john doe"@example.com is one word
                pieces = []
            if char in ";=":
                tokens.append(Token(char, char, glued))
                pos, glued = pos + 1, True
            else:
                pos, glued = _skip_comment(value, pos) if char == "(" else _skip_space(value, pos), False
            continue
        if char == '"':
            quoted = _QUOTED.match(value, pos)
            assert quoted is not None  # the pattern always matches at a quote
            piece, pos = _QUOTED_PAIR.sub(r"\1", quoted[1]), quoted.end()
        elif char == "\\":
            piece, pos = value[pos + 1 : pos + 2], pos + 2
        else:
            atom = _ATOM.match(value, pos)
            assert atom is not None  # every other character starts an atom
            piece, pos = atom[0], atom.end()
        if not pieces:
            word_glued = glued
        pieces.append(piece)
        glued = True
    if pieces:
        tokens.append(Token("word", "".join(pieces), word_glued))
    return tokens


def passed_domain(result: Result) -> str:
    """The domain a passing DKIM, SPF or DMARC result authenticates; "" for anything else."""
    if result.result != "pass":
        return ""
    if result.method == "dkim":
        return normal_domain(result.prop("header.d")) or _address_domain(result.prop("header.i"))
    if result.method == "spf":
        return _address_domain(result.prop("smtp.mailfrom"))
    if result.method == "dmarc":
        return _address_domain(result.prop("header.from"))
    return ""


def aligned(authenticated_domain: str, sender_domain: str, *, relaxed: bool = True) -> bool:
    """Equal, or (relaxed) the sender's domain is a subdomain of a multi-label authenticated domain."""
    if authenticated_domain == sender_domain:
        return True
    return relaxed and "." in authenticated_domain and sender_domain.endswith("." + authenticated_domain)


def normal_domain(domain: str) -> str:
    """Lower-case, without a trailing dot, internationalised names as A-labels (xn--…); "" when not a domain."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or len(domain) > 253:
        return ""
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return domain if _DOMAIN.fullmatch(domain) else ""


def _address_domain(value: str) -> str:
    return normal_domain(value.rpartition("@")[2])


def _skip_space(value: str, pos: int) -> int:
    """After white space, or after a stray ``)`` (no comment is open), which is dropped."""
    space = _WS.match(value, pos)
    return space.end() if space else pos + 1


def _skip_comment(value: str, pos: int) -> int:
    """The position after the comment opening at ``pos``; nesting is counted, quoted pairs skipped."""
    depth = 0
    while True:
        mark = _COMMENT_MARK.search(value, pos)
        if mark is None:
            return len(value)  # unterminated: the rest is comment
        char, pos = mark[0], mark.end()
        if char == "\\":
            pos += 1
        elif char == "(":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos


def _segments(tokens: list[Token]) -> list[list[Token]]:
    segments: list[list[Token]] = [[]]
    for token in tokens:
        if token.kind == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def _result(tokens: list[Token]) -> Result | None:
    """``method[/version]=result`` then ``key=value`` pairs; None when the segment is anything else."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(tokens):
        if pos + 2 >= len(tokens):
            return None
        key, equals, val = tokens[pos], tokens[pos + 1], tokens[pos + 2]
        if key.kind != "word" or equals.kind != "=" or val.kind != "word":
            return None
        parts, pos = [val.text], pos + 3
        while pos < len(tokens) and tokens[pos].glued and tokens[pos].kind != ";":
            parts.append(tokens[pos].text)  # base64 padding: header.b=ab12==
            pos += 1
        pairs.append((key.text.lower(), "".join(parts)))
    if not pairs:
        return None
    method, result = pairs[0]
    props: dict[str, str] = {}
    for name, text in pairs[1:]:
        props.setdefault(name, text)
    return Result(method=method.partition("/")[0].strip(), result=result.lower(), props=props)


def _summary(results: list[Result], limit: int = 4) -> str:
    """`` (dkim=fail city.example, spf=pass other.example)``: what was there instead, bounded."""
    shown = []
    for result in results[:limit]:
        domain = (normal_domain(result.prop("header.d")) or _address_domain(result.prop("header.i"))
                  or _address_domain(result.prop("smtp.mailfrom")) or _address_domain(result.prop("header.from")))
        what = f"{_shown(result.method, 16)}={_shown(result.result, 16)}"
        shown.append(f"{what} {_shown(domain)}" if domain else what)
    if len(results) > limit:
        shown.append(f"{len(results) - limit} more")
    return f" ({', '.join(shown)})" if shown else " (no results)"


def _shown(text: str, limit: int = 64) -> str:
    """Header text fit for a reason line: printable, bounded."""
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")
