"""The benchmark corpus (bench/corpus.py): deterministic, the right mix, parseable, threads backwards."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import pytest

CORPUS_PATH = Path(__file__).resolve().parents[1] / "bench" / "corpus.py"


def _load_corpus():
    if "bench.corpus" in sys.modules:
        return sys.modules["bench.corpus"]
    spec = importlib.util.spec_from_file_location("bench_corpus_under_test", CORPUS_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()
N = 200


@pytest.fixture(scope="module")
def mails() -> list[tuple[object, bytes]]:
    return list(corpus.generate_with_meta(N, seed=7))


def _digest(messages) -> str:
    h = hashlib.sha256()
    for raw in messages:
        h.update(hashlib.sha256(raw).digest())
    return h.hexdigest()


def test_deterministic_for_a_seed() -> None:
    assert _digest(corpus.generate(N, seed=3)) == _digest(corpus.generate(N, seed=3))
    assert _digest(corpus.generate(N, seed=3)) != _digest(corpus.generate(N, seed=4))


def test_generate_is_lazy() -> None:
    it = corpus.generate(10**9, seed=1)  # would never finish if it built the list first
    first = next(it)
    assert first.startswith(b"From: ") and b"\r\n\r\n" in first


def test_mix_for_200(mails) -> None:
    exp = corpus.expected(N, seed=7)
    assert (exp.new, exp.replies, exp.automatic) == (118, 64, 18) == corpus.counts(N)
    kinds = Counter(meta.kind for meta, _ in mails)
    assert kinds == {corpus.NEW: exp.new, corpus.REPLY: exp.replies, corpus.AUTO: exp.automatic}
    assert Counter(meta.subkind for meta, _ in mails if meta.kind == corpus.AUTO) == exp.auto_kinds
    # Complaint senders are distinct and are exactly what expected() says, in order.
    senders = [meta.sender for meta, _ in mails if meta.kind == corpus.NEW]
    assert senders == exp.complaint_senders and len(set(senders)) == len(senders)
    assert [m.sender for m, _ in mails if m.kind == corpus.AUTO] == exp.automatic_senders
    assert not set(exp.automatic_senders) & set(senders)
    # The variety the workload asks for shows up even in 200 messages.
    new = [meta for meta, _ in mails if meta.kind == corpus.NEW]
    assert {m.charset for m in new} >= {"utf-8", "gbk", "gb2312", "us-ascii"}
    assert {m.structure for m in new} == {"plain", "alternative", "html"}
    assert any(m.attachment for m in new)
    assert len({meta.message_id for meta, _ in mails}) == N


def test_every_message_parses_with_the_stdlib(mails) -> None:
    for meta, raw in mails:
        assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
        msg = message_from_bytes(raw, policy=policy.default)
        assert not [d for d in msg.defects], (meta, msg.defects)
        assert msg["Message-ID"].strip("<> ") == meta.message_id
        assert str(msg["subject"])
        assert msg["from"].addresses[0].addr_spec == meta.sender
        body = msg.get_body(("plain", "html"))
        assert body is not None
        assert body.get_content().strip()
        if meta.attachment:
            (attachment,) = list(msg.iter_attachments())
            assert 50_000 <= len(attachment.get_content()) <= 200_000


def test_chinese_text_decodes(mails) -> None:
    for meta, raw in mails:
        if meta.kind in (corpus.NEW, corpus.REPLY) and meta.lang == "zh":
            msg = message_from_bytes(raw, policy=policy.default)
            part = msg.get_body(("plain", "html"))
            charset = part.get_content_charset()
            codec = "gb18030" if charset in ("gbk", "gb2312") else charset
            text = part.get_payload(decode=True).decode(codec)
            assert any("\u4e00" <= ch <= "\u9fff" for ch in text)
            assert any("\u4e00" <= ch <= "\u9fff" for ch in str(msg["subject"]))
            if meta.charset == "gb2312":  # declared gb2312 but written as GBK, as Foxmail does
                part.get_payload(decode=True).decode("gbk")


def test_replies_reference_earlier_message_ids(mails) -> None:
    seen: dict[str, object] = {}
    for meta, raw in mails:
        if meta.kind == corpus.REPLY:
            msg = message_from_bytes(raw, policy=policy.default)
            in_reply_to = msg["In-Reply-To"].strip("<> ")
            references = [r.strip("<>") for r in str(msg["References"]).split()]
            assert in_reply_to == references[-1] == meta.in_reply_to
            assert all(ref in seen for ref in references)
            root = seen[references[0]]
            assert root.kind == corpus.NEW  # the thread starts at a complaint of the corpus
            assert meta.sender == root.sender  # from the same citizen
            subject = str(msg["subject"])
            assert subject.lower().startswith(("re:", "回复", "答复"))
        seen[meta.message_id] = meta


def test_automatic_mail_is_marked(mails) -> None:
    for meta, raw in mails:
        if meta.kind != corpus.AUTO:
            continue
        msg = message_from_bytes(raw, policy=policy.default)
        marks = {
            "auto-submitted": msg.get("Auto-Submitted", "").lower() == "auto-replied",
            "x-autoreply": msg.get("X-Autoreply", "").lower() == "yes",
            "null return-path": msg.get("Return-Path", "").strip() == "<>",
            "report": msg.get_content_type() == "multipart/report",
        }
        assert any(marks.values()), meta
        if meta.subkind in ("oof-x-autoreply", "oof-return-path", "dsn-legacy"):
            assert not marks["auto-submitted"]
        if meta.subkind.startswith("dsn"):
            assert marks["report"] and meta.sender.startswith("MAILER-DAEMON@")
