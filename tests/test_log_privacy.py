"""The logs carry no personal data: no message text and no full address at INFO and above.

One end-to-end flow (citizens writing in Chinese and English, an attachment, acknowledgements, a
staff answer through the staff loop, a quarantined message, an out-of-office, the timed jobs) runs
with the logs captured: in this process at INFO (caplog), from a ``feedbackd -v run`` daemon (the
operators' level) and from a ``feedbackd -vv run --once`` (DEBUG), whose non-DEBUG lines must be
clean too.  Every body carries a phrase found nowhere else, so any leak of message text is found.
"""

from __future__ import annotations

import logging
import re

import pytest

import mails
from conftest import Env, run_once
from faultkit import DaemonChild
from test_faults import READY
from test_staff_loop import SECRET, staff_reply, to

CITIZENS = {
    "zhang.lei739@qq.example": "东门第七三九号路灯彻夜闪烁",
    "wang.fang@163.example": "菜市场排水沟堵塞散发恶臭已经两周",
    "john.smith.privacy@outlook.example": "the unique lamppost phrase purple giraffe",
    "li.na@gmail.example": "附件里是工地夜间施工的噪声记录表格",
}
STAFF_ANSWER = "维修班组明天上午处理猕猴桃路段"
QUARANTINED = ("quarantine.only@qq.example", "这封邮件太大了所以被隔离青花瓷")
OUT_OF_OFFICE_SENDER = "zhang.lei739@qq.example"
SECRETS = [*CITIZENS, *CITIZENS.values(), STAFF_ANSWER, *QUARANTINED, "例子.中国"]


def citizen_mail(sender: str, phrase: str) -> bytes:
    if sender.endswith("outlook.example"):
        return mails.english(sender=sender, body=f"Hello, {phrase}. Please fix it.")
    if sender.startswith("li.na"):
        return mails.with_attachment(sender=sender, name="李娜", body=f"{phrase}。",
                                     data=f"{phrase}\n".encode() * 50)
    return mails.plain(sender=sender, name="市民", body=f"您好，{phrase}，请尽快处理。")


def leaks(text: str) -> list[str]:
    found = [s for s in SECRETS if s in text]
    # an address with its local part shortened (zh***@qq.example) is fine; the whole one is not
    found += re.findall(r"[\w.+-]{4,}@(?:qq|163|gmail|outlook)\.example", text)
    return found


def not_debug(output: str) -> str:
    """The lines of a log at INFO, WARNING, ERROR or CRITICAL (with their continuation lines)."""
    kept, keep = [], False
    for line in output.splitlines():
        level = re.match(r"\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", line)
        if level:
            keep = level.group(1) != "DEBUG"
        if keep:
            kept.append(line)
    return "\n".join(kept)


@pytest.fixture
def privacy_env(env: Env) -> Env:
    env.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\n[intake]\nmessage_max_size = "40KB"\n')
    return env


def _flow(env: Env) -> None:
    """Citizens write, one message is quarantined, staff answer one case, an out-of-office comes back."""
    env.mailbox.append(*(citizen_mail(s, p) for s, p in CITIZENS.items()),
                       mails.plain(sender=QUARANTINED[0], body=QUARANTINED[1] * 2000))
    actions = run_once(env)
    assert actions == {"new-case": 4, "quarantined": 1}, actions
    notices = to(env, "desk@city.example")
    assert notices, [m.message["Subject"] for m in env.sink.received]
    first = notices[0]
    ack = next(m for m in env.sink.received if m.rcpt_tos == [OUT_OF_OFFICE_SENDER])
    env.mailbox.append(staff_reply(first, STAFF_ANSWER),
                       mails.out_of_office(to_message_id=ack.message["Message-ID"].strip("<>"),
                                           sender=OUT_OF_OFFICE_SENDER))
    before = len(env.sink.received)
    assert run_once(env) == {"staff-reply": 1, "recorded": 1}  # the out-of-office is recorded on its case
    relayed = [m for m in env.sink.received[before:] if m.rcpt_tos != ["desk@city.example"]]
    assert relayed, "the staff answer did not reach the citizen"


def test_info_logs_of_a_whole_flow_hold_no_message_text_and_no_address(privacy_env: Env, caplog) -> None:  # type: ignore[no-untyped-def]
    env = privacy_env
    with caplog.at_level(logging.INFO):
        _flow(env)
    jobs = env.cli("-v", "jobs", "run")
    assert jobs.returncode == 0, jobs.stderr
    # everything this process logged but the test's own SMTP sink (aiosmtpd logs as "mail.log")
    captured = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
                         if r.name != "mail.log")
    assert "uid=" in captured and "new-case" in captured  # the logs were captured at all
    assert leaks(captured) == [], captured
    assert leaks(jobs.stdout + jobs.stderr) == [], jobs.stderr


def test_the_daemons_operator_log_holds_no_message_text_and_no_address(privacy_env: Env) -> None:
    env = privacy_env
    daemon = DaemonChild(env.config_path)  # ``feedbackd -v run``: what an operator reads
    try:
        mark = daemon.wait_for_line(READY)
        env.mailbox.append(*(citizen_mail(s, p) for s, p in CITIZENS.items()),
                           mails.plain(sender=QUARANTINED[0], body=QUARANTINED[1] * 2000))
        daemon.wait_for_line("quarantine", after=mark)
        citizens = {*CITIZENS, QUARANTINED[0]}  # four acknowledgements and the quarantine notice
        assert env.sink.wait_until(lambda got: citizens <= {r for m in got for r in m.rcpt_tos}, timeout=30), \
            daemon.output[-3000:]
    finally:
        status = daemon.stop()
    assert status == 0, daemon.output[-3000:]
    assert "new-case" in daemon.output
    assert leaks(daemon.output) == [], daemon.output


def test_at_debug_message_text_stays_in_debug_lines(privacy_env: Env) -> None:
    env = privacy_env
    env.mailbox.append(*(citizen_mail(s, p) for s, p in CITIZENS.items()),
                       mails.plain(sender=QUARANTINED[0], body=QUARANTINED[1] * 2000))
    result = env.cli("-vv", "run", "--once")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert " DEBUG " in output  # the debug level was on
    above = not_debug(output)
    assert "new-case" in above
    assert [s for s in leaks(above) if s not in CITIZENS] == [], above  # no text at INFO and above
    assert leaks(above) == [], above  # nor addresses


@pytest.mark.parametrize("reply", ["550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
                                   "451 4.2.0 <{rcpt}>... mailbox {rcpt} is busy, try later"])
def test_an_smtp_refusal_that_repeats_the_address_is_logged_without_it(env: Env, reply: str, caplog) -> None:  # type: ignore[no-untyped-def]
    rcpt = "refused.citizen@qq.example"
    env.sink.fail_with = reply.format(rcpt=rcpt)  # as Postfix and others word it
    env.mailbox.append(mails.plain(sender=rcpt))
    with caplog.at_level(logging.INFO):
        run_once(env)
    output = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.name != "mail.log")
    assert "outbox" in output and "re***@qq.example" in output  # the refusal is logged, masked
    assert rcpt not in output, output
