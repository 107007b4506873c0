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
from feedbackd.mail.tls import tls_context


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


def _client(settings: SmtpSettings, context: ssl.SSLContext | None) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.security == "ssl",
        start_tls=settings.security == "starttls",
        tls_context=context,
        timeout=settings.timeout.total_seconds(),
    )


class SmtpPool:
    """Up to ``settings.connections`` SMTP sessions, kept open between batches on one event loop.

    Connecting costs more than sending a mail to a nearby server, so a daemon that sends a few
    mails at a time keeps its sessions; a session that fails is dropped and made again.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._context = tls_context(settings.security, settings.ca_file)
        self._idle: list[aiosmtplib.SMTP] = []

    async def send_all(self, envelopes: Sequence[Envelope]) -> list[SendResult]:
        """Send every envelope; one result each, in no particular order."""
        queue: asyncio.Queue[Envelope] = asyncio.Queue()
        for envelope in envelopes:
            queue.put_nowait(envelope)
        results: list[SendResult] = []
        workers = min(self.settings.connections, len(envelopes)) or 1
        await asyncio.gather(*(self._worker(queue, results) for _ in range(workers)))
        return results

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def _session(self) -> aiosmtplib.SMTP:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        client = _client(self.settings, self._context)
        await client.connect()
        if self.settings.username:
            await client.login(self.settings.username, self.settings.password)
        return client

    async def _worker(self, queue: asyncio.Queue[Envelope], results: list[SendResult]) -> None:
        client: aiosmtplib.SMTP | None = None
        try:
            while not queue.empty():
                item = queue.get_nowait()
                result, keep = await self._send(client, item)
                results.append(result)
                client = keep
        finally:
            if client is not None and client.is_connected:
                self._idle.append(client)

    async def _send(self, client: aiosmtplib.SMTP | None,
                    item: Envelope) -> tuple[SendResult, aiosmtplib.SMTP | None]:
        """Send one mail; returns its result and the session still fit for the next one."""
        try:
            if client is None or not client.is_connected:
                client = await self._session()
            await client.sendmail(item.mail_from, [item.recipient], item.raw)
            return SendResult(item.key, True), client
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            detail = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
            return SendResult(item.key, False, all(c >= 500 for c in codes), f"recipient refused: {detail}"), client
        except aiosmtplib.SMTPServerDisconnected as exc:
            return SendResult(item.key, False, False, f"server disconnected: {exc}"), None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                client = None  # the server is closing the session
            return SendResult(item.key, False, exc.code >= 500, f"SMTP {exc.code}: {exc.message}"), client
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if client is not None:
                client.close()
            return SendResult(item.key, False, False, f"{type(exc).__name__}: {exc}"), None
