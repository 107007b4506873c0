"""Sending over SMTP with aiosmtplib, and sorting failures into temporary and permanent.

Several mails go over a few reused connections at once; each result says whether to retry.
STARTTLS is never silently skipped: if it was asked for and fails, the send fails.
A UTF-8 address (RFC 6531) goes only with SMTPUTF8; where the server does not offer it, that mail fails
for good with the reason.  Whatever goes wrong with one mail becomes its result: nothing escapes ``send_all``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr

import aiosmtplib

from feedbackd.config import SmtpSettings
from feedbackd.mail.tls import tls_context

log = logging.getLogger(__name__)


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
        refusal = _unsendable(item)
        if refusal:
            return SendResult(item.key, False, True, refusal), client
        try:
            if client is None or not client.is_connected:
                client = await self._session()
            options = await _mail_options(client, item)
            if options is None:
                return SendResult(item.key, False, True, _no_smtputf8(item)), client
            await client.sendmail(item.mail_from, [item.recipient], item.raw, mail_options=options)
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
            _drop(client)
            return SendResult(item.key, False, False, f"{type(exc).__name__}: {exc}"), None
        except (ValueError, UnicodeError) as exc:  # an address or a message that cannot go on the wire as it is
            _drop(client)
            return SendResult(item.key, False, True, f"cannot be sent: {type(exc).__name__}: {exc}"), None
        except Exception as exc:  # one mail's surprise must not stop the others being sent
            log.error("outbox %s: unexpected %s while sending", item.key, type(exc).__name__)
            log.debug("outbox %s: the unexpected error", item.key, exc_info=True)  # its text may hold an address
            _drop(client)
            return SendResult(item.key, False, False, f"unexpected {type(exc).__name__}: {exc}"), None


def _unsendable(item: Envelope) -> str | None:
    """Why this envelope cannot go as it is; aiosmtplib would quietly send ``a@b> X`` or ``a@b\\r\\nX`` to ``a@b``."""
    if not item.recipient:
        return "no usable recipient address"
    for role, addr in (("recipient", item.recipient), ("sender", item.mail_from)):
        if parseaddr(addr)[1] != addr:
            return f"{role} address {addr!r} would not go on the wire as it is"
    return None


def needs_smtputf8(item: Envelope) -> bool:
    """A UTF-8 address (RFC 6531) can only be given to a server that offers SMTPUTF8."""
    return not (item.mail_from.isascii() and item.recipient.isascii())


def _utf8_headers(raw: bytes) -> bool:
    return not raw.partition(b"\r\n\r\n")[0].isascii()


async def _mail_options(client: aiosmtplib.SMTP, item: Envelope) -> list[str] | None:
    """The MAIL FROM options for this mail; None when it needs SMTPUTF8 and the server lacks it.

    Raw UTF-8 headers (RFC 6532) with ASCII addresses also ask for SMTPUTF8 where it is offered,
    and go as 8-bit data as before where it is not.
    """
    if not (needs_smtputf8(item) or _utf8_headers(item.raw)):
        return []
    if await _offers_smtputf8(client):
        return ["SMTPUTF8"]
    return None if needs_smtputf8(item) else []


async def _offers_smtputf8(client: aiosmtplib.SMTP) -> bool:
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            return False  # a server without EHLO has no extensions; sendmail falls back to HELO
    return client.supports_extension("smtputf8")


def _no_smtputf8(item: Envelope) -> str:
    who = f"recipient {item.recipient}" if not item.recipient.isascii() else f"sender {item.mail_from}"
    return f"{who} needs SMTPUTF8, which the server does not offer"


def _drop(client: aiosmtplib.SMTP | None) -> None:
    """Close a session whose state is unknown after an error; the next mail makes a new one."""
    if client is not None:
        client.close()
