"""``feedbackd rules eval``: the shipped rules on the labelled set (tests/routing-eval), and the
command's input, output and failures on a small folder."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from feedbackd.routing import load_ruleset
from feedbackd.routing.evaluation import LabelError, command, evaluate, load_labelled
from test_rules import eml, write_rules

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
EVAL = ROOT / "tests" / "routing-eval"


def test_the_shipped_rules_route_the_labelled_set() -> None:
    report = evaluate(load_ruleset(RULES), load_labelled(EVAL))
    assert len(report.outcomes) >= 300
    assert report.accuracy("department") >= 0.90, [o.item.file for o in report.misrouted()]
    assert report.accuracy("kind") >= 0.90
    assert [o.item.file for o in report.emergencies_below_top()] == []
    assert [o.item.file for o in report.praise_as_problem()] == []


def labelled_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "0001.eml").write_bytes(eml("快递一周还没到", "物流信息一直不更新。"))
    (folder / "0002.eml").write_bytes(eml("表扬快递员", "冒雨把包裹送上楼，点赞！"))
    (folder / "0003.eml").write_bytes(eml("楼道有燃气味", "很重的燃气味，请马上来人。"))
    (folder / "labels.yaml").write_text(
        "0001.eml: {department: logistics, kind: 问题反馈, priority: normal}\n"
        "0002.eml: {department: suggestions, kind: opinion, priority: low, note: praise}\n"
        "0003.eml: {department: general, kind: problem, priority: normal}\n", encoding="utf-8")
    # a label beside the mail wins over labels.yaml
    (folder / "0003.yaml").write_text("department: safety\nkind: problem\npriority: urgent\n", encoding="utf-8")
    return folder


def test_rules_eval_json(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write_rules(rules, """\
        rules:
          - name: delivery
            when: {text: {contains-any: [快递, 包裹]}}
            then: {department: logistics, stop: true}
        """)
    out = io.StringIO()
    assert command(labelled_folder(tmp_path), rules, out, as_json=True) == 0
    data = json.loads(out.getvalue())
    assert data["messages"] == 3
    assert data["accuracy"] == {"department": round(1 / 3, 4), "kind": round(2 / 3, 4), "priority": round(1 / 3, 4)}
    assert data["confusion"]["department"] == {"logistics": {"logistics": 1}, "safety": {"general": 1},
                                               "suggestions": {"logistics": 1}}
    assert data["confusion"]["kind"] == {"opinion": {"problem": 1}, "problem": {"problem": 2}}
    praise = next(m for m in data["misrouted"] if m["file"] == "0002.eml")
    assert praise["expected"] == {"department": "suggestions", "kind": "opinion", "priority": "low"}
    assert praise["got"] == {"department": "logistics", "kind": "problem", "priority": "normal"}
    assert praise["rules"] == [{"rule": "delivery", "line": 2, "matched": ["快递", "包裹"]}]
    assert data["emergencies_below_top"] == ["0003.eml"]
    assert data["praise_as_problem"] == ["0002.eml"]


def test_rules_eval_text_through_the_cli(tmp_path: Path) -> None:
    folder = labelled_folder(tmp_path)
    run = subprocess.run([sys.executable, "-m", "feedbackd", "rules", "eval", str(folder), "--rules", str(RULES)],
                         capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "3 labelled messages" in lines
    assert "department accuracy: 100.0%" in lines
    assert "emergencies below the top priority: none" in lines
    assert "praise or opinions routed as a problem: none" in lines
    assert any(line.startswith("department confusion") for line in lines)


def test_unreadable_input_exits_1(tmp_path: Path) -> None:
    folder = labelled_folder(tmp_path)
    (folder / "0004.eml").write_bytes(eml("x", "y"))
    out = io.StringIO()
    assert command(folder, RULES, out) == 1
    assert "0004.eml: no label" in out.getvalue()
    (folder / "labels.yaml").write_text("0004.eml: {department: general, kind: problem}\n", encoding="utf-8")
    with pytest.raises(LabelError, match=r"0001\.eml: no label"):
        load_labelled(folder)
    (folder / "0001.eml").unlink()
    (folder / "0002.eml").unlink()
    with pytest.raises(LabelError, match=r"0004\.eml: the label lacks priority"):
        load_labelled(folder)
    out = io.StringIO()
    assert command(tmp_path / "missing", RULES, out) == 1
    assert "not a directory" in out.getvalue()
    bad = tmp_path / "bad-rules"
    write_rules(bad, "rules:\n  - name: x\n    when: {text: {contains: 1}}\n    then: {department: nowhere}\n")
    out = io.StringIO()
    assert command(folder, bad, out) == 1
    assert "unknown department 'nowhere'" in out.getvalue()
