"""``feedbackd rules eval``: how well a rule set routes a folder of hand-labelled mails.

A labelled folder holds ``*.eml`` files and their labels: one ``labels.yaml`` mapping each file
name to ``{department, kind, priority}``, or a ``.yaml`` beside each ``.eml`` (``0001.yaml`` for
``0001.eml``); a per-file label wins over ``labels.yaml``.  ``load_labelled`` reads the folder into
``Labelled`` items (the parsed message and its label), which the learned-suggestion model reuses.
Kinds are compared by their canonical key (反映 is ``opinion``, 问题反馈 is ``problem``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.parse import ParseError, parse_message
from feedbackd.routing.model import KIND_ALIASES

LABELS_FILE = "labels.yaml"
FIELDS = ("department", "kind", "priority")


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
