"""A throwaway local mail stack: a private Dovecot IMAP server and an SMTP sink.

The test suite, the demo and the benchmark all run feedbackd against these real servers on
127.0.0.1, so there is one way to start them.  Nothing here is used by the daemon itself.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_login_user = {login_user}
default_internal_group = {internal_group}
mail_location = maildir:{root}/mail/%u
mail_max_userip_connections = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {ssl_port}
  }}
}}
"""


def local_config(*, imap: Dovecot, smtp: SmtpSink, db_url: str, rules: Path, templates: Path, data: Path,
                 user: str = "feedback",
                 more: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Settings for feedbackd against this stack; ``more`` adds keys or sections (``{"imap": {...}}``)."""
    sections: dict[str, dict[str, Any]] = {
        "mailbox": {"address": "feedback@city.example", "name": "市民反馈中心", "language": "zh-CN"},
        "imap": {"host": imap.host, "port": imap.port, "security": "none", "username": user,
                 "password": imap.users[user], "folder": "INBOX"},
        "smtp": {"host": smtp.host, "port": smtp.port, "security": "none", "username": "", "password": ""},
        "database": {"url": db_url},
        "paths": {"rules": str(rules), "templates": str(templates), "data": str(data)},
    }
    for name, values in (more or {}).items():
        sections[name] = {**sections.get(name, {}), **values}
    return sections


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write settings as TOML (strings, numbers and booleans are all a test or demo needs)."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Certificate:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> Certificate:
        directory.mkdir(parents=True, exist_ok=True)
        ca, ca_key = directory / "ca.pem", directory / "ca.key"
        cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
        ext = directory / "server.ext"
        ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n")

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=feedbackd test CA",
                "-keyout", str(ca_key), "-out", str(ca))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
                "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                "-days", "2", "-extfile", str(ext), "-out", str(cert))
        for path in (cert, key, ca):
            path.chmod(0o644)
        return cls(ca, cert, key)


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )


class Dovecot:
    """A private Dovecot instance with its own config, passwd-file and maildir in a temp dir."""

    def __init__(self, users: dict[str, str] | None = None, tls: Certificate | None = None) -> None:
        self.users = users or {"feedback": "secret"}
        self.tls = tls  # with a certificate: STARTTLS on ``port`` and implicit TLS on ``ssl_port``
        self.host = "127.0.0.1"
        self.port = 0
        self.ssl_port = 0
        self.root = Path()
        self.conf = Path()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        binary = dovecot_binary()
        if binary is None:
            raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd)")
        # A fresh mkdtemp made 0755: Dovecot's own users must be able to walk into it.
        self.root = Path(tempfile.mkdtemp(prefix="feedbackd-dovecot-"))
        os.chmod(self.root, 0o755)
        (self.root / "mail").mkdir()
        self.port = free_port()
        self.conf = self.root / "dovecot.conf"
        (self.root / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        )
        if self.tls is not None:
            self.ssl_port = free_port()
            ssl = f"ssl = yes\nssl_cert = <{self.tls.cert}\nssl_key = <{self.tls.key}"
        else:
            ssl = "ssl = no"
        self.conf.write_text(DOVECOT_CONF.format(root=self.root, port=self.port, ssl=ssl, ssl_port=self.ssl_port,
                                                 **self._ids()))
        self._proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_for_greeting()
        return self

    def _ids(self) -> dict[str, Any]:
        if os.getuid() == 0:
            mail_uid = pwd.getpwnam("nobody").pw_uid
            mail_gid = grp.getgrnam("nogroup").gr_gid
            os.chown(self.root / "mail", mail_uid, mail_gid)
            return dict(internal_user="dovecot", login_user="dovenull", internal_group="dovecot",
                        uid=mail_uid, gid=mail_gid)
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        return dict(internal_user=user, login_user=user, internal_group=group,
                    uid=os.getuid(), gid=os.getgid())

    def _wait_for_greeting(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                log = (self.root / "dovecot.log")
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"dovecot exited at start-up: {detail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("dovecot did not greet within 10 s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self.root != Path() and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)

    def kick(self, user: str = "feedback") -> None:
        """Drop every connection of a user: the server hanging up on the daemon."""
        subprocess.run(["doveadm", "-c", str(self.conf), "kick", user],
                       check=False, capture_output=True)

    def client(self, user: str = "feedback") -> Any:
        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.login(user, self.users[user])
        return client

    def append(self, *messages: bytes, folder: str = "INBOX", user: str = "feedback") -> None:
        """Deliver messages the way the tests do: IMAP APPEND."""
        client = self.client(user)
        try:
            for raw in messages:
                client.append(folder, raw)
        finally:
            client.logout()

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Received:
    """One mail as the sink received it: envelope plus raw bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)  # e.g. ["SMTPUTF8"], as given with MAIL FROM
    _parsed: EmailMessage | None = field(default=None, repr=False)

    @property
    def message(self) -> EmailMessage:
        if self._parsed is None:
            from email import policy

            parsed = message_from_bytes(self.data, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self._parsed = parsed
        return self._parsed


class SmtpSink:
    """An aiosmtpd server on loopback that keeps every mail it accepts.

    ``fail_with`` makes it answer every RCPT with that SMTP reply (for outage tests).
    ``smtputf8`` makes it offer SMTPUTF8 (RFC 6531), as a server that takes UTF-8 addresses does.
    """

    def __init__(self, port: int = 0, tls: Certificate | None = None, smtputf8: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.tls = tls  # with a certificate the sink offers STARTTLS
        self.smtputf8 = smtputf8
        self.received: list[Received] = []
        self.fail_with: str | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._controller: Any = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                                  rcpt_options: Any) -> str:
                if sink.fail_with:
                    return sink.fail_with
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with sink._cond:
                    sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                                  bytes(envelope.original_content or envelope.content),
                                                  list(envelope.mail_options)))
                    sink._cond.notify_all()
                return "250 Message accepted"

        self.port = self.port or free_port()
        kwargs: dict[str, Any] = {}
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
            kwargs["tls_context"] = context
        self._controller = Controller(Handler(), hostname=self.host, port=self.port,
                                      enable_SMTPUTF8=self.smtputf8, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least ``count`` mails arrived (or the timeout passes); return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.received)

    def wait_until(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(received)`` holds (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
