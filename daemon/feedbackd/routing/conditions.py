"""Conditions: the predicates a rule can test, compiled once per rule set.

``compile_condition`` turns a validated ``model.Condition`` into a plain function of a
``MessageView``; every regular expression and glob is compiled here, once.  A ``MessageView``
wraps one message for one evaluation and computes each normalised, case-folded text at most once,
however many rules look at it.

Text matching (``contains``, ``contains-any``, ``contains-all``, ``equals``, ``glob``) compares
normalised text: full-width letters and digits as ASCII (``ＡＢＣ１２３`` is ``ABC123``), case-folded unless
``case-sensitive``, runs of white space as one space, and no white space between two Chinese
characters (mail clients wrap Chinese lines anywhere).  Keywords are normalised the same way, so a
Chinese keyword matches wherever it occurs, without any notion of word boundaries.  ``regex`` is
the exception: it searches the text as received, with ``re.IGNORECASE | re.MULTILINE``, and only
when one of the literals the expression requires is present (``literals``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

from feedbackd.mail.message import ParsedMessage
from feedbackd.routing import model
from feedbackd.routing.literals import fold, required_literals

_HAN = "\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_HAN_GAP = re.compile(rf" (?<=[{_HAN}] )(?=[{_HAN}])")  # starts with a space: cheap to scan for
_WIDE = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
_NARROW = str.maketrans({c: c - 0xFEE0 for c in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B),
                                                  *range(0xFF41, 0xFF5B)]})

# Headers that carry the address a message was delivered to, so aliases of one mailbox
# (complaints@, suggestions@) can be told apart even when the citizen used Bcc.
_ADDR_SPEC = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Forwarded-To")


def normalise(text: str) -> str:
    """Full-width letters and digits as ASCII, white space collapsed, none between Chinese characters.

    (Not full NFKC: that costs ~70 µs on a Chinese body, and would also rewrite the full-width
    punctuation people type in Chinese keywords.)
    """
    if text.isascii():
        return " ".join(text.split())
    if _WIDE.search(text):
        text = text.translate(_NARROW)
    text = " ".join(text.split())  # str.split also splits at the ideographic space U+3000
    return _HAN_GAP.sub("", text) if " " in text else text


class Texts:
    """One text in the forms matching needs: as received, normalised, and case-folded.

    ``raw_folded`` (the text as received, case-folded) is only computed when a regular
    expression's literal pre-filter asks for it.
    """

    __slots__ = ("_raw_folded", "folded", "norm", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.norm = normalise(raw)
        self.folded = self.norm.casefold()
        self._raw_folded: str | None = None

    @property
    def raw_folded(self) -> str:
        if self._raw_folded is None:
            self._raw_folded = fold(self.raw)
        return self._raw_folded


class MessageView:
    """One message for one evaluation; derived texts are computed on first use and then cached."""

    __slots__ = ("_by_name", "_headers", "_recipients", "_texts", "msg")

    def __init__(self, msg: ParsedMessage) -> None:
        self.msg = msg
        self._texts: dict[str, Texts] = {}
        self._headers: dict[str, list[Texts]] = {}
        self._by_name: dict[str, list[str]] | None = None
        self._recipients: list[str] | None = None

    def header_values(self, name: str) -> list[str]:
        """All values of a header (name case-insensitive), from one pass over the headers."""
        if self._by_name is None:
            self._by_name = {}
            for key, value in self.msg.headers:
                self._by_name.setdefault(key.lower(), []).append(value)
        return self._by_name.get(name.lower(), [])

    def subject(self) -> Texts:
        return self._text("subject", self.msg.subject)

    def body(self) -> Texts:
        return self._text("body", self.msg.text)

    def header(self, name: str) -> list[Texts]:
        key = name.lower()
        found = self._headers.get(key)
        if found is None:
            found = self._headers[key] = [Texts(value) for value in self.header_values(key)]
        return found

    def sender(self) -> str | None:
        return self.msg.sender.addr if self.msg.sender else None

    def recipients(self) -> list[str]:
        """To, Cc and the envelope headers: every address this message was sent to, lower-case."""
        if self._recipients is None:
            found = [a.addr for a in self.msg.recipients]
            for name in ENVELOPE_HEADERS:  # machine-written, so a simple pattern reads them
                for value in self.header_values(name):
                    found += [addr.lower() for addr in _ADDR_SPEC.findall(value)]
            self._recipients = list(dict.fromkeys(found))
        return self._recipients

    def _text(self, key: str, raw: str) -> Texts:
        found = self._texts.get(key)
        if found is None:
            found = self._texts[key] = Texts(raw)
        return found


Predicate = Callable[[MessageView], bool]
TextMatch = Callable[[Texts], bool]
StrMatch = Callable[[str], bool]


# -- text ------------------------------------------------------------------------------------------


def _glob(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), flags | re.DOTALL)


def compile_text(test: model.TextTest) -> TextMatch:
    """All operators of one text test, as one function of ``Texts``."""
    cs = test.case_sensitive

    def prep(needle: str) -> str:
        return normalise(needle) if cs else normalise(needle).casefold()

    checks: list[TextMatch] = []
    if test.equals is not None:
        equals = prep(test.equals)
        checks.append((lambda t: t.norm == equals) if cs else (lambda t: t.folded == equals))
    needles = [prep(n) for n in ([test.contains] if test.contains else []) + list(test.contains_all or ())]
    if needles:
        checks.append((lambda t: all(n in t.norm for n in needles)) if cs else
                      (lambda t: all(n in t.folded for n in needles)))
    if test.contains_any:
        checks.append(_contains_any(tuple(dict.fromkeys(prep(n) for n in test.contains_any)), cs))
    if test.glob is not None:
        glob = _glob(prep(test.glob))
        checks.append((lambda t: glob.match(t.norm) is not None) if cs else
                      (lambda t: glob.match(t.folded) is not None))
    if test.regex is not None:
        checks.append(_regex(test.regex, re.MULTILINE | (0 if cs else re.IGNORECASE)))
    return _all(checks)


def _regex(pattern: str, flags: int) -> TextMatch:
    rx = re.compile(pattern, flags)
    literals = required_literals(pattern, flags)
    if literals is None:
        return lambda t: rx.search(t.raw) is not None

    def regex(t: Texts) -> bool:
        folded = t.raw_folded
        for literal in literals:
            if literal in folded:
                return rx.search(t.raw) is not None
        return False

    return regex


def _contains_any(needles: tuple[str, ...], case_sensitive: bool) -> TextMatch:
    def contains_any(t: Texts) -> bool:
        text = t.norm if case_sensitive else t.folded
        for needle in needles:  # noqa: SIM110 - a plain loop is faster than any() on this hot path
            if needle in text:
                return True
        return False

    return contains_any


def _all(checks: list[TextMatch]) -> TextMatch:
    if len(checks) == 1:
        return checks[0]
    return lambda t: all(check(t) for check in checks)


# -- addresses -------------------------------------------------------------------------------------


def compile_address(test: model.AddressTest) -> StrMatch:
    checks: list[StrMatch] = []
    if test.equals is not None:
        equals = test.equals
        checks.append(lambda a: a == equals)
    if test.domain is not None:
        domain, suffix = test.domain, "." + test.domain
        checks.append(lambda a: (d := a.rpartition("@")[2]) == domain or d.endswith(suffix))
    if test.glob is not None:
        glob = _glob(test.glob.lower())
        checks.append(lambda a: glob.match(a) is not None)
    if test.contains is not None:
        needle = test.contains.lower()
        checks.append(lambda a: needle in a)
    if test.contains_any:
        anyof = tuple(n.lower() for n in test.contains_any)
        checks.append(lambda a: any(n in a for n in anyof))
    if test.regex is not None:
        rx = re.compile(test.regex, re.IGNORECASE)
        checks.append(lambda a: rx.search(a) is not None)
    if len(checks) == 1:
        return checks[0]
    return lambda a: all(check(a) for check in checks)


# -- one predicate per condition key ---------------------------------------------------------------


def _sender(test: model.AddressTest) -> Predicate:
    match = compile_address(test)

    def sender(view: MessageView) -> bool:
        addr = view.sender()
        return addr is not None and match(addr)

    return sender


def _to(test: model.AddressTest) -> Predicate:
    match = compile_address(test)
    return lambda view: any(match(addr) for addr in view.recipients())


def _subject(test: model.TextTest) -> Predicate:
    match = compile_text(test)
    return lambda view: match(view.subject())


def _body(test: model.TextTest) -> Predicate:
    match = compile_text(test)
    return lambda view: match(view.body())


def _text(test: model.TextTest) -> Predicate:
    match = compile_text(test)
    return lambda view: match(view.subject()) or match(view.body())


def _header(test: model.HeaderTest) -> Predicate:
    name, exists = test.name, test.exists
    match = compile_text(test) if test.has_operator() else None

    def header(view: MessageView) -> bool:
        values = view.header(name)
        if exists is not None and bool(values) != exists:
            return False
        return match is None or any(match(v) for v in values)

    return header


def _attachment(test: model.AttachmentTest) -> Predicate:
    has = test.has
    ctype = _glob(test.type.lower()) if test.type else None
    fname = _glob(test.filename, re.IGNORECASE) if test.filename else None

    def attachment(view: MessageView) -> bool:
        found = view.msg.attachments
        if has is not None and bool(found) != has:
            return False
        if ctype is None and fname is None:
            return True
        return any(
            (ctype is None or ctype.match(a.content_type.lower()) is not None)
            and (fname is None or fname.match(a.filename) is not None)
            for a in found
        )

    return attachment


def _language(language: str) -> Predicate:
    wanted = None if language == "unknown" else language
    return lambda view: view.msg.language == wanted


def _all_of(conditions: list[model.Condition]) -> Predicate:
    return _conjunction([compile_condition(c) for c in conditions])


def _any_of(conditions: list[model.Condition]) -> Predicate:
    preds = [compile_condition(c) for c in conditions]
    return lambda view: any(p(view) for p in preds)


def _not(condition: model.Condition) -> Predicate:
    pred = compile_condition(condition)
    return lambda view: not pred(view)


# The table the engine walks: condition key → predicate factory.  Add a test by adding a row here
# and a field to ``model.Condition``.
PREDICATES: dict[str, Callable[..., Predicate]] = {
    "all_": _all_of,
    "any_": _any_of,
    "not_": _not,
    "sender": _sender,
    "to": _to,
    "subject": _subject,
    "body": _body,
    "text": _text,
    "header": _header,
    "attachment": _attachment,
    "language": _language,
}


def compile_condition(condition: model.Condition) -> Predicate:
    """One predicate for the whole condition; several keys must all hold."""
    preds = [
        factory(value)
        for name, factory in PREDICATES.items()
        if (value := getattr(condition, name)) is not None
    ]
    return _conjunction(preds)


def _conjunction(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    return lambda view: all(p(view) for p in preds)
