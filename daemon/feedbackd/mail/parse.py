"""Raw RFC 5322 bytes → :class:`ParsedMessage`, for mail as Chinese and Western clients send it.

The standard library parser with the compat32 API builds the MIME tree (3.5× faster than
``policy.default``, and it does not raise on unknown charsets); all decoding is done here and in
``charset`` so that gb2312-declared GBK, undeclared 8-bit and bogus charsets come out readable.
Everything that needed a fallback is listed in ``ParsedMessage.defects``; only hopeless input
raises :class:`ParseError`, and mail over one of the :class:`ParseLimits` raises
:class:`ParseLimitError` (the pipeline quarantines both with the message as the reason).  Every step
is linear in the size of the mail: the caps bound what the stdlib parser does (see ``tree``), and
the regular expressions here cannot backtrack over a long run of one character.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from feedbackd.mail.charset import cjk_count, decode_bytes, decode_header, raw_header_bytes, to_text, unfold
from feedbackd.mail.html import html_to_text
from feedbackd.mail.message import Address, Attachment, ParsedMessage
from feedbackd.mail.tree import DEFAULT_LIMITS, ParseError, ParseLimitError, ParseLimits, build_tree
from feedbackd.mail.tree import POLICY as _POLICY

__all__ = ["ParseError", "ParseLimitError", "ParseLimits", "parse_message", "safe_filename"]

MAX_REFERENCES = 100  # hostile References headers are cut to the first and the last 99
FORWARDED_TEXT_LIMIT = 20_000  # characters of a forwarded message copied into the text
FILENAME_BYTES = 150
DATE_YEARS = (1970, 2200)  # a Date outside these years (in UTC) is dropped: later arithmetic would overflow

_ANGLE_ID = re.compile(r"<([^<>]*)>")
_ID_SPLIT = re.compile(r"[\s,]+")
_WS_RUN = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_ADDRESS_HARD = re.compile(r'[,;()\\]|<.*<|".*".*"')
# Whole-string matches of one character class each side of the "@": no two quantifiers can share
# a character, so they never backtrack (the old one-regex fast path took seconds on 32,000 spaces).
_ADDR_SPEC = re.compile(r"[^<>@\s]+@[^<>@\s]+")
_BARE_ADDR_SPEC = re.compile(r'[^<>@\s"]+@[^<>@\s"]+')
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_LATIN_LETTER = re.compile(r"[A-Za-z]")
_LANGUAGE_SAMPLE = 5000


def parse_message(raw: bytes, *, attachment_limit: int = 10 * 1024 * 1024,
                  limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse one message.  Never raises for bytes input except :class:`ParseError`, of which
    :class:`ParseLimitError` says which of ``limits`` the message is over."""
    data = bytes(raw)
    if not data or data.isspace():
        raise ParseError("empty message")
    try:
        msg = build_tree(data, limits)
    except ParseLimitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a stdlib parser bug must not cost the message
        return _headers_only(data, limits, f"parser failed ({type(exc).__name__}), body kept undecoded")
    if not msg.keys() and not _has_body(msg):
        raise ParseError("no headers and no body")
    try:
        return _Builder(msg, attachment_limit).build()
    except Exception as exc:  # noqa: BLE001 - keep the message, record why it is degraded
        return _headers_only(data, limits, f"internal error {type(exc).__name__}: {exc}"[:200])


def _has_body(msg: Message) -> bool:
    payload = msg.get_payload()
    return bool(payload.strip()) if isinstance(payload, str) else bool(payload)


class _Builder:
    """Collects one message's pieces during a single walk of the MIME tree."""

    def __init__(self, msg: Message, attachment_limit: int, depth: int = 0) -> None:
        self.msg = msg
        self.limit = attachment_limit
        self.depth = depth
        self.defects: list[str] = []
        self.segments: list[str] = []
        self.html: str | None = None
        self.attachments: list[Attachment] = []
        self.names = _Names()
        self.forwarded = 0
        self.in_report = False

    def build(self) -> ParsedMessage:
        headers = self._headers()
        first: dict[str, str] = {}
        for name, value in headers:
            first.setdefault(name.lower(), value)
        self._walk(self.msg, 0, quiet=False)
        text = "\n\n".join(s.strip("\n") for s in self.segments if s.strip()).rstrip()
        subject = _WS_RUN.sub(" ", first.get("subject", "")).strip()
        return self.assemble(headers, subject, text, html=self.html, attachments=self.attachments)

    def assemble(self, headers: list[tuple[str, str]], subject: str, text: str, *, html: str | None,
                 attachments: list[Attachment], first_defects: tuple[str, ...] = ()) -> ParsedMessage:
        """The message from its decoded headers and the body parts found (shared with the degraded path).

        The defects are gathered last: reading the address, ID and date headers may add some.
        """
        senders = self._addresses("from")
        in_reply_to, references = self._ids("in-reply-to"), self._ids("references")
        to, cc, reply_to = self._addresses("to"), self._addresses("cc"), self._addresses("reply-to")
        date = self._date()
        return ParsedMessage(
            message_id=_first_id(self.msg.get("message-id")),
            in_reply_to=in_reply_to,
            references=references,
            subject=subject,
            sender=senders[0] if senders else None,
            to=to,
            cc=cc,
            reply_to=reply_to,
            date=date,
            headers=headers,
            text=text,
            html=html,
            attachments=attachments,
            content_type=to_text(self.msg.get_content_type().lower()),
            defects=_unique([*first_defects, *self.defects]),
            language=detect_language(subject + "\n" + text[:_LANGUAGE_SAMPLE]),
        )

    # ---- headers -------------------------------------------------------------------------
    def _headers(self) -> list[tuple[str, str]]:
        out = []
        for name, value in self.msg.raw_items():
            text, note = decode_header(value)
            name = to_text(name)
            if note:
                self.defects.append(f"{name}: {note}")
            out.append((name, text.strip()))
        return out

    def _addresses(self, name: str) -> list[Address]:
        out: list[Address] = []
        for raw in self.msg.get_all(name, []):
            value = unfold(str(raw))
            data = raw_header_bytes(value)
            if data is not None:
                value = decode_bytes(data)[0]  # the header list already notes the fallback
            try:
                pairs = _split_addresses(value)
            except RecursionError:  # getaddresses() recurses on nested "(" and ":" groups
                self.defects.append(f"{name.title()}: nested too deeply to read")
                continue
            for display, addr in pairs:
                addr = to_text(addr.strip().strip("<>").lower())
                if not _plausible_address(addr):
                    continue
                out.append(Address(name=_display_name(display), addr=addr))
        return out

    def _ids(self, name: str) -> list[str]:
        ids: list[str] = []
        for raw in self.msg.get_all(name, []):
            ids.extend(_message_ids(str(raw)))
        ids = _unique(ids)
        if len(ids) > MAX_REFERENCES:
            self.defects.append(f"{name}: {len(ids)} ids, kept first and last {MAX_REFERENCES - 1}")
            ids = ids[:1] + ids[-(MAX_REFERENCES - 1) :]
        return ids

    def _date(self) -> datetime | None:
        raw = self.msg.get("date")
        if raw is None:
            return None
        try:
            value = parsedate_to_datetime(unfold(to_text(str(raw))))
        except (TypeError, ValueError, IndexError, OverflowError):
            self.defects.append("Date: unparseable")
            return None
        if value.tzinfo is None:
            self.defects.append("Date: no time zone, assumed UTC")
            value = value.replace(tzinfo=UTC)
        if not _sane_date(value):
            self.defects.append(f"Date: out of range ({value.isoformat()})")
            return None
        return value

    # ---- MIME walk -----------------------------------------------------------------------
    def _walk(self, part: Message, depth: int, *, quiet: bool) -> None:
        """quiet: inside an alternative we did not choose; keep its HTML and attachments, not its text."""
        self.defects.extend(type(d).__name__ for d in part.defects)
        ctype = to_text(part.get_content_type().lower())
        if ctype == "message/rfc822" or (ctype.startswith("message/") and part.is_multipart()):
            self._embedded(part, ctype, quiet=quiet)
            return
        if part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            if ctype == "multipart/alternative" and children:
                chosen = self._choose_alternative(children)
                for child in children:
                    self._walk(child, depth + 1, quiet=quiet or child is not chosen)
                return
            was_report, self.in_report = self.in_report, self.in_report or ctype == "multipart/report"
            for child in children:
                self._walk(child, depth + 1, quiet=quiet)
            self.in_report = was_report
            return
        self._leaf(part, ctype, quiet=quiet)

    def _leaf(self, part: Message, ctype: str, *, quiet: bool) -> None:
        disposition = (part.get_content_disposition() or "").lower()
        if ctype.startswith("multipart/"):
            # A multipart whose boundary was never found: its raw body is the best text we have.
            self.defects.append(f"{ctype} without readable parts, body kept as text")
            if not quiet:
                self.segments.append(self._text_of(part, "body"))
            return
        name = self._filename(part)
        # A text part with a name= but no "attachment" disposition is still the body when it is
        # the first text we meet (some clients name every part); mail-parser gets this wrong.
        body_like = ctype in ("text/plain", "text/html") and disposition != "attachment"
        if body_like and (not name or (not self.segments and self.html is None)):
            if ctype == "text/html":
                html = self._text_of(part, "html body")
                if self.html is None:
                    self.html = html
                if not quiet:
                    self.segments.append(html_to_text(html))
            elif not quiet:
                self.segments.append(self._text_of(part, "body"))
            return
        payload = part.get_payload(decode=True)
        self._add_attachment(name, ctype, payload if isinstance(payload, bytes) else b"", None)

    def _choose_alternative(self, children: list[Message]) -> Message:
        """Plain text when it says something, else the (last) HTML-bearing child, else the first."""
        for child in children:
            if child.get_content_type() == "text/plain" and child.get_content_disposition() != "attachment":
                payload = child.get_payload(decode=True)
                if isinstance(payload, bytes) and payload.strip():
                    return child
        for child in reversed(children):
            if _contains(child, "text/html"):
                return child
        return children[0]

    def _text_of(self, part: Message, label: str) -> str:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        params = _params(part)
        charset = params.get("charset")
        if not charset and label == "html body":
            found = _META_CHARSET.search(data[:2048])
            charset = found.group(1).decode("ascii") if found else None
        text, note = decode_bytes(data, charset)
        if note:
            self.defects.append(f"{label}: {note}")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if label == "body" and params.get("format", "").lower() == "flowed":
            text = _unflow(text, params.get("delsp", "").lower() == "yes")
        return text

    # ---- attachments ---------------------------------------------------------------------
    def _embedded(self, part: Message, ctype: str, *, quiet: bool) -> None:
        """message/rfc822 is kept whole as .eml; outside a bounce its gist also goes into the text."""
        inner = part.get_payload()
        inner_msg = inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], Message) else None
        if ctype == "message/rfc822" and inner_msg is not None:
            data = _as_bytes(inner_msg)
            self.forwarded += 1
            fallback = f"forwarded-{self.forwarded}.eml"
            if not quiet and not self.in_report and self.depth < 3:
                self.segments.append(self._forwarded_block(inner_msg))
        else:
            data = b"\n".join(_as_bytes(m) for m in (inner or []) if isinstance(m, Message))
            fallback = f"{ctype.partition('/')[2] or 'message'}-{len(self.attachments) + 1}.txt"
        self._add_attachment(self._filename(part), ctype, data, fallback)

    def _forwarded_block(self, inner: Message) -> str:
        sub = _Builder(inner, self.limit, self.depth + 1)
        try:
            parsed = sub.build()
        except Exception as exc:  # noqa: BLE001 - a broken forwarded message must not lose the outer one
            self.defects.append(f"forwarded message unreadable: {type(exc).__name__}")
            return ""
        lines = ["---- forwarded message ----"]
        if parsed.sender:
            who = f"{parsed.sender.name} <{parsed.sender.addr}>" if parsed.sender.name else parsed.sender.addr
            lines.append(f"From: {who}")
        if parsed.date:
            lines.append(f"Date: {parsed.date.isoformat()}")
        lines.append(f"Subject: {parsed.subject}")
        body = parsed.text
        if len(body) > FORWARDED_TEXT_LIMIT:
            body = body[:FORWARDED_TEXT_LIMIT] + "\n[…]"
        return "\n".join(lines) + "\n\n" + body

    def _add_attachment(self, name: str | None, ctype: str, data: bytes, fallback: str | None) -> None:
        index = len(self.attachments) + 1
        filename = safe_filename(name or "", ctype, index, fallback=fallback)
        filename = self.names.claim(filename)
        if len(data) > self.limit:
            self.defects.append(f"attachment {filename}: {len(data)} bytes, over the limit, not kept")
            self.attachments.append(Attachment(filename, ctype, b"", truncated=True, size=len(data)))
        else:
            self.attachments.append(Attachment(filename, ctype, data, size=len(data)))

    def _filename(self, part: Message) -> str | None:
        for header, param in (("content-disposition", "filename"), ("content-type", "name")):
            try:
                value = part.get_param(param, None, header=header)
            except Exception:  # noqa: BLE001 - malformed RFC 2231 continuations
                self.defects.append(f"{header}: unreadable {param}")
                continue
            if value is None:
                continue
            if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded latin-1 text)
                charset, _lang, text = value
                data = str(text).encode("latin-1", errors="surrogateescape")
                name, note = decode_bytes(data, charset or None)
            else:
                name, note = decode_header(str(value))
            if note:
                self.defects.append(f"{param}: {note}")
            if name.strip():
                return name
        return None


# ---- small helpers ---------------------------------------------------------------------------
def _params(part: Message) -> dict[str, str]:
    """Content-Type parameters, lower-case names, RFC 2231 values flattened to their text."""
    try:
        pairs = part.get_params() or []
    except Exception:  # noqa: BLE001 - malformed parameters are just absent
        return {}
    out: dict[str, str] = {}
    for key, value in pairs[1:]:
        if isinstance(value, tuple):
            value = value[2]
        out.setdefault(key.lower(), str(value))
    return out


def _as_bytes(msg: Message) -> bytes:
    """The message serialised again (close to, not exactly, the bytes received)."""
    try:
        return msg.as_bytes(policy=_POLICY)
    except Exception:  # noqa: BLE001 - a generator failure must not cost the outer message
        return b""


def _contains(part: Message, ctype: str) -> bool:
    if part.is_multipart():
        payload = part.get_payload()
        return any(_contains(child, ctype) for child in payload if isinstance(child, Message))
    return part.get_content_type() == ctype


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next one."""
    out: list[str] = []
    pending: list[str] = []  # joined once per paragraph: += on a growing str is quadratic
    for line in text.split("\n"):
        line = line.removeprefix(" ")  # space stuffing
        if line.endswith(" ") and line != "-- ":
            pending.append(line[:-1] if delsp else line)
        else:
            pending.append(line)
            out.append("".join(pending))
            pending = []
    rest = "".join(pending)
    if rest:
        out.append(rest)
    return "\n".join(out)


def _message_ids(value: str) -> list[str]:
    """Ids from In-Reply-To/References: the <...> ones; bare tokens with an @ when there are none."""
    value = unfold(to_text(value))
    found = [_WS_RUN.sub("", m) for m in _ANGLE_ID.findall(value)]
    found = [m for m in found if m]
    if found:
        return found
    return [t.strip("<>") for t in _ID_SPLIT.split(value) if "@" in t and t.strip("<>")]


def _first_id(raw: object) -> str | None:
    if raw is None:
        return None
    ids = _message_ids(str(raw))
    if ids:
        return ids[0]
    token = unfold(to_text(str(raw))).strip().strip("<>").strip()
    return token if token and not _WS_RUN.search(token) else None


def _split_addresses(value: str) -> list[tuple[str, str]]:
    """getaddresses(), with a fast path for the common single ``Name <addr>`` or bare address."""
    if not _ADDRESS_HARD.search(value):
        simple = _simple_address(value)
        if simple is not None:
            return [simple]
    return getaddresses([value])


def _simple_address(value: str) -> tuple[str, str] | None:
    """``Name <addr>``, ``"Name" <addr>`` or a bare ``addr``; None for anything getaddresses must read."""
    value = value.strip()
    if not value.endswith(">"):
        return ("", value) if _BARE_ADDR_SPEC.fullmatch(value) else None
    name, lt, addr = value[:-1].rpartition("<")
    if not lt or not _ADDR_SPEC.fullmatch(addr):
        return None
    name = name.rstrip().removeprefix('"').removesuffix('"')
    if '"' in name or "<" in name or ">" in name:
        return None
    return name, addr


def _plausible_address(addr: str) -> bool:
    local, at, domain = addr.rpartition("@")
    return (
        bool(at and local and domain)
        and len(addr) <= 254
        and not _WS_RUN.search(addr)
        and "@" not in domain
        and "." not in (domain[0], domain[-1])
        and addr.isprintable()
    )


def _display_name(display: str) -> str:
    if "=?" in display or not display.isascii():
        display = decode_header(display)[0]
    return to_text(_WS_RUN.sub(" ", display).strip().strip("\"'").strip())


def safe_filename(name: str, content_type: str, index: int, *, fallback: str | None = None) -> str:
    """A file name safe on any file system: no path, no control or reserved characters, ≤150 bytes."""
    name = unicodedata.normalize("NFC", to_text(name)).replace("\\", "/").rpartition("/")[2]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_NAME_CHARS.sub("_", _WS_RUN.sub(" ", name))
    name = name.strip().lstrip(".").strip().rstrip(". ")
    if not name:
        return fallback or f"attachment-{index}{_extension(content_type)}"
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    return _fit(name, FILENAME_BYTES)


def _fit(name: str, limit: int) -> str:
    """Cut the stem, never the extension, until the UTF-8 form fits ``limit`` bytes."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode("utf-8")) > 20:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = limit - len(suffix.encode("utf-8"))
    encoded = stem.encode("utf-8")[:budget]
    return encoded.decode("utf-8", errors="ignore").rstrip(". ") + suffix


def _extension(content_type: str) -> str:
    if content_type == "message/rfc822":
        return ".eml"
    guessed = mimetypes.guess_extension(content_type, strict=False)
    if guessed:
        return guessed
    return ".txt" if content_type.startswith("text/") else ".bin"


class _Names:
    """Attachment file names, unique without regard to case: ``a.txt``, ``a-2.txt``, ``a-3.txt``, …

    The next number to try is kept per name, so a thousand parts all called ``a.txt`` cost a thousand
    probes, not half a million; ``probes`` counts them (the tests check that the work stays linear).
    """

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.next: dict[str, int] = {}
        self.probes = 0

    def claim(self, name: str) -> str:
        key = name.lower()
        if key not in self.taken:
            self.taken.add(key)
            return name
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext = name, ""
        n = self.next.get(key, 2)
        while True:
            self.probes += 1
            candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
            n += 1
            if candidate.lower() not in self.taken:
                break
        self.next[key] = n
        self.taken.add(candidate.lower())
        return candidate


def _sane_date(value: datetime) -> bool:
    """Between DATE_YEARS in UTC, so ``astimezone(UTC)`` and ``astimezone()`` cannot overflow.

    A year strictly inside 1..9999 is at most a day (the largest offset) from the edge, so the
    conversion used to check it is itself safe.
    """
    if not 1 < value.year < 9999:
        return False
    return DATE_YEARS[0] <= value.astimezone(UTC).year <= DATE_YEARS[1]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def detect_language(text: str) -> str | None:
    """Return "zh" when ideographs carry a real share of the text, "en" when it is mostly ASCII letters."""
    cjk = cjk_count(text)
    latin = len(_LATIN_LETTER.findall(text))
    # One ideograph carries about as much as a three-letter stretch of English.
    if cjk >= 2 and cjk * 3 >= 0.25 * (cjk * 3 + latin):
        return "zh"
    visible = len(text) - text.count(" ") - text.count("\n")
    if latin >= 3 and latin >= 0.5 * visible and cjk * 3 < latin:
        return "en"
    return None


def _headers_only(data: bytes, limits: ParseLimits, reason: str) -> ParsedMessage:
    """Degraded result when the MIME tree cannot be built: headers decoded, body as raw text."""
    try:
        msg = build_tree(data, limits, headersonly=True)
        builder = _Builder(msg, 0)
        headers = builder._headers()
        body = msg.get_payload(decode=True)  # bytes; get_payload() would replace 8-bit with U+FFFD
        raw_body = body if isinstance(body, bytes) else b""
        text, _note = decode_bytes(raw_body)
        subject = next((v for k, v in headers if k.lower() == "subject"), "")
        return builder.assemble(headers, subject, text.replace("\r\n", "\n"), html=None, attachments=[],
                                first_defects=(reason,))
    except ParseLimitError:
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: the whole input as text
        return _text_only(data, f"{reason}; headers unreadable too ({type(exc).__name__})")


def _text_only(data: bytes, reason: str) -> ParsedMessage:
    try:
        text = decode_bytes(data)[0].replace("\r\n", "\n")
    except Exception as exc:
        raise ParseError(reason) from exc
    return ParsedMessage(
        message_id=None, in_reply_to=[], references=[], subject="", sender=None, to=[], cc=[],
        reply_to=[], date=None, headers=[], text=text, html=None, defects=[reason],
    )  # fmt: skip
