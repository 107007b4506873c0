"""Build the .eml test corpus and its table of expected results (expected.json).

Each message imitates the shape a real client sends (QQ Mail, 163, Foxmail, Outlook, Gmail, iPhone,
mailer daemons), byte for byte where it matters: charsets as declared by those clients, encoded
words, raw 8-bit headers, RFC 2231 names.  Run ``python tests/corpus/make_corpus.py`` to rebuild;
the output is committed so the tests never depend on this script's run.
"""

from __future__ import annotations

import base64
import json
import quopri
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRLF = b"\r\n"


def b64(text: str, charset: str) -> bytes:
    """A base64 body, wrapped at 76 columns like every client does."""
    data = base64.b64encode(text.encode(charset))
    return CRLF.join(data[i : i + 76] for i in range(0, len(data), 76))


def qp(text: str, charset: str) -> bytes:
    return quopri.encodestring(text.encode(charset)).replace(b"\n", CRLF)


def ew(text: str, charset: str, enc: str = "B", codec: str | None = None) -> str:
    """One RFC 2047 encoded word labelled ``charset``, its bytes made with ``codec`` (default: the label)."""
    data = text.encode(codec or charset)
    if enc == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    quoted = "".join(chr(b) if chr(b).isalnum() else f"={b:02X}" for b in data)
    return f"=?{charset}?Q?{quoted}?="


def lines(*parts: str | bytes) -> bytes:
    """Join header/body lines with CRLF; str lines are ASCII (or raw 8-bit given as bytes)."""
    return CRLF.join(p if isinstance(p, bytes) else p.encode("ascii") for p in parts) + CRLF


MESSAGES: dict[str, bytes] = {}
EXPECTED: dict[str, dict[str, object]] = {}


def add(name: str, raw: bytes, **expected: object) -> None:
    MESSAGES[name] = raw
    EXPECTED[name] = expected


# 1. QQ Mail: multipart/alternative, UTF-8 base64, encoded display name.
QQ_TEXT = (
    "您好：\n我们小区（幸福里3号楼）门口的路灯已经坏了两个星期，晚上很不安全，请尽快维修。\n谢谢！\n张三"
)
QQ_HTML = (
    '<div><span style="line-height: 1.5;">您好：</span></div><div>我们小区（幸福里3号楼）门口的路灯已经坏了两个星期，'
    "晚上很不安全，请尽快维修。</div><div>谢谢！</div><div>张三</div>"
)
add(
    "qq_utf8_alternative.eml",
    lines(
        "From: " + ew("张三", "utf-8") + " <12345678@qq.com>",
        "To: =?utf-8?B?5biC5rCR5Y+N6aaI5Lit5b+D?= <feedback@city.example>",
        "Subject: " + ew("路灯坏了两个星期", "utf-8"),
        "Mime-Version: 1.0",
        'Content-Type: multipart/alternative; boundary="----=_NextPart_65A1B2C3_0F2E4D50_1A2B3C4D"',
        "Content-Transfer-Encoding: 8Bit",
        "Date: Mon, 15 Jan 2024 09:12:33 +0800",
        "X-Priority: 3",
        "Message-ID: <tencent_5F3A1B2C3D4E5F60718293A4B5C6D7E8F909@qq.com>",
        "X-QQ-MIME: TCMime 1.0 by Tencent",
        "X-Mailer: QQMail 2.x",
        "X-QQ-Mailer: QQMail 2.x",
        "",
        "This is a multi-part message in MIME format.",
        "",
        "------=_NextPart_65A1B2C3_0F2E4D50_1A2B3C4D",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        b64(QQ_TEXT, "utf-8"),
        "",
        "------=_NextPart_65A1B2C3_0F2E4D50_1A2B3C4D",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        b64(QQ_HTML, "utf-8"),
        "",
        "------=_NextPart_65A1B2C3_0F2E4D50_1A2B3C4D--",
    ),
    subject="路灯坏了两个星期",
    sender_name="张三",
    sender_addr="12345678@qq.com",
    snippets=["幸福里3号楼", "请尽快维修。\n谢谢！"],
    attachments=[],
    language="zh",
)

# 2. 163 Mail: HTML only, GBK base64, GBK encoded subject.
NETEASE_HTML = (
    '<div style="line-height:1.7;color:#000000;font-size:14px;font-family:Arial">'
    "<div>领导好，</div><div>&nbsp; &nbsp; 人民路与解放路交叉口的红绿灯时间太短，老人过马路来不及。"
    "建议延长绿灯时间。</div><div><br></div><div>李四</div></div><br><br>"
    '<span title="neteasefooter"><p>&nbsp;</p></span>'
)
add(
    "163_gbk_html_only.eml",
    lines(
        "Date: Tue, 16 Jan 2024 20:05:11 +0800 (CST)",
        "From: " + ew("李四", "GBK") + " <lisi_2024@163.com>",
        "To: feedback@city.example",
        "Message-ID: <4b1c2d3e.5f6a.18d1234abcd.Coremail.lisi_2024@163.com>",
        "Subject: " + ew("建议延长红绿灯时间", "GBK"),
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=GBK",
        "Content-Transfer-Encoding: base64",
        "X-Coremail-Antispam: 1Uf129KBjvJXoW7",
        "X-Originating-IP: [223.104.63.12]",
        "X-CM-CTRLDATA: abc",
        "",
        b64(NETEASE_HTML, "gbk"),
    ),
    subject="建议延长红绿灯时间",
    sender_name="李四",
    sender_addr="lisi_2024@163.com",
    snippets=["领导好，\n", "红绿灯时间太短，老人过马路来不及。建议延长绿灯时间。", "\n\n李四"],
    attachments=[],
    language="zh",
)

# 3. Foxmail: quoted encoded-word display name, gb2312 declared, GBK/GB18030-only characters.
FOX_TEXT = (
    "尊敬的工作人员：\n我住在朱镕路，邻居陶喆家的空调外机噪音很大。\n附：𠮷野家门店也有油烟问题。\n王五"
)
add(
    "foxmail_gb2312_gbk_chars.eml",
    lines(
        'From: "' + ew("王五", "gb2312") + '" <wangwu@foxmail.com>',
        'To: "feedback" <feedback@city.example>',
        "Subject: " + ew("朱镕路噪音投诉（陶喆）", "gb2312", codec="gbk"),
        "Date: Wed, 17 Jan 2024 10:01:02 +0800",
        "X-Priority: 3",
        "X-GUID: 1F2E3D4C-5B6A-7980-A1B2-C3D4E5F60718",
        "X-Has-Attach: no",
        "X-Mailer: Foxmail 7.2.25.228[cn]",
        "Mime-Version: 1.0",
        "Message-ID: <202401171001020123456@foxmail.com>",
        "Content-Type: multipart/alternative;",
        '\tboundary="----=_001_NextPart123456789012_=----"',
        "",
        "This is a multi-part message in MIME format.",
        "",
        "------=_001_NextPart123456789012_=----",
        "Content-Type: text/plain;",
        '\tcharset="gb2312"',
        "Content-Transfer-Encoding: base64",
        "",
        b64(FOX_TEXT, "gb18030"),
        "",
        "------=_001_NextPart123456789012_=----",
        "Content-Type: text/html;",
        '\tcharset="gb2312"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        qp("<html><body><div>" + FOX_TEXT.replace("\n", "</div><div>") + "</div></body></html>", "gb18030"),
        "",
        "------=_001_NextPart123456789012_=------",
    ),
    subject="朱镕路噪音投诉（陶喆）",
    sender_name="王五",
    sender_addr="wangwu@foxmail.com",
    snippets=["朱镕路", "陶喆家", "𠮷野家"],
    attachments=[],
    language="zh",
)

# 4. Outlook: HTML only in Word style (multipart/related with an inline picture), gb2312 QP.
OUTLOOK_HTML = """<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">
<head><meta http-equiv=Content-Type content="text/html; charset=gb2312">
<meta name=Generator content="Microsoft Word 15 (filtered medium)">
<!--[if !mso]><style>v\\:* {behavior:url(#default#VML);}</style><![endif]-->
<style><!-- p.MsoNormal {margin:0cm; font-size:10.5pt;} --></style>
<!--[if gte mso 9]><xml><o:shapedefaults v:ext="edit" spidmax="1026" /></xml><![endif]-->
</head>
<body lang=ZH-CN link="#0563C1" vlink="#954F72" style='text-justify-trim:punctuation'>
<div class=WordSection1><p class=MsoNormal>您好，<o:p></o:p></p>
<p class=MsoNormal><o:p>&nbsp;</o:p></p>
<p class=MsoNormal>我公司位于高新区科技路<span lang=EN-US>88</span>号，门前道路施工已停工三个月，
围挡占道严重。<o:p></o:p></p>
<p class=MsoNormal>现场照片见下图：<span lang=EN-US><img width=320 height=240 id="_x0000_i1025"
src="cid:image001.png@01DA4A1B.2C3D4E50"></span><o:p></o:p></p>
<p class=MsoNormal><o:p>&nbsp;</o:p></p>
<p class=MsoNormal>赵六<span lang=EN-US> | </span>行政部<o:p></o:p></p></div>
</body></html>"""
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
add(
    "outlook_word_html_related.eml",
    lines(
        "From: " + ew("赵六", "gb2312") + " <zhaoliu@example-corp.cn>",
        "To: " + ew("市民反馈", "gb2312") + " <feedback@city.example>",
        "Subject: " + ew("道路施工停工三个月", "gb2312"),
        "Date: Thu, 18 Jan 2024 14:22:10 +0800",
        "Message-ID: <002a01da4a1b$2c3d4e50$84b7eaf0$@example-corp.cn>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/related;",
        '\tboundary="----=_NextPart_000_002B_01DA4A5E.3A60E2B0"',
        "X-Mailer: Microsoft Outlook 16.0",
        "Thread-Index: AdpKG4xYw1Tc7o7GQpK2p3mD5f0XhA==",
        "Content-Language: zh-cn",
        "",
        "This is a multipart message in MIME format.",
        "",
        "------=_NextPart_000_002B_01DA4A5E.3A60E2B0",
        "Content-Type: text/html;",
        '\tcharset="gb2312"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        qp(OUTLOOK_HTML, "gb2312"),
        "",
        "------=_NextPart_000_002B_01DA4A5E.3A60E2B0",
        "Content-Type: image/png;",
        '\tname="image001.png"',
        "Content-Transfer-Encoding: base64",
        "Content-ID: <image001.png@01DA4A1B.2C3D4E50>",
        "",
        base64.b64encode(PNG).decode(),
        "",
        "------=_NextPart_000_002B_01DA4A5E.3A60E2B0--",
    ),
    subject="道路施工停工三个月",
    sender_name="赵六",
    sender_addr="zhaoliu@example-corp.cn",
    snippets=[
        "您好，\n\n我公司位于高新区科技路88号，门前道路施工已停工三个月，围挡占道严重。",
        "赵六 | 行政部",
    ],
    attachments=["image001.png"],
    language="zh",
)

# 5. Gmail, English reply: multipart/alternative, threading headers.
GMAIL_TEXT = (
    "Hello,\n\nThe pothole on Harbour Road near bus stop 12 is still there. It has been three weeks.\n\n"
    "Thanks,\nJohn\n\nOn Mon, Jan 15, 2024 at 9:00 AM Feedback <feedback@city.example> wrote:\n"
    "> Thank you for your report.\n"
)
GMAIL_HTML = (
    '<div dir="ltr">Hello,<div><br></div><div>The pothole on Harbour Road near bus stop 12 is still there.'
    " It has been three weeks.</div><div><br></div><div>Thanks,</div><div>John</div></div><br>"
    '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Jan 15, 2024 at 9:00 AM Feedback '
    '&lt;<a href="mailto:feedback@city.example">feedback@city.example</a>&gt; wrote:<br></div>'
    '<blockquote class="gmail_quote">Thank you for your report.</blockquote></div>'
)
add(
    "gmail_en_reply.eml",
    lines(
        "MIME-Version: 1.0",
        "Date: Fri, 19 Jan 2024 08:30:00 +0000",
        "References: <case-1024.ack@city.example>",
        "\t<case-1024.update@city.example>",
        "In-Reply-To: <case-1024.update@city.example>",
        "Message-ID: <CAF+abc123XYZ=ok@mail.gmail.com>",
        "Subject: Re: [Case #1024] Pothole on Harbour Road",
        "From: John Smith <John.Smith@Gmail.com>",
        "To: Feedback <feedback@city.example>",
        'Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f60718"',
        "",
        "--000000000000a1b2c3d4e5f60718",
        'Content-Type: text/plain; charset="UTF-8"',
        "",
        GMAIL_TEXT.replace("\n", "\r\n").rstrip("\r\n"),
        "",
        "--000000000000a1b2c3d4e5f60718",
        'Content-Type: text/html; charset="UTF-8"',
        "",
        GMAIL_HTML,
        "",
        "--000000000000a1b2c3d4e5f60718--",
    ),
    subject="Re: [Case #1024] Pothole on Harbour Road",
    sender_name="John Smith",
    sender_addr="john.smith@gmail.com",
    snippets=["pothole on Harbour Road near bus stop 12", "Thanks,\nJohn"],
    attachments=[],
    language="en",
)

# 6. iPhone: multipart/mixed with text, a photo, and the text after the photo.
add(
    "iphone_mixed_photo.eml",
    lines(
        "Content-Type: multipart/mixed; boundary=Apple-Mail-8F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
        "Content-Transfer-Encoding: 7bit",
        "From: " + ew("陈七", "utf-8") + " <chenqi@icloud.com>",
        "Mime-Version: 1.0 (1.0)",
        "Date: Sat, 20 Jan 2024 18:45:09 +0800",
        "Subject: " + ew("垃圾桶满了没人清理", "utf-8"),
        "Message-Id: <8F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0@icloud.com>",
        "To: feedback@city.example",
        "X-Mailer: iPhone Mail (21C66)",
        "",
        "",
        "--Apple-Mail-8F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
        "Content-Type: text/plain;",
        "\tcharset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        qp("公园东门的垃圾桶已经满了三天，没人清理，照片如下：", "utf-8"),
        "--Apple-Mail-8F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
        "Content-Type: image/jpeg;",
        "\tname=IMG_0412.jpeg;",
        "\tx-apple-part-url=A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90",
        "Content-Disposition: inline;",
        "\tfilename=IMG_0412.jpeg",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9").decode(),
        "--Apple-Mail-8F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
        "Content-Type: text/plain;",
        "\tcharset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        qp("\n\n发自我的iPhone", "utf-8"),
        "--Apple-Mail-8F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0--",
    ),
    subject="垃圾桶满了没人清理",
    sender_name="陈七",
    sender_addr="chenqi@icloud.com",
    snippets=["公园东门的垃圾桶已经满了三天", "发自我的iPhone"],
    attachments=["IMG_0412.jpeg"],
    language="zh",
)

# 7. Big5 (Hong Kong), with HKSCS characters 嘅/啲 that plain big5 lacks.
BIG5_TEXT = "你好，\n我哋屋苑嘅升降機成日壞，住客要行樓梯，請盡快派人檢查。\n多謝！\n黃先生"
add(
    "big5_hkscs_plain.eml",
    lines(
        "From: " + ew("黃先生", "big5") + " <wong.hk@netvigator.example>",
        "To: feedback@city.example",
        "Subject: " + ew("升降機成日壞", "big5"),
        "Date: Sun, 21 Jan 2024 11:00:00 +0800",
        "Message-ID: <20240121110000.big5@netvigator.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=big5",
        "Content-Transfer-Encoding: 8bit",
        "",
        BIG5_TEXT.replace("\n", "\r\n").encode("big5hkscs"),
    ),
    subject="升降機成日壞",
    sender_name="黃先生",
    sender_addr="wong.hk@netvigator.example",
    snippets=["我哋屋苑嘅升降機成日壞", "請盡快派人檢查"],
    attachments=[],
    language="zh",
)

# 8. Undeclared 8-bit GBK everywhere: no MIME headers, raw GBK subject, name and body (old webmail).
add(
    "undeclared_8bit_gbk.eml",
    lines(
        b"From: " + "孙八".encode("gbk") + b" <sunba@sina.example>",
        "To: feedback@city.example",
        b"Subject: " + "菜市场乱收费".encode("gbk"),
        "Date: Mon, 22 Jan 2024 07:30:00 +0800",
        "Message-ID: <undeclared.gbk.1@sina.example>",
        "",
        "东风菜市场对每个摊位额外收取卫生费五十元，没有任何票据。\r\n请有关部门调查。".encode("gbk"),
    ),
    subject="菜市场乱收费",
    sender_name="孙八",
    sender_addr="sunba@sina.example",
    snippets=["额外收取卫生费五十元", "请有关部门调查。"],
    attachments=[],
    language="zh",
)

# 9. Raw 8-bit UTF-8 headers (RFC 6532 style) with a declared UTF-8 body.
add(
    "undeclared_8bit_header_utf8.eml",
    lines(
        b"From: " + '"周九" <zhoujiu@example.cn>'.encode(),
        "To: feedback@city.example",
        b"Subject: " + "公交车站牌字迹模糊".encode(),
        "Date: Tue, 23 Jan 2024 16:40:00 +0800",
        "Message-ID: <utf8hdr.1@example.cn>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "56路公交车的站牌字迹模糊，看不清站名。".encode(),
    ),
    subject="公交车站牌字迹模糊",
    sender_name="周九",
    sender_addr="zhoujiu@example.cn",
    snippets=["56路公交车的站牌字迹模糊"],
    attachments=[],
    language="zh",
)

# 10. x-gbk declared in body and encoded words (stdlib raises LookupError in get_content()).
add(
    "x_gbk_charset.eml",
    lines(
        "From: " + ew("吴十", "x-gbk", codec="gbk") + " <wushi@example.cn>",
        "To: feedback@city.example",
        "Subject: " + ew("小区物业不作为", "x-gbk", codec="gbk"),
        "Date: Wed, 24 Jan 2024 09:00:00 +0800",
        "Message-ID: <xgbk.1@example.cn>",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="x-gbk"',
        "Content-Transfer-Encoding: base64",
        "",
        b64("物业公司收了钱却不打扫楼道，电梯也经常停运。", "gbk"),
    ),
    subject="小区物业不作为",
    sender_name="吴十",
    sender_addr="wushi@example.cn",
    snippets=["物业公司收了钱却不打扫楼道"],
    attachments=[],
    language="zh",
)

# 11. A bogus charset label on a GBK body and on an encoded word.
add(
    "bogus_charset.eml",
    lines(
        "From: Zheng <zheng@example.cn>",
        "To: feedback@city.example",
        "Subject: " + ew("噪音扰民", "x-chinese-simp", codec="gbk"),
        "Date: Thu, 25 Jan 2024 22:10:00 +0800",
        "Message-ID: <bogus.1@example.cn>",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="foo-bar-1"',
        "Content-Transfer-Encoding: 8bit",
        "",
        "楼下的KTV每天营业到凌晨三点，噪音扰民严重。".encode("gbk"),
    ),
    subject="噪音扰民",
    sender_name="Zheng",
    sender_addr="zheng@example.cn",
    snippets=["楼下的KTV每天营业到凌晨三点，噪音扰民严重。"],
    attachments=[],
    language="zh",
)

# 12. An encoded-word subject in gb2312 with GBK-only characters, split over two folded words.
SUBJ_RAW = "关于朱镕基路与陶喆路交叉口积水的反映".encode("gbk")
half = len(SUBJ_RAW) // 2 + 1  # split inside a character, as some clients do
add(
    "gb2312_subject_gbk_chars.eml",
    lines(
        "From: =?gb2312?B?" + base64.b64encode("钱先生".encode("gbk")).decode() + "?= <qian@example.cn>",
        "To: feedback@city.example",
        "Subject: =?gb2312?B?" + base64.b64encode(SUBJ_RAW[:half]).decode() + "?=",
        " =?gb2312?B?" + base64.b64encode(SUBJ_RAW[half:]).decode() + "?=",
        "Date: Fri, 26 Jan 2024 08:00:00 +0800",
        "Message-ID: <gbsubj.1@example.cn>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: base64",
        "",
        b64("一下雨，朱镕基路与陶喆路交叉口就积水半米深。", "gbk"),
    ),
    subject="关于朱镕基路与陶喆路交叉口积水的反映",
    sender_name="钱先生",
    sender_addr="qian@example.cn",
    snippets=["朱镕基路与陶喆路交叉口就积水半米深"],
    attachments=[],
    language="zh",
)

# 13. Attachments with RFC 2231 names: UTF-8 single value and a gb2312 continuation.
DOC = b"PK\x03\x04" + b"\x00" * 100
GB_NAME = "现场照片（一）.jpg".encode("gb2312")
gb_pct = "".join(f"%{b:02X}" for b in GB_NAME)
add(
    "attachment_rfc2231.eml",
    lines(
        "From: Feng Shiyi <fengshiyi@example.cn>",
        "To: feedback@city.example",
        "Subject: " + ew("违章建筑举报材料", "utf-8"),
        "Date: Sat, 27 Jan 2024 10:00:00 +0800",
        "Message-ID: <rfc2231.1@example.cn>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b1"',
        "",
        "--b1",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        b64("举报材料见附件。", "utf-8"),
        "--b1",
        "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "Content-Disposition: attachment;",
        " filename*=utf-8''%E8%BF%9D%E7%AB%A0%E5%BB%BA%E7%AD%91%E4%B8%BE%E6%8A%A5.docx",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(DOC).decode(),
        "--b1",
        "Content-Type: image/jpeg",
        "Content-Disposition: attachment;",
        f" filename*0*=gb2312''{gb_pct[: len(gb_pct) // 2 // 3 * 3]};",
        f" filename*1*={gb_pct[len(gb_pct) // 2 // 3 * 3 :]}",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(b"\xff\xd8\xff\xe0jpegdata\xff\xd9").decode(),
        "--b1--",
    ),
    subject="违章建筑举报材料",
    sender_name="Feng Shiyi",
    sender_addr="fengshiyi@example.cn",
    snippets=["举报材料见附件。"],
    attachments=["违章建筑举报.docx", "现场照片（一）.jpg"],
    language="zh",
)

# 14. RFC 2047 attachment names (Outlook Express/Foxmail), path traversal and Windows paths.
add(
    "attachment_rfc2047_traversal.eml",
    lines(
        "From: " + ew("卫十二", "gb2312") + " <wei12@example.cn>",
        "To: feedback@city.example",
        "Subject: " + ew("附件测试", "gb2312"),
        "Date: Sun, 28 Jan 2024 10:00:00 +0800",
        "Message-ID: <rfc2047att.1@example.cn>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="=_b2"',
        "",
        "--=_b2",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: base64",
        "",
        b64("请查收三个附件。", "gb2312"),
        "--=_b2",
        'Content-Type: application/pdf; name="' + ew("投诉书.pdf", "gb2312") + '"',
        'Content-Disposition: attachment; filename="' + ew("投诉书.pdf", "gb2312") + '"',
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode(),
        "--=_b2",
        'Content-Type: text/plain; name="passwd"',
        'Content-Disposition: attachment; filename="../../etc/passwd"',
        "",
        "root:x:0:0:root:/root:/bin/bash",
        "--=_b2",
        "Content-Type: image/png",
        'Content-Disposition: attachment; filename="C:\\Users\\wei\\Desktop\\..\\.hidden photo.png"',
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PNG).decode(),
        "--=_b2",
        "Content-Type: application/octet-stream",
        "Content-Disposition: attachment",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(b"\x00\x01\x02").decode(),
        "--=_b2--",
    ),
    subject="附件测试",
    sender_name="卫十二",
    sender_addr="wei12@example.cn",
    snippets=["请查收三个附件。"],
    attachments=["投诉书.pdf", "passwd", "hidden photo.png", "attachment-4.bin"],
    language="zh",
)

# 15. An attachment over the limit the tests use (100 000 bytes).
BIG = bytes(range(256)) * 800  # 204 800 bytes
add(
    "oversize_attachment.eml",
    lines(
        "From: Chu <chu@example.cn>",
        "To: feedback@city.example",
        "Subject: video evidence",
        "Date: Mon, 29 Jan 2024 10:00:00 +0800",
        "Message-ID: <oversize.1@example.cn>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b3"',
        "",
        "--b3",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "The video of the illegal dumping is attached.",
        "--b3",
        'Content-Type: video/mp4; name="dumping.mp4"',
        'Content-Disposition: attachment; filename="dumping.mp4"',
        "Content-Transfer-Encoding: base64",
        "",
        CRLF.join(base64.b64encode(BIG)[i : i + 76] for i in range(0, len(base64.b64encode(BIG)), 76)),
        "--b3--",
    ),
    subject="video evidence",
    sender_name="Chu",
    sender_addr="chu@example.cn",
    snippets=["The video of the illegal dumping is attached."],
    attachments=["dumping.mp4"],
    language="en",
)

# 16. A forwarded message attached as message/rfc822 (GBK inside).
INNER = lines(
    "From: " + ew("物业管理处", "gbk") + " <wuye@estate.example>",
    "To: residents@estate.example",
    "Subject: " + ew("停水通知", "gbk"),
    "Date: Tue, 30 Jan 2024 09:00:00 +0800",
    "Message-ID: <notice.42@estate.example>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=gbk",
    "Content-Transfer-Encoding: base64",
    "",
    b64("因管道维修，本周停水五天，恕不另行通知。", "gbk"),
)
add(
    "forwarded_rfc822.eml",
    lines(
        "From: " + ew("蒋十三", "utf-8") + " <jiang13@example.cn>",
        "To: feedback@city.example",
        "Subject: " + ew("转发：停水通知", "utf-8"),
        "Date: Tue, 30 Jan 2024 12:00:00 +0800",
        "Message-ID: <fwd.1@example.cn>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="fwd-b"',
        "",
        "--fwd-b",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "物业一次停水五天，太不合理了，请看转发的通知。".encode(),
        "--fwd-b",
        "Content-Type: message/rfc822",
        "Content-Disposition: attachment",
        "",
        INNER,
        "--fwd-b--",
    ),
    subject="转发：停水通知",
    sender_name="蒋十三",
    sender_addr="jiang13@example.cn",
    snippets=["请看转发的通知。", "本周停水五天"],
    # our own layout of the forwarded block (the comparison bench checks content only)
    layout_snippets=[
        "---- forwarded message ----\nFrom: 物业管理处 <wuye@estate.example>",
        "Subject: 停水通知",
    ],
    attachments=["forwarded-1.eml"],
    language="zh",
)

# 17. A delivery status notification (multipart/report) from Postfix.
add(
    "dsn_report.eml",
    lines(
        "Return-Path: <>",
        "From: MAILER-DAEMON@mail.city.example (Mail Delivery System)",
        "To: feedback@city.example",
        "Subject: Undelivered Mail Returned to Sender",
        "Date: Wed, 31 Jan 2024 10:00:05 +0800 (CST)",
        "Auto-Submitted: auto-replied",
        "Message-Id: <20240131020005.1A2B3C@mail.city.example>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        '\tboundary="1A2B3C.1706666405/mail.city.example"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        "--1A2B3C.1706666405/mail.city.example",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is the mail system at host mail.city.example.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients.",
        "",
        "<nobody@nowhere.example>: host nowhere.example said: 550 5.1.1 User unknown",
        "",
        "--1A2B3C.1706666405/mail.city.example",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mail.city.example",
        "Arrival-Date: Wed, 31 Jan 2024 10:00:03 +0800 (CST)",
        "",
        "Final-Recipient: rfc822; nobody@nowhere.example",
        "Action: failed",
        "Status: 5.1.1",
        "",
        "--1A2B3C.1706666405/mail.city.example",
        "Content-Description: Undelivered Message",
        "Content-Type: message/rfc822",
        "",
        "From: feedback@city.example",
        "To: nobody@nowhere.example",
        "Subject: =?utf-8?B?5oKo55qE5Y+N6aaI5bey5pS25Yiw?=",
        "Auto-Submitted: auto-replied",
        "Message-ID: <ack.77@city.example>",
        "",
        "Your feedback has been received.",
        "",
        "--1A2B3C.1706666405/mail.city.example--",
    ),
    subject="Undelivered Mail Returned to Sender",
    sender_name="Mail Delivery System",
    sender_addr="mailer-daemon@mail.city.example",
    snippets=["550 5.1.1 User unknown"],
    attachments=["delivery-status-1.txt", "forwarded-1.eml"],
    language="en",
)

# 18. An Exchange out-of-office reply.
add(
    "out_of_office.eml",
    lines(
        "From: " + ew("褚主任", "utf-8") + " <chu.director@gov.example>",
        "To: feedback@city.example",
        "Subject: =?utf-8?B?" + base64.b64encode("自动答复: 关于路灯维修的反馈".encode()).decode() + "?=",
        "Date: Thu, 1 Feb 2024 08:00:00 +0800",
        "Message-ID: <oof.1@gov.example>",
        "In-Reply-To: <case-2048.ack@city.example>",
        "References: <case-2048.ack@city.example>",
        "Auto-Submitted: auto-replied",
        "X-Auto-Response-Suppress: All",
        "X-MS-Exchange-Inbox-Rules-Loop: chu.director@gov.example",
        "Content-Language: zh-CN",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        b64("我目前不在办公室，2月5日返回。紧急事务请联系办公室电话。", "utf-8"),
    ),
    subject="自动答复: 关于路灯维修的反馈",
    sender_name="褚主任",
    sender_addr="chu.director@gov.example",
    snippets=["我目前不在办公室，2月5日返回。"],
    attachments=[],
    language="zh",
)

# 19. Western mail: ISO-8859-1 quoted-printable in subject and body.
add(
    "western_latin1.eml",
    lines(
        "From: =?iso-8859-1?Q?Ren=E9e_M=FCller?= <renee@example.de>",
        "To: feedback@city.example",
        "Subject: =?iso-8859-1?Q?Stra=DFenlaterne_kaputt_-_caf=E9?=",
        "Date: Fri, 2 Feb 2024 08:00:00 +0100",
        "Message-ID: <latin1.1@example.de>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        qp("Die Straßenlaterne vor dem Café ist seit Tagen dunkel. Grüße, Renée", "latin-1"),
    ),
    subject="Straßenlaterne kaputt - café",
    sender_name="Renée Müller",
    sender_addr="renee@example.de",
    snippets=["Die Straßenlaterne vor dem Café ist seit Tagen dunkel. Grüße, Renée"],
    attachments=[],
    language="en",
)


def main() -> None:
    for name, raw in MESSAGES.items():
        (HERE / name).write_bytes(raw)
    (HERE / "expected.json").write_text(
        json.dumps(EXPECTED, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"wrote {len(MESSAGES)} messages and expected.json to {HERE}")


if __name__ == "__main__":
    main()
