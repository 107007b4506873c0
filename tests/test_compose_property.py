"""The hand-written composer, checked against the standard library's reader (issue 10's condition for keeping it).

For any name, subject, text, HTML and address, what ``compose()`` writes must read back under
``policy.default`` to the same headers and text, with no defects and no header line over 998 octets.
Mail with a UTF-8 address (RFC 6532) is read from its UTF-8 text: the stdlib's bytes parser decodes
8-bit header bytes as undecodable whatever the policy, so that is how a program reads such mail with it.
"""

from __future__ import annotations

import email
import os
import re
from dataclasses import dataclass
from email import errors, policy
from email.message import EmailMessage, Message
from email.utils import parseaddr

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from feedbackd.mail.compose import AutoSubmitted, Outgoing, clean_header_text, compose
from feedbackd.mail.message import Address
from feedbackd.templates import Rendered

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
ANY_CHAR = st.characters(codec=None, exclude_categories=())  # surrogates and controls too
NASTY = ["", "\r\nBcc: evil@x.example", "a\nb", "\x00", "\ud800\udfff", "=?utf-8?b?5byg?=", '"\\', "张三 \u3000李四",
         "\u202eevil", "x" * 300, "长" * 300, "\x85\u2028\u2029", "a\r\n\r\nbody"]
ANY_TEXT = st.one_of(st.text(ANY_CHAR, max_size=400), st.sampled_from(NASTY),
                     st.lists(st.sampled_from(NASTY), max_size=4).map("".join))
EXAMPLES = int(os.environ.get("FEEDBACKD_PROPERTY_EXAMPLES", "300"))  # raise it for a longer hunt
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Addr:
    """An address as a citizen has it, and what must come out: local part unquoted, wire domain."""

    given: str
    local: str
    domain: str
    wire: str


def _idna(domain: str) -> str:
    """The issue's rule: an IDN domain as IDNA, the UTF-8 form where the codec refuses it."""
    try:
        return domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


@st.composite
def addresses(draw: st.DrawFn) -> Addr:
    atom = st.text(st.sampled_from(ATEXT), min_size=1, max_size=12)
    utf8_atom = st.text(st.characters(categories=["Lo", "Ll", "Lu", "Nd"]), min_size=1, max_size=6)
    local = ".".join(draw(st.lists(st.one_of(atom, utf8_atom) if draw(st.booleans()) else atom,
                                   min_size=1, max_size=3)))
    assume("=?" not in local)  # legal, but the stdlib reads it as an encoded word: compose refuses such a local part
    label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
    idn_label = st.text(st.characters(categories=["Lo", "Ll"]), min_size=1, max_size=8)
    domain = ".".join(draw(st.lists(st.one_of(label, idn_label), min_size=1, max_size=3)))
    wire_domain = _idna(domain) if local.isascii() else domain
    return Addr(f"{local}@{domain}", local, wire_domain, f"{local}@{wire_domain}")


KNOWN = [Addr("张三@例子.中国", "张三", "例子.中国", "张三@例子.中国"),
         Addr("c@bücher.example", "c", "xn--bcher-kva.example", "c@xn--bcher-kva.example"),
         Addr("li@例子.中国", "li", "xn--fsqu00a.xn--fiqs8s", "li@xn--fsqu00a.xn--fiqs8s"),
         Addr("zhang.san@qq.example", "zhang.san", "qq.example", "zhang.san@qq.example")]

ODD_LOCAL = st.text(st.sampled_from(ATEXT[-20:] + '."\\(),:;[]@张ü\u3000\x00'), min_size=1, max_size=20)
ODD_DOMAIN = st.sampled_from(["x.example", "例子.中国", "a..b", "[1.2.3.4]", "-"])
ODD_ADDRESS = st.builds("{}@{}".format, ODD_LOCAL, ODD_DOMAIN)
ids = st.from_regex(r"[A-Za-z0-9.$%+_=-]{1,40}@[A-Za-z0-9.-]{1,30}", fullmatch=True)


def read(out: Outgoing) -> EmailMessage:
    """What a program using the standard library reads from the wire bytes."""
    if out.smtputf8:
        msg = email.message_from_string(out.raw.decode("utf-8"), policy=policy.SMTPUTF8)
    else:
        assert out.raw.isascii()
        msg = email.message_from_bytes(out.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_defects(msg: Message, name: str) -> list[errors.MessageDefect]:
    """Defects of one header, less the stdlib's note on a UTF-8 local part, which RFC 6532 allows."""
    return [d for d in msg[name].defects if not isinstance(d, errors.NonASCIILocalPartDefect)]


def expected_body(text: str) -> str:
    text = re.sub("[\ud800-\udfff]", "\ufffd", text)
    text = re.sub(r"\r\n|\r", "\n", text)
    return re.sub("[\x00-\x08\x0b\x0e-\x1f\x7f]", "", text)


def wire_lines_are_sound(raw: bytes) -> None:
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b""), "bare CR or LF"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def check_address(msg: EmailMessage, header: str, name: str, addr: Addr) -> None:
    (got,) = msg[header].addresses
    assert (got.username, got.domain) == (addr.local, addr.domain)
    assert got.display_name == clean_header_text(name, 80)
    assert header_defects(msg, header) == []


@SETTINGS
@given(name=ANY_TEXT, our_name=ANY_TEXT, subject=ANY_TEXT, text=ANY_TEXT, html=st.one_of(st.none(), ANY_TEXT),
       to=st.one_of(addresses(), st.sampled_from(KNOWN)), ours=st.one_of(addresses(), st.sampled_from(KNOWN[1:])),
       parent=st.one_of(st.none(), ids), refs=st.lists(ids, max_size=25),
       reply=st.one_of(st.none(), st.tuples(ANY_TEXT, st.one_of(addresses(), st.sampled_from(KNOWN)))),
       keyword=st.sampled_from([None, "auto-generated", "auto-replied", "auto-notified"]))
@example(name="张" * 10_000, our_name="市民反馈中心", subject="\r\nBcc: x@y.example\r\n" * 500, text="\x00\r\n",
         html=None, to=KNOWN[0], ours=KNOWN[3], parent="a@b", refs=["a@b"],
         reply=("\r\nBcc: x@y.example", KNOWN[1]), keyword="auto-generated")
def test_what_compose_writes_reads_back_the_same(name: str, our_name: str, subject: str, text: str,
                                                 html: str | None, to: Addr, ours: Addr, parent: str | None,
                                                 refs: list[str], reply: tuple[str, Addr] | None,
                                                 keyword: AutoSubmitted | None) -> None:
    out = compose(Rendered(subject, text, html), sender=Address(our_name, ours.given),
                  recipient=Address(name, to.given), in_reply_to=parent, references=refs, automatic=True,
                  case_number="FB-000001", reply_to=Address(reply[0], reply[1].given) if reply else None,
                  auto_submitted=keyword)
    assert (out.recipient, out.mail_from) == (to.wire, ours.wire)
    reply_wire = reply[1].wire if reply else ""
    assert out.smtputf8 == (not (to.wire + ours.wire + reply_wire).isascii()) == (not out.raw.isascii())
    assert parseaddr(out.recipient)[1] == out.recipient  # what aiosmtplib puts after RCPT TO
    wire_lines_are_sound(out.raw)
    msg = read(out)
    assert msg.defects == [] and all(part.defects == [] for part in msg.walk())
    assert [k for k, _ in msg.items()][:5] == ["From", "To", "Subject", "Date", "Message-ID"]
    assert msg["Bcc"] is None and msg["Cc"] is None and len(msg.get_all("To")) == 1
    check_address(msg, "To", name, to)
    check_address(msg, "From", our_name, ours)
    assert msg["Subject"] == clean_header_text(subject, 250) and msg["Subject"].defects == ()
    assert msg["Message-ID"] == f"<{out.message_id}>" and msg["Message-ID"].defects == ()
    assert msg["In-Reply-To"] == (f"<{parent}>" if parent else None)
    assert msg["References"] == (" ".join(f"<{r}>" for r in refs[-20:]) if refs else None)
    assert msg["X-Feedbackd-Case"] == "FB-000001"
    assert msg["Auto-Submitted"] == (keyword or "auto-replied") and msg["X-Auto-Response-Suppress"] == "All"
    if reply:
        assert len(msg.get_all("Reply-To") or []) == 1
        check_address(msg, "Reply-To", reply[0], reply[1])
    else:
        assert msg["Reply-To"] is None
    check_bodies(msg, text, html)


def check_bodies(msg: EmailMessage, text: str, html: str | None) -> None:
    plain = msg.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == expected_body(text)
    if html:
        assert msg.get_content_type() == "multipart/alternative"
        part = msg.get_body(("html",))
        assert part is not None and part.get_content().replace("\r\n", "\n") == expected_body(html)
    else:
        assert msg.get_content_type() == "text/plain"


@SETTINGS
@given(name=ANY_TEXT, addr=st.one_of(ANY_TEXT, st.builds("{}@{}".format, ANY_TEXT, ANY_TEXT), ODD_ADDRESS),
       parent=st.one_of(st.none(), ANY_TEXT), refs=st.lists(ANY_TEXT, max_size=5), case=ANY_TEXT,
       reply=st.one_of(st.none(), ANY_TEXT, ODD_ADDRESS))
def test_any_address_or_id_gives_sound_mail_that_names_at_most_the_one_recipient(
        name: str, addr: str, parent: str | None, refs: list[str], case: str, reply: str | None) -> None:
    out = compose(Rendered("s", "t", None), sender=Address("我们", "feedback@city.example"),
                  recipient=Address(name, addr), in_reply_to=parent, references=refs, automatic=False,
                  case_number=case, reply_to=Address(name, reply) if reply is not None else None)
    wire_lines_are_sound(out.raw)
    msg = read(out)
    assert msg.defects == []
    assert msg["Auto-Submitted"] is None and msg["X-Auto-Response-Suppress"] == "All"  # a human answer relayed
    replies = msg.get_all("Reply-To") or []
    assert len(replies) <= 1 and (not replies or (len(msg["Reply-To"].addresses) == 1
                                                  and header_defects(msg, "Reply-To") == []))
    assert len(msg.get_all("To")) == 1 and msg["Bcc"] is None and msg["Cc"] is None
    got = msg["To"].addresses
    if out.recipient:
        (one,) = got
        assert (one.username, one.domain) == (addr.rpartition("@")[0], out.recipient.rpartition("@")[2])
        assert parseaddr(out.recipient)[1] == out.recipient
        assert header_defects(msg, "To") == []
    else:
        assert got == ()  # nothing usable was left: an empty group, not a broken header
    for header in ("In-Reply-To", "References", "X-Feedbackd-Case"):
        assert msg[header] is None or msg[header].defects == ()


@pytest.mark.parametrize("name", ["张" * 10_000, "a\r\nBcc: evil@x.example", "\ud83d", "x\x00y", '"=?x?='])
def test_names_are_bounded_and_cannot_add_a_header(name: str) -> None:
    out = compose(Rendered("已收到\r\nBcc: evil@x.example", "t", None), sender=Address("s", "s@city.example"),
                  recipient=Address(name, "c@bücher.example"), in_reply_to=None, references=[], automatic=True)
    lines = out.raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert len(out.raw) < 2_000 and not [line for line in lines if line.lower().startswith(b"bcc")]
    msg = read(out)
    assert msg["Bcc"] is None and len(msg.keys()) == 10
    assert msg["To"].addresses[0].display_name == clean_header_text(name, 80)
    assert out.recipient == "c@xn--bcher-kva.example" and not out.smtputf8


def test_a_utf8_local_part_is_written_raw_and_marked_for_smtputf8() -> None:
    out = compose(Rendered("s", "t", None), sender=Address("市民反馈中心", "feedback@city.example"),
                  recipient=Address("张三", "张三@例子.中国"), in_reply_to=None, references=[], automatic=True)
    assert out.smtputf8 and out.recipient == "张三@例子.中国"
    assert "To: =?utf-8?b?5byg5LiJ?= <张三@例子.中国>\r\n".encode() in out.raw


def test_a_domain_the_idna_codec_refuses_stays_utf8() -> None:
    label = "例" * 70  # over 63 octets once encoded: the codec raises
    out = compose(Rendered("s", "t", None), sender=Address("", "feedback@city.example"),
                  recipient=Address("", f"a@{label}.中国"), in_reply_to=None, references=[], automatic=True)
    assert out.recipient == f"a@{label}.中国" and out.smtputf8
