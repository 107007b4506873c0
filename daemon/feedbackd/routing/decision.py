"""What routing decided for one message, and why.

A ``Decision`` is pure data: the engine returns it and does nothing else.  The case stores
``to_dict()`` (JSON-safe); ``explain()`` turns that stored form into the lines that both
``feedbackd cases show`` and ``feedbackd rules test`` print, so the two always read alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

KIND_LABELS = {"problem": "问题反馈 problem", "opinion": "反映 opinion"}


class RuleHit:
    """One rule that matched: where it is written, what it changed (field → new value), and what
    matched (the rule's words found in the message, or its test: ``header Precedence: bulk``).

    ``matched`` may be given as a function: the engine passes one, so the words are only looked for
    when someone reads them (storing or showing the decision), not on every evaluation.  Decisions
    stored before ``matched`` existed load with an empty list.
    """

    __slots__ = ("_explain", "_matched", "changes", "file", "line", "rule")

    def __init__(self, rule: str, file: str, line: int, changes: dict[str, object],
                 matched: list[str] | Callable[[], list[str]] | None = None) -> None:
        self.rule, self.file, self.line, self.changes = rule, file, line, changes
        self._matched: list[str] | None = matched if isinstance(matched, list) else None
        self._explain = matched if callable(matched) else None
        if matched is None:
            self._matched = []

    @property
    def matched(self) -> list[str]:
        if self._matched is None:
            assert self._explain is not None
            self._matched, self._explain = self._explain(), None
        return self._matched

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuleHit):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RuleHit({self.rule!r}, {self.file!r}, {self.line}, {self.changes!r}, {self.matched!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "file": self.file, "line": self.line, "changes": dict(self.changes),
                "matched": list(self.matched)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleHit:
        return cls(data["rule"], data["file"], int(data["line"]), dict(data.get("changes", {})),
                   [str(w) for w in data.get("matched") or []])


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a message goes and how urgent it is.

    For a follow-up (``RuleSet.evaluate_followup``) ``priority_raised`` is True and
    ``previous_priority`` holds the case's priority before; only ``priority``, the deadlines and
    ``tags`` are meant to be applied to the existing case.
    """

    department: str | None
    priority: str
    kind: str  # "problem" (问题反馈) or "opinion" (反映)
    tags: list[str]
    assignee: str | None
    template: str
    suppress_ack: bool
    first_response_due: timedelta | None
    resolution_due: timedelta | None
    hits: list[RuleHit] = field(default_factory=list)
    priority_raised: bool = False
    previous_priority: str | None = None
    ruleset_version: str = ""

    @property
    def matched(self) -> list[str]:
        return [hit.rule for hit in self.hits]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; durations as whole seconds."""
        return {
            "department": self.department,
            "priority": self.priority,
            "kind": self.kind,
            "tags": list(self.tags),
            "assignee": self.assignee,
            "template": self.template,
            "suppress_ack": self.suppress_ack,
            "first_response_due": _seconds(self.first_response_due),
            "resolution_due": _seconds(self.resolution_due),
            "hits": [hit.to_dict() for hit in self.hits],
            "priority_raised": self.priority_raised,
            "previous_priority": self.previous_priority,
            "ruleset_version": self.ruleset_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            department=data.get("department"),
            priority=data["priority"],
            kind=data["kind"],
            tags=list(data.get("tags", [])),
            assignee=data.get("assignee"),
            template=data["template"],
            suppress_ack=bool(data.get("suppress_ack", False)),
            first_response_due=_delta(data.get("first_response_due")),
            resolution_due=_delta(data.get("resolution_due")),
            hits=[RuleHit.from_dict(h) for h in data.get("hits", [])],
            priority_raised=bool(data.get("priority_raised", False)),
            previous_priority=data.get("previous_priority"),
            ruleset_version=data.get("ruleset_version", ""),
        )


def _seconds(delta: timedelta | None) -> int | None:
    return None if delta is None else int(delta.total_seconds())


def _delta(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def format_duration(delta: timedelta | None) -> str:
    """36 hours → ``1d12h``; the inverse of the rule files' notation."""
    if delta is None:
        return "none"
    minutes = int(delta.total_seconds()) // 60
    parts = []
    for unit, size in (("d", 1440), ("h", 60), ("m", 1)):
        count, minutes = divmod(minutes, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0m"


def _value(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def explain(data: dict[str, Any]) -> list[str]:
    """Human-readable lines for a stored decision (``Decision.to_dict()``)."""
    decision = Decision.from_dict(data)
    lines = []
    if not decision.hits:
        lines.append("matched rules: none (defaults applied)")
    else:
        lines.append("matched rules:")
        for hit in decision.hits:
            changed = "; ".join(f"{k} = {_value(v)}" for k, v in hit.changes.items()) or "no change"
            lines.append(f"  {hit.rule}  ({hit.file}:{hit.line})  {changed}")
            if hit.matched:
                lines.append(f"    matched: {', '.join(hit.matched)}")
    if decision.priority_raised:
        lines.append(f"priority raised: {decision.previous_priority} -> {decision.priority}")
    lines += [
        f"department: {decision.department or '(none)'}",
        f"priority: {decision.priority}",
        f"kind: {KIND_LABELS.get(decision.kind, decision.kind)}",
        f"tags: {_value(decision.tags) or '(none)'}",
        f"assignee: {decision.assignee or '(none)'}",
        f"template: {decision.template}",
        f"suppress acknowledgement: {_value(decision.suppress_ack)}",
        f"first response due: {format_duration(decision.first_response_due)}",
        f"resolution due: {format_duration(decision.resolution_due)}",
    ]
    if decision.ruleset_version:
        lines.append(f"rules version: {decision.ruleset_version}")
    lines += [str(line) for line in (data.get("learned") or {}).get("explanation", [])]  # routing.learned
    return lines
