"""The ``feedbackd rules`` commands: check, schema, test (dry run).

None of them opens a database or sends mail: they read the rule files (and, for the dry run, one
saved message) and print.  The dry run calls the very ``RuleSet.evaluate`` the daemon calls, and
prints with the same ``explain`` that ``feedbackd cases show`` uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.parse import ParseError, parse_message
from feedbackd.routing.decision import Decision, explain
from feedbackd.routing.loader import RulesError, load_ruleset
from feedbackd.routing.model import schema
from feedbackd.routing.ruleset import RuleSet


def check(directory: Path, out: TextIO = sys.stdout) -> int:
    """Print every problem as ``file:line:column: message`` (1), or a one-line summary (0)."""
    ruleset = _load_or_report(directory, out)
    if ruleset is None:
        return 1
    print(
        f"ok: {len(ruleset.rules)} rules, {len(ruleset.departments)} departments, "
        f"{len(ruleset.priorities)} priorities (version {ruleset.version})",
        file=out,
    )
    return 0


def _load_or_report(directory: Path, out: TextIO) -> RuleSet | None:
    """The rule set, or None after printing every problem as ``file:line:column: message``."""
    try:
        return load_ruleset(directory)
    except RulesError as exc:
        for problem in exc.problems:
            print(problem, file=out)
        return None


def print_schema(out: TextIO = sys.stdout) -> int:
    """Print the JSON Schema of the rule files (what ``rules/rules.schema.json`` holds)."""
    out.write(schema_text())
    return 0


def schema_text() -> str:
    return json.dumps(schema(), ensure_ascii=False, indent=2) + "\n"


def dry_run(
    eml_path: Path,
    directory: Path,
    out: TextIO = sys.stdout,
    as_json: bool = False,
    followup_priority: str | None = None,
) -> int:
    """Show how the rules route a saved message: 0 when routed, 1 for bad rules or an unreadable message.

    With ``followup_priority`` the message is treated as a later message on a case of that priority.
    """
    ruleset = _load_or_report(directory, out)
    if ruleset is None:
        return 1
    try:
        msg = parse_message(eml_path.read_bytes())
    except (OSError, ParseError) as exc:
        print(f"{eml_path}: cannot read the message: {exc}", file=out)
        return 1
    decision = route(ruleset, msg, followup_priority)
    if as_json:
        data = {"message": _summary(msg), "decision": decision.to_dict() if decision else None}
        print(json.dumps(data, ensure_ascii=False, indent=2), file=out)
        return 0
    for key, value in _summary(msg).items():
        print(f"{key}: {value}", file=out)
    print(file=out)
    if decision is None:
        print(f"follow-up: no rule raises the priority above {followup_priority}", file=out)
    else:
        for line in explain(decision.to_dict()):
            print(line, file=out)
    return 0


def route(ruleset: RuleSet, msg: ParsedMessage, followup_priority: str | None = None) -> Decision | None:
    if followup_priority is None:
        return ruleset.evaluate(msg)
    return ruleset.evaluate_followup(msg, followup_priority)


def _summary(msg: ParsedMessage) -> dict[str, str]:
    return {
        "from": msg.sender.addr if msg.sender else "(none)",
        "to": ", ".join(a.addr for a in msg.recipients) or "(none)",
        "subject": msg.subject,
        "language": msg.language or "unknown",
        "attachments": ", ".join(f"{a.filename} ({a.content_type})" for a in msg.attachments) or "(none)",
    }
