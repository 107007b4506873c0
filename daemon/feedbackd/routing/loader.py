"""Reading a rules directory into a ``RuleSet``, or into every problem with its exact location.

The directory holds ``*.yaml`` / ``*.yml`` files (dot files are ignored), read in name order.
Any file may hold any of the sections ``departments``, ``priorities``, ``kinds``, ``defaults`` and
``rules``; departments may be spread over several files, ``priorities``, ``kinds`` and
``defaults`` are given once, and the ``rules`` lists are joined in file-name order.

Loading goes in stages, each adding problems rather than stopping at the first:
YAML syntax (ruamel.yaml, YAML 1.2: ``on`` and ``no`` stay strings, duplicate keys are errors) →
empty values → the pydantic models (keys, types, regexes, addresses, durations) → references
across files (departments, priorities, duplicate names).  Every problem carries
``file:line:column``, found by walking the error's path through ruamel's line/column data.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from feedbackd.routing import model
from feedbackd.routing.conditions import compile_both
from feedbackd.routing.ruleset import (
    DEFAULT_TEMPLATES,
    Actions,
    Deadlines,
    Department,
    Kind,
    Priority,
    Rule,
    RuleSet,
)

SUFFIXES = (".yaml", ".yml")
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RulesError(Exception):
    """The rules directory is not valid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a directory, in the order they are read."""
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir() if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_ruleset(directory: Path) -> RuleSet:
    """Load, validate and compile a rules directory; raise ``RulesError`` with every problem."""
    files = rule_files(directory)
    if not files:
        raise RulesError([Problem(str(directory), 1, 1, "no rule files (*.yaml) found")])
    digest = hashlib.sha256()
    sources = []
    for path in files:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + data + b"\0")
        sources.append(_Source.read(path, data))
    problems = [p for s in sources for p in s.problems]
    merged = _Merged.of(sources, directory)
    problems += merged.problems
    if problems:
        raise RulesError(sorted(problems, key=lambda p: (_file_index(files, p.file), p.line, p.column)))
    return merged.build(version=digest.hexdigest()[:12], files=tuple(str(p) for p in files))


def _file_index(files: list[Path], name: str) -> int:
    names = [str(p) for p in files]
    return names.index(name) if name in names else -1


# -- one file --------------------------------------------------------------------------------------


@dataclass
class _RuleEntry:
    """One item of a ``rules`` list; ``rule`` is None when it is invalid, but its name and actions
    may still be known, so duplicates and unknown departments are reported in the same run."""

    index: int
    name: str | None
    then: model.Actions | None
    rule: model.Rule | None


@dataclass
class _Source:
    """One file: its YAML tree (with positions), its valid parts, and its problems."""

    path: Path
    tree: Any = None
    departments: dict[str, model.Department] = field(default_factory=dict)
    priorities: dict[str, model.Priority] | None = None
    kinds: model.Kinds | None = None
    defaults: model.Defaults | None = None
    rules: list[_RuleEntry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.path)

    @classmethod
    def read(cls, path: Path, data: bytes) -> _Source:
        source = cls(path)
        source.parse(data)
        if isinstance(source.tree, CommentedMap):
            source.validate()
        return source

    def problem(self, loc: Loc, message: str, key: bool = False) -> Problem:
        line, column = locate(self.tree, loc, key)
        return Problem(self.name, line, column, message)

    def parse(self, data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            self.problems.append(Problem(self.name, line, column, "not UTF-8 text; save the file as UTF-8"))
            return
        try:
            self.tree = YAML(typ="rt").load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            message = str(exc.problem or exc.context).split(" with value ")[0]  # duplicate keys: no repr
            self.problems.append(Problem(self.name, line, column, f"YAML: {message}"))
            return
        except YAMLError as exc:  # pragma: no cover - every ruamel parse error is marked
            self.problems.append(Problem(self.name, 1, 1, f"YAML: {exc}"))
            return
        if self.tree is None:
            self.problems.append(Problem(self.name, 1, 1, "the file is empty"))
        elif not isinstance(self.tree, CommentedMap):
            self.problems.append(
                Problem(self.name, 1, 1, "the file must be a mapping with departments, priorities, kinds, "
                                         "defaults and/or rules")
            )

    def validate(self) -> None:
        empty = list(_empty_values(self.tree, ()))
        for loc in empty:
            self.problems.append(self.problem(loc, f"'{_last_key(loc)}' has no value", key=True))
        try:
            whole = model.RulesFile.model_validate(self.tree)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                if not any(loc[: len(e)] == e for e in empty):
                    self.problems.append(_from_pydantic(self, error))
            self.salvage()
        else:
            self.departments = dict(whole.departments or {})
            self.priorities, self.kinds, self.defaults = whole.priorities, whole.kinds, whole.defaults
            self.rules = [_RuleEntry(i, r.name, r.then, r) for i, r in enumerate(whole.rules or [])]

    def salvage(self) -> None:
        """The valid parts of an invalid file, for the checks across files."""
        tree = self.tree
        departments = tree.get("departments")
        if isinstance(departments, dict):
            for key, value in departments.items():
                found = _valid(model.Department, value)
                if isinstance(key, str) and found is not None:
                    self.departments[key] = found
        self.priorities = _valid(_PRIORITIES, tree.get("priorities"))
        self.kinds = _valid(model.Kinds, tree.get("kinds"))
        self.defaults = _valid(model.Defaults, tree.get("defaults"))
        rules = tree.get("rules")
        for index, item in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(item, dict):
                continue
            name = item.get("name")
            self.rules.append(_RuleEntry(
                index,
                name if isinstance(name, str) and name.strip() else None,
                _valid(model.Actions, item.get("then")),
                _valid(model.Rule, item),
            ))


_PRIORITIES: TypeAdapter[dict[str, model.Priority]] = TypeAdapter(dict[model.Key, model.Priority])


def _raw_deadlines(tree: Any) -> Iterator[tuple[str, dict[Any, Any]]]:
    departments = tree.get("departments") if isinstance(tree, dict) else None
    for key, dept in departments.items() if isinstance(departments, dict) else ():
        deadlines = dept.get("deadlines") if isinstance(dept, dict) else None
        if isinstance(deadlines, dict):
            yield key, deadlines


def _valid(kind: Any, value: Any) -> Any:
    """``value`` validated as ``kind`` (a model or a TypeAdapter), or None."""
    if value is None:
        return None
    try:
        return kind.validate_python(value) if isinstance(kind, TypeAdapter) else kind.model_validate(value)
    except ValidationError:
        return None


def _empty_values(node: Any, loc: Loc) -> Iterator[Loc]:
    """Paths of empty values (``key:`` with nothing after it, a bare ``-``)."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        if value is None:
            yield (*loc, key)
        else:
            yield from _empty_values(value, (*loc, key))


def _last_key(loc: Loc) -> str:
    named = [p for p in loc if isinstance(p, str)]
    return named[-1] if named else "item"


def locate(tree: Any, loc: Loc, key: bool = False) -> tuple[int, int]:
    """1-based line and column of the node at ``loc`` (of its key with ``key``).

    Path parts that are not in the tree (a missing key, pydantic's union tags) stop the walk at
    the deepest node found, which is where the admin has to look.
    """
    line, column = (tree.lc.line, tree.lc.col) if isinstance(tree, (CommentedMap, CommentedSeq)) else (0, 0)
    node = tree
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            line, column = node.lc.key(part) if (last and key) else node.lc.value(part)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.lc.item(part)
            node = node[part]
        else:
            break
    return line + 1, column + 1


# -- pydantic errors in the admins' words -------------------------------------------------------------


def _known_keys() -> list[str]:
    keys: set[str] = set()
    for obj in vars(model).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == model.__name__:
            keys.update(f.alias or name for name, f in obj.model_fields.items())
    return sorted(keys)


KNOWN_KEYS = _known_keys()
_EXPECTED = {
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "bool_type": "true or false",
}


def _from_pydantic(source: _Source, error: Any) -> Problem:
    loc: Loc = tuple(error["loc"])
    kind, key = error["type"], False
    if loc and loc[-1] == "[key]":
        loc, key = loc[:-1], True
    name = _last_key(loc)
    if kind == "extra_forbidden":
        message, key = f"unknown key '{loc[-1]}'", True
        close = difflib.get_close_matches(str(loc[-1]), KNOWN_KEYS, n=1, cutoff=0.6)
        if close:
            message += f" (did you mean '{close[0]}'?)"
    elif kind == "missing":
        message = f"missing key '{loc[-1]}'"
    elif kind in ("value_error", "assertion_error"):
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    elif kind == "literal_error":
        message = f"'{name}' should be {error['ctx']['expected']}, not {_describe(error.get('input'))}"
    elif kind == "too_short":
        message = f"'{name}' must not be empty"
    elif kind in _EXPECTED:
        message = f"'{name}' should be {_EXPECTED[kind]}, not {_describe(error.get('input'))}"
    else:
        message = f"'{name}': {str(error['msg']).replace('Input should', 'should')}"
    return source.problem(loc, message, key)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else f"text {value!r}"


# -- all files together ----------------------------------------------------------------------------


@dataclass
class _Defined:
    """Where something was defined, for 'already defined at …' messages."""

    source: _Source
    loc: Loc
    key: bool = True

    def where(self) -> str:
        line, column = locate(self.source.tree, self.loc, key=self.key)
        return f"{self.source.name}:{line}:{column}"


@dataclass
class _Merged:
    """The sections of all files, merged, with the problems merging found."""

    directory: Path
    departments: dict[str, tuple[model.Department, _Defined]] = field(default_factory=dict)
    priorities: tuple[dict[str, model.Priority], _Defined] | None = None
    kinds: tuple[model.Kinds, _Defined] | None = None
    defaults: tuple[model.Defaults, _Defined] | None = None
    rules: list[tuple[model.Rule, _Defined]] = field(default_factory=list)
    actions: list[tuple[model.Actions, _Defined]] = field(default_factory=list)
    department_keys: set[str] = field(default_factory=set)
    priority_keys: set[str] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    first_file: str = ""

    @classmethod
    def of(cls, sources: list[_Source], directory: Path) -> _Merged:
        merged = cls(directory, first_file=sources[0].name)
        for source in sources:
            merged.collect_names(source)
        names: dict[str, _Defined] = {}
        for source in sources:
            merged.add(source, names)
        merged.check_complete()
        merged.check_references(sources)
        return merged

    def collect_names(self, source: _Source) -> None:
        """Department and priority keys straight from the YAML, so that a mistake inside one
        department does not make every rule that names it 'unknown' as well."""
        tree = source.tree if isinstance(source.tree, CommentedMap) else {}
        self.sections.update(str(k) for k in tree)
        for section, names in (("departments", self.department_keys), ("priorities", self.priority_keys)):
            if isinstance(tree.get(section), dict):
                names.update(str(k) for k in tree[section])

    def add(self, source: _Source, names: dict[str, _Defined]) -> None:
        for key, dept in source.departments.items():
            here = _Defined(source, ("departments", key))
            if key in self.departments:
                where = self.departments[key][1].where()
                self.problems.append(source.problem(here.loc, f"department '{key}' is already defined at {where}",
                                                    key=True))
            else:
                self.departments[key] = (dept, here)
        for section in ("priorities", "kinds", "defaults"):
            value = getattr(source, section)
            if value is None:
                continue
            here = _Defined(source, (section,))
            earlier = getattr(self, section)
            if earlier is not None:
                self.problems.append(source.problem(
                    here.loc, f"'{section}' is already defined at {earlier[1].where()}; define it once", key=True))
            else:
                setattr(self, section, (value, here))
        for entry in source.rules:
            here = _Defined(source, ("rules", entry.index))
            if entry.name is not None and entry.name in names:
                self.problems.append(source.problem(
                    (*here.loc, "name"), f"duplicate rule name '{entry.name}' (also at {names[entry.name].where()})"))
            elif entry.name is not None:
                names[entry.name] = _Defined(source, (*here.loc, "name"), key=False)
            if entry.then is not None:
                self.actions.append((entry.then, here))
            if entry.rule is not None:
                self.rules.append((entry.rule, here))

    def check_complete(self) -> None:
        for section in ("priorities", "defaults"):
            if section not in self.sections:
                self.problems.append(Problem(self.first_file, 1, 1, f"no '{section}' section in any rule file"))

    def check_references(self, sources: list[_Source]) -> None:
        for source in sources:  # from the YAML, so that they are checked even in an invalid department
            for key, deadlines in _raw_deadlines(source.tree):
                defined = _Defined(source, ("departments", key))
                for priority in deadlines:
                    self._known(defined, (*defined.loc, "deadlines", priority), str(priority), "priority", key=True)
        if self.defaults is not None:
            defaults, defined = self.defaults
            self._known(defined, ("defaults", "department"), defaults.department, "department")
            self._known(defined, ("defaults", "priority"), defaults.priority, "priority")
        for then, defined in self.actions:
            self._known(defined, (*defined.loc, "then", "department"), then.department, "department")
            self._known(defined, (*defined.loc, "then", "priority"), then.priority, "priority")

    def _known(self, defined: _Defined, loc: Loc, value: str | None, what: str, key: bool = False) -> None:
        known = self.department_keys if what == "department" else self.priority_keys
        if value is None or value in known:
            return
        message = f"unknown {what} '{value}'"
        close = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
        message += f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(known)) or 'none'})"
        self.problems.append(defined.source.problem(loc, message, key))

    # -- compiling -------------------------------------------------------------------------------

    def build(self, version: str, files: tuple[str, ...]) -> RuleSet:
        assert self.priorities is not None and self.defaults is not None
        defaults = self.defaults[0]
        return RuleSet(
            departments=MappingProxyType({k: _department(k, d) for k, (d, _) in self.departments.items()}),
            priorities=MappingProxyType(
                {k: _priority(k, p, rank) for rank, (k, p) in enumerate(self.priorities[0].items())}
            ),
            kinds=MappingProxyType(_kinds(self.kinds[0] if self.kinds else model.Kinds())),
            default_department=defaults.department,
            default_priority=defaults.priority,
            default_kind=model.KIND_ALIASES[defaults.kind],
            rules=tuple(_rule(r, d) for r, d in self.rules if r.enabled),
            version=version,
            files=files,
        )


def _deadlines(spec: model.Deadlines) -> Deadlines:
    return Deadlines(
        first_response=model.parse_duration(spec.first_response) if spec.first_response else None,
        resolution=model.parse_duration(spec.resolution) if spec.resolution else None,
    )


def _department(key: str, spec: model.Department) -> Department:
    return Department(
        key=key,
        name=spec.name,
        staff=tuple(spec.staff),
        lead=spec.lead,
        deadlines=MappingProxyType({p: _deadlines(d) for p, d in spec.deadlines.items()}),
    )


def _priority(key: str, spec: model.Priority, rank: int) -> Priority:
    return Priority(
        key=key,
        name=spec.name or key,
        rank=rank,
        first_response=model.parse_duration(spec.first_response),
        resolution=model.parse_duration(spec.resolution),
    )


def _kinds(spec: model.Kinds) -> dict[str, Kind]:
    kinds = {}
    for key in ("problem", "opinion"):
        given: model.Kind = getattr(spec, key) or model.Kind()
        resolution = given.resolution_deadline
        kinds[key] = Kind(
            key=key,
            template=given.template or DEFAULT_TEMPLATES[key],
            first_response=model.parse_duration(given.first_response) if given.first_response else None,
            resolution_deadline=(key == "problem") if resolution is None else resolution,
        )
    return kinds


def _rule(spec: model.Rule, defined: _Defined) -> Rule:
    then = spec.then
    line, _ = locate(defined.source.tree, defined.loc)
    predicate, explainer = compile_both(spec.when) if spec.when else (None, None)
    return Rule(
        name=spec.name,
        file=defined.source.name,
        line=line,
        on=frozenset(spec.on),
        predicate=predicate,
        explainer=explainer,
        actions=Actions(
            department=then.department,
            priority=then.priority,
            kind=model.KIND_ALIASES[then.kind] if then.kind else None,
            tags=tuple(then.tags or ()),
            assignee=then.assignee,
            template=then.template,
            suppress_ack=then.suppress_ack,
            stop=then.stop,
        ),
        description=spec.description or "",
    )
