"""What staff commands do to a case (staff/actions.py): the pure decision, then committing it.

The decision is tested without a database on a small rule set; ``commit`` and the views on a real
SQLite database (the columns of schema revision 0003).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from sqlmodel import Session

from feedbackd.cases import CaseNumbers
from feedbackd.config import CaseSettings
from feedbackd.routing.ruleset import Deadlines, Department, Kind, Priority, RuleSet
from feedbackd.staff import actions
from feedbackd.staff.actions import Applied, answer_satisfaction, apply, commit, resume_deadlines
from feedbackd.staff.commands import Command
from feedbackd.store import records
from feedbackd.store.db import connect
from feedbackd.store.models import Case
from feedbackd.views import case_detail

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

RULES = RuleSet(
    departments={
        "general": Department("general", "综合受理组 General desk", ("desk@city.example", "Desk2@city.example"),
                              "desk-lead@city.example"),
        "safety": Department("safety", "安全与应急组 Safety and emergencies", ("safety@city.example",),
                             "safety-lead@city.example",
                             MappingProxyType({"urgent": Deadlines(timedelta(minutes=30), timedelta(hours=12))})),
    },
    priorities={
        "urgent": Priority("urgent", "紧急 Urgent", 0, timedelta(hours=1), timedelta(days=1)),
        "normal": Priority("normal", "普通 Normal", 1, timedelta(days=1), timedelta(days=5)),
        "low": Priority("low", "低 Low", 2, timedelta(days=2), timedelta(days=10)),
    },
    kinds={"problem": Kind("problem", "acknowledgement", None, True),
           "opinion": Kind("opinion", "acknowledgement-opinion", None, False)},
    default_department="general", default_priority="normal", default_kind="problem", rules=(),
)


def case(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1, "status": "open", "kind": "problem", "priority": "normal", "department": "general",
        "assignee": None, "first_response_due": T0 + 24 * HOUR, "resolution_due": T0 + 120 * HOUR,
        "resolved_at": None, "awaiting_satisfaction": False, "satisfaction": None, "paused_at": None,
        "updated_at": T0 - HOUR,
    }
    return {**base, **values}


def cmd(line: str) -> Command:
    """A command as the mail parser gives it: '#assign x@y' → Command('assign', 'x@y', line)."""
    name, _, argument = line.lstrip("#").partition(" ")
    return Command(name, argument, line)


def run(current: dict[str, Any], *lines: str, text: bool = False, now: datetime = T0, **kw: Any) -> Applied:
    return apply(current, [cmd(line) for line in lines], RULES, has_text=text, now=now, **kw)


# -- a reply without commands, #note, #resolve ----------------------------------------------------


def test_an_answer_without_commands_is_relayed_and_makes_the_case_in_progress() -> None:
    applied = run(case(status="new"), text=True)
    assert applied.errors == [] and applied.relay and not applied.final
    assert applied.status == ("new", "in-progress")
    assert applied.changes == {"status": "in-progress", "updated_at": T0}
    assert applied.events == [("status", {"from": "new", "to": "in-progress"}), ("answered", {"final": False})]
    again = run(case(status="in-progress"), text=True)
    assert again.relay and again.status is None and again.changes == {}


def test_a_note_stays_internal_and_changes_no_status() -> None:
    applied = run(case(status="new"), "#note", text=True)
    assert applied.errors == [] and not applied.relay and applied.status is None
    assert applied.changes == {} and applied.events == [("note", {})]
    from_shell = run(case(), "#note", text=True, note_text="called the citizen back")
    assert from_shell.events == [("note", {"text": "called the citizen back"})]


def test_resolve_makes_the_text_the_final_result_and_asks_for_satisfaction() -> None:
    applied = run(case(status="in-progress"), "#resolve", text=True)
    assert applied.errors == [] and applied.relay and applied.final
    assert applied.status == ("in-progress", "resolved")
    assert applied.changes == {"status": "resolved", "resolved_at": T0, "awaiting_satisfaction": True,
                               "updated_at": T0}
    assert ("answered", {"final": True}) in applied.events
    assert run(case(), "#status resolved", text=True).changes == applied.changes  # the same command


@pytest.mark.parametrize(("lines", "text", "error"), [
    (("#resolve",), False, "#resolve: the final result for the citizen must follow the command lines"),
    (("#note", "#resolve"), True, "#note, #resolve: a result cannot be an internal note"),
    (("#status waiting", "#close"), True, "#status waiting, #close: more than one status change in one reply"),
    (("#priority urgent", "#priority low"), False, "#priority low: given more than once"),
    ((), False, "the reply has neither text nor a command: nothing to do"),
    (("#frobnicate",), True, "#frobnicate: unknown command"),
])
def test_combinations_that_cannot_mean_one_thing_are_refused_whole(lines: tuple[str, ...], text: bool,
                                                                     error: str) -> None:
    applied = run(case(), *lines, text=text)
    assert error in applied.errors
    assert (applied.changes, applied.events, applied.relay, applied.final, applied.status) == ({}, [], False,
                                                                                               False, None)


# -- status transitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "line", "error"), [
    ("resolved", "#status in-progress", "#status in-progress: the case is resolved: #reopen it first"),
    ("closed", "#status waiting", "#status waiting: the case is closed: #reopen it first"),
    ("closed", "#resolve", "#resolve: the case is closed: #reopen it first"),
    ("in-progress", "#reopen", "#reopen: the case is in-progress, not resolved or closed"),
    ("open", "#status new", "#status new: no such status (use in-progress, waiting, open, resolved or closed)"),
])
def test_status_changes_a_case_cannot_make_are_refused(current: str, line: str, error: str) -> None:
    assert run(case(status=current), line, text=True).errors == [error]


def test_reopen_and_close() -> None:
    resolved = case(status="resolved", resolved_at=T0 - HOUR, awaiting_satisfaction=True)
    reopened = run(resolved, "#reopen")
    assert reopened.status == ("resolved", "open") and not reopened.relay
    assert reopened.changes == {"status": "open", "resolved_at": None, "awaiting_satisfaction": False,
                                "updated_at": T0}
    assert run(resolved, "#status open").changes == reopened.changes  # the same as #reopen
    closed = run(case(status="waiting"), "#close")
    assert closed.status == ("waiting", "closed") and closed.changes["status"] == "closed"
    assert run(case(status="closed"), "#status closed").status is None  # already there: nothing changes


def test_text_on_a_resolved_case_is_relayed_and_the_status_stays() -> None:
    applied = run(case(status="resolved"), text=True)
    assert applied.relay and applied.status is None and applied.errors == []


# -- waiting pauses deadlines ---------------------------------------------------------------------


def test_waiting_stops_the_clock_and_any_way_out_moves_the_deadlines_by_the_time_waited() -> None:
    start = case(status="in-progress")
    paused = run(start, "#status waiting", text=True)
    assert paused.status == ("in-progress", "waiting") and paused.relay
    assert paused.changes == {"status": "waiting", "paused_at": T0, "updated_at": T0}
    assert paused.events[0] == ("status", {"from": "in-progress", "to": "waiting", "deadlines": "paused"})

    waiting = {**start, **paused.changes}
    answered = run(waiting, text=True, now=T0 + 5 * HOUR)  # a staff answer five hours later
    assert answered.status == ("waiting", "in-progress")
    assert answered.changes["first_response_due"] == start["first_response_due"] + 5 * HOUR
    assert answered.changes["resolution_due"] == start["resolution_due"] + 5 * HOUR
    assert answered.changes["paused_at"] is None
    assert ("status", {"from": "waiting", "to": "in-progress", "deadlines": "resumed"}) in answered.events

    resolved = run(waiting, "#resolve", text=True, now=T0 + 2 * HOUR)  # resolving ends the pause too
    assert resolved.changes["paused_at"] is None and resolved.changes["resolution_due"] == start["resolution_due"] \
        + 2 * HOUR


def test_resume_deadlines_for_a_citizen_answer_and_nothing_when_not_paused() -> None:
    waiting = case(status="waiting", paused_at=T0, first_response_due=None)
    assert resume_deadlines(waiting, T0 + 3 * HOUR) == {"resolution_due": T0 + 123 * HOUR, "paused_at": None}
    assert resume_deadlines(case(), T0) == {}


def test_a_priority_raised_while_waiting_counts_from_when_the_clock_stopped() -> None:
    waiting = case(status="waiting", paused_at=T0 - 10 * HOUR)
    applied = run(waiting, "#priority urgent", now=T0)
    assert applied.changes["first_response_due"] == T0 - 10 * HOUR + HOUR
    assert applied.changes["resolution_due"] == T0 - 10 * HOUR + 24 * HOUR


# -- priority, department, assignee ---------------------------------------------------------------


@pytest.mark.parametrize("wanted", ["urgent", "URGENT", "紧急", "Urgent", "紧急 Urgent"])
def test_priority_by_key_or_name_brings_deadlines_forward(wanted: str) -> None:
    applied = run(case(), f"#priority {wanted}")
    assert applied.errors == [] and not applied.relay
    assert applied.changes == {"priority": "urgent", "first_response_due": T0 + HOUR,
                               "resolution_due": T0 + 24 * HOUR, "updated_at": T0}
    assert applied.events == [("priority", {"from": "normal", "to": "urgent"})]


def test_a_lower_priority_never_pushes_a_promised_deadline_back() -> None:
    applied = run(case(), "#priority low")
    assert applied.changes == {"priority": "low", "updated_at": T0}


def test_an_unknown_priority_or_department_is_refused_and_names_the_choices() -> None:
    assert run(case(), "#priority soon").errors == ["#priority soon: no such priority (one of: urgent, normal, low)"]
    assert run(case(), "#move roads").errors == ["#move roads: no such department (one of: general, safety)"]


@pytest.mark.parametrize("wanted", ["safety", "安全与应急组", "Safety and emergencies"])
def test_move_to_a_department_by_key_or_name(wanted: str) -> None:
    applied = run(case(priority="urgent", first_response_due=T0 + HOUR, resolution_due=T0 + 24 * HOUR,
                       assignee="desk@city.example"), f"#move {wanted}")
    assert applied.errors == [] and applied.moved_to == "safety"
    assert applied.changes["department"] == "safety"
    assert applied.changes["first_response_due"] == T0 + timedelta(minutes=30)  # the department's override
    assert applied.changes["assignee"] is None  # desk@ does not work for safety: its staff get the case
    assert ("moved", {"from": "general", "to": "safety"}) in applied.events


def test_move_keeps_an_assignee_named_in_the_same_reply_or_working_there() -> None:
    named = run(case(assignee="desk@city.example"), "#assign safety@city.example", "#move safety")
    assert named.changes["assignee"] == "safety@city.example" and named.moved_to == "safety"
    lead = run(case(assignee="safety-lead@city.example"), "#move safety")
    assert "assignee" not in lead.changes
    same = run(case(), "#move general")
    assert same.moved_to is None and same.changes == {}


def test_assign_needs_staff_or_lead_of_some_department() -> None:
    applied = run(case(), "#assign DESK2@City.Example")
    assert applied.changes == {"assignee": "desk2@city.example", "updated_at": T0}
    assert applied.events == [("assigned", {"from": None, "to": "desk2@city.example"})]
    assert run(case(), "#assign safety-lead@city.example").errors == []
    refused = run(case(), "#assign evil@example.net", text=True)
    assert refused.errors == ["#assign evil@example.net: not staff or lead of any department"]
    assert not refused.relay and refused.changes == {}


def test_errors_name_the_line_as_the_staff_member_wrote_it() -> None:
    applied = apply(case(), [Command("priority", "火速", "#优先级：火速")], RULES, has_text=True, now=T0)
    assert applied.errors == ["#优先级：火速: no such priority (one of: urgent, normal, low)"]


# -- satisfaction ---------------------------------------------------------------------------------


def test_satisfaction_is_stored_and_an_unsatisfied_answer_reopens() -> None:
    resolved = case(status="resolved", resolved_at=T0 - HOUR, awaiting_satisfaction=True)
    happy = answer_satisfaction(resolved, 5, "谢谢", now=T0)
    assert happy.status is None
    assert happy.changes == {"satisfaction": {"score": 5, "text": "谢谢"}, "awaiting_satisfaction": False,
                             "updated_at": T0}
    unhappy = answer_satisfaction(resolved, 1, "没人来修", now=T0)
    assert unhappy.status == ("resolved", "open")
    assert unhappy.changes["status"] == "open" and unhappy.changes["resolved_at"] is None
    assert unhappy.events == [("satisfaction", {"score": 1}),
                              ("status", {"from": "resolved", "to": "open", "reason": "unsatisfied"})]
    assert answer_satisfaction(resolved, actions.UNSATISFIED + 1, "", now=T0).status is None


# -- commit, the actor, and the views -------------------------------------------------------------


def _new_case(conn: Any, **values: Any) -> int:
    row = {"status": "new", "kind": "problem", "subject": "路灯不亮", "requester": "zhang.san@qq.com",
           "requester_name": "张三", "language": "zh-CN", "priority": "normal", "department": "general",
           "tags": [], "routing": {}, "message_count": 1, "created_at": T0, "updated_at": T0,
           "first_response_due": T0 + 24 * HOUR, "resolution_due": T0 + 120 * HOUR, **values}
    return records.insert_case(conn, row)


def test_commit_writes_the_changes_and_events_by_the_actor_and_views_show_them(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'f.db'}")
    numbers = CaseNumbers(CaseSettings())
    with engine.begin() as conn:
        first = _new_case(conn, status="resolved")
        case_id = _new_case(conn, linked_case=first)
        records.add_events(conn, case_id, [("opened", {"verdict": "mail"})])  # the pipeline's old call: system
        stored = records.case_by_id(conn, case_id)
        assert stored is not None
        applied = apply(stored, [cmd("#assign desk@city.example"), cmd("#resolve")], RULES, has_text=True, now=T0)
        commit(conn, case_id, applied, "desk@city.example")
        refused = apply(stored, [cmd("#priority never")], RULES, has_text=True)
        commit(conn, case_id, refused, "desk@city.example")  # refused: writes nothing
        satisfied = answer_satisfaction({**stored, **applied.changes}, 4, "挺快的", now=T0 + HOUR)
        commit(conn, case_id, satisfied, "citizen")
    with Session(engine) as db:
        row = db.get(Case, case_id)
        assert row is not None
        shown = case_detail(db, row, numbers)
    engine.dispose()
    assert (shown["status"], shown["assignee"], shown["priority"]) == ("resolved", "desk@city.example", "normal")
    assert shown["satisfaction"] == {"score": 4, "text": "挺快的"}
    assert shown["linked_case"] == numbers.format(first) and shown["resolved_at"] == T0.isoformat()
    assert [(e["kind"], e["actor"]) for e in shown["events"]] == [
        ("opened", "system"), ("assigned", "desk@city.example"), ("status", "desk@city.example"),
        ("answered", "desk@city.example"), ("satisfaction", "citizen")]
    assert row.awaiting_satisfaction is False
