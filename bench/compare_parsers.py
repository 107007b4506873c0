"""Compare mail-parser, stdlib ``email`` (policy.default) and feedbackd's parse_message.

Two corpora: CPython's own test messages (mostly Western, many malformed; no answer key, so we
count crashes, subjects left with encoded words or U+FFFD, and time) and tests/corpus (Chinese
client shapes, with the expected subject, sender name, body snippets and attachment names in
tests/corpus/expected.json).  HTML bodies are converted with our html.py for every parser, so the
body check measures charset and MIME handling, not HTML rendering.

Run: ``.venv/bin/python bench/compare_parsers.py`` (prints a markdown table).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path

import mailparser

from feedbackd.mail.html import html_to_text
from feedbackd.mail.parse import ParseError, parse_message, safe_filename

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
REPEAT = 20  # timing passes over each corpus
_FALLBACK_NAME = re.compile(r"^(attachment|forwarded|delivery-status)-\d+\.")  # names we invent
_UNSAFE = re.compile(r"[/\\]|^\.")  # a path part or a hidden-file name handed to the caller


@dataclass
class Result:
    subject: str
    sender_name: str
    body: str
    attachments: list[str] = field(default_factory=list)


def ours(raw: bytes) -> Result:
    msg = parse_message(raw)
    name = msg.sender.name if msg.sender else ""
    return Result(msg.subject, name, msg.text, [a.filename for a in msg.attachments])


def stdlib_default(raw: bytes) -> Result:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    subject = str(msg.get("subject", ""))
    sender = msg.get("from")
    name = sender.addresses[0].display_name if sender is not None and sender.addresses else ""
    body_part = msg.get_body(preferencelist=("plain", "html"))
    body = ""
    if body_part is not None:
        body = body_part.get_content()
        if body_part.get_content_type() == "text/html":
            body = html_to_text(body)
    names = [p.get_filename() or "" for p in msg.iter_attachments()]
    return Result(subject, name, body.replace("\r\n", "\n"), names)


def mail_parser(raw: bytes) -> Result:
    msg = mailparser.parse_from_bytes(raw)
    name = msg.from_[0][0] if msg.from_ else ""
    if msg.text_plain:
        body = "\n".join(msg.text_plain)
    else:
        body = "\n".join(html_to_text(h) for h in msg.text_html)
    return Result(msg.subject or "", name, body, [a.get("filename") or "" for a in msg.attachments])


PARSERS: dict[str, Callable[[bytes], Result]] = {
    "mail-parser 4.8": mail_parser,
    "stdlib policy.default": stdlib_default,
    "feedbackd parse_message": ours,
}


def cpython_messages() -> list[Path]:
    try:
        import test.test_email as pkg
    except ImportError:
        return []
    return sorted((Path(pkg.__file__).parent / "data").glob("msg_*.txt"))


def run_cpython(files: list[Path]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    raws = [p.read_bytes() for p in files]
    for label, fn in PARSERS.items():
        crashes = undecoded = 0
        for raw in raws:
            try:
                res = fn(raw)
            except ParseError:
                continue
            except Exception:
                crashes += 1
                continue
            if "=?" in res.subject or "\ufffd" in res.subject:
                undecoded += 1
        out[label] = {"n": len(raws), "crashes": crashes, "undecoded": undecoded, "us": _time(fn, raws)}
    return out


def run_corpus() -> dict[str, dict[str, float]]:
    expected = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
    raws = {name: (CORPUS / name).read_bytes() for name in sorted(expected)}
    out: dict[str, dict[str, float]] = {}
    for label, fn in PARSERS.items():
        score = {
            "n": len(raws),
            "crashes": 0,
            "subject": 0,
            "sender": 0,
            "body": 0,
            "attachments": 0,
            "unsafe": 0,
        }
        failures: list[str] = []
        for name, raw in raws.items():
            want = expected[name]
            try:
                res = fn(raw)
            except Exception as exc:
                score["crashes"] += 1
                failures.append(f"{name}: crash {type(exc).__name__}")
                continue
            given = [n for n in want["attachments"] if not _FALLBACK_NAME.match(n)]
            got = {safe_filename(n, "", 0) for n in res.attachments if n}
            checks = {
                "subject": res.subject == want["subject"],
                "sender": res.sender_name == want["sender_name"],
                "body": all(s in res.body.replace("\r\n", "\n") for s in want["snippets"]),
                "attachments": set(given) <= got,
            }
            score["unsafe"] += sum(1 for n in res.attachments if _UNSAFE.search(n))
            for key, ok in checks.items():
                score[key] += ok
            bad = [k for k, ok in checks.items() if not ok]
            if bad:
                failures.append(f"{name}: {', '.join(bad)}")
        score["all"] = score["n"] - len({f.split(":")[0] for f in failures})
        score["us"] = _time(fn, list(raws.values()), skip_large=True)
        out[label] = score
        print(f"- {label} misses: {'; '.join(failures) or 'none'}")
    return out


def _time(fn: Callable[[bytes], Result], raws: list[bytes], skip_large: bool = False) -> float:
    """Median-free but warm: best of REPEAT passes, µs per message (crashing messages included)."""
    sample = [r for r in raws if not (skip_large and len(r) > 100_000)]
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        for raw in sample:
            try:
                fn(raw)
            except Exception:
                continue
        best = min(best, time.perf_counter() - start)
    return best / len(sample) * 1e6


def main() -> None:
    logging.disable(logging.CRITICAL)  # mail-parser logs every defect
    print(f"Python {sys.version.split()[0]}, best of {REPEAT} passes\n")
    files = cpython_messages()
    if files:
        print(f"CPython test_email corpus ({len(files)} messages, no answer key):\n")
        print("| parser | crashes | subject left encoded/U+FFFD | µs/msg |")
        print("|---|---|---|---|")
        for label, r in run_cpython(files).items():
            print(f"| {label} | {r['crashes']:.0f} | {r['undecoded']:.0f} | {r['us']:.0f} |")
    else:
        print("CPython test_email data not installed; skipped.")
    print()
    print("Misses on tests/corpus:\n")
    result = run_corpus()
    n = next(iter(result.values()))["n"]
    print(f"\ntests/corpus ({n:.0f} Chinese/Western client shapes, expected values known):\n")
    print(
        "| parser | all right | crashes | subject | sender name | body | attachment names | unsafe names "
        "| µs/msg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in result.items():
        print(
            f"| {label} | {r['all']:.0f}/{n:.0f} | {r['crashes']:.0f} | {r['subject']:.0f} | {r['sender']:.0f} "
            f"| {r['body']:.0f} | {r['attachments']:.0f} | {r['unsafe']:.0f} | {r['us']:.0f} |"
        )


if __name__ == "__main__":
    main()
