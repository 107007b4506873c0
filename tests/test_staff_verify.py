"""Pure logic: staff reply addresses, Authentication-Results, and who acts as staff (no servers)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from feedbackd.config import StaffSettings
from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.parse import parse_message
from feedbackd.staff import address, authres, verify
from feedbackd.staff.address import SubAddress

SECRET = "s3cret-for-the-staff-loop-tests"
OWN = frozenset({"feedback@city.example"})
STAFF = frozenset({"desk@city.example", "Lead@City.Example", "li.hua@qq.example"})
MX = "mx.city.example"


# ---- address --------------------------------------------------------------------------------

def test_signature_is_hmac_sha256_of_the_upper_cased_case_number_in_ten_base32_characters() -> None:
    digest = hmac.new(SECRET.encode(), b"FB-000123", hashlib.sha256).digest()
    expected = base64.b32encode(digest).decode()[:10].lower()
    assert address.signature(SECRET, "FB-000123") == expected
    assert address.signature(SECRET, " fb-000123 ") == expected  # stable whatever the case and spacing


def test_signatures_are_distinct_per_case_and_per_secret() -> None:
    cases = [f"FB-{n:06d}" for n in range(1, 2001)]
    sigs = {address.signature(SECRET, case) for case in cases}
    assert len(sigs) == len(cases)
    assert all(len(s) == 10 and set(s) <= set("abcdefghijklmnopqrstuvwxyz234567") for s in sigs)
    assert address.signature(SECRET, "FB-000123") != address.signature(SECRET + "x", "FB-000123")


def test_no_signature_without_a_secret() -> None:
    with pytest.raises(ValueError):
        address.signature("", "FB-000123")
    assert not address.valid("", SubAddress("FB-000123", address.signature(SECRET, "FB-000123")))


def test_reply_address_round_trips() -> None:
    reply = address.reply_address("feedback@city.example", SECRET, "fb-000123")
    sig = address.signature(SECRET, "FB-000123")
    assert reply == f"feedback+FB-000123.{sig}@city.example"
    sub = address.parse_sub_address(reply, OWN)
    assert sub == SubAddress("FB-000123", sig)
    assert address.valid(SECRET, sub)


@pytest.mark.parametrize("bad", ["feedback", "@city.example", "feedback@"])
def test_reply_address_needs_a_whole_feedback_address(bad: str) -> None:
    with pytest.raises(ValueError):
        address.reply_address(bad, SECRET, "FB-000123")


def test_reply_address_refuses_what_is_not_a_case_number() -> None:
    with pytest.raises(ValueError):
        address.reply_address("feedback@city.example", SECRET, "FB-1.x@evil")


def test_sub_addresses_parse_case_insensitively_and_with_angle_brackets() -> None:
    sig = address.signature(SECRET, "FB-000123")
    for written in (f"FEEDBACK+fb-000123.{sig.upper()}@City.Example", f" <feedback+FB-000123.{sig}@city.example> "):
        sub = address.parse_sub_address(written, OWN)
        assert sub == SubAddress("FB-000123", sig)
        assert address.valid(SECRET, sub)


def test_own_address_with_a_plus_of_its_own() -> None:
    own = frozenset({"city+feedback@mail.example"})
    reply = address.reply_address("city+feedback@mail.example", SECRET, "FB-000007")
    sub = address.parse_sub_address(reply, own)
    assert sub is not None and sub.case_number == "FB-000007" and address.valid(SECRET, sub)


@pytest.mark.parametrize("written", [
    "feedback@city.example",  # the plain feedback address
    "feedback+FB-000123.abcdefghij@other.example",  # not our domain
    "someone+FB-000123.abcdefghij@city.example",  # not our local part
    "feedback+FB-000123@city.example",  # no signature
    "feedback+FB-000123.@city.example",  # empty signature
    "feedback+000123.abcdefghij@city.example",  # no prefix
    "feedback+FB-000123.abc!defghi@city.example",  # not base32
    "feedback+FB-000123.abcdefghi1@city.example",  # 1 is not a base32 letter
    "feedback+.abcdefghij@city.example",
    "+FB-000123.abcdefghij@city.example",
    "feedback+FB-000123.abcdefghij",
    "feedback+FB-000123." + "a" * 300 + "@city.example",  # far too long
    "",
])
def test_what_is_not_a_staff_reply_address(written: str) -> None:
    assert address.parse_sub_address(written, OWN) is None


def test_wrong_truncated_and_other_cases_signatures_are_not_valid() -> None:
    sig = address.signature(SECRET, "FB-000123")
    assert address.valid(SECRET, SubAddress("FB-000123", sig))
    assert not address.valid(SECRET, SubAddress("FB-000123", sig[:8]))  # truncated
    assert not address.valid(SECRET, SubAddress("FB-000123", sig + "a"))  # extended
    assert not address.valid(SECRET, SubAddress("FB-000123", "a" * 10))  # guessed
    assert not address.valid(SECRET, SubAddress("FB-000124", sig))  # another case's
    assert not address.valid("another-secret-of-the-city", SubAddress("FB-000123", sig))  # another secret
    assert not address.valid(SECRET, SubAddress("FB-000123", "签名" * 5))  # not even ASCII


# ---- Authentication-Results ----------------------------------------------------------------

GMAIL_STYLE = (
    f"{MX};\r\n"
    "       dkim=pass header.i=@city.example header.s=20230601 header.b=AbCd12+/==;\r\n"
    '       spf=pass (mx.city.example: domain of desk@city.example designates 192.0.2.1 as permitted sender)'
    " smtp.mailfrom=desk@city.example;\r\n"
    "       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=city.example"
)


def ar(*values: str) -> list[tuple[str, str]]:
    """Headers as the parser gives them: the topmost first, below them what the message had already."""
    return [*(("Authentication-Results", v) for v in values), ("From", "desk@city.example"), ("Subject", "x")]


def test_a_real_looking_header_passes_and_folding_is_white_space() -> None:
    assert authres.authenticated(ar(GMAIL_STYLE), MX, "city.example") == (True, "dkim=pass for city.example")
    header = authres.parse(GMAIL_STYLE)
    assert header is not None and header.authserv_id == MX
    assert [(r.method, r.result) for r in header.results] == [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]
    assert header.results[0].prop("header.b") == "AbCd12+/=="


@pytest.mark.parametrize("result, domain", [
    ("dkim=pass header.d=city.example", "dkim"),
    ("dkim=pass header.i=@city.example", "dkim"),
    ("dkim=pass header.i=desk@city.example", "dkim"),
    ('dkim=pass header.d="city.example"', "dkim"),
    ("DKIM=PASS HEADER.D=CITY.EXAMPLE.", "dkim"),
    ("dkim/1=pass header.d=city.example", "dkim"),
    ("spf=pass smtp.mailfrom=desk@city.example", "spf"),
    ("spf=pass smtp.mailfrom=city.example", "spf"),
    ("spf = pass (sender IP is 192.0.2.1) smtp.mailfrom = bounce@city.example", "spf"),
    ("dmarc=pass header.from=city.example", "dmarc"),
])
def test_one_pass_for_the_sender_domain_is_enough(result: str, domain: str) -> None:
    ok, why = authres.authenticated(ar(f"{MX}; dkim=fail header.d=city.example; {result}"), MX, "city.example")
    assert ok and why == f"{domain}=pass for city.example"


def test_authserv_id_is_case_insensitive_and_may_carry_a_version() -> None:
    assert authres.authenticated(ar("MX.City.Example 1; dkim=pass header.d=city.example"), MX, "city.example")[0]
    assert authres.authenticated(ar('"mx.city.example"; dkim=pass header.d=city.example'), MX, "City.Example")[0]


def test_only_the_topmost_header_counts_not_a_forged_lower_one() -> None:
    ours = f"{MX}; dkim=fail header.d=city.example; spf=softfail smtp.mailfrom=city.example"
    forged = f"{MX}; dkim=pass header.d=city.example; spf=pass smtp.mailfrom=city.example"
    ok, why = authres.authenticated(ar(ours, forged), MX, "city.example")
    assert not ok
    assert why == "no dkim or spf pass for city.example (dkim=fail city.example, spf=softfail city.example)"


def test_a_topmost_header_from_another_server_is_not_trusted_even_above_ours() -> None:
    """Whoever wrote the topmost header is who we trust; configure authserv_id to that hop."""
    other = "mx.evil.example; dkim=pass header.d=city.example"
    ours = f"{MX}; dkim=pass header.d=city.example"
    ok, why = authres.authenticated(ar(other, ours), MX, "city.example")
    assert not ok and why == f"topmost Authentication-Results is from mx.evil.example, not {MX}"


def test_wrong_authserv_id_missing_header_and_no_configured_id() -> None:
    assert authres.authenticated(ar("mx.other.example; dkim=pass header.d=city.example"), MX, "city.example") == (
        False, f"topmost Authentication-Results is from mx.other.example, not {MX}")
    assert authres.authenticated([("From", "desk@city.example")], MX, "city.example") == (
        False, "no Authentication-Results header")
    assert authres.authenticated(ar(f"{MX}; dkim=pass header.d=city.example"), " ", "city.example") == (
        False, "no authserv_id configured")


@pytest.mark.parametrize("value", [
    f"{MX}; dkim=fail header.d=city.example",
    f"{MX}; dkim=neutral header.d=city.example",
    f"{MX}; dkim=pass header.d=evil.example",
    f"{MX}; dkim=pass header.i=@evil.example",
    f"{MX}; spf=pass smtp.mailfrom=desk@evil.example",
    f"{MX}; spf=pass smtp.helo=city.example",  # HELO is not the sender
    f"{MX}; spf=pass",
    f"{MX}; dmarc=fail header.from=city.example",
    f"{MX}; arc=pass header.d=city.example",  # only DKIM, SPF and DMARC count
    f"{MX}; dkim=pass header.d=city.example.evil.example",
    f"{MX}; dkim=pass header.d=evilcity.example",
    f"{MX}; dkim=pass header.d=mail.city.example",  # a subdomain does not vouch for its parent
    f"{MX}; dkim=pass header.d=example",  # nor does a single label
    f"{MX}; none",
    f"{MX};",
    f"{MX}",
    "dkim=pass header.d=city.example",  # no authserv-id (Microsoft's shape): never ours
    "spf=pass smtp.mailfrom=city.example; dkim=pass header.d=city.example",
    f"{MX} x; dkim=pass header.d=city.example",  # a version must be digits
    "",
])
def test_what_is_not_a_pass_for_the_sender_domain(value: str) -> None:
    ok, why = authres.authenticated(ar(value), MX, "city.example")
    assert not ok, why


def test_sender_subdomain_of_the_authenticated_domain_passes_unless_strict() -> None:
    header = ar(f"{MX}; dkim=pass header.d=city.example")
    assert authres.authenticated(header, MX, "hq.city.example") == (True, "dkim=pass for city.example")
    assert not authres.authenticated(header, MX, "hq.city.example", relaxed=False)[0]
    assert not authres.authenticated(header, MX, "hqcity.example")[0]


@pytest.mark.parametrize("value", [
    f"{MX}; spf=fail (dkim=pass header.d=city.example) smtp.mailfrom=evil.example",  # a pass inside a comment
    f"{MX}; spf=fail (a (nested; dkim=pass header.d=city.example) comment) smtp.mailfrom=evil.example",
    f"{MX}; spf=fail (escaped \\) dkim=pass header.d=city.example) smtp.mailfrom=evil.example",
    f'{MX}; spf=pass smtp.mailfrom="x;dkim=pass header.d=city.example"@evil.example',  # a quoted local part
    f'{MX}; spf=pass smtp.mailfrom="x\\";dkim=pass header.d=city.example"@evil.example',
    f"{MX}; dkim=pass header.d=city.example(unterminated",  # comment runs to the end: result kept? see below
])
def test_comments_and_quoted_strings_hide_nothing(value: str) -> None:
    ok, why = authres.authenticated(ar(value), MX, "city.example")
    if value.endswith("(unterminated"):
        assert ok, why  # the comment is dropped, the result before it stands
    else:
        assert not ok, why


def test_a_comment_between_tokens_and_a_quoted_string_pass() -> None:
    value = f'{MX} (our (nested) server); dkim=pass (good signature) header.d=(the domain)"city.example"'
    assert authres.authenticated(ar(value), MX, "city.example")[0]


def test_a_malformed_result_is_dropped_not_guessed() -> None:
    value = f"{MX}; dkim=pass junk header.d=city.example; dkim=pass header.d=; spf=pass smtp.mailfrom"
    header = authres.parse(value)
    assert header is not None and header.results == []
    assert not authres.authenticated(ar(value), MX, "city.example")[0]


def test_internationalised_domains_compare_as_a_labels() -> None:
    header = ar(f"{MX}; dkim=pass header.d=xn--fsqu00a.xn--fiqs8s")
    assert authres.authenticated(header, MX, "例子.中国") == (True, "dkim=pass for xn--fsqu00a.xn--fiqs8s")


def test_the_reason_is_bounded_and_printable() -> None:
    value = "mx.\x00evil" + "x" * 5000 + "; " + "; ".join(f"dkim=fail header.d=d{i}.example" for i in range(50))
    ok, why = authres.authenticated(ar(value), "mx.\x00evil" + "x" * 5000, "city.example")
    assert not ok and why.isprintable() and len(why) < 400 and "46 more" in why


# ---- hostile headers -----------------------------------------------------------------------

def test_many_results_are_all_read() -> None:
    fails = "".join(f"; dkim=fail header.d=d{i}.example" for i in range(1500))
    value = f"{MX}{fails}; dkim=pass header.d=city.example"
    assert len(value) < authres.MAX_LENGTH
    assert authres.authenticated(ar(value), MX, "city.example") == (True, "dkim=pass for city.example")


def test_an_over_long_header_is_refused_not_cut() -> None:
    value = f"{MX}; dkim=pass header.d=city.example (" + "x" * authres.MAX_LENGTH + ")"
    ok, why = authres.authenticated(ar(value), MX, "city.example")
    assert not ok and "longer than" in why


@pytest.mark.parametrize("unit", ["(", ")", "((a)", "(\\", '"', '"\\', 'a"b', "\\", "=;", "a=b ", "x=a===", " x",
                                  "x\r\n\t", "; dkim=pass header.d=a.example", "@", ";"])
def test_hostile_headers_are_read_in_linear_time_without_recursion(unit: str) -> None:
    """Half a megabyte of each shape, far beyond the cap, is read to an answer (a recursive comment
    reader would hit the recursion limit; speed is measured in benchmarks, not asserted here)."""
    value = f"{MX}; " + unit * (512 * 1024 // len(unit))
    ok, why = authres.authenticated(ar(value), MX, "city.example", max_length=len(value))
    assert not ok and why.isprintable()
    assert not authres.authenticated(ar(value), MX, "city.example")[0]  # the default cap refuses it unread


def test_tokenize_keeps_words_glued_and_drops_comments() -> None:
    tokens = authres.tokenize('a (c (d) e) "x y"@z.example=b\r\n\t;c')
    assert [(t.kind, t.text) for t in tokens] == [
        ("word", "a"), ("word", "x y@z.example"), ("=", "="), ("word", "b"), (";", ";"), ("word", "c")]


# ---- who acts as staff ---------------------------------------------------------------------

def settings(**kwargs: object) -> StaffSettings:
    return StaffSettings.model_validate({"secret": SECRET, **kwargs})


def reply_to(case: str = "FB-000123") -> str:
    return address.reply_address("feedback@city.example", SECRET, case)


def staff_mail(*, from_: str = "Desk <desk@city.example>", to: str | None = None,
               extra: list[str] | None = None, top: list[str] | None = None) -> ParsedMessage:
    """A reply from a mail client; ``top`` are headers the receiving server prepended."""
    lines = [*(top or []), f"From: {from_}", f"To: {to if to is not None else reply_to()}",
             "Subject: Re: [FB-000123] 小区路灯不亮", "Message-ID: <r1@city.example>", *(extra or []),
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n已安排维修。\r\n").encode())


def claim(msg: ParsedMessage, **kwargs: object) -> verify.StaffClaim | None:
    return verify.claim(msg, settings(**kwargs), OWN, STAFF)


def test_a_staff_reply_with_a_valid_signature_acts_as_staff() -> None:
    assert claim(staff_mail()) == verify.StaffClaim("FB-000123", True, "verified")
    assert claim(staff_mail(from_="LEAD@city.example")) == verify.StaffClaim("FB-000123", True, "verified")


def test_mail_to_no_staff_reply_address_is_no_claim() -> None:
    assert claim(staff_mail(to="feedback@city.example")) is None
    assert claim(staff_mail(to="feedback+FB-000123.abcdefghij@elsewhere.example")) is None
    assert claim(staff_mail(to="", extra=["Cc: someone@city.example"])) is None


def test_the_display_name_never_counts() -> None:
    for from_ in ('"desk@city.example" <evil@x.example>', "desk@city.example <evil@x.example>",
                  "=?utf-8?q?desk=40city=2Eexample?= <evil@x.example>", "evil@x.example (desk@city.example)"):
        assert claim(staff_mail(from_=from_)) == verify.StaffClaim("FB-000123", False, "sender is not staff")


def test_a_non_staff_sender_with_a_valid_reply_address_is_not_staff() -> None:
    assert claim(staff_mail(from_="张三 <zhang.san@qq.example>")) == verify.StaffClaim(
        "FB-000123", False, "sender is not staff")


def test_two_from_headers_are_refused() -> None:
    msg = staff_mail(from_="desk@city.example", extra=["From: evil@x.example"])
    assert claim(msg) == verify.StaffClaim("FB-000123", False, "more than one From header")


def test_no_from_address() -> None:
    assert claim(staff_mail(from_="undisclosed")) == verify.StaffClaim("FB-000123", False, "no sender address")


@pytest.mark.parametrize("to, case", [
    (reply_to().replace(address.signature(SECRET, "FB-000123"), "abcdefghij"), "FB-000123"),  # wrong
    (reply_to()[:-len("@city.example") - 2] + "@city.example", "FB-000123"),  # truncated
    (reply_to("FB-000124").replace("FB-000124", "FB-000123"), "FB-000123"),  # another case's signature
    (address.reply_address("feedback@city.example", "an-old-secret-of-the-city", "FB-000123"), "FB-000123"),
])
def test_a_staff_sender_with_a_bad_signature_is_not_staff(to: str, case: str) -> None:
    assert claim(staff_mail(to=to)) == verify.StaffClaim(case, False, "wrong signature")


@pytest.mark.parametrize("where", ["Cc", "Delivered-To", "X-Original-To"])
def test_the_reply_address_is_found_in_cc_and_the_envelope_headers(where: str) -> None:
    msg = staff_mail(to="Someone <someone@city.example>", extra=[f"{where}: <{reply_to()}>"])
    assert claim(msg) == verify.StaffClaim("FB-000123", True, "verified")


def test_of_several_reply_addresses_the_valid_one_is_the_claim() -> None:
    wrong = reply_to("FB-000999").replace("FB-000999", "FB-000555")
    msg = staff_mail(to=f"{wrong}, {reply_to('FB-000777')}")
    assert claim(msg) == verify.StaffClaim("FB-000777", True, "verified")
    assert claim(staff_mail(to=wrong)) == verify.StaffClaim("FB-000555", False, "wrong signature")


AUTH = {"require_authentication": True, "authserv_id": MX}


def test_with_authentication_required_a_pass_for_the_from_domain_is_needed() -> None:
    passed = f"Authentication-Results: {MX};\r\n\tdkim=pass header.d=city.example header.s=s1"
    assert claim(staff_mail(top=[passed]), **AUTH) == verify.StaffClaim("FB-000123", True, "verified")
    spf_qq = f"Authentication-Results: {MX}; spf=pass smtp.mailfrom=li.hua@qq.example"
    assert claim(staff_mail(from_="李华 <li.hua@qq.example>", top=[spf_qq]), **AUTH) == verify.StaffClaim(
        "FB-000123", True, "verified")


@pytest.mark.parametrize("top, reason", [
    ([], "authentication: no Authentication-Results header"),
    ([f"Authentication-Results: {MX}; dkim=fail header.d=city.example",
      f"Authentication-Results: {MX}; dkim=pass header.d=city.example"],
     "authentication: no dkim or spf pass for city.example (dkim=fail city.example)"),
    (["Authentication-Results: mx.evil.example; dkim=pass header.d=city.example"],
     f"authentication: topmost Authentication-Results is from mx.evil.example, not {MX}"),
    ([f"Authentication-Results: {MX}; spf=pass smtp.mailfrom=evil@x.example"],
     "authentication: no dkim or spf pass for city.example (spf=pass x.example)"),
])
def test_failing_or_forged_authentication_is_not_staff(top: list[str], reason: str) -> None:
    assert claim(staff_mail(top=top), **AUTH) == verify.StaffClaim("FB-000123", False, reason)


def test_a_forged_header_in_the_message_does_not_count_when_the_server_adds_its_own() -> None:
    """The sender wrote a passing header with our id; the server's own (topmost) says fail."""
    forged = f"Authentication-Results: {MX}; dkim=pass header.d=city.example"
    ours = f"Authentication-Results: {MX}; dkim=none; spf=fail smtp.mailfrom=city.example"
    msg = staff_mail(top=[ours], extra=[forged])
    result = claim(msg, **AUTH)
    assert result is not None and not result.staff and result.reason.startswith("authentication: no dkim or spf")


def test_without_required_authentication_the_header_is_not_read() -> None:
    failing = f"Authentication-Results: {MX}; dkim=fail header.d=city.example"
    assert claim(staff_mail(top=[failing])) == verify.StaffClaim("FB-000123", True, "verified")
