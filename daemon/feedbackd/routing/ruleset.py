"""The compiled rule set and the small engine that walks it.

A ``RuleSet`` is built once by the loader and never changes; the watcher swaps a whole new one
in.  ``evaluate`` walks the ordered rules for a new case and returns a ``Decision``;
``evaluate_followup`` walks the rules marked ``on: [reply]`` for a later message on a case and
returns a decision only when they raise the case's priority.  Neither does anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from types import MappingProxyType

from feedbackd.mail.message import ParsedMessage
from feedbackd.routing.conditions import Explainer, MessageView, Predicate
from feedbackd.routing.decision import Decision, RuleHit

PROBLEM, OPINION = "problem", "opinion"
DEFAULT_TEMPLATES = {PROBLEM: "acknowledgement", OPINION: "acknowledgement-opinion"}


@dataclass(frozen=True, slots=True)
class Deadlines:
    first_response: timedelta | None = None
    resolution: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Department:
    key: str
    name: str
    staff: tuple[str, ...]
    lead: str  # receives escalations
    deadlines: Mapping[str, Deadlines] = field(default_factory=lambda: MappingProxyType({}))  # by priority


@dataclass(frozen=True, slots=True)
class Priority:
    key: str
    name: str
    rank: int  # 0 is the most urgent
    first_response: timedelta
    resolution: timedelta


@dataclass(frozen=True, slots=True)
class Kind:
    key: str  # "problem" or "opinion"
    template: str
    first_response: timedelta | None  # overrides the priority's when set
    resolution_deadline: bool  # whether cases of this kind get a resolution deadline


@dataclass(frozen=True, slots=True)
class Actions:
    department: str | None = None
    priority: str | None = None
    kind: str | None = None
    tags: tuple[str, ...] = ()
    assignee: str | None = None
    template: str | None = None
    suppress_ack: bool | None = None
    stop: bool = False

    @property
    def assignments(self) -> tuple[tuple[str, object], ...]:
        """The single-valued fields this rule sets, in a fixed order."""
        return tuple(
            (name, value)
            for name in ("department", "priority", "kind", "assignee", "template", "suppress_ack")
            if (value := getattr(self, name)) is not None
        )


def _always(view: MessageView) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    file: str
    line: int
    on: frozenset[str]  # "new", "reply"
    predicate: Predicate | None  # None: always matches
    actions: Actions
    description: str = ""
    explainer: Explainer | None = field(default=None, compare=False)  # what matched; only called on a match

    test: Predicate = field(init=False, repr=False, compare=False)
    assignments: tuple[tuple[str, object], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "test", self.predicate or _always)
        object.__setattr__(self, "assignments", self.actions.assignments)

    def matches(self, view: MessageView) -> bool:
        return self.test(view)

    def matched(self, view: MessageView) -> list[str]:
        """What made this rule match ``view`` (words as the rule writes them, or the test)."""
        return self.explainer(view) if self.explainer else []


@dataclass(slots=True)
class _State:
    """The decision being built while the rules are walked."""

    department: str | None
    priority: str
    kind: str
    tags: list[str] = field(default_factory=list)
    assignee: str | None = None
    template: str | None = None
    suppress_ack: bool = False

    def apply(self, rule: Rule, rank: Callable[[str], int] | None = None) -> dict[str, object]:
        """Apply one rule's actions; return what actually changed.

        With ``rank`` (follow-ups) a priority is only ever raised, never lowered.
        """
        changes: dict[str, object] = {}
        for name, value in rule.assignments:
            if name == "priority" and rank and rank(value) >= rank(self.priority):  # type: ignore[arg-type]
                continue
            if value != getattr(self, name):
                setattr(self, name, value)
                changes[name] = value
        if rule.actions.tags:
            added = [tag for tag in rule.actions.tags if tag not in self.tags]
            if added:
                self.tags.extend(added)
                changes["tags"] = added
        if rule.actions.stop:
            changes["stop"] = True
        return changes


@dataclass(frozen=True, slots=True)
class RuleSet:
    """An immutable, compiled set of departments, priorities, kinds, defaults and ordered rules."""

    departments: Mapping[str, Department]
    priorities: Mapping[str, Priority]  # in rank order, most urgent first
    kinds: Mapping[str, Kind]
    default_department: str | None
    default_priority: str
    default_kind: str
    rules: tuple[Rule, ...]
    version: str = ""  # a digest of the files' contents
    files: tuple[str, ...] = ()
    _new: tuple[Rule, ...] = field(init=False, repr=False)
    _reply: tuple[Rule, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_new", tuple(r for r in self.rules if "new" in r.on))
        object.__setattr__(self, "_reply", tuple(r for r in self.rules if "reply" in r.on))

    # -- look-ups --------------------------------------------------------------------------------

    def department(self, key: str) -> Department:
        return self.departments[key]

    def rank(self, priority: str) -> int:
        """0 for the most urgent priority; an unknown priority ranks below every known one."""
        found = self.priorities.get(priority)
        return found.rank if found else len(self.priorities)

    def deadlines(self, priority: str, department: str | None, kind: str) -> Deadlines:
        """First-response and resolution deadlines: priority, then department override, then kind."""
        base = self.priorities[priority]
        first, resolution = base.first_response, base.resolution
        dept = self.departments.get(department) if department else None
        override = dept.deadlines.get(priority) if dept else None
        if override:
            first = override.first_response or first
            resolution = override.resolution or resolution
        spec = self.kinds[kind]
        return Deadlines(
            first_response=spec.first_response or first,
            resolution=resolution if spec.resolution_deadline else None,
        )

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, msg: ParsedMessage) -> Decision:
        """Route a message that opens a new case."""
        state = _State(self.default_department, self.default_priority, self.default_kind)
        hits = self._walk(self._new, MessageView(msg), state)
        return self._decide(state, hits)

    def evaluate_followup(self, msg: ParsedMessage, current_priority: str) -> Decision | None:
        """For a later message on a case: a decision only when an ``on: [reply]`` rule raises the priority."""
        state = _State(self.default_department, current_priority, self.default_kind)
        hits = self._walk(self._reply, MessageView(msg), state, raise_only=True)
        if self.rank(state.priority) >= self.rank(current_priority):
            return None
        return self._decide(state, hits, previous=current_priority)

    def _walk(
        self, rules: tuple[Rule, ...], view: MessageView, state: _State, raise_only: bool = False
    ) -> list[RuleHit]:
        rank = self.rank if raise_only else None
        hits = []
        for rule in rules:
            if rule.test(view):
                changes = state.apply(rule, rank)
                hits.append(RuleHit(rule.name, rule.file, rule.line, changes, partial(rule.matched, view)))
                if rule.actions.stop:
                    break
        return hits

    def _decide(self, state: _State, hits: list[RuleHit], previous: str | None = None) -> Decision:
        due = self.deadlines(state.priority, state.department, state.kind)
        return Decision(
            department=state.department,
            priority=state.priority,
            kind=state.kind,
            tags=list(state.tags),
            assignee=state.assignee,
            template=state.template or self.kinds[state.kind].template,
            suppress_ack=state.suppress_ack,
            first_response_due=due.first_response,
            resolution_due=due.resolution,
            hits=hits,
            priority_raised=previous is not None,
            previous_priority=previous,
            ruleset_version=self.version,
        )
