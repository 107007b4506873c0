"""Validation: every class of mistake is reported as ``file:line:column: message``, all at once."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from feedbackd.routing import RulesError, load_ruleset
from feedbackd.routing.commands import check
from test_rules import BASE


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``rules/`` directory, with the working directory set so paths print as rules/…"""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    return Path("rules")


def problems(directory: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_ruleset(directory)
    return [str(p) for p in caught.value.problems]


def at(text: str, line: int, needle: str) -> str:
    """``line:column`` of ``needle`` on that line of a (dedented) file: where a message must point."""
    column = textwrap.dedent(text).splitlines()[line - 1].index(needle) + 1
    return f"{line}:{column}"


def rules_only(directory: Path, text: str) -> list[str]:
    """Problems of a rules file next to a valid base file."""
    return problems(directory, {"base.yaml": BASE, "rules.yaml": text})


# -- keys and types -----------------------------------------------------------------------------------


UNKNOWN_KEYS = """\
    rules:
      - name: a
        when:
          subject: {contain: 快递}
        then: {departmnt: general}
        colour: red
    """


def test_unknown_keys_with_suggestions(rules: Path) -> None:
    assert rules_only(rules, UNKNOWN_KEYS) == [
        f"rules/rules.yaml:{at(UNKNOWN_KEYS, 4, 'contain')}: unknown key 'contain' (did you mean 'contains'?)",
        f"rules/rules.yaml:{at(UNKNOWN_KEYS, 5, 'departmnt')}: unknown key 'departmnt' (did you mean 'department'?)",
        "rules/rules.yaml:6:5: unknown key 'colour'",
    ]
    assert at(UNKNOWN_KEYS, 4, "contain") == "4:17"


def test_unknown_top_level_key(rules: Path) -> None:
    assert rules_only(rules, "rule:\n  - name: a\n") == [
        "rules/rules.yaml:1:1: unknown key 'rule' (did you mean 'rules'?)"]


def test_wrong_types(rules: Path) -> None:
    assert rules_only(rules, """\
        rules:
          - name: a
            on: reply
            when:
              any: {subject: {contains: x}}
            then:
              tags: 配送
              stop: yes
          - name: [b]
            then: {priority: high}
          - just a string
        """) == [
        "rules/rules.yaml:3:9: 'on' should be a list, not text 'reply'",
        "rules/rules.yaml:5:12: 'any' should be a list, not a mapping",
        "rules/rules.yaml:7:13: 'tags' should be a list, not text '配送'",
        "rules/rules.yaml:8:13: 'stop' should be true or false, not text 'yes'",
        "rules/rules.yaml:9:11: 'name' should be text, not a list",
        "rules/rules.yaml:11:5: 'rules' should be a mapping (key: value lines), not text 'just a string'",
    ]


def test_numbers_are_accepted_as_text(rules: Path, tmp_path: Path) -> None:
    (rules / "base.yaml").write_text(BASE, encoding="utf-8")
    (rules / "rules.yaml").write_text("rules:\n  - name: 12345\n    when: {text: {contains-any: [12345]}}\n"
                                      "    then: {priority: high}\n", encoding="utf-8")
    assert load_ruleset(rules).rules[0].name == "12345"


BAD_VALUES = """\
    rules:
      - name: a
        on: [new, replies]
        when:
          all:
            - language: fr
            - attachment: {}
            - {}
            - header: {name: X-Priority}
            - header: {contains: x}
            - any: []
        then: {kind: 投诉, template: ../../etc/passwd}
      - name: b
        then: {}
    """


def test_bad_values(rules: Path) -> None:
    t = BAD_VALUES
    assert rules_only(rules, t) == [
        f"rules/rules.yaml:{at(t, 3, 'replies')}: 'on' should be 'new' or 'reply', not text 'replies'",
        f"rules/rules.yaml:{at(t, 6, 'fr')}: 'language' should be 'zh', 'en' or 'unknown', not text 'fr'",
        f"rules/rules.yaml:{at(t, 7, '{}')}: needs has, type or filename",
        (f"rules/rules.yaml:{at(t, 8, '{}')}: empty condition: use all, any, not, sender, to, subject, body, text, "
        "header, attachment or language"),
        (f"rules/rules.yaml:{at(t, 9, '{')}: needs an operator: exists, equals, contains, contains-any, "
        "contains-all, regex or glob"),
        f"rules/rules.yaml:{at(t, 10, '{')}: missing key 'name'",
        f"rules/rules.yaml:{at(t, 11, '[]')}: 'any' must not be empty",
        (f"rules/rules.yaml:{at(t, 12, '投诉')}: 'kind' should be 'problem', 'opinion', '问题反馈' or '反映', "
        "not text '投诉'"),
        (f"rules/rules.yaml:{at(t, 12, '../')}: bad template name '../../etc/passwd': use letters, digits, '-', '_' "
        "and '.' only"),
        (f"rules/rules.yaml:{at(t, 14, '{}')}: no actions: give at least one of department, priority, kind, tags, "
        "assignee, template, suppress-ack, stop"),
    ]


def test_missing_and_empty_values(rules: Path) -> None:
    assert rules_only(rules, """\
        rules:
          - when: {text: {contains: x}}
            then: {priority: high}
          - name:
            then: {priority: high}
          - name: c
            when:
            then: {priority: high}
        """) == [
        "rules/rules.yaml:2:5: missing key 'name'",
        "rules/rules.yaml:4:5: 'name' has no value",
        "rules/rules.yaml:7:5: 'when' has no value",
    ]


def test_bad_regex(rules: Path) -> None:
    assert rules_only(rules, """\
        rules:
          - name: 订单号
            when:
              body: {regex: '订单号[:：(\\d+'}
            then: {tags: [order]}
        """) == [
        "rules/rules.yaml:4:21: bad regular expression '订单号[:：(\\d+': unterminated character set at position 3",
    ]


ADDRESSES = """\
    rules:
      - name: a
        when:
          any:
            - sender: {equals: someone@}
            - sender: {domain: '@gov.cn'}
            - to: {equals: 'complaints city.example'}
        then: {assignee: wang.wu}
    """


def test_malformed_addresses_and_domains(rules: Path) -> None:
    t = ADDRESSES
    assert rules_only(rules, t) == [
        f"rules/rules.yaml:{at(t, 5, 'someone@')}: malformed address 'someone@' (write it like someone@city.example)",
        f"rules/rules.yaml:{at(t, 6, chr(39))}: write the domain without '@' ('gov.cn'), or use glob: '*@gov.cn'",
        (f"rules/rules.yaml:{at(t, 7, chr(39))}: malformed address 'complaints city.example' "
        "(write it like someone@city.example)"),
        f"rules/rules.yaml:{at(t, 8, 'wang')}: malformed address 'wang.wu' (write it like someone@city.example)",
    ]


def test_department_problems(rules: Path) -> None:
    base = BASE.replace("  general: {name: 综合受理组, staff: [desk@city.example], lead: lead@city.example}\n", """\
  general:
    name: 综合受理组
    staff: [desk@city.example, desk2]
    lead: lead@localhost
    deadlines:
      urgnt: {first-response: 30m}
      high: {resolution: 2 days}
  Bad Key: {name: x, staff: [a@city.example], lead: a@city.example}
  empty: {name: x, staff: [], lead: a@city.example}
""")
    assert problems(rules, {"base.yaml": base}) == [
        "rules/base.yaml:4:32: malformed address 'desk2' (write it like someone@city.example)",
        "rules/base.yaml:5:11: malformed address 'lead@localhost' (write it like someone@city.example)",
        "rules/base.yaml:7:7: unknown priority 'urgnt' (did you mean 'urgent'?)",
        "rules/base.yaml:8:26: bad duration '2 days': write a number and a unit (m, h, d, w), like 30m, 4h, 3d, 1d12h",
        "rules/base.yaml:9:3: bad key 'Bad Key': use lower-case letters, digits, '-' and '_', starting with a letter",
        "rules/base.yaml:10:27: 'staff' must not be empty",  # the [] after '  empty: {name: x, staff: '

    ]


def test_bad_durations(rules: Path) -> None:
    base = BASE.replace("urgent: {name: 紧急, first-response: 1h, resolution: 1d}",
                        "urgent: {name: 紧急, first-response: 0h, resolution: 1day}")
    assert problems(rules, {"base.yaml": base}) == [
        f"rules/base.yaml:{at(base, 18, '0h')}: bad duration '0h': must be longer than zero",
        (f"rules/base.yaml:{at(base, 18, '1day')}: bad duration '1day': write a number and a unit (m, h, d, w), "
        "like 30m, 4h, 3d, 1d12h"),
    ]


# -- references across files --------------------------------------------------------------------------


def test_unknown_department_and_priority(rules: Path) -> None:
    base = BASE.replace("  department: general\n  priority: normal", "  department: generl\n  priority: medium")
    assert problems(rules, {"base.yaml": base, "rules.yaml": """\
        rules:
          - name: a
            then: {department: nowhere, priority: urgentt}
        """}) == [
        "rules/base.yaml:25:15: unknown department 'generl' (did you mean 'general'?)",
        "rules/base.yaml:26:13: unknown priority 'medium' (known: high, low, normal, urgent)",
        ("rules/rules.yaml:3:24: unknown department 'nowhere' (known: general, logistics, quality, safety, "
        "suggestions)"),
        "rules/rules.yaml:3:43: unknown priority 'urgentt' (did you mean 'urgent'?)",
    ]


def test_a_reference_is_checked_even_when_the_rule_has_other_problems(rules: Path) -> None:
    assert rules_only(rules, """\
        rules:
          - name: a
            when: {body: {regex: '('}}
            then: {department: nowhere}
        """) == [
        "rules/rules.yaml:3:26: bad regular expression '(': missing ), unterminated subpattern at position 0",
        ("rules/rules.yaml:4:24: unknown department 'nowhere' (known: general, logistics, quality, safety, "
        "suggestions)"),
    ]


def test_duplicate_rule_names_within_and_across_files(rules: Path) -> None:
    assert problems(rules, {"base.yaml": BASE, "rules-1.yaml": """\
        rules:
          - {name: 配送延迟, then: {department: logistics}}
          - {name: 配送延迟, then: {priority: high}}
        """, "rules-2.yaml": """\
        rules:
          - name: 配送延迟
            then: {tags: [x]}
        """}) == [
        "rules/rules-1.yaml:3:12: duplicate rule name '配送延迟' (also at rules/rules-1.yaml:2:12)",
        "rules/rules-2.yaml:2:11: duplicate rule name '配送延迟' (also at rules/rules-1.yaml:2:12)",
    ]


def test_sections_defined_twice(rules: Path) -> None:
    assert problems(rules, {"base.yaml": BASE, "more.yaml": """\
        departments:
          quality: {name: 又一个, staff: [q2@city.example], lead: q2@city.example}
        priorities:
          normal: {first-response: 1d, resolution: 7d}
        """}) == [
        "rules/more.yaml:2:3: department 'quality' is already defined at rules/base.yaml:9:3",
        "rules/more.yaml:3:1: 'priorities' is already defined at rules/base.yaml:17:1; define it once",
    ]


def test_missing_sections(rules: Path) -> None:
    assert problems(rules, {"rules.yaml": "rules: []\n"}) == [
        "rules/rules.yaml:1:1: no 'priorities' section in any rule file",
        "rules/rules.yaml:1:1: no 'defaults' section in any rule file",
    ]


def test_no_rule_files(rules: Path) -> None:
    (rules / "notes.txt").write_text("not a rule file")
    (rules / ".#rules.yaml").write_text("editor lock file")
    with pytest.raises(RulesError) as caught:
        load_ruleset(rules)
    assert [str(p) for p in caught.value.problems] == ["rules:1:1: no rule files (*.yaml) found"]


# -- the file itself ----------------------------------------------------------------------------------


def test_yaml_syntax_error(rules: Path) -> None:
    assert rules_only(rules, """\
        rules:
          - name: a
            then: {priority: high
          - name: b
        """) == ["rules/rules.yaml:4:9: YAML: expected ',' or '}', but got ':'"]


def test_duplicate_keys_are_errors_not_silently_merged(rules: Path) -> None:
    assert rules_only(rules, """\
        rules:
          - name: a
            then: {priority: high}
            then: {priority: low}
        """) == ['rules/rules.yaml:4:5: YAML: found duplicate key "then"']


def test_yaml_1_2_on_and_no_stay_strings(rules: Path) -> None:
    ruleset = load_ruleset_with(rules, """\
        rules:
          - name: a
            on: [new, reply]
            when: {header: {name: Auto-Submitted, equals: no}}
            then: {priority: high}
        """)
    assert ruleset.rules[0].on == frozenset({"new", "reply"})


def load_ruleset_with(directory: Path, text: str):  # type: ignore[no-untyped-def]
    (directory / "base.yaml").write_text(BASE, encoding="utf-8")
    (directory / "rules.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_ruleset(directory)


def test_empty_file_and_wrong_root(rules: Path) -> None:
    assert problems(rules, {"base.yaml": BASE, "a.yaml": "", "b.yaml": "- name: x\n"}) == [
        "rules/a.yaml:1:1: the file is empty",
        "rules/b.yaml:1:1: the file must be a mapping with departments, priorities, kinds, defaults and/or rules",
    ]


def test_not_utf8(rules: Path) -> None:
    (rules / "base.yaml").write_text(BASE, encoding="utf-8")
    (rules / "rules.yaml").write_bytes("rules:\n  - name: 快递\n".encode("gbk"))
    with pytest.raises(RulesError) as caught:
        load_ruleset(rules)
    assert [str(p) for p in caught.value.problems] == ["rules/rules.yaml:2:11: not UTF-8 text; save the file as UTF-8"]


def test_all_problems_of_all_files_at_once_in_file_and_position_order(rules: Path) -> None:
    base = BASE.replace("lead: lead@city.example}", "lead: nobody}", 1)
    text = "rules:\n  - {name: a, then: {priority: hihg}, when: {subjekt: {}}}\n"
    assert problems(rules, {"base.yaml": base, "rules.yaml": text}) == [
        f"rules/base.yaml:{at(base, 2, 'nobody')}: malformed address 'nobody' (write it like someone@city.example)",
        f"rules/rules.yaml:{at(text, 2, 'hihg')}: unknown priority 'hihg' (did you mean 'high'?)",
        f"rules/rules.yaml:{at(text, 2, 'subjekt')}: unknown key 'subjekt' (did you mean 'subject'?)",
    ]


# -- the check command --------------------------------------------------------------------------------


def test_check_prints_problems_and_fails(rules: Path) -> None:
    (rules / "base.yaml").write_text(BASE, encoding="utf-8")
    (rules / "rules.yaml").write_text("rules:\n  - {name: a, then: {priority: hihg}}\n", encoding="utf-8")
    out = io.StringIO()
    assert check(rules, out) == 1
    assert out.getvalue() == "rules/rules.yaml:2:32: unknown priority 'hihg' (did you mean 'high'?)\n"


def test_check_ok(rules: Path) -> None:
    (rules / "base.yaml").write_text(BASE, encoding="utf-8")
    (rules / "rules.yaml").write_text("rules:\n  - {name: a, then: {priority: high}}\n", encoding="utf-8")
    out = io.StringIO()
    assert check(rules, out) == 0
    assert out.getvalue().startswith("ok: 1 rules, 5 departments, 4 priorities (version ")
