"""Routing rules: every condition, operator, combinator and action, on real parsed mail.

Messages are built as RFC 5322 bytes the way mail clients send them (UTF-8 or GBK, base64 or
quoted-printable, multipart with attachments) and go through ``parse_message``, so the rules see
exactly what the daemon's pipeline gives them.  The helpers here are shared by the other
``test_rules_*`` files.
"""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path

import pytest

from feedbackd.mail.message import ParsedMessage
from feedbackd.mail.parse import parse_message
from feedbackd.routing import Decision, RuleSet, explain, load_ruleset

BASE = """\
departments:
  general: {name: 综合受理组, staff: [desk@city.example], lead: lead@city.example}
  safety:
    name: 安全组 Safety
    staff: [safety@city.example]
    lead: safety-lead@city.example
    deadlines:
      urgent: {first-response: 30m}
  quality: {name: 质量组, staff: [quality@city.example], lead: q-lead@city.example}
  logistics:
    name: 物流组
    staff: [delivery@city.example]
    lead: d-lead@city.example
    deadlines:
      normal: {resolution: 5d}
  suggestions: {name: 建议组, staff: [ideas@city.example], lead: lead@city.example}
priorities:
  urgent: {name: 紧急, first-response: 1h, resolution: 1d}
  high: {first-response: 4h, resolution: 3d}
  normal: {first-response: 1d, resolution: 7d}
  low: {first-response: 3d, resolution: 14d}
kinds:
  opinion: {first-response: 5d}
defaults:
  department: general
  priority: normal
  kind: problem
"""


def eml(
    subject: str = "小区路灯不亮",
    body: str = "您好，我们小区东门的路灯已经坏了一个星期，请尽快维修。",
    *,
    sender: str = "zhang.san@qq.example",
    name: str = "张三",
    to: str = "feedback@city.example",
    cc: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    charset: str = "utf-8",
) -> bytes:
    """A message as a mail client would send it."""
    msg = EmailMessage()
    msg["From"] = formataddr((name, sender)) if name else sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash((subject, body, sender)))}@mail.example>"
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body, charset=charset)
    for filename, ctype, data in attachments:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def parsed(*args: object, **kwargs: object) -> ParsedMessage:
    return parse_message(eml(*args, **kwargs))  # type: ignore[arg-type]


def make_rules(directory: Path, rules: str, base: str = BASE) -> RuleSet:
    """A rules directory with the base departments/priorities and the given rules section."""
    write_rules(directory, rules, base)
    return load_ruleset(directory)


def write_rules(directory: Path, rules: str, base: str = BASE) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "base.yaml").write_text(base, encoding="utf-8")
    (directory / "rules.yaml").write_text(textwrap.dedent(rules), encoding="utf-8")


def one_rule(tmp_path: Path, when: str) -> RuleSet:
    """A single rule named 'hit' that tags 'hit' when ``when`` (YAML, indented by 6) matches."""
    return make_rules(tmp_path / "rules", "rules:\n  - name: hit\n    when:\n" + textwrap.indent(
        textwrap.dedent(when), "      ") + "    then: {tags: [hit]}\n")


def matches(ruleset: RuleSet, msg: ParsedMessage) -> bool:
    return "hit" in ruleset.evaluate(msg).tags


# -- conditions and operators ---------------------------------------------------------------------


class TestSender:
    def test_equals_is_case_insensitive(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "sender: {equals: Zhang.San@QQ.example}\n")
        assert matches(rs, parsed(sender="zhang.san@qq.example"))
        assert not matches(rs, parsed(sender="li.si@qq.example"))

    def test_domain_matches_subdomains_only_on_a_dot(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "sender: {domain: gov.cn}\n")
        assert matches(rs, parsed(sender="office@gov.cn"))
        assert matches(rs, parsed(sender="xinfang@beijing.gov.cn"))
        assert not matches(rs, parsed(sender="someone@notgov.cn"))

    def test_glob(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "sender: {glob: '*@*.gov.cn'}\n")
        assert matches(rs, parsed(sender="a@shanghai.gov.cn"))
        assert not matches(rs, parsed(sender="a@gov.cn"))

    def test_contains_any_and_regex(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "sender: {contains-any: [noreply, no-reply], regex: '@(qq|163)\\.'}\n")
        assert matches(rs, parsed(sender="noreply@qq.example"))
        assert not matches(rs, parsed(sender="noreply@gmail.example"))
        assert not matches(rs, parsed(sender="zhang@163.example"))

    def test_no_usable_sender_never_matches(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "not: {sender: {glob: '*'}}\n")
        raw = eml().replace(b"From: ", b"X-Old-From: ")
        assert parse_message(raw).sender is None
        assert matches(rs, parse_message(raw))


class TestTo:
    """Aliases of one mailbox are channels: To, Cc, and the delivery headers all count."""

    def test_to_and_cc(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "to: {equals: complaints@city.example}\n")
        assert matches(rs, parsed(to="Complaints <COMPLAINTS@city.example>"))
        assert matches(rs, parsed(to="someone@else.example", cc="complaints@city.example"))
        assert not matches(rs, parsed(to="feedback@city.example"))

    @pytest.mark.parametrize("header", ["Delivered-To", "X-Original-To"])
    def test_envelope_headers_for_bcc(self, tmp_path: Path, header: str) -> None:
        rs = one_rule(tmp_path, "to: {glob: 'suggestions@*'}\n")
        msg = parsed(to="undisclosed-recipients:;", headers={header: "suggestions@city.example"})
        assert matches(rs, msg)


class TestText:
    def test_chinese_keyword_needs_no_word_boundaries(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {contains: 配送延迟}\n")
        assert matches(rs, parsed(body="你们的配送延迟了整整五天！"))
        assert not matches(rs, parsed(body="配送很快，谢谢"))

    def test_chinese_keyword_across_a_wrapped_line(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {contains: 支付失败}\n")
        assert matches(rs, parsed(body="昨天晚上我在网上缴费，结果支付\n失败了三次。"))

    def test_gbk_mail(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "text: {contains-any: [质量问题, 假货]}\n")
        assert matches(rs, parsed(subject="商品质量问题", body="买到的是假货", charset="gbk"))

    def test_english_is_case_insensitive_and_width_insensitive(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "subject: {contains: Payment Failed}\n")
        assert matches(rs, parsed(subject="PAYMENT FAILED again", body="x"))
        assert matches(rs, parsed(subject="ｐａｙｍｅｎｔ　ｆａｉｌｅｄ", body="x"))  # full-width, as IMEs type
        assert matches(rs, parsed(subject="payment   failed", body="x"))

    def test_case_sensitive(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "subject: {contains: ETC, case-sensitive: true}\n")
        assert matches(rs, parsed(subject="ETC 扣费异常", body="x"))
        assert not matches(rs, parsed(subject="etc.", body="x"))

    def test_equals_whole_subject(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "subject: {equals: 投诉}\n")
        assert matches(rs, parsed(subject=" 投诉 ", body="x"))
        assert not matches(rs, parsed(subject="投诉物业", body="x"))

    def test_contains_any_and_contains_all(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {contains-any: [退款, refund], contains-all: [订单, 没有]}\n")
        assert matches(rs, parsed(body="订单123的退款一直没有到账"))
        assert not matches(rs, parsed(body="订单123的退款已经到账"))
        assert not matches(rs, parsed(body="订单还没有发货"))

    def test_regex_on_the_text_as_received(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {regex: '^订单号[:：]\\s*\\d{8,}$'}\n")
        assert matches(rs, parsed(body="您好\n订单号：2024050100001\n谢谢"))
        assert not matches(rs, parsed(body="您好 订单号：123"))

    def test_regex_ignores_case_unless_asked(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "subject: {regex: '\\bfire\\b'}\n")
        assert matches(rs, parsed(subject="FIRE in the stairwell", body="x"))
        assert not matches(rs, parsed(subject="fireworks complaint", body="x"))

    def test_glob_on_subject(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "subject: {glob: 'Re: *订单*'}\n")
        assert matches(rs, parsed(subject="RE: 关于订单的问题", body="x"))

    def test_text_is_subject_or_body(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "text: {contains: 隐私}\n")
        assert matches(rs, parsed(subject="隐私泄露", body="x"))
        assert matches(rs, parsed(subject="投诉", body="我的隐私被泄露"))
        assert not matches(rs, parsed(subject="投诉", body="x"))

    def test_html_only_mail_is_matched_on_its_text(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {contains: 垃圾清运}\n")
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "li@163.example", "feedback@city.example", "反映"
        msg.set_content("<html><body><p>小区<b>垃圾清运</b>不及时</p></body></html>", subtype="html")
        assert matches(rs, parse_message(msg.as_bytes()))


class TestHeader:
    def test_exists(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "header: {name: auto-submitted, exists: true}\n")
        assert matches(rs, parsed(headers={"Auto-Submitted": "auto-replied"}))
        assert not matches(rs, parsed())

    def test_absent(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "header: {name: List-Id, exists: false}\n")
        assert matches(rs, parsed())
        assert not matches(rs, parsed(headers={"List-Id": "<news.city.example>"}))

    def test_operators_on_a_header(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "header: {name: X-Priority, regex: '^\\s*[12]\\b'}\n")
        assert matches(rs, parsed(headers={"X-Priority": "1 (Highest)"}))
        assert not matches(rs, parsed(headers={"X-Priority": "3 (Normal)"}))
        assert not matches(rs, parsed())

    def test_encoded_header_is_decoded(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "header: {name: X-Department, contains: 市场监管}\n")
        assert matches(rs, parsed(headers={"X-Department": "=?utf-8?b?5biC5Zy655uR566h5bGA?="}))


class TestAttachment:
    PHOTO = ("破损照片.JPG", "image/jpeg", b"\xff\xd8\xff\xe0fake")
    PDF = ("receipt.pdf", "application/pdf", b"%PDF-1.4 fake")

    def test_has(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "attachment: {has: true}\n")
        assert matches(rs, parsed(attachments=[self.PDF]))
        assert not matches(rs, parsed())

    def test_has_none(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "attachment: {has: false}\n")
        assert matches(rs, parsed())
        assert not matches(rs, parsed(attachments=[self.PDF]))

    def test_type_glob(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "attachment: {type: 'image/*'}\n")
        assert matches(rs, parsed(attachments=[self.PDF, self.PHOTO]))
        assert not matches(rs, parsed(attachments=[self.PDF]))

    def test_filename_glob_ignores_case(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "attachment: {filename: '*.jpg'}\n")
        assert matches(rs, parsed(attachments=[self.PHOTO]))

    def test_type_and_filename_must_hold_for_one_attachment(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "attachment: {type: application/pdf, filename: '*.jpg'}\n")
        assert not matches(rs, parsed(attachments=[self.PDF, self.PHOTO]))


class TestLanguage:
    def test_zh_en_unknown(self, tmp_path: Path) -> None:
        zh = one_rule(tmp_path / "zh", "language: zh\n")
        en = one_rule(tmp_path / "en", "language: en\n")
        unknown = one_rule(tmp_path / "unknown", "language: unknown\n")
        chinese = parsed()
        english = parsed(subject="Broken street light", body="The street light at the east gate is broken.")
        neither = parsed(subject="1234", body="5678 ... !!!")
        assert (chinese.language, english.language, neither.language) == ("zh", "en", None)
        assert [matches(rs, chinese) for rs in (zh, en, unknown)] == [True, False, False]
        assert [matches(rs, english) for rs in (zh, en, unknown)] == [False, True, False]
        assert [matches(rs, neither) for rs in (zh, en, unknown)] == [False, False, True]


class TestCombinators:
    WHEN = """\
    all:
      - any:
          - text: {contains-any: [紧急, 危险]}
          - text: {regex: '\\b(urgent|danger)\\b'}
      - not:
          text: {contains-any: [不紧急, not urgent]}
      - not:
          any:
            - sender: {domain: spam.example}
            - header: {name: Precedence, equals: bulk}
    """

    @pytest.mark.parametrize(
        ("subject", "body", "sender", "expected"),
        [
            ("紧急：电梯故障", "有人被困", "a@qq.example", True),
            ("Urgent: lift broken", "someone is stuck", "a@gmail.example", True),
            ("不紧急的建议", "路灯", "a@qq.example", False),
            ("Not urgent", "a suggestion", "a@gmail.example", False),
            ("紧急", "广告", "ads@spam.example", False),
            ("路灯", "灯不亮", "a@qq.example", False),
        ],
    )
    def test_nested(self, tmp_path: Path, subject: str, body: str, sender: str, expected: bool) -> None:
        rs = one_rule(tmp_path, self.WHEN)
        assert matches(rs, parsed(subject, body, sender=sender)) is expected

    def test_not_precedence_header(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, self.WHEN)
        assert not matches(rs, parsed("紧急", "x", headers={"Precedence": "bulk"}))

    def test_several_keys_in_one_condition_must_all_hold(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "subject: {contains: 投诉}\nsender: {domain: qq.example}\n")
        assert matches(rs, parsed("投诉", "x", sender="a@qq.example"))
        assert not matches(rs, parsed("投诉", "x", sender="a@163.example"))


# -- actions ---------------------------------------------------------------------------------------


def test_defaults_when_nothing_matches(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "rules:\n  - {name: never, when: {subject: {equals: zzz}}, then: {priority: low}}\n")
    d = rs.evaluate(parsed())
    assert (d.department, d.priority, d.kind, d.tags, d.assignee) == ("general", "normal", "problem", [], None)
    assert (d.template, d.suppress_ack, d.hits) == ("acknowledgement", False, [])
    assert (d.first_response_due, d.resolution_due) == (timedelta(days=1), timedelta(days=7))


ACTIONS = """\
rules:
  - name: 配送 delivery
    when: {text: {contains-any: [快递, 配送, delivery]}}
    then: {department: logistics, tags: [配送]}
  - name: 很久 long wait
    when: {body: {contains-any: [一周, 一个星期, a week]}}
    then: {priority: high, tags: [配送, 久等], assignee: Wang.Wu@City.example}
  - name: 通知 silent
    when: {sender: {glob: 'noreply@*'}}
    then: {suppress-ack: true, template: acknowledgement-short}
  - name: 表扬 praise
    when: {text: {contains-any: [表扬, 感谢, thank]}}
    then: {kind: 反映, department: suggestions, priority: low, stop: true}
  - name: after stop
    then: {tags: [never-after-stop]}
"""


def test_actions_apply_in_order_and_record_what_changed(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, ACTIONS)
    d = rs.evaluate(parsed("快递一周没到", "我的快递已经一周没有到了", sender="noreply@shop.example"))
    assert d.department == "logistics"
    assert d.priority == "high"
    assert d.tags == ["配送", "久等", "never-after-stop"]
    assert d.assignee == "wang.wu@city.example"
    assert (d.suppress_ack, d.template) == (True, "acknowledgement-short")
    assert [(h.rule, h.changes) for h in d.hits] == [
        ("配送 delivery", {"department": "logistics", "tags": ["配送"]}),
        ("很久 long wait", {"priority": "high", "tags": ["久等"], "assignee": "wang.wu@city.example"}),
        ("通知 silent", {"template": "acknowledgement-short", "suppress_ack": True}),
        ("after stop", {"tags": ["never-after-stop"]}),
    ]
    assert [h.line for h in d.hits] == [2, 5, 8, 14]
    assert d.hits[0].file == str(tmp_path / "rules.yaml")


def test_kind_alias_and_stop(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, ACTIONS)
    d = rs.evaluate(parsed("表扬快递员", "感谢配送员小李，服务很好"))
    assert (d.kind, d.department, d.priority) == ("opinion", "suggestions", "low")
    assert d.template == "acknowledgement-opinion"  # chosen by the kind
    assert d.resolution_due is None  # the opinion path has no resolution deadline
    assert d.first_response_due == timedelta(days=5)  # kinds.opinion.first-response
    assert d.hits[-1].rule == "表扬 praise" and d.hits[-1].changes["stop"] is True
    assert "never-after-stop" not in d.tags


def test_a_later_rule_overrides_an_earlier_one(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, """\
        rules:
          - {name: first, when: {text: {contains: 快递}}, then: {department: logistics, priority: high}}
          - {name: second, when: {text: {contains: 破损}}, then: {department: quality}}
          - {name: same again, when: {text: {contains: 破损}}, then: {department: quality}}
        """)
    d = rs.evaluate(parsed("快递破损", "收到的快递外包装破损"))
    assert (d.department, d.priority) == ("quality", "high")
    assert d.hits[2].changes == {}  # matched, changed nothing
    assert "no change" in "\n".join(explain(d.to_dict()))


def test_disabled_rule_is_skipped(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "rules:\n  - {name: off, enabled: false, then: {priority: urgent}}\n")
    assert rs.evaluate(parsed()).priority == "normal"
    assert rs.rules == ()


def test_rule_without_when_always_matches(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "rules:\n  - {name: all mail, then: {tags: [全部]}}\n")
    assert rs.evaluate(parsed()).tags == ["全部"]


class TestDeadlines:
    def test_department_override(self, tmp_path: Path) -> None:
        rs = make_rules(tmp_path, """\
            rules:
              - {name: fire, when: {text: {contains: 起火}}, then: {department: safety, priority: urgent}}
              - {name: parcel, when: {text: {contains: 快递}}, then: {department: logistics}}
            """)
        fire = rs.evaluate(parsed("楼道起火", "三楼起火了"))
        assert (fire.first_response_due, fire.resolution_due) == (timedelta(minutes=30), timedelta(days=1))
        parcel = rs.evaluate(parsed("快递", "没收到"))
        assert (parcel.first_response_due, parcel.resolution_due) == (timedelta(days=1), timedelta(days=5))

    def test_opinion_resolution_deadline_can_be_configured(self, tmp_path: Path) -> None:
        base = BASE.replace("opinion: {first-response: 5d}", "opinion: {resolution-deadline: true}")
        rs = make_rules(tmp_path, "rules:\n  - {name: o, then: {kind: opinion}}\n", base=base)
        d = rs.evaluate(parsed())
        assert (d.first_response_due, d.resolution_due) == (timedelta(days=1), timedelta(days=7))


# -- follow-ups ------------------------------------------------------------------------------------

FOLLOWUPS = """\
rules:
  - name: new only
    when: {text: {contains: 快递}}
    then: {priority: urgent}
  - name: 受伤 injury
    on: [new, reply]
    when: {text: {contains-any: [受伤, injured]}}
    then: {priority: urgent, tags: [安全]}
  - name: 催办 chased
    on: [reply]
    when: {text: {contains-any: [仍未解决, still not resolved]}}
    then: {priority: high}
  - name: lowering is ignored on replies
    on: [reply]
    when: {text: {contains: 谢谢}}
    then: {priority: low}
"""


class TestFollowup:
    def test_on_is_a_string_key_in_yaml_1_2(self, tmp_path: Path) -> None:
        rs = make_rules(tmp_path, FOLLOWUPS)
        assert [sorted(r.on) for r in rs.rules] == [["new"], ["new", "reply"], ["reply"], ["reply"]]

    def test_raises_priority(self, tmp_path: Path) -> None:
        rs = make_rules(tmp_path, FOLLOWUPS)
        d = rs.evaluate_followup(parsed("Re: 路灯", "一周了仍未解决，谢谢"), "normal")
        assert d is not None
        assert (d.priority, d.priority_raised, d.previous_priority) == ("high", True, "normal")
        assert [h.rule for h in d.hits] == ["催办 chased", "lowering is ignored on replies"]
        assert d.hits[1].changes == {}
        assert d.first_response_due == timedelta(hours=4)

    def test_english_reply(self, tmp_path: Path) -> None:
        rs = make_rules(tmp_path, FOLLOWUPS)
        d = rs.evaluate_followup(parsed("Re: lift", "My son was injured today."), "high")
        assert d is not None and d.priority == "urgent" and d.tags == ["安全"]

    def test_none_when_not_raised(self, tmp_path: Path) -> None:
        rs = make_rules(tmp_path, FOLLOWUPS)
        assert rs.evaluate_followup(parsed("Re: 路灯", "仍未解决"), "urgent") is None
        assert rs.evaluate_followup(parsed("Re: 路灯", "仍未解决"), "high") is None
        assert rs.evaluate_followup(parsed("Re: 路灯", "谢谢"), "normal") is None

    def test_new_only_rules_ignore_replies(self, tmp_path: Path) -> None:
        rs = make_rules(tmp_path, FOLLOWUPS)
        assert rs.evaluate_followup(parsed("Re: 快递", "快递"), "low") is None
        assert rs.evaluate(parsed("路灯", "仍未解决")).priority == "normal"  # reply-only rule ignored

    def test_rank(self, tmp_path: Path) -> None:
        rs = make_rules(tmp_path, FOLLOWUPS)
        assert [rs.rank(p) for p in ("urgent", "high", "normal", "low", "gone")] == [0, 1, 2, 3, 4]
        assert list(rs.priorities) == ["urgent", "high", "normal", "low"]
        assert rs.priorities["urgent"].name == "紧急"


# -- the stored decision ---------------------------------------------------------------------------


def test_decision_round_trips_through_json(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, ACTIONS)
    d = rs.evaluate(parsed("快递一周没到", "快递一周", sender="noreply@shop.example"))
    data = json.loads(json.dumps(d.to_dict(), ensure_ascii=False))
    assert Decision.from_dict(data) == d
    assert data["first_response_due"] == 4 * 3600 and data["ruleset_version"] == rs.version
    lines = explain(data)
    assert lines[0] == "matched rules:"
    assert any(line.startswith("  很久 long wait  (") and "priority = high" in line for line in lines)
    assert "department: logistics" in lines and "first response due: 4h" in lines


def test_department_lookup(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "rules: []\n")
    safety = rs.department("safety")
    assert (safety.name, safety.staff, safety.lead) == ("安全组 Safety", ("safety@city.example",),
                                                        "safety-lead@city.example")
    assert safety.deadlines["urgent"].first_response == timedelta(minutes=30)
    with pytest.raises(KeyError):
        rs.department("nope")


def test_ruleset_is_immutable(tmp_path: Path) -> None:
    rs = make_rules(tmp_path, "rules: []\n")
    with pytest.raises(AttributeError):
        rs.default_priority = "low"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rs.departments["x"] = rs.department("general")  # type: ignore[index]


# -- the regex pre-filter ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        (r"\b(urgent|emergency|danger(ous)?)\b", ("danger", "emergency", "urgent")),
        (r"(订单号|order\s*(no|number))\s*[:：]?\s*\d{8,}", ("order", "订单号")),
        (r"(?<!\d)12345(?!\d)", ("12345",)),
        (r"Gas\s+Leak", ("leak",)),
        (r"\d+", None),
        (r"(a|\d)x", ("x",)),
        (r"(fire)?", None),
    ],
)
def test_required_literals(pattern: str, literals: tuple[str, ...] | None) -> None:
    from feedbackd.routing.literals import required_literals

    assert required_literals(pattern) == literals


def test_prefiltered_regex_agrees_with_plain_re(tmp_path: Path) -> None:
    import re

    from feedbackd.routing.conditions import Texts, compile_text
    from feedbackd.routing.model import TextTest

    patterns = [r"\b(urgent|emergency|danger(ous)?)\b", r"(订单号|order\s*(no|number))\s*[:：]?\s*\d{4,}",
                r"Gas\s+LEAK", r"(?<!\d)12345(?!\d)", r"^re:\s*\S", r"(支付|付款)(失败|不成功)"]
    texts = ["URGENT: gas leak", "Dangerous stairs", "订单号：20240501", "ORDER NO 1234 please", "打12345",
             "2123456", "Re: 你好", "付款不成功", "支付成功", "İstanbul DANGER", "ıurgent", "nothing here", ""]
    for pattern in patterns:
        for case_sensitive in (False, True):
            match = compile_text(TextTest.model_validate({"regex": pattern, "case-sensitive": case_sensitive}))
            flags = re.MULTILINE | (0 if case_sensitive else re.IGNORECASE)
            for text in texts:
                assert match(Texts(text)) is (re.search(pattern, text, flags) is not None), (pattern, text)
