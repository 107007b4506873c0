"""Reminders, escalations, progress notes, digests and auto-close, through Dovecot and the SMTP sink.

Cases are opened by mail (IMAP APPEND, one intake pass); then the jobs run with a ``JobContext``
whose ``now`` moves forward from the case's own times, never by sleeping.  Each step runs the job
twice (and later again) to show that nothing goes twice; the outbox is flushed to the sink and the
mail is read back there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

import mails
from conftest import Env
from feedbackd.jobs import digest as digest_job
from feedbackd.jobs import notices
from feedbackd.jobs.base import Job, JobContext, make_context
from feedbackd.routing import RulesWatcher
from feedbackd.store import db
from feedbackd.store.records import CASES, MESSAGES
from test_intake import case_json
from test_staff_loop import parsed, run_once, text_of, to

SECRET = "0123456789abcdef0123456789abcdef"
CITIZEN = "zhang.san@qq.example"
DESK = ["desk@city.example", "desk2@city.example"]
LEAD = "desk-lead@city.example"
ADMIN = "admin@city.example"
MINUTE = timedelta(minutes=1)


@pytest.fixture
def jobs_env(env_db: Env) -> Env:
    env_db.reconfigure(extra=f'[staff]\nsecret = "{SECRET}"\n\n[jobs]\nadmins = ["{ADMIN}"]\n')
    return env_db


@contextmanager
def engine_of(env: Env) -> Iterator[Engine]:
    engine = db.connect(env.settings.database.url)
    try:
        yield engine
    finally:
        engine.dispose()


def context(env: Env, engine: Engine, now: datetime) -> JobContext:
    rules = RulesWatcher(env.settings.paths.rules, logging.getLogger("test.rules"))
    return make_context(engine, env.settings, now, rules.current)


def run(env: Env, job: Job, now: datetime) -> dict[str, int]:
    """Run ``job`` at ``now``, then deliver what it queued to the SMTP sink."""
    with engine_of(env) as engine:
        counts = job(context(env, engine, now))
    run_once(env)
    return counts


def open_case(env: Env, **kwargs: object) -> dict[str, Any]:
    env.mailbox.append(mails.plain(**kwargs))  # type: ignore[arg-type]
    assert run_once(env) == {"new-case": 1}
    with engine_of(env) as engine, engine.connect() as conn:
        row = conn.execute(select(CASES).order_by(CASES.c.id.desc()).limit(1)).mappings().one()
    return dict(row)


def change(env: Env, case_id: int, **values: object) -> None:
    with engine_of(env) as engine, engine.begin() as conn:
        conn.execute(update(CASES).where(CASES.c.id == case_id).values(**values))


def subjects(env: Env, address: str, word: str) -> list[str]:
    return [str(parsed(m)["Subject"]) for m in to(env, address) if word in str(parsed(m)["Subject"])]


def test_reminder_then_both_escalation_levels_each_once(jobs_env: Env) -> None:
    env = jobs_env
    case = open_case(env)
    start, due = case["created_at"], case["first_response_due"]
    assert due - start == timedelta(days=1)  # normal priority, no [calendar]: calendar time
    reminder_time = start + (due - start) * 0.75
    assert run(env, notices.reminders, reminder_time - MINUTE) == {"reminders": 0}
    assert run(env, notices.reminders, reminder_time + MINUTE) == {"reminders": 1}
    for again in (reminder_time + MINUTE, reminder_time + timedelta(hours=2)):
        assert run(env, notices.reminders, again) == {"reminders": 0}
    for staff in DESK:  # no assignee: the department's staff
        (subject,) = subjects(env, staff, "期限提醒")
        assert subject.startswith("[FB-") and f"{case['id']}]" in subject
    reminder = next(m for m in to(env, DESK[0]) if "期限提醒" in str(parsed(m)["Subject"]))
    assert parsed(reminder)["Reply-To"].addresses[0].addr_spec.startswith(f"feedback+FB-{case['id']:06d}.")
    assert CITIZEN not in text_of(reminder) and "zh***@qq.example" in text_of(reminder)
    assert not to(env, LEAD)

    assert run(env, notices.escalations, due - MINUTE) == {"escalations-1": 0, "escalations-2": 0}
    assert run(env, notices.escalations, due + MINUTE) == {"escalations-1": 1, "escalations-2": 0}
    assert run(env, notices.escalations, due + MINUTE) == {"escalations-1": 0, "escalations-2": 0}
    (subject,) = subjects(env, LEAD, "逾期升级")
    assert "首次答复" in subject
    assert run(env, notices.escalations, due + timedelta(hours=4)) == {"escalations-1": 0, "escalations-2": 0}
    assert not to(env, ADMIN)
    later = due + timedelta(hours=4) + 2 * MINUTE
    assert run(env, notices.escalations, later) == {"escalations-1": 0, "escalations-2": 1}
    for again in (later, later + timedelta(hours=1)):
        assert run(env, notices.escalations, again) == {"escalations-1": 0, "escalations-2": 0}
    (admin_mail,) = to(env, ADMIN)
    assert "二次升级" in str(parsed(admin_mail)["Subject"])
    assert len(to(env, LEAD)) == 1 and all(len(subjects(env, s, "期限提醒")) == 1 for s in DESK)

    shown = case_json(env, str(case["id"]))
    timed = [(e["kind"], e["detail"].get("level"), e["actor"]) for e in shown["events"]
             if e["kind"] in ("reminder", "escalation")]
    assert timed == [("reminder", None, "system"), ("escalation", 1, "system"), ("escalation", 2, "system")]


def test_an_answered_or_waiting_case_is_not_escalated_for_its_first_response(jobs_env: Env) -> None:
    env = jobs_env
    answered = open_case(env)
    assert env.cli("cases", "reply", str(answered["id"]), "--text", "已收到，正在安排。").returncode == 0
    waiting = open_case(env, sender="li.si@163.example", subject="噪音扰民")
    assert env.cli("cases", "status", str(waiting["id"]), "waiting").returncode == 0
    run_once(env)
    late = answered["first_response_due"] + timedelta(hours=1)
    assert run(env, notices.reminders, late - timedelta(hours=3)) == {"reminders": 0}
    assert run(env, notices.escalations, late) == {"escalations-1": 0, "escalations-2": 0}
    assert not to(env, LEAD)


def test_progress_notes_reach_the_citizen_once_per_period_and_never_while_waiting(jobs_env: Env) -> None:
    env = jobs_env
    case = open_case(env)
    opinion = open_case(env, sender="wang.wu@126.example", subject="建议增加公交线路")
    change(env, opinion["id"], kind="opinion", resolution_due=None)
    start, every = case["created_at"], timedelta(days=3)

    def notes() -> list[str]:
        return [text_of(m) for m in to(env, CITIZEN) if "仍在办理中" in str(parsed(m)["Subject"])]

    assert run(env, notices.progress, start + every - MINUTE) == {"progress": 0}
    assert run(env, notices.progress, start + every + MINUTE) == {"progress": 1}
    for again in (start + every + MINUTE, start + every + timedelta(hours=5)):
        assert run(env, notices.progress, again) == {"progress": 0}
    (note,) = notes()
    assert "仍在办理中" in note and f"{case['id']}" in note
    assert not [m for m in to(env, "wang.wu@126.example") if "仍在办理中" in str(parsed(m)["Subject"])]

    assert run(env, notices.progress, start + 2 * every + MINUTE) == {"progress": 1}
    assert len(notes()) == 2
    assert env.cli("cases", "status", str(case["id"]), "waiting").returncode == 0
    assert run(env, notices.progress, start + 4 * every) == {"progress": 0}
    assert len(notes()) == 2
    events = [e for e in case_json(env, str(case["id"]))["events"] if e["kind"] == "still-handling"]
    assert [e["detail"]["period"] for e in events] == [1, 2] and {e["actor"] for e in events} == {"system"}


def test_the_digest_lists_each_members_open_cases_most_urgent_first(jobs_env: Env) -> None:
    env = jobs_env
    first = open_case(env, subject="路灯不亮")
    second = open_case(env, sender="li.si@163.example", subject="井盖松动")
    third = open_case(env, sender="wang.wu@126.example", subject="垃圾清运")
    change(env, second["id"], priority="high")
    change(env, third["id"], assignee=DESK[1])
    now = first["created_at"] + timedelta(hours=30)  # both first responses overdue (1 day)
    # desk: the two unassigned cases; desk2: the same two and its own
    assert run(env, digest_job.digest, now) == {"digests": 2, "listed": 5}
    (desk,) = [m for m in to(env, DESK[0]) if "待办案件" in str(parsed(m)["Subject"])]
    text = text_of(desk)
    assert text.index("井盖松动") < text.index("路灯不亮") and "垃圾清运" not in text  # high before normal
    assert "【已超期】" in text and "2 件" in str(parsed(desk)["Subject"])
    (desk2,) = [m for m in to(env, DESK[1]) if "待办案件" in str(parsed(m)["Subject"])]
    assert "垃圾清运" in text_of(desk2)
    assert not to(env, LEAD)


def test_resolved_cases_close_after_auto_close_after_without_a_citizen_reply(jobs_env: Env) -> None:
    env = jobs_env
    quiet = open_case(env)
    answered = open_case(env, sender="li.si@163.example", subject="井盖松动")
    for case in (quiet, answered):
        assert env.cli("cases", "resolve", str(case["id"]), "--text", "已修复。").returncode == 0
    with engine_of(env) as engine, engine.connect() as conn:
        resolved_at = conn.execute(select(CASES.c.resolved_at).where(CASES.c.id == quiet["id"])).scalar_one()
    after = timedelta(days=7)
    # the second citizen wrote again five days after the result (as their satisfaction answer would)
    with engine_of(env) as engine, engine.begin() as conn:
        conn.execute(update(MESSAGES).where(MESSAGES.c.case_id == answered["id"], MESSAGES.c.direction == "in")
                     .values(received_at=resolved_at + timedelta(days=5)))
    assert run(env, notices.auto_close, resolved_at + after - MINUTE) == {"closed": 0}
    assert run(env, notices.auto_close, resolved_at + after + MINUTE) == {"closed": 1}
    assert run(env, notices.auto_close, resolved_at + after + 2 * MINUTE) == {"closed": 0}
    shown = case_json(env, str(quiet["id"]))
    assert shown["status"] == "closed"
    assert shown["events"][-1]["detail"] == {"from": "resolved", "to": "closed", "reason": "auto-close"}
    assert case_json(env, str(answered["id"]))["status"] == "resolved"
    assert run(env, notices.auto_close, resolved_at + timedelta(days=12) + MINUTE) == {"closed": 1}
    with engine_of(env) as engine, engine.connect() as conn:
        closed_at = conn.execute(select(CASES.c.closed_at).where(CASES.c.id == answered["id"])).scalar_one()
    assert closed_at == resolved_at + timedelta(days=12) + MINUTE
