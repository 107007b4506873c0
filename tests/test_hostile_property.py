"""Hostile input, property-based: whatever bytes arrive, each message ends as a case (or on one)
or as a quarantine entry with a reason, and the pipeline goes on to the next.

The generated mail is random and truncated MIME, missing and duplicated headers, invalid
encodings and charsets, HTML with scripts and remote images, and zip bombs as attachments.  The
properties run through ``Pipeline.process`` (the daemon's own path for one message) on one SQLite
database; one test delivers a generated batch through the real Dovecot to ``Daemon.run_once``.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import mails
from conftest import REPO, Env, run_once
from feedbackd import config as config_mod
from feedbackd.pipeline import Outcome, Pipeline
from feedbackd.routing import load_ruleset
from feedbackd.store import db

EXAMPLES = 60  # per property
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])
ENDINGS = {"new-case", "joined", "copy", "recorded", "staff-reply", "duplicate", "quarantined"}


# -- the pipeline under test ---------------------------------------------------------------------


class Harness:
    """A pipeline on its own SQLite database, as the daemon builds it (no servers needed)."""

    def __init__(self, tmp: Path) -> None:
        config = tmp / "feedbackd.toml"
        config.write_text(
            '[mailbox]\naddress = "feedback@city.example"\nname = "市民反馈中心"\n'
            '[imap]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\nusername = "x"\n'
            '[smtp]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\n'
            f'[database]\nurl = "sqlite:///{tmp / "feedbackd.db"}"\n'
            f'[paths]\nrules = "{REPO / "rules"}"\ntemplates = "{REPO / "templates"}"\ndata = "{tmp / "data"}"\n'
            '[acknowledgement]\nglobal_rate_limit = 0\nrate_limit = 0\n[intake]\nattachment_max_size = "2MB"\n',
            encoding="utf-8")
        self.settings = config_mod.load(config)
        self.engine = db.connect(self.settings.database.url)
        rules = load_ruleset(self.settings.paths.rules)
        self.pipeline = Pipeline(self.settings, self.engine, lambda: rules)
        self.data = tmp / "data"

    def process(self, raw: bytes) -> Outcome:
        outcome = self.pipeline.process(raw)
        assert outcome.action in ENDINGS, outcome
        digest = hashlib.sha256(raw).hexdigest()
        with self.engine.connect() as conn:
            kept = conn.execute(text("SELECT count(*) FROM message WHERE raw_sha256 = :d"), {"d": digest}).scalar()
            held = conn.execute(text("SELECT reason FROM quarantine WHERE raw_sha256 = :d"),
                                {"d": digest}).scalars().all()
        if outcome.action == "quarantined":
            assert held and all(reason.strip() for reason in held), outcome
        else:
            assert kept or held, f"{outcome}: neither recorded nor quarantined"
        return outcome

    def stored_text(self, raw: bytes) -> str:
        digest = hashlib.sha256(raw).hexdigest()
        with self.engine.connect() as conn:
            return "\n".join(conn.execute(text("SELECT text FROM message WHERE raw_sha256 = :d"),
                                          {"d": digest}).scalars().all())

    def still_running(self) -> None:
        """The next ordinary mail still becomes a case."""
        assert self.process(mails.plain(sender="after.the.storm@qq.example")).action == "new-case"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("hostile"))
    yield h
    h.still_running()
    h.engine.dispose()


# -- strategies ------------------------------------------------------------------------------------

CHARSETS = ["utf-8", "gbk", "gb2312", "gb18030", "big5", "iso-2022-jp", "utf-16", "utf-7", "x-unknown",
            "", "utf-8'zh'", "koi8-r", "us-ascii", "\"unterminated"]
CONTENT_TYPES = ["text/plain", "text/html", "multipart/mixed", "message/rfc822", "application/zip",
                 "multipart/alternative", "text/x-nonsense", ""]
ENCODINGS = ["base64", "quoted-printable", "8bit", "7bit", "binary", "x-uuencode", "bogus", ""]
HEADER_NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
                "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Reply-To", "Sender",
                "Auto-Submitted", "Return-Path", "Content-Disposition", "X-Junk"]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
BYTES = st.binary(max_size=300)


@st.composite
def header_value(draw: st.DrawFn, name: str) -> bytes:
    kind = draw(st.sampled_from(["plain", "address", "encoded", "broken-encoded", "raw-bytes", "empty", "long"]))
    if kind == "address":
        return f"{draw(TEXT)} <{draw(TEXT)}@{draw(TEXT)}>".encode("utf-8", "surrogatepass")
    if kind == "encoded":
        charset = draw(st.sampled_from(CHARSETS)) or "utf-8"
        return f"=?{charset}?{draw(st.sampled_from('BQbqX'))}?{draw(TEXT)}?=".encode("utf-8", "surrogatepass")
    if kind == "broken-encoded":
        return b"=?gbk?B?" + draw(BYTES).replace(b"\r", b"").replace(b"\n", b"")[:40] + b"?= tail =?utf-8?Q?=E4=B8"
    if kind == "raw-bytes":
        return draw(BYTES).replace(b"\r\n", b" ")
    if kind == "empty":
        return b""
    if kind == "long":
        return b"x" * draw(st.integers(900, 5000))
    return draw(TEXT).encode("utf-8", "surrogatepass")


@st.composite
def headers(draw: st.DrawFn) -> list[bytes]:
    """Any subset of the usual headers, some duplicated, in any order, with hostile values."""
    names = draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=14))
    lines = []
    for name in names:
        if name == "Content-Type":
            kind = draw(st.sampled_from(CONTENT_TYPES))
            boundary = draw(st.sampled_from(["b", "", "b b", "=="]))
            value = f"{kind}; charset={draw(st.sampled_from(CHARSETS))}; boundary=\"{boundary}\"".encode()
        elif name == "Content-Transfer-Encoding":
            value = draw(st.sampled_from(ENCODINGS)).encode()
        else:
            value = draw(header_value(name))
        lines.append(name.encode() + b": " + value)
    if draw(st.booleans()):
        lines.append(b"no colon here " + draw(BYTES)[:20].replace(b"\n", b""))
    return lines


@st.composite
def body(draw: st.DrawFn, depth: int = 0) -> bytes:
    kind = draw(st.sampled_from(["text", "bytes", "multipart", "base64-junk"] if depth < 3 else ["text", "bytes"]))
    if kind == "text":
        charset = draw(st.sampled_from(["utf-8", "gbk", "big5", "latin-1"]))
        return draw(TEXT).encode(charset, "replace")
    if kind == "bytes":
        return draw(BYTES)
    if kind == "base64-junk":
        return b"====\r\n" + draw(BYTES) + b"\r\n!!!"
    boundary = draw(st.sampled_from([b"b", b"b1", b"=_b", b""]))
    parts = draw(st.lists(st.tuples(headers(), body(depth + 1)), max_size=4))
    out = b""
    for part_headers, part_body in parts:
        out += b"--" + boundary + b"\r\n" + b"\r\n".join(part_headers) + b"\r\n\r\n" + part_body + b"\r\n"
    if draw(st.booleans()):
        out += b"--" + boundary + b"--\r\n"  # sometimes the closing boundary is missing
    return out


@st.composite
def hostile_mail(draw: st.DrawFn) -> bytes:
    raw = b"\r\n".join(draw(headers())) + b"\r\n\r\n" + draw(body())
    newline = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    raw = raw.replace(b"\r\n", newline)
    if draw(st.booleans()):  # truncated anywhere, as a broken connection leaves it
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


# -- the properties --------------------------------------------------------------------------------


@SETTINGS
@given(raw=st.one_of(hostile_mail(), st.binary(max_size=2000)))
def test_any_bytes_end_as_a_case_or_a_quarantine_entry_with_a_reason(harness: Harness, raw: bytes) -> None:
    harness.process(raw)


@SETTINGS
@given(raw=hostile_mail())
def test_a_message_and_its_redelivery_end_once(harness: Harness, raw: bytes) -> None:
    first = harness.process(raw)
    again = harness.process(raw)
    assert again.action == "duplicate", (first, again)  # quarantined bytes too: one entry, not two


@SETTINGS
@given(name=TEXT, subject=TEXT, text_=TEXT, charset=st.sampled_from(["utf-8", "gbk", "gb18030", "big5"]),
       dup=st.sampled_from(["From", "Subject", "Date", "Message-ID", "To", "Content-Type"]),
       drop=st.sets(st.sampled_from(["From", "Subject", "Date", "Message-ID", "To", "MIME-Version"])))
def test_missing_and_duplicated_headers_of_real_mail(harness: Harness, name: str, subject: str, text_: str,
                                                     charset: str, dup: str, drop: set[str]) -> None:
    raw = mails.plain(sender=f"dup{abs(hash((name, subject))) % 10**8}@qq.example", name=name or "x",
                      subject=subject or "-", body=text_ or "-", charset="utf-8")
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    copies = [line for line in lines if line.split(b":", 1)[0].decode() == dup]
    lines = [line for line in lines if line.split(b":", 1)[0].decode() not in drop] + copies
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + rest
    if charset != "utf-8":  # a charset label that lies about the body
        raw = raw.replace(b"charset=utf-8", f"charset={charset}".encode())
    outcome = harness.process(raw)
    if "From" not in drop and outcome.action != "quarantined":
        assert outcome.action in {"new-case", "joined", "copy", "recorded", "duplicate"}


class _Tracker(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # the name http.server calls
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tracker() -> Iterator[str]:
    """A web server that records every fetch: a remote image must never be loaded."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tracker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    assert _Tracker.hits == [], f"remote content was fetched: {_Tracker.hits}"


@SETTINGS
@given(words=TEXT, script=TEXT, charset=st.sampled_from(["utf-8", "gbk", "gb18030"]),
       shape=st.sampled_from(["script", "SCRIPT", "script-in-attr", "unclosed", "style", "iframe", "comment"]))
def test_html_with_scripts_and_remote_images_is_stored_as_text_only(harness: Harness, tracker: str, words: str,
                                                                    script: str, charset: str, shape: str) -> None:
    js = f"alert('xss{abs(hash(script)) % 10**6}');fetch('{tracker}/js')"
    dangerous = {
        "script": f"<script>{js}</script>",
        "SCRIPT": f"<SCRIPT type=text/javascript>{js}</SCRIPT >",
        "script-in-attr": f"<a href=\"javascript:{js}\" onclick=\"{js}\">点我</a>",
        "unclosed": f"<script>{js}",
        "style": f"<style>body{{background:url({tracker}/css.png)}}</style>",
        "iframe": f"<iframe src=\"{tracker}/frame\"></iframe>",
        "comment": f"<!-- <script>{js}</script> -->",
    }[shape]
    html = (f"<html><head>{dangerous}</head><body><p>{words}</p><img src=\"{tracker}/track.png?id=1\">"
            f"<img src='{tracker}/pixel.gif' width=1 height=1>{dangerous}<div>小区路灯坏了</div></body></html>")
    raw = mails.html_only(sender="html.sender@163.example", html=html.encode(charset, "replace").decode(charset),
                          charset=charset)
    outcome = harness.process(raw)
    assert outcome.action in {"new-case", "joined", "duplicate"}, outcome
    stored = harness.stored_text(raw)
    if shape != "unclosed":  # an unclosed <script> swallows the rest of the page, as in a browser
        assert "小区路灯坏了" in stored  # the text is kept
    lowered = stored.lower()
    assert "<script" not in lowered and "alert(" not in lowered and "javascript:" not in lowered
    assert "<img" not in lowered and "<iframe" not in lowered and "onclick" not in lowered


def zip_bomb(levels: int, fan_out: int, inner_mb: int) -> bytes:
    """A 42.zip-like nested zip: ``fan_out`` copies per level, ``inner_mb`` MiB of zeros innermost."""
    data = bytes(inner_mb * 1024 * 1024)
    name = "0.txt"
    for level in range(levels):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for i in range(fan_out):
                zf.writestr(f"{level}-{i}-{name}", data)
        data, name = buf.getvalue(), f"level{level}.zip"
    return data


@settings(max_examples=6, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(levels=st.integers(1, 3), fan_out=st.integers(2, 16), filename=st.sampled_from(
    ["42.zip", "照片.zip", "invoice.pdf.zip", "../../etc/passwd.zip", "a" * 300 + ".zip"]))
def test_a_zip_bomb_is_stored_as_its_bytes_and_never_unpacked(harness: Harness, levels: int, fan_out: int,
                                                              filename: str) -> None:
    bomb = zip_bomb(levels, fan_out, inner_mb=4)  # unpacked: fan_out**levels × 4 MiB (up to 16 GiB)
    assert len(bomb) < 1024 * 1024
    raw = mails.with_attachment(sender="bomber@qq.example", filename=filename, data=bomb)
    before = {p for p in harness.data.rglob("*") if p.is_file()}
    outcome = harness.process(raw)
    assert outcome.action in {"new-case", "joined", "duplicate"}, outcome
    new = {p for p in harness.data.rglob("*") if p.is_file()} - before
    digest = hashlib.sha256(bomb).hexdigest()
    assert all(p.name == digest for p in new)  # at most the zip itself, as bytes: nothing unpacked
    stored = next(harness.data.rglob(digest))
    assert stored.read_bytes() == bomb
    assert all(p.resolve().is_relative_to(harness.data.resolve()) for p in harness.data.rglob("*"))


# -- through the real Dovecot --------------------------------------------------------------------


@settings(max_examples=3, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],  # no shrinking:
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(hostile_mail(), min_size=10, max_size=20))
def test_a_generated_batch_through_dovecot_ends_as_cases_or_quarantine_and_intake_goes_on(
        env: Env, batch: list[bytes]) -> None:
    """(Not shrunk: each try costs a Dovecot round; a failure prints the whole batch.)"""
    # IMAP APPEND takes no NUL and no empty message; everything else goes as it is
    batch = [raw.replace(b"\0", b"") or b"X" for raw in batch]
    held_before = len(_reasons(env))  # the examples share the mailbox and the database
    env.mailbox.append(*batch, mails.plain(sender="last.in.line@qq.example",
                                           date=datetime.now(UTC)))
    actions = run_once(env)
    assert set(actions) <= ENDINGS, actions
    assert sum(actions.values()) == len(batch) + 1
    assert actions.get("new-case", 0) >= 1  # at least the ordinary mail behind the hostile ones
    reasons = _reasons(env)
    assert len(reasons) - held_before == actions.get("quarantined", 0)
    assert all(reason.strip() for reason in reasons)


def _reasons(env: Env) -> list[str]:
    engine = db.connect(env.db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT reason FROM quarantine")).scalars().all())
    finally:
        engine.dispose()
