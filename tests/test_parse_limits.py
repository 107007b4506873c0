"""parse_message on hostile shapes: over a cap it raises ParseLimitError naming the cap, under it the
result is right, and the work stays linear (shown by counting work or by shapes that used to hang).

No wall-clock thresholds here: the timings live in bench/bench_worst.py.
"""

from __future__ import annotations

import random
from datetime import UTC
from email.message import EmailMessage

import pytest

from feedbackd.mail.html import html_to_text
from feedbackd.mail.parse import (
    ParseError,
    ParseLimitError,
    ParseLimits,
    _Names,
    _split_addresses,
    _unflow,
    parse_message,
)

ROOMY = ParseLimits(max_parts=10**6, max_header_bytes=10**9, max_depth=20)


def multipart(parts: list[bytes], boundary: bytes = b"b") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return (b"From: a@example.com\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=\"" + boundary
            + b"\"\r\n\r\n" + body + b"--" + boundary + b"--\r\n")


def attachment(name: bytes = b"a.txt", data: bytes = b"xx") -> bytes:
    return (b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"" + name
            + b"\"\r\n\r\n" + data)


def nested(depth: int) -> bytes:
    """A message whose text sits ``depth`` multiparts below the top-level message."""
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\ninnermost" + tail


# ---- the caps ---------------------------------------------------------------------------------------
def test_limit_error_is_a_parse_error_and_limits_are_frozen() -> None:
    assert issubclass(ParseLimitError, ParseError)
    assert ParseLimits() == ParseLimits(max_parts=1000, max_header_bytes=256 * 1024, max_depth=20)
    with pytest.raises(AttributeError):
        ParseLimits().max_parts = 5  # type: ignore[misc]


def test_parts_up_to_the_cap_parse_and_one_more_is_refused() -> None:
    # The top-level message counts as one part: 999 attachments make 1,000.
    msg = parse_message(multipart([attachment()] * 999))
    assert len(msg.attachments) == 999
    over = r"more than 1,000 MIME parts, over the limit of 1,000 \(intake\.max_parts\)"
    with pytest.raises(ParseLimitError, match=over):
        parse_message(multipart([attachment()] * 1000))
    with pytest.raises(ParseLimitError, match=r"more than 10 MIME parts"):
        parse_message(multipart([attachment()] * 10), limits=ParseLimits(max_parts=10))


def test_boundary_like_lines_in_a_body_are_not_parts() -> None:
    # Only real parts count: a text attachment full of "--" lines is one part, however many lines.
    noise = b"\r\n".join([b"--", b"--x", b"-- ", b"--b-"] * 5000)
    msg = parse_message(multipart([b"Content-Type: text/plain\r\n\r\nsee file", attachment(b"log.txt", noise)]),
                        limits=ParseLimits(max_parts=3))
    assert [a.filename for a in msg.attachments] == ["log.txt"]
    assert msg.attachments[0].data.count(b"--x") == 5000


def test_nesting_up_to_the_cap_parses_and_deeper_is_refused() -> None:
    assert parse_message(nested(20)).text == "innermost"
    with pytest.raises(ParseLimitError, match=r"nested more than 20 deep, over the limit of 20 \(intake\.max_depth\)"):
        parse_message(nested(21))
    with pytest.raises(ParseLimitError, match=r"nested more than 3 deep"):
        parse_message(nested(4), limits=ParseLimits(max_depth=3))


def test_forwarded_messages_count_towards_the_depth() -> None:
    inner = EmailMessage()
    inner["Subject"] = "level 0"
    inner.set_content("bottom")
    for level in range(1, 5):
        outer = EmailMessage()
        outer["Subject"] = f"level {level}"
        outer.set_content("see attached")
        outer.add_attachment(inner)
        inner = outer
    raw = inner.as_bytes()
    assert parse_message(raw).subject == "level 4"
    # Each forward adds two levels (the message/rfc822 part, the message inside it): 8 in all.
    assert parse_message(raw, limits=ParseLimits(max_depth=8)).subject == "level 4"
    with pytest.raises(ParseLimitError, match=r"intake\.max_depth"):
        parse_message(raw, limits=ParseLimits(max_depth=7))


def test_header_block_cap_counts_the_whole_block_and_each_part_alone() -> None:
    filler = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 80) for i in range(3000))  # ~300 KB
    raw = b"From: a@example.com\r\nSubject: hi\r\n" + filler + b"\r\nbody"
    over = r"the header block has more than 262,144 bytes, over the limit of 262,144 \(intake\.max_header_bytes\)"
    with pytest.raises(ParseLimitError, match=over):
        parse_message(raw)
    assert parse_message(raw, limits=ROOMY).header("X-Filler-02999") == "v" * 80
    part = b"Content-Type: text/plain\r\n" + filler + b"\r\npart text"
    with pytest.raises(ParseLimitError, match=r"header block of MIME part 2 has more than"):
        parse_message(multipart([part]))
    # Many parts whose header blocks together pass the cap are fine: the cap is per block.
    assert len(parse_message(multipart([attachment()] * 900)).attachments) == 900


def test_parameter_headers_with_absurd_parameter_counts_are_refused() -> None:
    # The stdlib's parameter parser is quadratic in ";" inside quotes: 1 MB of them would take minutes.
    raw = b'Subject: x\r\nContent-Type: text/plain; name="' + b";" * 1_000_000 + b'"\r\n\r\nhi'
    with pytest.raises(ParseLimitError, match=r"Content-Type header with 1,000,001 parameters"):
        parse_message(raw, limits=ROOMY)
    # RFC 2231 continuations of a long file name stay well under the limit.
    pieces = b"".join(b";\r\n filename*%d*=%s" % (i, b"%E6%96%87" * 8 if i else b"utf-8''%E6%96%87")
                      for i in range(40))
    raw = multipart([b"Content-Type: application/pdf\r\nContent-Disposition: attachment" + pieces + b"\r\n\r\nx"])
    assert parse_message(raw).attachments[0].filename.startswith("文文文")


# ---- hostile headers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tail", [b"x", b"<a@b.example>", b"Anne <a@b.example>", b'"x" y <', b"a@b.example"])
def test_whitespace_runs_in_from_are_linear(tail: bytes) -> None:
    # The old one-regex fast path backtracked: 8,000 spaces took minutes, 300,000 never finished.
    raw = b"From: " + b" " * 300_000 + tail + b" \t" * 1000 + b"\r\nSubject: s\r\n\r\nhi"
    with pytest.raises(ParseLimitError, match=r"intake\.max_header_bytes"):
        parse_message(raw)
    msg = parse_message(raw, limits=ROOMY)
    assert msg.subject == "s"
    assert msg.sender == (None if b"@" not in tail else parse_message(b"From: " + tail + b"\r\n\r\nhi").sender)


def test_address_fast_path_agrees_with_the_forms_it_takes() -> None:
    assert _split_addresses("Anne <A@Example.org>") == [("Anne", "A@Example.org")]
    assert _split_addresses('  "Anne Lee"  <a@example.org>  ') == [("Anne Lee", "a@example.org")]
    assert _split_addresses("<a@example.org>") == [("", "a@example.org")]
    assert _split_addresses("a@example.org") == [("", "a@example.org")]
    assert _split_addresses('Anne "x" <a@example.org>')[0][1] == "a@example.org"


def test_internationalised_addresses() -> None:
    raw = ("From: 张三 <张三@例子.中国>\r\nTo: c@bücher.example, 李四 <li@例子.中国>\r\n"
           "Subject: 你好\r\n\r\n内容").encode()
    msg = parse_message(raw)
    assert msg.sender is not None and (msg.sender.name, msg.sender.addr) == ("张三", "张三@例子.中国")
    assert [(a.name, a.addr) for a in msg.to] == [("", "c@bücher.example"), ("李四", "li@例子.中国")]
    assert msg.sender.domain == "例子.中国"


def test_huge_subject_and_address_and_reference_lists() -> None:
    subject = b"Subject: " + "投诉 ".encode() * 200_000 + b"\r\n"
    to = b"To: " + b",\r\n ".join(b"u%d@example.com" % i for i in range(100_000)) + b"\r\n"
    refs = b"References: " + b"\r\n ".join(b"<%d@x.example>" % i for i in range(1_000_000)) + b"\r\n"
    for header in (subject, to, refs):
        with pytest.raises(ParseLimitError, match=r"intake\.max_header_bytes"):
            parse_message(header + b"\r\nbody")
    # Under the cap (240 KB in all) the same shapes parse completely.
    msg = parse_message(subject[: 9 + 7 * 8000] + b"\r\n" + to[:90_000] + b"\r\n" + refs[:90_000] + b"\r\n\r\nbody")
    assert msg.subject.startswith("投诉 投诉") and "  " not in msg.subject
    assert len(msg.to) > 4_000 and msg.to[0].addr == "u0@example.com"
    assert len(msg.references) == 100 and msg.references[0] == "0@x.example"


def test_nested_comments_in_an_address_header_are_a_defect_not_a_degraded_message() -> None:
    raw = b"From: " + b"(" * 20_000 + b"\r\nTo: Good <good@example.org>\r\nSubject: still here\r\n\r\nbody"
    msg = parse_message(raw)
    assert msg.subject == "still here" and msg.text == "body"
    assert msg.sender is None and [a.addr for a in msg.to] == ["good@example.org"]
    assert "From: nested too deeply to read" in msg.defects


# ---- dates -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    "Fri, 31 Dec 9999 23:59:59 -1200", "Mon, 1 Jan 1000 00:00:00 +1400", "Sat, 1 Jan 1900 00:00:00 +0000",
    "Wed, 31 Dec 1969 23:59:59 -0000", "Sat, 1 Jan 2201 00:00:00 +0000", "Thu, 31 Dec 2200 23:00:00 -0100",
])
def test_dates_out_of_range_are_dropped_with_a_defect(value: str) -> None:
    msg = parse_message(f"Date: {value}\r\nSubject: x\r\n\r\nbody".encode())
    assert msg.date is None
    assert any(d.startswith("Date: out of range (") for d in msg.defects)


@pytest.mark.parametrize("value", [
    "Thu, 1 Jan 1970 00:00:00 +0000", "Thu, 1 Jan 1970 11:00:00 +1100", "Wed, 31 Dec 2200 23:59:59 +0000",
    "Mon, 15 Jan 2024 09:12:33 +0800", "Mon, 15 Jan 2024 09:12:33", "Tue, 1 Jan 2069 00:00:00 -1200",
])
def test_dates_in_range_convert_safely(value: str) -> None:
    msg = parse_message(f"Date: {value}\r\nSubject: x\r\n\r\nbody".encode())
    assert msg.date is not None and msg.date.tzinfo is not None
    assert 1970 <= msg.date.astimezone(UTC).year <= 2200
    msg.date.astimezone()  # local time: no OverflowError


# ---- linear work, counted ----------------------------------------------------------------------------
def _old_unique_name(name: str, taken: set[str]) -> str:
    """The previous implementation (a probe from 2 upwards every time), as the reference."""
    if name.lower() not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    n = 2
    while True:
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        if candidate.lower() not in taken:
            return candidate
        n += 1


def test_unique_names_match_the_old_rule() -> None:
    rng = random.Random(5)
    pool = ["a.txt", "A.TXT", "a-2.txt", "a-3.txt", "a", "a-2", "b.pdf", "a-2-2.txt", ".txt", "a.b.c"]
    names = [rng.choice(pool) for _ in range(400)]
    registry, taken, expected = _Names(), set[str](), []
    for name in names:
        expected.append(_old_unique_name(name, taken))
        taken.add(expected[-1].lower())
    assert [registry.claim(name) for name in names] == expected


@pytest.mark.parametrize("n", [1000, 2000, 4000])
def test_unique_names_cost_one_probe_per_duplicate(n: int) -> None:
    registry = _Names()
    names = [registry.claim("photo.jpg") for _ in range(n)]
    assert names[:3] == ["photo.jpg", "photo-2.jpg", "photo-3.jpg"] and len(set(names)) == n
    assert registry.probes == n - 1  # the old rule probed n²/2 times


def test_many_same_named_attachments_get_numbered_names() -> None:
    msg = parse_message(multipart([attachment(b"scan.pdf")] * 999))
    assert [a.filename for a in msg.attachments[:2]] == ["scan.pdf", "scan-2.pdf"]
    assert msg.attachments[-1].filename == "scan-999.pdf"


def test_html_with_many_empty_blocks_finishes() -> None:
    # Each block edge used to copy the whole current line: 50,000 empty divs took 8 s, 200,000 minutes.
    assert html_to_text("<div> </div>" * 200_000) == ""
    assert html_to_text("<p>a</p>" + "<div> </div>" * 3 + "<p>b</p>") == "a\n\nb"
    assert html_to_text("<div>a</div><div>\xa0</div><div>b</div>") == "a\n\nb"  # Outlook's blank line
    assert html_to_text("<div>x</div>" * 3) == "x\nx\nx"


def test_format_flowed_paragraph_of_many_lines() -> None:
    text = "word \n" * 200_000 + "end"
    assert _unflow(text, delsp=False) == "word " * 200_000 + "end"
    assert _unflow("a \nb\n \n", delsp=True) == "ab\n\n"


def test_oversized_top_header_block_is_refused_from_its_first_bytes() -> None:
    # Refused before the stdlib reads the 50 MB line; the pre-check never refuses what the parser accepts.
    from feedbackd.mail.tree import DEFAULT_LIMITS, _check_header_block

    with pytest.raises(ParseLimitError, match=r"intake\.max_header_bytes"):
        _check_header_block(b"Subject: " + b"x" * 50_000_000 + b"\r\n\r\nbody", DEFAULT_LIMITS)
    cap = DEFAULT_LIMITS.max_header_bytes
    for raw in (b"From " + b"x" * (cap + 10) + b"\nSubject: s\n\nbody",  # a Unix From line is no header
                b"Subject: s\r\n\r\n" + b"Subject: s\r\n" * cap):  # headers after the blank line are body
        _check_header_block(raw, DEFAULT_LIMITS)
        parse_message(raw)
    # Where the pre-check is unsure it stops early, and the exact count during parsing decides.
    odd = b"Subject: a\x0c" + b"b" * (cap + 10) + b"\n\nbody"
    _check_header_block(odd, DEFAULT_LIMITS)
    with pytest.raises(ParseLimitError, match=r"intake\.max_header_bytes"):
        parse_message(odd)
