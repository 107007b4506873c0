"""The learned routing suggestion: training and cross-validation, the file, and the three modes.

The modes run on the daemon against Dovecot and the SMTP sink: the desk's cases (some corrected
by ``#move``) train the model through ``feedbackd rules learn``, then ``off``, ``suggest`` and
``route`` each file new mail; a new desk with no cases trains from a labelled folder (``--add``).
The CLI runs in this process (``cli.main``): a subprocess would add seconds of imports and prove
nothing more.  The labelled set is read and cross-validated once for the module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML
from sqlalchemy import Connection, insert
from sqlmodel import select

import mails
from conftest import REPO, Env, run_once
from feedbackd.cases import CaseNumbers
from feedbackd.cli import main
from feedbackd.mail.parse import parse_message
from feedbackd.routing import learned, load_ruleset
from feedbackd.routing.evaluation import Labelled, load_labelled
from feedbackd.routing.learned import Example, LearnedRouter, Suggestion
from feedbackd.staff.commands import Command
from feedbackd.staff.loop import act
from feedbackd.store import records
from feedbackd.store.db import connect, session
from feedbackd.store.models import Case, utcnow
from feedbackd.views import case_detail

EVAL_SET = REPO / "tests" / "routing-eval"
RULES = load_ruleset(REPO / "rules")

# Mail no shipped rule routes (a library card); the desk moves such cases to the service department.
LIBRARY = [
    ("借书证办理", "请问社区图书馆的借书证怎么办理，需要带户口本吗？"),
    ("图书馆借书证", "我想给孩子办一张图书馆借书证，周末能办吗？"),
    ("借书证到期", "社区图书馆的借书证到期了，续办要去哪个窗口？"),
    ("借书证丢了", "我的图书馆借书证丢了，补办借书证要多久？"),
]
ROUTED = [  # mail the shipped rules route: the desk's other departments
    ("快递一直没送到", "快递十天没送到，物流信息不更新，包裹是不是丢了？"),
    ("快递丢件", "快递员说已经签收，但是我没收到包裹。"),
    ("快递送错地址", "快递送到了别的小区，包裹到现在也没找到。"),
    ("快递延误", "快递三天了还没送到，物流一直不更新。"),
    ("支付失败但扣款了", "缴费时支付失败，但是银行卡扣款了，请退款。"),
    ("重复扣款", "同一笔订单扣款两次，要求退款。"),
    ("退款没到账", "退款申请了两周还没有到账。"),
    ("支付失败", "支付失败了三次，钱却被扣了。"),
]


def texts(pairs: list[tuple[str, str]]) -> list[str]:
    return [learned.model_text(subject, body) for subject, body in pairs]


@pytest.fixture(scope="module")
def items() -> list[Labelled]:
    return load_labelled(EVAL_SET)


@pytest.fixture(scope="module")
def eval_cv(items: list[Labelled]) -> dict:
    """``rules learn --eval``'s figures for the labelled set: 5-fold cross-validation and route."""
    return learned.eval_report(items, RULES, 0.7)


def cli(env: Env, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``feedbackd ARGS`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(["--config", str(env.config_path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cross_validation_on_the_labelled_set(items: list[Labelled], eval_cv: dict) -> None:
    examples = learned.examples_of(items)
    cv = eval_cv
    assert cv["cases"] == len(examples) >= 300 and cv["folds"] == 5
    # eight departments and two kinds: far above chance (1/8 and the majority kind's share)
    assert cv["department_accuracy"] > 0.6
    majority = max(learned.label_counts(examples, "kind").values()) / len(examples)
    assert cv["kind_accuracy"] > majority
    # the rules alone beside the rules with learned = "route": the model only fills in for the defaults
    route = cv["route"]
    assert set(route) == {"min_confidence", "routed_by_model", "rules", "rules_with_route"}
    assert route["routed_by_model"] <= sum(not any("department" in h.changes for h in RULES.evaluate(i.message).hits)
                                           for i in items)


def test_a_new_desk_starts_from_a_labelled_folder(env: Env, items: list[Labelled], eval_cv: dict,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """No cases yet: ``rules learn`` refuses and names --add; with --add the folder alone trains the model
    the daemon then suggests with."""
    code, _, err = cli(env, capsys, "rules", "learn")
    assert code == 1 and "0 case(s) to learn from" in err and "--add DIR" in err
    assert not learned.model_path(env.settings).exists()

    code, out, err = cli(env, capsys, "rules", "learn", "--json", "--add", str(EVAL_SET))
    assert code == 0, err
    report = json.loads(out)
    examples = learned.examples_of(items)
    assert report["sources"] == {"desk_cases": 0, "folders": {str(EVAL_SET): len(items)}}
    assert report["cases"] == len(items)
    # cross-validated over the training examples: here the labelled set alone, so its own figures
    assert report["cross_validation"] == {k: eval_cv[k] for k in ("folds", "cases", "department_accuracy",
                                                                  "kind_accuracy")}
    path = Path(report["model"])
    assert path == learned.model_path(env.settings) and stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = learned.load(path)
    assert loaded.meta["format"] == learned.FORMAT and loaded.meta["sources"] == report["sources"]
    assert loaded.meta["counts"]["department"] == learned.label_counts(examples, "department")
    model = learned.train(examples)  # the same examples in this process: the same suggestions
    for subject, body in [("快递一直没送到", "包裹十天没到，物流不更新"), ("Refund", "I was charged twice")]:
        assert loaded.suggest(subject, body).department == model.suggest(subject, body).department
    # no text in the file: numbers, label names and the JSON header only
    with zipfile.ZipFile(path) as npz:
        names = sorted(npz.namelist())
    assert names == sorted(f"{n}.npy" for n in ["meta", "columns", "idf", "department_labels", "department_coef",
                                                "department_intercept", "kind_labels", "kind_coef",
                                                "kind_intercept"])

    env.reconfigure('[routing]\nlearned = "suggest"\n')
    subject, body = "快递一直没送到", "包裹十天没到，物流信息也不更新，是不是丢了？"
    env.mailbox.append(mails.plain(sender="new@qq.example", subject=subject, body=body))
    run_once(env)
    [case] = _cases(env).values()
    expected = loaded.suggest(subject, body)
    assert expected.department == "logistics"
    assert case["routing"]["learned"] | {"explanation": None} == {
        "mode": "suggest", **expected.to_dict(), "applied": [], "explanation": None}


def _folder(root: Path, name: str, files: list[str], *, beside: bool = False) -> Path:
    """A labelled folder of some of the set's mails: one labels.yaml, or a .yaml beside each mail."""
    labels = YAML(typ="safe").load((EVAL_SET / "labels.yaml").read_text(encoding="utf-8"))
    folder = root / name
    folder.mkdir()
    for file in files:
        shutil.copy(EVAL_SET / file, folder / file)
        if beside:
            (folder / file).with_suffix(".yaml").write_text(json.dumps(labels[file]), encoding="utf-8")
    if not beside:
        (folder / "labels.yaml").write_text(json.dumps({f: labels[f] for f in files}), encoding="utf-8")
    return folder


def test_folders_join_the_desk_cases_and_a_holdout_is_scored(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    engine = connect(env.settings.database.url)
    try:
        with engine.begin() as conn:
            _case(conn, *LIBRARY[0], "service", "problem")
            _case(conn, *ROUTED[0], "logistics", "problem")
    finally:
        engine.dispose()
    files = sorted(p.name for p in EVAL_SET.glob("*.eml"))
    seed_a = _folder(env.tmp, "seed-a", files[:15])
    seed_b = _folder(env.tmp, "seed-b", files[15:30], beside=True)
    held = _folder(env.tmp, "held", files[29:50])  # its first mail is also in seed-b

    code, _, err = cli(env, capsys, "rules", "learn", "--add", str(seed_a), "--holdout", str(seed_a))
    assert code == 1 and "also added to the training data" in err

    code, out, err = cli(env, capsys, "rules", "learn", "--add", str(seed_a), "--add", str(seed_b),
                         "--holdout", str(held))
    assert code == 0, err
    assert out.startswith(f"trained on 32 examples (2 from the desk's cases, 15 from {seed_a}, 15 from {seed_b})")
    assert f"the trained model on the held-out set {held} (21 mails): department " in out
    assert "warning: 1 of its mails are also in the training data" in out
    assert "on the held-out set, the rules alone: department" in out

    code, out, err = cli(env, capsys, "rules", "learn", "--json", "--add", str(seed_a), "--add", str(seed_b),
                         "--holdout", str(held), "--eval", str(seed_b))
    assert code == 0, err
    report = json.loads(out)
    assert report["sources"] == {"desk_cases": 2, "folders": {str(seed_a): 15, str(seed_b): 15}}
    assert report["cases"] == report["cross_validation"]["cases"] == 32
    assert report["eval"]["cases"] == 15 and report["eval"]["dir"] == str(seed_b) and "route" in report["eval"]
    holdout = report["holdout"]
    model = learned.load(Path(report["model"]))
    labelled = load_labelled(held)
    found = [model.suggest(i.message.subject, i.message.text) for i in labelled]
    for name in learned.FIELDS:  # the saved model's own suggestions against the hand labels
        right = sum(getattr(s, name) == i.label.get(name) for s, i in zip(found, labelled, strict=True))
        assert holdout[f"{name}_accuracy"] == round(right / 21, 4)
    assert holdout["cases"] == 21 and holdout["dir"] == str(held) and holdout["shared_with_training"] == 1
    assert set(holdout["route"]) == {"min_confidence", "routed_by_model", "rules", "rules_with_route"}
    rules_right = sum(RULES.evaluate(i.message).department == i.label.department for i in labelled)
    assert holdout["route"]["rules"]["department_accuracy"] == round(rules_right / 21, 4)


def test_too_few_cases_or_one_label_is_refused() -> None:
    few = [Example(t, "general", "problem") for t in texts(LIBRARY)]
    with pytest.raises(learned.ModelError, match="at least 10"):
        learned.train(few)
    one = few * 3
    with pytest.raises(learned.ModelError, match="same department"):
        learned.train(one)


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / learned.MODEL_FILE
    np.savez(path, meta=np.array(json.dumps({"format": "something-else/9"})))
    with pytest.raises(learned.ModelError, match="format"):
        learned.load(path)
    path.write_bytes(b"not a model")
    with pytest.raises(learned.ModelError, match="cannot read"):
        learned.load(path)


def _case(conn: Connection, subject: str, body: str | None, department: str, kind: str, *more_bodies: str,
          **more: object) -> int:
    """A case stored as intake stores one, with its inbound mails (none when ``body`` is None)."""
    case_id = records.insert_case(conn, {"subject": subject, "requester": "c@qq.example", "department": department,
                                         "kind": kind, "tags": [], "routing": {}, **more})
    bodies = [] if body is None else [body, *more_bodies]
    for i, text in enumerate(bodies):
        conn.execute(insert(records.MESSAGES), {"case_id": case_id, "direction": "in", "text": text,
                                                "dedupe_key": f"in:{case_id}:{i}", "subject": subject,
                                                "references": [], "to_addrs": [], "cc_addrs": [], "defects": []})
    return case_id


def test_the_desk_cases_are_the_final_department_and_the_first_mail(db_url: str) -> None:
    """Both databases: purged and erased cases are left out; the text is the subject and the first mail."""
    engine = connect(db_url)
    try:
        with engine.begin() as conn:
            _case(conn, "借书证办理", "借书证怎么办", "service", "problem", "补充：在哪个窗口")
            _case(conn, "快递没到", "包裹十天没到", "logistics", "opinion")
            _case(conn, "已清除", "[purged]", "quality", "problem", purged_at=utcnow())
            erased = _case(conn, "删除我的数据", "请删除", "privacy", "problem")
            records.add_events(conn, erased, [("erased", {"messages": 1})])
            _case(conn, "没有邮件", None, "general", "problem")  # no inbound mail: nothing to read
        found = learned.desk_examples(engine)
    finally:
        engine.dispose()
    assert found == [Example(learned.model_text("借书证办理", "借书证怎么办"), "service", "problem"),
                     Example(learned.model_text("快递没到", "包裹十天没到"), "logistics", "opinion")]


def _decision(subject: str, body: str):  # type: ignore[no-untyped-def]
    return RULES.evaluate(parse_message(mails.plain(subject=subject, body=body)))


def test_route_takes_the_department_only_where_no_rule_set_it() -> None:
    sure = Suggestion("safety", 0.9, "opinion", 0.95)
    unrouted = _decision(*LIBRARY[0])
    assert not any("department" in hit.changes for hit in unrouted.hits)
    routed, info = learned.apply(unrouted, sure, "route", 0.7, RULES)
    assert (routed.department, routed.kind) == ("safety", "opinion")
    assert routed.priority == unrouted.priority == "normal"  # never raised, even for safety
    due = RULES.deadlines("normal", "safety", "opinion")
    assert (routed.first_response_due, routed.resolution_due) == (due.first_response, due.resolution)
    assert routed.template == RULES.kinds["opinion"].template
    assert info["applied"] == ["department", "kind"]
    assert "department from the learned model, confidence 0.90" in info["explanation"]

    ruled = _decision(*ROUTED[0])  # a rule sends it to logistics
    kept, info = learned.apply(ruled, sure, "route", 0.7, RULES)
    assert kept == ruled and info["applied"] == []
    assert any("a rule set the department" in line for line in info["explanation"])

    unsure = Suggestion("safety", 0.55, "opinion", 0.95)
    partly, info = learned.apply(unrouted, unsure, "route", 0.7, RULES)
    assert (partly.department, partly.kind) == (unrouted.department, "opinion")
    assert any("below learned_min_confidence 0.70" in line for line in info["explanation"])

    agrees, info = learned.apply(unrouted, Suggestion("general", 0.9, "problem", 0.9), "route", 0.7, RULES)
    assert agrees == unrouted and info["applied"] == []
    assert "department general: the learned model agrees (confidence 0.90)" in info["explanation"]

    suggested, info = learned.apply(unrouted, sure, "suggest", 0.7, RULES)
    assert suggested == unrouted
    assert info | {"explanation": None} == {"mode": "suggest", "department": "safety", "department_confidence": 0.9,
                                            "kind": "opinion", "kind_confidence": 0.95, "applied": [],
                                            "explanation": None}


def test_no_model_warns_once_and_a_new_file_is_picked_up(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    settings = env.reconfigure('[routing]\nlearned = "route"\n')
    now = [0.0]
    with caplog.at_level(logging.WARNING, logger="feedbackd.routing.learned"):
        router = LearnedRouter(settings, interval=1.0, clock=lambda: now[0])
        decision = _decision(*LIBRARY[0])
        msg = parse_message(mails.plain(subject=LIBRARY[0][0], body=LIBRARY[0][1]))
        for _ in range(3):
            now[0] += 2
            assert router.route(decision, msg, RULES) == (decision, None)
    assert len(caplog.records) == 1 and "there is no model" in caplog.records[0].getMessage()
    examples = [Example(t, "service", "problem") for t in texts(LIBRARY)] + [
        Example(t, "logistics" if i < 4 else "payments", "opinion" if i % 3 == 0 else "problem")
        for i, t in enumerate(texts(ROUTED))]
    learned.save(learned.train(examples), learned.model_path(settings))
    assert router.route(decision, msg, RULES)[1] is None  # checked at most once per interval
    now[0] += 2
    _, info = router.route(decision, msg, RULES)
    assert info is not None and info["department"] == "service"


def _cases(env: Env) -> dict[str, dict]:
    """Every case as ``cases show --json`` prints it, by subject (read in this process: faster)."""
    settings = env.settings
    numbers = CaseNumbers(settings.cases)
    engine = connect(settings.database.url)
    try:
        with session(engine) as db:
            return {c.subject: case_detail(db, c, numbers) for c in db.exec(select(Case))}
    finally:
        engine.dispose()


def test_the_three_modes_on_the_daemon(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    # The desk's history: mail the rules route, and library mail the staff moved to the service desk.
    env.mailbox.append(*[mails.plain(sender=f"c{i}@qq.example", subject=s, body=b)
                         for i, (s, b) in enumerate(LIBRARY + ROUTED)])
    env.mailbox.append(mails.english(sender="fan@outlook.example", subject="Suggestion",
                                     body="I suggest longer opening hours. Great work!"),
                       mails.english(sender="fan2@outlook.example", subject="Praise",
                                     body="Thank you, I suggest keeping the evening hours."))
    run_once(env)
    cases = _cases(env)
    engine = connect(env.settings.database.url)
    try:
        for subject, _ in LIBRARY:
            case = cases[subject]
            assert case["department"] == "general"  # no rule: the defaults
            act(engine, env.settings, case["id"], [Command("move", "service", "#move service")], "", "admin")
    finally:
        engine.dispose()

    code, out, err = cli(env, capsys, "rules", "learn", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["cases"] == len(LIBRARY) + len(ROUTED) + 2
    assert report["sources"] == {"desk_cases": report["cases"], "folders": {}}
    finally_in = Counter(c["department"] for c in _cases(env).values())
    assert report["counts"]["department"] == dict(finally_in)  # the departments the cases ended in
    assert finally_in["service"] >= len(LIBRARY)  # the #move corrections count
    assert report["cross_validation"]["folds"] == 5
    model = Path(report["model"])
    assert model == env.settings.paths.data / learned.MODEL_FILE and stat.S_IMODE(model.stat().st_mode) == 0o600

    def file(mode: str, *pairs: tuple[str, str]) -> dict[str, dict]:
        env.reconfigure(f'[routing]\nlearned = "{mode}"\n')
        env.mailbox.append(*[mails.plain(sender=f"{mode}{i}@163.example", subject=s, body=b)
                             for i, (s, b) in enumerate(pairs)])
        run_once(env)
        found = _cases(env)
        return {s: found[s] for s, _ in pairs}

    off = file("off", ("借书证能续借吗", "图书馆借书证到期后还能续借吗？"))
    assert "learned" not in off["借书证能续借吗"]["routing"]

    suggest = file("suggest", ("借书证年龄", "几岁的孩子可以办图书馆借书证？"))
    shown = json.loads(cli(env, capsys, "cases", "show", suggest["借书证年龄"]["id"], "--json")[1])
    assert shown == suggest["借书证年龄"]
    assert shown["department"] == "general"  # suggested, not applied
    assert shown["routing"]["learned"]["department"] == "service"
    assert shown["routing"]["learned"]["mode"] == "suggest" and shown["routing"]["learned"]["applied"] == []
    assert 0 < shown["routing"]["learned"]["department_confidence"] <= 1

    route = file("route", ("借书证办几天", "图书馆借书证办好要几天？"),
                 ("快递没送到借书证", "快递十天没送到，物流不更新，里面是图书馆借书证。"))
    taken = route["借书证办几天"]
    assert taken["department"] == "service" and taken["routing"]["department"] == "service"
    assert taken["priority"] == "normal"  # the model never raises a priority
    assert "department" in taken["routing"]["learned"]["applied"]
    text = cli(env, capsys, "cases", "show", taken["id"])[1]
    assert "learned model (route): department service (confidence" in text
    assert "department from the learned model, confidence" in text
    ruled = route["快递没送到借书证"]
    assert ruled["department"] == "logistics"  # a rule set it: the model does not override
    assert ruled["routing"]["learned"]["applied"] == []
    assert os.path.exists(model)
