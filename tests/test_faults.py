"""Crashes, outages and the long-running daemon: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

import mails
from conftest import Env
from faultkit import AutoResponder, DaemonChild, RestartableDovecot, append_many, deliver, fill, small_disk

pytestmark = pytest.mark.faults  # the whole module is the fault suite: pytest -m faults

def cases(env: Env) -> list[dict]:
    result = env.cli("cases", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def outbox(env: Env, *flags: str) -> list[dict]:
    result = env.cli("outbox", "list", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_sigkill_loses_nothing_and_duplicates_nothing(env_db: Env, point: str) -> None:
    env = env_db
    env.mailbox.append(mails.plain(), mails.english(), mails.html_only())
    killed = env.cli("run", "--once", env={"FEEDBACKD_FAULT": point})
    assert killed.returncode == -signal.SIGKILL
    if point == "before-commit":
        assert env.sink.received == []  # nothing committed, so nothing may be sent
    after_crash = cases(env)
    assert len(after_crash) == (0 if point == "before-commit" else 3)  # one transaction for the batch
    again = env.cli("run", "--once")
    assert again.returncode == 0, again.stderr
    assert len(cases(env)) == 3
    acks = env.sink.received  # complete: run --once has returned, and the sink records before it answers 250
    assert sorted(r for a in env.sink.received for r in a.rcpt_tos) == sorted(
        ["zhang.san@qq.example", "john.smith@outlook.example", "li.si@163.example"])
    assert len(acks) == 3


def test_an_smtp_outage_delays_mail_but_never_loses_or_duplicates_it(env_db: Env) -> None:
    env = env_db
    env.sink.fail_with = "451 4.3.0 try again later"
    env.mailbox.append(mails.plain(), mails.english())
    assert env.cli("run", "--once").returncode == 0
    waiting = outbox(env)
    assert [w["status"] for w in waiting] == ["pending", "pending"]
    assert all("451" in w["last_error"] and w["attempts"] == 1 for w in waiting)
    listing = env.cli("outbox", "list")
    assert "pending" in listing.stdout and "451" in listing.stdout
    env.sink.fail_with = None
    _wait_until_due(waiting)  # the configured first retry delay is 1 s
    assert env.cli("run", "--once").returncode == 0
    assert len(env.sink.received) == 2
    assert outbox(env) == []
    assert [s["status"] for s in outbox(env, "--all")] == ["sent", "sent"]


def test_a_permanent_refusal_fails_at_once_and_is_shown(env: Env) -> None:
    env.sink.fail_with = "550 5.1.1 no such user"
    env.mailbox.append(mails.plain())
    assert env.cli("run", "--once").returncode == 0
    (item,) = outbox(env)
    assert item["status"] == "failed" and "550" in item["last_error"]


def test_smtp_server_down_is_retried(env: Env) -> None:
    port = env.sink.port
    env.sink.stop()
    env.mailbox.append(mails.plain())
    assert env.cli("run", "--once").returncode == 0
    (item,) = outbox(env)
    assert item["status"] == "pending" and item["last_error"]
    from feedbackd.devstack import SmtpSink

    env.sink = SmtpSink(port=port).start()
    try:
        _wait_until_due([item])
        assert env.cli("run", "--once").returncode == 0
        assert len(env.sink.received) == 1
    finally:
        env.sink.stop()


def _wait_until_due(rows: list[dict]) -> None:
    """Sleep until the rows' retry time has come: a wait on the clock the outbox itself reads."""
    due = max(datetime.fromisoformat(row["next_attempt_at"]) for row in rows)
    time.sleep(max(0.0, (due - datetime.now(due.tzinfo)).total_seconds()) + 0.05)


READY = "connected to"  # logged once the daemon has its database and its IMAP connection


def test_the_daemon_answers_over_idle_survives_a_dropped_connection_and_stops_on_sigterm(env: Env) -> None:
    daemon = DaemonChild(env.config_path)
    try:
        daemon.wait_for_line(READY)
        started = time.monotonic()
        env.mailbox.append(mails.plain())
        assert len(env.sink.wait_for(1, timeout=15)) == 1
        first_latency = time.monotonic() - started
        mark = daemon.mark()
        env.mailbox.kick()  # the server drops the daemon's connection in the middle of IDLE
        mark = daemon.wait_for_line("reconnecting", after=mark)
        env.mailbox.append(mails.english())  # arrives while the daemon is away
        mark = daemon.wait_for_line(READY, after=mark)
        assert len(env.sink.wait_for(2, timeout=30)) == 2
        env.mailbox.append(mails.html_only())  # and IDLE works again after the reconnection
        assert len(env.sink.wait_for(3, timeout=30)) == 3
    finally:
        status = daemon.stop(timeout=20)
    output = daemon.output
    assert status == 0, output
    assert "stopped" in output
    assert first_latency < 10
    # INFO logs carry no addresses or message text
    assert "zhang.san@qq.example" not in output and "路灯" not in output
    assert len(cases(env)) == 3


def test_the_daemon_polls_when_idle_is_off(env: Env) -> None:
    env.reconfigure(extra="")
    text = env.config_path.read_text().replace('folder = "INBOX"', 'folder = "INBOX"\nidle = false')
    env.config_path.write_text(text)
    daemon = DaemonChild(env.config_path)
    try:
        daemon.wait_for_line("IDLE off")
        env.mailbox.append(mails.plain())
        assert len(env.sink.wait_for(1, timeout=15)) == 1
    finally:
        status = daemon.stop(timeout=20)
    assert status == 0, daemon.output


def test_two_daemons_sharing_one_postgresql_database_file_each_message_once(
        mailbox, smtp_sink, pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import _env

    env = _env(mailbox, smtp_sink, pg_url, tmp_path)
    env.mailbox.append(*[mails.plain(sender=f"c{i}@qq.example", subject=f"问题 {i}") for i in range(60)])
    first, second = (subprocess.Popen([sys.executable, "-m", "feedbackd", "run", "--once"],
                                      env={**os.environ, "FEEDBACKD_CONFIG": str(env.config_path)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    for proc in (first, second):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert len(cases(env)) == 60
    acks = env.sink.received  # complete: both have returned, and the sink records before it answers 250
    assert sorted(r for a in env.sink.received for r in a.rcpt_tos) == sorted(f"c{i}@qq.example" for i in range(60))
    assert len(acks) == 60


def test_the_daemon_waits_out_a_database_outage(mailbox, smtp_sink, pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    from conftest import _env

    env = _env(mailbox, smtp_sink, pg_url, tmp_path)
    name = pg_url.rsplit("/", 1)[1]

    def admin(sql: str) -> None:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(sql)

    daemon = DaemonChild(env.config_path)
    try:
        # Not a fixed sleep: a daemon slower to start than that (a cold start on a busy machine) met
        # the outage before it had made its tables, and died.
        mark = daemon.wait_for_line(READY)
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        env.mailbox.append(mails.plain())
        daemon.wait_for_line("feedbackd.service: database unavailable", after=mark)  # intake could not record it
        assert env.sink.received == []  # nothing can be recorded, so nothing is answered
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert len(env.sink.wait_for(1, timeout=30)) == 1, daemon.output  # the mail waited on the server
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        status = daemon.stop()
    output = daemon.output
    assert status == 0, output
    assert "database unavailable" in output
    assert "zhang.san@qq.example" not in output  # the errors carry no personal data
    assert len(cases(env)) == 1


def test_the_daemon_waits_for_a_database_that_is_away_at_start_up(mailbox, smtp_sink, pg_url: str,
                                                                  tmp_path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    from conftest import _env

    env = _env(mailbox, smtp_sink, pg_url, tmp_path)
    name = pg_url.rsplit("/", 1)[1]

    def admin(sql: str) -> None:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(sql)

    once = env.cli("run", "--once", env={})  # the database is there: made and migrated
    assert once.returncode == 0, once.stderr
    admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        refused = env.cli("run", "--once")
        assert refused.returncode == 1 and "database is unavailable" in refused.stderr
        assert "Traceback" not in refused.stderr
        env.mailbox.append(mails.plain())
        daemon = DaemonChild(env.config_path)
        try:
            daemon.wait_for_line("database unavailable at start-up")
            admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert len(env.sink.wait_for(1, timeout=30)) == 1, daemon.output
        finally:
            status = daemon.stop()
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert status == 0, daemon.output
    assert len(cases(env)) == 1


class _AwayDatabaseOutbox:
    """Stands in for the outbox of a daemon whose database is away: every flush raises."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.called = threading.Condition()

    def flush(self) -> None:
        from sqlalchemy.exc import OperationalError

        with self.called:
            self.calls.append(time.monotonic())
            self.called.notify_all()
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("the database is away"))

    def wait_calls(self, n: int, timeout: float) -> bool:
        with self.called:
            return self.called.wait_for(lambda: len(self.calls) >= n, timeout)

    def close(self) -> None:
        pass


def _sender_with_away_database(env: Env):  # type: ignore[no-untyped-def]
    from feedbackd import service

    daemon = service.Daemon(env.settings)
    away = _AwayDatabaseOutbox()
    daemon.outbox = away  # type: ignore[assignment]
    until = threading.Event()
    sender = threading.Thread(target=daemon._outbox_loop, args=(until, service.FlushReport()), daemon=True)
    sender.start()

    def stop() -> None:
        until.set()
        daemon.outbox_wake.set()
        sender.join(timeout=5)
        daemon.engine.dispose()

    return daemon, away, stop


def test_the_sender_retries_an_away_database_on_a_short_growing_delay(env: Env) -> None:
    """A database outage is not an SMTP back-off (nor the 30 s an unexpected error waits)."""
    _, away, stop = _sender_with_away_database(env)
    try:
        assert away.wait_calls(3, timeout=10)  # after 0.5 s, then 1 s
        assert away.calls[2] - away.calls[1] > away.calls[1] - away.calls[0]
    finally:
        stop()


def test_any_wake_up_cuts_the_senders_database_delay_short(env: Env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from feedbackd import service

    monkeypatch.setattr(service, "DB_RETRY_FIRST", 600.0)
    daemon, away, stop = _sender_with_away_database(env)
    try:
        assert away.wait_calls(1, timeout=10)
        daemon.outbox_wake.set()  # intake queued mail, or found the database back
        assert away.wait_calls(2, timeout=10)  # not 600 s later
    finally:
        stop()


# -- issue 13: the IMAP server, the folder, the disk, a flood and a mail loop ---------------------


@pytest.fixture
def own_dovecot() -> Iterator[RestartableDovecot]:
    """A Dovecot of this test's own, which it may stop and start again."""
    server = RestartableDovecot(users={"feedback": "secret"})
    server.start()
    yield server
    server.stop()


def _own_env(server: RestartableDovecot, sink, tmp_path, extra: str = "") -> Env:  # type: ignore[no-untyped-def]
    from conftest import Mailbox, _env

    box = Mailbox(server, "feedback", "secret")
    box.client().logout()
    env = _env(box, sink, f"sqlite:///{tmp_path / 'feedbackd.db'}", tmp_path)
    if extra:
        env.reconfigure(extra=extra)
    return env


def _requesters(env: Env) -> list[str]:
    """The cases' requesters straight from the database (the CLI's listing of thousands is slow)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(env.db_url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text('SELECT requester FROM "case"'))]
    finally:
        engine.dispose()


def _rows(env: Env, table: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(env.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
    finally:
        engine.dispose()


def _each_once(env: Env, senders: list[str], requesters: list[str] | None = None) -> None:
    """Every sender has exactly one case and exactly one mail in the sink."""
    if requesters is None:
        requesters = [c["requester"] for c in cases(env)]
    assert sorted(requesters) == sorted(senders)
    rcpts = [r for mail in env.sink.received for r in mail.rcpt_tos]
    assert sorted(rcpts) == sorted(senders)


BACKLOG = 300


def test_the_imap_server_restarted_mid_fetch_loses_and_duplicates_nothing(
        own_dovecot: RestartableDovecot, smtp_sink, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = _own_env(own_dovecot, smtp_sink, tmp_path)
    text = env.config_path.read_text().replace('folder = "INBOX"', 'folder = "INBOX"\nbatch_size = 10')
    env.config_path.write_text(text)  # many small UID FETCHes, so the restart falls between two of them
    senders = [f"backlog{i}@qq.example" for i in range(BACKLOG)]
    append_many(own_dovecot, "feedback", [mails.plain(sender=s, subject=f"积压 {i}") for i, s in enumerate(senders)])
    daemon = DaemonChild(env.config_path)
    try:
        mark = daemon.wait_for_line(READY)
        daemon.wait_for_line(" new-case ", after=mark)  # the first group is committed; the fetch goes on
        own_dovecot.halt()
        mark = daemon.wait_for_line("IMAP connection failed or lost", after=mark)
        own_dovecot.resume()
        daemon.wait_for_line(READY, after=mark)
        assert env.sink.wait_until(lambda got: len(got) >= BACKLOG, timeout=60), daemon.output[-3000:]
    finally:
        status = daemon.stop()
    assert status == 0, daemon.output[-3000:]
    before_restart = daemon.output.split("IMAP connection failed or lost", 1)[0]
    assert 0 < before_restart.count(" new-case ") < BACKLOG  # the restart did fall inside the backlog
    _each_once(env, senders, requesters=_requesters(env))
    # Every message is still on the server.  (Not every one flagged: keywords set just before the
    # server was killed can be lost with its unsaved index; the flag is a courtesy, the cursor counts.)
    client = own_dovecot.client("feedback")
    try:
        client.select_folder("INBOX", readonly=True)
        assert len(client.search(["ALL"])) == BACKLOG
    finally:
        client.logout()


def _uidvalidity(server, user: str, folder: str) -> int:  # type: ignore[no-untyped-def]
    client = server.client(user)
    try:
        return int(client.select_folder(folder, readonly=True)[b"UIDVALIDITY"])
    finally:
        client.logout()


def test_a_changed_uidvalidity_is_noticed_and_neither_skips_nor_duplicates(env: Env) -> None:
    """The folder is deleted and made again: UIDs start at 1 under a new UIDVALIDITY, below the cursor."""
    server, user = env.mailbox.server, env.mailbox.user
    client = server.client(user)
    client.create_folder("Feedback")
    client.logout()
    env.config_path.write_text(env.config_path.read_text().replace('folder = "INBOX"', 'folder = "Feedback"'))
    old = [mails.plain(sender=f"old{i}@qq.example", subject=f"旧 {i}") for i in range(3)]
    env.mailbox.append(*old, folder="Feedback")
    first = env.cli("run", "--once")
    assert first.returncode == 0, first.stderr
    before = _uidvalidity(server, user, "Feedback")

    client = server.client(user)
    client.delete_folder("Feedback")
    client.create_folder("Feedback")
    client.logout()
    if _uidvalidity(server, user, "Feedback") == before:  # made within the same second: force a new one
        subprocess.run(["doveadm", "-c", str(server.conf), "mailbox", "update", "-u", user, "--uid-validity",
                        str(before + 1), "Feedback"], check=True, capture_output=True)
    assert _uidvalidity(server, user, "Feedback") != before
    new = [mails.plain(sender=f"new{i}@qq.example", subject=f"新 {i}") for i in range(2)]
    # UIDs 1..5 now, all at or below the old cursor (3) but the last two
    env.mailbox.append(new[0], *old, new[1], folder="Feedback")
    second = env.cli("-v", "run", "--once")
    assert second.returncode == 0, second.stderr
    assert "UIDVALIDITY" in second.stderr and "changed" in second.stderr
    assert "2 new-case" in second.stdout and "3 duplicate" in second.stdout
    _each_once(env, [f"old{i}@qq.example" for i in range(3)] + ["new0@qq.example", "new1@qq.example"])


def test_a_full_attachment_disk_leaves_the_mail_on_the_server_until_space_returns(env: Env) -> None:
    photo = bytes(range(256)) * 1024  # 256 KiB, on a 1 MiB disk that is full
    senders = ["photo@qq.example", "after@qq.example"]
    env.mailbox.append(mails.with_attachment(sender=senders[0], data=photo), mails.plain(sender=senders[1]))
    with small_disk(env.tmp / "data", "1m") as data:
        filler = fill(data)
        refused = env.cli("run", "--once")
        assert refused.returncode == 75, refused.stdout + refused.stderr
        assert "no space left" in refused.stderr.lower() and str(data) in refused.stderr
        assert "Traceback" not in refused.stderr
        assert _requesters(env) == [] and env.sink.received == []
        assert _rows(env, "quarantine") == 0  # not the message's fault
        client = env.mailbox.client()
        client.select_folder("INBOX", readonly=True)
        assert client.search(["KEYWORD", "$FeedbackdProcessed"]) == []  # nothing marked done
        client.logout()
        assert [p.name for p in (data).rglob("*") if p.is_file()] == ["filler"]  # no half-written file

        daemon = DaemonChild(env.config_path)
        try:
            mark = daemon.wait_for_line(READY)
            mark = daemon.wait_for_line("no space left", after=mark)
            assert env.sink.received == []
            filler.unlink()  # the admin makes room
            assert env.sink.wait_until(lambda got: len(got) >= 2, timeout=30), daemon.output[-3000:]
        finally:
            status = daemon.stop()
        assert status == 0, daemon.output[-3000:]
        stored = [p for p in (data / "attachments").rglob("*") if p.is_file()]
        assert [p.read_bytes() == photo for p in stored] == [True]
    _each_once(env, senders, requesters=_requesters(env))
    client = env.mailbox.client()
    client.select_folder("INBOX", readonly=True)
    assert len(client.search(["KEYWORD", "$FeedbackdProcessed"])) == 2
    client.logout()


FLOOD = 2000


def test_a_flood_from_many_senders_while_idle_and_the_outbox_keep_working(env: Env) -> None:
    env.reconfigure(extra="[acknowledgement]\nglobal_rate_limit = 0\n")
    daemon = DaemonChild(env.config_path)
    senders = [f"flood{i}@{('qq', '163', 'gmail', 'outlook')[i % 4]}.example" for i in range(FLOOD)]
    try:
        mark = daemon.wait_for_line(READY)
        deliver(env.mailbox.server, env.mailbox.user,
                [mails.plain(sender=s, subject=f"反映 {i}", body=f"第 {i} 条意见。") for i, s in enumerate(senders)])
        mark = daemon.wait_for_line(" new-case ", after=mark)  # IDLE told the daemon; intake is under way
        env.mailbox.append(mails.plain(sender="during@qq.example", subject="洪水中的来信"))  # arrives mid-flood
        daemon.wait_for_line(f"uid={FLOOD // 2} new-case", after=mark)
        assert env.sink.received, "no acknowledgement went out while intake was halfway through the flood"
        assert env.sink.wait_until(lambda got: len(got) >= FLOOD + 1, timeout=60), daemon.output[-3000:]
    finally:
        status = daemon.stop()
    assert status == 0, daemon.output[-3000:]
    _each_once(env, [*senders, "during@qq.example"], requesters=_requesters(env))


@pytest.mark.parametrize(("naive", "threaded"), [(True, True), (True, False), (False, True)],
                         ids=["naive-responder", "naive-unthreaded-responder", "rfc3834-responder"])
def test_a_second_autoresponder_exchanges_a_bounded_number_of_mails_and_stops(env: Env, naive: bool,
                                                                               threaded: bool) -> None:
    from conftest import run_once

    responder = AutoResponder(env.sink, env.mailbox.server, env.mailbox.user, naive=naive, threaded=threaded)
    env.mailbox.append(mails.plain(sender="away@qq.example"))
    rounds = 0
    while rounds < 20:  # bounded: a loop that does not stop fails here, it does not hang
        rounds += 1
        run_once(env)
        if responder.answer_new() == 0:
            break
    ours, theirs = len(env.sink.received), len(responder.sent)
    assert rounds < 20, f"still answering after {rounds} rounds: {ours} sent, {theirs} received"
    assert all(r == ["away@qq.example"] for r in (m.rcpt_tos for m in env.sink.received))
    if threaded:  # its answer joins the case as a reply, and a reply is never acknowledged: 1 each way
        assert (ours, theirs) == (1, 1)
        assert len(cases(env)) == 1
    else:  # nothing ties it to the case: only the per-sender budget (rate_limit 5 an hour) ends it
        assert (ours, theirs) == (5, 5)
        assert len(cases(env)) == 6  # its sixth answer is a case too, without an acknowledgement
