"""The format of the rule files, as pydantic models.

These models are the single source of truth for the format: the loader validates every file
against ``RulesFile`` and the published JSON Schema (``schema()``) is generated from it, so the
editor's inline errors and ``feedbackd rules check`` cannot disagree about keys and types.
Keys are written with hyphens in YAML (``contains-any``, ``first-response``); the Python names
use underscores.  References between files (a rule naming a department) are checked by the
loader, which sees all files at once.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.json_schema import GenerateJsonSchema

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"

# The two kinds of case from the brief, with the Chinese names accepted as aliases.
KIND_ALIASES: dict[str, str] = {"problem": "problem", "opinion": "opinion", "问题反馈": "problem", "反映": "opinion"}
KindName = Literal["problem", "opinion", "问题反馈", "反映"]


def _alias(name: str) -> str:
    return name.rstrip("_").replace("_", "-")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=_alias, frozen=True, coerce_numbers_to_str=True)


# -- scalar types ----------------------------------------------------------------------------------

_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"]+@(?:[\w-]+\.)+[\w-]{2,}")
_DOMAIN = re.compile(r"(?:[\w-]+\.)*[\w-]+\.[\w-]{2,}")
_KEY = re.compile(r"[a-z][a-z0-9_-]*")
_TEMPLATE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DURATION_PART = re.compile(r"(\d+)([wdhm])")
_DURATION = re.compile(r"(?:\d+[wdhm])+")
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value.strip()):
        raise ValueError(f"malformed address {value!r} (write it like someone@city.example)")
    return value.strip().lower()


def _domain(value: str) -> str:
    if "@" in value:
        domain = value.rpartition("@")[2]
        raise ValueError(f"write the domain without '@' ({domain!r}), or use glob: '*@{domain}'")
    if not _DOMAIN.fullmatch(value.strip()):
        raise ValueError(f"malformed domain {value!r} (write it like gov.cn or city.example)")
    return value.strip().lower()


def _key(value: str) -> str:
    if not _KEY.fullmatch(value):
        raise ValueError(f"bad key {value!r}: use lower-case letters, digits, '-' and '_', starting with a letter")
    return value


def _template(value: str) -> str:
    if not _TEMPLATE.fullmatch(value):
        raise ValueError(f"bad template name {value!r}: use letters, digits, '-', '_' and '.' only")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression '{value}': {exc.msg} at position {exc.pos}") from None
    return value


def _duration(value: str) -> str:
    text = value.strip().replace(" ", "")
    if not _DURATION.fullmatch(text):
        raise ValueError(f"bad duration {value!r}: write a number and a unit (m, h, d, w), like 30m, 4h, 3d, 1d12h")
    if parse_duration(text) <= timedelta(0):
        raise ValueError(f"bad duration {value!r}: must be longer than zero")
    return text


def parse_duration(text: str) -> timedelta:
    """``1d12h`` → 36 hours.  Days are calendar days (24 hours), not working days."""
    total = timedelta(0)
    for number, unit in _DURATION_PART.findall(text):
        total += int(number) * _UNITS[unit]
    return total


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _extra(**schema: Any) -> Any:
    return Field(json_schema_extra=schema)


Text = Annotated[str, AfterValidator(_not_blank), Field(min_length=1)]
Address = Annotated[str, AfterValidator(_address), _extra(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Domain = Annotated[str, AfterValidator(_domain), _extra(pattern=r"^[^@\s]+\.[^@\s]+$")]
Key = Annotated[str, AfterValidator(_key), _extra(pattern=r"^[a-z][a-z0-9_-]*$")]
TemplateName = Annotated[str, AfterValidator(_template), _extra(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Regex = Annotated[str, AfterValidator(_regex), _extra(format="regex")]
Duration = Annotated[
    str, AfterValidator(_duration), _extra(pattern=r"^(\d+[wdhm])+$", examples=["30m", "4h", "3d", "1d12h"])
]


# -- conditions ------------------------------------------------------------------------------------


class TextTest(_Model):
    """Tests on a piece of text.  Every operator given must hold.

    Matching ignores case, full-width/half-width forms (Unicode NFKC) and traditional/simplified
    Chinese (write keywords in simplified characters), and treats any run of white space as one
    space; Chinese keywords match anywhere (no word boundaries).  ``within: sentence``: the words of
    ``contains``, ``contains-all`` and ``contains-any`` must be found together in one sentence.
    ``unless``: words that veto the test (in that sentence with ``within``, else anywhere in the
    text).  ``regex`` sees the text as received in simplified characters (case-insensitive unless
    ``case-sensitive: true``).
    """

    equals: Text | None = None
    contains: Text | None = None
    contains_any: Annotated[list[Text], Field(min_length=1)] | None = None
    contains_all: Annotated[list[Text], Field(min_length=1)] | None = None
    regex: Regex | None = None
    glob: Text | None = None
    within: Literal["sentence"] | None = None
    unless: Annotated[list[Text], Field(min_length=1)] | None = None
    case_sensitive: StrictBool = False

    _OPERATORS: ClassVar[str] = "equals, contains, contains-any, contains-all, regex or glob"

    def _complete(self) -> bool:
        return self.has_operator()

    def has_operator(self) -> bool:
        """Whether any text operator is given (``exists`` of a header test is not one)."""
        return any(
            v is not None
            for v in (self.equals, self.contains, self.contains_any, self.contains_all, self.regex, self.glob)
        )

    @model_validator(mode="after")
    def _needs_operator(self) -> TextTest:
        if not self._complete():
            raise ValueError(f"needs an operator: {self._OPERATORS}")
        if self.within and not (self.contains or self.contains_all or self.contains_any):
            raise ValueError("within: sentence needs words to look for: contains, contains-all or contains-any")
        if self.unless and not self.has_operator():
            raise ValueError(f"unless vetoes a test, so it needs an operator too: {self._OPERATORS}")
        return self


class HeaderTest(TextTest):
    """A named header (``name``), tested like text; ``exists`` tests its presence alone."""

    name: Annotated[str, Field(pattern=r"^[!-9;-~]+$")]
    exists: StrictBool | None = None

    _OPERATORS: ClassVar[str] = "exists, equals, contains, contains-any, contains-all, regex or glob"

    def _complete(self) -> bool:
        return self.exists is not None or self.has_operator()


class AddressTest(_Model):
    """Tests on an address (lower-case).  ``domain`` also matches sub-domains; ``glob`` like ``*@gov.cn``."""

    equals: Address | None = None
    domain: Domain | None = None
    glob: Text | None = None
    contains: Text | None = None
    contains_any: Annotated[list[Text], Field(min_length=1)] | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _needs_operator(self) -> AddressTest:
        if all(
            v is None for v in (self.equals, self.domain, self.glob, self.contains, self.contains_any, self.regex)
        ):
            raise ValueError("needs an operator: equals, domain, glob, contains, contains-any or regex")
        return self


class AttachmentTest(_Model):
    """``has: true/false``; ``type`` and ``filename`` are globs (``image/*``, ``*.pdf``) one attachment must match."""

    has: StrictBool | None = None
    type: Text | None = None
    filename: Text | None = None

    @model_validator(mode="after")
    def _needs_test(self) -> AttachmentTest:
        if self.has is None and self.type is None and self.filename is None:
            raise ValueError("needs has, type or filename")
        return self


class Condition(_Model):
    """One condition.  Several keys in one condition must all hold (like ``all``)."""

    all_: Annotated[list[Condition], Field(min_length=1)] | None = None
    any_: Annotated[list[Condition], Field(min_length=1)] | None = None
    not_: Condition | None = None
    sender: AddressTest | None = None
    to: AddressTest | None = None
    subject: TextTest | None = None
    body: TextTest | None = None
    text: TextTest | None = None
    header: HeaderTest | None = None
    attachment: AttachmentTest | None = None
    language: Literal["zh", "en", "unknown"] | None = None

    @model_validator(mode="after")
    def _needs_test(self) -> Condition:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(
                "empty condition: use all, any, not, sender, to, subject, body, text, header, attachment or language"
            )
        return self


# -- rules -----------------------------------------------------------------------------------------


class Actions(_Model):
    """What a matching rule does.  Later rules override earlier ones; tags add up; ``stop`` ends evaluation."""

    department: Key | None = None
    priority: Key | None = None
    kind: KindName | None = None
    tags: list[Text] | None = None
    assignee: Address | None = None
    template: TemplateName | None = None
    suppress_ack: StrictBool | None = None
    stop: StrictBool = False

    @model_validator(mode="after")
    def _needs_action(self) -> Actions:
        if not self.model_fields_set:
            raise ValueError("no actions: give at least one of department, priority, kind, tags, assignee, "
                             "template, suppress-ack, stop")
        return self


class Rule(_Model):
    name: Text
    description: str | None = None
    on: Annotated[list[Literal["new", "reply"]], Field(min_length=1)] = ["new"]
    enabled: StrictBool = True
    when: Condition | None = None
    then: Actions


# -- departments, priorities, kinds, defaults ------------------------------------------------------


class Deadlines(_Model):
    first_response: Duration | None = None
    resolution: Duration | None = None


class Department(_Model):
    name: Text
    staff: Annotated[list[Address], Field(min_length=1)]
    lead: Address
    deadlines: dict[Key, Deadlines] = {}


class Priority(_Model):
    name: Text | None = None
    first_response: Duration
    resolution: Duration


class Kind(_Model):
    template: TemplateName | None = None
    first_response: Duration | None = None
    resolution_deadline: StrictBool | None = None


class Kinds(_Model):
    problem: Kind | None = None
    opinion: Kind | None = None


class Defaults(_Model):
    department: Key | None = None
    priority: Key
    kind: KindName = "problem"


class RulesFile(_Model):
    """One file under ``rules/``.  Any file may hold any section; see docs/rules.md."""

    model_config = ConfigDict(title="feedbackd rules file")

    departments: dict[Key, Department] | None = None
    priorities: Annotated[dict[Key, Priority], Field(min_length=1)] | None = None
    kinds: Kinds | None = None
    defaults: Defaults | None = None
    rules: list[Rule] | None = None


# -- JSON Schema -----------------------------------------------------------------------------------


class _Schema(GenerateJsonSchema):
    """Optional keys are simply optional: no ``null`` alternatives (the loader rejects empty values)."""

    def nullable_schema(self, schema: Any) -> Any:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: Any) -> Any:
        result = super().default_schema(schema)
        if result.get("default", 0) is None:
            del result["default"]
        return result


def schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of one rule file."""
    result = RulesFile.model_json_schema(by_alias=True, schema_generator=_Schema)
    return {"$schema": SCHEMA_URI, **result}
