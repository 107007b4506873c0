"""``feedbackd report`` and the weekly report mail against a fixture whose figures are computed by hand.

Cases, messages, events and satisfaction are inserted with known times, relative to ``B``, a local
Monday some weeks ago, through ``store.records`` (which notes the report's milestones on the case as
the daemon does); the period is that week, the previous one the week before.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from conftest import REPO
from feedbackd.cli import main
from feedbackd.jobs import report
from feedbackd.jobs.base import make_context
from feedbackd.routing import load_ruleset
from feedbackd.store import records
from feedbackd.store.db import connect
from feedbackd.store.models import utcnow

ZONE = ZoneInfo("Asia/Shanghai")  # the default zone of the jobs (no [calendar] section)
TODAY = utcnow().astimezone(ZONE).date()
MONDAY = TODAY - timedelta(days=TODAY.weekday() + 21)
B = datetime.combine(MONDAY, datetime.min.time(), tzinfo=ZONE).astimezone(UTC)


def h(hours: float) -> datetime:
    return B + timedelta(hours=hours)


class Fixture:
    """Inserts rows with the times given (hours after B)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.n = 0

    def case(self, at: float, *, kind: str = "problem", department: str | None = "roads", priority: str = "normal",
             tags: list[str] | None = None, fr_due: float | None = None, res_due: float | None = None,
             paused: float | None = None, score: int | None = None) -> int:
        with self.engine.begin() as conn:
            return records.insert_case(conn, {
                "status": "open", "kind": kind, "subject": "路灯", "requester": "zhang.san@qq.com",
                "priority": priority, "department": department, "tags": tags or [], "routing": {},
                "created_at": h(at), "updated_at": h(at), "paused_at": h(paused) if paused is not None else None,
                "first_response_due": h(fr_due) if fr_due is not None else None,
                "resolution_due": h(res_due) if res_due is not None else None,
                "satisfaction": {"score": score, "text": "谢谢"} if score is not None else None})

    def mail(self, case_id: int, at: float, kind: str, direction: str = "out") -> None:
        self.n += 1
        with self.engine.begin() as conn:
            records.insert_message(conn, {"case_id": case_id, "direction": direction, "kind": kind,
                                          "dedupe_key": f"k{self.n}", "received_at": h(at), "date": h(at)})

    def event(self, case_id: int, at: float, kind: str, **detail: Any) -> None:
        with self.engine.begin() as conn:  # the way every event is written: milestones noted on the case
            records.add_events_by(conn, case_id, [(kind, detail, "staff@city.example")], h(at))


def fill(engine: Engine) -> None:
    f = Fixture(engine)
    # The period [B, B+168h).
    c1 = f.case(1, tags=["pothole"], fr_due=9, res_due=73, score=4)
    f.mail(c1, 1, "mail", "in")
    f.mail(c1, 1, "acknowledgement")  # automatic: not a response
    f.mail(c1, 3, "progress")  # first response 2 h
    f.event(c1, 11, "status", **{"from": "in-progress", "to": "resolved"})  # first resolution 10 h
    f.event(c1, 30, "status", **{"from": "resolved", "to": "open"})  # #reopen
    f.event(c1, 35, "status", **{"from": "open", "to": "resolved"})
    c2 = f.case(10, priority="urgent", tags=["pothole", "night"], fr_due=12, res_due=34, score=2)
    f.mail(c2, 16, "result")  # 6 h, after its due time (12): a breach
    f.event(c2, 16, "status", **{"from": "open", "to": "resolved"})  # 6 h, in time
    f.event(c2, 20, "reopened", **{"from": "resolved"})
    f.event(c2, 40, "status", **{"from": "open", "to": "resolved"})  # late, but only the first counts
    c3 = f.case(24, kind="opinion", department="water", fr_due=32)
    f.event(c3, 26, "answered", final=False)  # an event alone is not a mail to the citizen
    f.mail(c3, 30, "still-handling")  # the jobs' note: not a staff answer
    f.mail(c3, 50, "progress")  # 26 h, breach
    f.case(48, department=None, priority="low", tags=["night"], fr_due=56, res_due=120)  # nothing: both breached
    f.case(100, department="water", fr_due=108, res_due=170, paused=104)  # waiting since before its due times
    c6 = f.case(150, fr_due=158, res_due=160, score=5)
    f.mail(c6, 151, "progress")  # 1 h
    f.event(c6, 170, "status", **{"from": "in-progress", "to": "closed"})  # closed unresolved: 20 h, breach
    # The period before [B-168h, B).
    c7 = f.case(-24, fr_due=-16, res_due=48, score=3)
    f.mail(c7, -20, "progress")
    f.event(c7, -4, "status", **{"from": "in-progress", "to": "resolved"})
    # Outside both.
    f.case(169, tags=["late"])
    f.case(-200, tags=["early"])


def iso(hours: float) -> str:
    return h(hours).astimezone(ZONE).isoformat()


def expected() -> dict[str, Any]:
    # First responses 2, 6, 26, 1 → [1, 2, 6, 26]: median (2+6)/2 = 4, p90 at rank 0.9·3 = 2.7: 6 + 0.7·20 = 20.
    # Resolutions 10, 6, 20 → [6, 10, 20]: median 10, p90 at rank 1.8: 10 + 0.8·10 = 18.
    # Breaches: first response c2, c3, c4 (c5 waits since before its due time); resolution c4, c6.
    # Satisfaction 4, 2, 5: 3 answers, mean 11/3.
    return {
        "period": {"from": iso(0), "to": iso(168)},
        "cases": 6,
        "by_kind": {"opinion": 1, "problem": 5},
        "by_department": {"-": 1, "roads": 3, "water": 2},
        "by_priority": {"low": 1, "normal": 4, "urgent": 1},
        "by_tag": {"night": 2, "pothole": 2},
        "first_response": {"median_hours": 4.0, "p90_hours": 20.0},
        "resolution": {"median_hours": 10.0, "p90_hours": 18.0},
        "breaches": {"first_response": 3, "resolution": 2},
        "reopened": 2,
        "satisfaction": {"answers": 3, "mean": 3.67},
        "previous": {
            "period": {"from": iso(-168), "to": iso(0)},
            "cases": 1,
            "by_kind": {"problem": 1},
            "by_department": {"roads": 1},
            "by_priority": {"normal": 1},
            "by_tag": {},
            "first_response": {"median_hours": 4.0, "p90_hours": 4.0},
            "resolution": {"median_hours": 20.0, "p90_hours": 20.0},
            "breaches": {"first_response": 0, "resolution": 0},
            "reopened": 0,
            "satisfaction": {"answers": 1, "mean": 3.0},
        },
    }


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Iterator[Path]:
    path = tmp_path / "feedbackd.toml"
    path.write_text(f"""[mailbox]\naddress = "feedback@city.example"\nname = "市民反馈中心"\n
[imap]\nhost = "127.0.0.1"\nusername = "feedback"\n[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\n
[database]\nurl = "{db_url}"\n[paths]\nrules = "{REPO / 'rules'}"
templates = "{REPO / 'templates'}"\ndata = "{tmp_path / 'data'}"\n
[jobs]\nadmins = ["chief@city.example", "deputy@city.example"]\n""", encoding="utf-8")
    engine = connect(db_url)
    fill(engine)
    engine.dispose()
    yield path


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["--config", str(config), "report", *args]) == 0
    return capsys.readouterr().out


def week() -> tuple[str, str]:
    return MONDAY.isoformat(), (MONDAY + timedelta(days=6)).isoformat()


def test_the_figures_match_the_hand_computed_fixture(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, last = week()
    assert json.loads(run(config, capsys, "--from", first, "--to", last, "--json")) == expected()


def test_csv_is_one_figure_a_line_beside_the_period_before(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, last = week()
    table = list(csv.reader(io.StringIO(run(config, capsys, "--from", first, "--to", last, "--csv"))))
    assert table[0] == ["section", "key", "value", "previous"]
    assert all(len(row) == 4 for row in table)
    figures = {(s, k): (v, p) for s, k, v, p in table[1:]}
    assert figures["cases", "total"] == ("6", "1")
    assert figures["by_tag", "pothole"] == ("2", "0")
    assert figures["by_kind", "opinion"] == ("1", "0")
    assert figures["first_response", "p90_hours"] == ("20.0", "4.0")
    assert figures["satisfaction", "mean"] == ("3.67", "3.0")
    assert figures["breaches", "resolution"] == ("2", "0")
    assert figures["period", "from"] == (iso(0), iso(-168))


def test_text_output_names_every_figure(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, last = week()
    text = run(config, capsys, "--from", first, "--to", last)
    assert text.startswith(f"Cases created {iso(0)} – {iso(168)}")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "total 6 (before: 1)" in lines
    assert "median_hours 4.0 (before: 4.0)" in lines
    assert "mean 3.67 (before: 3.0)" in lines


def test_an_empty_period_has_zeros_and_no_times(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(run(config, capsys, "--from", "2001-01-01", "--to", "2001-01-07", "--json"))
    empty = {"cases": 0, "by_kind": {}, "by_department": {}, "by_priority": {}, "by_tag": {},
             "first_response": {"median_hours": None, "p90_hours": None},
             "resolution": {"median_hours": None, "p90_hours": None},
             "breaches": {"first_response": 0, "resolution": 0}, "reopened": 0,
             "satisfaction": {"answers": 0, "mean": None}}
    assert {k: v for k, v in out.items() if k not in ("period", "previous")} == empty
    assert {k: v for k, v in out["previous"].items() if k != "period"} == empty
    assert out["period"] == {"from": "2001-01-01T00:00:00+08:00", "to": "2001-01-08T00:00:00+08:00"}
    assert out["previous"]["period"]["from"] == "2000-12-25T00:00:00+08:00"


def test_since_is_the_time_up_to_now(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(run(config, capsys, "--since", "7d", "--json"))
    start, end = (datetime.fromisoformat(out["period"][k]) for k in ("from", "to"))
    assert end - start == timedelta(days=7) and abs(end - utcnow()) < timedelta(minutes=5)
    assert main(["--config", str(config), "report", "--from", "2026-02-30"]) == 2


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert report.percentile([], 0.5) is None
    assert report.percentile([7.0], 0.9) == 7.0
    assert report.percentile([1.0, 2.0, 6.0, 26.0], 0.9) == pytest.approx(20.0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_weekly_mail_carries_text_a_table_and_a_chart(config: Path) -> None:
    from feedbackd import config as config_mod

    settings = config_mod.load(str(config))
    engine = connect(settings.database.url)
    scheduled = datetime.combine(MONDAY + timedelta(days=7), datetime.min.time(), tzinfo=ZONE) + timedelta(hours=8.5)
    ctx = make_context(engine, settings, scheduled.astimezone(UTC), lambda: load_ruleset(settings.paths.rules))
    assert report.weekly_report(ctx) == {"cases": 6, "mailed": 2}
    with engine.connect() as conn:
        sent = conn.execute(select(records.OUTBOX.c.recipient, records.OUTBOX.c.raw)
                            .where(records.OUTBOX.c.purpose == "report")).all()
    assert sorted(r for r, _ in sent) == ["chief@city.example", "deputy@city.example"]
    mail = message_from_bytes(sent[0][1], policy=policy.default)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert MONDAY.isoformat() in str(mail["Subject"]) and "6" in str(mail["Subject"])
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "新案件：6 件（上期 1 件）" in text and "中位数：4.0（上期 4.0）" in text
    assert "<table" in html and "<svg" in html and "问题反馈" in html and "<script" not in html
    engine.dispose()


def test_weekly_volumes_count_each_kind_per_week() -> None:
    engine = connect("sqlite://")
    fill(engine)
    with engine.connect() as conn:
        volumes = report.weekly_volumes(conn, h(168))
    # Weeks oldest first: the last is the fixture's period, the one before holds c7 (B-24h), the third c9 (B-200h).
    assert volumes == {"opinion": [0] * 7 + [1], "problem": [0] * 5 + [1, 1, 5]}


# -- the milestones the report reads, written where they happen ------------------------------------


def test_the_milestones_on_the_case_are_written_where_they_happen(tmp_path: Path, db_url: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A case through intake, the admin's shell, the citizen reopening it and auto-close: its first
    answer, first resolution and reopen count on the case are what its messages and events say."""
    import logging

    import mails
    from feedbackd import config as config_mod
    from feedbackd.jobs import notices
    from feedbackd.pipeline import Pipeline
    from feedbackd.routing import RulesWatcher

    path = tmp_path / "feedbackd.toml"
    path.write_text(f"""[mailbox]\naddress = "feedback@city.example"\nname = "市民反馈中心"\n
[imap]\nhost = "127.0.0.1"\nusername = "feedback"\n[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\n
[database]\nurl = "{db_url}"\n[paths]\nrules = "{REPO / 'rules'}"
templates = "{REPO / 'templates'}"\ndata = "{tmp_path / 'data'}"\n""", encoding="utf-8")
    settings = config_mod.load(str(path))
    engine = connect(db_url)
    pipeline = Pipeline(settings, engine, RulesWatcher(settings.paths.rules, logging.getLogger()).current)
    number = pipeline.process(mails.plain()).case_number
    assert number is not None

    def admin(*args: str) -> None:
        assert main(["--config", str(path), "cases", *args]) == 0, capsys.readouterr().err

    admin("note", number, "--text", "已电话联系市民")  # internal: no answer
    assert milestones(engine) == (None, None, 0, None, None)  # an acknowledgement is no answer either
    admin("reply", number, "--text", "维修人员明天上午到场。")
    admin("resolve", number, "--text", "路灯已修复。")
    reply = pipeline.process(mails.plain(subject=f"Re: [{number}] 小区路灯不亮", body="晚上还是不亮。"))
    assert reply.action == "joined"
    admin("resolve", number, "--text", "已更换灯泡。")
    later = utcnow() + timedelta(days=8)
    ctx = make_context(engine, settings, later, lambda: load_ruleset(settings.paths.rules))
    assert notices.auto_close(ctx) == {"closed": 1}

    answered, resolved, reopened, answer_hours, resolution_hours = milestones(engine)
    with engine.connect() as conn:
        created = conn.execute(select(records.CASES.c.created_at)).scalar_one()
        mail = conn.execute(select(records.MESSAGES.c.kind, records.MESSAGES.c.received_at)
                            .where(records.MESSAGES.c.direction == "out")
                            .order_by(records.MESSAGES.c.id)).all()
        events = conn.execute(select(records.EVENTS.c.kind, records.EVENTS.c.detail, records.EVENTS.c.at)
                              .order_by(records.EVENTS.c.id)).all()
    engine.dispose()
    assert [kind for kind, _ in mail] == ["acknowledgement", "progress", "result", "result"]
    assert answered == mail[1][1]
    done = [at for kind, detail, at in events if kind == "status" and detail["to"] in ("resolved", "closed")]
    assert len(done) == 3 and done[-1] == later  # the second resolution and auto-close leave the first
    assert resolved == done[0]
    assert reopened == 1 == sum(kind == "reopened" for kind, _, _ in events)
    assert answer_hours == pytest.approx((answered - created) / timedelta(hours=1), abs=1e-6)
    assert resolution_hours == pytest.approx((resolved - created) / timedelta(hours=1), abs=1e-6)


def milestones(engine: Engine) -> tuple[Any, ...]:
    c = records.CASES.c
    with engine.connect() as conn:
        return tuple(conn.execute(select(c.first_answered_at, c.first_resolved_at, c.reopened,
                                         c.first_response_hours, c.resolution_hours)).one())


def test_the_report_reads_while_a_writer_holds_sqlite_s_write_lock(tmp_path: Path) -> None:
    """The weekly job builds the report on the daemon's engine, whose transactions begin IMMEDIATE:
    the report's read begins DEFERRED instead, so it neither waits for intake nor makes intake wait."""
    import sqlite3

    path = tmp_path / "feedbackd.db"
    engine = connect(f"sqlite:///{path}")
    fill(engine)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # intake in the middle of a message
    writer.execute("UPDATE \"case\" SET subject = 'x' WHERE id = 1")
    try:
        built = report.build(engine, report.Period(h(0), h(168), ZONE), utcnow())
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert {k: v for k, v in built.items() if k != "previous"} == {
        k: v for k, v in expected().items() if k != "previous"}
    assert built["previous"]["cases"] == 1
    engine.dispose()


@pytest.mark.parametrize("share", [1, 10])
def test_both_sqlite_plans_give_the_hand_computed_figures(share: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A period with few of the cases is read along created_at and sorted ("range"), a large one along
    the report's own indexes ("walk"): the same figures either way (share 1: every period here is small)."""
    monkeypatch.setattr(report, "RANGE_SHARE", share)
    engine = connect("sqlite://")
    fill(engine)
    with engine.connect() as conn:
        assert report._sqlite_plan(conn, {"start": h(0), "end": h(168)}) == ("range" if share == 1 else "walk")
    built = report.build(engine, report.Period(h(0), h(168), ZONE), utcnow())
    assert {k: v for k, v in built.items() if k != "period"} == {
        k: v for k, v in expected().items() if k != "period"} | {"previous": built["previous"]}
    assert {k: v for k, v in built["previous"].items() if k != "period"} == {
        k: v for k, v in expected()["previous"].items() if k != "period"}
