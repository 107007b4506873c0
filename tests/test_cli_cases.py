"""``feedbackd cases reply/note/resolve/assign/move/status``: an admin at a shell does what staff mail commands do.

Run in-process against a SQLite database with the shipped rules; every change is an event by
"admin", a refused command changes nothing, and an answer to the citizen waits in the outbox.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from feedbackd.cli import main
from feedbackd.store import records
from feedbackd.store.db import connect
from feedbackd.store.models import utcnow

VERBS = ("reply", "note", "resolve", "assign", "move", "status")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "feedbackd.toml"
    path.write_text(f"""[mailbox]\naddress = "feedback@city.example"\nname = "市民反馈中心"\n
[imap]\nhost = "127.0.0.1"\nusername = "feedback"\n[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\n
[database]\nurl = "sqlite:///{tmp_path / 'f.db'}"\n[paths]\nrules = "{REPO / 'rules'}"
templates = "{REPO / 'templates'}"\ndata = "{tmp_path / 'data'}"\n
[staff]\nsecret = "0123456789abcdef0123456789abcdef"\n""", encoding="utf-8")
    engine = connect(f"sqlite:///{tmp_path / 'f.db'}")
    now = utcnow()
    with engine.begin() as conn:
        case_id = records.insert_case(conn, {
            "status": "new", "kind": "problem", "subject": "小区路灯不亮", "requester": "zhang.san@qq.com",
            "requester_name": "张三", "language": "zh-CN", "priority": "normal", "department": "general",
            "tags": [], "routing": {}, "message_count": 1, "created_at": now, "updated_at": now})
        assert case_id == 1
    engine.dispose()
    return path


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return status, out, err


def show(config: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    status, out, err = cli(config, capsys, "cases", "show", "FB-000001", "--json")
    assert status == 0, err
    return json.loads(out)


@pytest.mark.parametrize("verb", VERBS)
def test_every_command_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["cases", verb, "--help"])
    assert done.value.code == 0 and "ID" in capsys.readouterr().out


def test_assign_move_and_status_change_the_case_as_admin(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(config, capsys, "cases", "assign", "FB-000001", "Desk2@City.Example")[0] == 0
    assert cli(config, capsys, "cases", "status", "FB-000001", "waiting")[0] == 0
    assert cli(config, capsys, "cases", "move", "FB-000001", "商品质量组")[0] == 0  # by its Chinese name
    case = show(config, capsys)
    assert (case["status"], case["department"]) == ("waiting", "quality")
    assert case["assignee"] is None  # desk2@ works for the general desk, not for quality: its staff get it
    changes = [(e["kind"], e["detail"].get("to"), e["actor"]) for e in case["events"]]
    assert ("assigned", "desk2@city.example", "admin") in changes
    assert ("status", "waiting", "admin") in changes and ("moved", "quality", "admin") in changes
    assert all(e["actor"] == "admin" for e in case["events"])
    assert case["satisfaction"] is None and case["linked_case"] is None


def test_a_refused_command_changes_nothing_and_says_why(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = show(config, capsys)
    status, out, err = cli(config, capsys, "cases", "assign", "FB-000001", "evil@example.net")
    assert status == 1 and out == ""
    assert err.strip() == "feedbackd: FB-000001: #assign evil@example.net: not staff or lead of any department"
    status, _, err = cli(config, capsys, "cases", "status", "FB-000001", "resolved")  # a result needs its text
    assert status == 1 and "#resolve" in err
    assert show(config, capsys) == before


def test_a_missing_case_or_status_is_one_line_not_a_traceback(config: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = cli(config, capsys, "cases", "note", "FB-000099", "--text", "x")
    assert status == 1 and err.strip() == "feedbackd: no case FB-000099"
    with pytest.raises(SystemExit) as done:
        main(["--config", str(config), "cases", "status", "FB-000001", "finished"])
    assert done.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_note_stays_internal_reply_and_resolve_queue_mail_to_the_citizen(config: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(config, capsys, "cases", "note", "FB-000001", "--text", "已电话联系市民")[0] == 0
    assert outbox(config, capsys) == []
    assert show(config, capsys)["status"] == "new"

    status, out, err = cli(config, capsys, "cases", "reply", "FB-000001", "--text", "维修人员明天上午到场。")
    assert status == 0 and out.startswith("FB-000001"), err
    assert show(config, capsys)["status"] == "in-progress"
    assert [(o["purpose"], o["to"]) for o in outbox(config, capsys)] == [("progress", "zhang.san@qq.com")]

    assert cli(config, capsys, "cases", "resolve", "FB-000001", "--text", "路灯已修复。")[0] == 0
    case = show(config, capsys)
    assert case["status"] == "resolved" and case["resolved_at"] is not None
    assert [o["purpose"] for o in outbox(config, capsys)] == ["progress", "result"]
    assert all(o["to"] == "zhang.san@qq.com" for o in outbox(config, capsys))


def outbox(config: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    status, out, err = cli(config, capsys, "outbox", "list", "--json")
    assert status == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return sorted(rows, key=lambda r: int(r["id"]))
