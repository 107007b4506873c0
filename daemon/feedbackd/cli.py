"""The ``feedbackd`` command: parses arguments and calls the services; nothing else lives here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from feedbackd import __version__
from feedbackd import config as config_mod
from feedbackd.cases import CaseNumbers
from feedbackd.config import ConfigError, Settings
from feedbackd.demo import run_demo
from feedbackd.mail.source import CONNECTION_ERRORS, SourceError
from feedbackd.outbox import Outbox
from feedbackd.pipeline import Pipeline, StorageFull
from feedbackd.routing import RulesError, RulesWatcher, commands, load_ruleset
from feedbackd.routing.decision import explain
from feedbackd.service import Daemon
from feedbackd.store import db as store_db
from feedbackd.store.db import SchemaError, connect, session
from feedbackd.store.models import Case, MailMessage, QuarantineItem
from feedbackd.store.records import raw_message
from feedbackd.templates import Templates
from feedbackd.views import case_detail, case_summary, message_view, outbox_view, quarantine_view

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedbackd",
        description="An email-driven helpdesk daemon for public feedback (市民反馈).",
    )
    parser.add_argument("--config", metavar="FILE",
                        help=f"the TOML configuration (default: ${config_mod.ENV_CONFIG})")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--version", action="version", version=f"feedbackd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the daemon (stops cleanly on SIGTERM)")
    run.add_argument("--once", action="store_true",
                     help="fetch and process everything waiting, send the outbox, exit")
    run.set_defaults(func=cmd_run)

    cases = sub.add_parser("cases", help="list, show and work on cases").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    listing = cases.add_parser("list", help="list cases, newest first")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument("--status", help="only cases with this status")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    listing.set_defaults(func=cmd_cases_list)
    show = cases.add_parser("show", help="show one case with its messages and routing")
    show.add_argument("id", metavar="ID", help="the case number, e.g. FB-000123")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(func=cmd_cases_show)
    _add_case_actions(cases)

    quarantine = sub.add_parser("quarantine", help="messages that could not be handled").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    qlist = quarantine.add_parser("list", help="list quarantined messages")
    qlist.add_argument("--json", action="store_true")
    qlist.add_argument("--all", action="store_true", help="include resolved entries")
    qlist.set_defaults(func=cmd_quarantine_list)
    qreplay = quarantine.add_parser("replay", help="run a quarantined message through the pipeline again")
    qreplay.add_argument("id", type=int, metavar="ID")
    qreplay.set_defaults(func=cmd_quarantine_replay)

    unmatched = sub.add_parser("unmatched", help="automatic mail (bounces, auto-replies) that answers no case"
                               ).add_subparsers(dest="action", metavar="ACTION", required=True)
    ulist = unmatched.add_parser("list", help="list bounces and auto-replies kept without a case")
    ulist.add_argument("--json", action="store_true")
    ulist.set_defaults(func=cmd_unmatched_list)

    outbox = sub.add_parser("outbox", help="outgoing mail waiting or failed").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    olist = outbox.add_parser("list", help="list mail waiting to be sent or failed")
    olist.add_argument("--json", action="store_true")
    olist.add_argument("--all", action="store_true", help="include mail already sent")
    olist.set_defaults(func=cmd_outbox_list)

    rules = sub.add_parser("rules", help="check, publish and try the routing rules").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    check = rules.add_parser("check", help="validate the rule files (file:line:column: message)")
    check.add_argument("dir", nargs="?", type=Path, help="rules directory (default: from the config)")
    check.set_defaults(func=cmd_rules_check)
    schema = rules.add_parser("schema", help="print the JSON Schema of the rule files")
    schema.set_defaults(func=cmd_rules_schema)
    test = rules.add_parser("test", help="dry run: route a saved message, touching nothing")
    test.add_argument("message", type=Path, metavar="MESSAGE.eml")
    test.add_argument("--rules", type=Path, help="rules directory (default: from the config)")
    test.add_argument("--json", action="store_true")
    test.add_argument("--followup", metavar="PRIORITY",
                      help="treat the message as a reply on a case of this priority (on: [reply] rules)")
    test.set_defaults(func=cmd_rules_test)
    evaluate = rules.add_parser("eval", help="route a folder of labelled mails and print accuracy, confusion "
                                "matrices and the misrouted messages")
    evaluate.add_argument("dir", type=Path, metavar="DIR", help="folder of .eml files with their labels")
    evaluate.add_argument("--rules", type=Path, help="rules directory (default: from the config)")
    evaluate.add_argument("--json", action="store_true", help="print a JSON object")
    evaluate.set_defaults(func=cmd_rules_eval)
    learn = rules.add_parser("learn", help="train the routing suggestion model from the desk's past cases")
    learn.add_argument("--json", action="store_true", help="print a JSON object")
    learn.add_argument("--eval", dest="eval_dir", type=Path, metavar="DIR",
                       help="also cross-validate on this folder of labelled mails")
    learn.add_argument("--add", dest="add_dirs", type=Path, metavar="DIR", action="append", default=[],
                       help="also train on this folder of labelled mails (a seed set; repeatable)")
    learn.add_argument("--holdout", dest="holdout_dir", type=Path, metavar="DIR",
                       help="score the trained model on this folder of labelled mails (not one it trained on)")
    learn.set_defaults(func=cmd_rules_learn)

    jobs = sub.add_parser("jobs", help="the scheduled jobs (reminders, escalations, digests, reports, ...)"
                          ).add_subparsers(dest="action", metavar="ACTION", required=True)
    jobs_run = jobs.add_parser("run", help="run once every job due at that time, then exit (for cron; "
                               "an occurrence already run, here or by a daemon, is skipped)")
    jobs_run.add_argument("--at", metavar="ISO-8601-TIME",
                          help="the time to run at (default: now; without an offset: [calendar] timezone)")
    jobs_run.set_defaults(func=cmd_jobs_run)

    purge = sub.add_parser("purge", help="remove the personal data of closed cases past jobs.retention "
                           "(the daily job does it too)")
    purge.add_argument("--dry-run", action="store_true",
                       help="list what would go (case numbers, counts), change nothing")
    purge.add_argument("--json", action="store_true", help="print a JSON object")
    purge.add_argument("--at", metavar="ISO-8601-TIME", help="count retention from this time (default: now)")
    purge.set_defaults(func=cmd_purge)

    report = sub.add_parser("report", help="figures of the cases created in a period, beside the period before")
    span = report.add_mutually_exclusive_group()
    span.add_argument("--since", metavar="DURATION", default="7d", help="the last DURATION up to now (default: 7d)")
    span.add_argument("--from", dest="start", metavar="DATE", help="first day (local, YYYY-MM-DD)")
    report.add_argument("--to", dest="end", metavar="DATE", help="last day, included (default: today)")
    shape = report.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print a JSON object")
    shape.add_argument("--csv", action="store_true", help="print CSV: section,key,value,previous")
    report.set_defaults(func=cmd_report)

    privacy = sub.add_parser("privacy", help="what we hold about one person: export it, or erase it"
                             ).add_subparsers(dest="action", metavar="ACTION", required=True)
    export = privacy.add_parser("export", help="write everything held about ADDRESS to a folder or a .zip")
    export.add_argument("address", metavar="ADDRESS")
    export.add_argument("--out", type=Path, metavar="PATH", help="a folder, or a file ending in .zip "
                        "(default: a new folder in the current directory)")
    export.set_defaults(func=cmd_privacy_export)
    erase = privacy.add_parser("erase", help="remove or pseudonymise everything about ADDRESS (database, "
                               "files, outgoing mail, the IMAP mailbox)")
    erase.add_argument("address", metavar="ADDRESS")
    erase.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    erase.add_argument("--json", action="store_true", help="print a JSON object")
    erase.set_defaults(func=cmd_privacy_erase)

    doctor = sub.add_parser("doctor", help="check the set-up, one line per part; non-zero when one fails")
    doctor.add_argument("--json", action="store_true", help="print a JSON array of checks")
    doctor.set_defaults(func=cmd_doctor)

    database = sub.add_parser("db", help="the database schema").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    database.add_parser("upgrade", help="bring the schema to this version's newest revision (every command "
                        "does it on start; this says what it did)").set_defaults(func=cmd_db_upgrade)
    database.add_parser("current", help="print the database's schema revision and this version's newest"
                        ).set_defaults(func=cmd_db_current)

    demo = sub.add_parser("demo", help="run on a local demo mail stack with sample mail (needs dovecot)")
    demo.add_argument("--keep", action="store_true", help="keep the demo directory afterwards")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"feedbackd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SchemaError as exc:
        print(f"feedbackd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _settings(args: argparse.Namespace) -> Settings:
    return config_mod.load(args.config)


def _engine(settings: Settings) -> Engine:
    return connect(settings.database.url)


def _reader(settings: Settings) -> Engine:
    """For commands that only read: SQLite transactions begin DEFERRED and never wait for a writer."""
    return connect(settings.database.url, readonly=True)


def _print_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up at each call, so a redirected sys.stdout is honoured
    json.dump(data, out, ensure_ascii=False, indent=2)
    out.write("\n")


# -- run ------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """``run --once`` prints one line (parsed by bench/ and tests: keep its start) and exits with:
    0 when nothing it could send is left (mail waiting for a scheduled retry after a temporary SMTP
    failure, or failed for good, is said on that line); 75 (EX_TEMPFAIL) when mail that could be sent
    is left unsent, with a second line on stderr saying how many, why, and when they will be tried;
    1 when the mailbox cannot be read."""
    settings = _settings(args)
    if not args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    try:
        daemon = _daemon(settings, wait_for_database=not args.once)
    except RulesError as exc:
        print(f"feedbackd: the rules in {settings.paths.rules} are invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"feedbackd: the database is unavailable ({type(exc.orig).__name__}); nothing was done",
              file=sys.stderr)
        return 1
    if not args.once:
        daemon.run()
        return 0
    failures: tuple[type[BaseException], ...] = (SourceError, *CONNECTION_ERRORS)
    started = time.monotonic()
    try:
        intake, sent = daemon.run_once()
    except failures as exc:
        print(f"feedbackd: cannot read mail from {settings.imap.host}:{settings.imap.port}: {exc}",
              file=sys.stderr)
        return 1
    except StorageFull as exc:
        print(f"feedbackd: {exc}; the mail stays on the server", file=sys.stderr)
        return 75  # EX_TEMPFAIL: run again once there is space
    elapsed = time.monotonic() - started
    left = daemon.leftover()
    actions = ", ".join(f"{n} {a}" for a, n in sorted(intake.actions.items())) or "nothing new"
    print(f"processed {intake.processed} message(s): {actions}; sent {sent.sent}, "
          f"retrying {sent.retrying}, failed {sent.failed}; {elapsed:.2f} s after start-up; {left.summary()}")
    if left.stuck:
        print(f"feedbackd: {left.problem()}; exit status {left.exit_status} (EX_TEMPFAIL)", file=sys.stderr)
    return left.exit_status


def _daemon(settings: Settings, *, wait_for_database: bool) -> Daemon:
    """The daemon; a long-running one waits out a database that is away at start-up (mail stays on
    the server meanwhile) instead of exiting, as it does once running."""
    from feedbackd.sdnotify import Notifier

    notifier = Notifier()
    delay = 1.0
    while True:
        try:
            return Daemon(settings)
        except DBAPIError as exc:
            if not wait_for_database:
                raise
            logging.getLogger("feedbackd.service").error(
                "database unavailable at start-up (%s); retrying in %.0f s", type(exc.orig).__name__, delay)
            # Under systemd (Type=notify) say we are still starting, so a long outage is waited out
            # instead of ending in a start timeout and a restart loop.
            notifier.send(f"EXTEND_TIMEOUT_USEC={int((delay + 30) * 1_000_000)}",
                          f"STATUS=waiting for the database ({type(exc.orig).__name__})")
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


# -- cases ----------------------------------------------------------------------------------------


def cmd_cases_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    numbers = CaseNumbers(settings.cases)
    engine = _reader(settings)
    with session(engine) as db:
        query = select(Case).order_by(col(Case.id).desc())
        if args.status:
            query = query.where(Case.status == args.status)
        if args.limit:
            query = query.limit(args.limit)
        rows = [case_summary(case, numbers) for case in db.exec(query)]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no cases")
    for row in rows:
        print(f"{row['id']}  {row['status']:<11} {row['priority']:<7} {row['department'] or '-':<14} "
              f"{row['message_count']:>3}  {row['subject']}")
    return 0


def cmd_cases_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    numbers = CaseNumbers(settings.cases)
    case_id = numbers.parse(args.id)
    engine = _reader(settings)
    with session(engine) as db:
        case = db.get(Case, case_id) if case_id else None
        if case is None:
            print(f"feedbackd: no case {args.id}", file=sys.stderr)
            return 1
        detail = case_detail(db, case, numbers)
    if args.json:
        _print_json(detail)
        return 0
    _print_case(detail)
    return 0


def _print_case(d: dict[str, Any]) -> None:
    print(f"{d['id']}  {d['subject']}")
    print(f"  status {d['status']}, kind {d['kind']}, priority {d['priority']}, "
          f"department {d['department'] or '-'}, assignee {d['assignee'] or '-'}")
    print(f"  requester {d['requester_name']} <{d['requester']}>, tags {', '.join(d['tags']) or '-'}")
    if d["satisfaction"] or d["linked_case"]:
        score = f"{d['satisfaction']['score']}/5" if d["satisfaction"] else "-"
        print(f"  satisfaction {score}, continues {d['linked_case'] or '-'}")
    print(f"  created {d['created_at']}, updated {d['updated_at']}, "
          f"first response due {d['first_response_due'] or '-'}, resolution due {d['resolution_due'] or '-'}")
    if d["routing"]:
        print("routing:")
        for line in explain(d["routing"]):
            print(f"  {line}")
    for m in d["messages"]:
        arrow = "←" if m["direction"] == "in" else "→"
        print(f"\n{arrow} {m['date']}  {m['from']} → {', '.join(m['to'])}  [{m['kind']}]")
        print(f"  Subject: {m['subject']}")
        for a in m["attachments"]:
            print(f"  Attachment: {a['filename']} ({a['content_type']}, {a['size']} bytes)")
        for line in m["text"].strip().splitlines()[:40]:
            print(f"  | {line}")
    if d["events"]:
        print("\nhistory:")
        for e in d["events"]:
            detail = json.dumps(e["detail"], ensure_ascii=False) if e["detail"] else ""
            print(f"  {e['at']}  {e['kind']} ({e['actor']})  {detail[:200]}")


CASE_STATUSES = ("in-progress", "waiting", "open", "resolved", "closed")  # those a person may set


def _add_case_actions(cases: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cases reply/note/resolve/assign/move/status``: what a staff reply's commands do, for an admin."""
    for verb, about in (("reply", "answer the citizen by mail (progress; the case becomes in-progress)"),
                        ("note", "add an internal note to the case (nothing goes to the citizen)"),
                        ("resolve", "mail the citizen the final result and the satisfaction question")):
        action = cases.add_parser(verb, help=about)
        action.add_argument("id", metavar="ID", help="the case number, e.g. FB-000123")
        action.add_argument("--text", required=True, help="the text ('-': read it from standard input)")
        action.set_defaults(func=cmd_cases_act, verb=verb, argument="")
    for verb, metavar, about in (("assign", "ADDRESS", "assign the case to a staff member (staff or lead)"),
                                 ("move", "DEPARTMENT", "move the case to a department (key or name); "
                                                        "its staff are told"),
                                 ("status", "STATUS", f"set the status: {', '.join(CASE_STATUSES)}")):
        action = cases.add_parser(verb, help=about)
        action.add_argument("id", metavar="ID", help="the case number, e.g. FB-000123")
        action.add_argument("argument", metavar=metavar,
                            choices=CASE_STATUSES if verb == "status" else None)
        if verb == "status":
            action.add_argument("--text", help="resolved: the final result for the citizen ('-': standard input)")
        action.set_defaults(func=cmd_cases_act, verb=verb, text="")


def cmd_cases_act(args: argparse.Namespace) -> int:
    """One staff command on a case, as the actor "admin"; the mail it causes goes through the outbox."""
    from feedbackd.staff.commands import Command
    from feedbackd.staff.loop import act

    settings = _settings(args)
    commands = [] if args.verb == "reply" else [Command(args.verb, args.argument,
                                                        f"#{args.verb} {args.argument}".strip())]
    text = sys.stdin.read() if args.text == "-" else args.text
    try:
        said = act(_engine(settings), settings, args.id, commands, text, "admin")
    except LookupError:
        print(f"feedbackd: no case {args.id}", file=sys.stderr)
        return 1
    except ValueError as exc:  # the command was refused: nothing was changed or sent
        print(f"feedbackd: {args.id}: {exc}", file=sys.stderr)
        return 1
    print(said)
    return 0


# -- quarantine and outbox ------------------------------------------------------------------------


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    engine = _reader(_settings(args))
    with session(engine) as db:
        query = select(QuarantineItem).order_by(col(QuarantineItem.id))
        if not args.all:
            query = query.where(col(QuarantineItem.resolved).is_(False))
        rows = [quarantine_view(q) for q in db.exec(query)]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("quarantine is empty")
    for r in rows:
        print(f"#{r['id']}  {r['received_at']}  uid {r['uid']}  {r['stage']}: {r['reason']}")
        print(f"      from {r['from'] or '?'}  subject {r['subject'] or '?'}  ({r['size']} bytes, "
              f"raw {r['raw_sha256'][:12]})")
    return 0


def cmd_quarantine_replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = _engine(settings)
    with session(engine) as db:
        item = db.get(QuarantineItem, args.id)
        if item is None:
            print(f"feedbackd: no quarantine entry #{args.id}", file=sys.stderr)
            return 1
        raw = raw_message(db.connection(), item.raw_sha256)
    if raw is None:
        print(f"feedbackd: the raw message of #{args.id} is missing", file=sys.stderr)
        return 1
    watcher = RulesWatcher(settings.paths.rules, logging.getLogger("feedbackd.rules"))
    outcome = Pipeline(settings, engine, watcher.current).process(raw, replay=True)
    if outcome.action == "quarantined":
        print(f"still failing: {outcome.detail}")
        return 1
    with session(engine) as db:
        stored = db.get(QuarantineItem, args.id)
        if stored is not None:
            stored.resolved = True
            db.add(stored)
            db.commit()
    print(f"#{args.id}: {outcome.action} {outcome.case_number or ''}".rstrip())
    return 0


def cmd_unmatched_list(args: argparse.Namespace) -> int:
    engine = _reader(_settings(args))
    with session(engine) as db:
        query = (select(MailMessage).where(col(MailMessage.case_id).is_(None), MailMessage.direction == "in")
                 .order_by(col(MailMessage.id)))
        rows = [message_view(m, []) for m in db.exec(query)]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no unmatched automatic mail")
    for r in rows:
        print(f"{r['received_at']}  {r['kind']:<10} {r['from'] or '?'}  {r['subject']}")
    return 0


def cmd_outbox_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = _reader(settings)
    items = Outbox(engine, settings.smtp, settings.outbox).listing(include_sent=args.all)
    numbers = CaseNumbers(settings.cases)
    rows = [outbox_view(i, numbers.format(i.case_id) if i.case_id else None) for i in items]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("outbox is empty")
    for r in rows:
        print(f"#{r['id']}  {r['status']:<8} {r['case'] or '-'}  {r['purpose']}  attempts {r['attempts']}  "
              f"next {r['next_attempt_at']}  {r['last_error']}")
    return 0


# -- rules ----------------------------------------------------------------------------------------


def _rules_dir(args: argparse.Namespace, given: Path | None) -> Path:
    if given is not None:
        return given
    try:
        return _settings(args).paths.rules
    except ConfigError:
        if args.config:
            raise
        return Path("rules")


def cmd_rules_check(args: argparse.Namespace) -> int:
    directory = _rules_dir(args, args.dir)
    status = commands.check(directory, sys.stdout)
    if status != 0:
        return status
    templates = _templates_dir(args)
    missing = Templates(templates).missing_for(load_ruleset(directory)) if templates else []
    for name, language in missing:
        print(f"{directory}: template {name!r} is used by the rules but {templates}/{language}/"
              f"{name}.subject.j2 does not exist (the default acknowledgement would be sent)")
    return 1 if missing else 0


def _templates_dir(args: argparse.Namespace) -> Path | None:
    """The configured templates directory, or None when there is no configuration to ask."""
    try:
        return _settings(args).paths.templates
    except ConfigError:
        return None


def cmd_rules_schema(args: argparse.Namespace) -> int:
    return commands.print_schema(sys.stdout)


def cmd_rules_test(args: argparse.Namespace) -> int:
    return commands.dry_run(args.message, _rules_dir(args, args.rules), sys.stdout, as_json=args.json,
                            followup_priority=args.followup)


def cmd_rules_eval(args: argparse.Namespace) -> int:
    from feedbackd.routing import evaluation

    return evaluation.command(args.dir, _rules_dir(args, args.rules), sys.stdout, as_json=args.json)


def cmd_rules_learn(args: argparse.Namespace) -> int:
    from feedbackd.routing import learned

    return learned.learn_command(_settings(args), sys.stdout, as_json=args.json, eval_dir=args.eval_dir,
                                 add_dirs=args.add_dirs, holdout_dir=args.holdout_dir)


# -- privacy and doctor ---------------------------------------------------------------------------


def cmd_privacy_export(args: argparse.Namespace) -> int:
    from feedbackd import privacy

    return privacy.export_command(_settings(args), args.address, args.out, sys.stdout)


def cmd_privacy_erase(args: argparse.Namespace) -> int:
    from feedbackd import privacy

    return privacy.erase_command(_settings(args), args.address, sys.stdout, dry_run=args.dry_run,
                                 as_json=args.json)


def cmd_doctor(args: argparse.Namespace) -> int:
    from feedbackd import doctor

    return doctor.command(args.config, sys.stdout, as_json=args.json)


# -- jobs -----------------------------------------------------------------------------------------


def _clock(at: str | None, settings: Settings) -> datetime | None:
    """The one clock of a jobs command: ``--at`` (no offset: the [calendar] time zone) or now; None
    (said on stderr) when ``--at`` is not a time."""
    from feedbackd.jobs.clock import local_zone, parse_at, utcnow

    try:
        return parse_at(at, local_zone(settings)) if at else utcnow()
    except ValueError:
        print(f"feedbackd: --at {at!r} is not an ISO 8601 time (e.g. 2026-12-01T08:30+08:00)", file=sys.stderr)
        return None


def cmd_jobs_run(args: argparse.Namespace) -> int:
    """Prints one line per job that ran here (job, occurrence, counts), or that nothing was due."""
    from feedbackd.jobs.base import make_context
    from feedbackd.jobs.runner import run_due

    settings = _settings(args)
    now = _clock(args.at, settings)
    if now is None:
        return EXIT_USAGE
    try:
        watcher = RulesWatcher(settings.paths.rules, logging.getLogger("feedbackd.rules"))
    except RulesError as exc:
        print(f"feedbackd: the rules in {settings.paths.rules} are invalid ({len(exc.problems)} problem(s): "
              "feedbackd rules check lists them); no job ran", file=sys.stderr)
        return 1
    ran = run_due(make_context(_engine(settings), settings, now, watcher.current))
    if not ran:
        print(f"nothing to run at {now.isoformat(timespec='seconds')} (not due, or run already)")
    for name, counts in ran.items():
        print(f"{name}: " + (", ".join(f"{key} {value}" for key, value in counts.items()) or "done"))
    return 0


# -- purge ----------------------------------------------------------------------------------------


def cmd_purge(args: argparse.Namespace) -> int:
    """One line per case (number, when closed, counts), then the totals; ``--json``: {cases, counts}."""
    from feedbackd.jobs.purge import run_purge

    settings = _settings(args)
    now = _clock(args.at, settings)
    if now is None:
        return EXIT_USAGE
    result = run_purge(_engine(settings), settings, now, dry_run=args.dry_run)
    if args.json:
        _print_json({"dry_run": args.dry_run, "cases": [c.as_dict() for c in result.cases], "counts": result.counts})
        return 0
    verb = "would purge" if args.dry_run else "purged"
    for case in result.cases:
        print(f"{case.number}  closed {case.closed.date().isoformat()}  {case.messages} message(s), "
              f"{case.raw_messages} raw, {case.attachments} attachment(s), {case.mailbox_copies} on the server")
    print(f"{verb} {len(result.cases)} case(s): " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
    return 0


# -- db -------------------------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    engine = connect(_settings(args).database.url, create=False)
    before, after = store_db.upgrade(engine)
    if before == after:
        print(f"database schema already at revision {after}, the newest")
    else:
        print(f"database schema upgraded from {before or 'nothing (empty database)'} to revision {after}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    engine = connect(_settings(args).database.url, create=False)
    stored, newest = store_db.current(engine)
    if stored == newest:
        state = "the newest"
    elif stored is None or stored == "0.1.0" or stored < newest:  # 0.1.0: made before migrations
        state = f"the newest is {newest}: run feedbackd db upgrade"
    else:
        state = f"unknown to this feedbackd, whose newest is {newest}: a newer feedbackd upgraded it"
    print(f"{stored or 'empty'} ({state})")
    return 0


# -- report ---------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import date, timedelta

    from feedbackd.jobs import report
    from feedbackd.jobs.clock import local_zone, utcnow

    settings = _settings(args)
    zone, now = local_zone(settings), utcnow()
    try:
        if args.start or args.end:
            last = date.fromisoformat(args.end) if args.end else now.astimezone(zone).date()
            first = date.fromisoformat(args.start) if args.start else last - timedelta(days=6)
            if first > last:
                raise ValueError("--from is after --to")
            period = report.between(first, last, zone)
        else:
            period = report.since(now, config_mod.parse_duration(args.since), zone)
    except ValueError as exc:
        print(f"feedbackd: report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    figures = report.build(_reader(settings), period, now)
    if args.json:
        _print_json(figures)
    else:
        sys.stdout.write(report.to_csv(figures) if args.csv else report.to_text(figures))
    return 0


# -- demo -----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(keep=args.keep)
