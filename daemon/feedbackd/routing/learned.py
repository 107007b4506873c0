"""The learned routing suggestion: a model of the desk's own past cases (``feedbackd rules learn``).

Features are the character 1–3-grams of the normalised, case-folded subject and first citizen
message (no word segmentation: Chinese has no spaces), hashed into ``BUCKETS`` buckets,
weighted by sublinear TF-IDF and L2-normalised; one linear model with logistic loss (scikit-learn's
``SGDClassifier``) for the department and one for the kind.  Hashing is stateless, so cross-validation vectorises
once and stays honest (each fold learns its own IDF and weights), and the model file holds no
text: only bucket numbers, weights and label names.

The file ``<paths.data>/routing-model.npz`` is numpy arrays plus one JSON header (format tag,
training date, counts), mode 0600, read without pickle.  Prediction is a few numpy operations on
the message's n-grams (well under 2 ms, ``bench/bench_learned.py``); scikit-learn is only
imported to train.

``[routing] learned`` decides what the daemon does with a suggestion (``LearnedRouter``):
``suggest`` stores it in the case's routing (``routing["learned"]``) beside the rules' decision;
``route`` also lets it set the department (and the kind) when no rule set the department, above
``learned_min_confidence``.  It never overrides a rule's explicit value and never touches the
priority; deadlines and the acknowledgement template follow the new department and kind as the
rules define them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from feedbackd.routing.conditions import normalise
from feedbackd.routing.decision import Decision

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from feedbackd.config import Settings
    from feedbackd.mail.message import ParsedMessage
    from feedbackd.routing.evaluation import Labelled
    from feedbackd.routing.ruleset import RuleSet

log = logging.getLogger(__name__)

FORMAT = "feedbackd-routing-model/1"
MODEL_FILE = "routing-model.npz"
BUCKETS = 1 << 18  # hashed n-gram features
MAX_CHARS = 600  # of subject and first message together: the opening says what a mail is about
FOLDS = 5
MIN_CASES = 10
ALPHA = 3e-5  # L2 regularisation of the linear models (rows are L2-normalised); chosen on the eval set
EPOCHS = 15
FIELDS = ("department", "kind")
ERASED_EVENTS = ("purged", "erased")  # cases whose personal data was removed are not learned from
MARKER = "[purged]"


class ModelError(Exception):
    """A model file that cannot be used, or too few cases to train one."""


# -- features -------------------------------------------------------------------------------------


def model_text(subject: str, body: str) -> str:
    """What the model reads of a message: subject and body, normalised as the rules see them, folded."""
    return normalise(f"{subject}\n{body[:MAX_CHARS]}"[:MAX_CHARS]).casefold()


def grams(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The hashed character 1-, 2- and 3-grams of one text: sorted bucket numbers and their counts.

    An n-gram's code points read as one base-0x110001 number are unique per n-gram (and fit in 64
    bits); Fibonacci hashing (times a 64-bit odd constant, the top bits) spreads them over the
    buckets.  Vectorised in numpy: stable across processes (unlike ``hash``) and fast.
    """
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    keys = [points]
    if len(points) > 1:
        keys.append(points[:-1] * _BASE + points[1:])
    if len(points) > 2:
        keys.append((points[:-2] * _BASE + points[1:-1]) * _BASE + points[2:])
    hashed = (np.concatenate(keys) * _GOLDEN) >> _SHIFT
    buckets, counts = np.unique(hashed.astype(np.int64), return_counts=True)
    return buckets, counts


_BASE, _GOLDEN = np.uint64(0x110001), np.uint64(0x9E3779B97F4A7C15)  # past the last code point; 2**64 / φ
_SHIFT = np.uint64(64 - BUCKETS.bit_length() + 1)


def count_matrix(texts: Sequence[str]) -> Any:
    """The hashed n-gram counts of many texts as a CSR matrix (rows: texts, columns: buckets)."""
    from scipy.sparse import csr_matrix

    rows = [grams(text) for text in texts]
    indptr = np.cumsum([0, *(len(buckets) for buckets, _ in rows)])
    indices = np.concatenate([buckets for buckets, _ in rows]) if rows else np.zeros(0, dtype=np.int64)
    values = np.concatenate([counts for _, counts in rows]).astype(np.float64) if rows else np.zeros(0)
    return csr_matrix((values, indices, indptr), shape=(len(texts), BUCKETS))


def _idf(counts: Any) -> np.ndarray:
    """Smoothed inverse document frequency per bucket (as scikit-learn's ``TfidfTransformer``)."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf: np.ndarray = np.log((1 + counts.shape[0]) / (1 + df)) + 1.0
    return idf


def _weigh(counts: Any, idf: np.ndarray) -> Any:
    """Sublinear TF times IDF, rows L2-normalised."""
    from sklearn.preprocessing import normalize

    weighted = counts.copy()
    weighted.data = (1.0 + np.log(weighted.data)) * idf[weighted.indices]
    return normalize(weighted)


def _fit(counts: Any, labels: Sequence[str]) -> tuple[np.ndarray, Head]:
    """IDF and a logistic-loss linear model by stochastic gradient descent: a fixed number of passes,
    seeded, so training is fast (seconds for thousands of cases) and repeatable."""
    from sklearn.linear_model import SGDClassifier

    idf = _idf(counts)
    classifier = SGDClassifier(loss="log_loss", alpha=ALPHA, max_iter=EPOCHS, tol=None, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed number of passes is the point, not convergence
        classifier.fit(_weigh(counts, idf), list(labels))
    return idf, Head.from_classifier(classifier)


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """One field's linear model over the model's columns (one-vs-rest logistic, as scikit-learn's SGD).

    ``coef`` has one row per label, or one row for two labels (the second label's score).
    """

    labels: tuple[str, ...]
    coef: np.ndarray  # (labels or 1, columns)
    intercept: np.ndarray  # (labels or 1,)

    @classmethod
    def from_classifier(cls, classifier: Any) -> Head:
        return cls(tuple(str(c) for c in classifier.classes_), np.asarray(classifier.coef_, dtype=np.float64),
                   np.asarray(classifier.intercept_, dtype=np.float64))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Scores (..., rows) → probabilities (..., labels): the sigmoid of each, normalised."""
        sig = 1.0 / (1.0 + np.exp(-np.clip(scores, -500, 500)))
        if len(self.labels) == 2 and sig.shape[-1] == 1:
            return np.concatenate([1.0 - sig, sig], axis=-1)
        total = sig.sum(axis=-1, keepdims=True)
        result: np.ndarray = np.divide(sig, total, out=np.full_like(sig, 1 / sig.shape[-1]), where=total > 0)
        return result

    def best(self, columns: np.ndarray, weights: np.ndarray) -> tuple[str, float]:
        probs = self.probabilities(self.coef[:, columns] @ weights + self.intercept)
        i = int(probs.argmax())
        return self.labels[i], float(probs[i])

    def predict(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """The label and its probability for each row of a weighted matrix over the same columns."""
        probs = self.probabilities(np.asarray(rows @ self.coef.T) + self.intercept)
        best = probs.argmax(axis=-1)
        return np.array(self.labels)[best], probs[np.arange(len(best)), best]


@dataclass(frozen=True)
class Suggestion:
    department: str
    department_confidence: float
    kind: str
    kind_confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"department": self.department, "department_confidence": round(self.department_confidence, 3),
                "kind": self.kind, "kind_confidence": round(self.kind_confidence, 3)}


@dataclass(frozen=True)
class Model:
    """The trained suggestion: IDF and two heads over the buckets seen in training (``columns``)."""

    columns: np.ndarray  # sorted bucket numbers
    idf: np.ndarray  # per column
    department: Head
    kind: Head
    meta: dict[str, Any] = field(default_factory=dict)  # format, trained_at, cases, counts

    def suggest(self, subject: str, body: str) -> Suggestion:
        columns, weights = self._vector(model_text(subject, body))
        department, dconf = self.department.best(columns, weights)
        kind, kconf = self.kind.best(columns, weights)
        return Suggestion(department, dconf, kind, kconf)

    def _vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        buckets, tf = grams(text)
        at = np.searchsorted(self.columns, buckets)
        at[at >= len(self.columns)] = 0
        known = self.columns[at] == buckets  # n-grams never seen in training carry no weight
        columns = at[known]
        weights = (1.0 + np.log(tf[known])) * self.idf[columns]
        norm = float(np.sqrt(weights @ weights))
        return columns, weights / norm if norm else weights


@dataclass(frozen=True)
class Example:
    """One case to learn from: what the model reads, and where the case finally went."""

    text: str
    department: str
    kind: str

    def get(self, name: str) -> str:
        return self.department if name == "department" else self.kind


def train(examples: Sequence[Example], now: datetime | None = None,
          sources: dict[str, Any] | None = None) -> Model:
    """Fit both heads on all examples; ``ModelError`` when there is too little to learn from.

    ``sources``: where the examples came from (counts only), kept in the file's header.
    """
    _check_trainable(examples)
    counts = count_matrix([e.text for e in examples])
    columns = np.unique(counts.indices)
    compact = counts[:, columns]
    heads = {}
    idf = np.zeros(0)
    for name in FIELDS:
        idf, heads[name] = _fit(compact, [e.get(name) for e in examples])
    meta = {"format": FORMAT, "trained_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
            "cases": len(examples), "columns": len(columns),
            "counts": {name: label_counts(examples, name) for name in FIELDS}}
    if sources is not None:
        meta["sources"] = sources
    return Model(columns, idf, heads["department"], heads["kind"], meta)


def _check_trainable(examples: Sequence[Example]) -> None:
    if len(examples) < MIN_CASES:
        raise ModelError(f"{len(examples)} case(s) to learn from; at least {MIN_CASES} are needed "
                         "(a new desk can start from a labelled folder: rules learn --add DIR)")
    for name in FIELDS:
        if len({e.get(name) for e in examples}) < 2:
            raise ModelError(f"every case has the same {name}: at least two are needed to learn from")


def label_counts(examples: Iterable[Example], name: str) -> dict[str, int]:
    return dict(sorted(Counter(e.get(name) for e in examples).items(), key=lambda kv: (-kv[1], kv[0])))


def cross_validate(examples: Sequence[Example], folds: int = FOLDS, seed: int = 0) -> dict[str, Any]:
    """Accuracy of each field predicted for every example by a model trained on the other folds."""
    return accuracy(examples, cv_predictions(examples, folds, seed), folds)


def accuracy(examples: Sequence[Example], predictions: dict[str, Predictions | None],
             folds: int | None) -> dict[str, Any]:
    """Accuracy per field of ``predictions`` (``folds``: of the cross-validation that made them, if one did)."""
    result: dict[str, Any] = {"folds": folds, "cases": len(examples)} if folds else {"cases": len(examples)}
    for name in FIELDS:
        found = predictions[name]
        right = None if found is None else sum(label == e.get(name) for (label, _), e in zip(found, examples,
                                                                                             strict=True))
        result[f"{name}_accuracy"] = None if right is None else round(right / len(examples), 4)
    return result


Predictions = list[tuple[str, float]]  # (label, confidence) per example


def cv_predictions(examples: Sequence[Example], folds: int = FOLDS, seed: int = 0) -> dict[str, Predictions | None]:
    """Each field of every example as predicted by a model trained on the other folds (vectorised once).

    Stratified when every label has at least ``folds`` examples; ``None`` for a field whose
    labels are too few to split (fewer than two in a training fold).
    """
    counts = count_matrix([e.text for e in examples])
    return {name: _cv_field(counts, np.array([e.get(name) for e in examples]), folds, seed) for name in FIELDS}


def _cv_field(counts: Any, labels: np.ndarray, folds: int, seed: int) -> Predictions | None:
    from sklearn.model_selection import KFold, StratifiedKFold

    if len(labels) < folds or len(set(labels)) < 2:
        return None
    smallest = min(Counter(labels).values())
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if smallest >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    found: list[tuple[str, float]] = [("", 0.0)] * len(labels)
    for train_rows, test_rows in splitter.split(counts, labels):
        if len(set(labels[train_rows])) < 2:
            return None
        columns = np.unique(counts[train_rows].indices)
        idf, head = _fit(counts[train_rows][:, columns], labels[train_rows])
        predicted, confidence = head.predict(_weigh(counts[test_rows][:, columns], idf))
        for row, label, conf in zip(test_rows, predicted, confidence, strict=True):
            found[row] = (str(label), float(conf))
    return found


def route_figures(items: Sequence[Labelled], predictions: dict[str, Predictions | None], ruleset: RuleSet,
                  min_confidence: float) -> dict[str, Any] | None:
    """The rules alone against the rules with ``learned = "route"`` (cross-validated suggestions) on a
    labelled folder: department and kind accuracy, and how many mails the model routed."""
    departments, kinds = predictions["department"], predictions["kind"]
    if departments is None or kinds is None:
        return None
    right = Counter[str]()
    routed = 0
    for item, (department, dconf), (kind, kconf) in zip(items, departments, kinds, strict=True):
        by_rules = ruleset.evaluate(item.message)
        by_both, info = apply(by_rules, Suggestion(department, dconf, kind, kconf), "route", min_confidence, ruleset)
        routed += bool(info["applied"])
        for name in FIELDS:
            right[f"rules_{name}"] += getattr(by_rules, name) == item.label.get(name)
            right[f"route_{name}"] += getattr(by_both, name) == item.label.get(name)
    n = len(items)
    return {"min_confidence": min_confidence, "routed_by_model": routed,
            "rules": {f"{name}_accuracy": round(right[f"rules_{name}"] / n, 4) for name in FIELDS},
            "rules_with_route": {f"{name}_accuracy": round(right[f"route_{name}"] / n, 4) for name in FIELDS}}


# -- the file -------------------------------------------------------------------------------------


def model_path(settings: Settings) -> Path:
    return settings.paths.data / MODEL_FILE


def save(model: Model, path: Path) -> None:
    """Write the model atomically (temporary file, then rename), private to the daemon's user."""
    from feedbackd.store.files import FILE_MODE, private_dirs

    buffer = io.BytesIO()
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(model.meta, ensure_ascii=False)),
                              "columns": model.columns.astype(np.int32), "idf": model.idf.astype(np.float32)}
    for name in FIELDS:
        head: Head = getattr(model, name)
        arrays[f"{name}_labels"] = np.array(head.labels)
        arrays[f"{name}_coef"] = head.coef.astype(np.float32)
        arrays[f"{name}_intercept"] = head.intercept.astype(np.float32)
    np.savez_compressed(buffer, **arrays)
    private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(buffer.getvalue())
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load(path: Path) -> Model:
    """Read a model file (no pickle); ``ModelError`` when it is unreadable or of another format."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ModelError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r} "
                                 "(run: feedbackd rules learn)")
            heads = {name: Head(tuple(str(x) for x in data[f"{name}_labels"]),
                                data[f"{name}_coef"].astype(np.float64),
                                data[f"{name}_intercept"].astype(np.float64)) for name in FIELDS}
            return Model(data["columns"].astype(np.int64), data["idf"].astype(np.float64),
                         heads["department"], heads["kind"], meta)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the model: {type(exc).__name__}: {exc}") from None


# -- the desk's cases -----------------------------------------------------------------------------


def desk_examples(engine: Engine) -> list[Example]:
    """Every case the desk has (but purged or erased ones), with the department and kind it has now.

    A case's ``department`` is updated in place by ``#move`` (and ``kind`` by any correction), so
    the columns hold the final value.  Text: subject and the case's first inbound mail.
    """
    from sqlalchemy import and_, exists, func, select

    from feedbackd.store.records import CASES, EVENTS, MESSAGES

    first = (select(MESSAGES.c.case_id, func.min(MESSAGES.c.id).label("first_id"))
             .where(MESSAGES.c.direction == "in", MESSAGES.c.case_id.is_not(None))
             .group_by(MESSAGES.c.case_id).subquery())
    erased = exists().where(and_(EVENTS.c.case_id == CASES.c.id, EVENTS.c.kind.in_(ERASED_EVENTS)))
    query = (select(CASES.c.subject, CASES.c.department, CASES.c.kind, MESSAGES.c.text)
             .join(first, first.c.case_id == CASES.c.id)
             .join(MESSAGES, MESSAGES.c.id == first.c.first_id)
             .where(CASES.c.purged_at.is_(None), CASES.c.department.is_not(None), ~erased)
             .order_by(CASES.c.id))
    examples = []
    with engine.connect() as conn:
        for subject, department, kind, text in conn.execute(query):
            if MARKER in (subject, text):
                continue
            examples.append(Example(model_text(subject or "", (text or "")[:MAX_CHARS]), department, kind))
    return examples


def labelled_examples(directory: Path) -> list[Example]:
    """The hand-labelled evaluation folder (``rules eval``'s) as examples."""
    from feedbackd.routing.evaluation import load_labelled

    return examples_of(load_labelled(directory))


def examples_of(items: Iterable[Labelled]) -> list[Example]:
    return [Example(model_text(item.message.subject, item.message.text), item.label.department, item.label.kind)
            for item in items]


# -- the daemon's side ----------------------------------------------------------------------------


def rule_fields(decision: Decision, ruleset: RuleSet) -> set[str]:
    """The fields a matched rule assigned explicitly (even to the value they already had)."""
    by_name = {rule.name: rule for rule in ruleset.rules}
    fields: set[str] = set()
    for hit in decision.hits:
        rule = by_name.get(hit.rule)
        if rule is not None:
            fields.update(name for name, _ in rule.assignments)
        fields.update(hit.changes)
    return fields


def apply(decision: Decision, suggestion: Suggestion, mode: str, min_confidence: float,
          ruleset: RuleSet) -> tuple[Decision, dict[str, Any]]:
    """The decision to use and what to store as ``routing["learned"]`` (pure).

    ``suggest``: the decision unchanged.  ``route``: the model's department and kind replace the
    defaults when no rule set the department, each only at ``min_confidence`` or above, a known
    key, and (for the kind) when no rule set it either; the priority is never changed.
    """
    info: dict[str, Any] = {"mode": mode, **suggestion.to_dict(), "applied": []}
    notes = [f"learned model ({mode}): department {suggestion.department} "
             f"(confidence {suggestion.department_confidence:.2f}), kind {suggestion.kind} "
             f"(confidence {suggestion.kind_confidence:.2f})"]
    if mode == "route":
        decision, applied, reasons = _route(decision, suggestion, min_confidence, ruleset)
        info["applied"] = applied
        notes += reasons
    info["explanation"] = notes
    return decision, info


def _route(decision: Decision, suggestion: Suggestion, min_confidence: float,
           ruleset: RuleSet) -> tuple[Decision, list[str], list[str]]:
    explicit = rule_fields(decision, ruleset)
    if "department" in explicit:
        return decision, [], ["a rule set the department: the learned model does not route this mail"]
    changes: dict[str, Any] = {}
    reasons = []
    wanted = (("department", suggestion.department, suggestion.department_confidence, ruleset.departments),
              ("kind", suggestion.kind, suggestion.kind_confidence, ruleset.kinds))
    for name, value, confidence, known in wanted:
        if name in explicit:
            reasons.append(f"{name} set by a rule, kept")
        elif value not in known:
            reasons.append(f"{name} {value} is not in the rules, ignored")
        elif value == getattr(decision, name):
            reasons.append(f"{name} {value}: the learned model agrees (confidence {confidence:.2f})")
        elif confidence < min_confidence:
            reasons.append(f"{name} confidence {confidence:.2f} below learned_min_confidence "
                           f"{min_confidence:.2f}: defaults kept")
        else:
            changes[name] = value
            reasons.append(f"{name} from the learned model, confidence {confidence:.2f}")
    if not changes:
        return decision, [], reasons
    department, kind = changes.get("department", decision.department), changes.get("kind", decision.kind)
    due = ruleset.deadlines(decision.priority, department, kind)  # the priority stays as the rules gave it
    if "template" not in explicit:
        changes["template"] = ruleset.kinds[kind].template
    routed = replace(decision, **changes, first_response_due=due.first_response, resolution_due=due.resolution)
    return routed, [n for n in ("department", "kind") if n in changes], reasons


class LearnedRouter:
    """Holds the current model of ``<paths.data>/routing-model.npz`` and reloads it when the file changes.

    No file: one warning, and mail is routed by the rules alone until a model appears.  A file
    that cannot be read keeps the previous model (one warning per version of the file).
    """

    def __init__(self, settings: Settings, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = model_path(settings)
        self.mode = settings.routing.learned
        self.min_confidence = settings.routing.learned_min_confidence
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._model: Model | None = None
        self._signature: tuple[int, int] | bool | None = False  # False: never looked
        self._checked = clock()
        self._check()

    def current(self) -> Model | None:
        if self._clock() - self._checked >= self.interval and self._lock.acquire(blocking=False):
            try:
                self._check()
            finally:
                self._lock.release()
        return self._model

    def route(self, decision: Decision, msg: ParsedMessage, ruleset: RuleSet) -> tuple[Decision, dict[str, Any] | None]:
        """The decision to use for a new case, and ``routing["learned"]`` (None without a model)."""
        model = self.current()
        if model is None or self.mode == "off":
            return decision, None
        suggestion = model.suggest(msg.subject, msg.text)
        return apply(decision, suggestion, self.mode, self.min_confidence, ruleset)

    def _check(self) -> None:
        self._checked = self._clock()
        try:
            st = self.path.stat()
            seen: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            seen = None
        if seen == self._signature:
            return
        self._signature = seen
        if seen is None:
            log.warning("[routing] learned = %r but there is no model at %s (run: feedbackd rules learn): "
                        "routing by the rules alone", self.mode, self.path)
            self._model = None
            return
        try:
            self._model = load(self.path)
        except ModelError as exc:
            log.warning("routing model not loaded, %s: %s", "keeping the previous one" if self._model else
                        "routing by the rules alone", exc)
            return
        meta = self._model.meta
        log.info("routing model loaded from %s: trained %s on %s cases (%s)", self.path, meta.get("trained_at"),
                 meta.get("cases"), self.mode)


def router_for(settings: Settings) -> LearnedRouter | None:
    """The daemon's learned router, or None when ``[routing] learned = "off"``."""
    return None if settings.routing.learned == "off" else LearnedRouter(settings)


# -- feedbackd rules learn ------------------------------------------------------------------------


@dataclass(frozen=True)
class Training:
    """What ``rules learn`` trains on: the desk's cases and any labelled folders (``--add``)."""

    examples: list[Example]
    sources: dict[str, Any]  # {"desk_cases": n, "folders": {dir: n}}


def training_set(settings: Settings, add_dirs: Sequence[Path] = ()) -> Training:
    """The desk's cases, then each added folder's mails with their hand labels (``LabelError``)."""
    from feedbackd.store.db import connect

    engine = connect(settings.database.url, readonly=True)
    try:
        examples = desk_examples(engine)
    finally:
        engine.dispose()
    sources: dict[str, Any] = {"desk_cases": len(examples), "folders": {}}
    for directory in add_dirs:
        added = labelled_examples(directory)
        sources["folders"][str(directory)] = sources["folders"].get(str(directory), 0) + len(added)
        examples += added
    return Training(examples, sources)


def learn_command(settings: Settings, out: TextIO, *, as_json: bool = False, eval_dir: Path | None = None,
                  add_dirs: Sequence[Path] = (), holdout_dir: Path | None = None) -> int:
    """Train on the desk's cases (and ``add_dirs``), save, and report counts and cross-validated accuracy.

    ``eval_dir``: also cross-validate on that labelled folder alone.  ``holdout_dir``: score the
    trained model on that labelled folder (it must not be one of ``add_dirs``).
    """
    from feedbackd.routing.evaluation import LabelError, load_labelled
    from feedbackd.routing.loader import RulesError, load_ruleset

    try:
        _check_holdout(holdout_dir, add_dirs)
        training = training_set(settings, add_dirs)
        started = time.perf_counter()
        model = train(training.examples, sources=training.sources)
        seconds = time.perf_counter() - started
        labelled = load_labelled(eval_dir) if eval_dir is not None else None
        held = load_labelled(holdout_dir) if holdout_dir is not None else None
        ruleset = load_ruleset(settings.paths.rules) if eval_dir is not None or held is not None else None
    except (ModelError, LabelError, RulesError) as exc:
        print(f"feedbackd: {exc}", file=sys.stderr)
        return 1
    path = model_path(settings)
    save(model, path)
    report = {"model": str(path), **model.meta, "training_seconds": round(seconds, 2),
              "cross_validation": cross_validate(training.examples)}
    min_confidence = settings.routing.learned_min_confidence
    if labelled is not None and ruleset is not None:
        report["eval"] = {**eval_report(labelled, ruleset, min_confidence), "dir": str(eval_dir)}
    if held is not None and ruleset is not None:
        report["holdout"] = {**holdout_report(model, held, training.examples, ruleset, min_confidence),
                             "dir": str(holdout_dir)}
    if as_json:
        json.dump(report, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        _print_report(report, out)
    return 0


def _check_holdout(holdout_dir: Path | None, add_dirs: Sequence[Path]) -> None:
    if holdout_dir is not None and any(d.resolve() == holdout_dir.resolve() for d in add_dirs):
        raise ModelError(f"{holdout_dir}: the held-out folder is also added to the training data (--add)")


def eval_report(items: list[Labelled], ruleset: RuleSet, min_confidence: float) -> dict[str, Any]:
    examples = examples_of(items)
    predictions = cv_predictions(examples)
    return {**accuracy(examples, predictions, FOLDS),
            "route": route_figures(items, predictions, ruleset, min_confidence)}


def holdout_report(model: Model, items: list[Labelled], trained_on: Sequence[Example], ruleset: RuleSet,
                   min_confidence: float) -> dict[str, Any]:
    """The trained model scored on a labelled folder: accuracy per field, the rules alone against the
    rules with ``learned = "route"``, and how many of its mails were in the training data (same text)."""
    examples = examples_of(items)
    suggestions = [model.suggest(item.message.subject, item.message.text) for item in items]
    predictions: dict[str, Predictions | None] = {
        "department": [(s.department, s.department_confidence) for s in suggestions],
        "kind": [(s.kind, s.kind_confidence) for s in suggestions]}
    seen = {e.text for e in trained_on}
    return {**accuracy(examples, predictions, None), "shared_with_training": sum(e.text in seen for e in examples),
            "route": route_figures(items, predictions, ruleset, min_confidence)}


def _percent(value: float | None) -> str:
    return "n/a (too few cases per label)" if value is None else f"{value:.1%}"


def _print_report(report: dict[str, Any], out: TextIO) -> None:
    print(f"trained on {report['cases']} examples ({_sources(report['sources'])}) in "
          f"{report['training_seconds']:.1f} s, saved to {report['model']}", file=out)
    for name in FIELDS:
        counts = ", ".join(f"{label} {n}" for label, n in report["counts"][name].items())
        print(f"  {name}: {counts}", file=out)
    sets = [("the training examples", report["cross_validation"])]
    if "eval" in report:
        sets.append((f"the labelled set {report['eval']['dir']} ({report['eval']['cases']} mails)", report["eval"]))
    for title, cv in sets:
        print(f"{cv['folds']}-fold cross-validated accuracy on {title}: department "
              f"{_percent(cv['department_accuracy'])}, kind {_percent(cv['kind_accuracy'])}", file=out)
    _print_route("the labelled set (cross-validated)", report.get("eval", {}).get("route"), out)
    if "holdout" in report:
        _print_holdout(report["holdout"], out)


def _sources(sources: dict[str, Any]) -> str:
    return ", ".join([f"{sources['desk_cases']} from the desk's cases",
                      *(f"{n} from {directory}" for directory, n in sources["folders"].items())])


def _print_holdout(held: dict[str, Any], out: TextIO) -> None:
    print(f"the trained model on the held-out set {held['dir']} ({held['cases']} mails): department "
          f"{_percent(held['department_accuracy'])}, kind {_percent(held['kind_accuracy'])}", file=out)
    if held["shared_with_training"]:
        print(f"  warning: {held['shared_with_training']} of its mails are also in the training data "
              "(same text): the figure is not a held-out one", file=out)
    _print_route("the held-out set", held["route"], out)


def _print_route(where: str, route: dict[str, Any] | None, out: TextIO) -> None:
    if not route:
        return
    rules, both = route["rules"], route["rules_with_route"]
    print(f"on {where}, the rules alone: department {_percent(rules['department_accuracy'])}, kind "
          f"{_percent(rules['kind_accuracy'])}; with learned = \"route\" (confidence "
          f"{route['min_confidence']:.2f} or above): department {_percent(both['department_accuracy'])}, kind "
          f"{_percent(both['kind_accuracy'])}, {route['routed_by_model']} mail(s) routed by the model", file=out)
