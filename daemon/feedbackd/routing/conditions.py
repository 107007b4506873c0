"""Conditions: the predicates a rule can test, compiled once per rule set.

``compile_condition`` turns a validated ``model.Condition`` into a plain function of a
``MessageView``; every regular expression and glob is compiled here, once.  ``compile_explainer``
turns it into the function that says *what* matched (the words, or the header, sender, channel,
attachment or language), which the engine only calls for rules that matched.  A ``MessageView``
wraps one message for one evaluation and computes each normalised, case-folded text at most once,
however many rules look at it.

Text matching (``contains``, ``contains-any``, ``contains-all``, ``unless``, ``equals``, ``glob``)
compares normalised text (``normalise``): Unicode NFKC (full-width letters, digits and punctuation
as ASCII: ``ＡＢＣ１２３！`` is ``ABC123!``), traditional Chinese as simplified (OpenCC ``t2s``),
case-folded unless ``case-sensitive``, runs of white space as one space, and no white space between
two Chinese characters (mail clients wrap Chinese lines anywhere).  Keywords are normalised the same
way when the rules are loaded, so rule authors write the simplified form once and a Chinese keyword
matches wherever it occurs, without any notion of word boundaries.  ``within: sentence`` asks the
word operators to hold inside one sentence, and ``unless`` words veto the test (in that sentence,
or anywhere in the text).  ``regex`` is the exception: it searches the text as received (only
converted to simplified characters), with ``re.IGNORECASE | re.MULTILINE``, and only when one of
the literals the expression requires is present (``literals``).  The body is the sender's own text
(``own_text``): a reply's quoted history and signature are not routed on.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Callable
from functools import cache

import opencc

from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.quotes import strip_text
from feedbackd.routing import model
from feedbackd.routing.literals import fold, required_literals

_HAN = "\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_HAN_GAP = re.compile(rf" (?<=[{_HAN}] )(?=[{_HAN}])")  # starts with a space: cheap to scan for
_HAN_CHAR = re.compile(f"[{_HAN}]")
# The full-width punctuation of everyday Chinese typing, replaced one by one (str.replace is a fast
# scan) before the NFKC quick check: a full NFKC pass costs ~70 µs on a 440-character Chinese body,
# this ~3 µs, and what is left (full-width letters, circled digits...) takes the full pass.
_COMMON_WIDE = tuple((c, unicodedata.normalize("NFKC", c)) for c in "，！？：；（）～\u3000％＃＋－＝／＠＆")
# Sentence ends after normalisation (NFKC has made ！？； ASCII): 。 ! ? ; and a full stop before a
# space, the end, or another full stop (so that 3.5 and example.com stay whole).
_SENTENCE_END = re.compile(r"[。!?;]+|\.(?:\.+|(?= |$))")

# Any of these in a body means it may hold a quote or a signature for ``own_text`` to drop.
_QUOTE_MARKERS = ("\n>", "写道", "寫道", "wrote", "原始", "原件", "riginal", "发件人", "寄件", "From:", "转发",
                  "轉寄", "orwarded", "-----", "_____", "\n-- ")

# Headers that carry the address a message was delivered to, so aliases of one mailbox
# (complaints@, suggestions@) can be told apart even when the citizen used Bcc.
_ADDR_SPEC = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Forwarded-To")


@cache
def _converter() -> opencc.OpenCC:
    """OpenCC's traditional → simplified converter, built on first use (~8 ms)."""
    return opencc.OpenCC("t2s")


def nfkc(text: str) -> str:
    """Unicode NFKC, fast for the common case of Chinese text with full-width punctuation."""
    for wide, narrow in _COMMON_WIDE:
        if wide in text:
            text = text.replace(wide, narrow)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def simplified(text: str) -> str:
    """Traditional Chinese characters and phrases as simplified; other text unchanged (~10 µs per
    440 Chinese characters; text without Chinese characters skips the converter)."""
    if text.isascii() or _HAN_CHAR.search(text) is None:
        return text
    return str(_converter().convert(text))


def normalise(text: str) -> str:
    """Simplified Chinese, NFKC, white space collapsed, none between Chinese characters (not case-folded)."""
    return _tidy(simplified(text))


def _tidy(text: str) -> str:
    """``normalise`` for a text already in simplified characters."""
    if text.isascii():
        return " ".join(text.split())
    text = " ".join(nfkc(text).split())  # str.split also splits at the ideographic space U+3000
    return _HAN_GAP.sub("", text) if " " in text else text


def own_text(text: str) -> str:
    """What the sender wrote: a reply's quoted history and signature dropped (``mail.quotes``), so a
    reply that quotes our acknowledgement is not routed by its words.  The quote finder costs ~60 µs,
    so it only runs when a quote marker is present; a text that is nothing but quotes stays whole."""
    if not any(marker in text for marker in _QUOTE_MARKERS):
        return text
    return strip_text(text) or text


def sentences(text: str) -> list[str]:
    """A normalised text cut at its sentence ends (the ends themselves dropped)."""
    return [part for part in _SENTENCE_END.split(text) if part.strip()]


class Texts:
    """One text in the forms matching needs: as received, in simplified characters (for ``regex``),
    normalised, and case-folded.

    The case-folded simplified text (for a regex's literal pre-filter) and the sentences (for
    ``within: sentence``) are computed on first use only.
    """

    __slots__ = ("_folded_sentences", "_norm_sentences", "_simple_folded", "folded", "norm", "raw", "simple")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.simple = simplified(raw)  # the one converter call for this text
        self.norm = _tidy(self.simple)
        self.folded = fold(self.norm)
        self._simple_folded: str | None = None
        self._norm_sentences: list[str] | None = None
        self._folded_sentences: list[str] | None = None

    @property
    def simple_folded(self) -> str:
        if self._simple_folded is None:
            self._simple_folded = fold(self.simple)
        return self._simple_folded

    def sentences(self, case_sensitive: bool) -> list[str]:
        if case_sensitive:
            if self._norm_sentences is None:
                self._norm_sentences = sentences(self.norm)
            return self._norm_sentences
        if self._folded_sentences is None:
            self._folded_sentences = sentences(self.folded)
        return self._folded_sentences


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
        found = self._texts.get("body")
        if found is None:
            found = self._texts["body"] = Texts(own_text(self.msg.text))
        return found

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
Explainer = Callable[[MessageView], list[str]]
TextMatch = Callable[[Texts], bool]
StrMatch = Callable[[str], bool]
Words = tuple[tuple[str, str], ...]  # (as written in the rule, normalised) pairs


# -- text ------------------------------------------------------------------------------------------


def _glob(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), flags | re.DOTALL)


class TextMatcher:
    """One text test, compiled: ``match`` (the whole test on one text), ``positive`` (without the
    ``unless`` veto, which ``vetoed`` tests apart, so ``text`` can veto across subject and body),
    and ``words`` (what matched, as the rule wrote it)."""

    __slots__ = ("_all", "_any", "_equals", "_glob", "_glob_written", "_regex", "_unless", "case_sensitive",
                 "match", "positive", "vetoed", "within")

    def __init__(self, test: model.TextTest) -> None:
        cs = self.case_sensitive = test.case_sensitive
        self.within = test.within == "sentence"

        def words(written: list[str]) -> Words:
            pairs = {(w, normalise(w) if cs else fold(normalise(w))): None for w in written}
            return tuple(pair for pair in pairs if pair[1])

        self._all = words(([test.contains] if test.contains else []) + list(test.contains_all or ()))
        self._any = words(list(test.contains_any or ()))
        self._unless = words(list(test.unless or ()))
        self._equals = words([test.equals]) if test.equals is not None else ()
        self._glob_written = test.glob
        self._glob = _glob(words([test.glob])[0][1]) if test.glob is not None else None
        self._regex = re.compile(test.regex, re.MULTILINE | (0 if cs else re.IGNORECASE)) if test.regex else None
        checks: list[TextMatch] = []
        if self._equals:
            equals = self._equals[0][1]
            checks.append((lambda t: t.norm == equals) if cs else (lambda t: t.folded == equals))
        if self.within:
            checks.append(self._in_a_sentence())
        else:
            checks += self._word_checks()
        if self._glob is not None:
            glob = self._glob
            checks.append((lambda t: glob.match(t.norm) is not None) if cs else
                          (lambda t: glob.match(t.folded) is not None))
        if test.regex is not None:
            checks.append(_regex(test.regex, re.MULTILINE | (0 if cs else re.IGNORECASE)))
        self.positive = _all(checks)
        self.vetoed: TextMatch = _never
        if self._unless and not self.within:
            self.vetoed = _contains_any(tuple(n for _, n in self._unless), cs)
        positive, vetoed = self.positive, self.vetoed
        self.match = positive if vetoed is _never else (lambda t: positive(t) and not vetoed(t))

    def _word_checks(self) -> list[TextMatch]:
        checks: list[TextMatch] = []
        needles = tuple(n for _, n in self._all)
        if needles:
            checks.append((lambda t: all(n in t.norm for n in needles)) if self.case_sensitive else
                          (lambda t: all(n in t.folded for n in needles)))
        if self._any:
            checks.append(_contains_any(tuple(n for _, n in self._any), self.case_sensitive))
        return checks

    def _in_a_sentence(self) -> TextMatch:
        whole = _all(self._word_checks())  # a cheap necessary condition on the whole text first
        sentence_ok = self._sentence_test()
        cs = self.case_sensitive

        def in_a_sentence(t: Texts) -> bool:
            return whole(t) and any(sentence_ok(s) for s in t.sentences(cs))

        return in_a_sentence

    def _sentence_test(self) -> StrMatch:
        alls = tuple(n for _, n in self._all)
        anys = tuple(n for _, n in self._any)
        vetoes = tuple(n for _, n in self._unless)
        return lambda s: (all(n in s for n in alls) and (not anys or any(n in s for n in anys))
                          and not any(n in s for n in vetoes))

    def words(self, t: Texts) -> list[str]:
        """What matched in ``t`` (which ``match`` accepted): the rule's words as written, the regex's match."""
        if self.within:
            sentence_ok = self._sentence_test()
            text = next((s for s in t.sentences(self.case_sensitive) if sentence_ok(s)), "")
        else:
            text = t.norm if self.case_sensitive else t.folded
        found = [w for w, n in self._equals + self._all + self._any if n in text]
        if self._glob_written is not None:
            found.append(f"glob {self._glob_written}")
        if self._regex is not None and (m := self._regex.search(t.simple)):
            found.append(m.group(0).strip() or m.group(0))
        return [w for w in found if w]


def compile_text(test: model.TextTest) -> TextMatch:
    """All operators of one text test, as one function of ``Texts``."""
    return TextMatcher(test).match


def _never(t: Texts) -> bool:
    return False


def _regex(pattern: str, flags: int) -> TextMatch:
    rx = re.compile(pattern, flags)
    literals = required_literals(pattern, flags)
    if literals is None:
        return lambda t: rx.search(t.simple) is not None

    def regex(t: Texts) -> bool:
        folded = t.simple_folded
        for literal in literals:
            if literal in folded:
                return rx.search(t.simple) is not None
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
#
# Each factory returns the predicate and the explainer of one condition key.  An explainer is only
# called when its predicate held, and names what matched: the rule's words as written for text,
# and the test itself for the rest ("header Precedence: bulk", "sender domain gov.cn").

Compiled = tuple[Predicate, Explainer]


def _address_words(test: model.AddressTest) -> str:
    given = test.model_dump(by_alias=True, exclude_none=True)
    return ", ".join(f"{k} {', '.join(v) if isinstance(v, list) else v}" for k, v in given.items())


def _sender(test: model.AddressTest) -> Compiled:
    match = compile_address(test)
    said = [f"sender {_address_words(test)}"]

    def sender(view: MessageView) -> bool:
        addr = view.sender()
        return addr is not None and match(addr)

    return sender, lambda view: said


def _to(test: model.AddressTest) -> Compiled:
    match = compile_address(test)
    said = [f"to {_address_words(test)}"]
    return (lambda view: any(match(addr) for addr in view.recipients())), lambda view: said


def _subject(test: model.TextTest) -> Compiled:
    matcher = TextMatcher(test)
    match = matcher.match
    return (lambda view: match(view.subject())), lambda view: matcher.words(view.subject())


def _body(test: model.TextTest) -> Compiled:
    matcher = TextMatcher(test)
    match = matcher.match
    return (lambda view: match(view.body())), lambda view: matcher.words(view.body())


def _text(test: model.TextTest) -> Compiled:
    """Subject or body; ``unless`` words (without ``within``) veto from either of them."""
    matcher = TextMatcher(test)
    positive, vetoed = matcher.positive, matcher.vetoed

    def text(view: MessageView) -> bool:
        if not (positive(view.subject()) or positive(view.body())):
            return False
        return not (vetoed(view.subject()) or vetoed(view.body()))

    def words(view: MessageView) -> list[str]:
        found = [w for t in (view.subject(), view.body()) if positive(t) for w in matcher.words(t)]
        return list(dict.fromkeys(found))

    if vetoed is _never:  # the common case, as one cheap function
        return (lambda view: positive(view.subject()) or positive(view.body())), words
    return text, words


def _header(test: model.HeaderTest) -> Compiled:
    name, exists = test.name, test.exists
    matcher = TextMatcher(test) if test.has_operator() else None
    match = matcher.match if matcher else None

    def header(view: MessageView) -> bool:
        values = view.header(name)
        if exists is not None and bool(values) != exists:
            return False
        return match is None or any(match(v) for v in values)

    def words(view: MessageView) -> list[str]:
        if matcher is None or match is None:
            return [f"header {name} {'present' if exists else 'absent'}"]
        found = [w for v in view.header(name) if match(v) for w in matcher.words(v)]
        return [f"header {name}: {', '.join(dict.fromkeys(found))}"]

    return header, words


def _attachment(test: model.AttachmentTest) -> Compiled:
    has = test.has
    ctype = _glob(test.type.lower()) if test.type else None
    fname = _glob(test.filename, re.IGNORECASE) if test.filename else None
    said = ["attachment " + ", ".join(f"{k} {v}" for k, v in test.model_dump(exclude_none=True).items())]

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

    return attachment, lambda view: said


def _language(language: str) -> Compiled:
    wanted = None if language == "unknown" else language
    said = [f"language {language}"]
    return (lambda view: view.msg.language == wanted), lambda view: said


def _all_of(conditions: list[model.Condition]) -> Compiled:
    parts = [_compile(c) for c in conditions]
    return _conjunction([p for p, _ in parts]), _explain_all([e for _, e in parts])


def _any_of(conditions: list[model.Condition]) -> Compiled:
    parts = [_compile(c) for c in conditions]
    preds = [p for p, _ in parts]

    def words(view: MessageView) -> list[str]:
        return [w for pred, explain in parts if pred(view) for w in explain(view)]

    return (lambda view: any(p(view) for p in preds)), words


def _not(condition: model.Condition) -> Compiled:
    pred, _ = _compile(condition)
    return (lambda view: not pred(view)), _nothing


def _nothing(view: MessageView) -> list[str]:
    return []  # what did not match is no evidence


# The table the engine walks: condition key → predicate and explainer factory.  Add a test by
# adding a row here and a field to ``model.Condition``.
PREDICATES: dict[str, Callable[..., Compiled]] = {
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


def _compile(condition: model.Condition) -> Compiled:
    parts = [
        factory(value)
        for name, factory in PREDICATES.items()
        if (value := getattr(condition, name)) is not None
    ]
    return _conjunction([p for p, _ in parts]), _explain_all([e for _, e in parts])


def compile_condition(condition: model.Condition) -> Predicate:
    """One predicate for the whole condition; several keys must all hold."""
    return _compile(condition)[0]


def compile_explainer(condition: model.Condition) -> Explainer:
    """What matched, for a message the condition's predicate accepted (deduplicated, in rule order)."""
    return _compile(condition)[1]


def compile_both(condition: model.Condition) -> Compiled:
    """The predicate and the explainer of one condition, compiled together."""
    return _compile(condition)


def _explain_all(explainers: list[Explainer]) -> Explainer:
    if len(explainers) == 1:
        return explainers[0]
    return lambda view: list(dict.fromkeys(w for explain in explainers for w in explain(view)))


def _conjunction(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    return lambda view: all(p(view) for p in preds)
