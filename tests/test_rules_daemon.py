"""The rules as the running daemon applies them: routing, explanation, dry run, follow-ups, reload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mails
from conftest import REPO, Env
from feedbackd.service import Daemon


def run_once(env: Env) -> None:
    daemon = Daemon(env.settings)
    daemon.run_once()
    daemon.engine.dispose()


def cases(env: Env) -> list[dict]:
    return json.loads(env.cli("cases", "list", "--json").stdout)


def by_requester(env: Env) -> dict[str, dict]:
    return {c["requester"]: c for c in cases(env)}


def test_the_daemon_routes_by_the_shipped_rules_and_explains_why(env_db: Env) -> None:
    env = env_db
    env.mailbox.append(
        mails.plain(sender="a@qq.example", subject="紧急：楼道有燃气泄漏", body="味道很大，请马上来人。"),
        mails.plain(sender="b@163.example", subject="支付失败", body="缴费时支付失败，但是扣款了。", charset="gbk"),
        mails.english(sender="c@outlook.example", subject="Suggestion for the park",
                      body="I suggest adding more benches. Great work on the lights!"),
    )
    run_once(env)
    got = by_requester(env)
    assert (got["a@qq.example"]["department"], got["a@qq.example"]["priority"]) == ("safety", "urgent")
    assert (got["b@163.example"]["department"], got["b@163.example"]["priority"]) == ("payments", "high")
    assert got["c@outlook.example"]["kind"] == "opinion"
    assert got["c@outlook.example"]["resolution_due"] is None  # 反映: no resolution deadline
    assert got["a@qq.example"]["first_response_due"] is not None
    shown = env.cli("cases", "show", got["a@qq.example"]["id"])
    assert "紧急/安全 urgent and safety" in shown.stdout and "rules.yaml:" in shown.stdout
    detail = json.loads(env.cli("cases", "show", got["a@qq.example"]["id"], "--json").stdout)
    assert detail["routing"]["hits"][-1]["rule"] == "紧急/安全 urgent and safety"
    # each matched rule names what matched: the rule's own words, as written
    assert detail["routing"]["hits"][-1]["matched"] == ["紧急", "燃气"]
    assert "matched: 紧急, 燃气" in [line.strip() for line in shown.stdout.splitlines()]
    # the opinion kind chose the lighter acknowledgement
    acks = {a.rcpt_tos[0]: a for a in env.sink.wait_for(3)}
    opinion = acks["c@outlook.example"].message.get_body(("plain",)).get_content()
    assert "Your opinion has been recorded" in opinion


def test_the_dry_run_agrees_with_the_daemon(env: Env, tmp_path: Path) -> None:
    raw = mails.plain(sender="d@qq.example", subject="快递十天没送到", body="订单号 20261120-0387，物流不更新。")
    eml = tmp_path / "mail.eml"
    eml.write_bytes(raw)
    dry = subprocess.run([sys.executable, "-m", "feedbackd", "rules", "test", str(eml), "--rules",
                          str(REPO / "rules"), "--json"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    decision = json.loads(dry.stdout)["decision"]
    env.mailbox.append(raw)
    run_once(env)
    (case,) = cases(env)
    assert case["department"] == decision["department"] == "logistics"
    assert case["priority"] == decision["priority"]
    assert case["kind"] == decision["kind"]
    assert case["tags"] == decision["tags"]


def test_a_reply_can_raise_the_priority(env_db: Env) -> None:
    env = env_db
    env.mailbox.append(mails.plain(subject="小区路灯不亮", message_id="lamp@qq.example"))
    run_once(env)
    (case,) = cases(env)
    assert case["priority"] == "normal"
    before = case
    env.mailbox.append(mails.plain(subject=f"Re: [{case['id']}] 小区路灯不亮", body="一个星期了还没有解决！",
                                   references=["lamp@qq.example"]))
    run_once(env)
    (case,) = cases(env)
    assert case["priority"] == "high" and case["message_count"] == 2
    events = json.loads(env.cli("cases", "show", case["id"], "--json").stdout)["events"]
    raised = next(e for e in events if e["kind"] == "priority-raised")
    assert raised["detail"]["from"] == "normal" and raised["detail"]["to"] == "high"
    # the high priority's shorter first-response deadline (4h) replaced normal's (1d)
    assert case["first_response_due"] < before["first_response_due"]


def _daemon(env: Env) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "feedbackd", "run"],
                            env={**os.environ, "FEEDBACKD_CONFIG": str(env.config_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_cases(env: Env, count: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cases(env)
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise AssertionError(f"expected {count} cases, have {len(cases(env))}")


def test_rule_edits_take_effect_on_the_running_daemon_and_bad_edits_do_not(env: Env, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    env.reconfigure(rules=rules)
    daemon = _daemon(env)
    try:
        time.sleep(1.5)
        env.mailbox.append(mails.plain(sender="e1@qq.example", subject="井盖丢失", body="路口的井盖不见了。"))
        first = {c["requester"]: c for c in _wait_cases(env, 1)}
        assert first["e1@qq.example"]["department"] == "general"

        text = (rules / "rules.yaml").read_text(encoding="utf-8")
        new_rule = ("rules:\n  - name: 井盖 manhole covers\n    when: {text: {contains: 井盖}}\n"
                    "    then: {department: safety, priority: urgent, stop: true}\n")
        (rules / "rules.yaml").write_text(text.replace("rules:\n", new_rule, 1), encoding="utf-8")
        time.sleep(3)  # the watcher waits for the file to settle for a second
        env.mailbox.append(mails.plain(sender="e2@qq.example", subject="又一个井盖丢失", body="井盖没了。"))
        second = {c["requester"]: c for c in _wait_cases(env, 2)}
        assert (second["e2@qq.example"]["department"], second["e2@qq.example"]["priority"]) == ("safety", "urgent")

        good = (rules / "rules.yaml").read_text(encoding="utf-8")
        (rules / "rules.yaml").write_text(good.replace("department: safety, priority: urgent",
                                                       "department: nowhere, priority: urgent", 1),
                                          encoding="utf-8")
        time.sleep(3)
        env.mailbox.append(mails.plain(sender="e3@qq.example", subject="第三个井盖", body="井盖又丢了。"))
        third = {c["requester"]: c for c in _wait_cases(env, 3)}
        assert third["e3@qq.example"]["department"] == "safety"  # the previous, valid rules still apply
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert "rules.yaml:" in errors[0] and "nowhere" in errors[0]
    assert "rules reloaded" in output
    assert len(env.sink.wait_for(3)) == 3


def test_a_rule_naming_a_missing_template_still_gets_the_citizen_an_answer(env: Env, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    text = (rules / "rules.yaml").read_text(encoding="utf-8")
    (rules / "rules.yaml").write_text(text.replace("rules:\n", (
        "rules:\n  - name: odd template\n    when: {subject: {contains: 模板}}\n"
        "    then: {template: no-such-template, stop: true}\n"), 1), encoding="utf-8")
    env.reconfigure(rules=rules)
    check = env.cli("rules", "check", str(rules))  # with a configuration, templates are checked too
    assert check.returncode == 1 and "'no-such-template'" in check.stdout and "zh-CN" in check.stdout
    assert env.cli("rules", "check", str(REPO / "rules")).returncode == 0
    env.mailbox.append(mails.plain(subject="模板测试"))
    run_once(env)
    (ack,) = env.sink.wait_for(1)
    assert "我们已收到您的反馈" in ack.message["Subject"]
    (case,) = cases(env)
    events = json.loads(env.cli("cases", "show", case["id"], "--json").stdout)["events"]
    assert any(e["kind"] == "template-missing" for e in events)
