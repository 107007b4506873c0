"""Scale: the report, the case list, one case and one jobs pass over a year of 1,000,000 cases.

Fills a database (a SQLite file, and a fresh PostgreSQL database at 127.0.0.1:5432 that the script
creates and drops) with ``--cases`` cases spread over the year before now: kinds, departments,
priorities, tags, statuses (closed with closed_at, resolved with resolved_at, open, waiting), one to
three messages per case (the citizen's mail, staff's answer, the result), status/reopened events and
satisfaction answers, and on the case the milestones the daemon notes as those are written
(first_answered_at, first_resolved_at, reopened, the two durations in hours).  Rows go in by bulk
Core inserts (SQLite) or COPY (PostgreSQL), not through the pipeline.

The open cases look as a running daemon leaves them: the notices due up to 15 minutes before the
measured pass are in ``case_notice`` (as if the daemon had been down for those 15 minutes), and
today's daily and weekly jobs have run, so the pass at ``T`` (now) does what one pass does after a
short outage: the reminders, escalations and progress notes that fell due meanwhile, queued in the
outbox (never sent: the pass only queues).

Then it runs the real CLI in a child process and measures wall time and the child's peak RSS
(``wait4``): ``report --since 365d --json``, ``cases list --json --limit 50``, ``cases show ID
--json`` and ``jobs run --at T``; each read ``--repeat`` times (fastest wall, highest RSS); ``cases show 0``
(start-up, imports, the connection and its schema check, no case query) is the baseline the ``net`` column subtracts.

    .venv/bin/python bench/bench_scale.py [--cases 1000000] [--db sqlite,postgresql] [--reuse DIR]

``--reuse DIR`` fills once and measures again on later runs (the SQLite file and a PostgreSQL
database named after DIR stay); the first run's jobs pass did the due work, so later passes find
little to do, and the year now reaches back from the present, not from the fill's time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from feedbackd.store.db import connect  # noqa: E402
from feedbackd.store.models import CaseNotice, JobRun  # noqa: E402
from feedbackd.store.records import ANSWER_KINDS, CASES, EVENTS, MESSAGES  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CHUNK = 20_000
TIME = "/usr/bin/time"
ZONE = "Asia/Shanghai"
OUTAGE = timedelta(minutes=15)  # notices due in the last OUTAGE before T are left for the measured pass
GOALS = {"report": 2.0, "list": 0.1, "show": 0.1, "jobs": 5.0}

DEPARTMENTS = {  # name: (weight, staff)
    "general": (30, ["desk@city.example", "desk2@city.example"]),
    "safety": (10, ["safety@city.example", "safety-duty@city.example"]),
    "quality": (12, ["quality@city.example"]),
    "logistics": (18, ["delivery@city.example", "delivery2@city.example"]),
    "payments": (10, ["payments@city.example"]),
    "service": (8, ["conduct@city.example"]),
    "privacy": (2, ["privacy@city.example"]),
    "suggestions": (7, ["suggestions-team@city.example"]),
}
PRIORITIES = {  # name: (weight, first response, resolution), as rules/priorities.yaml
    "urgent": (3, timedelta(hours=1), timedelta(days=1)),
    "high": (15, timedelta(hours=4), timedelta(days=3)),
    "normal": (70, timedelta(days=1), timedelta(days=7)),
    "low": (12, timedelta(days=3), timedelta(days=14)),
}
OPINION_FIRST_RESPONSE = timedelta(days=5)
TAGS = ["路灯", "噪音", "垃圾", "交通", "供水", "停车", "物业", "绿化", "施工", "食品", "快递", "退款",
        "服务态度", "隐私", "建议", "表扬", "投诉", "网络", "公交", "医疗"]
SUBJECTS = ["路灯不亮", "小区噪音扰民", "快递延误", "退款未到账", "建议增加公交线路", "表扬工作人员", "垃圾清运不及时"]
OPEN_STATUSES = ["new", "open", "in-progress", "in-progress", "waiting"]


# -- the data ---------------------------------------------------------------------------------------


@dataclass
class Batch:
    cases: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Counter:
    message: int = 0
    event: int = 0
    notice: int = 0
    status: dict[str, int] = field(default_factory=dict)


def generate(n: int, now: datetime, seed: int = 12) -> Iterator[Batch]:
    """``n`` cases created over the year before ``now``, oldest first (ids grow with time), in chunks."""
    rng = random.Random(seed)
    departments = list(DEPARTMENTS)
    dept_weights = [DEPARTMENTS[d][0] for d in departments]
    priorities = list(PRIORITIES)
    prio_weights = [PRIORITIES[p][0] for p in priorities]
    start = now - timedelta(days=365)
    span = (now - timedelta(minutes=5) - start).total_seconds()
    counter = Counter()
    batch = Batch()
    for i in range(n):
        created = start + timedelta(seconds=span * i / n + rng.random())
        _case(rng, i + 1, created, now, departments, dept_weights, priorities, prio_weights, counter, batch)
        if len(batch.cases) >= CHUNK:
            yield batch
            batch = Batch()
    if batch.cases:
        yield batch


def _case(rng: random.Random, case_id: int, created: datetime, now: datetime, departments: list[str],
          dept_weights: list[int], priorities: list[str], prio_weights: list[int], counter: Counter,
          batch: Batch) -> None:
    kind = "opinion" if rng.random() < 0.25 else "problem"
    department = None if rng.random() < 0.03 else rng.choices(departments, dept_weights)[0]
    priority = rng.choices(priorities, prio_weights)[0]
    _, first_span, resolution_span = PRIORITIES[priority]
    if kind == "opinion":
        first_span = OPINION_FIRST_RESPONSE
    first_due = created + first_span
    resolution_due = created + resolution_span if kind == "problem" else None
    staff = DEPARTMENTS[department][1] if department else []
    assignee = rng.choice(staff) if staff and rng.random() < 0.6 else None
    requester = f"citizen{rng.randrange(400_000)}@mail.example.cn"
    # When staff answered and when it was resolved: around the deadlines, some late, a few never.
    answered = created + first_span * rng.lognormvariate(-0.9, 0.8)
    resolved: datetime | None = created + (resolution_span if kind == "problem" else first_span) \
        * rng.lognormvariate(-0.7, 0.7)
    if rng.random() < 0.003:  # a stuck case: never resolved
        resolved = None
    status, closed, paused = "closed", None, None
    if resolved is None or resolved > now:
        status = rng.choice(OPEN_STATUSES)
        resolved = None
        if status == "waiting":
            paused = now - (now - created) * rng.random()
    elif resolved + timedelta(days=7) <= now:
        closed = resolved + timedelta(days=7, minutes=rng.random())
    else:
        status = "resolved"
    counter.status[status] = counter.status.get(status, 0) + 1
    satisfaction = None
    if resolved is not None and rng.random() < 0.3:
        satisfaction = {"score": rng.choices([1, 2, 3, 4, 5], [5, 5, 15, 35, 40])[0], "text": ""}
    subject = f"{rng.choice(SUBJECTS)} {case_id}"
    token = f"FB-{case_id:06d}"
    messages = [("in", "mail", created, requester, subject)]
    if answered <= now:
        messages.append(("out", "progress", answered, "feedback@city.example", f"Re: [{token}] {subject}"))
    if resolved is not None and rng.random() < 0.5:
        messages.append(("out", "result", resolved, "feedback@city.example", f"[{token}] 已办结 {subject}"))
    for direction, mkind, at, sender, msubject in messages:
        counter.message += 1
        batch.messages.append({
            "id": counter.message, "case_id": case_id, "direction": direction, "kind": mkind,
            "message_id": f"<{counter.message}.{case_id}@bench.example>", "dedupe_key": f"bench:{counter.message}",
            "in_reply_to": None, "references": [], "from_addr": sender, "from_name": "",
            "to_addrs": [], "cc_addrs": [], "subject": msubject, "date": at, "received_at": at,
            "text": "您好，反映的问题如下。" * 8, "raw_sha256": None, "mailbox_uid": None, "defects": []})
    answered_at = min((at for d, k, at, _, _ in messages if d == "out" and k in ANSWER_KINDS), default=None)
    events: list[tuple[datetime, str, dict[str, Any], str]] = [
        (created, "created", {"how": "new"}, "citizen")]
    reopened = 0
    if resolved is not None:
        events.append((resolved, "status", {"from": "in-progress", "to": "resolved"}, assignee or "admin"))
        if rng.random() < 0.03:
            events.append((resolved + timedelta(hours=5), "reopened", {"from": "resolved"}, "citizen"))
            reopened = 1
    if closed is not None:
        events.append((closed, "status", {"from": "resolved", "to": "closed", "reason": "auto-close"}, "system"))
    for at, ekind, detail, actor in events:
        counter.event += 1
        batch.events.append({"id": counter.event, "case_id": case_id, "at": at, "kind": ekind, "detail": detail,
                             "actor": actor})
    batch.cases.append({
        "id": case_id, "status": status, "kind": kind, "subject": subject, "requester": requester,
        "requester_name": "", "language": "zh-CN", "priority": priority, "department": department,
        "assignee": assignee, "tags": rng.sample(TAGS, rng.choice([0, 1, 1, 2, 2, 3])), "routing": {"rule": "bench"},
        "first_response_due": first_due, "resolution_due": resolution_due, "message_count": len(messages),
        "created_at": created, "updated_at": max(created, resolved or created, closed or created),
        "resolved_at": resolved, "awaiting_satisfaction": False, "satisfaction": satisfaction, "linked_case": None,
        "paused_at": paused, "closed_at": closed, "purged_at": None,
        # The milestones store.records notes on the case as the messages and events above are written.
        "first_answered_at": answered_at, "first_resolved_at": resolved, "reopened": reopened,
        "first_response_hours": _hours(created, answered_at), "resolution_hours": _hours(created, resolved)})
    if status in ("new", "open", "in-progress"):
        _sent_before(rng, batch.cases[-1], answered if answered <= now else None, now - OUTAGE, counter, batch)


def _hours(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds() / 3600.0


def _sent_before(rng: random.Random, case: dict[str, Any], answered_at: datetime | None, until: datetime,
                 counter: Counter, batch: Batch) -> None:
    """The notices a daemon running until ``until`` sent for this running case (plain calendar time)."""
    def notice(kind: str, key: str, at: datetime) -> None:
        counter.notice += 1
        batch.notices.append({"id": counter.notice, "case_id": case["id"], "kind": kind, "key": key, "at": at})

    deadlines = [("resolution", case["resolution_due"])]
    if answered_at is None:
        deadlines.append(("first_response", case["first_response_due"]))
    for name, due in deadlines:
        if due is None:
            continue
        key = f"{name}:{case['priority']}:{case['department'] or '-'}"
        remind = due - (due - case["created_at"]) * 0.25
        if remind <= until:
            notice("reminder", key, remind)
        if due <= until:
            notice("escalation-1", key, due)
        if due + timedelta(hours=4) <= until:
            notice("escalation-2", key, due + timedelta(hours=4))
    age = until - case["created_at"]
    if age >= timedelta(days=3) and (answered_at is None or answered_at <= until - timedelta(days=3)):
        notice("progress", f"progress@{age // timedelta(days=3)}", until - timedelta(days=3) * rng.random())


# -- loading ----------------------------------------------------------------------------------------


def fill(engine: Engine, n: int, now: datetime) -> dict[str, int]:
    notices = CaseNotice.__table__  # type: ignore[attr-defined]
    totals = {"cases": 0, "messages": 0, "events": 0, "notices": 0}
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for batch in generate(n, now):
            for table, rows, name in ((CASES, batch.cases, "cases"), (MESSAGES, batch.messages, "messages"),
                                      (EVENTS, batch.events, "events"), (notices, batch.notices, "notices")):
                if not rows:
                    continue
                if postgres:
                    _copy(conn, table.name, rows)
                else:
                    conn.execute(insert(table), rows)
                totals[name] += len(rows)
            print(f"\r  {totals['cases']:>9,} cases", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        _today_done(conn, now)
        if postgres:
            for table in ("case", "message", "case_event", "case_notice", "job_run", "outbox"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                  f"(SELECT coalesce(max(id), 0) + 1 FROM \"{table}\"), false)"))
    if postgres:  # autovacuum would get there; a bench must not wait for it
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return totals


def _copy(conn: Any, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    cursor = conn.connection.driver_connection.cursor()
    quoted = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                            for v in row.values()])


def _today_done(conn: Any, now: datetime) -> None:
    """Today's digest and purge and this week's report ran this morning (as in a running daemon)."""
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(ZONE))
    year, week, _ = local.date().isocalendar()
    table = JobRun.__table__  # type: ignore[attr-defined]
    done = {"claimed_by": "bench", "claimed_at": now - timedelta(hours=1), "finished_at": now - timedelta(hours=1),
            "result": {}}
    conn.execute(insert(table), [{"job": job, "occurrence": occ, **done} for job, occ in (
        ("digest", local.date().isoformat()), ("purge", local.date().isoformat()), ("report", f"{year}-W{week:02d}"))])


# -- measuring --------------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    rss_kb: int
    rc: int
    out: bytes


def run_cli(config: Path, args: list[str]) -> Run:
    """One child ``python -m feedbackd``: wall time and its peak RSS (GNU time's %M: a child forked from
    this big process would inherit its high-water mark in wait4's ru_maxrss)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "daemon")}
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        started = time.perf_counter()
        rc = subprocess.call([TIME, "-o", rss.name, "-f", "%M", sys.executable, "-m", "feedbackd",
                              "--config", str(config), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        wall = time.perf_counter() - started
        out.seek(0)
        return Run(wall, int(rss.read().split()[-1]), rc, out.read())


def measure(config: Path, args: list[str], repeat: int, expect: int = 0) -> Run:
    runs = [run_cli(config, args) for _ in range(repeat)]
    for run in runs:
        if run.rc != expect:
            raise SystemExit(f"feedbackd {' '.join(args)} failed ({run.rc}):\n{run.out.decode(errors='replace')}")
    # The fastest run: other processes on the machine only ever add to a run's wall time.
    return Run(min(r.wall for r in runs), max(r.rss_kb for r in runs), 0, runs[-1].out)


def bench_database(name: str, url: str, n: int, work: Path, repeat: int) -> dict[str, Any]:
    now, totals, fill_seconds = _filled(name, url, n, work)
    config = work / f"{name}.toml"
    config.write_text("\n".join([
        '[mailbox]\naddress = "feedback@city.example"\nname = "市民反馈中心"\nlanguage = "zh-CN"',
        '[imap]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\nusername = "x"\npassword = "x"',
        '[smtp]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\nusername = ""\npassword = ""',
        f'[database]\nurl = "{url}"',
        f'[paths]\nrules = "{ROOT / "rules"}"\ntemplates = "{ROOT / "templates"}"\ndata = "{work / "data"}"',
        '[jobs]\nadmins = ["admin@city.example"]', ""]), encoding="utf-8")
    middle = n // 2
    results: dict[str, Any] = {"database": name, "fill_seconds": fill_seconds, **totals}
    print(f"{name}: measuring", file=sys.stderr)
    results["baseline"] = measure(config, ["cases", "show", "0", "--json"], repeat, expect=1)
    results["report"] = measure(config, ["report", "--since", "365d", "--json"], repeat)
    results["list"] = measure(config, ["cases", "list", "--json", "--limit", "50"], repeat)
    results["show"] = measure(config, ["cases", "show", str(middle), "--json"], repeat)
    jobs = measure(config, ["jobs", "run", "--at", now.isoformat()], 1)
    results["jobs"] = jobs
    results["jobs_output"] = jobs.out.decode(errors="replace").strip().replace("\n", "; ")
    report = json.loads(results["report"].out)
    results["report_cases"] = report["cases"]
    return results


def _filled(name: str, url: str, n: int, work: Path) -> tuple[datetime, dict[str, int], float]:
    """Fill the database, or take it as a previous run with ``--reuse`` left it (``<name>.filled.json``
    in the work folder: the fill's time T, its totals and duration), so measurements can be repeated
    without filling again (a million cases: 6 min on SQLite, 9 on PostgreSQL)."""
    marker = work / f"{name}.filled.json"
    if marker.exists():
        kept = json.loads(marker.read_text(encoding="utf-8"))
        if kept["n"] == n:
            print(f"{name}: reusing {n:,} cases filled at {kept['now']}", file=sys.stderr)
            return datetime.fromisoformat(kept["now"]), kept["totals"], float(kept["seconds"])
        raise SystemExit(f"{marker} holds {kept['n']:,} cases, not {n:,}: use another --reuse folder")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    print(f"{name}: filling {n:,} cases", file=sys.stderr)
    started = time.perf_counter()
    engine = connect(url)
    totals = fill(engine, n, now)
    engine.dispose()
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"n": n, "now": now.isoformat(), "totals": totals, "seconds": seconds}),
                      encoding="utf-8")
    return now, totals, seconds


def table(results: list[dict[str, Any]], n: int) -> str:
    lines = [f"{n:,} cases over a year; wall = fastest of the runs, net = wall - baseline "
             "(start-up, imports, connect), RSS = the child's peak", "",
             "| database | command | wall s | net s | goal | peak RSS MB | meets |",
             "|---|---|---:|---:|---|---:|---|"]
    names = {"baseline": "cases show 0 (baseline: no query)", "report": "report --since 365d --json",
             "list": "cases list --json --limit 50", "show": "cases show ID --json",
             "jobs": "jobs run --at T (one pass)"}
    for r in results:
        base = r["baseline"].wall
        for key, label in names.items():
            run: Run = r[key]
            net = run.wall - base if key != "baseline" else 0.0
            goal = GOALS.get(key)
            goal_text = f"< {goal * 1000:.0f} ms" if goal and goal < 1 else (f"< {goal:.0f} s" if goal else "")
            meets = "" if goal is None else ("yes" if net < goal else "NO")
            lines.append(f"| {r['database']} | {label} | {run.wall:.3f} | {net:.3f} | {goal_text} | "
                         f"{run.rss_kb / 1024:.0f} | {meets} |")
    lines.append("")
    for r in results:
        lines.append(f"{r['database']}: filled {r['cases']:,} cases, {r['messages']:,} messages, {r['events']:,} "
                     f"events, {r['notices']:,} notices in {r['fill_seconds']:.0f} s; report counted "
                     f"{r['report_cases']:,}; jobs pass: {r['jobs_output']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each read command (fastest wall)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file and the PostgreSQL database")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="keep the filled databases in DIR (made if missing) and measure them again "
                             "on later runs instead of filling (implies --keep; the jobs pass writes to them)")
    args = parser.parse_args(argv)
    if args.reuse:
        args.reuse.mkdir(parents=True, exist_ok=True)
        args.keep = True
    work = args.reuse.resolve() if args.reuse else Path(tempfile.mkdtemp(prefix="feedbackd-scale-"))
    results = []
    for name in args.db.split(","):
        if name == "sqlite":
            if not (work / "sqlite.filled.json").exists():  # a fill that did not finish starts again
                for suffix in ("", "-wal", "-shm"):
                    (work / f"scale.db{suffix}").unlink(missing_ok=True)
            results.append(bench_database(name, f"sqlite:///{work / 'scale.db'}", args.cases, work, args.repeat))
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    (work / f"scale.db{suffix}").unlink(missing_ok=True)
        elif name == "postgresql":
            results.append(_bench_postgres(args, work))
        else:
            parser.error(f"unknown database {name}")
    print(table(results, args.cases))
    return 0


def _bench_postgres(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sqlalchemy import create_engine

    reused = args.reuse and (work / "postgresql.filled.json").exists()
    database = f"feedbackd_scale_{work.name if args.reuse else os.getpid()}".replace("-", "_")
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    if not reused:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        return bench_database("postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
                              args.cases, work, args.repeat)
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
