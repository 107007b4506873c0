"""Unit tests for the parsing stage: charset helpers, HTML → text, and parse_message on real shapes."""

from __future__ import annotations

import base64
import json
import sysconfig
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from feedbackd.mail.charset import codec_for, decode_bytes, decode_header
from feedbackd.mail.html import html_to_text
from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.parse import ParseError, parse_message, safe_filename

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
LIMIT = 100_000  # the oversize corpus message carries a 204 800-byte video


def corpus(name: str) -> ParsedMessage:
    return parse_message((CORPUS / name).read_bytes(), attachment_limit=LIMIT)


# ---- the corpus against its table ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message(name: str) -> None:
    want = EXPECTED[name]
    msg = corpus(name)
    assert msg.subject == want["subject"]
    assert msg.sender is not None
    assert (msg.sender.name, msg.sender.addr) == (want["sender_name"], want["sender_addr"])
    for snippet in [*want["snippets"], *want.get("layout_snippets", [])]:
        assert snippet in msg.text
    assert [a.filename for a in msg.attachments] == want["attachments"]
    assert msg.language == want["language"]
    assert "\ufffd" not in msg.text + msg.subject


def test_corpus_table_covers_every_file() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)


# ---- specific shapes ----------------------------------------------------------------------------
def test_qq_alternative_prefers_plain_and_keeps_html() -> None:
    msg = corpus("qq_utf8_alternative.eml")
    assert msg.content_type == "multipart/alternative"
    assert msg.text.startswith("您好：\n我们小区")
    assert msg.html is not None and "<div>" in msg.html
    assert msg.message_id == "tencent_5F3A1B2C3D4E5F60718293A4B5C6D7E8F909@qq.com"
    assert msg.date is not None and msg.date.utcoffset() == timedelta(hours=8)
    assert [a.name for a in msg.to] == ["市民反馈中心"]
    assert msg.defects == []


def test_foxmail_gb2312_with_gbk_and_gb18030_characters() -> None:
    msg = corpus("foxmail_gb2312_gbk_chars.eml")
    assert msg.subject == "朱镕路噪音投诉（陶喆）"
    assert (
        msg.text
        == "尊敬的工作人员：\n我住在朱镕路，邻居陶喆家的空调外机噪音很大。\n附：𠮷野家门店也有油烟问题。\n王五"
    )
    assert msg.sender is not None and msg.sender.name == "王五"  # quoted encoded word


def test_html_only_163_and_outlook_are_converted() -> None:
    netease = corpus("163_gbk_html_only.eml")
    assert netease.content_type == "text/html"
    assert netease.html is not None and "neteasefooter" in netease.html
    assert (
        netease.text
        == "领导好，\n人民路与解放路交叉口的红绿灯时间太短，老人过马路来不及。建议延长绿灯时间。\n\n李四"
    )
    outlook = corpus("outlook_word_html_related.eml")
    assert "behavior" not in outlook.text and "shapedefaults" not in outlook.text
    assert outlook.text.splitlines()[:3] == [
        "您好，",
        "",
        "我公司位于高新区科技路88号，门前道路施工已停工三个月，围挡占道严重。",
    ]
    assert outlook.attachments[0].content_type == "image/png"
    assert outlook.attachments[0].data.startswith(b"\x89PNG")


def test_gmail_threading_headers() -> None:
    msg = corpus("gmail_en_reply.eml")
    assert msg.in_reply_to == ["case-1024.update@city.example"]
    assert msg.references == ["case-1024.ack@city.example", "case-1024.update@city.example"]
    assert msg.message_id == "CAF+abc123XYZ=ok@mail.gmail.com"
    assert msg.date is not None and msg.date.tzinfo is not None and msg.date.utcoffset() == timedelta(0)


def test_iphone_text_around_photo_is_joined() -> None:
    msg = corpus("iphone_mixed_photo.eml")
    assert msg.text == "公园东门的垃圾桶已经满了三天，没人清理，照片如下：\n\n发自我的iPhone"
    assert msg.attachments[0].content_type == "image/jpeg"
    assert msg.attachments[0].size == len(msg.attachments[0].data) == 70


def test_undeclared_8bit_is_detected_and_noted() -> None:
    msg = corpus("undeclared_8bit_gbk.eml")
    assert msg.text == "东风菜市场对每个摊位额外收取卫生费五十元，没有任何票据。\n请有关部门调查。"
    assert "Subject: raw 8-bit header, decoded as gb18030" in msg.defects
    assert "body: undeclared 8-bit, decoded as gb18030" in msg.defects
    assert msg.header("Subject") == "菜市场乱收费"


def test_bogus_and_x_gbk_charsets_do_not_crash() -> None:
    bogus = corpus("bogus_charset.eml")
    assert "body: unknown charset foo-bar-1, decoded as gb18030" in bogus.defects
    xgbk = corpus("x_gbk_charset.eml")
    assert xgbk.defects == []  # x-gbk is a known alias, not a defect


def test_attachment_names() -> None:
    msg = corpus("attachment_rfc2047_traversal.eml")
    names = [a.filename for a in msg.attachments]
    assert names == ["投诉书.pdf", "passwd", "hidden photo.png", "attachment-4.bin"]
    assert msg.attachments[1].data == b"root:x:0:0:root:/root:/bin/bash"
    assert msg.text == "请查收三个附件。"  # the named text/plain attachment is not body text


def test_oversize_attachment_is_truncated() -> None:
    msg = corpus("oversize_attachment.eml")
    (att,) = msg.attachments
    assert att.truncated and att.data == b"" and att.size == 204_800
    assert any("over the limit" in d for d in msg.defects)
    assert not parse_message((CORPUS / "oversize_attachment.eml").read_bytes()).attachments[0].truncated


def test_forwarded_message_is_attached_and_summarised() -> None:
    msg = corpus("forwarded_rfc822.eml")
    (att,) = msg.attachments
    assert att.filename == "forwarded-1.eml" and att.content_type == "message/rfc822"
    inner = parse_message(att.data)
    assert inner.subject == "停水通知" and inner.message_id == "notice.42@estate.example"
    assert msg.text.index("请看转发的通知") < msg.text.index("---- forwarded message ----")


def test_dsn_does_not_copy_the_returned_message_into_text() -> None:
    msg = corpus("dsn_report.eml")
    assert msg.content_type == "multipart/report"
    assert "Your feedback has been received" not in msg.text
    assert b"Status: 5.1.1" in msg.attachments[0].data
    assert msg.header("Auto-Submitted") == "auto-replied"


def test_out_of_office_headers() -> None:
    msg = corpus("out_of_office.eml")
    assert msg.header("x-auto-response-suppress") == "All"
    assert msg.in_reply_to == ["case-2048.ack@city.example"]


def test_headers_are_decoded_in_order() -> None:
    msg = corpus("gb2312_subject_gbk_chars.eml")
    assert [k for k, _ in msg.headers][:3] == ["From", "To", "Subject"]
    assert msg.header_all("subject") == ["关于朱镕基路与陶喆路交叉口积水的反映"]


# ---- edge cases built inline ---------------------------------------------------------------------
def test_empty_input_raises_parse_error() -> None:
    for raw in (b"", b"   \r\n\r\n  "):
        with pytest.raises(ParseError):
            parse_message(raw)


def test_garbage_still_gives_a_message() -> None:
    msg = parse_message(b"\x00\xff\xfe garbage without headers \x81")
    assert isinstance(msg, ParsedMessage)
    assert msg.sender is None and msg.message_id is None
    assert "\x00" not in msg.text


def test_deep_nesting_is_refused_with_a_reason() -> None:
    # Past intake.max_depth the message is quarantined (ParseLimitError), no longer cut with a defect.
    raw = b"Subject: deep\r\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(3000)
    )
    with pytest.raises(ParseError, match=r"intake\.max_depth"):
        parse_message(raw + b"Content-Type: text/plain\r\n\r\nhi\r\n")


def test_stdlib_parser_crash_degrades_to_headers_and_raw_body() -> None:
    # CPython 3.11's get_boundary() raises UnicodeEncodeError on an 8-bit RFC 2231 charset.
    raw = (
        b"From: Anne <anne@example.com>\r\nSubject: still here\r\n"
        b"Content-Type: multipart/mixed; boundary*=\"x\xd1''abc\"\r\n\r\n"
        b"--abc\r\nContent-Type: text/plain\r\n\r\n\xe4\xbd\xa0\xe5\xa5\xbd\r\n--abc--\r\n"
    )
    msg = parse_message(raw)
    assert msg.subject == "still here" and msg.sender is not None
    assert msg.defects[0].startswith("parser failed")
    assert "你好" in msg.text


def test_ids_dates_and_addresses_tolerate_garbage() -> None:
    raw = (
        b"From: not an address\r\n"
        b"To: undisclosed-recipients:;, Good <GOOD@Example.ORG>, bad@, @bad, a b@c\r\n"
        b"Message-ID: no-brackets@example.com\r\n"
        b"In-Reply-To: <x@y> (message from Someone)\r\n"
        b"References: garbage <a@b>\r\n <c@d>  <a@b>\r\n"
        b"Date: yesterday-ish\r\n\r\nbody\r\n"
    )
    msg = parse_message(raw)
    assert msg.sender is None
    assert [a.addr for a in msg.to] == ["good@example.org"]
    assert msg.message_id == "no-brackets@example.com"
    assert msg.in_reply_to == ["x@y"]
    assert msg.references == ["a@b", "c@d"]
    assert msg.date is None and "Date: unparseable" in msg.defects


def test_date_without_zone_becomes_utc() -> None:
    msg = parse_message(b"Date: Mon, 15 Jan 2024 09:12:33 -0000\r\nSubject: x\r\n\r\nbody")
    assert msg.date is not None and msg.date.tzinfo == UTC


def test_text_part_with_name_is_still_the_body() -> None:
    raw = b'Subject: x\r\nContent-Type: text/plain; charset=utf-8; name="note.txt"\r\n\r\nhello body\r\n'
    msg = parse_message(raw)
    assert msg.text == "hello body" and msg.attachments == []


def test_alternative_with_empty_plain_uses_html() -> None:
    raw = (
        b'Subject: x\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>\xe4\xbd\xa0\xe5\xa5\xbd</p>\r\n--b--\r\n"
    )
    assert parse_message(raw).text == "你好"


def test_format_flowed_is_joined() -> None:
    raw = b"Subject: x\r\nContent-Type: text/plain; format=flowed\r\n\r\nThis line \r\ncontinues.\r\n-- \r\nsig\r\n"
    assert parse_message(raw).text == "This line continues.\n-- \nsig"


def test_language() -> None:
    assert parse_message("Subject: 投诉\r\n\r\n噪音很大".encode()).language == "zh"
    assert parse_message(b"Subject: noise\r\n\r\nIt is very loud at night.").language == "en"
    assert parse_message(b"Subject: 12\r\n\r\n+++ 123 456 ---").language is None


def test_rfc2047_filename_with_unknown_charset_and_control_chars() -> None:
    name = "=?utf-8?B?" + base64.b64encode("报告\u202egpj.exe".encode()).decode() + "?="
    raw = (
        b'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nsee file\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\ndata\r\n--b--\r\n'
    )
    assert [a.filename for a in parse_message(raw).attachments] == ["报告gpj.exe"]


# ---- helpers ------------------------------------------------------------------------------------
def test_safe_filename() -> None:
    assert safe_filename("../../etc/passwd", "text/plain", 1) == "passwd"
    assert safe_filename("...", "image/png", 3) == "attachment-3.png"
    assert safe_filename("CON.txt", "text/plain", 1) == "_CON.txt"
    assert safe_filename('a<b>:c"d|e?f*.txt', "text/plain", 1) == "a_b__c_d_e_f_.txt"
    long = safe_filename("很长的文件名" * 40 + ".pdf", "application/pdf", 1)
    assert long.endswith(".pdf") and len(long.encode()) <= 150 and long.startswith("很长")


def test_codec_for() -> None:
    assert codec_for("GB2312") == codec_for("x-gbk") == codec_for('"cp936"') == "gb18030"
    assert codec_for("big5") == "big5hkscs"
    assert codec_for("no-such-charset") is None and codec_for(None) is None


def test_decode_bytes_detection() -> None:
    assert decode_bytes("我們社區的路燈壞了".encode("big5"))[0] == "我們社區的路燈壞了"
    assert decode_bytes("我们社区的路灯坏了".encode("gbk"))[0] == "我们社区的路灯坏了"
    assert decode_bytes("Grüße aus Köln".encode("latin-1"))[0] == "Grüße aus Köln"
    text, note = decode_bytes("请尽快处理噪音问题".encode("gbk"), "iso-8859-1")
    assert text == "请尽快处理噪音问题" and note == "charset iso-8859-1 looks like gb18030"
    assert decode_bytes(b"plain", "x-bogus") == ("plain", "unknown charset x-bogus")


def test_decode_header_variants() -> None:
    assert decode_header("=?utf-8?B?5Lit?=\r\n =?utf-8?B?5paH?= ok")[0] == "中文 ok"
    gbk = base64.b64encode("朱镕基".encode("gbk")).decode()
    assert decode_header(f'"=?gb2312?B?{gbk}?=" <a@b>')[0] == '"朱镕基" <a@b>'
    assert decode_header("=?no-such?Q?abc?=")[0] == "abc"
    assert decode_header("=?utf-8?B?not base64!?=")[0]  # no exception, some text
    assert decode_header("中文".encode("gbk"))[0] == "中文"


def test_html_to_text() -> None:
    assert html_to_text("<div>a</div>\n<div>b</div>") == "a\nb"
    assert html_to_text("a<br><br>b") == "a\n\nb"
    assert html_to_text("<span>中</span>\n<span>文</span> &amp; <b>x</b>") == "中文 & x"
    assert html_to_text("<script>alert(1)</script><style>p{}</style>ok") == "ok"
    assert html_to_text("<ul><li>一</li><li>二</li></ul>") == "- 一\n- 二"
    assert html_to_text("") == "" and html_to_text("<!-- x -->") == ""
    assert html_to_text('<a href="https://e.cn/p">照片</a>') == "照片 (https://e.cn/p)"


# ---- CPython's own test messages ------------------------------------------------------------------
def _cpython_messages() -> list[Path]:
    try:
        import test.test_email as pkg

        base = Path(pkg.__file__).parent / "data"
    except ImportError:
        base = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
    return sorted(base.glob("msg_*.txt"))


CPYTHON = _cpython_messages()


@pytest.mark.skipif(not CPYTHON, reason="CPython's test/test_email/data is not installed (no python3-test)")
@pytest.mark.parametrize("path", CPYTHON, ids=lambda p: p.name)
def test_cpython_corpus_never_crashes(path: Path) -> None:
    try:
        msg = parse_message(path.read_bytes())
    except ParseError:
        return
    assert isinstance(msg, ParsedMessage)
    for value in [msg.subject, msg.text, *(v for _, v in msg.headers)]:
        value.encode("utf-8")  # no lone surrogates left for the database


def test_mutated_messages_never_raise_anything_but_parse_error() -> None:
    """A seeded mutation run over the corpus (cut, splice MIME syntax, flip bytes)."""
    import random

    rnd = random.Random(20240115)
    seeds = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml")) if p.stat().st_size < 50_000]
    splices = [b"\r\n", b"--", b"=?", b"?=", b'"', b"<", b";", b"*", b"%", b"\x00", b"\xff", b"filename*0*="]
    for _ in range(400):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 6)):
            pos = rnd.randrange(len(data) + 1)
            choice = rnd.random()
            if choice < 0.3:
                del data[pos : pos + rnd.randint(1, 40)]
            elif choice < 0.7:
                data[pos:pos] = rnd.choice(splices)
            elif data:
                data[min(pos, len(data) - 1)] = rnd.randrange(256)
        try:
            msg = parse_message(bytes(data))
        except ParseError:
            continue
        for value in [
            msg.subject,
            msg.text,
            *(v for _, v in msg.headers),
            *(a.filename for a in msg.attachments),
        ]:
            value.encode("utf-8")
            assert "\x00" not in value
