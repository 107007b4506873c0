"""Required literals of a regular expression: a cheap pre-filter, computed once per rule set.

``required_literals(r"\\b(fire|gas leak)\\b")`` is ``("fire", "gas leak")``: any text the
expression matches contains at least one of them.  Checking that with ``in`` on the case-folded
text costs a fraction of a microsecond; Python's ``re`` with ``IGNORECASE`` and a leading group
can cost tens of microseconds on a long body.  So a rule's regex only runs when one of its
literals is present.  Where no such set can be proven (``\\d+``, ``.*``), the answer is None and
the regex always runs.  The literals are case-folded and must be looked for in case-folded text,
which keeps the filter valid for case-sensitive expressions too (it is only ever a necessary
condition, never a sufficient one).
"""

from __future__ import annotations

from typing import Any

try:  # the parser behind ``re``; private, so everything here degrades to "no pre-filter"
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _sre  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    _sre = None

Alternatives = frozenset[str]


def fold(text: str) -> str:
    """Case-fold so that every pair of characters ``re.IGNORECASE`` equates folds alike
    (``casefold`` alone leaves the Turkish dotted and dotless i apart)."""
    if "ı" in text or "İ" in text:
        text = text.replace("ı", "i").replace("İ", "i")
    return text.casefold()


def required_literals(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """Case-folded strings of which every match contains at least one; None when unknown."""
    if _sre is None:
        return None  # pragma: no cover
    try:
        parsed = _sre.parse(pattern, flags)
        found = _sequence(list(parsed))
    except Exception:  # noqa: BLE001 - a parser detail we do not know: simply no pre-filter
        return None
    if not found or min(len(s) for s in found) == 0:
        return None
    return tuple(sorted(found))


def _score(found: Alternatives) -> tuple[int, int]:
    """Longer shortest literal first, then fewer alternatives."""
    return min(len(s) for s in found), -len(found)


def _sequence(items: list[Any]) -> Alternatives | None:
    """The best required set among the runs of literals and the items of one sequence."""
    best: Alternatives | None = None
    run: list[str] = []

    def consider(found: Alternatives | None) -> None:
        nonlocal best
        if found and (best is None or _score(found) > _score(best)):
            best = found

    for op, arg in items:
        if op is _c.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            consider(frozenset({fold("".join(run))}))
            run = []
        consider(_item(op, arg))
    if run:
        consider(frozenset({fold("".join(run))}))
    return best


def _item(op: Any, arg: Any) -> Alternatives | None:
    if op is _c.SUBPATTERN:
        return _sequence(list(arg[-1]))
    if op is _c.ATOMIC_GROUP:
        return _sequence(list(arg))
    if op is _c.BRANCH:
        union: set[str] = set()
        for branch in arg[1]:
            found = _sequence(list(branch))
            if not found:
                return None  # one branch without a literal: nothing is required
            union |= found
        return frozenset(union)
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
        low, _, body = arg
        return _sequence(list(body)) if low >= 1 else None
    return None  # classes, anchors, look-arounds, back-references: nothing required
