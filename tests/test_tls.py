"""Encrypted IMAP and SMTP: STARTTLS and implicit TLS work, and a bad certificate never falls back."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import mails
from conftest import REPO
from feedbackd import config
from feedbackd.cli import main
from feedbackd.devstack import Certificate, Dovecot, SmtpSink, local_config, write_config
from feedbackd.service import Daemon


@pytest.fixture(scope="module")
def certificate() -> Certificate:
    return Certificate.make(Path(tempfile.mkdtemp(prefix="feedbackd-tls-")))


@pytest.fixture
def tls_stack(certificate: Certificate) -> Iterator[tuple[Dovecot, SmtpSink]]:
    with Dovecot(tls=certificate) as imap, SmtpSink(tls=certificate) as smtp:
        yield imap, smtp


def _config(tmp_path: Path, imap: Dovecot, smtp: SmtpSink, imap_tls: dict, smtp_tls: dict) -> Path:
    return write_config(tmp_path / "feedbackd.toml", local_config(
        imap=imap, smtp=smtp, db_url=f"sqlite:///{tmp_path / 'feedbackd.db'}", rules=REPO / "rules",
        templates=REPO / "templates", data=tmp_path / "data", more={"imap": imap_tls, "smtp": smtp_tls}))


@pytest.mark.parametrize("imap_mode", ["starttls", "ssl"])
def test_mail_flows_over_tls(tls_stack, certificate: Certificate, tmp_path: Path, imap_mode: str) -> None:  # type: ignore[no-untyped-def]
    imap, smtp = tls_stack
    imap.append(mails.plain())
    port = imap.port if imap_mode == "starttls" else imap.ssl_port
    path = _config(tmp_path, imap, smtp,
                   {"security": imap_mode, "port": port, "ca_file": str(certificate.ca)},
                   {"security": "starttls", "ca_file": str(certificate.ca)})
    daemon = Daemon(config.load(path))
    intake, sent = daemon.run_once()
    assert intake.actions == {"new-case": 1} and sent.sent == 1
    (ack,) = smtp.wait_for(1)
    assert ack.rcpt_tos == ["zhang.san@qq.example"]


def test_an_untrusted_imap_certificate_stops_the_run_without_falling_back(tls_stack, tmp_path: Path,
                                                                        capsys) -> None:  # type: ignore[no-untyped-def]
    imap, smtp = tls_stack
    imap.append(mails.plain())
    path = _config(tmp_path, imap, smtp, {"security": "starttls"}, {"security": "none"})  # system CAs only
    assert main(["--config", str(path), "run", "--once"]) == 1
    assert "certificate" in capsys.readouterr().err.lower()
    assert smtp.received == []


def test_an_untrusted_smtp_certificate_keeps_the_mail_waiting(tls_stack, certificate: Certificate,
                                                             tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    imap, smtp = tls_stack
    imap.append(mails.plain())
    path = _config(tmp_path, imap, smtp, {"security": "starttls", "ca_file": str(certificate.ca)},
                   {"security": "starttls"})  # the SMTP side trusts only the system CAs
    daemon = Daemon(config.load(path))
    intake, sent = daemon.run_once()
    assert intake.actions == {"new-case": 1}
    assert sent.sent == 0 and sent.retrying == 1  # kept in the outbox, never sent in the clear
    assert smtp.received == []
