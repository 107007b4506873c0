"""Routing: YAML rules that admins edit → a compiled ``RuleSet`` → a ``Decision`` per message.

Modules: ``model`` (the file format, pydantic, the JSON Schema), ``conditions`` (one predicate
per condition key), ``ruleset`` (the engine), ``loader`` (files → rule set or located problems),
``watcher`` (live reload), ``decision`` (the result and its explanation), ``commands`` (CLI).
"""

from feedbackd.routing.decision import Decision, RuleHit, explain
from feedbackd.routing.loader import Problem, RulesError, load_ruleset
from feedbackd.routing.model import schema
from feedbackd.routing.ruleset import Deadlines, Department, Kind, Priority, Rule, RuleSet
from feedbackd.routing.watcher import RulesWatcher

__all__ = [
    "Deadlines",
    "Decision",
    "Department",
    "Kind",
    "Priority",
    "Problem",
    "Rule",
    "RuleHit",
    "RuleSet",
    "RulesError",
    "RulesWatcher",
    "explain",
    "load_ruleset",
    "schema",
]
