"""Crashes, outages and the long-running daemon: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import mails
from conftest import Env


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
    acks = env.sink.wait_for(3)
    time.sleep(0.3)
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
    time.sleep(1.2)  # the configured first retry delay is 1 s
    assert env.cli("run", "--once").returncode == 0
    assert len(env.sink.wait_for(2)) == 2
    time.sleep(0.3)
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
        time.sleep(1.2)
        assert env.cli("run", "--once").returncode == 0
        assert len(env.sink.wait_for(1)) == 1
    finally:
        env.sink.stop()


def _start_daemon(env: Env) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "feedbackd", "-v", "run"],
                            env={**os.environ, "FEEDBACKD_CONFIG": str(env.config_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_daemon_answers_over_idle_survives_a_dropped_connection_and_stops_on_sigterm(env: Env) -> None:
    daemon = _start_daemon(env)
    try:
        time.sleep(1.5)
        started = time.monotonic()
        env.mailbox.append(mails.plain())
        assert len(env.sink.wait_for(1, timeout=15)) == 1
        first_latency = time.monotonic() - started
        env.mailbox.kick()  # the server drops the daemon's connection
        time.sleep(0.5)
        env.mailbox.append(mails.english())
        assert len(env.sink.wait_for(2, timeout=30)) == 2
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=20)
        assert daemon.returncode == 0, output
        assert "stopped" in output
        assert "reconnecting" in output
        assert first_latency < 10
        # INFO logs carry no addresses or message text
        assert "zhang.san@qq.example" not in output and "路灯" not in output
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert len(cases(env)) == 2


def test_the_daemon_polls_when_idle_is_off(env: Env) -> None:
    env.reconfigure(extra="")
    text = env.config_path.read_text().replace('folder = "INBOX"', 'folder = "INBOX"\nidle = false')
    env.config_path.write_text(text)
    daemon = _start_daemon(env)
    try:
        time.sleep(1.0)
        env.mailbox.append(mails.plain())
        assert len(env.sink.wait_for(1, timeout=15)) == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=20)
    assert daemon.returncode == 0
    assert "IDLE off" in output


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
    acks = env.sink.wait_for(60)
    time.sleep(0.5)
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

    daemon = _start_daemon(env)
    try:
        time.sleep(1.5)
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        env.mailbox.append(mails.plain())
        time.sleep(3)
        assert env.sink.received == []  # nothing can be recorded, so nothing is answered
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert len(env.sink.wait_for(1, timeout=30)) == 1  # the mail waited on the server
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "database unavailable" in output
    assert "zhang.san@qq.example" not in output  # the errors carry no personal data
    assert len(cases(env)) == 1
