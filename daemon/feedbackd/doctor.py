"""``feedbackd doctor``: check a set-up in one command, one line per part, non-zero when one fails.

Each check is a small function from what the checks before it found (the ``Probe``) to one ``Check``;
``CHECKS`` is the ordered table a tiny loop walks.  A check that needs something an earlier check
could not provide (the configuration, the rules) is skipped with the reason rather than failing twice.
Network checks use short timeouts (``NET_TIMEOUT``), so a server that never answers cannot hang it.
Nothing is changed: no database is created or migrated, no mail is sent, nothing is flagged.

Statuses: ``ok``; ``WARN`` (works, but look: a calendar year without holiday data, free disk running
low, plain text to a remote server); ``FAIL`` (the daemon would not work, or would leak: the part is
named in the last line and the exit status is 1); ``skip``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import ssl
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

import aiosmtplib
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from feedbackd import config as config_mod
from feedbackd.config import ConfigError, ImapSettings, Settings, SmtpSettings
from feedbackd.mail.source import CONNECTION_ERRORS, ImapSource, SourceError
from feedbackd.mail.tls import tls_context
from feedbackd.routing import RulesError, RuleSet, load_ruleset
from feedbackd.store.db import SchemaError

NET_TIMEOUT = 5.0  # seconds, at most, for each network step (the configured timeout if shorter)
DB_TIMEOUT = 5  # seconds to connect to a database server
FREE_WARN = 1024**3  # free bytes under which the disk check warns
FREE_FAIL = 100 * 1024**2  # and fails
OK, WARN, FAIL, SKIP = "ok", "WARN", "FAIL", "skip"


@dataclass(frozen=True)
class Check:
    part: str
    status: str
    detail: str


@dataclass
class Probe:
    """What the checks found so far, for the checks after them."""

    config: str | None
    today: date
    settings: Settings | None = None
    ruleset: RuleSet | None = None
    notes: dict[str, str] = field(default_factory=dict)


# -- configuration ------------------------------------------------------------------------------


def check_configuration(probe: Probe) -> Check:
    try:
        probe.settings = config_mod.load(probe.config)
    except ConfigError as exc:
        return Check("config", FAIL, str(exc))
    settings = probe.settings
    detail = f"{settings.source} loads"
    if settings.source is not None and _world_readable(settings.source) and _has_secret(settings):
        return Check("config", WARN, f"{detail}, but holds a password and others may read it "
                                     f"(chmod o-r {settings.source}, or put secrets in the environment)")
    return Check("config", OK, detail)


def _has_secret(settings: Settings) -> bool:
    staff = settings.staff.secret if settings.staff is not None else ""
    return bool(settings.imap.password or settings.smtp.password or staff)


def _world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


# -- mail servers -------------------------------------------------------------------------------


def check_imap(probe: Probe) -> Check:
    assert probe.settings is not None
    s = probe.settings.imap
    where = f"{s.host}:{s.port}"
    quick = s.model_copy(update={"timeout": timedelta(seconds=min(NET_TIMEOUT, s.timeout.total_seconds()))})
    source = ImapSource(quick)
    try:
        source.connect()
        assert source.client is not None
        idle = b"IDLE" in source.client.capabilities()
    except SourceError as exc:
        return Check("imap", FAIL, str(exc))
    except ssl.SSLCertVerificationError as exc:
        return Check("imap", FAIL, f"{where}: TLS certificate problem: {exc.verify_message} (imap.ca_file names the "
                                   "CA that signed it)")
    except CONNECTION_ERRORS as exc:
        return Check("imap", FAIL, f"{where}: cannot connect ({_why(exc)})")
    finally:
        source.close()
    detail = f"{where} {_tls_said(s)}, login ok, folder {s.folder} opens"
    if not idle:
        return Check("imap", WARN, f"{detail}; IDLE not offered: new mail is seen by polling every "
                                   f"{s.poll_interval.total_seconds():.0f} s")
    return Check("imap", _plain_text_status(s), f"{detail}, IDLE supported")


def check_smtp(probe: Probe) -> Check:
    assert probe.settings is not None
    s = probe.settings.smtp
    where = f"{s.host}:{s.port}"
    try:
        said = asyncio.run(asyncio.wait_for(_smtp_session(s), timeout=3 * NET_TIMEOUT))
    except aiosmtplib.SMTPAuthenticationError as exc:
        return Check("smtp", FAIL, f"{where}: login as {s.username!r} refused: {exc.code} {exc.message}")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        certificate = _certificate_error(exc)
        if certificate is not None:
            return Check("smtp", FAIL, f"{where}: TLS certificate problem: {certificate.verify_message} "
                                       "(smtp.ca_file names the CA that signed it)")
        return Check("smtp", FAIL, f"{where}: {_why(exc)}")
    return Check("smtp", _plain_text_status(s), f"{where} {said}")


async def _smtp_session(s: SmtpSettings) -> str:
    client = aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.security == "ssl",
                             start_tls=s.security == "starttls", tls_context=tls_context(s.security, s.ca_file),
                             timeout=min(NET_TIMEOUT, s.timeout.total_seconds()))
    await client.connect()  # greeting, EHLO, and STARTTLS when asked (never skipped: it raises instead)
    try:
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        parts = [f"EHLO ok, {_tls_said(s)}"]
        tls = client.get_transport_info("ssl_object") if s.security != "none" else None
        if isinstance(tls, ssl.SSLObject):
            parts[0] += f" ({tls.version()})"
        if s.username:
            await client.login(s.username, s.password)
            parts.append("login ok")
        if client.supports_extension("smtputf8"):
            parts.append("SMTPUTF8 offered")
        return ", ".join(parts)
    finally:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


def _tls_said(s: ImapSettings | SmtpSettings) -> str:
    return {"none": "plain text (security = none)", "starttls": "STARTTLS ok", "ssl": "TLS ok"}[s.security]


def _plain_text_status(s: ImapSettings | SmtpSettings) -> str:
    """Plain text is fine on this host; to another one, passwords and citizens' mail cross the network."""
    return WARN if s.security == "none" and not _loopback(s.host) else OK


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- database -----------------------------------------------------------------------------------


def check_database(probe: Probe) -> Check:
    from feedbackd.store import db

    assert probe.settings is not None
    url = make_url(probe.settings.database.url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if url.database and url.database != ":memory:" and not path.exists():
            return Check("database", OK, f"{shown} does not exist yet; the first run creates it (private, 0600)")
    elif "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(DB_TIMEOUT)})
    try:
        engine = db.connect(url.render_as_string(hide_password=False), create=False, readonly=True)
        try:
            stored, newest = db.current(engine)
        finally:
            engine.dispose()
    except DBAPIError as exc:
        return Check("database", FAIL, f"{shown}: cannot connect ({type(exc.orig).__name__})")
    except SchemaError as exc:
        return Check("database", FAIL, f"{shown}: {exc}")
    if stored == newest:
        return Check("database", OK, f"{shown}, schema at revision {stored} (the newest)")
    if stored is None:
        return Check("database", OK, f"{shown} is empty; the first run creates the schema")
    if stored == "0.1.0" or stored < newest:
        return Check("database", WARN, f"{shown}, schema at revision {stored}, this feedbackd's newest is {newest}: "
                                       "the daemon upgrades it at start (or run feedbackd db upgrade)")
    return Check("database", FAIL, f"{shown}, schema at revision {stored}, unknown to this feedbackd (newest "
                                   f"{newest}): a newer feedbackd upgraded it")


# -- rules, templates, calendar -----------------------------------------------------------------


def check_rules(probe: Probe) -> Check:
    assert probe.settings is not None
    directory = probe.settings.paths.rules
    try:
        probe.ruleset = load_ruleset(directory)
    except RulesError as exc:
        first = str(exc.problems[0]) if exc.problems else ""
        return Check("rules", FAIL, f"{directory}: {len(exc.problems)} problem(s), the first: {first} "
                                    f"(feedbackd rules check {directory} lists them all)")
    r = probe.ruleset
    return Check("rules", OK, f"{directory}: {len(r.rules)} rules, {len(r.departments)} departments, "
                              f"version {r.version[:12]}")


def check_templates(probe: Probe) -> Check:
    from feedbackd.templates import Templates

    assert probe.settings is not None
    directory = probe.settings.paths.templates
    if probe.ruleset is None:
        return Check("templates", SKIP, "the rules did not load, so which templates they use is unknown")
    if not directory.is_dir():
        return Check("templates", FAIL, f"{directory} is not a directory")
    missing = Templates(directory).missing_for(probe.ruleset)
    if missing:
        shown = ", ".join(f"{language}/{name}" for name, language in missing)
        return Check("templates", FAIL, f"{directory}: {len(missing)} template(s) the rules use do not exist: {shown} "
                                        "(the default acknowledgement would be sent)")
    return Check("templates", OK, f"{directory}: every template the rules use exists in zh-CN and en")


def check_calendar(probe: Probe) -> Check:
    from feedbackd.jobs.calendar import LOOKAHEAD, build

    assert probe.settings is not None
    section = probe.settings.calendar
    if section is None:
        return Check("calendar", OK, "no [calendar]: deadlines count calendar time")
    years = sorted({probe.today.year, (probe.today + LOOKAHEAD).year})
    try:
        warnings = build(section).check_years(*years)  # a fresh calendar: only these years' warnings
    except ConfigError as exc:
        return Check("calendar", FAIL, str(exc))
    if warnings:
        return Check("calendar", WARN, "; ".join(w.removeprefix("calendar: ") for w in warnings))
    known = ", ".join(str(y) for y in years)
    return Check("calendar", OK, f"{section.timezone}, {section.country or 'no'} public holidays known for {known}")


# -- disk and permissions -----------------------------------------------------------------------


def _sqlite_file(settings: Settings) -> Path | None:
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (where it will be created)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(probe: Probe) -> Check:
    assert probe.settings is not None
    places = {"data": probe.settings.paths.data}
    database = _sqlite_file(probe.settings)
    if database is not None:
        places["database"] = database.parent
    seen: dict[int, str] = {}
    worst, lines = OK, []
    for name, path in places.items():
        usage = shutil.disk_usage(_existing(path))
        device = _existing(path).stat().st_dev
        if device in seen:
            lines.append(f"{name} on the same disk as {seen[device]}")
            continue
        seen[device] = name
        lines.append(f"{name} {path}: {_size(usage.free)} free of {_size(usage.total)}")
        if usage.free < FREE_FAIL:
            worst = FAIL
        elif usage.free < FREE_WARN and worst == OK:
            worst = WARN
    if worst != OK:
        lines.append(f"under {_size(FREE_WARN if worst == WARN else FREE_FAIL)}: new mail may not be recorded")
    return Check("disk", worst, "; ".join(lines))


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def check_permissions(probe: Probe) -> Check:
    """The database file (and its -wal/-shm) and the data directory: no access for group or others."""
    assert probe.settings is not None
    paths = [probe.settings.paths.data]
    database = _sqlite_file(probe.settings)
    if database is not None:
        paths += [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
    exposed = []
    checked = 0
    for path in paths:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        checked += 1
        if mode & 0o077:
            exposed.append(f"{path} is {stat.filemode(mode)} ({oct(stat.S_IMODE(mode))})")
    if exposed:
        return Check("permissions", FAIL, "group or others may read citizens' data: " + "; ".join(exposed)
                     + " (chmod go-rwx; feedbackd creates them private)")
    if not checked:
        return Check("permissions", OK, "nothing created yet; feedbackd creates the database and data private")
    return Check("permissions", OK, "database and data directory private to their owner")


# -- the walk -----------------------------------------------------------------------------------

NEEDS_SETTINGS = "skipped: the configuration did not load"
CHECKS: tuple[Callable[[Probe], Check], ...] = (
    check_configuration, check_imap, check_smtp, check_database, check_rules, check_templates, check_calendar,
    check_disk, check_permissions)
PARTS = ("config", "imap", "smtp", "database", "rules", "templates", "calendar", "disk", "permissions")


def run_checks(config: str | None, today: date | None = None) -> list[Check]:
    probe = Probe(config, today or datetime.now(UTC).date())
    results: list[Check] = []
    for part, check in zip(PARTS, CHECKS, strict=True):
        if check is not check_configuration and probe.settings is None:
            results.append(Check(part, SKIP, NEEDS_SETTINGS))
            continue
        results.append(check(probe))
    return results


def command(config: str | None, out: TextIO, *, as_json: bool = False, today: date | None = None) -> int:
    """Print one line per check (or a JSON array); 1 when a check failed, naming the parts, else 0."""
    results = run_checks(config, today)
    failed = [c.part for c in results if c.status == FAIL]
    if as_json:
        json.dump([asdict(c) for c in results], out, ensure_ascii=False, indent=2)
        out.write("\n")
        return 1 if failed else 0
    for c in results:
        out.write(f"{c.status:<5} {c.part:<11} {c.detail}\n")
    warned = [c.part for c in results if c.status == WARN]
    if failed:
        out.write(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}\n")
    else:
        note = f" ({len(warned)} warning(s): {', '.join(warned)})" if warned else ""
        out.write(f"doctor: everything checked is in order{note}\n")
    return 1 if failed else 0
