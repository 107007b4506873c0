"""Build the routing evaluation set: ``source/*.yaml`` (hand-written mails and labels) → ``NNNN.eml``
and ``labels.yaml`` in this folder.

Run from the repository root:  .venv/bin/python tests/routing-eval/build.py [--out DIR] [--source DIR]

``--source DIR`` builds another set from ``DIR/*.yaml`` (into ``DIR/..`` unless ``--out`` says
otherwise): the held-out set is ``--source tests/routing-eval/holdout/source``.

The output is deterministic (dates, Message-IDs and client choices come from each mail's number),
so rebuilding after adding mails changes only the new files.  Each mail is shaped like the client
it names: QQ Mail, 163/Coremail, Foxmail, Outlook, Gmail, iPhone Mail or a bare text/plain sender,
with that client's usual charset (GB18030/GBK/GB2312 for simplified Chinese, Big5 for traditional),
transfer encoding and multipart layout.  See README.md for the source format.
"""

from __future__ import annotations

import base64
import html
import quopri
import random
import sys
from datetime import datetime, timedelta, timezone
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.policy import compat32
from email.utils import format_datetime
from pathlib import Path

from ruamel.yaml import YAML

HERE = Path(__file__).resolve().parent
MAILBOX = "feedback@city.example"
DEPARTMENTS = ("general", "safety", "quality", "logistics", "payments", "service", "privacy", "suggestions")
KINDS = ("problem", "opinion")
PRIORITIES = ("urgent", "high", "normal", "low")
CLIENTS = ("qq", "163", "foxmail", "outlook", "gmail", "iphone", "plain")

# The smallest valid JPEG and PDF files are enough: the set tests routing, not image handling.
JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912"
    "130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001"
    "000101011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303"
    "020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282"
    "090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a73747576"
    "7778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9ca"
    "d2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fbd3ffd9"
)
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")

# The acknowledgements that replies quote: the shipped templates, rendered as a reader sees them.
ACK_ZH = (HERE / "source" / "acknowledgement.zh.txt").read_text(encoding="utf-8").rstrip("\n")
ACK_EN = (HERE / "source" / "acknowledgement.en.txt").read_text(encoding="utf-8").rstrip("\n")

SIGNATURES = {
    "iphone": {"hans": "\n\n发自我的iPhone", "hant": "\n\n從我的 iPhone 傳送", "en": "\n\nSent from my iPhone"},
    "163": {"hans": "", "hant": "", "en": ""},
    "gmail": {"hans": "", "hant": "", "en": ""},
}
MAILERS = {
    "qq": "QQMail 2.x",
    "163": "Coremail Webmail Server Version XT5.0.14 build 20230109(dcb5de15)",
    "foxmail": "Foxmail 7.2.25.228[cn]",
    "outlook": "Microsoft Outlook 16.0",
    "iphone": "iPhone Mail (21G93)",
}


def language(entry: dict) -> str:
    if entry.get("lang"):
        return str(entry["lang"])
    text = entry["body"] + entry.get("subject", "")
    return "en" if sum(ord(c) > 0x2E7F for c in text) < len(text) * 0.05 else "hans"


def choose_client(n: int, lang: str) -> str:
    rnd = random.Random(n * 7919)
    if lang == "en":
        return rnd.choice(("gmail", "gmail", "outlook", "outlook", "iphone", "plain"))
    if lang == "hant":
        return rnd.choice(("gmail", "outlook", "iphone", "foxmail", "plain"))
    return rnd.choice(("qq", "qq", "qq", "163", "163", "foxmail", "outlook", "iphone", "gmail", "plain"))


def choose_charset(n: int, client: str, lang: str) -> str:
    rnd = random.Random(n * 104729)
    if lang == "hans" and client in ("qq", "163", "foxmail", "outlook"):
        table = {"qq": ("gb18030", "utf-8", "utf-8"), "163": ("gbk", "utf-8", "utf-8"),
                 "foxmail": ("gb2312", "gb2312", "utf-8"), "outlook": ("gb2312", "utf-8")}
        return rnd.choice(table[client])
    if lang == "hant" and client in ("foxmail", "outlook", "plain"):
        return rnd.choice(("big5", "big5", "utf-8"))
    return "utf-8"


def codec(charset: str) -> str:
    return "gbk" if charset == "gb2312" else charset  # Foxmail and Outlook label GBK text gb2312


def fits(text: str, charset: str) -> bool:
    try:
        text.encode(codec(charset))
    except UnicodeEncodeError:
        return False
    return True


def text_part(subtype: str, text: str, charset: str, cte: str) -> Message:
    errors = "xmlcharrefreplace" if subtype == "html" else "strict"
    raw = text.replace("\n", "\r\n").encode(codec(charset), errors)
    part = Message(policy=compat32)
    part["Content-Type"] = f'text/{subtype}; charset="{charset}"'
    part["Content-Transfer-Encoding"] = cte
    if cte == "base64":
        part.set_payload(base64.encodebytes(raw).decode("ascii"))
    elif cte == "quoted-printable":
        part.set_payload(quopri.encodestring(raw).decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(raw.decode("ascii"))
    return part


def as_html(text: str, client: str, charset: str) -> str:
    paras = []
    for para in text.split("\n\n"):
        lines = "<br>".join(html.escape(line) for line in para.split("\n"))
        if lines.startswith("&gt;"):
            paras.append(f'<blockquote style="border-left:2px solid #ccc;padding-left:8px">{lines}</blockquote>')
        else:
            paras.append(f"<div>{lines}</div>")
    body = "\n<div><br></div>\n".join(paras)
    font = "微软雅黑" if client in ("qq", "foxmail", "163") else "Calibri"
    return (f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={charset}"></head>'
            f'<body><div style="font-family:{font};font-size:14px">\n{body}\n</div></body></html>')


def encoded_header(text: str, charset: str, q: bool) -> str:
    if text.isascii():
        return text
    cs = Charset(codec(charset) if charset != "gb2312" else "gb2312")
    cs.header_encoding = QP if q else BASE64
    if charset == "gb2312":
        cs.output_codec = "gbk"
    return Header(text, cs).encode()


def quoted(entry: dict, lang: str, n: int, date: datetime) -> tuple[str, str]:
    """The acknowledgement this mail replies to, quoted the way the client quotes, and the subject."""
    q = entry["quote"]
    number = f"FB-{n * 37 % 99991:06d}"
    orig = q.get("subject", "")
    dept = q.get("dept", "综合受理组 General desk")
    sent = date - timedelta(days=q.get("days", 3))
    ack = ACK_EN if lang == "en" else ACK_ZH
    ack_text = ack.format(name=q.get("name", "您" if lang != "en" else "citizen"), number=number, subject=orig,
                          date=sent.strftime("%Y-%m-%d %H:%M"), dept=dept,
                          due=(sent + timedelta(days=1)).strftime("%Y-%m-%d %H:%M"))
    prefix = "Re: " if lang == "en" or n % 2 else "回复："
    said = "We have received your feedback: " if lang == "en" else "我们已收到您的反馈："
    subject = f"{prefix}[{number}] {said}{orig}"
    style = q.get("style", "angle" if n % 3 else "outlook")
    if style == "angle":
        head = (f"On {format_datetime(sent)}, City Feedback Desk <{MAILBOX}> wrote:" if lang == "en"
                else f"在 {sent.strftime('%Y年%m月%d日 %H:%M')}，市民意见信箱 <{MAILBOX}> 写道：")
        body = head + "\n" + "\n".join(("> " + line).rstrip() for line in ack_text.split("\n"))
    else:
        if lang == "en":
            head = (f"-----Original Message-----\nFrom: City Feedback Desk <{MAILBOX}>\n"
                    f"Sent: {format_datetime(sent)}\nSubject: [{number}] We have received your feedback: {orig}")
        else:
            head = (f"------------------ 原始邮件 ------------------\n发件人: \"市民意见信箱\"<{MAILBOX}>;\n"
                    f"发送时间: {sent.strftime('%Y年%m月%d日')}(星期{'一二三四五六日'[sent.weekday()]}) "
                    f"{'上午' if sent.hour < 12 else '下午'}{sent.strftime('%H:%M')}\n"
                    f"主题: [{number}] 我们已收到您的反馈：{orig}")
        body = head + "\n\n" + ack_text
    return body, subject


def build(entry: dict) -> tuple[str, bytes]:
    n = int(entry["n"])
    lang = language(entry)
    client = str(entry.get("client") or choose_client(n, lang))
    if client not in CLIENTS:
        raise ValueError(f"{n}: unknown client {client}")
    rnd = random.Random(n)
    date = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8))) + timedelta(minutes=n * 131 % 40000)
    body = entry["body"].rstrip("\n") + SIGNATURES.get(client, {}).get(lang, "")
    subject = entry.get("subject", "")
    extra_headers: dict[str, str] = {}
    if entry.get("quote"):
        quote_text, reply_subject = quoted(entry, lang, n, date)
        body = body + "\n\n" + quote_text
        subject = entry.get("subject") or reply_subject
        extra_headers["In-Reply-To"] = f"<ack.{n * 37 % 99991}@city.example>"
        extra_headers["References"] = f"<orig.{n}@example.cn> <ack.{n * 37 % 99991}@city.example>"
    charset = entry.get("charset") or choose_charset(n, client, lang)
    if not fits(body + subject + entry.get("from", ""), charset):
        # Hong Kong Cantonese (咗, 嘅, 冚) needs the HKSCS extension of Big5; anything else goes UTF-8.
        hkscs = charset == "big5" and fits(body + subject + entry.get("from", ""), "big5-hkscs")
        charset = "big5-hkscs" if hkscs else "utf-8"
    cte = entry.get("cte") or {"qq": "base64", "163": "base64", "foxmail": "base64", "outlook": "quoted-printable",
                               "gmail": rnd.choice(("base64", "quoted-printable")), "iphone": "quoted-printable",
                               "plain": "base64" if lang != "en" else "7bit"}[client]
    if cte == "7bit" and not body.isascii():
        cte = "quoted-printable"
    html_only = bool(entry.get("html_only"))
    plain = text_part("plain", body, charset, cte)
    if html_only:
        root: Message = text_part("html", as_html(body, client, charset), charset, "base64" if cte == "7bit" else cte)
    elif client in ("qq", "163", "foxmail", "outlook", "gmail") or entry.get("html"):
        root = MIMEMultipart("alternative", boundary=f"----=_Part_{n}_{rnd.getrandbits(40):x}")
        root.attach(plain)
        root.attach(text_part("html", as_html(body, client, charset), charset, "base64" if cte == "7bit" else cte))
    else:
        root = plain
    attach = entry.get("attach")
    if attach:
        mixed = MIMEMultipart("mixed", boundary=f"----=_NextPart_{n}_{rnd.getrandbits(40):x}")
        del root["MIME-Version"]
        mixed.attach(root)
        for name in attach if isinstance(attach, list) else [attach]:
            if name.lower().endswith((".jpg", ".jpeg")):
                part = MIMEImage(JPEG, "jpeg")
            elif name.lower().endswith(".pdf"):
                part = MIMEApplication(PDF, "pdf")
            else:
                part = MIMEApplication(b"attachment\n", "octet-stream")
            disp = name if name.isascii() else ("utf-8", "", name)
            part.add_header("Content-Disposition", "attachment", filename=disp)
            del part["MIME-Version"]  # the email.mime classes add one to every part; clients do not
            mixed.attach(part)
        root = mixed
    name, _, addr = entry["from"].rpartition(" ")
    addr = addr.strip("<>")
    name = name.strip().strip('"')
    headers = {
        "From": f"{encoded_header(name, charset, rnd.random() < 0.3)} <{addr}>" if name else addr,
        "To": entry.get("to", MAILBOX),
        "Subject": encoded_header(subject, charset, q=(client == "outlook" and n % 2 == 0)),
        "Date": format_datetime(date),
        "Message-ID": message_id(client, n, addr, rnd),
        **extra_headers,
        "MIME-Version": "1.0",
    }
    if client in MAILERS:
        headers["X-Mailer"] = MAILERS[client]
    if client == "qq":
        headers["X-QQ-MID"] = f"xmsgzb{rnd.getrandbits(48):x}"
    if client == "163":
        headers["X-Originating-IP"] = f"[198.51.100.{n % 250}]"
    if client == "outlook":
        headers["Thread-Index"] = base64.b64encode(rnd.randbytes(22)).decode()
        headers["Content-Language"] = {"hans": "zh-cn", "hant": "zh-tw", "en": "en-us"}[lang]
    for key, value in entry.get("headers", {}).items():
        headers[key] = value
    out = Message(policy=compat32)
    for key, value in headers.items():
        out[key] = value
    for key, value in root.items():
        if key.lower() != "mime-version":
            out[key] = value
    out.set_payload(root.get_payload())
    if root.is_multipart():
        out.set_boundary(root.get_boundary())
    return f"{n:04d}.eml", out.as_bytes(policy=compat32.clone(linesep="\r\n"))


def message_id(client: str, n: int, addr: str, rnd: random.Random) -> str:
    domain = addr.rpartition("@")[2]
    token = f"{rnd.getrandbits(64):016x}"
    return {
        "qq": f"<tencent_{token.upper()}{n:04d}@qq.example.cn>",
        "163": f"<{rnd.getrandbits(32):x}.{n}.{token[:8]}@163.example.cn>",
        "foxmail": f"<2026110{n % 9 + 1}{n:06d}{rnd.getrandbits(20)}@{domain}>",
        "outlook": f"<TY{token.upper()}{n:04d}@TYZPR06MB.apcprd06.prod.outlook.example>",
        "gmail": f"<CA+{base64.b64encode(rnd.randbytes(30)).decode().replace('/', '_')}@mail.gmail.example>",
        "iphone": f"<{token[:8].upper()}-{n:04d}-4E2A-9D1C-{token[8:].upper()}@{domain}>",
        "plain": f"<{n}.{token}@{domain}>",
    }[client]


def label_line(entry: dict) -> str:
    dept, kind, prio = str(entry["label"]).split()
    if dept not in DEPARTMENTS or kind not in KINDS or prio not in PRIORITIES:
        raise ValueError(f"{entry['n']}: bad label {entry['label']!r}")
    note = entry.get("note")
    fields = f"department: {dept}, kind: {kind}, priority: {prio}"
    if note:
        fields += ', note: "' + str(note).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{int(entry['n']):04d}.eml: {{{fields}}}"


def load(source: Path = HERE / "source") -> list[dict]:
    yaml = YAML(typ="safe")  # the C loader when it is there
    entries: list[dict] = []
    for path in sorted(source.glob("*.yaml")):
        entries.extend(yaml.load(path.read_text(encoding="utf-8")) or [])
    numbers = [int(e["n"]) for e in entries]
    if len(numbers) != len(set(numbers)):
        raise ValueError("duplicate mail numbers: " + str(sorted({x for x in numbers if numbers.count(x) > 1})))
    return sorted(entries, key=lambda e: int(e["n"]))


def write(out: Path, source: Path = HERE / "source") -> int:
    """Write every mail and ``labels.yaml`` into ``out``, removing ``.eml`` files no source names."""
    entries = load(source)
    keep = set()
    for entry in entries:
        name, data = build(entry)
        (out / name).write_bytes(data)
        keep.add(name)
    for stale in out.glob("*.eml"):
        if stale.name not in keep:
            stale.unlink()
    header = ("# Hand-written labels for the routing evaluation set (generated by build.py from source/*.yaml;\n"
              "# edit the source, not this file).  file: {department, kind, priority, note?}\n")
    (out / "labels.yaml").write_text(header + "\n".join(label_line(e) for e in entries) + "\n", encoding="utf-8")
    return len(entries)


def main(argv: list[str]) -> int:
    source = Path(argv[argv.index("--source") + 1]) if "--source" in argv else HERE / "source"
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else source.resolve().parent
    count = write(out, source)
    print(f"{count} mails written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
