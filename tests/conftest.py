"""Fixtures: a real Dovecot, a real SMTP sink, SQLite and PostgreSQL databases, a config.

One Dovecot serves the whole session; every test gets a user (and so a maildir) of its own,
which Dovecot picks up from the passwd-file at login.  PostgreSQL tests get a fresh database of
their own and are skipped, with the reason, when no server answers at 127.0.0.1:5432.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from feedbackd import config as config_mod
from feedbackd.config import Settings
from feedbackd.devstack import Dovecot, SmtpSink, dovecot_binary, local_config
from feedbackd.devstack import write_config as devstack_write_config

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("FEEDBACKD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_users = itertools.count(1)
MAX_TEST_USERS = 2000


def postgres_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError as exc:
        return f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc})"
    try:
        import psycopg

        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432 refused the test login ({exc})"
    return None


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Dovecot]:
    if dovecot_binary() is None:
        pytest.fail("dovecot is not installed: run scripts/bootstrap (apt-get install dovecot-imapd)")
    # Users are made up front: Dovecot re-reads a changed passwd-file only when its mtime moves
    # to another second, so users appended during the run could be refused.
    users = {"feedback": "secret", **{f"t{i}": uuid.uuid4().hex for i in range(1, MAX_TEST_USERS)}}
    server = Dovecot(users=users)
    server.start()
    yield server
    server.stop()


@dataclass
class Mailbox:
    """One test's own IMAP account on the shared Dovecot."""

    server: Dovecot
    user: str
    password: str

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        self.server.append(*messages, folder=folder, user=self.user)

    def client(self):  # type: ignore[no-untyped-def]
        return self.server.client(self.user)

    def kick(self) -> None:
        self.server.kick(self.user)


@pytest.fixture
def mailbox(dovecot_server: Dovecot) -> Mailbox:
    user = f"t{next(_users)}"
    box = Mailbox(dovecot_server, user, dovecot_server.users[user])
    box.client().logout()  # creates the maildir
    return box


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def _sqlite_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'feedbackd.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    reason = postgres_available()
    if reason:
        pytest.skip(f"skipping the PostgreSQL variant: {reason}")
    import psycopg

    name = f"fbtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return str(request.getfixturevalue("pg_url"))


def write_config(tmp: Path, *, mailbox: Mailbox, sink: SmtpSink, db_url: str, extra: str = "",
                 rules: Path | None = None) -> Path:
    """The tests' configuration: short timeouts and retry delays; ``extra`` appends TOML sections."""
    sections = local_config(
        imap=mailbox.server, smtp=sink, db_url=db_url, rules=rules or REPO / "rules",
        templates=REPO / "templates", data=tmp / "data", user=mailbox.user,
        more={"imap": {"poll_interval": "1s", "idle_timeout": "30s", "timeout": "10s"},
              "smtp": {"timeout": "10s"}, "outbox": {"retry_initial": "1s", "retry_max": "2s"}})
    path = devstack_write_config(tmp / "feedbackd.toml", sections)
    if extra:
        path.write_text(path.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    return path


@dataclass
class Env:
    """Everything an end-to-end test needs: servers, database, config file and settings."""

    mailbox: Mailbox
    sink: SmtpSink
    db_url: str
    tmp: Path
    config_path: Path

    @property
    def settings(self) -> Settings:
        return config_mod.load(self.config_path)

    def reconfigure(self, extra: str = "", rules: Path | None = None) -> Settings:
        self.config_path = write_config(self.tmp, mailbox=self.mailbox, sink=self.sink, db_url=self.db_url,
                                        extra=extra, rules=rules)
        return self.settings

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120):  # type: ignore[no-untyped-def]
        import subprocess

        full_env = {**os.environ, "FEEDBACKD_CONFIG": str(self.config_path), **(env or {})}
        return subprocess.run([sys.executable, "-m", "feedbackd", *args], env=full_env,
                              capture_output=True, text=True, timeout=timeout)


def run_once(env: Env) -> dict[str, int]:
    """``Daemon.run_once`` in this process (intake, then the outbox drained); what intake did, by action."""
    from feedbackd.service import Daemon

    daemon = Daemon(env.settings)
    try:
        intake, _ = daemon.run_once()
    finally:
        daemon.engine.dispose()
    return intake.actions


def _env(mailbox: Mailbox, sink: SmtpSink, url: str, tmp: Path) -> Env:
    env = Env(mailbox, sink, url, tmp, tmp / "feedbackd.toml")
    env.reconfigure()
    return env


@pytest.fixture
def env(mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> Env:
    """SQLite only: for tests about mail behaviour rather than storage."""
    return _env(mailbox, smtp_sink, _sqlite_url(tmp_path), tmp_path)


@pytest.fixture
def env_db(mailbox: Mailbox, smtp_sink: SmtpSink, db_url: str, tmp_path: Path) -> Env:
    """Parametrised over SQLite and PostgreSQL."""
    return _env(mailbox, smtp_sink, db_url, tmp_path)


def release_together(command: list[str], environ: dict[str, str],
                     n: int = 2) -> tuple[list[subprocess.Popen[str]], list[tuple[str, str]]]:
    """Start ``n`` copies of a command that prints ``ready`` and then waits for a line on stdin; once
    all are ready, let them go at the same moment. Returns the processes and their (stdout, stderr),
    after checking that each exited 0."""
    procs = [subprocess.Popen(command, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:  # all are loaded and waiting: let them go together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0] * n, [err for _, err in outputs]
    return procs, outputs
