"""``feedbackd privacy export ADDRESS``: everything held about one person, in a folder or a zip file.

Layout (the same inside a zip)::

    index.json                       machine-readable: every case, message, event and mail below
    README.txt                       the same, for a person to read
    cases/FB-000123/case.txt         one case: its record, events and messages as text
    cases/FB-000123/NN-in.eml        a message as we received it (NN: its order in the case)
    cases/FB-000123/NN-out.eml       a mail we sent (the outbox's copy)
    cases/FB-000123/NN-K-name.ext    attachment K of message NN
    other/NN-...                     their messages on no case, quarantined mail from them

Their own cases come whole, with the mail we sent about them; of other citizens' cases only the
number, status and dates, their own messages and our mail to them.  Every address that is not
theirs and not one of ours is masked (``[someone else]``, staff ``[staff]``), in text and in the
headers of the raw mail.  Files are 0600 and folders 0700 (a zip file 0600).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine, RowMapping

from feedbackd.cases import CaseNumbers
from feedbackd.config import Settings
from feedbackd.privacy.find import Holdings, Person, find
from feedbackd.store.files import FILE_MODE, private_dirs
from feedbackd.store.records import ATTACHMENTS, CASES, EVENTS, MESSAGES, OUTBOX, QUARANTINE, RAW

SOMEONE = "[someone else]"
STAFF = "[staff]"
_ADDRESS = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_ADDRESS_BYTES = re.compile(rb"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_UNSAFE = re.compile(r"[^\w.\-]+")


class Sink(Protocol):
    data_dir: Path  # where the attachment files are

    def write(self, name: str, data: bytes) -> None: ...

    def close(self) -> None: ...


class FolderSink:
    def __init__(self, root: Path, data_dir: Path) -> None:
        self.data_dir = data_dir
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"{root} exists and is not empty")
        private_dirs(root)
        self.root = root

    def write(self, name: str, data: bytes) -> None:
        path = self.root / name
        private_dirs(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    def close(self) -> None:
        return


class ZipSink:
    def __init__(self, path: Path, data_dir: Path) -> None:
        self.data_dir = data_dir
        private_dirs(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self.file = os.fdopen(fd, "wb")
        self.zip = zipfile.ZipFile(self.file, "w", zipfile.ZIP_DEFLATED)

    def write(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=datetime.now().timetuple()[:6])
        info.external_attr = (0o100000 | FILE_MODE) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)

    def close(self) -> None:
        self.zip.close()
        self.file.close()


@dataclass
class Masker:
    """Addresses that are not theirs: masked; ours (the feedback mailbox) stay."""

    person: Person
    own: frozenset[str]
    staff: frozenset[str]
    masked: set[str] = field(default_factory=set)

    def address(self, value: str) -> str:
        lowered = value.lower()
        if self.person.matches(value) or lowered in self.own:
            return value
        self.masked.add(lowered)
        return STAFF if lowered in self.staff else SOMEONE

    def text(self, value: str) -> str:
        return _ADDRESS.sub(lambda m: self.address(m.group(0)), value)

    def data(self, value: bytes) -> bytes:
        return _ADDRESS_BYTES.sub(lambda m: self.address(m.group(0).decode("ascii")).encode("ascii"), value)

    def json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return self.text(value) if isinstance(value, str) else value


def export(engine: Engine, settings: Settings, person: Person, sink: Sink, now: datetime,
           staff: frozenset[str]) -> dict[str, Any]:
    """Write everything held about ``person`` to ``sink``; returns the index."""
    numbers = CaseNumbers(settings.cases)
    mask = Masker(person, settings.mailbox.own_addresses, staff)
    index: dict[str, Any] = {"address": person.address, "exported_at": now.isoformat(), "cases": [], "other": []}
    with engine.connect() as conn, conn.begin():
        found = find(conn, person)
        for case_id in found.own_cases:
            index["cases"].append(_case(conn, sink, numbers, mask, case_id, found, own=True))
        for case_id in found.other_cases:
            index["cases"].append(_case(conn, sink, numbers, mask, case_id, found, own=False))
        index["other"] = _other(conn, sink, mask, found)
    sink.write("index.json", json.dumps(index, ensure_ascii=False, indent=2, default=str).encode("utf-8"))
    sink.write("README.txt", _readme(index).encode("utf-8"))
    return index


def _case(conn: Connection, sink: Sink, numbers: CaseNumbers, mask: Masker, case_id: int, found: Holdings,
          *, own: bool) -> dict[str, Any]:
    row = conn.execute(select(CASES).where(CASES.c.id == case_id)).mappings().one()
    number = numbers.format(case_id)
    folder = f"cases/{number}"
    entry: dict[str, Any] = {
        "number": number, "role": "requester" if own else "participant", "status": row["status"],
        "kind": row["kind"], "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
        "resolved_at": _iso(row["resolved_at"]), "closed_at": _iso(row["closed_at"])}
    if own:
        entry.update(subject=row["subject"], name=row["requester_name"], address=row["requester"],
                     department=row["department"], priority=row["priority"], tags=list(row["tags"] or []),
                     satisfaction=row["satisfaction"])
    wanted = set(found.their_messages) | set(found.mentioning)
    messages = conn.execute(select(MESSAGES).where(MESSAGES.c.case_id == case_id)
                            .order_by(MESSAGES.c.received_at, MESSAGES.c.id)).mappings().all()
    # Theirs and ours; what other citizens wrote is theirs to ask for.
    shown = [m for m in messages if (m["direction"] == "out" or mask.person.matches(m["from_addr"]))
             and (own or m["id"] in wanted)]
    entry["messages"] = [_message(conn, sink, mask, folder, n, m) for n, m in enumerate(shown, 1)]
    if own:
        entry["messages_of_others_not_included"] = len(messages) - len(shown)
    query = select(EVENTS).where(EVENTS.c.case_id == case_id)
    if not own:
        query = query.where(EVENTS.c.id.in_(found.events))
    entry["events"] = [{"at": _iso(e["at"]), "kind": e["kind"], "actor": mask.text(e["actor"] or ""),
                        "detail": mask.json(e["detail"])}
                       for e in conn.execute(query.order_by(EVENTS.c.at, EVENTS.c.id)).mappings()]
    outbox = select(OUTBOX).where(OUTBOX.c.case_id == case_id)
    if not own:
        outbox = outbox.where(OUTBOX.c.id.in_(found.outbox))
    entry["outgoing"] = [_outgoing(sink, mask, folder, n, o) for n, o in
                         enumerate(conn.execute(outbox.order_by(OUTBOX.c.id)).mappings(), 1)]
    sink.write(f"{folder}/case.txt", _case_text(entry).encode("utf-8"))
    return entry


def _message(conn: Connection, sink: Sink, mask: Masker, folder: str, n: int, m: RowMapping) -> dict[str, Any]:
    stem = f"{folder}/{n:02d}-{m['direction']}"
    entry: dict[str, Any] = {
        "direction": m["direction"], "kind": m["kind"], "date": _iso(m["date"]), "received_at": _iso(m["received_at"]),
        "from": mask.address(m["from_addr"]) if m["from_addr"] else "", "from_name": m["from_name"],
        "to": [mask.address(a) for a in m["to_addrs"] or []], "cc": [mask.address(a) for a in m["cc_addrs"] or []],
        "subject": mask.text(m["subject"]), "text": mask.text(m["text"]), "eml": None, "attachments": []}
    raw = conn.execute(select(RAW.c.data).where(RAW.c.sha256 == m["raw_sha256"])).scalar() if m["raw_sha256"] else None
    if raw is not None:
        entry["eml"] = f"{stem}.eml"
        sink.write(entry["eml"], mask.data(bytes(raw)))
    for k, a in enumerate(conn.execute(select(ATTACHMENTS).where(ATTACHMENTS.c.message_id == m["id"])
                                       .order_by(ATTACHMENTS.c.id)).mappings(), 1):
        item: dict[str, Any] = {"filename": a["filename"], "content_type": a["content_type"], "size": a["size"],
                                "file": None}
        data = _attachment(sink, a["sha256"])
        if data is not None:
            item["file"] = f"{stem}-{k}-{_safe(a['filename'])}"
            sink.write(item["file"], data)
        entry["attachments"].append(item)
    return entry


def _attachment(sink: Sink, digest: str | None) -> bytes | None:
    if not digest:
        return None
    path = sink.data_dir / "attachments" / digest[:2] / digest
    return path.read_bytes() if path.is_file() else None


def _outgoing(sink: Sink, mask: Masker, folder: str, n: int, o: RowMapping) -> dict[str, Any]:
    entry: dict[str, Any] = {"purpose": o["purpose"], "to": mask.address(o["recipient"]), "status": o["status"],
                             "created_at": _iso(o["created_at"]), "sent_at": _iso(o["sent_at"]), "eml": None}
    if o["raw"]:
        entry["eml"] = f"{folder}/mail-{n:02d}-{_safe(o['purpose'])}.eml"
        sink.write(entry["eml"], mask.data(bytes(o["raw"])))
    return entry


def _other(conn: Connection, sink: Sink, mask: Masker, found: Holdings) -> list[dict[str, Any]]:
    """Their messages on no case, mail to them on no case, and quarantined mail from them."""
    entries: list[dict[str, Any]] = []
    loose = conn.execute(select(MESSAGES).where(MESSAGES.c.id.in_(found.their_messages), MESSAGES.c.case_id.is_(None))
                         .order_by(MESSAGES.c.id)).mappings().all()
    entries += [{"type": "message", **_message(conn, sink, mask, "other", n, m)} for n, m in enumerate(loose, 1)]
    mail = conn.execute(select(OUTBOX).where(OUTBOX.c.id.in_(found.outbox), OUTBOX.c.case_id.is_(None))
                        .order_by(OUTBOX.c.id)).mappings().all()
    entries += [{"type": "outgoing", **_outgoing(sink, mask, "other", n, o)} for n, o in enumerate(mail, 1)]
    for n, q in enumerate(conn.execute(select(QUARANTINE).where(QUARANTINE.c.id.in_(found.quarantine))
                                       .order_by(QUARANTINE.c.id)).mappings(), 1):
        item: dict[str, Any] = {"type": "quarantine", "received_at": _iso(q["received_at"]), "reason": q["reason"],
                                "subject": mask.text(q["subject"]), "resolved": q["resolved"], "eml": None}
        raw = conn.execute(select(RAW.c.data).where(RAW.c.sha256 == q["raw_sha256"])).scalar()
        if raw is not None:
            item["eml"] = f"other/quarantine-{n:02d}.eml"
            sink.write(item["eml"], mask.data(bytes(raw)))
        entries.append(item)
    return entries


# -- text for a person ----------------------------------------------------------------------------


def _case_text(case: dict[str, Any]) -> str:
    lines = [f"Case {case['number']} ({'you opened it' if case['role'] == 'requester' else 'you took part'})",
             f"Status: {case['status']}   Kind: {case['kind']}   Opened: {case['created_at']}"]
    if case.get("subject") is not None:
        lines.append(f"Subject: {case['subject']}")
    if case.get("department"):
        lines.append(f"Department: {case['department']}   Priority: {case['priority']}")
    lines += ["", "History:"]
    lines += [f"  {e['at']}  {e['kind']}  ({e['actor']})" for e in case["events"]] or ["  (none kept about you)"]
    for n, m in enumerate(case["messages"], 1):
        arrow = "from you" if m["direction"] == "in" else "sent by us"
        lines += ["", f"--- message {n}, {arrow}, {m['date'] or m['received_at']}",
                  f"From: {m['from_name']} <{m['from']}>".replace(" <>", ""), f"To: {', '.join(m['to'])}"]
        if m["cc"]:
            lines.append(f"Cc: {', '.join(m['cc'])}")
        lines += [f"Subject: {m['subject']}", "", m["text"]]
        lines += [f"[attachment: {a['filename']}, {a['size']} bytes{', file ' + a['file'] if a['file'] else ''}]"
                  for a in m["attachments"]]
    for o in case["outgoing"]:
        lines.append(f"Mail we sent or queued: {o['purpose']} to {o['to']} ({o['status']}, {o['created_at']})")
    return "\n".join(lines) + "\n"


def _readme(index: dict[str, Any]) -> str:
    own = [c for c in index["cases"] if c["role"] == "requester"]
    other = [c for c in index["cases"] if c["role"] != "requester"]
    messages = sum(len(c["messages"]) for c in index["cases"])
    lines = [f"What we hold about {index['address']}, as of {index['exported_at']}", "",
             f"Cases you opened: {len(own)}", f"Cases of others you took part in: {len(other)}",
             f"Messages: {messages}", f"Other items (messages on no case, quarantined mail): {len(index['other'])}",
             "", "Each case has a folder under cases/ with case.txt (readable text) and the mail itself (.eml).",
             "index.json holds the same in a machine-readable form.",
             f"Addresses of other people are shown as {SOMEONE}, those of our staff as {STAFF}.", ""]
    lines += [f"  {c['number']}  {c['status']:<12} {c['created_at']}  {c.get('subject') or ''}" for c in index["cases"]]
    return "\n".join(lines) + "\n"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _safe(name: str) -> str:
    return (_UNSAFE.sub("_", name).strip("._") or "file")[:80]


def write_export(engine: Engine, settings: Settings, person: Person, out: Path, now: datetime,
                 staff: Iterable[str]) -> dict[str, Any]:
    """To a folder, or a zip file when ``out`` ends in .zip."""
    data = settings.paths.data
    sink: Sink = ZipSink(out, data) if out.suffix.lower() == ".zip" else FolderSink(out, data)
    try:
        return export(engine, settings, person, sink, now, frozenset(a.lower() for a in staff))
    finally:
        sink.close()
