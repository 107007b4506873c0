"""Sending over SMTP with aiosmtplib, and sorting failures into temporary and permanent.

Several mails go over a few reused connections at once; each result says whether to retry.
STARTTLS is never silently skipped: if it was asked for and fails, the send fails.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib

from feedbackd.config import SmtpSettings


@dataclass(frozen=True)
class Envelope:
    key: int  # the caller's id for this mail
    mail_from: str
    recipient: str
    raw: bytes


@dataclass(frozen=True)
class SendResult:
    key: int
    ok: bool
    permanent: bool = False  # 5xx: retrying will not help
    error: str = ""


def _client(settings: SmtpSettings) -> aiosmtplib.SMTP:
    context = ssl.create_default_context()
    return aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.security == "ssl",
        start_tls=settings.security == "starttls",
        tls_context=context,
        timeout=settings.timeout.total_seconds(),
    )


async def _worker(settings: SmtpSettings, queue: asyncio.Queue[Envelope],
                  results: list[SendResult]) -> None:
    client: aiosmtplib.SMTP | None = None
    try:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                if client is None or not client.is_connected:
                    client = _client(settings)
                    await client.connect()
                    if settings.username:
                        await client.login(settings.username, settings.password)
                await client.sendmail(item.mail_from, [item.recipient], item.raw)
                results.append(SendResult(item.key, True))
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [err.code for err in exc.recipients]
                detail = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
                results.append(SendResult(item.key, False, all(c >= 500 for c in codes),
                                          f"recipient refused: {detail}"))
            except aiosmtplib.SMTPResponseException as exc:
                results.append(SendResult(item.key, False, exc.code >= 500,
                                          f"SMTP {exc.code}: {exc.message}"))
                if exc.code in (421,) or isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                    client = None
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                results.append(SendResult(item.key, False, False, f"{type(exc).__name__}: {exc}"))
                client = None  # reconnect for the next mail
    finally:
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                client.close()


async def send_all(settings: SmtpSettings, envelopes: Sequence[Envelope]) -> list[SendResult]:
    """Send every envelope over up to ``settings.connections`` sessions; one result each."""
    queue: asyncio.Queue[Envelope] = asyncio.Queue()
    for envelope in envelopes:
        queue.put_nowait(envelope)
    results: list[SendResult] = []
    workers = min(settings.connections, len(envelopes)) or 1
    await asyncio.gather(*(_worker(settings, queue, results) for _ in range(workers)))
    return results
