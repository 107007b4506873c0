"""The learned routing suggestion: training time on N cases and prediction latency per message.

    .venv/bin/python bench/bench_learned.py [--cases 5000] [--seed 7] [--eval tests/routing-eval]

The N cases are made from the labelled evaluation set with perturbations a desk's real mail has
(sentences of two mails of the same label joined, characters dropped or doubled, full-width
digits and letters, a greeting or sign-off added), so they read like a desk's history without
being copies.  Timed: building the model (``learned.train``: features, IDF, both heads), 5-fold
cross-validation, and ``Model.suggest`` on every mail of the set as the daemon calls it (subject
and body of the parsed message, normalisation included).  Goal: under 2 ms per message.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))

from feedbackd.routing import learned  # noqa: E402 - after the sys.path line
from feedbackd.routing.evaluation import load_labelled  # noqa: E402 - after the sys.path line

GOAL_MS = 2.0
OPENINGS = ("您好，", "你好！", "Hello, ", "领导好：", "", "", "")
CLOSINGS = ("谢谢！", "盼复。", " Thanks.", "此致敬礼", "", "", "")
ASCII = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
WIDE = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in ASCII})


def perturb(text: str, rng: random.Random) -> str:
    chars = []
    for c in text:
        roll = rng.random()
        if roll < 0.03:
            continue  # a dropped character (a typo)
        chars.append(c + c if roll < 0.05 else c)
    text = "".join(chars)
    if rng.random() < 0.2:
        text = text.translate(WIDE)
    return rng.choice(OPENINGS) + text + rng.choice(CLOSINGS)


def synthetic(items: list[tuple[str, str, str, str]], n: int, seed: int) -> list[learned.Example]:
    """``n`` cases: a mail of the set, half the time joined with part of another mail of the same label."""
    rng = random.Random(seed)
    by_label: dict[tuple[str, str], list[str]] = {}
    for subject, body, department, kind in items:
        by_label.setdefault((department, kind), []).append(f"{subject}\n{body}")
    labels = list(by_label)
    cases = []
    for _ in range(n):
        department, kind = label = rng.choice(labels)
        text = rng.choice(by_label[label])
        if rng.random() < 0.5:
            other = rng.choice(by_label[label])
            text += "\n" + other[: rng.randint(10, max(11, len(other)))]
        subject, _, body = perturb(text, rng).partition("\n")
        cases.append(learned.Example(learned.model_text(subject, body), department, kind))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--eval", type=Path, default=ROOT / "tests" / "routing-eval")
    parser.add_argument("--rounds", type=int, default=3, help="predictions per message; the best is kept")
    args = parser.parse_args()

    labelled = load_labelled(args.eval)
    items = [(i.message.subject, i.message.text, i.label.department, i.label.kind) for i in labelled]
    cases = synthetic(items, args.cases, args.seed)

    started = time.perf_counter()
    model = learned.train(cases)
    training = time.perf_counter() - started
    print(f"training on {len(cases)} cases: {training:.2f} s ({model.meta['columns']} n-gram buckets in use)")
    started = time.perf_counter()
    cv = learned.cross_validate(cases)
    print(f"5-fold cross-validation on them: {time.perf_counter() - started:.2f} s; department "
          f"{cv['department_accuracy']:.1%}, kind {cv['kind_accuracy']:.1%} (perturbed copies: optimistic)")
    started = time.perf_counter()
    on_set = learned.cross_validate(learned.labelled_examples(args.eval))
    print(f"5-fold cross-validation on the labelled set ({on_set['cases']} mails): "
          f"{time.perf_counter() - started:.2f} s; department {on_set['department_accuracy']:.1%}, "
          f"kind {on_set['kind_accuracy']:.1%}")

    latencies = []
    for subject, body, _, _ in items:
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            model.suggest(subject, body)
            best = min(best, time.perf_counter() - t0)
        latencies.append(best * 1000)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"prediction per message ({len(latencies)} mails, normalisation included): "
          f"median {statistics.median(latencies):.3f} ms, p99 {p99:.3f} ms, max {latencies[-1]:.3f} ms "
          f"(goal: under {GOAL_MS} ms)")
    return 0 if p99 < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
