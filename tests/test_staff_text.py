"""Reading a staff or citizen reply: the new text without quotes and signature, the command lines, satisfaction.

The replies below are written the way each client writes them (text and HTML parts of QQ Mail, 163,
Foxmail, Outlook desktop zh/en, Outlook on the web, Gmail en/zh, Apple Mail on iPhone and Mac,
Thunderbird), answering a staff notice from the feedback address.  Pure logic: no servers.
"""

from __future__ import annotations

import pytest

from feedbackd.mail.html import html_to_text
from feedbackd.mail.quotes import html_reply_text, strip_reply
from feedbackd.staff.commands import Command, help_text, parse_commands
from feedbackd.staff.satisfaction import parse_satisfaction

REPLY_TO = "feedback+FB-000123.k7f3q2abcd@city.example"
SP = " "  # the trailing space Outlook leaves after an address, and the one in a "-- " signature line
NOTICE_ZH = "编号 FB-000123\n类别：投诉\n市民来信：东门路灯坏了两个星期，晚上很不安全。"
NOTICE_EN = "Case FB-000123\nKind: complaint\nThe citizen wrote: the lamp at the east gate is out."


def quoted(text: str, prefix: str = "> ") -> str:
    return "\n".join((prefix + line).rstrip() for line in text.split("\n"))


# -- text parts as the clients write them ----------------------------------------------------------

QQ_TEXT = f"""#状态 处理中
您好，已联系施工方，本周五前完成维修。



------------------ 原始邮件 ------------------
发件人: "市民反馈中心"<{REPLY_TO}>;
发送时间: 2024年1月15日(星期一) 上午9:00
收件人: "城管局"<desk@city.example>;

主题: [FB-000123] 路灯坏了两个星期

{NOTICE_ZH}
"""

NETEASE_TEXT = f"""#转办 交通局
已转交交通局处理。

发自网易邮箱大师

在 2024-01-15 09:00:00，"市民反馈中心" <{REPLY_TO}> 写道：
{quoted(NOTICE_ZH, ">")}
"""

FOXMAIL_TEXT = f"""收到，已转交街道办，请耐心等待。\r
\r
\r
wangwu@foxmail.com\r
\xa0\r
发件人：\xa0市民反馈中心\r
发送时间：\xa02024-01-15\xa009:00\r
收件人：\xa0wangwu\r
主题：\xa0[FB-000123] 朱镕路噪音投诉\r
{NOTICE_ZH.replace(chr(10), chr(13) + chr(10))}\r
"""

OUTLOOK_ZH_PLAIN = f"""#优先级 紧急
已安排人员今天下午到场。

-----邮件原件-----
发件人: 市民反馈中心 <{REPLY_TO}>{SP}
发送时间: 2024年1月15日 9:00
收件人: 张三 <zhangsan@city.example>
主题: [FB-000123] 道路施工停工三个月

{NOTICE_ZH}
"""

OUTLOOK_ZH_FROM_HTML = f"""已安排人员今天下午到场。

\xa0

发件人: 市民反馈中心 <{REPLY_TO}>{SP}
发送时间: 2024年1月15日 9:00
收件人: 张三 <zhangsan@city.example>
主题: [FB-000123] 道路施工停工三个月

\xa0

{NOTICE_ZH}
"""

OUTLOOK_EN_TEXT = f"""We will send a crew today.

From: Feedback Center <{REPLY_TO}>{SP}
Sent: Monday, January 15, 2024 9:00 AM
To: Zhang San <zhangsan@city.example>
Subject: [FB-000123] Pothole on Harbour Road

{NOTICE_EN}
"""

OWA_TEXT = f"""#resolve
The lamp was replaced on Friday.

Get Outlook for iOS<https://aka.ms/o0ukef>
________________________________
From: Feedback Center <{REPLY_TO}>
Sent: Monday, January 15, 2024 9:00 AM
To: Zhang San <zhangsan@city.example>
Subject: [FB-000123] Street lamp

{NOTICE_EN}
"""

GMAIL_EN_TEXT = f"""#resolve
The pothole was filled on Friday.

--{SP}
Zhang San
City Works Department

On Mon, Jan 15, 2024 at 9:00 AM Feedback Center <
{REPLY_TO}> wrote:

{quoted(NOTICE_EN)}
"""

GMAIL_ZH_TEXT = f"""#状态 处理中
已派人查看。

市民反馈中心 <{REPLY_TO}> 于2024年1月15日周一 09:00写道：

{quoted(NOTICE_ZH)}
"""

IPHONE_ZH_TEXT = f"""#状态 等待补充
请市民补充具体门牌号。

发自我的iPhone

> 在 2024年1月15日，09:00，市民反馈中心 <{REPLY_TO}> 写道：
>
{quoted(NOTICE_ZH)}
"""

MAC_MAIL_TEXT = f"""The crew fixed it this morning.

Best,
Zhang

> On 15 Jan 2024, at 09:00, Feedback Center <{REPLY_TO}> wrote:
>
{quoted(NOTICE_EN)}
"""

THUNDERBIRD_BOTTOM = f"""On 15/01/2024 09:00, Feedback Center wrote:
{quoted(NOTICE_EN)}

Yes: fixed on Friday, see the photo.

--{SP}
Zhang San, City Works
"""

GMAIL_FORWARD = f"""Please see below.

---------- Forwarded message ---------
From: Feedback Center <{REPLY_TO}>
Date: Mon, Jan 15, 2024 at 9:00 AM
Subject: [FB-000123] Street lamp
To: <zhangsan@city.example>

{NOTICE_EN}
"""

QQ_EN_TEXT = f"""Noted, thanks.

------------------ Original ------------------
From:  "Feedback Center"<{REPLY_TO}>;
Date:  Mon, Jan 15, 2024 09:00 AM
To:  "desk"<desk@city.example>;
Subject:  [FB-000123] Street lamp

{NOTICE_EN}
"""

THUNDERBIRD_ZH = f"""已处理。

在 2024/1/15 9:00, 市民反馈中心 写道:
{quoted(NOTICE_ZH)}
"""

OUTLOOK_MOBILE_ZH = f"""已处理。

从 Android 版 Outlook 发送
________________________________
发件人: 市民反馈中心 <{REPLY_TO}>
发送时间: Monday, January 15, 2024 9:00:00 AM
收件人: 张三 <zhangsan@city.example>
主题: [FB-000123] 路灯
"""

INTERLEAVED = """> Where exactly is the lamp?
Next to bus stop 12.

> Since when?
Since Monday.
"""


@pytest.mark.parametrize(
    ("client", "text", "expected"),
    [
        ("QQ Mail", QQ_TEXT, "#状态 处理中\n您好，已联系施工方，本周五前完成维修。"),
        ("163 / Mail Master", NETEASE_TEXT, "#转办 交通局\n已转交交通局处理。"),
        ("Foxmail (CRLF, nbsp, full-width colons, address signature)", FOXMAIL_TEXT,
         "收到，已转交街道办，请耐心等待。"),
        ("Outlook zh plain", OUTLOOK_ZH_PLAIN, "#优先级 紧急\n已安排人员今天下午到场。"),
        ("Outlook zh text of an HTML reply", OUTLOOK_ZH_FROM_HTML, "已安排人员今天下午到场。"),
        ("Outlook en", OUTLOOK_EN_TEXT, "We will send a crew today."),
        ("Outlook on the web / mobile", OWA_TEXT, "#resolve\nThe lamp was replaced on Friday."),
        ("Gmail en, wrapped attribution and signature", GMAIL_EN_TEXT, "#resolve\nThe pothole was filled on Friday."),
        ("Gmail zh", GMAIL_ZH_TEXT, "#状态 处理中\n已派人查看。"),
        ("iPhone zh", IPHONE_ZH_TEXT, "#状态 等待补充\n请市民补充具体门牌号。"),
        ("Mac Mail en", MAC_MAIL_TEXT, "The crew fixed it this morning.\n\nBest,\nZhang"),
        ("Thunderbird bottom-posted", THUNDERBIRD_BOTTOM, "Yes: fixed on Friday, see the photo."),
        ("Gmail forward", GMAIL_FORWARD, "Please see below."),
        ("QQ Mail en", QQ_EN_TEXT, "Noted, thanks."),
        ("Thunderbird zh", THUNDERBIRD_ZH, "已处理。"),
        ("Outlook mobile zh", OUTLOOK_MOBILE_ZH, "已处理。"),
        ("interleaved answers", INTERLEAVED, "Next to bus stop 12.\n\nSince Monday."),
    ],
)
def test_the_new_text_of_text_replies(client: str, text: str, expected: str) -> None:
    assert strip_reply(text) == expected, client


def test_nothing_but_quotes_is_empty() -> None:
    assert strip_reply(f"\n\n在 2024-01-15 09:00:00，\"市民反馈中心\" <{REPLY_TO}> 写道：\n\n") == ""
    assert strip_reply(quoted(NOTICE_ZH)) == ""
    assert strip_reply("") == ""
    assert strip_reply("\n发自我的iPhone\n") == ""


def test_words_that_look_like_markers_in_the_writers_own_text_stay() -> None:
    text = ("市民写道：路灯不亮。\n"  # no date, no address: not a client's attribution
            "From: the north gate to the bus stop, all lamps are out.\n"  # a From: line without a header block
            "-- 转交给交通局 --\n"  # dashes around words that are not a client's separator
            "____\n"  # a short rule
            "来自市民的邮件已转交相关部门处理。\n"  # 来自…邮件 but not a client signature
            "请联系 help@city.example 咨询。")
    assert strip_reply(text) == text


def test_the_quote_starts_at_the_first_marker_even_when_a_later_one_differs() -> None:
    text = (f"好的\n\n-----Original Message-----\nFrom: a <{REPLY_TO}>\nSent: today\n\nOlder\n\n"
            "在 2024-01-01 写道：\n> oldest")
    assert strip_reply(text) == "好的"


# -- HTML as the clients write it --------------------------------------------------------------

QQ_HTML = (
    '<div>#状态 处理中</div><div>您好，已联系施工方，本周五前完成维修。</div><div><br></div><div><br></div>'
    '<div><includetail><div style="font:Verdana normal 14px;color:#000;">'
    '<div style="FONT-SIZE: 12px;FONT-FAMILY: Arial Narrow;padding:2px 0 2px 0;">'
    "------------------&nbsp;原始邮件&nbsp;------------------</div>"
    '<div style="FONT-SIZE: 12px;background:#efefef;padding:8px;">'
    f'<div><b>发件人:</b>&nbsp;"市民反馈中心"&lt;{REPLY_TO}&gt;;</div>'
    "<div><b>发送时间:</b>&nbsp;2024年1月15日(星期一) 上午9:00</div>"
    '<div><b>收件人:</b>&nbsp;"城管局"&lt;desk@city.example&gt;;<wbr></div><div></div>'
    "<div><b>主题:</b>&nbsp;[FB-000123] 路灯坏了两个星期</div></div><div><br></div>"
    "编号 FB-000123<br>市民来信：东门路灯坏了两个星期，晚上很不安全。</div></includetail></div>"
)

NETEASE_HTML = (
    '<div style="line-height:1.7;color:#000000;font-size:14px;font-family:Arial"><div>#转办 交通局</div>'
    "<div>已转交交通局处理。</div></div><br><br>"
    '<span title="neteasefooter"><p>&nbsp;</p></span><div style="position:relative;zoom:1"></div>'
    '<div id="divNeteaseMailCard"></div><br>'
    f'<pre><br>在 2024-01-15 09:00:00，"市民反馈中心" &lt;{REPLY_TO}&gt; 写道：<br></pre>'
    '<blockquote id="isReplyContent" style="PADDING-LEFT: 1ex; MARGIN: 0px 0px 0px 0.8ex; BORDER-LEFT: #ccc 1px solid">'
    "<div>编号 FB-000123</div><div>市民来信：东门路灯坏了两个星期。</div></blockquote>"
)

FOXMAIL_HTML = (
    '<html><head><meta http-equiv="content-type" content="text/html; charset=gb2312">'
    "<style>body { line-height: 1.5; }blockquote { margin-top: 0px; margin-bottom: 0px; margin-left: 0.5em; }"
    "</style></head><body>\n"
    "<div><span></span>收到，已转交街道办，请耐心等待。</div>\n"
    '<div><br></div><hr style="width: 210px; height: 1px;" color="#b5c4df" size="1" align="left">\n'
    '<div><span><div style="MARGIN: 10px; FONT-FAMILY: verdana; FONT-SIZE: 10pt"><div>王五 | 街道办</div>'
    "<div>wangwu@foxmail.com</div></div></span></div>\n"
    '<blockquote style="margin-Top: 0px; margin-Bottom: 0px; margin-Left: 0.5em; margin-Right: inherit">'
    '<div>&nbsp;</div><div style="border:none;border-top:solid #B5C4DF 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
    '<div style="PADDING-RIGHT: 8px; PADDING-LEFT: 8px; FONT-SIZE: 12px;FONT-FAMILY:tahoma;COLOR:#000000; '
    'BACKGROUND: #efefef; PADDING-BOTTOM: 8px; PADDING-TOP: 8px">'
    f'<div><b>发件人：</b>&nbsp;<a href="mailto:{REPLY_TO}">市民反馈中心</a></div>'
    "<div><b>发送时间：</b>&nbsp;2024-01-15&nbsp;09:00</div>"
    '<div><b>收件人：</b>&nbsp;<a href="mailto:wangwu@foxmail.com">wangwu</a></div>'
    "<div><b>主题：</b>&nbsp;[FB-000123] 朱镕路噪音投诉</div></div></div><div>&nbsp;</div>"
    "<div>编号 FB-000123</div></blockquote>\n</body></html>"
)

OUTLOOK_WORD_HTML = (
    '<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">'
    '<head><meta http-equiv=Content-Type content="text/html; charset=gb2312">'
    '<meta name=Generator content="Microsoft Word 15 (filtered medium)">'
    "<style><!-- p.MsoNormal {margin:0cm; font-size:10.5pt;} --></style></head>"
    '<body lang=ZH-CN link="#0563C1" vlink="#954F72"><div class=WordSection1>'
    "<p class=MsoNormal><span lang=EN-US>#</span>状态 处理中<o:p></o:p></p>"
    "<p class=MsoNormal>已安排人员今天下午到场。<o:p></o:p></p>"
    "<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
    "<div><div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'>"
    "<p class=MsoNormal><b>发件人<span lang=EN-US>:</span></b><span lang=EN-US> </span>市民反馈中心"
    f"<span lang=EN-US> &lt;{REPLY_TO}&gt; <br></span>"
    "<b>发送时间<span lang=EN-US>:</span></b><span lang=EN-US> 2024</span>年<span lang=EN-US>1</span>月"
    "<span lang=EN-US>15</span>日<span lang=EN-US> 9:00<br></span>"
    "<b>收件人<span lang=EN-US>:</span></b><span lang=EN-US> </span>张三<span lang=EN-US><br></span>"
    "<b>主题<span lang=EN-US>:</span></b><span lang=EN-US> [FB-000123] </span>道路施工<o:p></o:p></p></div></div>"
    "<p class=MsoNormal><o:p>&nbsp;</o:p></p><p class=MsoNormal>编号 FB-000123<o:p></o:p></p></div></body></html>"
)

OWA_HTML = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    '<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style></head>'
    '<body dir="ltr"><div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">'
    "#resolve</div>"
    '<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">'
    "The lamp was replaced on Friday.</div>"
    '<div id="Signature" class="elementToProof"><div>Zhang San | City Works | +86 10 1234 5678</div></div>'
    '<div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">'
    '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000">'
    f"<b>From:</b> Feedback Center &lt;{REPLY_TO}&gt;<br><b>Sent:</b> Monday, January 15, 2024 9:00 AM<br>"
    "<b>To:</b> Zhang San &lt;zhangsan@city.example&gt;<br><b>Subject:</b> [FB-000123] Street lamp</font>"
    "<div>&nbsp;</div></div><div><div>Case FB-000123</div><div>The lamp at the east gate is out.</div></div>"
    "</body></html>"
)

GMAIL_HTML = (
    '<div dir="ltr"><div>#resolve</div><div>The pothole was filled on Friday.</div><div><br></div>'
    '<span class="gmail_signature_prefix">-- </span><br>'
    '<div dir="ltr" class="gmail_signature" data-smartmail="gmail_signature"><div dir="ltr">Zhang San'
    "<div>City Works Department</div></div></div></div><br>"
    '<div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Mon, Jan 15, 2024 at '
    f'9:00 AM Feedback Center &lt;<a href="mailto:{REPLY_TO}">{REPLY_TO}</a>&gt; wrote:<br></div>'
    '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);'
    'padding-left:1ex">Case FB-000123<br>Pothole on Harbour Road</blockquote></div>'
)

IPHONE_HTML = (
    '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body dir="auto">'
    '<div dir="ltr">#状态 等待补充</div><div dir="ltr">请市民补充具体门牌号。</div>'
    '<div dir="ltr"><br><div dir="ltr" id="AppleMailSignature">发自我的iPhone</div><div dir="ltr"><br>'
    f'<blockquote type="cite">在 2024年1月15日，09:00，市民反馈中心 &lt;{REPLY_TO}&gt; 写道：<br><br></blockquote>'
    '</div><blockquote type="cite"><div dir="ltr">\ufeff<div>编号 FB-000123</div><div>市民来信：东门路灯坏了。</div>'
    "</div></blockquote></div></body></html>"
)

APPLE_BOTTOM_HTML = (
    '<html><body><div>On 15 Jan 2024, at 09:00, Feedback Center &lt;feedback@city.example&gt; wrote:</div>'
    '<blockquote type="cite"><div>Is the lamp fixed?</div></blockquote><div><br></div>'
    "<div>Yes, fixed on Friday.</div></body></html>"
)

GMAIL_INDENT_HTML = (
    '<div dir="ltr"><div>Steps taken:</div>'
    '<blockquote style="margin:0 0 0 40px;border:none;padding:0px"><div>1. replaced the lamp</div></blockquote>'
    '<div>Thanks</div></div><div class="gmail_quote"><blockquote class="gmail_quote">old</blockquote></div>'
)


@pytest.mark.parametrize(
    ("client", "html", "expected"),
    [
        ("QQ Mail", QQ_HTML, "#状态 处理中\n您好，已联系施工方，本周五前完成维修。"),
        ("163", NETEASE_HTML, "#转办 交通局\n已转交交通局处理。"),
        ("Foxmail: signature under the rule", FOXMAIL_HTML, "收到，已转交街道办，请耐心等待。"),
        # html_to_text reads Word's empty <o:p> as a paragraph, hence the blank line
        ("Outlook desktop Word HTML", OUTLOOK_WORD_HTML, "#状态 处理中\n\n已安排人员今天下午到场。"),
        ("Outlook on the web: signature and the rest after #appendonsend", OWA_HTML,
         "#resolve\nThe lamp was replaced on Friday."),
        ("Gmail: signature and gmail_quote", GMAIL_HTML, "#resolve\nThe pothole was filled on Friday."),
        ("iPhone", IPHONE_HTML, "#状态 等待补充\n请市民补充具体门牌号。"),
        ("Apple Mail bottom-posted", APPLE_BOTTOM_HTML, "Yes, fixed on Friday."),
        ("Gmail indent is the writer's text", GMAIL_INDENT_HTML, "Steps taken:\n1. replaced the lamp\nThanks"),
    ],
)
def test_the_new_text_of_html_only_replies(client: str, html: str, expected: str) -> None:
    # ParsedMessage.text of an HTML-only message is the HTML made readable, quotes and all.
    assert strip_reply(html_to_text(html), html) == expected, client
    assert strip_reply("", html) == expected, client


def test_the_html_decides_when_both_parts_exist_and_its_signature_is_marked() -> None:
    # The plain text Outlook on the web derives from the HTML keeps the signature; the HTML marks it.
    owa_text = OWA_TEXT.replace("Get Outlook for iOS<https://aka.ms/o0ukef>", "Zhang San | City Works | +86 10 12345")
    assert "Zhang San" in strip_reply(owa_text)
    assert strip_reply(owa_text, OWA_HTML) == "#resolve\nThe lamp was replaced on Friday."
    assert strip_reply(GMAIL_EN_TEXT, GMAIL_HTML) == "#resolve\nThe pothole was filled on Friday."


@pytest.mark.parametrize(
    ("client", "text", "html"),
    [
        ("QQ Mail", QQ_TEXT, QQ_HTML),
        ("163", NETEASE_TEXT, NETEASE_HTML),
        ("Foxmail", FOXMAIL_TEXT, FOXMAIL_HTML),
        ("Outlook on the web", OWA_TEXT, OWA_HTML),
        ("Gmail", GMAIL_EN_TEXT, GMAIL_HTML),
        ("iPhone", IPHONE_ZH_TEXT, IPHONE_HTML),
    ],
)
def test_both_parts_of_a_reply_give_the_same_new_text(client: str, text: str, html: str) -> None:
    from_text = strip_reply(text)
    assert strip_reply(text, html) == from_text, client
    assert "FB-000123" not in from_text and "@" not in from_text, client  # no quote, no signature address


def test_the_text_decides_when_the_html_gives_nothing() -> None:
    assert strip_reply("Fixed.\n\n> old", "<html><body><blockquote>old</blockquote></body></html>") == "Fixed."
    assert strip_reply("Fixed.", "<html><head><title>x</title></head></html>") == "Fixed."
    assert strip_reply("Fixed.", "<div><br></div>") == "Fixed."


def test_html_reply_text_marks_the_quote_in_place() -> None:
    text = html_reply_text(NETEASE_HTML)
    assert "写道：" in text and "市民来信" not in text
    assert text.rstrip().endswith(">")


def test_an_html_reply_that_is_all_quote_is_empty() -> None:
    html = '<div><br></div><div class="gmail_quote"><blockquote class="gmail_quote">old</blockquote></div>'
    assert strip_reply(html_to_text(html), html) == ""


# -- linear time on hostile input --------------------------------------------------------------

HOSTILE_TEXT = {
    "a megabyte row of _": "a\n" + "_" * 2_000_000,
    "a megabyte row of -": "-" * 2_000_000 + "\nb",
    "dashes around words, long": "--" + " 原始邮件" * 200_000 + " --",
    "an attribution that never ends": "On " + "x" * 2_000_000 + " wrote:",
    "From lines without a header": "From: a\n" * 150_000,
    "a wall of quote markers": "> \n" * 150_000 + "new",
    "blank lines and bottom-posted attributions": "\n" * 150_000 + "On 1 a@b wrote:\n> q\n" * 50_000,
    "many -- lines": "a\n" + "--\n" * 150_000,
    "signature-like lines": "发自我的iPhone\n" * 150_000,
    "bare addresses": "\na@b.cn\n" * 150_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXT))
def test_hostile_text_is_read_to_an_answer(name: str) -> None:
    """Shapes that would make a quadratic or backtracking pass run for minutes (speed itself is for benchmarks)."""
    assert len(strip_reply(HOSTILE_TEXT[name])) <= len(HOSTILE_TEXT[name])


@pytest.mark.parametrize(
    "html",
    [
        "<blockquote>x</blockquote>" * 100_000,
        '<div class="gmail_signature">s</div>' * 100_000,
        "<div>" * 5_000 + "<blockquote>q</blockquote>" + "</div>" * 5_000,
        "<p>a</p>" * 100_000 + '<div id="appendonsend"></div>' + "<p>b</p>" * 100_000,
    ],
)
def test_hostile_html_is_read_to_an_answer(html: str) -> None:
    assert isinstance(strip_reply("", html), str)


# -- commands ----------------------------------------------------------------------------------


def names(text: str) -> list[tuple[str, str]]:
    parsed = parse_commands(text)
    assert parsed.errors == [], parsed.errors
    return [(c.name, c.argument) for c in parsed.commands]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("#status in-progress", ("status", "in-progress")),
        ("#status waiting", ("status", "waiting")),
        ("#Status In Progress", ("status", "in-progress")),
        ("#状态 处理中", ("status", "in-progress")),
        ("#状态 等待补充", ("status", "waiting")),
        ("＃状态：处理中", ("status", "in-progress")),
        ("#状态:\u3000等待补充。", ("status", "waiting")),
        ("# status closed", ("status", "closed")),
        ("#priority urgent", ("priority", "urgent")),
        ("#优先级 紧急", ("priority", "紧急")),
        ("#assign Zhang.San@City.example", ("assign", "zhang.san@city.example")),
        ("#指派 <li.si@city.example>", ("assign", "li.si@city.example")),
        ("#指派 李四 <Li.Si@city.example>", ("assign", "li.si@city.example")),
        ("#move roads", ("move", "roads")),
        ("#转办 交通运输局", ("move", "交通运输局")),
        ("#note", ("note", "")),
        ("#备注", ("note", "")),
        ("#resolve", ("resolve", "")),
        ("#办结。", ("resolve", "")),
        ("#close", ("close", "")),
        ("#关闭", ("close", "")),
        ("#reopen", ("reopen", "")),
        ("＃重新打开", ("reopen", "")),
    ],
)
def test_each_command_in_both_languages(line: str, expected: tuple[str, str]) -> None:
    parsed = parse_commands(f"\n\n{line}\n您好，已处理。")
    assert parsed.errors == []
    assert [(c.name, c.argument) for c in parsed.commands] == [expected]
    assert parsed.commands[0].line == line
    assert parsed.body == "您好，已处理。"


def test_several_commands_then_the_body() -> None:
    parsed = parse_commands("#优先级 紧急\n\n#指派 li.si@city.example\n#状态 处理中\n\n您好：\n已安排。\n#不是命令")
    assert parsed.errors == []
    assert parsed.commands == [
        Command("priority", "紧急", "#优先级 紧急"),
        Command("assign", "li.si@city.example", "#指派 li.si@city.example"),
        Command("status", "in-progress", "#状态 处理中"),
    ]
    assert parsed.body == "您好：\n已安排。\n#不是命令"  # a '#' line after the text is text


def test_no_command_is_all_body() -> None:
    parsed = parse_commands("\n您好，已派人查看。\n#status waiting\n")
    assert parsed == parse_commands("您好，已派人查看。\n#status waiting")
    assert parsed.commands == [] and parsed.errors == []
    assert parsed.body == "您好，已派人查看。\n#status waiting"
    assert parse_commands("") == parse_commands("\n \n")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("#stat in-progress\n好", "unknown command"),
        ("#状况 处理中\n好", "未知命令"),
        ("#status\n好", "needs an argument"),
        ("#状态 完成了\n好", "unknown status"),
        ("#assign 张三\n好", "mail address"),
        ("#assign a@b.example c@d.example\n好", "mail address"),
        ("#resolve now\n好", "takes no argument"),
        ("#办结 今天\n好", "不带参数"),
        ("#priority\n好", "needs an argument"),
        ("#note\n#note\n好", "more than once"),
        ("#resolve\n#close\n好", "more than one status change"),
        ("#status waiting\n#reopen\n好", "more than one status change"),
        ("#note\n#resolve\n好", "a note stays internal"),
        ("#1 problem fixed\n好", "unknown command"),
    ],
)
def test_malformed_commands_are_errors_naming_the_line(text: str, fragment: str) -> None:
    parsed = parse_commands(text)
    assert parsed.errors and any(fragment in error for error in parsed.errors), parsed.errors
    assert any(error.startswith(text.split("\n")[0]) or error.startswith("#") for error in parsed.errors)
    assert parsed.body == "好"


def test_each_bad_line_is_one_error_and_good_ones_still_parse() -> None:
    parsed = parse_commands("#bogus 1\n#状态 处理中\n#also-bogus\n正文")
    assert [e.split(":")[0] for e in parsed.errors] == ["#bogus 1", "#also-bogus"]
    assert [c.name for c in parsed.commands] == ["status"]


def test_errors_are_bounded() -> None:
    parsed = parse_commands("#x" + "y" * 10_000 + "\n" + "#bad\n" * 1000)
    assert len(parsed.errors) == 21 and parsed.errors[-1].startswith("…")
    assert all(len(error) < 400 for error in parsed.errors)


def test_commands_after_stripping_a_real_reply() -> None:
    assert names(strip_reply(QQ_TEXT)) == [("status", "in-progress")]
    assert names(strip_reply(NETEASE_TEXT)) == [("move", "交通局")]
    assert names(strip_reply(OWA_TEXT, OWA_HTML)) == [("resolve", "")]
    assert names(strip_reply(html_to_text(OUTLOOK_WORD_HTML), OUTLOOK_WORD_HTML)) == [("status", "in-progress")]
    parsed = parse_commands(strip_reply(GMAIL_EN_TEXT, GMAIL_HTML))
    assert parsed.body == "The pothole was filled on Friday."


def test_help_text_in_both_languages() -> None:
    zh, en = help_text("zh-CN"), help_text("en")
    for word in ("#状态 处理中", "#优先级", "#指派", "#转办", "#备注", "#办结", "#关闭", "#重新打开"):
        assert word in zh
    for word in ("#status in-progress", "#priority", "#assign", "#move", "#note", "#resolve", "#close", "#reopen"):
        assert word in en
    assert help_text("zh") == zh and help_text("fr") == en
    # The examples in the help parse as they say.
    assert names("#状态 处理中\n您好") == [("status", "in-progress")]
    assert names("#status in-progress\nHello") == [("status", "in-progress")]


# -- satisfaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5, "")),
        ("１", (1, "")),
        ("５分", (5, "")),
        ("4分，处理及时，但等了一周。\n谢谢", (4, "处理及时，但等了一周。\n谢谢")),
        ("3星", (3, "")),
        ("5/5", (5, "")),
        ("4 out of 5 - quick work", (4, "quick work")),
        ("2 很慢", (2, "很慢")),
        ("五分", (5, "")),
        ("5星好评", (5, "")),
        ("满意", (5, "")),
        ("满意！谢谢你们", (5, "谢谢你们")),
        ("非常满意", (5, "")),
        ("我很满意", (5, "")),
        ("基本满意", (3, "")),
        ("一般", (3, "")),
        ("一般般吧", (3, "般吧")),
        ("不满意，路灯还是不亮", (1, "路灯还是不亮")),
        ("很不满意", (1, "")),
        ("非常不满意！！", (1, "")),
        ("不太满意", (2, "")),
        ("Satisfied", (5, "")),
        ("Very satisfied, thank you", (5, "thank you")),
        ("I'm not satisfied.", (1, "")),
        ("unsatisfied", (1, "")),
        ("Dissatisfied - nothing changed", (1, "nothing changed")),
        ("neutral", (3, "")),
        ("OK", (3, "")),
        ("okay.", (3, "")),
        ("\n\n  满意\n\n谢谢", (5, "谢谢")),
        ("谢谢，非常满意！", (5, "")),
        ("非常感谢！我很满意，路灯已经亮了", (5, "路灯已经亮了")),
        ("Thank you, very satisfied", (5, "")),
    ],
)
def test_satisfaction_answers(text: str, expected: tuple[int, str]) -> None:
    assert parse_satisfaction(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n \n",
        "路灯还是不亮",
        "10",
        "50元",
        "0",
        "6分",
        "3 days later the lamp is still out",
        "5分钟后又灭了",
        "满意度调查不用了",
        "满意吗？",
        "一分钱没花",  # 一分 then more text: not a score
        "Oklahoma",
        "I will be satisfied when it works",
        "路灯修好了，满意",  # the answer leads the line (after a courtesy at most)
        "thanks for nothing",
    ],
)
def test_not_an_answer(text: str) -> None:
    assert parse_satisfaction(text) is None


def test_satisfaction_after_stripping_a_real_reply() -> None:
    reply = ("不满意，路灯还是不亮。\n\n发自我的iPhone\n\n"
             "> 在 2024年1月20日，10:00，市民反馈中心 <feedback@city.example> 写道：\n> 请回复 1-5 或 满意/一般/不满意")
    assert parse_satisfaction(strip_reply(reply)) == (1, "路灯还是不亮。")
