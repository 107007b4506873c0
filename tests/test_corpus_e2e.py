"""Every message of the CPython email test corpus through Dovecot: each is filed, none is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mails
from conftest import Env
from feedbackd.service import Daemon


def cpython_corpus() -> list[Path]:
    try:
        import test.test_email
    except ImportError:
        return []
    data = Path(test.test_email.__file__).parent / "data"
    return sorted(data.glob("msg_*.txt"))


def test_every_cpython_corpus_message_becomes_a_case_or_a_quarantine_entry(env: Env) -> None:
    corpus = cpython_corpus()
    if not corpus:
        pytest.skip("this Python has no test/test_email/data (Debian's python3 ships it in libpython3-testsuite)")
    refused: list[str] = []
    client = env.mailbox.client()
    try:
        for path in corpus:
            raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            try:
                client.append("INBOX", raw)
            except Exception as exc:
                refused.append(f"{path.name}: {exc}")
        client.append("INBOX", mails.plain(subject="语料之后的正常来信"))
        client.select_folder("INBOX")
        held = len(client.search())
    finally:
        client.logout()
    daemon = Daemon(env.settings)
    intake, _ = daemon.run_once()  # the daemon survives the whole corpus
    assert intake.processed == held
    settled = intake.actions.get("new-case", 0) + intake.actions.get("joined", 0) + \
        intake.actions.get("recorded", 0) + intake.actions.get("quarantined", 0) + \
        intake.actions.get("duplicate", 0) + intake.actions.get("copy", 0)
    assert settled == held, intake.actions

    from sqlmodel import func, select

    from feedbackd.store.db import session
    from feedbackd.store.models import MailMessage, QuarantineItem

    with session(daemon.engine) as db:
        incoming = db.exec(select(func.count()).select_from(MailMessage)
                           .where(MailMessage.direction == "in")).one()
        quarantined = db.exec(select(func.count()).select_from(QuarantineItem)).one()
    # every message is stored (as a case's message, an unmatched automatic mail, or quarantine);
    # only identical bytes count as duplicates; the corpus's other copies of one message (same
    # Message-ID, other bytes) are kept as copies on its case
    assert incoming + quarantined + intake.actions.get("duplicate", 0) == held
    listing = json.loads(env.cli("cases", "list", "--json").stdout)
    assert any(c["subject"] == "语料之后的正常来信" for c in listing)
    from feedbackd.store.models import RawMessage

    with session(daemon.engine) as db:  # raw bytes kept for audit, each distinct message once
        kept = db.exec(select(func.count()).select_from(RawMessage)).one()
    assert kept == incoming + quarantined
