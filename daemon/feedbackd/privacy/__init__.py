"""Answering a citizen: what we hold about them (``export``), or forgetting them (``erase``).

``find`` decides what belongs to the person (one address, matched in canonical form); ``export``
writes it out and ``erase`` removes it, both from the same findings, so the dry run lists what
the erase would take.  The commands refuse staff and our own addresses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from feedbackd.config import Settings
from feedbackd.privacy.erase import Erasure, erase
from feedbackd.privacy.export import write_export
from feedbackd.privacy.find import Person
from feedbackd.store.db import connect

__all__ = ["Person", "erase", "erase_command", "export_command", "staff_of"]

EXIT_REFUSED = 2


def staff_of(settings: Settings) -> frozenset[str]:
    """Staff and lead addresses of the rules, and our own addresses (empty rules: only ours)."""
    from feedbackd.routing import RulesError, load_ruleset
    from feedbackd.staff.actions import staff_addresses

    try:
        staff = staff_addresses(load_ruleset(settings.paths.rules))
    except RulesError:
        staff = frozenset()
    return staff | settings.mailbox.own_addresses | frozenset(settings.jobs.admins)


def _refusal(settings: Settings, person: Person, staff: frozenset[str]) -> str | None:
    if "@" not in person.canonical:
        return f"not an e-mail address: {person.address!r}"
    if any(person.matches(a) for a in settings.mailbox.own_addresses):
        return f"{person.address} is our own address"
    if any(person.matches(a) for a in staff):
        return (f"{person.address} is a staff address in the rules: erasing or exporting staff is out of scope "
                "(their actions are the cases' history); take them out of the rules first")
    return None


def export_command(settings: Settings, address: str, out: Path | None, stdout: TextIO) -> int:
    person = Person.of(address)
    staff = staff_of(settings)
    refused = _refusal(settings, person, staff)
    if refused:
        stdout.write(f"refused: {refused}\n")
        return EXIT_REFUSED
    now = datetime.now(UTC)
    target = out or Path.cwd() / f"privacy-export-{now:%Y%m%dT%H%M%SZ}"
    engine = connect(settings.database.url, readonly=True)
    try:
        index = write_export(engine, settings, person, target, now, staff)
    except FileExistsError as exc:
        stdout.write(f"refused: {exc} (choose a new --out)\n")
        return EXIT_REFUSED
    finally:
        engine.dispose()
    messages = sum(len(c["messages"]) for c in index["cases"])
    stdout.write(f"exported {len(index['cases'])} case(s), {messages} message(s) and {len(index['other'])} "
                 f"other item(s) about {person.address} to {target}\n")
    return 0


def erase_command(settings: Settings, address: str, stdout: TextIO, *, dry_run: bool = False,
                  as_json: bool = False) -> int:
    person = Person.of(address)
    refused = _refusal(settings, person, staff_of(settings))
    if refused:
        stdout.write(f"refused: {refused}\n")
        return EXIT_REFUSED
    engine = connect(settings.database.url)
    try:
        result = erase(engine, settings, person, datetime.now(UTC), dry_run=dry_run)
    finally:
        engine.dispose()
    if as_json:
        stdout.write(json.dumps({"address": person.address, **result.as_dict()}, ensure_ascii=False, indent=2) + "\n")
    else:
        _print(stdout, person, result)
    return 0


def _print(stdout: TextIO, person: Person, result: Erasure) -> None:
    if not any(result.counts.values()):
        stdout.write(f"nothing held about {person.address}\n")
        return
    verb = "would erase" if result.dry_run else "erased"
    stdout.write(f"{verb} what is held about {person.address}:\n")
    if result.cases:
        stdout.write(f"  their cases: {', '.join(result.cases)}\n")
    if result.other_cases:
        stdout.write(f"  other cases they took part in: {', '.join(result.other_cases)}\n")
    for name, n in result.counts.items():
        if n:
            stdout.write(f"  {name.replace('_', ' ')}: {n}\n")
    if result.counts["mailbox_pending"] and not result.dry_run:
        stdout.write("  the IMAP server could not be reached: the daily purge job (or this command again) "
                     "deletes the mailbox copies\n")
