"""The daemon as systemd runs it: sd_notify over a real datagram socket, SIGTERM and SIGHUP.

Each test starts ``feedbackd -v run`` as a child process against the real Dovecot and SMTP sink and
waits on its log lines and on the datagrams it sends to ``$NOTIFY_SOCKET`` (events, not sleeps).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mails
from conftest import REPO, Env
from faultkit import DaemonChild
from feedbackd.devstack import local_config
from feedbackd.devstack import write_config as write_sections
from feedbackd.sdnotify import Notifier


class NotifySocket:
    """A systemd stand-in: an abstract-namespace AF_UNIX datagram socket collecting sd_notify messages."""

    def __init__(self) -> None:
        self.name = f"@feedbackd-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def count(self, key: str) -> int:
        with self._cond:
            return sum(1 for _, m in self.messages if key in m)

    def wait(self, predicate: Callable[[dict[str, str]], bool], after: int = 0, timeout: float = 20) -> int:
        """Block until a message from index ``after`` on satisfies ``predicate``; its index."""
        def found() -> int | None:
            return next((i for i, (_, m) in enumerate(self.messages) if i >= after and predicate(m)), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
            index = found()
            assert index is not None, f"no such notification in {[m for _, m in self.messages]}"
            return index

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self._thread.join(timeout=2)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def configure(env: Env, **more: dict[str, Any]) -> Path:
    """The tests' configuration (as conftest writes it) with sections or keys changed by ``more``."""
    sections: dict[str, dict[str, Any]] = {
        "imap": {"poll_interval": "1s", "idle_timeout": "30s", "timeout": "10s"},
        "smtp": {"timeout": "10s"}, "outbox": {"retry_initial": "1s", "retry_max": "2s"}}
    for name, values in more.items():
        sections[name] = {**sections.get(name, {}), **values}
    return write_sections(env.config_path, local_config(
        imap=env.mailbox.server, smtp=env.sink, db_url=env.db_url, rules=REPO / "rules",
        templates=REPO / "templates", data=env.tmp / "data", user=env.mailbox.user, more=sections))


# -- sd_notify ------------------------------------------------------------------------------------


def test_notifier_speaks_the_protocol_and_is_silent_outside_systemd(notify_socket: NotifySocket) -> None:
    assert not Notifier({}).enabled
    Notifier({}).ready("x")  # no socket: nothing happens, nothing raises
    clock = [100.0]
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "2000000"}, clock=lambda: clock[0])
    assert notifier.interval == 1.0  # half of WATCHDOG_USEC
    notifier.ready("up")
    notifier.watchdog()  # within the interval of READY: not sent
    clock[0] += 1.0
    notifier.watchdog()
    notifier.status("up")  # unchanged: not sent again
    notifier.status("busy")
    notifier.stopping()
    notify_socket.wait(lambda m: "STOPPING" in m)
    assert [m for _, m in notify_socket.messages] == [
        {"READY": "1", "STATUS": "up"}, {"WATCHDOG": "1"}, {"STATUS": "busy"}, {"STOPPING": "1", "STATUS": "stopping"}]
    other = Notifier({"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.interval is None  # the watchdog is meant for another process
    assert not Notifier({"NOTIFY_SOCKET": "@feedbackd-nobody-listens"}).send("READY=1")  # never raises


def test_under_systemd_the_daemon_notifies_and_sighup_reloads_what_can_change_live(
        env: Env, notify_socket: NotifySocket) -> None:
    """One daemon (each start costs seconds): READY, STATUS, WATCHDOG and STOPPING on a real socket; on
    SIGHUP a live change is taken, one needing a restart said so, and an invalid file refused in one line."""
    child = DaemonChild(env.config_path, {"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "1000000"})
    try:
        ready = notify_socket.wait(lambda m: m.get("READY") == "1")
        mark = child.wait_for_line("connected to")
        configure(env, cases={"prefix": "QA"}, imap={"timeout": "11s"})  # live; needs a restart
        child.signal(signal.SIGHUP)
        mark = child.wait_for_line("configuration reloaded", after=mark)
        child.wait_for_line("imap changed", after=mark - 1)
        env.mailbox.append(mails.plain())
        (ack,) = env.sink.wait_for(1, timeout=15)
        assert "[QA-000001]" in ack.message["Subject"]
        status = notify_socket.wait(lambda m: "1 message(s) processed" in m.get("STATUS", "")
                                    and m["STATUS"].startswith("IDLE on INBOX"), after=ready)
        notify_socket.wait(lambda m: "WATCHDOG" in m, after=status)  # still coming after the work

        configure(env, cases={"prefix": "QA", "digits": 99})  # invalid: the running configuration stays
        mark = child.mark()
        child.signal(signal.SIGHUP)
        child.wait_for_line("configuration not reloaded", after=mark)
        env.mailbox.append(mails.english())
        acks = env.sink.wait_for(2, timeout=15)
        assert "[QA-000002]" in acks[1].message["Subject"]
    finally:
        exit_status = child.stop()
    assert exit_status == 0, child.output  # SIGTERM: the message in hand is finished, exit 0
    assert notify_socket.wait(lambda m: m.get("STOPPING") == "1") > ready
    assert child.output.rstrip().endswith("stopped")
    refused = [line for line in child.lines if "configuration not reloaded" in line]
    assert len(refused) == 1 and "'cases.digits'" in refused[0], child.output
    restart = [line for line in child.lines if "needs a restart" in line]
    assert len(restart) == 1 and "imap changed" in restart[0], child.output


def test_the_watchdog_stops_while_the_intake_loop_hangs_and_resumes_after(
        env: Env, notify_socket: NotifySocket) -> None:
    """An IMAP server that accepts and never greets holds the intake loop inside connect (the socket
    timeout is long): no WATCHDOG may go out meanwhile, or systemd could not restart a hung daemon."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(20)
    configure(env, imap={"port": server.getsockname()[1], "timeout": "30s"})
    interval = 0.1  # WATCHDOG_USEC / 2
    child = DaemonChild(env.config_path, {"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "200000"})
    held: list[socket.socket] = []
    try:
        notify_socket.wait(lambda m: m.get("READY") == "1")
        conn, _ = server.accept()  # the daemon is now waiting for a greeting that never comes
        held.append(conn)
        before = notify_socket.count("WATCHDOG")
        stuck = time.monotonic()
        # An absence can only be shown over a window: ten watchdog intervals without a WATCHDOG.
        time.sleep(10 * interval)
        assert notify_socket.count("WATCHDOG") <= before + 1  # at most one already under way at the accept
        silent_from = max((t for t, m in notify_socket.messages if "WATCHDOG" in m), default=stuck)
        assert time.monotonic() - silent_from >= 5 * interval  # (slack for a loaded machine)
        mark = notify_socket.mark()
        conn.close()  # the connection fails: the loop backs off (alive again) and reconnects
        notify_socket.wait(lambda m: "WATCHDOG" in m, after=mark)
        child.wait_for_line("reconnecting")
    finally:
        server.close()  # later attempts are refused at once, so SIGTERM ends the daemon promptly
        for conn in held:
            conn.close()
        status = child.stop()
    assert status == 0, child.output


# -- the intake loop's wait (the watchdog and STATUS ride on it) -----------------------------------


def test_mail_that_came_between_two_commands_ends_the_wait_as_idle_begins(env: Env) -> None:
    """Dovecot announces it right behind '+ idling', in the same packet: the wait must not sit out its cycle."""
    from feedbackd.mail.source import ImapSource

    source = ImapSource(env.settings.imap)
    state = source.connect()
    try:
        assert state.idle
        polls: list[int] = []

        def stop() -> bool:
            polls.append(1)  # called about once a second while the wait really waits
            return False

        source.wait(30, stop)  # the folder's EXISTS from SELECT: returns at once
        env.mailbox.append(mails.plain())  # delivered (APPEND answered) before our IDLE begins
        source.wait(30, stop)
        assert polls == []  # never waited: both ended on an announcement, not on the clock
        assert source.uids_after(0) == [1]
    finally:
        source.close()
