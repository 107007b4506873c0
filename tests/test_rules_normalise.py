"""Normalisation before matching (NFKC, traditional → simplified, case folding), the new text
conditions (``within: sentence``, ``unless``), and what each rule hit says matched."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedbackd.routing import Decision, RuleHit, explain, load_ruleset
from feedbackd.routing.commands import check
from feedbackd.routing.conditions import Texts, normalise, own_text, sentences
from test_rules import matches, one_rule, parsed, write_rules


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("ＡＢＣ１２３！？", "ABC123!?"),  # full-width letters, digits and punctuation (NFKC)
        ("退款，还没到账（第三次）", "退款,还没到账(第三次)"),
        ("①号楼　三单元", "1号楼三单元"),  # circled digit, ideographic space between Chinese characters
        ("個資外洩，請刪除我的會員資料", "个资外泄,请删除我的会员资料"),  # traditional → simplified
        ("退\n款 还没\r\n到", "退款还没到"),  # a line wrapped inside Chinese text
        ("Refund  NOT\treceived", "Refund NOT received"),  # case is kept here; folding comes after
        ("", ""),
    ],
)
def test_normalise(raw: str, normal: str) -> None:
    assert normalise(raw) == normal


def test_texts_fold_case_and_keep_the_simplified_raw_text_for_regex() -> None:
    t = Texts("ＲＥＦＵＮＤ 還沒到帳\n第二行")
    assert t.folded == "refund 还没到帐第二行"
    assert t.simple == "ＲＥＦＵＮＤ 还没到帐\n第二行"  # lines kept for ^/$ in a regular expression


def test_sentences() -> None:
    assert sentences("感谢快递员。但是包裹破了!还有 3.5 kg 的东西? ok. done") == [
        "感谢快递员", "但是包裹破了", "还有 3.5 kg 的东西", " ok", " done"]


class TestNormalisedMatching:
    def test_traditional_mail_matches_simplified_keywords(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "text: {contains-any: [个人信息, 删除我的]}\n")
        assert matches(rs, parsed(subject="要求刪除我的會員資料", body="依個人資料保護法辦理。", charset="big5"))
        assert matches(rs, parsed(subject="個人信息", body="x"))

    def test_keywords_written_in_traditional_or_full_width_match_too(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "text: {contains-any: ['退款，還沒到', ＲＥＦＵＮＤ]}\n")
        assert matches(rs, parsed(subject="退款,还没到账", body="x"))
        assert matches(rs, parsed(subject="x", body="Refund please"))

    def test_full_width_punctuation_in_text(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "text: {contains: '订单号:'}\n")
        assert matches(rs, parsed(body="订单号：SH2026"))

    def test_regex_sees_simplified_text_with_its_lines(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {regex: '^退款.{0,4}没到'}\n")
        assert matches(rs, parsed(body="您好\n退款還沒到\n謝謝"))
        assert not matches(rs, parsed(body="您好，退款还没到"))

    def test_a_reply_is_routed_by_its_own_text_not_the_quote(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {contains: 个人信息}\n")
        quoted = ("还是没收到退款。\n\n在 2026-11-20 10:00，城市反馈 <feedback@city.example> 写道：\n"
                  "> 您的个人信息仅用于处理本案。\n")
        assert own_text(quoted) == "还是没收到退款。"
        assert not matches(rs, parsed(subject="Re: 退款", body=quoted))
        assert matches(rs, parsed(body="> 您的个人信息仅用于处理本案。"))  # nothing but a quote: kept whole


class TestWithinSentence:
    RULE = "text: {contains-all: [快递], contains-any: [慢, 没到], within: sentence}\n"

    def test_words_in_one_sentence(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, self.RULE)
        assert matches(rs, parsed(body="你好。这次的快递太慢了！谢谢"))
        assert matches(rs, parsed(subject="快递还没到", body="x"))

    def test_words_in_different_sentences_do_not_match(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, self.RULE)
        assert not matches(rs, parsed(body="快递员很客气。就是电梯有点慢。"))
        assert not matches(rs, parsed(body="The courier was kind. 快递员很好！电梯慢."))

    def test_full_width_sentence_ends(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, self.RULE)
        assert not matches(rs, parsed(body="快递员很客气！电梯有点慢"))
        assert not matches(rs, parsed(body="快递员很客气；电梯有点慢"))


class TestUnless:
    def test_unless_vetoes_the_whole_text_subject_or_body(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "text: {contains-any: [紧急, urgent], unless: [不紧急, not urgent]}\n")
        assert matches(rs, parsed(subject="紧急", body="楼道有烟"))
        assert not matches(rs, parsed(subject="不紧急，一个小建议", body="x"))
        assert not matches(rs, parsed(subject="紧急", body="其实不紧急"))  # the veto sees subject and body
        assert not matches(rs, parsed(subject="Not URGENT", body="x"))

    def test_unless_within_a_sentence_vetoes_that_sentence_only(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "body: {contains-any: [快递], unless: [表扬, 感谢], within: sentence}\n")
        assert not matches(rs, parsed(body="感谢快递小哥冒雨送货。"))
        assert matches(rs, parsed(body="感谢快递小哥冒雨送货。可是另一个快递三天没到。"))

    def test_unless_on_a_header(self, tmp_path: Path) -> None:
        rs = one_rule(tmp_path, "header: {name: X-Mailer, contains: mail, unless: [foxmail]}\n")
        assert matches(rs, parsed(headers={"X-Mailer": "Apple Mail"}))
        assert not matches(rs, parsed(headers={"X-Mailer": "Foxmail 7.2"}))


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("text: {within: sentence, regex: x}", "within: sentence needs words to look for"),
        ("text: {unless: [x]}", "needs an operator"),
        ("text: {contains: x, within: paragraph}", "within"),
        ("text: {contains: x, unless: []}", "unless"),
    ],
)
def test_rules_check_reports_bad_new_conditions_with_their_place(tmp_path: Path, when: str, message: str) -> None:
    import io

    write_rules(tmp_path / "rules", f"rules:\n  - name: r\n    when: {{{when}}}\n    then: {{tags: [t]}}\n")
    out = io.StringIO()
    assert check(tmp_path / "rules", out) == 1
    problems = out.getvalue().splitlines()
    assert problems and all(str(tmp_path / "rules" / "rules.yaml") + ":3:" in p for p in problems), problems
    assert any(message in p for p in problems), problems


class TestMatched:
    def test_each_hit_names_the_words_and_tests_that_matched(self, tmp_path: Path) -> None:
        write_rules(tmp_path / "rules", """\
            rules:
              - name: bulk
                when: {header: {name: Precedence, contains-any: [bulk, list]}}
                then: {tags: [bulk]}
              - name: money
                when:
                  any:
                    - text: {contains-any: [退款, 扣款, refund]}
                    - sender: {domain: bank.example}
                    - not: {language: en}
                then: {department: quality}
              - name: evidence
                when: {attachment: {type: "image/*"}}
                then: {tags: [photo]}
              - name: order
                when: {body: {regex: '订单号\\s*\\d{6,}'}}
                then: {tags: [order]}
            """)
        rs = load_ruleset(tmp_path / "rules")
        msg = parsed(subject="退款", body="退款還沒到，訂單號 123456789", headers={"Precedence": "bulk"},
                     attachments=[("a.jpg", "image/jpeg", b"\xff\xd8")])
        hits = {h.rule: h.matched for h in rs.evaluate(msg).hits}
        assert hits == {
            "bulk": ["header Precedence: bulk"],
            "money": ["退款"],  # "not" is no evidence; the traditional text matched the simplified word
            "evidence": ["attachment type image/*"],
            "order": ["订单号 123456789"],
        }

    def test_stored_decisions_without_matched_still_load_and_explain(self) -> None:
        old = {"department": "general", "priority": "normal", "kind": "problem", "template": "acknowledgement",
               "hits": [{"rule": "r", "file": "rules.yaml", "line": 3, "changes": {"tags": ["t"]}}]}
        decision = Decision.from_dict(old)
        assert decision.hits == [RuleHit("r", "rules.yaml", 3, {"tags": ["t"]}, [])]
        assert not any("matched:" in line for line in explain(old))
        new = decision.to_dict()
        new["hits"][0]["matched"] = ["退款", "header Precedence: bulk"]
        assert "    matched: 退款, header Precedence: bulk" in explain(new)
