"""A sender that dies mid-batch: its rows are taken over at once on this host, and never left unsaid.

The end-to-end tests kill a real daemon while it sends (FEEDBACKD_FAULT=while-sending, after the
first mail went out and before it is marked sent), against the real Dovecot and SMTP sink, on
SQLite and PostgreSQL.  Delivery is at least once: the mail of the killed window is sent again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

import mails
from conftest import Env
from feedbackd.config import OutboxSettings, SmtpSettings
from feedbackd.holder import Holder
from feedbackd.outbox import EX_TEMPFAIL, Outbox
from feedbackd.store.db import connect, session
from feedbackd.store.models import OutboxItem, utcnow
from feedbackd.store.records import OUTBOX

SMTP = SmtpSettings(host="127.0.0.1", port=25, security="none")
CITIZENS = ["zhang.san@qq.example", "john.smith@outlook.example", "li.si@163.example"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _elsewhere(pid: int = 4242) -> Holder:
    here = Holder.current()
    return Holder("another-host", here.ns, pid, "12345", "feedc0de")


def _hold(engine: Engine, holder: Holder | str, lease: timedelta) -> None:
    """Put every row in 'sending' under ``holder``, its lease ending ``lease`` from now."""
    with engine.begin() as conn:
        conn.execute(update(OUTBOX).values(status="sending", claim=str(holder), lease_until=utcnow() + lease))


# -- who holds a claim ----------------------------------------------------------------------------


def test_a_claim_names_this_process_and_reads_back() -> None:
    me = Holder.current()
    assert Holder.parse(str(me)) == me
    assert me.pid == os.getpid() and me.here() and not me.gone()
    assert Holder.current().token != me.token  # one token per claim


def test_a_holder_that_exited_here_is_gone_at_once() -> None:
    me = Holder.current()
    assert Holder(me.host, me.ns, _dead_pid(), "1", "t").gone()


def test_a_reused_process_id_is_not_the_holder() -> None:
    me = Holder.current()
    assert Holder(me.host, me.ns, me.pid, str(int(me.start) + 1), "t").gone()


def test_a_killed_holder_not_yet_reaped_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = Holder(Holder.current().host, Holder.current().ns, child.pid, "-", "t")
        assert not holder.gone()
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, left as a zombie
        assert holder.gone()
    finally:
        child.kill()
        child.wait()


def test_a_holder_on_another_host_or_of_an_older_version_is_never_judged_gone() -> None:
    assert not _elsewhere(_dead_pid()).here()
    assert not _elsewhere(_dead_pid()).gone()
    assert Holder.parse("3f2a9c0d4e5b6a7f8e9d0c1b2a3f4e5d") is None  # a bare token, as before
    assert Holder.parse("host ns 0 1 t") is None  # pid 0 would name our own process group


# -- claims in the database -----------------------------------------------------------------------


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = connect(db_url)
    with session(engine) as db:
        for i in range(3):
            db.add(OutboxItem(purpose="acknowledgement", message_id=f"m{i}@x", mail_from="f@x",
                              recipient=f"r{i}@x", raw=b"Subject: x\r\n\r\nx"))
        db.commit()
    yield engine
    engine.dispose()


def test_rows_of_a_dead_sender_here_are_claimed_at_once(engine: Engine) -> None:
    box = Outbox(engine, SMTP, OutboxSettings())
    me = Holder.current()
    _hold(engine, Holder(me.host, me.ns, _dead_pid(), "1", "t"), timedelta(minutes=5))
    assert box.backlog().unsent == 3  # claimable now: the next claim takes them, so not stuck
    assert [item.id for item in box.claim()] == [1, 2, 3]  # the lease still runs: taken over all the same
    assert box.backlog().held_here == 3  # now held by this (live) process
    assert box.claim() == []


def test_rows_of_a_live_sender_here_wait_and_do_not_count_as_stuck(engine: Engine) -> None:
    box = Outbox(engine, SMTP, OutboxSettings())
    _hold(engine, Holder.current(), timedelta(minutes=5))
    assert box.claim() == []
    left = box.backlog()
    assert (left.held_here, left.stuck, left.exit_status) == (3, 0, 0)


def test_rows_of_a_sender_elsewhere_wait_for_their_lease(engine: Engine) -> None:
    box = Outbox(engine, SMTP, OutboxSettings())
    _hold(engine, _elsewhere(), timedelta(minutes=5))
    assert box.claim() == []
    left = box.backlog()
    assert (left.held_elsewhere, left.hosts, left.exit_status) == (3, {"another-host"}, EX_TEMPFAIL)
    assert "another-host" in left.problem() and "lease ends" in left.problem()
    assert 290 < (box.next_due() or 0) <= 300  # the daemon looks again when the lease ends, not before
    _hold(engine, _elsewhere(), timedelta(seconds=-1))
    assert len(box.claim()) == 3


# -- end to end: a daemon killed while sending ----------------------------------------------------


def _outbox(env: Env, *flags: str) -> list[dict]:
    result = env.cli("outbox", "list", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _rows(env: Env) -> list[tuple[str, str, object]]:
    engine = connect(env.db_url, create=False)
    try:
        with engine.connect() as conn:
            return [(row[0], row[1], row[2]) for row in
                    conn.execute(select(OUTBOX.c.status, OUTBOX.c.claim, OUTBOX.c.lease_until))]
    finally:
        engine.dispose()


def test_run_once_right_after_a_sender_was_killed_sends_every_row_at_once(env_db: Env) -> None:
    env = env_db
    env.mailbox.append(mails.plain(), mails.english(), mails.html_only())
    daemon = subprocess.Popen([sys.executable, "-m", "feedbackd", "-v", "run"],
                              env={**os.environ, "FEEDBACKD_CONFIG": str(env.config_path),
                                   "FEEDBACKD_FAULT": "while-sending"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == -signal.SIGKILL, output
    killed_window = [r for mail in env.sink.received for r in mail.rcpt_tos]
    assert len(killed_window) == 1, output  # the first mail went out; the daemon died before marking it sent
    # Its claim holds the rows it had taken (one, or all three if intake had committed them all by
    # then), under a lease that still runs for more than a minute.
    held = [(claim, until) for status, claim, until in _rows(env) if status == "sending"]
    assert held and {status for status, _, _ in _rows(env)} <= {"sending", "pending"}, output
    assert all(Holder.parse(claim).pid == daemon.pid for claim, _ in held)  # type: ignore[union-attr]
    assert all(until > utcnow() + timedelta(seconds=60) for _, until in held)  # type: ignore[operator]

    again = env.cli("run", "--once")

    assert again.returncode == 0, again.stderr
    first_line = again.stdout.splitlines()[0]
    assert first_line.startswith("processed 0 message(s): nothing new; sent 3, retrying 0, failed 0; ")
    assert first_line.endswith("s after start-up; outbox: nothing left to send")
    assert f"taking over {len(held)} mail(s) from sender pid {daemon.pid}" in again.stderr
    received = Counter(r for mail in env.sink.received for r in mail.rcpt_tos)
    assert received == Counter(CITIZENS) + Counter(killed_window)  # at least once: only the killed window twice
    assert [row["status"] for row in _outbox(env, "--all")] == ["sent"] * 3


def test_run_once_says_what_a_sender_on_another_host_holds_and_exits_75(env_db: Env) -> None:
    env = env_db
    env.sink.fail_with = "451 4.3.0 try again later"
    env.mailbox.append(mails.plain(), mails.english())
    waiting = env.cli("run", "--once")
    assert waiting.returncode == 0, waiting.stderr  # only a scheduled retry is left: nothing to say
    assert "; outbox: 2 waiting for a retry from " in waiting.stdout
    env.sink.fail_with = None
    engine = connect(env.db_url, create=False)
    try:
        _hold(engine, _elsewhere(), timedelta(minutes=5))
        held = env.cli("run", "--once")
        assert held.returncode == EX_TEMPFAIL, held.stderr
        assert env.sink.received == []  # it may still be sending them: wait for its lease
        assert held.stdout.startswith("processed 0 message(s): nothing new; sent 0, retrying 0, failed 0; ")
        assert "; outbox: 2 held by a sender on another-host until " in held.stdout
        assert "2 mail(s) left unsent in the outbox" in held.stderr and "exit status 75" in held.stderr
        _hold(engine, _elsewhere(), timedelta(seconds=-1))  # its lease ran out
    finally:
        engine.dispose()
    taken = env.cli("run", "--once")
    assert taken.returncode == 0, taken.stderr
    assert "sent 2, retrying 0, failed 0" in taken.stdout
    assert sorted(r for mail in env.sink.received for r in mail.rcpt_tos) == sorted(CITIZENS[:2])


def test_rows_queued_a_moment_ago_are_not_stuck_but_rows_overdue_are(engine: Engine) -> None:
    box = Outbox(engine, SMTP, OutboxSettings())
    assert (box.backlog().unsent, box.backlog().stuck) == (3, 0)  # another process just queued them
    with engine.begin() as conn:
        conn.execute(update(OUTBOX).values(next_attempt_at=utcnow() - timedelta(minutes=2)))
    left = box.backlog()
    assert (left.unsent, left.overdue, left.exit_status) == (3, 3, EX_TEMPFAIL)
    assert left.problem().startswith("3 mail(s) left unsent in the outbox: 3 due for over 60 s")
