"""``feedbackd demo``: the whole loop on a local demo mail stack, with sample feedback.

Starts a throwaway Dovecot and an SMTP sink, delivers a handful of Chinese and English mails
(GBK, HTML-only, an attachment, a reply, an out-of-office), runs ``run --once`` twice over a
SQLite database, and prints the cases, one case in full, and the acknowledgements as received.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

from feedbackd import config as config_mod
from feedbackd.devstack import Dovecot, SmtpSink, dovecot_binary, local_config, write_config


def _project_root() -> Path:
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "rules").is_dir() and (candidate / "templates").is_dir():
            return candidate
    raise SystemExit("feedbackd demo: run it from the project directory (it needs rules/ and templates/)")


def _mail(sender: str, name: str, subject: str, body: str, *, charset: str = "utf-8",
          html: bool = False, extra: dict[str, str] | None = None) -> bytes:
    """A message as QQ Mail / 163 / Foxmail send it: encoded words and a base64 body."""
    ctype = "html" if html else "plain"
    head = [
        f"From: {Header(name, charset).encode()} <{sender}>",
        "To: feedback@city.example",
        f"Subject: {Header(subject, charset).encode()}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: {make_msgid(domain=sender.rpartition('@')[2])}",
        "MIME-Version: 1.0",
        f"Content-Type: text/{ctype}; charset={charset}",
        "Content-Transfer-Encoding: base64",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    payload = base64.encodebytes(body.encode(charset)).replace(b"\n", b"\r\n")
    return "\r\n".join(head).encode("ascii") + b"\r\n\r\n" + payload


def _with_photo() -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "王五 <wang.wu@gmail.example>"
    msg["To"] = "feedback@city.example"
    msg["Subject"] = "买到的电饭煲有质量问题，用了两天就坏了"
    msg["Message-ID"] = make_msgid(domain="gmail.example")
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content("上周在贵商城买的电饭煲，用了两天就不加热了，附上照片，希望退换。")
    msg.add_attachment(b"\xff\xd8\xff\xe0demo-jpeg" * 50, maintype="image", subtype="jpeg",
                       filename="故障照片.jpg")
    return msg.as_bytes()


def sample_mails() -> Iterator[bytes]:
    yield _mail("zhang.san@qq.example", "张三", "紧急：小区燃气管道有泄漏气味",
                "您好，我们小区3号楼一单元楼道里有很浓的燃气味，怀疑管道泄漏，请尽快派人处理！")
    yield _mail("qian.qi@163.example", "钱七", "支付失败但是钱被扣了",
                "我昨天在网上缴纳水费，页面显示支付失败，可是银行卡已经扣款 86 元，请帮忙查一下。",
                charset="gbk")
    yield _mail("li.si@126.example", "李四", "快递一直没送到（配送延迟）",
                "<html><body><div>订单号 20261120-0387，<b>已经十天</b>还没有送到。</div>"
                "<div>物流信息一直不更新，请帮忙催一下。</div></body></html>", html=True, charset="gb18030")
    yield _with_photo()
    yield _mail("john.smith@outlook.example", "John Smith", "Suggestion: more benches in Riverside Park",
                "Hello, I walk in Riverside Park every day. A few more benches along the river path would "
                "help older visitors a lot. Thank you for the new lights last month!")
    yield _mail("zhao.liu@foxmail.example", "赵六", "表扬：窗口工作人员服务态度很好",
                "上周五在政务服务中心办理业务，3号窗口的工作人员非常耐心，特此表扬。")


def run_demo(keep: bool = False) -> int:
    from feedbackd.cli import main as cli_main
    from feedbackd.service import Daemon

    if dovecot_binary() is None:
        print("feedbackd demo needs Dovecot: apt-get install dovecot-imapd (scripts/bootstrap does it)")
        return 1
    root = _project_root()
    work = Path(tempfile.mkdtemp(prefix="feedbackd-demo-"))
    with Dovecot() as imap, SmtpSink() as sink:
        cfg = work / "feedbackd.toml"
        write_config(cfg, local_config(imap=imap, smtp=sink, db_url=f"sqlite:///{work / 'feedbackd.db'}",
                                       rules=root / "rules", templates=root / "templates", data=work / "data"))
        settings = config_mod.load(cfg)
        print(f"== demo mail stack: Dovecot on 127.0.0.1:{imap.port}, SMTP sink on 127.0.0.1:{sink.port}")
        print(f"== configuration: {cfg}\n")
        mails = list(sample_mails())
        imap.append(*mails)
        print(f"== delivered {len(mails)} feedback mails by IMAP APPEND; running feedbackd run --once")
        daemon = Daemon(settings)
        intake, sent = daemon.run_once()
        print(f"   processed {intake.processed}: {intake.actions}; acknowledgements sent: {sent.sent}\n")

        acks = sink.wait_for(sent.sent, timeout=10)
        first_ack = next((a for a in acks if a.rcpt_tos == ["zhang.san@qq.example"]), None)
        followups: list[bytes] = []
        if first_ack is not None:
            ack_id = first_ack.message["Message-ID"]
            number = first_ack.message["X-Feedbackd-Case"]
            followups.append(_mail("zhang.san@qq.example", "张三", f"回复：[{number}] 燃气泄漏",
                                   "补充：物业说已经关了总阀，但气味还在，请尽快来人。",
                                   extra={"In-Reply-To": ack_id, "References": ack_id}))
            followups.append(_mail("zhang.san@qq.example", "张三", "自动回复：我正在出差",
                                   "您好，我这几天在外地，回来后回复您。",
                                   extra={"Auto-Submitted": "auto-replied", "In-Reply-To": ack_id}))
        imap.append(*followups)
        print("== the citizen replies to the acknowledgement, and an out-of-office arrives; run again")
        intake, sent = daemon.run_once()
        print(f"   processed {intake.processed}: {intake.actions}; acknowledgements sent: {sent.sent}\n")
        daemon.engine.dispose()

        print("== feedbackd cases list")
        cli_main(["--config", str(cfg), "cases", "list"])
        if first_ack is not None:
            print(f"\n== feedbackd cases show {first_ack.message['X-Feedbackd-Case']}")
            cli_main(["--config", str(cfg), "cases", "show", str(first_ack.message["X-Feedbackd-Case"])])
        print(f"\n== the SMTP sink received {len(sink.received)} acknowledgement(s):")
        for ack in sink.received:
            print(f"\n-- to {', '.join(ack.rcpt_tos)}: {ack.message['Subject']}")
        body = acks[0].message.get_body(("plain",)) if acks else None
        if body is not None:
            print("\n== the first acknowledgement in full (text part):\n")
            print(body.get_content())
    if keep:
        print(f"== kept {work} (database, raw messages, config)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0
