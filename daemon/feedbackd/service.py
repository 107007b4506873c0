"""The composition root: wires source, pipeline, rules and outbox, and runs the loops.

``Daemon.run_once`` drains the mailbox and the outbox and returns (``feedbackd run --once``);
``Daemon.run`` keeps going until SIGTERM/SIGINT: intake in the main thread (IDLE or polling,
reconnecting with backoff when the server drops us), sending in an outbox thread, so an SMTP
outage never holds up intake and an IMAP outage never holds up sending. A jobs pass runs every minute
in a scheduler thread (``jobs.scheduler``): the same jobs, claimed the same way, as ``feedbackd jobs run``.

Under systemd (``Type=notify``) the daemon says READY once its parts are up and the intake loop
starts, a STATUS line now and then, WATCHDOG from the intake loop itself (so a stuck loop is killed
and restarted), and STOPPING on shutdown.  SIGHUP reloads the configuration and the rules: what can
change live is taken at once, what needs a restart (see ``RESTART_SECTIONS``) is said in one line.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from feedbackd import config as config_mod
from feedbackd.config import ConfigError, Settings
from feedbackd.jobs.calendar import calendar_for
from feedbackd.jobs.scheduler import JobsScheduler
from feedbackd.mail.source import CONNECTION_ERRORS, ImapSource, SourceError
from feedbackd.outbox import Backlog, FlushReport, Outbox
from feedbackd.pipeline import Cursor, Pipeline, StorageFull
from feedbackd.routing import RulesError, RuleSet, RulesWatcher
from feedbackd.sdnotify import Notifier
from feedbackd.store import db, records
from feedbackd.store.turns import WriteTurns

log = logging.getLogger(__name__)

BACKOFF_MAX = 300.0
GATHER = 0.1  # seconds the sender waits after a wake-up before claiming
DB_RETRY_FIRST = 0.5  # the sender's first wait when the database is away; doubled up to DB_RETRY_MAX
DB_RETRY_MAX = 30.0
BUG_RETRY = 30.0  # the sender's wait after an unexpected error (a bug): long, so the log is not flooded
STATUS_EVERY = 15.0  # seconds between two looks at the outbox for the systemd STATUS line
# Held by open connections or files: a SIGHUP cannot change them (``paths.data`` neither).
RESTART_SECTIONS = ("imap", "smtp", "database")


@dataclass
class IntakeReport:
    processed: int = 0
    actions: dict[str, int] = field(default_factory=dict)


class Daemon:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        calendar_for(settings)  # a bad [calendar] or overrides file stops start-up (ConfigError), not a message
        self.engine = engine or db.connect(settings.database.url)
        self.rules = RulesWatcher(settings.paths.rules, logging.getLogger("feedbackd.rules"))
        self.pipeline = Pipeline(settings, self.engine, self._ruleset)
        self.outbox = Outbox(self.engine, settings.smtp, settings.outbox)
        if self.engine.dialect.name == "sqlite":  # one writer at a time, and no fairness between them
            self.pipeline.turns = self.outbox.turns = WriteTurns()
        self.source = ImapSource(settings.imap)
        self.stopping = threading.Event()
        self.outbox_wake = threading.Event()
        self.jobs = JobsScheduler(settings, self.engine, self._ruleset, self.outbox_wake)
        self.notify = Notifier()
        self.reload_asked = threading.Event()  # set by SIGHUP, acted on by the intake loop
        self.processed = 0  # messages handled since start (for STATUS)
        self._imap_state = "starting"
        self._status_at: float | None = None
        self._outbox_waiting = 0

    def _ruleset(self) -> RuleSet:
        """The current rules (a reload may replace the watcher itself)."""
        return self.rules.current()

    # -- intake -----------------------------------------------------------------------------------

    def _cursor(self) -> int:
        """The last processed UID, after checking UIDVALIDITY (a reset starts again from 0)."""
        state = self.source.state
        assert state is not None
        with self.engine.begin() as conn:
            last_uid, old = records.folder_cursor(conn, state.key, state.uidvalidity)
        if old is not None:
            log.warning("UIDVALIDITY of %s changed (%s → %s): reading the folder again; "
                        "messages seen before are recognised and skipped", state.key, old, state.uidvalidity)
        return last_uid

    def intake(self) -> IntakeReport:
        """Process every message above the cursor (committed in groups, see Pipeline.process_many)."""
        report = IntakeReport()
        last_uid = self._cursor()
        uids = self.source.uids_after(last_uid)
        if uids:
            log.info("%d new message(s) in %s", len(uids), self.settings.imap.folder)
        done: list[int] = []
        try:
            for outcome in self.pipeline.process_many(self._fetched(uids)):
                report.processed += 1
                report.actions[outcome.action] = report.actions.get(outcome.action, 0) + 1
                if outcome.uid is not None:
                    done.append(outcome.uid)
                if outcome.queued:
                    self.outbox_wake.set()
                if len(done) >= self.settings.imap.batch_size:
                    self.source.mark_processed(done)
                    done = []
        finally:  # what committed before a failure is flagged too
            if done and self.source.client is not None:
                try:
                    self.source.mark_processed(done)
                except CONNECTION_ERRORS as exc:
                    log.debug("cannot flag processed messages: %s", type(exc).__name__)
        return report

    def _fetched(self, uids: list[int]) -> Iterator[tuple[bytes, Cursor]]:
        for uid, raw in self.source.fetch(uids):
            if self.stopping.is_set():
                return  # what was handled so far still commits
            self.notify.watchdog()  # a long backlog is progress too
            yield raw, Cursor(self.source.key, uid)

    # -- one pass ---------------------------------------------------------------------------------

    def run_once(self) -> tuple[IntakeReport, FlushReport]:
        """Drain the mailbox while a sender process drains the outbox; then send what is left.

        A sender that died (the forked one, or a daemon killed on this host) has its claimed rows
        taken over at once by the last drain; ``Daemon.leftover`` then says what is still unsent.

        The sender is a forked process, not a thread: measured on a 2,000-message backlog, a
        sender thread made the whole run slower (it competes for the GIL), while a process
        sends on the other core as intake goes on.  Forking is only safe in a single-threaded
        process (the CLI); embedded in a threaded program, it drains the two one after the other.
        """
        if threading.active_count() > 1 or not hasattr(os, "fork"):
            report = self._drain_mailbox()
            try:
                return report, self.outbox.drain()
            finally:
                self.outbox.close()
        context = multiprocessing.get_context("fork")
        intake_done = context.Event()
        results: multiprocessing.SimpleQueue[FlushReport] = context.SimpleQueue()
        self.engine.dispose()  # no database connection may cross the fork
        sender = context.Process(target=_send_until, args=(self.settings, intake_done, results),
                                 name="feedbackd-outbox", daemon=True)
        sender.start()
        started = time.monotonic()
        try:
            report = self._drain_mailbox()
        finally:
            intake_done.set()
            intake_seconds = time.monotonic() - started
            sender.join()
        log.info("intake took %.2f s; the sender finished %.2f s later", intake_seconds,
                 time.monotonic() - started - intake_seconds)
        sent = results.get() if not results.empty() else FlushReport()
        try:
            sent.add(self.outbox.drain())  # whatever the sender left (or all of it, had it died)
            return report, sent
        finally:
            self.outbox.close()

    def leftover(self) -> Backlog:
        """What ``run_once`` left in the outbox, and why (printed by ``run --once``)."""
        return self.outbox.backlog()

    def _drain_mailbox(self) -> IntakeReport:
        self.source.connect()
        try:
            return self.intake()
        finally:
            self.source.close()

    # -- the daemon -------------------------------------------------------------------------------

    def run(self) -> None:
        self._install_signals()
        sender = threading.Thread(target=self._outbox_loop, args=(self.stopping, FlushReport()), name="outbox",
                                  daemon=True)
        sender.start()
        self.jobs.start()
        self.notify.ready(self._status_line())
        backoff = 1.0
        db_was_away = False
        try:
            while not self.stopping.is_set():
                try:
                    self._imap_state = "connecting to IMAP"
                    state = self.source.connect()
                    self._imap_state = f"{'IDLE' if state.idle else 'polling'} on {self.settings.imap.folder}"
                    backoff = 1.0
                    while not self.stopping.is_set():
                        self.processed += self.intake().processed
                        self._alive(force_status=True)
                        if db_was_away:  # the database is back: the sender may be waiting out its delay
                            db_was_away = False
                            self.outbox_wake.set()
                        wait = (self.settings.imap.idle_timeout if state.idle
                                else self.settings.imap.poll_interval).total_seconds()
                        self.source.wait(wait, self._tick)
                except SourceError as exc:
                    log.error("%s; retrying in %.0f s", exc, max(backoff, 30.0))
                    self._imap_state = "IMAP refused us, retrying"
                    self._sleep(max(backoff, 30.0))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                except CONNECTION_ERRORS as exc:
                    log.warning("IMAP connection failed or lost (%s: %s); reconnecting in %.0f s",
                                type(exc).__name__, exc, backoff)
                    self._imap_state = "IMAP unavailable, reconnecting"
                    self._sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                except StorageFull as exc:
                    log.error("%s; the mail stays on the server, retrying in %.0f s", exc, backoff)
                    self._sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                except DBAPIError as exc:
                    # The database is away: nothing was committed, the mail stays on the server.
                    db_was_away = True
                    log.error("database unavailable (%s); retrying in %.0f s", type(exc.orig).__name__,
                              max(backoff, 5.0))
                    self._sleep(max(backoff, 5.0))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                finally:
                    self.source.close()
        finally:
            self.notify.stopping()
            self.stopping.set()
            self.outbox_wake.set()
            self.jobs.stop()
            sender.join(timeout=self.settings.smtp.timeout.total_seconds() + 5)
            log.info("stopped")

    def _tick(self) -> bool:
        """Called about once a second while waiting: picks up rule edits; True means stop."""
        self.rules.current()
        self._alive()
        return self.stopping.is_set()

    def _alive(self, force_status: bool = False) -> None:
        """The intake loop is turning: feed the watchdog, act on a SIGHUP, refresh STATUS now and then.

        Called only from the intake loop's own thread (between messages, while waiting, while backing
        off), never from a helper thread: if that loop hangs, the watchdog stops and systemd restarts us.
        """
        self.notify.watchdog()
        if self.reload_asked.is_set():
            self.reload_asked.clear()
            self.reload()
        if not self.notify.enabled:
            return
        now = time.monotonic()
        if force_status or self._status_at is None or now - self._status_at >= STATUS_EVERY:
            self._status_at = now
            self._outbox_waiting = self._count_outbox()
        self.notify.status(self._status_line())

    def _count_outbox(self) -> int:
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(records.OUTBOX)
                                        .where(records.OUTBOX.c.status.in_(("pending", "sending")))).scalar() or 0)
        except DBAPIError:
            return self._outbox_waiting

    def _status_line(self) -> str:
        return (f"{self._imap_state}; {self.processed} message(s) processed since start; "
                f"{self._outbox_waiting} mail(s) waiting in the outbox")

    # -- reload (SIGHUP) --------------------------------------------------------------------------

    def reload(self) -> bool:
        """Read the configuration file again and the rules; True when the new configuration was taken.

        Live: rules (directory and files), templates, mailbox, cases, intake limits, acknowledgement,
        outbox retry settings, staff, calendar, jobs and routing.  IMAP, SMTP, the database and
        ``paths.data`` need a restart: a change there is said in one line and the running values stay.
        An invalid file (or calendar) keeps the whole running configuration, said in one line that
        names the key.
        """
        source = self.settings.source
        if source is None:
            log.warning("SIGHUP: no configuration file to reload; rules reloaded only")
            self.rules.reload()
            return False
        try:
            new = config_mod.load(source)
            calendar_for(new)
        except ConfigError as exc:
            log.error("configuration not reloaded, still running the previous one: %s", exc)
            self.rules.reload()
            return False
        held = self._needs_restart(new)
        live = new.model_copy(update={**{name: getattr(self.settings, name) for name in RESTART_SECTIONS},
                                      "paths": new.paths.model_copy(update={"data": self.settings.paths.data})})
        if not self._swap_rules(live):
            live = live.model_copy(update={"paths": live.paths.model_copy(update={"rules": self.settings.paths.rules})})
        changed = [name for name in Settings.model_fields
                   if name not in RESTART_SECTIONS and getattr(live, name) != getattr(self.settings, name)]
        self._apply(live)
        log.info("configuration reloaded from %s: %s", source, ", ".join(changed) + " changed" if changed
                 else "nothing changed that applies live")
        if held:
            log.warning("configuration: %s changed in %s; that needs a restart (systemctl restart feedbackd), "
                        "the running values stay until then", ", ".join(held), source)
        return True

    def _needs_restart(self, new: Settings) -> list[str]:
        held = [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(self.settings, name)]
        if new.paths.data != self.settings.paths.data:
            held.append("paths.data")
        return held

    def _swap_rules(self, live: Settings) -> bool:
        """Reload the rules (a new directory gets a new watcher); False when the new directory is invalid."""
        if live.paths.rules == self.settings.paths.rules:
            self.rules.reload()  # logs a new version, or one line of problems while keeping the running rules
            return True
        try:
            self.rules = RulesWatcher(live.paths.rules, logging.getLogger("feedbackd.rules"))
        except RulesError as exc:
            log.error("rules in %s are invalid (%d problem(s): feedbackd rules check lists them); still using %s",
                      live.paths.rules, len(exc.problems), self.settings.paths.rules)
            return False
        return True

    def _apply(self, live: Settings) -> None:
        """Swap in the live settings between two messages (the intake thread is the caller)."""
        from feedbackd.templates import Templates

        self.settings = live
        self.pipeline = Pipeline(live, self.engine, self._ruleset)
        self.outbox.settings = live.outbox  # read at each failure by the sender thread
        self.jobs.settings = live  # read at the start of each pass
        self.jobs.templates = Templates(live.paths.templates)

    def _outbox_loop(self, until: threading.Event, report: FlushReport) -> None:
        """The sender thread: flush when woken (new mail queued) or when a retry falls due.

        SMTP trouble never raises here: it becomes a retry time on the row, which ``next_due``
        reads.  A database that is away is retried on a short, doubling delay instead, and any
        wake-up (intake queued mail, or found the database back) cuts that delay short.  The
        wake-up is cleared before the flush, so one set while a flush runs is never lost.
        """
        db_delay = DB_RETRY_FIRST
        try:
            while not until.is_set():
                until.wait(GATHER)  # let a few mails gather: one claim, one batch, fewer commits
                self.outbox_wake.clear()
                try:
                    report.add(self.outbox.flush())
                    due = self.outbox.next_due()
                    wait = min(due if due is not None else 60.0, 60.0) or 0.5
                    db_delay = DB_RETRY_FIRST
                except DBAPIError as exc:
                    log.warning("outbox: database unavailable (%s); trying again in %.1f s or when woken",
                                type(exc.orig).__name__, db_delay)
                    wait, db_delay = db_delay, min(db_delay * 2, DB_RETRY_MAX)
                except Exception:
                    log.exception("outbox flush failed; trying again in %.0f s or when woken", BUG_RETRY)
                    wait = BUG_RETRY
                if not until.is_set():  # set before the wake-up by whoever ends the loop
                    self.outbox_wake.wait(timeout=wait)
        finally:
            if until is self.stopping:
                self.outbox.close()

    def _sleep(self, seconds: float) -> None:
        """Back off for ``seconds`` (or until stopped), still feeding the watchdog: waiting is not hanging."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            self._alive()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stopping.wait(min(left, 1.0))

    def _install_signals(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: finishing the current message and stopping",
                     signal.Signals(signum).name)
            self.stopping.set()
            self.outbox_wake.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self.reload_asked.set()  # the intake loop reloads within a second, between two messages

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, reload)


def _send_until(settings: Settings, intake_done: Any, results: Any) -> None:
    """The sender process of ``run --once``: flush the outbox until intake is done and it is empty."""
    parent = os.getppid()
    engine = db.connect(settings.database.url, create=False)
    outbox = Outbox(engine, settings.smtp, settings.outbox)
    report = FlushReport()
    try:
        while os.getppid() == parent:  # the parent was killed: stop, it will be retried
            finished = intake_done.is_set()
            flushed = outbox.flush()
            report.add(flushed)
            if finished:
                break
            if not flushed.sent:
                intake_done.wait(0.05)
    except Exception:
        log.exception("the sender process failed; the rest is sent after intake")
    finally:
        outbox.close()
        engine.dispose()
    results.put(report)
