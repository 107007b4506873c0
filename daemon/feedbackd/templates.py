"""Rendering outgoing mail from the admin's templates in a Jinja2 sandbox.

Citizen-supplied text (subjects, bodies) is passed as data only, never as template source, and
the sandbox keeps an edited template from reaching into Python.  A template named ``NAME`` in
language ``LANG`` is three files under ``templates/LANG/``: ``NAME.subject.j2``, ``NAME.txt.j2``
and ``NAME.html.j2`` (the HTML part is optional).  A missing language falls back to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

if TYPE_CHECKING:
    from feedbackd.routing.ruleset import RuleSet

LANGUAGES = ("zh-CN", "en")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class TemplateError(Exception):
    """A template is missing or broken; the message names the file."""


class Templates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._envs = {lang: self._environment(lang) for lang in LANGUAGES}

    def _environment(self, lang: str) -> SandboxedEnvironment:
        fallbacks = [lang] + [other for other in LANGUAGES if other != lang]
        loader = ChoiceLoader([FileSystemLoader(str(self.directory / name)) for name in fallbacks])
        env = SandboxedEnvironment(
            loader=loader,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        return env

    def render(self, name: str, language: str, context: dict[str, Any]) -> Rendered:
        env = self._envs.get(language) or self._envs[LANGUAGES[0]]
        try:
            subject = env.get_template(f"{name}.subject.j2").render(context)
            text = env.get_template(f"{name}.txt.j2").render(context)
        except TemplateNotFound as exc:
            raise TemplateError(f"{self.directory}/{language}/{exc.name}: template not found") from None
        except Exception as exc:  # a broken template must name itself, not crash the caller
            raise TemplateError(f"template {language}/{name}: {type(exc).__name__}: {exc}") from exc
        try:
            html: str | None = env.get_template(f"{name}.html.j2").render(context)
        except TemplateNotFound:
            html = None
        except Exception as exc:
            raise TemplateError(f"template {language}/{name}.html.j2: {type(exc).__name__}: {exc}") from exc
        return Rendered(subject=" ".join(subject.split()), text=text, html=html)

    def missing_for(self, ruleset: RuleSet) -> list[tuple[str, str]]:
        """(name, language) of every template the rules name that does not exist exactly in that language
        (``rules check`` and ``doctor`` report them; the default acknowledgement would be sent)."""
        names = {kind.template for kind in ruleset.kinds.values()}
        names |= {rule.actions.template for rule in ruleset.rules if rule.actions.template}
        return [(name, language) for name in sorted(names) for language in LANGUAGES
                if not self.exists_exactly(name, language)]

    def exists_exactly(self, name: str, language: str) -> bool:
        """The template is written in this language itself (not only in the fallback one)."""
        return (self.directory / language / f"{name}.subject.j2").is_file() and \
            (self.directory / language / f"{name}.txt.j2").is_file()

    def exists(self, name: str, language: str) -> bool:
        env = self._envs.get(language) or self._envs[LANGUAGES[0]]
        try:
            env.get_template(f"{name}.subject.j2")
        except TemplateNotFound:
            return False
        return True
