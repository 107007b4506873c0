"""The mail of the staff loop: notices and help to staff, progress and results to the citizen.

Deciding what goes to whom is the caller's (``staff.loop``); this module only renders and composes,
and returns ``(Rendered, Outgoing)`` for ``outgoing.record_and_queue``.  Every mail has one
recipient and comes from the feedback address.  The two directions keep each other's secrets:

- Staff mail carries ``Reply-To`` the case's signed staff reply address, so an answer from any
  client comes back naming its case; the citizen's address is masked (``zh***@qq.com``) unless
  ``[staff] show_citizen_address``.  Notices of a case thread in the staff client under one
  stable root id (``thread_root``), which is never sent itself, so no two mails share an id.
- Citizen mail never has a Reply-To (answers go to the feedback address and join by the subject
  token) and never names a staff member: the staff text is the only staff input, and ``conceal``
  blanks the staff member's address and name in it.

Everything echoed is bounded (a 5 MB citizen text makes a notice of about 80 KB), and templates
get it as data only (``templates.Templates`` renders in a sandbox).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings, StaffSettings
from feedbackd.mail.compose import AutoSubmitted, Outgoing, compose, wire_address
from feedbackd.mail.message import Address
from feedbackd.routing import RuleSet
from feedbackd.staff.address import reply_address
from feedbackd.staff.commands import help_text
from feedbackd.stages.answer import bounded, local_time
from feedbackd.templates import Rendered, Templates

TEXT_LIMIT = 20_000  # characters of a citizen's or staff member's text in one mail
SUBJECT_LIMIT = 100  # characters of the case's subject echoed in ours
NAME_LIMIT = 40
ATTACHMENTS_LIMIT = 20  # attachments listed by name in a notice; the rest are counted
ATTACHMENT_NAME_LIMIT = 80
RULES_LIMIT = 20
RULE_LIMIT = 120
ERRORS_LIMIT = 20
ERROR_LIMIT = 300
CONCEALED = "***"

Event = Literal["new-case", "follow-up", "moved", "reopened", "unsatisfied", "claim-failed"]
EVENTS: frozenset[str] = frozenset(["new-case", "follow-up", "moved", "reopened", "unsatisfied", "claim-failed"])
PURPOSES: frozenset[str] = frozenset(["progress", "result", "satisfaction-thanks"])
CaseRow = Mapping[Any, Any]  # a case's columns: a dict, or the RowMapping the store returns


def masked(address: str) -> str:
    """``zhang.san@qq.com`` → ``zh***@qq.com``: enough for staff to tell two citizens apart, not to write."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return CONCEALED
    keep = local[:2] if len(local) > 2 else local[:1]
    return f"{keep}{CONCEALED}@{bounded(domain, 80)}"


def thread_root(case_number: str, feedback_address: str) -> str:
    """The one Message-ID every staff mail of a case refers to (``case-FB-000123@city.example``).

    It is never the id of a sent mail: ids must stay unique (the outbox and the threading index
    key on them), and several staff members get their own copy of each notice.  Clients thread
    on a References root they have never seen (Thunderbird, Apple Mail, Gmail with the subject).
    """
    domain = wire_address(feedback_address).rpartition("@")[2]
    if not domain or not domain.isascii():
        domain = "feedbackd.invalid"
    return f"case-{case_number.upper()}@{domain}"


def bounded_block(text: str, limit: int = TEXT_LIMIT) -> tuple[str, int]:
    """Text of many lines cut to ``limit`` characters (at a line end where one is near); and how many were left out."""
    text = text.strip()
    if len(text) <= limit:
        return text, 0
    cut = text.rfind("\n", limit - 500, limit)
    kept = text[: cut if cut > 0 else limit].rstrip()
    return kept, len(text) - len(kept)


def conceal(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each of ``secrets`` (a staff member's address, name) blanked, case-insensitively.

    A name shorter than two characters is left alone: blanking one character would maul the text.
    """
    words = sorted({s.strip() for s in secrets if len(s.strip()) >= 2}, key=len, reverse=True)
    if not words:
        return text
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    return pattern.sub(CONCEALED, text)


def file_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def when(value: Any) -> str | None:
    """A deadline as people read it (local time); None where there is none."""
    if value is None or value == "":
        return None
    return local_time(value) if isinstance(value, datetime) else bounded(str(value), 40)


class StaffMail:
    """Renders and composes the loop's mail; ``notice`` and ``help`` need staff mail on (a secret to sign with)."""

    def __init__(self, settings: Settings, templates: Templates, numbers: CaseNumbers) -> None:
        self.settings = settings
        self.templates = templates
        self.numbers = numbers
        self.ours = Address(settings.mailbox.name, settings.mailbox.address)

    # -- to staff ---------------------------------------------------------------------------------

    def notice(self, case: CaseRow, *, event: str, to: str, text: str, subject: str,
               attachments: Sequence[Mapping[str, Any]], rules: Sequence[str], from_name: str, from_addr: str,
               language: str = "zh-CN", in_reply_to: str | None = None, references: Sequence[str] = (),
               ruleset: RuleSet | None = None) -> tuple[Rendered, Outgoing]:
        """A case (or news of it: ``event``) for one staff member, with the command help.

        ``from_name``/``from_addr`` are who wrote ``text`` (the citizen); ``ruleset`` gives the
        department's and the priority's names (their keys are shown without it).
        """
        if event not in EVENTS:
            raise ValueError(f"unknown staff notice event: {event!r}")
        staff = self._staff()
        body, omitted = bounded_block(text)
        context = {
            **self._staff_context(case, language, ruleset),
            "event": event,
            "citizen": {"name": bounded(from_name, NAME_LIMIT), "address": self._citizen_address(staff, from_addr)},
            "message": {"subject": bounded(subject, SUBJECT_LIMIT), "text": body, "omitted": omitted,
                        **self._attachments(attachments)},
            "rules": [bounded(rule, RULE_LIMIT) for rule in rules[:RULES_LIMIT]],
            "rules_more": max(0, len(rules) - RULES_LIMIT),
        }
        return self._to_staff(case, "staff-notice", language, context, to=to, in_reply_to=in_reply_to,
                              references=references, keyword="auto-generated")

    def help(self, case: CaseRow, *, to: str, errors: Sequence[str], language: str = "zh-CN",
             in_reply_to: str | None = None, ruleset: RuleSet | None = None) -> tuple[Rendered, Outgoing]:
        """The answer to a staff reply whose commands were refused: what was wrong, and the commands."""
        self._staff()
        context = {
            **self._staff_context(case, language, ruleset),
            "errors": [bounded(error, ERROR_LIMIT) for error in errors[:ERRORS_LIMIT]],
            "errors_more": max(0, len(errors) - ERRORS_LIMIT),
        }
        references = [in_reply_to] if in_reply_to else []
        return self._to_staff(case, "staff-help", language, context, to=to, in_reply_to=in_reply_to,
                              references=references, keyword="auto-replied")

    def _staff(self) -> StaffSettings:
        staff = self.settings.staff_mail
        if staff is None or not staff.secret:
            raise RuntimeError("staff mail is off: there is no [staff] secret to sign reply addresses with")
        return staff

    def _citizen_address(self, staff: StaffSettings, address: str) -> str:
        return bounded(address, 254) if staff.show_citizen_address else masked(address)

    def _staff_context(self, case: CaseRow, language: str,
                       ruleset: RuleSet | None) -> dict[str, Any]:
        number = self.numbers.format(int(case["id"]))
        return {
            "mailbox": {"name": self.settings.mailbox.name, "address": self.settings.mailbox.address},
            "case": {**self._case(case, number), **_names(case, ruleset),
                     "first_response_due": when(case.get("first_response_due")),
                     "resolution_due": when(case.get("resolution_due")),
                     "assignee": bounded(str(case.get("assignee") or ""), 254) or None},
            "help": help_text(language),
            "reply_address": self._reply_address(number),
        }

    def _reply_address(self, number: str) -> str:
        return reply_address(self.settings.mailbox.address, self._staff().secret, number)

    def _attachments(self, attachments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        listed = [{"name": bounded(str(a.get("filename") or a.get("name") or "?"), ATTACHMENT_NAME_LIMIT),
                   "size": file_size(int(a.get("size") or 0))} for a in attachments[:ATTACHMENTS_LIMIT]]
        return {"attachments": listed, "attachments_more": max(0, len(attachments) - ATTACHMENTS_LIMIT)}

    def _to_staff(self, case: CaseRow, template: str, language: str, context: dict[str, Any], *,
                  to: str, in_reply_to: str | None, references: Sequence[str],
                  keyword: AutoSubmitted) -> tuple[Rendered, Outgoing]:
        number = context["case"]["number"]
        root = thread_root(number, self.settings.mailbox.address)
        rendered = self._render(template, language, context, number)
        outgoing = compose(rendered, sender=self.ours, recipient=Address("", to),
                           in_reply_to=in_reply_to or root, references=[root, *references], automatic=True,
                           auto_submitted=keyword, case_number=number,
                           reply_to=Address(self.settings.mailbox.name, context["reply_address"]))
        return rendered, outgoing

    # -- to the citizen ---------------------------------------------------------------------------

    def to_citizen(self, case: CaseRow, *, purpose: str, text: str, in_reply_to: str | None,
                   references: Sequence[str], status: str | None = None, conceal_words: Sequence[str] = (),
                   score: int | None = None) -> tuple[Rendered, Outgoing]:
        """Progress, the result (with the satisfaction question) or thanks for a rating, to ``case["requester"]``.

        ``text`` is a staff member's answer (stripped of quotes by the caller), or empty for a bare
        status notice; ``conceal_words`` are blanked in it (pass the staff member's address and name).
        ``score`` is the citizen's rating, for ``satisfaction-thanks``.
        Only a bare notice is ``Auto-Submitted: auto-generated``: a relayed answer is a person's.
        """
        if purpose not in PURPOSES:
            raise ValueError(f"unknown purpose of a mail to the citizen: {purpose!r}")
        number = self.numbers.format(int(case["id"]))
        body, omitted = bounded_block(conceal(text, conceal_words))
        language = str(case.get("language") or self.settings.mailbox.language)
        name = bounded(str(case.get("requester_name") or ""), NAME_LIMIT)
        context = {
            "mailbox": {"name": self.settings.mailbox.name, "address": self.settings.mailbox.address},
            "requester_name": name,
            "case": self._case(case, number),
            "status": status or str(case.get("status") or ""),
            "text": body,
            "omitted": omitted,
            "reopen_days": self.settings.cases.reopen_days,
            "score": score,
        }
        rendered = self._render(purpose, language, context, number)
        keyword: AutoSubmitted | None = None
        if purpose == "satisfaction-thanks":
            keyword = "auto-replied"
        elif not body:
            keyword = "auto-generated"
        outgoing = compose(rendered, sender=self.ours, recipient=Address(name, str(case["requester"])),
                           in_reply_to=in_reply_to, references=list(references), automatic=keyword is not None,
                           auto_submitted=keyword, case_number=number)
        return rendered, outgoing

    # -- shared -----------------------------------------------------------------------------------

    def _case(self, case: CaseRow, number: str) -> dict[str, Any]:
        return {
            "number": number,
            "token": self.numbers.token(number),
            "subject": bounded(str(case.get("subject") or ""), SUBJECT_LIMIT),
            "kind": str(case.get("kind") or ""),
            "status": str(case.get("status") or ""),
        }

    def _render(self, template: str, language: str, context: dict[str, Any], number: str) -> Rendered:
        """Render; the subject always carries the case token, whatever an admin's template says."""
        rendered = self.templates.render(template, language, context)
        token = self.numbers.token(number)
        if token not in rendered.subject:
            rendered = Rendered(f"{token} {rendered.subject}", rendered.text, rendered.html)
        return rendered


def _names(case: CaseRow, ruleset: RuleSet | None) -> dict[str, Any]:
    """The case's priority and department, by key and by the name the rules give them."""
    priority = str(case.get("priority") or "")
    department = str(case.get("department") or "")
    found_priority = ruleset.priorities.get(priority) if ruleset else None
    found_department = ruleset.departments.get(department) if ruleset and department else None
    return {
        "priority": priority,
        "priority_name": (found_priority.name if found_priority else None) or priority,
        "department": department or None,
        "department_name": found_department.name if found_department else (department or None),
    }
