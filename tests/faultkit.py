"""Helpers of the fault suite: a Dovecot of one's own to stop and start, mail in bulk, a
filesystem that fills up, and a correspondent that answers every mail it gets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from feedbackd.devstack import Dovecot, SmtpSink


class RestartableDovecot(Dovecot):
    """A private Dovecot that can go away and come back on the same port with the same mail."""

    def halt(self) -> None:
        """The server dies at once, as in a crash or a power cut: the master and every process it
        started (so every connection drops at that moment); the maildirs stay."""
        assert self._proc is not None
        master = self._proc.pid
        children = _children(master)
        os.kill(master, signal.SIGKILL)  # first, so it starts no new child meanwhile
        self._proc.wait(10)
        self._proc = None
        children += [pid for pid in _children(master) if pid not in children]
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children):  # their listening sockets go with them
            assert time.monotonic() < deadline, "dovecot's processes outlived SIGKILL"
            time.sleep(0.01)

    def resume(self) -> None:
        binary = self._proc_binary()
        self._proc = subprocess.Popen([binary, "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_greeting()

    @staticmethod
    def _proc_binary() -> str:
        from feedbackd.devstack import dovecot_binary

        binary = dovecot_binary()
        assert binary is not None
        return binary


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def append_many(server: Dovecot, user: str, messages: list[bytes], folder: str = "INBOX") -> None:
    """Deliver many messages in one MULTIAPPEND (thousands in about a second)."""
    client = server.client(user)
    try:
        for start in range(0, len(messages), 500):
            client.multiappend(folder, messages[start:start + 500])
    finally:
        client.logout()


def deliver(server: Dovecot, user: str, messages: list[bytes]) -> None:
    """Deliver straight into the user's Maildir (tmp/, then renamed into new/), as an LDA does:
    thousands in a fraction of a second, and Dovecot tells an IDLE client as it finds them."""
    maildir = server.root / "mail" / user
    owner = (maildir / "new").stat()
    for n, raw in enumerate(messages):
        name = f"{time.time_ns()}.P{os.getpid()}Q{n}.feedbackd-test"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, owner.st_uid, owner.st_gid)
        os.rename(tmp, maildir / "new" / name)


@contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (a real ENOSPC when it fills up)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path) -> Path:
    """Fill the filesystem at ``path`` to the last byte; the filler file is returned."""
    filler = path / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    for _ in range(3):  # a 64 KiB write fails with room for less: take the rest byte by byte
        try:
            with open(filler, "ab") as out:
                while True:
                    out.write(b"\0" * 512)
                    out.flush()
        except OSError:
            pass
    return filler


class AutoResponder:
    """The other side of a mail loop: answers every mail our SMTP sink received by appending a
    reply into our IMAP mailbox, as a citizen's out-of-office would.

    ``naive``: no Auto-Submitted header, no X-Autoreply, a plain "Re: " subject;
    otherwise a well-behaved RFC 3834 responder (Auto-Submitted: auto-replied).
    ``threaded=False``: the worst kind, which also drops In-Reply-To, References and our subject
    ("Re: your message"), so nothing ties its answer to the case it answers.
    """

    def __init__(self, sink: SmtpSink, server: Dovecot, user: str, *, naive: bool, threaded: bool = True) -> None:
        self.sink = sink
        self.server = server
        self.user = user
        self.naive = naive
        self.threaded = threaded
        self.answered = 0  # how many of the sink's mails were answered
        self.sent: list[bytes] = []

    def answer_new(self) -> int:
        """Answer what arrived since the last call; how many replies went into our mailbox."""
        new = self.sink.received[self.answered:]
        self.answered += len(new)
        replies = [self._reply(mail.message, rcpt) for mail in new for rcpt in mail.rcpt_tos]
        if replies:
            self.server.append(*replies, user=self.user)
        self.sent.extend(replies)
        return len(replies)

    def _reply(self, original: object, rcpt: str) -> bytes:
        from email.message import EmailMessage

        assert isinstance(original, EmailMessage)
        subject = str(original.get("Subject", ""))
        our_id = str(original.get("Message-ID", "")).strip()
        if not self.threaded:
            subject, our_id = "your message", ""
        lines = [f"From: {rcpt}", f"To: {original.get('From')}", f"Subject: Re: {subject}",
                 f"Date: {format_datetime(datetime.now(UTC))}", f"Message-ID: <{uuid.uuid4().hex}@away.example>",
                 "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: 8bit"]
        if our_id:
            lines += [f"In-Reply-To: {our_id}", f"References: {our_id}"]
        if not self.naive:
            lines.append("Auto-Submitted: auto-replied")
        body = "Thank you for your mail. I am away and will answer when I am back."
        return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


class DaemonChild:
    """``feedbackd -v run`` as a child process whose log lines can be waited for (events, not sleeps)."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "feedbackd", "-v", "run"],
                                     env={**os.environ, "FEEDBACKD_CONFIG": str(config), **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # end of output
            self._cond.notify_all()

    def wait_for_line(self, text: str, after: int = 0, timeout: float = 20) -> int:
        def found() -> bool:
            return any(text in line for line in self.lines[after:]) or (bool(self.lines) and self.lines[-1] == "")

        with self._cond:
            self._cond.wait_for(found, timeout)
            assert any(text in line for line in self.lines[after:]), f"no {text!r} in:\n{self.output}"
            return len(self.lines)

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        print(self.output)  # shown by pytest when the test fails
        return self.proc.returncode
