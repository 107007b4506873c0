"""Typed settings, read once from one TOML file and validated before anything starts.

The file comes from ``--config FILE`` or ``$FEEDBACKD_CONFIG``; secrets may instead come from
``$FEEDBACKD_IMAP_PASSWORD`` / ``$FEEDBACKD_SMTP_PASSWORD``.  Relative paths are taken relative to
the configuration file, so a config can sit beside its data.  Settings are passed explicitly to
the parts that need them: there is no global configuration object.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

ENV_CONFIG = "FEEDBACKD_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZES = {"b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"5m"``, ``"4h"``, ``"3d"``, ``"1w"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration like '30s', '5m', '4h' or '3d': {value!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def parse_size(value: Any) -> int:
    """``"10MB"``, ``"512k"`` or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size like '10MB' or '512KB': {value!r}")
    return int(float(match[1]) * _SIZES[(match[2] or "b").lower()])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Security = Literal["none", "starttls", "ssl"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MailboxSettings(Section):
    address: str
    name: str = "Feedback"
    language: Literal["zh-CN", "en"] = "zh-CN"
    aliases: list[str] = Field(default_factory=list)  # other addresses delivered to this mailbox

    @field_validator("address", "aliases")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_check_address(v) for v in value]
        return _check_address(value)

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset([self.address, *self.aliases])


def _check_address(value: str) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", value):
        raise ValueError(f"not an e-mail address: {value!r}")
    return value


class ImapSettings(Section):
    host: str
    port: int = Field(143, ge=1, le=65535)
    security: Security = "starttls"
    username: str
    password: str = ""
    folder: str = "INBOX"
    idle: bool = True  # use IMAP IDLE where the server supports it
    poll_interval: Duration = timedelta(seconds=60)  # when IDLE is off or unsupported
    idle_timeout: Duration = timedelta(minutes=5)  # re-issue IDLE this often (and check the link)
    batch_size: int = Field(200, ge=1, le=5000)  # messages per UID FETCH
    batch_bytes: Size = 32 * 1024 * 1024  # and at most this many bytes per UID FETCH
    timeout: Duration = timedelta(seconds=30)  # socket timeout
    processed_flag: str = "$FeedbackdProcessed"  # keyword set on the server after commit ("" = none)
    ca_file: Path | None = None  # CA bundle that signed the server's certificate (default: the system's)


class SmtpSettings(Section):
    host: str
    port: int = Field(25, ge=1, le=65535)
    security: Security = "starttls"
    username: str = ""
    password: str = ""
    timeout: Duration = timedelta(seconds=30)
    connections: int = Field(2, ge=1, le=16)  # parallel SMTP sessions for the outbox
    ca_file: Path | None = None  # CA bundle that signed the server's certificate (default: the system's)


class DatabaseSettings(Section):
    url: str = "sqlite:///feedbackd.db"


class PathSettings(Section):
    rules: Path = Path("rules")
    templates: Path = Path("templates")
    data: Path = Path("data")


class CaseSettings(Section):
    prefix: str = Field("FB", pattern=r"^[A-Z][A-Z0-9]{0,9}$")  # the subject token is [FB-000123]
    digits: int = Field(6, ge=3, le=12)
    reopen_days: int = Field(14, ge=0)  # a citizen's reply this long after resolution reopens; later, a new case


STAFF_SECRET_MIN = 16
ProgressStatus = Literal["in-progress", "waiting", "closed", "open"]


def _default_progress() -> list[ProgressStatus]:
    return ["in-progress", "waiting", "closed", "open"]


class StaffSettings(Section):
    """Staff work from their own mail client (the section's presence switches staff mail on)."""

    enabled: bool = True
    secret: str = ""  # signs the staff reply addresses (or $FEEDBACKD_STAFF_SECRET); 16 characters or more
    show_citizen_address: bool = False  # staff mail shows the citizen's address (else masked: zh***@qq.com)
    require_authentication: bool = False  # a staff reply needs DKIM or SPF pass in Authentication-Results
    authserv_id: str = ""  # the receiving server's id in Authentication-Results, trusted only topmost
    copy_citizen_cc: bool = False  # people the citizen copied also receive staff answers
    # Status changes that send the citizen a short progress mail (#resolve always sends the result).
    progress_on: list[ProgressStatus] = Field(default_factory=_default_progress)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return value.strip()


class IntakeSettings(Section):
    attachment_max_size: Size = 10 * 1024 * 1024  # larger attachments are recorded, not stored
    message_max_size: Size = 50 * 1024 * 1024  # larger messages are quarantined unparsed
    # Beyond these a message is kept raw and quarantined with the reason, never parsed further.
    max_parts: int = Field(1000, ge=1)  # MIME parts in one message
    max_header_bytes: Size = 256 * 1024  # the header block of the message (and of each part)
    max_depth: int = Field(20, ge=1, le=100)  # MIME nesting


class AcknowledgementSettings(Section):
    enabled: bool = True
    rate_limit: int = Field(5, ge=0)  # acknowledgements to one sender per rate_window (0 = no limit)
    rate_window: Duration = timedelta(hours=1)
    # Automatic answers to everyone together per hour (0 = no limit): what a flood of forged
    # senders can make us send.  Over it, cases are still opened, without an acknowledgement.
    global_rate_limit: int = Field(1000, ge=0)


class OutboxSettings(Section):
    retry_initial: Duration = timedelta(seconds=30)  # first retry delay, doubled each time
    retry_max: Duration = timedelta(minutes=30)  # longest delay between two attempts
    give_up_after: Duration = timedelta(days=3)  # temporary failures become permanent after this


class CalendarSettings(Section):
    """Business hours: deadlines count only working time when this section is present."""

    timezone: str = "Asia/Shanghai"
    working_hours: str = "09:00-12:00,13:30-18:00"  # comma-separated HH:MM-HH:MM ranges of a working day
    country: str = "CN"  # public holidays (and China's adjusted working days, 调休) from the holidays package
    overrides: Path | None = None  # YAML of extra holidays and working days, for years the package lacks


class JobsSettings(Section):
    """The scheduled jobs (``feedbackd jobs run`` and the daemon's scheduler)."""

    reminder_at: float = Field(0.75, gt=0, lt=1)  # share of a deadline after which its reminder goes
    escalate_after: Duration = timedelta(hours=4)  # second escalation level (admins), after the first (lead)
    progress_every: Duration = timedelta(days=3)  # a citizen hears "still being handled" this often
    digest_at: str = Field("08:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # daily staff digest, local time
    report_weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"  # weekly report to admins
    auto_close_after: Duration = timedelta(days=7)  # resolved without a citizen reply → closed
    retention: Duration = timedelta(days=365)  # closed this long → personal data purged
    admins: list[str] = Field(default_factory=list)  # second escalation level and the weekly report

    @field_validator("admins")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [_check_address(v) for v in value]


class RoutingSettings(Section):
    """The learned routing suggestion (``feedbackd rules learn``): off, shown beside the rules'
    decision (suggest), or deciding the department and kind when no rule set the department (route)."""

    learned: Literal["off", "suggest", "route"] = "off"
    learned_min_confidence: float = Field(0.7, ge=0, le=1)  # below this the model says nothing


class Settings(Section):
    mailbox: MailboxSettings
    imap: ImapSettings
    smtp: SmtpSettings
    database: DatabaseSettings = DatabaseSettings()
    paths: PathSettings = PathSettings()
    cases: CaseSettings = CaseSettings()
    intake: IntakeSettings = IntakeSettings()
    acknowledgement: AcknowledgementSettings = AcknowledgementSettings()
    outbox: OutboxSettings = OutboxSettings()
    staff: StaffSettings | None = None  # None: no [staff] section, staff mail is off
    calendar: CalendarSettings | None = None  # None: deadlines count calendar time
    jobs: JobsSettings = JobsSettings()
    routing: RoutingSettings = RoutingSettings()
    source: Path | None = None  # the file these settings were read from

    @property
    def staff_mail(self) -> StaffSettings | None:
        """The staff settings when staff mail is on, else None."""
        return self.staff if self.staff is not None and self.staff.enabled else None


class ConfigError(Exception):
    """A configuration problem, already phrased as the one line an admin should read."""


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    value = explicit or os.environ.get(ENV_CONFIG)
    if not value:
        raise ConfigError(f"no configuration file: pass --config FILE or set {ENV_CONFIG}")
    return Path(value)


def load(explicit: str | os.PathLike[str] | None = None) -> Settings:
    """Read, merge environment secrets, validate; raise ConfigError with one clear line."""
    path = config_path(explicit)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, path)


def from_dict(data: dict[str, Any], path: Path) -> Settings:
    data = _with_env_secrets(data)
    try:
        settings = Settings.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    _check_staff(settings, path)
    return _resolve_paths(settings, path.parent)


def _with_env_secrets(data: dict[str, Any]) -> dict[str, Any]:
    merged = dict(data)
    for section in ("imap", "smtp"):
        secret = os.environ.get(f"FEEDBACKD_{section.upper()}_PASSWORD")
        if secret is not None and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], "password": secret}
    staff_secret = os.environ.get("FEEDBACKD_STAFF_SECRET")
    if staff_secret is not None and isinstance(merged.get("staff"), dict):
        merged["staff"] = {**merged["staff"], "secret": staff_secret}
    return merged


def _check_staff(settings: Settings, path: Path) -> None:
    staff = settings.staff_mail
    if staff is not None and len(staff.secret) < STAFF_SECRET_MIN:
        what = "missing" if not staff.secret else f"only {len(staff.secret)} characters long"
        raise ConfigError(f"{path}: bad value for 'staff.secret': {what}; staff mail needs a secret of "
                          f"{STAFF_SECRET_MIN} or more characters (or set FEEDBACKD_STAFF_SECRET)")
    if staff is not None and staff.require_authentication and not staff.authserv_id.strip():
        raise ConfigError(f"{path}: bad value for 'staff.authserv_id': require_authentication is on, so it must "
                          "name the receiving server whose Authentication-Results are trusted")


def _describe(exc: ValidationError, path: Path) -> str:
    """The first problem as one line: which key, which file, what is wrong (and how many more)."""
    errors = exc.errors()
    first = errors[0]
    key = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "missing":
        what = f"missing required setting '{key}'"
    elif kind == "extra_forbidden":
        what = f"unknown setting '{key}'"
    else:
        message = first["msg"].removeprefix("Value error, ")
        what = f"bad value for '{key}': {message}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{path}: {what}{more}"


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    if settings.calendar is not None and settings.calendar.overrides is not None:
        calendar = settings.calendar.model_copy(update={"overrides": absolute(settings.calendar.overrides)})
        settings = settings.model_copy(update={"calendar": calendar})
    paths = PathSettings(rules=absolute(settings.paths.rules),
                         templates=absolute(settings.paths.templates),
                         data=absolute(settings.paths.data))
    updates: dict[str, Any] = {"paths": paths}
    for name in ("imap", "smtp"):
        section = getattr(settings, name)
        if section.ca_file is not None:
            updates[name] = section.model_copy(update={"ca_file": absolute(section.ca_file)})
    url = settings.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
        url = "sqlite:///" + str(absolute(Path(url.removeprefix("sqlite:///"))))
    return settings.model_copy(update={**updates, "database": DatabaseSettings(url=url)})
