"""The staff loop end to end, as staff and citizens really write: every client, every command, privacy, forgery.

Everything goes through Dovecot (IMAP APPEND), the pipeline and the SMTP sink.  To stay fast each test
works one case (two at most) and appends several mails before one run: a run reads them in order, each
in its own transaction, so a batch of replies is what a busy mailbox holds between two polls.
Case state is read with ``feedbackd cases show --json`` run in-process (the subprocess costs 0.7 s).
"""

from __future__ import annotations

import html as htmlmod
import io
import json
import re
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import pytest

import mails
from conftest import REPO, Env
from feedbackd import cli
from feedbackd.devstack import Received
from test_staff_loop import CITIZEN, DESK, SECRET, parsed, run_once, text_of, to

STAFF_NAME = "小王"  # the staff member's display name in From
SIGNATURE = ["王建国", "市城管局综合科 | 电话 010-8888 6666"]  # their signature: another name, a phone
CITIZEN_TEXT = "东门的路灯已经坏了一个星期"  # from the citizen's mail, quoted in every notice
LEAD = "desk-lead@city.example"
OTHER = "li.si@163.example"  # a second citizen
FRIEND = "wang.wu@126.example"  # someone the citizen copied
STAFF = tuple(sorted(set(re.findall(r"[\w.-]+@city\.example", (REPO / "rules" / "departments.yaml").read_text()))))


# -- reading --------------------------------------------------------------------------------------------


def feedbackd(env: Env, *args: str) -> Any:
    """``feedbackd --config … ARGS --json`` in this process; its JSON."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["--config", str(env.config_path), *args, "--json"]) == 0
    return json.loads(out.getvalue())


def shown(env: Env, number: str) -> dict[str, Any]:
    result: dict[str, Any] = feedbackd(env, "cases", "show", number)
    return result


def bodies(mail: Received) -> str:
    """Every part of a mail, decoded."""
    seen = []
    for part in parsed(mail).walk():
        if part.get_content_maintype() != "multipart":
            content = part.get_content()
            seen.append(content if isinstance(content, str) else content.decode("utf-8", "replace"))
    return "\n".join(seen)


def all_text(mail: Received) -> str:
    """Everything a recipient can see: the raw bytes, the decoded headers and every decoded part."""
    headers = [f"{k}: {v}" for k, v in parsed(mail).items()]
    return "\n".join([mail.data.decode("utf-8", "replace"), *headers, bodies(mail)])


_RELAY_MARKS = (("工作人员答复如下：", "当前状态："), ("our staff answer:", "Status:"),
                ("处理结果如下：", "【您对处理结果满意吗？】"), ("The result:", "ARE YOU SATISFIED"))


def relayed(mail: Received) -> str | None:
    """The staff text a progress or result mail carries (blank lines dropped); None for a bare status notice."""
    body = text_of(mail)
    for start, end in _RELAY_MARKS:
        if start in body:
            text = body.split(start, 1)[1].split(end, 1)[0]
            return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())
    return None


def subject(mail: Received) -> str:
    return str(parsed(mail)["Subject"])


NOT_STAFF = {"opened": "citizen", "routed": "citizen", "acknowledgement-queued": "system"}  # other events: staff


def parsed_from(raw: bytes) -> str:
    """The From address of a mail we are about to deliver."""
    return str(message_from_bytes(raw, policy=policy.default)["From"].addresses[0].addr_spec)


CITIZEN_STATUS = {"已受理，等待处理": "open", "正在处理": "in-progress", "等待您补充信息": "waiting",
                  "已关闭": "closed",
                  "received, waiting to be handled": "open", "being handled": "in-progress",
                  "waiting for more information from you": "waiting", "closed": "closed"}


def status_of(mail: Received) -> str:
    """The status a bare progress notice announces (templates/*/progress.txt.j2, labels.citizen_status)."""
    found = re.search(r"目前的状态是：(.+?)。|is now (.+?)\.\r?\n", text_of(mail))
    assert found, text_of(mail)
    return CITIZEN_STATUS[found.group(1) or found.group(2)]


def citizen_mail_is_private(env: Env, citizen: str, others: list[str]) -> None:
    """No mail to ``citizen`` names a staff member (address, name, signature) or another citizen."""
    mails_to = to(env, citizen)
    assert mails_to
    for mail in mails_to:
        seen = all_text(mail)
        msg = parsed(mail)
        assert mail.rcpt_tos == [citizen] and [a.addr_spec for a in msg["To"].addresses] == [citizen]
        assert msg["Cc"] is None and msg["Bcc"] is None and msg["Reply-To"] is None
        for secret in (*STAFF, STAFF_NAME, *SIGNATURE, "8888 6666", *others):
            assert secret not in seen, (secret, subject(mail))
        assert "feedback+" not in seen  # the staff reply address stays with staff


# -- writing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """What a staff client shows of the notice it answers."""

    reply_to: str
    subject: str
    message_id: str
    text: str

    @classmethod
    def of(cls, mail: Received) -> Notice:
        msg = parsed(mail)
        return cls(msg["Reply-To"].addresses[0].addr_spec, str(msg["Subject"]),
                   str(msg["Message-ID"]).strip().strip("<>"), text_of(mail))

    @property
    def html(self) -> str:
        return "<br>".join(htmlmod.escape(line) for line in self.text.splitlines())

    def quoted(self, prefix: str = "> ") -> str:
        return "\n".join((prefix + line).rstrip() for line in self.text.splitlines())


def client_mail(notice: Notice, *, text: str | None, html: str | None, mailer: str | None, charset: str = "utf-8",
                cte: str = "base64", sender: str = DESK[0], name: str = STAFF_NAME, subject_prefix: str = "回复：",
                headers: dict[str, str] | None = None) -> bytes:
    """A reply to ``notice`` as a client sends it: text, HTML or both (multipart/alternative)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(name, addr_spec=sender)
    msg["To"] = Address("市民反馈中心", addr_spec=notice.reply_to)
    msg["Subject"] = subject_prefix + notice.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{mails.msgid(sender.rpartition('@')[2])}>"
    msg["In-Reply-To"] = f"<{notice.message_id}>"
    msg["References"] = f"<{notice.message_id}>"
    if mailer:
        msg["X-Mailer"] = mailer
    for key, value in (headers or {}).items():
        msg[key] = value
    if text is not None:
        msg.set_content(text, charset=charset, cte=cte)
        if html is not None:
            msg.add_alternative(html, subtype="html", charset=charset, cte=cte)
    elif html is not None:
        msg.set_content(html, subtype="html", charset=charset, cte=cte)
    return msg.as_bytes()


def citizen_mail(*, body: str, subject: str, sender: str = CITIZEN, name: str = "张三",
                 headers: dict[str, str] | None = None) -> bytes:
    return mails.plain(sender=sender, name=name, subject=subject, body=body, headers=headers)


def open_cases(env: Env, *raw: bytes) -> list[dict[str, Any]]:
    """Citizens write; their cases, oldest first."""
    env.mailbox.append(*raw)
    assert run_once(env) == {"new-case": len(raw)}
    listed: list[dict[str, Any]] = feedbackd(env, "cases", "list")
    return list(reversed(listed))


def first_notice(env: Env, case: dict[str, Any]) -> Notice:
    """The notice of a new case, as its department's first staff member got it."""
    mail = next(m for m in env.sink.received if f"[{case['id']}]" in subject(m) and parsed(m)["Reply-To"])
    return Notice.of(mail)


@pytest.fixture
def staff_env(env: Env) -> Env:
    env.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\n')
    return env


# -- 1. replies shaped like each client -------------------------------------------------------------------

QQ_SEPARATOR = "------------------ 原始邮件 ------------------"
DATE_ZH = "2026年12月1日(星期二) 上午9:00"


def lines(text: str, start: str = "<div>", end: str = "</div>") -> str:
    """Each line of ``text`` as an HTML block, as an editor writes what was typed."""
    return "".join(f"{start}{htmlmod.escape(line)}{end}" for line in text.split("\n"))


def qq(n: Notice, answer: str) -> bytes:
    text = (f"{answer}\n\n\n\n{QQ_SEPARATOR}\n发件人: \"市民反馈中心\"<{n.reply_to}>;\n发送时间: {DATE_ZH}\n"
            f"收件人: \"{STAFF_NAME}\"<{DESK[0]}>;\n\n主题: {n.subject}\n\n{n.text}\n")
    html = (f"{lines(answer)}<div><br></div><div><br></div><div><includetail>"
            '<div style="font:Verdana normal 14px;color:#000;">'
            f'<div style="FONT-SIZE: 12px;FONT-FAMILY: Arial Narrow;padding:2px 0 2px 0;">{QQ_SEPARATOR}</div>'
            '<div style="FONT-SIZE: 12px;background:#efefef;padding:8px;">'
            f"<div><b>发件人:</b>&nbsp;\"市民反馈中心\"&lt;{n.reply_to}&gt;;</div>"
            f"<div><b>发送时间:</b>&nbsp;{DATE_ZH}</div>"
            f"<div><b>收件人:</b>&nbsp;\"{STAFF_NAME}\"&lt;{DESK[0]}&gt;;<wbr></div>"
            f"<div><b>主题:</b>&nbsp;{htmlmod.escape(n.subject)}</div></div><div><br></div>"
            f"{n.html}</div></includetail></div>")
    return client_mail(n, text=text, html=html, mailer="QQMail 2.x", charset="gb18030")


def netease(n: Notice, answer: str) -> bytes:
    attribution = f"在 2026-12-01 09:00:00，\"市民反馈中心\" <{n.reply_to}> 写道："
    text = f"{answer}\n\n{SIGNATURE[0]}\n{SIGNATURE[1]}\n\n{attribution}\n{n.quoted('>')}\n"
    html = ('<div style="line-height:1.7;color:#000000;font-size:14px;font-family:Arial">'
            f"{lines(answer)}</div><br><br>"
            f'<div id="ntes-pcmail-signature" style="font-family:\'微软雅黑\'"><div>{SIGNATURE[0]}</div>'
            f"<div>{SIGNATURE[1]}</div></div><br>"
            '<span title="neteasefooter"><p>&nbsp;</p></span>'
            f"<pre><br>{htmlmod.escape(attribution)}<br></pre>"
            '<blockquote id="isReplyContent" style="PADDING-LEFT: 1ex; MARGIN: 0px 0px 0px 0.8ex; '
            f'BORDER-LEFT: #ccc 1px solid">{n.html}</blockquote>')
    return client_mail(n, text=text, html=html, mailer="Coremail Webmail Server Version XT5.0.14", charset="gbk")


def foxmail(n: Notice, answer: str) -> bytes:
    text = (f"{answer}\r\n\r\n\r\n{DESK[0]}\r\n\xa0\r\n发件人：\xa0市民反馈中心\r\n"
            f"发送时间：\xa02026-12-01\xa009:00\r\n收件人：\xa0{STAFF_NAME}\r\n主题：\xa0{n.subject}\r\n{n.text}\r\n")
    html = ('<html><head><meta http-equiv="content-type" content="text/html; charset=gb18030"></head><body>\n'
            f"<div><span></span>{lines(answer)}</div>\n"
            '<div><br></div><hr style="width: 210px; height: 1px;" color="#b5c4df" size="1" align="left">\n'
            '<div><span><div style="MARGIN: 10px; FONT-FAMILY: verdana; FONT-SIZE: 10pt">'
            f"<div>{SIGNATURE[0]}</div><div>{SIGNATURE[1]}</div><div>{DESK[0]}</div></div></span></div>\n"
            '<blockquote style="margin-Top: 0px; margin-Bottom: 0px; margin-Left: 0.5em; margin-Right: inherit">'
            '<div>&nbsp;</div><div style="border:none;border-top:solid #B5C4DF 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
            '<div style="FONT-SIZE: 12px;FONT-FAMILY:tahoma;COLOR:#000000; BACKGROUND: #efefef; PADDING: 8px">'
            f'<div><b>发件人：</b>&nbsp;<a href="mailto:{n.reply_to}">市民反馈中心</a></div>'
            "<div><b>发送时间：</b>&nbsp;2026-12-01&nbsp;09:00</div>"
            f'<div><b>收件人：</b>&nbsp;<a href="mailto:{DESK[0]}">{STAFF_NAME}</a></div>'
            f"<div><b>主题：</b>&nbsp;{htmlmod.escape(n.subject)}</div></div></div><div>&nbsp;</div>"
            f"<div>{n.html}</div></blockquote>\n</body></html>")
    return client_mail(n, text=text, html=html, mailer="Foxmail 7.2.25.375[cn]", charset="gb18030")


def _word(body: str, lang: str) -> str:
    """Outlook desktop's Word HTML around ``body``; the signature carries Word's _MailAutoSig bookmark."""
    return ('<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
            'xmlns:w="urn:schemas-microsoft-com:office:word" xmlns="http://www.w3.org/TR/REC-html40">'
            '<head><meta http-equiv=Content-Type content="text/html; charset=utf-8">'
            '<meta name=Generator content="Microsoft Word 15 (filtered medium)">'
            "<style><!-- p.MsoNormal {margin:0cm; font-size:10.5pt;} --></style></head>"
            f'<body lang={lang} link="#0563C1" vlink="#954F72" style="word-wrap:break-word">'
            f"<div class=WordSection1>{body}</div></body></html>")


def _word_signature() -> str:
    return (f'<p class=MsoNormal><a name="_MailAutoSig"><span style="color:#1F497D">{SIGNATURE[0]}'
            "<o:p></o:p></span></a></p>"
            f'<p class=MsoNormal><span style="color:#1F497D">{htmlmod.escape(SIGNATURE[1])}<o:p></o:p></span></p>'
            "<p class=MsoNormal><o:p>&nbsp;</o:p></p>")


def outlook_zh(n: Notice, answer: str) -> bytes:
    header = (f"发件人: 市民反馈中心 <{n.reply_to}> \n发送时间: 2026年12月1日 9:00\n收件人: {STAFF_NAME} <{DESK[0]}>\n"
              f"主题: {n.subject}\n")
    text = f"{answer}\n\n{SIGNATURE[0]}\n{SIGNATURE[1]}\n\n{header}\n{n.text}\n"
    body = (f"{lines(answer, '<p class=MsoNormal>', '<o:p></o:p></p>')}<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
            f"{_word_signature()}"
            "<div><div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'>"
            "<p class=MsoNormal><b>发件人<span lang=EN-US>:</span></b><span lang=EN-US> </span>市民反馈中心"
            f"<span lang=EN-US> &lt;{n.reply_to}&gt; <br></span>"
            "<b>发送时间<span lang=EN-US>:</span></b><span lang=EN-US> 2026</span>年<span lang=EN-US>12</span>月"
            "<span lang=EN-US>1</span>日<span lang=EN-US> 9:00<br></span>"
            f"<b>收件人<span lang=EN-US>:</span></b><span lang=EN-US> </span>{STAFF_NAME}"
            f"<span lang=EN-US> &lt;{DESK[0]}&gt;<br></span>"
            f"<b>主题<span lang=EN-US>:</span></b><span lang=EN-US> {htmlmod.escape(n.subject)}</span>"
            "<o:p></o:p></p></div></div><p class=MsoNormal><o:p>&nbsp;</o:p></p>"
            f"<p class=MsoNormal>{n.html}<o:p></o:p></p>")
    return client_mail(n, text=text, html=_word(body, "ZH-CN"), mailer="Microsoft Outlook 16.0",
                       cte="quoted-printable", headers={"Thread-Index": "AdrDo7Jx5Qm3kLwGQ0eZ1A=="})


def outlook_en(n: Notice, answer: str) -> bytes:
    header = (f"From: 市民反馈中心 <{n.reply_to}>\nSent: Tuesday, December 1, 2026 9:00 AM\n"
              f"To: {STAFF_NAME} <{DESK[0]}>\nSubject: {n.subject}\n")
    text = f"{answer}\n\n{SIGNATURE[0]}\n{SIGNATURE[1]}\n\n________________________________\n{header}\n{n.text}\n"
    body = (f"{lines(answer, '<p class=MsoNormal><span lang=EN-US>', '<o:p></o:p></span></p>')}"
            f"<p class=MsoNormal><o:p>&nbsp;</o:p></p>{_word_signature()}"
            '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
            '<hr style="display:inline-block;width:98%" tabindex="-1">'
            '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000">'
            f"<b>From:</b> 市民反馈中心 &lt;{n.reply_to}&gt;<br><b>Sent:</b> Tuesday, December 1, 2026 9:00 AM<br>"
            f"<b>To:</b> {STAFF_NAME} &lt;{DESK[0]}&gt;<br><b>Subject:</b> {htmlmod.escape(n.subject)}</font>"
            f"<div>&nbsp;</div></div></div><div>{n.html}</div>")
    return client_mail(n, text=text, html=_word(body, "EN-US"), mailer="Microsoft Outlook 16.0",
                       cte="quoted-printable", subject_prefix="RE: ")


def owa(n: Notice, answer: str) -> bytes:
    header = (f"From: 市民反馈中心 <{n.reply_to}>\nSent: Tuesday, December 1, 2026 9:00 AM\n"
              f"To: {STAFF_NAME} <{DESK[0]}>\nSubject: {n.subject}\n")
    text = f"{answer}\n\n{SIGNATURE[0]} | {SIGNATURE[1]}\n________________________________\n{header}\n{n.text}\n"
    opener = '<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">'
    html = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            '<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style></head>'
            f'<body dir="ltr">{lines(answer, opener)}'
            f'<div id="Signature" class="elementToProof"><div>{SIGNATURE[0]} | {htmlmod.escape(SIGNATURE[1])}</div>'
            '</div><div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">'
            '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt">'
            f"<b>From:</b> 市民反馈中心 &lt;{n.reply_to}&gt;<br><b>Sent:</b> Tuesday, December 1, 2026 9:00 AM<br>"
            f"<b>To:</b> {STAFF_NAME} &lt;{DESK[0]}&gt;<br><b>Subject:</b> {htmlmod.escape(n.subject)}</font>"
            f"<div>&nbsp;</div></div><div>{n.html}</div></body></html>")
    return client_mail(n, text=text, html=html, mailer="Microsoft Outlook Web App", subject_prefix="RE: ",
                       headers={"X-MS-Exchange-Organization-SCL": "-1"})


def gmail(n: Notice, answer: str) -> bytes:
    text = (f"{answer}\n\n-- \n{SIGNATURE[0]}\n{SIGNATURE[1]}\n\n"
            f"On Tue, Dec 1, 2026 at 9:00 AM 市民反馈中心 <\n{n.reply_to}> wrote:\n\n{n.quoted()}\n")
    html = (f'<div dir="ltr">{lines(answer)}<div><br></div>'
            '<span class="gmail_signature_prefix">-- </span><br>'
            f'<div dir="ltr" class="gmail_signature" data-smartmail="gmail_signature"><div dir="ltr">{SIGNATURE[0]}'
            f"<div>{htmlmod.escape(SIGNATURE[1])}</div></div></div></div><br>"
            '<div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Tue, Dec 1, 2026 '
            f'at 9:00 AM 市民反馈中心 &lt;<a href="mailto:{n.reply_to}">{n.reply_to}</a>&gt; wrote:<br></div>'
            '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);'
            f'padding-left:1ex">{n.html}</blockquote></div>')
    return client_mail(n, text=text, html=html, mailer=None, cte="quoted-printable", subject_prefix="Re: ")


def apple_mail(n: Notice, answer: str) -> bytes:
    attribution = f"在 2026年12月1日，09:00，市民反馈中心 <{n.reply_to}> 写道："
    text = f"{answer}\n\n发自我的iPhone\n\n> {attribution}\n>\n{n.quoted()}\n"
    html = ('<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body dir="auto">'
            f'{lines(answer, "<div dir=ltr>")}'
            '<div dir="ltr"><br><div dir="ltr" id="AppleMailSignature">发自我的iPhone</div><div dir="ltr"><br>'
            f'<blockquote type="cite">{htmlmod.escape(attribution)}<br><br></blockquote></div>'
            f'<blockquote type="cite"><div dir="ltr">\ufeff{n.html}</div></blockquote></div></body></html>')
    return client_mail(n, text=text, html=html, mailer="iPhone Mail (21G93)", cte="quoted-printable")


def top_posted(n: Notice, answer: str) -> bytes:
    text = (f"{answer}\n\n-- \n{SIGNATURE[0]}\n{SIGNATURE[1]}\n\n"
            f"在 2026/12/1 9:00, 市民反馈中心 写道:\n{n.quoted()}\n")
    return client_mail(n, text=text, html=None, mailer="Mozilla Thunderbird 128.5.0", cte="quoted-printable")


def bottom_posted(n: Notice, answer: str) -> bytes:
    text = (f"On 12/1/2026 9:00 AM, 市民反馈中心 wrote:\n{n.quoted()}\n\n{answer}\n\n"
            f"-- \n{SIGNATURE[0]}\n{SIGNATURE[1]}\n")
    return client_mail(n, text=text, html=None, mailer="Mozilla Thunderbird 128.5.0", cte="8bit",
                       subject_prefix="Re: ")


def html_only(n: Notice, answer: str) -> bytes:
    html = ('<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head>'
            f"<body>{lines(answer, '<p>', '</p>')}"
            f'<div class="moz-signature">-- <br>{SIGNATURE[0]}<br>{htmlmod.escape(SIGNATURE[1])}</div>'
            '<div class="moz-cite-prefix">在 2026/12/1 9:00, 市民反馈中心 写道:<br></div>'
            f'<blockquote type="cite" cite="mid:{n.message_id}">{n.html}</blockquote></body></html>')
    return client_mail(n, text=None, html=html, mailer="Mozilla Thunderbird 128.5.0")


CLIENTS: dict[str, tuple[Callable[[Notice, str], bytes], str]] = {
    "QQ Mail": (qq, "您好，已联系施工方，本周五前完成维修。"),
    "163": (netease, "已转交交通局处理，预计三个工作日内答复。"),
    "Foxmail": (foxmail, "收到，已转交街道办，请耐心等待。"),
    "Outlook desktop zh": (outlook_zh, "已安排人员今天下午到场。"),
    "Outlook desktop en": (outlook_en, "We will send a crew this afternoon."),
    "Outlook on the web": (owa, "The lamp will be replaced on Friday."),
    "Gmail": (gmail, "Hello,\nThe pothole on Harbour Road was filled this morning."),
    "Apple Mail": (apple_mail, "请补充具体门牌号，我们再安排人员。"),
    "top-posted": (top_posted, "维修队已出发，预计一小时内到达。"),
    "bottom-posted": (bottom_posted, "Fixed on Friday, the crew checked every lamp."),
    "HTML only": (html_only, "已清理完毕。\n感谢市民监督。"),
}


def test_replies_from_every_client_reach_the_citizen_as_exactly_the_new_text(staff_env: Env) -> None:
    (case,) = open_cases(staff_env, mails.plain())
    notice = first_notice(staff_env, case)
    assert CITIZEN_TEXT in notice.text and notice.reply_to in notice.text  # what each quote carries
    staff_env.mailbox.append(*(build(notice, answer) for build, answer in CLIENTS.values()))
    assert run_once(staff_env) == {"staff-reply": len(CLIENTS)}
    answers = [m for m in to(staff_env, CITIZEN) if relayed(m) is not None]
    got = {}
    for client, (_build, answer) in CLIENTS.items():
        key = answer.split("\n")[-1][:8]
        found = [relayed(m) for m in answers if key in text_of(m)]
        got[client] = found[0] if len(found) == 1 else found
    assert got == {client: answer for client, (_build, answer) in CLIENTS.items()}
    assert len(answers) == len(CLIENTS)
    for mail in answers:
        seen = bodies(mail)
        for quoted in (CITIZEN_TEXT, "原始邮件", "写道", "wrote:", "From:", "发件人", "#办结", "如何办理"):
            assert quoted not in seen, (quoted, relayed(mail))
        assert parsed(mail)["Auto-Submitted"] is None  # a person's answer
    citizen_mail_is_private(staff_env, CITIZEN, [])
    detail = shown(staff_env, case["id"])
    assert detail["status"] == "in-progress"
    replies = [e for e in detail["events"] if e["kind"] == "staff-reply"]
    assert len(replies) == len(CLIENTS) and {e["actor"] for e in replies} == {DESK[0]}


# -- 2. every command in both languages -------------------------------------------------------------------

COMMANDS = {
    "en": {"in-progress": "#status in-progress", "waiting": "#status waiting", "priority": "#priority Low",
           "move": "#move quality", "assign": "#assign quality@city.example", "note": "#note",
           "resolve": "#resolve", "reopen": "#reopen", "close": "#close"},
    "zh": {"in-progress": "#状态 处理中", "waiting": "#状态：等待补充", "priority": "#优先级 紧急",
           "move": "#转办 商品质量组", "assign": "#指派 quality@city.example", "note": "#备注",
           "resolve": "#办结", "reopen": "#重新打开", "close": "＃关闭"},
}
# zh: every status change mails the citizen (the default); en: only these two
PROGRESS_ON = {"zh": None, "en": ["waiting", "closed"]}


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_command_in_both_languages(staff_env: Env, language: str) -> None:
    words = COMMANDS[language]
    progress_on = PROGRESS_ON[language]
    if progress_on is not None:
        staff_env.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\nprogress_on = {json.dumps(progress_on)}\n')
    opening = mails.english() if language == "en" else mails.plain()
    citizen = parsed_from(opening)
    (case,) = open_cases(staff_env, opening)
    n = first_notice(staff_env, case)
    reply = outlook_en if language == "en" else qq

    def sent(commands: list[str], text: str = "") -> bytes:
        return reply(n, "\n".join([*commands, text]).strip())

    # one batch: bare status changes, priority, move, assign, an internal note
    note = "Internal: the contractor was called." if language == "en" else "内部：已电话联系施工方。"
    staff_env.mailbox.append(sent([words["in-progress"]]), sent([words["waiting"]]), sent([words["priority"]]),
                             sent([words["move"]]), sent([words["assign"]]), sent([words["note"]], note))
    assert run_once(staff_env) == {"staff-reply": 6}
    detail = shown(staff_env, case["id"])
    priority = "low" if language == "en" else "urgent"  # by a name: "低 Low", "紧急 Urgent"
    assert (detail["status"], detail["priority"], detail["department"], detail["assignee"]) == (
        "waiting", priority, "quality", "quality@city.example")
    progress = to(staff_env, citizen)[1:]  # after the acknowledgement
    expected = ["in-progress", "waiting"] if progress_on is None else ["waiting"]
    assert sorted(status_of(m) for m in progress) == expected  # bare notices (the sender may reorder)
    assert all(relayed(m) is None and parsed(m)["Auto-Submitted"] == "auto-generated" for m in progress)
    assert all(note not in all_text(m) for m in to(staff_env, citizen))
    (moved,) = to(staff_env, "quality@city.example")
    assert "[" + case["id"] + "]" in subject(moved) and ("转办" in subject(moved) or "moved" in subject(moved).lower())
    assert parsed(moved)["Reply-To"].addresses[0].addr_spec == n.reply_to  # same case, same reply address
    assert not [m for m in to(staff_env, "quality-lead@city.example")]
    kinds = [(e["kind"], e["detail"].get("to"), e["actor"]) for e in detail["events"]
             if e["kind"] in ("status", "priority", "moved", "assigned", "note")]
    assert kinds == [("status", "in-progress", DESK[0]), ("status", "waiting", DESK[0]),
                     ("priority", priority, DESK[0]), ("moved", "quality", DESK[0]),
                     ("assigned", "quality@city.example", DESK[0]), ("note", None, DESK[0])]
    (note_message,) = [m for m in detail["messages"] if note in (m.get("text") or "")]

    # #resolve: the result with the satisfaction question
    result_text = "The lamp was replaced on Friday." if language == "en" else "路灯已于周五更换。"
    staff_env.mailbox.append(sent([words["resolve"]], result_text))
    assert run_once(staff_env) == {"staff-reply": 1}
    detail = shown(staff_env, case["id"])
    assert detail["status"] == "resolved" and detail["resolved_at"]
    (result,) = [m for m in to(staff_env, citizen) if relayed(m) == result_text]
    question = "ARE YOU SATISFIED" if language == "en" else "您对处理结果满意吗"
    assert question in text_of(result) and parsed(result)["Auto-Submitted"] is None

    # #reopen, then #close
    before = len(to(staff_env, citizen))
    staff_env.mailbox.append(sent([words["reopen"]]), sent([words["close"]]))
    assert run_once(staff_env) == {"staff-reply": 2}
    detail = shown(staff_env, case["id"])
    assert detail["status"] == "closed" and detail["resolved_at"] is None
    late = to(staff_env, citizen)[before:]
    assert sorted(status_of(m) for m in late) == (["closed", "open"] if progress_on is None else ["closed"])
    statuses = [(e["detail"]["from"], e["detail"]["to"]) for e in detail["events"] if e["kind"] == "status"]
    assert statuses[-3:] == [("waiting", "resolved"), ("resolved", "open"), ("open", "closed")]
    actors = [(e["kind"], e["actor"]) for e in detail["events"]]
    assert actors == [(kind, NOT_STAFF.get(kind, DESK[0])) for kind, _actor in actors]
    assert len(actors) > 20
    assert note_message  # the note is kept on the case, for staff
    citizen_mail_is_private(staff_env, citizen, [])


# -- 3. reopen, satisfaction, forwarding to the assignee --------------------------------------------------


def test_reopen_satisfaction_answers_and_follow_ups_forwarded_to_the_assignee(staff_env: Env) -> None:
    (case,) = open_cases(staff_env, mails.plain())
    n = first_notice(staff_env, case)
    token = f"Re: [{case['id']}] 小区路灯不亮"
    # the department hears of the case; after #指派 only the assignee hears of the citizen's follow-up
    staff_env.mailbox.append(qq(n, "#指派 desk2@city.example"),
                             citizen_mail(body="补充：是3号楼门口那一盏。", subject=token))
    assert run_once(staff_env) == {"staff-reply": 1, "joined": 1}
    assert shown(staff_env, case["id"])["assignee"] == "desk2@city.example"
    (forwarded,) = [m for m in to(staff_env, DESK[1]) if "3号楼门口" in text_of(m)]
    assert "市民补充" in subject(forwarded) and parsed(forwarded)["Reply-To"].addresses[0].addr_spec == n.reply_to
    assert not [m for m in to(staff_env, DESK[0]) if "3号楼门口" in text_of(m)]

    # five results, five answers (digits and words); a reply that is no answer reopens and tells the assignee
    def resolve(text: str) -> bytes:
        return gmail(n, f"#resolve\n{text}")

    staff_env.mailbox.append(
        resolve("First fix."), citizen_mail(body="5", subject=token),
        resolve("Second fix."), citizen_mail(body="满意，谢谢你们", subject=token),
        citizen_mail(body="路灯又不亮了，请再来看看。", subject=token),
        resolve("Third fix."), citizen_mail(body="一般", subject=token),
        resolve("Fourth fix."), citizen_mail(body="不满意，晚上还是很暗", subject=token),
        resolve("Fifth fix."), citizen_mail(body="unsatisfied - still dark at night", subject=token))
    assert run_once(staff_env) == {"staff-reply": 5, "joined": 6}
    detail = shown(staff_env, case["id"])
    assert [e["detail"]["score"] for e in detail["events"] if e["kind"] == "satisfaction"] == [5, 5, 3, 1, 1]
    assert detail["status"] == "open" and detail["satisfaction"]["score"] == 1
    assert "still dark" in detail["satisfaction"]["text"]
    assert {e["actor"] for e in detail["events"] if e["kind"] in ("satisfaction", "reopened")} == {"citizen"}
    reopened = [e for e in detail["events"] if e["kind"] == "reopened"]
    assert len(reopened) == 3  # the reply without a rating, and the two unsatisfied answers
    results = [m for m in to(staff_env, CITIZEN) if "满意吗" in text_of(m)]
    assert sorted(relayed(m) or "" for m in results) == ["Fifth fix.", "First fix.", "Fourth fix.", "Second fix.",
                                                        "Third fix."]
    (again,) = [m for m in to(staff_env, DESK[1]) if "又不亮了" in text_of(m)]
    assert "重新打开" in subject(again)  # the assignee hears the case was reopened
    assert not [m for m in to(staff_env, DESK[0]) if "又不亮了" in text_of(m)]
    lead = to(staff_env, LEAD)
    assert len(lead) == 2 and all("不满意" in subject(m) for m in lead)
    assert any("晚上还是很暗" in text_of(m) for m in lead) and any("still dark" in text_of(m) for m in lead)
    citizen_mail_is_private(staff_env, CITIZEN, [])


# -- 4. privacy -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("configured", [False, True], ids=["defaults", "show-address-and-copy-cc"])
def test_privacy_of_citizens_and_staff(staff_env: Env, configured: bool) -> None:
    if configured:
        staff_env.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\nshow_citizen_address = true\n'
                                    "copy_citizen_cc = true\n")
    first, second = open_cases(
        staff_env, mails.plain(headers={"Cc": f"Wang Wu <{FRIEND}>"}),
        mails.plain(sender=OTHER, name="李四", subject="垃圾清运不及时", body="小区垃圾三天没有清运了。"))
    n1, n2 = first_notice(staff_env, first), first_notice(staff_env, second)
    for notice, citizen in ((n1, CITIZEN), (n2, OTHER)):
        masked = citizen[:2] + "***@" + citizen.partition("@")[2]
        assert (citizen in notice.text) is configured and (masked in notice.text) is not configured
    staff_env.mailbox.append(owa(n1, "Answer for the first citizen."), qq(n2, "第二位市民的答复。"),
                             apple_mail(n1, "#办结\n第一位市民的问题已解决。"))
    assert run_once(staff_env) == {"staff-reply": 3}
    copied = to(staff_env, FRIEND)
    if configured:  # the person the citizen copied gets the staff answers too, in a mail of their own
        assert sorted(relayed(m) or "" for m in copied) == ["Answer for the first citizen.", "第一位市民的问题已解决。"]
    else:
        assert copied == []
    assert all(m.rcpt_tos == [FRIEND] or FRIEND not in m.rcpt_tos for m in staff_env.sink.received)
    assert all(len(m.rcpt_tos) == 1 for m in staff_env.sink.received)
    citizen_mail_is_private(staff_env, CITIZEN, [OTHER, FRIEND])
    citizen_mail_is_private(staff_env, OTHER, [CITIZEN, FRIEND])
    if configured:
        citizen_mail_is_private(staff_env, FRIEND, [CITIZEN, OTHER])


# -- 5. forgery ---------------------------------------------------------------------------------------------

MX = "mx.city.example"
PASS = f"{MX}; dkim=pass header.d=city.example header.s=s1; spf=pass smtp.mailfrom=desk@city.example"


def received_by_mx(raw: bytes, authentication_results: str) -> bytes:
    """What our MX delivers: its own Authentication-Results prepended above everything the sender wrote."""
    return f"Authentication-Results: {authentication_results}\r\n".encode() + raw


def test_forged_authentication_results_never_act_as_staff(staff_env: Env) -> None:
    staff_env.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\nrequire_authentication = true\n'
                                f'authserv_id = "{MX}"\n')
    (case,) = open_cases(staff_env, mails.plain())
    n = first_notice(staff_env, case)
    written = outlook_zh(n, "#办结\n伪造一：处理完毕。")  # with a passing header the sender wrote himself
    written = written.replace(b"\nX-Mailer", f"\nAuthentication-Results: {PASS}\r\nX-Mailer".encode(), 1)
    forged_below = received_by_mx(  # ... under our MX's own, failing one
        written, f"{MX}; dkim=fail header.d=city.example; spf=softfail smtp.mailfrom=desk@city.example")
    assert forged_below.count(b"Authentication-Results:") == 2
    other_server = received_by_mx(  # a pass, but from a server we do not trust
        gmail(n, "#resolve\nForgery two: done."), PASS.replace(MX, "mx.attacker.example"))
    genuine = received_by_mx(qq(n, "#状态 处理中\n已派人查看。"), PASS)
    staff_env.mailbox.append(forged_below, other_server, genuine)
    run_once(staff_env)
    detail = shown(staff_env, case["id"])
    assert detail["status"] == "in-progress"  # only the genuine reply acted
    failed = [e["detail"]["reason"] for e in detail["events"] if e["kind"] == "staff-claim-failed"]
    assert len(failed) == 2 and all(reason.startswith("authentication") for reason in failed), failed
    assert "mx.attacker.example" in failed[1]
    assert [e["actor"] for e in detail["events"] if e["kind"] == "status"] == [DESK[0]]
    assert not [m for m in to(staff_env, CITIZEN) if "伪造" in all_text(m) or "Forgery" in all_text(m)]
    assert [relayed(m) for m in to(staff_env, CITIZEN) if relayed(m)] == ["已派人查看。"]


def test_staff_only_in_reply_to_or_sender_and_staff_out_of_office_never_act(staff_env: Env) -> None:
    (case,) = open_cases(staff_env, mails.plain())
    n = first_notice(staff_env, case)
    impostor = client_mail(n, text="#办结\n伪造：冒充工作人员。", html=None, mailer="Foxmail 7.2",
                           sender="evil@attacker.example", name=STAFF_NAME,
                           headers={"Reply-To": DESK[0], "Sender": DESK[0]})
    away = client_mail(n, text="您好，我正在休假，12月8日回来后处理。急事请联系 desk2@city.example。", html=None,
                       mailer="Microsoft Exchange Server", subject_prefix="自动回复: ",
                       headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"})
    staff_env.mailbox.append(impostor, away, qq(n, "#状态 处理中"))
    run_once(staff_env)
    detail = shown(staff_env, case["id"])
    assert detail["status"] == "in-progress"
    (failed,) = [e for e in detail["events"] if e["kind"] == "staff-claim-failed"]
    assert failed["detail"] == {"from": "evil@attacker.example", "reason": "sender is not staff"}
    assert not [e for e in detail["events"] if e["kind"] in ("staff-reply", "status") and e["actor"] != DESK[0]]
    assert len([e for e in detail["events"] if e["kind"] == "staff-reply"]) == 1  # the out-of-office is not one
    (away_event,) = [e for e in detail["events"] if e["kind"] == "auto-reply"]  # it is noted on the case, by system
    assert away_event["actor"] == "system" and away_event["detail"]["threaded_by"] == "headers"
    assert not [m for m in to(staff_env, CITIZEN) if "伪造" in all_text(m) or "休假" in all_text(m)]
    # the out-of-office loops nowhere: no staff notice carries it either
    assert not [m for m in staff_env.sink.received if "休假" in all_text(m)]
    citizen_mail_is_private(staff_env, CITIZEN, [])
