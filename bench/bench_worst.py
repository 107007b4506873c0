"""Worst-case parsing: ``parse_message`` on hostile shapes, each at 1× and 2× size, so linearity shows.

    .venv/bin/python bench/bench_worst.py [--mb 50] [--only NAME]

Each case runs in a child process (fork), which reports the seconds, MB/s and its own peak RSS.
"refused" means ParseLimitError with the default ParseLimits (the message would be quarantined);
"roomy" cases raise the caps out of the way to show that the parsing underneath is linear too.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))

from feedbackd.mail.parse import ParseLimitError, ParseLimits, parse_message  # noqa: E402 - after sys.path

ROOMY = ParseLimits(max_parts=10**7, max_header_bytes=10**10, max_depth=20)
Maker = Callable[[int], bytes]  # target size in bytes → one raw message of about that size


def _multipart(parts: list[bytes], boundary: bytes = b"b") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return (b"From: a@example.com\r\nSubject: worst\r\nContent-Type: multipart/mixed; boundary=\"" + boundary
            + b"\"\r\n\r\n" + body + b"--" + boundary + b"--\r\n")


def _named_part(size: int) -> bytes:
    data = base64.encodebytes(b"\x00" * max(1, size * 3 // 4))
    return (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="scan.pdf"\r\n\r\n' + data)


def whitespace_from(size: int) -> bytes:
    return b"From: " + b" " * size + b"Anne <anne@example.com>\r\nSubject: s\r\n\r\nbody\r\n"


def same_named_parts_at_cap(size: int) -> bytes:
    return _multipart([_named_part(size // 999)] * 999)


def same_named_parts_over_cap(size: int) -> bytes:
    return _multipart([_named_part(30)] * (size // 200))


def deep_nesting_at_cap(size: int) -> bytes:
    """20 levels of multipart, the innermost text part holding the bulk (every line meets 20 boundaries)."""
    depth = 20
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    body = b"line of text in the innermost part\r\n" * (size // 36)
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\n" + body + tail


def deep_nesting_over_cap(size: int) -> bytes:
    depth = min(size // 60, 900)  # deeper than ~990 the stdlib parser itself hits RecursionError
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    body = b"x\r\n" * ((size - len(head)) // 3)
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\n" + body


def huge_header_block(size: int) -> bytes:
    line = b"X-Filler: " + b"v" * 88 + b"\r\n"
    return b"From: a@example.com\r\nSubject: s\r\n" + line * (size // len(line)) + b"\r\nbody\r\n"


def huge_address_list(size: int) -> bytes:
    return b"To: " + b",\r\n ".join(b"user%07d@example.com" % i for i in range(size // 24)) + b"\r\n\r\nbody\r\n"


def huge_references(size: int) -> bytes:
    return b"References: " + b"\r\n ".join(b"<%09d@x.example>" % i for i in range(size // 18)) + b"\r\n\r\nbody\r\n"


def single_attachment(size: int) -> bytes:
    return _multipart([b"Content-Type: text/plain\r\n\r\nsee attached", _named_part(size)])


def tiny_parts(size: int) -> bytes:
    part = b"Content-Type: text/plain\r\n\r\nhi"
    return _multipart([part] * (size // 40))


def parameter_headers(size: int) -> bytes:
    """Parts whose Content-Type carries 100 quoted ";" (the most allowed) and is padded to 64 KB."""
    ctype = b'Content-Type: text/plain; name="' + b";" * 99 + b"a" * 65_000 + b'"\r\n\r\nx'
    return _multipart([ctype] * min(999, size // len(ctype)))


def empty_html_blocks(size: int) -> bytes:
    html = b"<div> </div>" * (size // 12)
    return b"Subject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html


# name → (maker, limits, size factor): the factor scales cases whose 50 MB would mean GBs of objects.
CASES: dict[str, tuple[Maker, ParseLimits, float]] = {
    "whitespace From, refused": (whitespace_from, ParseLimits(), 1.0),
    "whitespace From, roomy": (whitespace_from, ROOMY, 1.0),
    "999 same-named parts (at the cap)": (same_named_parts_at_cap, ParseLimits(), 1.0),
    "same-named tiny parts, refused": (same_named_parts_over_cap, ParseLimits(), 1.0),
    "same-named tiny parts, roomy": (same_named_parts_over_cap, ROOMY, 0.2),
    "20-deep nesting (at the cap)": (deep_nesting_at_cap, ParseLimits(), 1.0),
    "900-deep nesting, refused": (deep_nesting_over_cap, ParseLimits(), 1.0),
    "huge header block, refused": (huge_header_block, ParseLimits(), 1.0),
    "huge header block, roomy": (huge_header_block, ROOMY, 1.0),
    "huge To list, roomy": (huge_address_list, ROOMY, 0.2),
    "huge References, roomy": (huge_references, ROOMY, 0.2),
    "one base64 attachment": (single_attachment, ParseLimits(), 1.0),
    "tiny parts, refused": (tiny_parts, ParseLimits(), 1.0),
    "tiny parts, roomy": (tiny_parts, ROOMY, 0.2),
    "100-parameter 64 KB Content-Types": (parameter_headers, ParseLimits(), 1.0),
    "empty <div>s in HTML": (empty_html_blocks, ParseLimits(), 0.2),
}


def _run(maker: Maker, limits: ParseLimits, size: int, out: multiprocessing.SimpleQueue[tuple[str, ...]]) -> None:
    raw = maker(size)
    start = time.perf_counter()
    try:
        msg = parse_message(raw, limits=limits, attachment_limit=100 * 1024 * 1024)
        outcome = f"parsed, {len(msg.attachments)} attachments, {len(msg.text)} chars"
    except ParseLimitError as exc:
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put((str(len(raw)), f"{seconds:.3f}", f"{peak_mb:.0f}", outcome))


def measure(maker: Maker, limits: ParseLimits, size: int) -> tuple[int, float, float, str]:
    """One case in a forked child, so the peak RSS is the case's own."""
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.SimpleQueue[tuple[str, ...]] = ctx.SimpleQueue()
    child = ctx.Process(target=_run, args=(maker, limits, size, out))
    child.start()
    child.join()
    if out.empty():
        return 0, 0.0, 0.0, f"child failed (exit code {child.exitcode})"
    raw_len, seconds, peak, outcome = out.get()
    return int(raw_len), float(seconds), float(peak), outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the 2× run of each case")
    parser.add_argument("--only", help="run the cases whose name contains this text")
    args = parser.parse_args()
    print(f"{'case':36} {'size':>9} {'1× s':>7} {'2× size':>9} {'2× s':>7} {'ratio':>5} {'MB/s':>7} {'peak RSS':>8}")
    for name, (maker, limits, factor) in CASES.items():
        if args.only and args.only not in name:
            continue
        full = int(args.mb * factor * 1_000_000)
        small_len, small_s, _peak, _ = measure(maker, limits, full // 2)
        big_len, big_s, peak, outcome = measure(maker, limits, full)
        ratio = big_s / small_s if small_s > 0 else float("nan")
        rate = big_len / 1e6 / big_s if big_s > 0 else float("inf")
        print(f"{name:36} {small_len / 1e6:7.1f}MB {small_s:7.3f} {big_len / 1e6:7.1f}MB {big_s:7.3f} "
              f"{ratio:5.2f} {rate:7.1f} {peak:6.0f}MB  {outcome[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
