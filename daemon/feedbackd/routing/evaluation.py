"""``feedbackd rules eval``: how well a rule set routes a folder of hand-labelled mails.

A labelled folder holds ``*.eml`` files and their labels: one ``labels.yaml`` mapping each file
name to ``{department, kind, priority}``, or a ``.yaml`` beside each ``.eml`` (``0001.yaml`` for
``0001.eml``); a per-file label wins over ``labels.yaml``.  ``load_labelled`` reads the folder into
``Labelled`` items (the parsed message and its label), which the learned-suggestion model reuses.
Kinds are compared by their canonical key (反映 is ``opinion``, 问题反馈 is ``problem``).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.parse import ParseError, parse_message
from feedbackd.routing.decision import RuleHit
from feedbackd.routing.loader import RulesError, load_ruleset
from feedbackd.routing.model import KIND_ALIASES
from feedbackd.routing.ruleset import OPINION, PROBLEM, RuleSet

LABELS_FILE = "labels.yaml"
FIELDS = ("department", "kind", "priority")
NONE = "(none)"  # a decision without a department


class LabelError(Exception):
    """A labelled folder that cannot be read: a missing or malformed label, an unreadable mail."""


@dataclass(frozen=True, slots=True)
class Label:
    department: str
    kind: str  # canonical: "problem" or "opinion"
    priority: str

    def get(self, name: str) -> str:
        return str(getattr(self, name))


@dataclass(frozen=True, slots=True)
class Labelled:
    """One mail of a labelled folder: its file name, the parsed message and the hand label."""

    file: str
    message: ParsedMessage
    label: Label


def canonical_kind(kind: str) -> str:
    """``反映`` → ``opinion``, ``问题反馈`` → ``problem``; unknown names are returned unchanged."""
    return KIND_ALIASES.get(kind, kind)


def load_labelled(directory: Path) -> list[Labelled]:
    """Every ``.eml`` of ``directory`` (in name order) with its label; raises ``LabelError``."""
    if not directory.is_dir():
        raise LabelError(f"{directory}: not a directory")
    shared = _read_labels(directory / LABELS_FILE) if (directory / LABELS_FILE).is_file() else {}
    items = []
    for path in sorted(directory.glob("*.eml")):
        beside = path.with_suffix(".yaml")
        raw_label = _read_yaml(beside) if beside.is_file() else shared.get(path.name)
        if raw_label is None:
            raise LabelError(f"{path}: no label (neither in {LABELS_FILE} nor {beside.name})")
        items.append(Labelled(path.name, _parse(path), _label(raw_label, path)))
    if not items:
        raise LabelError(f"{directory}: no .eml files")
    return items


def _read_yaml(path: Path) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise LabelError(f"{path}: cannot read: {exc}") from None


def _read_labels(path: Path) -> dict[str, Any]:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise LabelError(f"{path}: expected a mapping of file name to labels")
    return {str(k): v for k, v in data.items()}


def _label(data: Any, path: Path) -> Label:
    if not isinstance(data, dict):
        raise LabelError(f"{path}: the label must be a mapping with {', '.join(FIELDS)}")
    missing = [name for name in FIELDS if not data.get(name)]
    if missing:
        raise LabelError(f"{path}: the label lacks {', '.join(missing)}")
    return Label(str(data["department"]), canonical_kind(str(data["kind"])), str(data["priority"]))


def _parse(path: Path) -> ParsedMessage:
    try:
        return parse_message(path.read_bytes())
    except (OSError, ParseError) as exc:
        raise LabelError(f"{path}: cannot read the message: {exc}") from None


# -- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One labelled mail routed: what the label says, what the rules decided, and which rules fired."""

    item: Labelled
    got: Label
    hits: list[RuleHit]

    @property
    def wrong(self) -> list[str]:
        return [name for name in FIELDS if self.item.label.get(name) != self.got.get(name)]


@dataclass(frozen=True, slots=True)
class Report:
    outcomes: list[Outcome]
    top_priority: str

    def accuracy(self, name: str) -> float:
        right = sum(1 for o in self.outcomes if name not in o.wrong)
        return right / len(self.outcomes) if self.outcomes else 0.0

    def confusion(self, name: str) -> dict[str, dict[str, int]]:
        """label → predicted → count, labels and predictions in name order."""
        table: dict[str, Counter[str]] = {}
        for o in self.outcomes:
            table.setdefault(o.item.label.get(name), Counter())[o.got.get(name)] += 1
        return {label: dict(sorted(table[label].items())) for label in sorted(table)}

    def misrouted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.wrong]

    def emergencies_below_top(self) -> list[Outcome]:
        return [o for o in self.outcomes
                if o.item.label.priority == self.top_priority and o.got.priority != self.top_priority]

    def praise_as_problem(self) -> list[Outcome]:
        """Labelled 反映 (praise, suggestion, opinion) but routed as a problem."""
        return [o for o in self.outcomes if o.item.label.kind == OPINION and o.got.kind == PROBLEM]

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": len(self.outcomes),
            "accuracy": {name: round(self.accuracy(name), 4) for name in FIELDS},
            "confusion": {name: self.confusion(name) for name in FIELDS},
            "misrouted": [_outcome_dict(o) for o in self.misrouted()],
            "emergencies_below_top": [o.item.file for o in self.emergencies_below_top()],
            "praise_as_problem": [o.item.file for o in self.praise_as_problem()],
        }


def evaluate(ruleset: RuleSet, items: list[Labelled]) -> Report:
    """Route every labelled mail with ``RuleSet.evaluate``, the daemon's own path."""
    outcomes = []
    for item in items:
        decision = ruleset.evaluate(item.message)
        got = Label(decision.department or NONE, decision.kind, decision.priority)
        outcomes.append(Outcome(item, got, decision.hits))
    top = next(iter(ruleset.priorities), ruleset.default_priority)
    return Report(outcomes, top)


def _outcome_dict(o: Outcome) -> dict[str, Any]:
    return {
        "file": o.item.file,
        "subject": o.item.message.subject,
        "wrong": o.wrong,
        "expected": {name: o.item.label.get(name) for name in FIELDS},
        "got": {name: o.got.get(name) for name in FIELDS},
        "rules": [{"rule": h.rule, "line": h.line, "matched": list(h.matched)} for h in o.hits],
    }


def command(directory: Path, rules_dir: Path, out: TextIO = sys.stdout, as_json: bool = False) -> int:
    """``feedbackd rules eval``: 0 after printing the report, 1 for bad rules or an unreadable folder."""
    try:
        ruleset = load_ruleset(rules_dir)
    except RulesError as exc:
        for problem in exc.problems:
            print(problem, file=out)
        return 1
    try:
        items = load_labelled(directory)
    except LabelError as exc:
        print(exc, file=out)
        return 1
    report = evaluate(ruleset, items)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2), file=out)
    else:
        for line in report_lines(report):
            print(line, file=out)
    return 0


def report_lines(report: Report) -> list[str]:
    lines = [f"{len(report.outcomes)} labelled messages", ""]
    lines += [f"{name + ' accuracy:':<20} {report.accuracy(name):6.1%}" for name in FIELDS]
    for name in FIELDS:
        lines += ["", f"{name} confusion (rows: label, columns: routed)", *_matrix(report.confusion(name))]
    checks = (("emergencies below the top priority", report.emergencies_below_top()),
              ("praise or opinions routed as a problem", report.praise_as_problem()))
    lines.append("")
    for title, found in checks:
        lines.append(f"{title}: {', '.join(o.item.file for o in found) or 'none'}")
    misrouted = report.misrouted()
    lines += ["", f"misrouted: {len(misrouted)}"]
    for o in misrouted:
        lines += _misrouted_lines(o)
    return lines


def _matrix(table: dict[str, dict[str, int]]) -> list[str]:
    labels = list(table)
    columns = sorted({p for row in table.values() for p in row})
    width = max(len(c) for c in [*labels, *columns, "label"]) + 2
    lines = ["".ljust(width) + "".join(c.rjust(width) for c in columns)]
    for label in labels:
        lines.append(label.ljust(width) + "".join(str(table[label].get(c, "·")).rjust(width) for c in columns))
    return lines


def _misrouted_lines(o: Outcome) -> list[str]:
    expected = " ".join(o.item.label.get(n) for n in FIELDS)
    got = " ".join(o.got.get(n) for n in FIELDS)
    lines = [f"  {o.item.file}  {o.item.message.subject[:60]!r}", f"    expected {expected}; got {got}"]
    if not o.hits:
        lines.append("    no rule matched (defaults applied)")
    for hit in o.hits:
        said = f": {', '.join(hit.matched)}" if hit.matched else ""
        lines.append(f"    {hit.rule} (line {hit.line}){said}")
    return lines
