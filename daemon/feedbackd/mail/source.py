"""The IMAP mail source: new messages above a UID cursor, in batches, and waiting for more.

UIDs, never sequence numbers; BODY.PEEK so fetching sets no flag; nothing is deleted or moved,
so a crash can never lose mail.  The cursor is owned by the caller (it commits with each case);
the source only reports the folder's UIDVALIDITY so the caller can tell when UIDs were reset.
IDLE is used as a hint with short cycles (a dead connection makes ``idle_check`` return at once
forever, so an instant empty answer ends the cycle and ``idle_done`` then raises).
"""

from __future__ import annotations

import imaplib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from feedbackd.config import ImapSettings
from feedbackd.mail.tls import tls_context

log = logging.getLogger(__name__)

# What a broken or dropped connection raises (imapclient 4.1 lets all three through).
SIZE_CHUNK = 1000  # UIDs per RFC822.SIZE query
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, IMAPClientError, imaplib.IMAP4.error)


class SourceError(Exception):
    """The server refused us in a way retrying will not fix soon (login, missing folder)."""


@dataclass(frozen=True)
class FolderState:
    key: str  # identifies this folder on this server for this user
    uidvalidity: int
    idle: bool  # the server offers IDLE


class ImapSource:
    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.client: IMAPClient | None = None
        self.state: FolderState | None = None

    @property
    def key(self) -> str:
        s = self.settings
        return f"{s.username}@{s.host}:{s.port}/{s.folder}"

    def connect(self) -> FolderState:
        s = self.settings
        context = tls_context(s.security, s.ca_file)
        client = IMAPClient(s.host, port=s.port, ssl=s.security == "ssl", ssl_context=context,
                            timeout=s.timeout.total_seconds())
        try:
            if s.security == "starttls":
                client.starttls(context)  # raises if refused: never fall back to plain text
            try:
                client.login(s.username, s.password)
            except IMAPClientError as exc:
                raise SourceError(f"IMAP login as {s.username!r} on {s.host}:{s.port} failed: {exc}") from None
            try:
                info = client.select_folder(s.folder, readonly=not s.processed_flag)
            except IMAPClientError as exc:
                raise SourceError(f"IMAP folder {s.folder!r} cannot be opened: {exc}") from None
            idle = s.idle and b"IDLE" in client.capabilities()
        except BaseException:
            _close(client)
            raise
        self.client = client
        self.state = FolderState(self.key, int(info[b"UIDVALIDITY"]), idle)
        log.info("connected to %s:%s folder %s (IDLE %s)", s.host, s.port, s.folder,
                 "on" if idle else "off")
        return self.state

    def close(self) -> None:
        if self.client is not None:
            _close(self.client)
            self.client = None

    def uids_after(self, last_uid: int) -> list[int]:
        assert self.client is not None
        # "UID n:*" always includes the highest UID, even below n: filter it out.
        uids = self.client.search(["UID", f"{last_uid + 1}:*"])
        return sorted(uid for uid in uids if uid > last_uid)

    def fetch(self, uids: list[int]) -> Iterator[tuple[int, bytes]]:
        """Raw bytes of these UIDs, in UID order.

        Batches hold at most ``batch_size`` messages and ``batch_bytes`` bytes (sizes are asked
        first, which is cheap), so memory stays flat however large the messages are.
        """
        for batch in self._batches(uids):
            yield from self._fetch_batch(batch)

    def _batches(self, uids: list[int]) -> Iterator[list[int]]:
        assert self.client is not None
        count, limit = self.settings.batch_size, self.settings.batch_bytes
        for start in range(0, len(uids), SIZE_CHUNK):
            chunk = uids[start:start + SIZE_CHUNK]
            sizes = self.client.fetch(chunk, ["RFC822.SIZE"])
            batch: list[int] = []
            total = 0
            for uid in chunk:
                size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
                if batch and (len(batch) >= count or total + size > limit):
                    yield batch
                    batch, total = [], 0
                batch.append(uid)
                total += size
            if batch:
                yield batch

    def _fetch_batch(self, batch: list[int]) -> Iterator[tuple[int, bytes]]:
        assert self.client is not None
        data = self.client.fetch(batch, ["BODY.PEEK[]"])
        for uid in batch:
            item = data.get(uid)
            if item is None:
                continue  # expunged meanwhile
            raw = item.get(b"BODY[]")
            if raw is None:
                continue
            yield uid, bytes(raw)

    def mark_processed(self, uids: list[int]) -> None:
        """Set our keyword on processed messages, so a person browsing the mailbox can tell."""
        if not uids or not self.settings.processed_flag or self.client is None:
            return
        try:
            self.client.add_flags(uids, [self.settings.processed_flag.encode()], silent=True)
        except IMAPClientError as exc:  # a server without keywords: not worth failing over
            log.debug("cannot set %s: %s", self.settings.processed_flag, exc)

    def wait(self, seconds: float, stop: Callable[[], bool]) -> None:
        """Return when new mail may be there, after ``seconds``, or when ``stop()`` is true."""
        assert self.client is not None and self.state is not None
        if self._announced():
            return
        deadline = time.monotonic() + seconds
        if not self.state.idle:
            while time.monotonic() < deadline and not stop():
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            self.client.noop()  # proves the link is alive (raises if not)
            return
        self.client.idle()
        try:
            if self._announced() or self._buffered_news():
                return  # announced as IDLE began
            while not stop():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                started = time.monotonic()
                responses = self.client.idle_check(timeout=min(1.0, left))
                if any(r[1] in (b"EXISTS", b"RECENT") for r in responses if len(r) > 1):
                    break
                if not responses and time.monotonic() - started < 0.05 and min(1.0, left) > 0.1:
                    break  # returned at once with nothing: the connection is probably gone
        finally:
            self.client.idle_done()  # raises on a dead connection, which the caller handles


    def _announced(self) -> bool:
        """Whether the server announced new mail in the answer to an earlier command.

        A message delivered while SEARCH runs is announced (``* n EXISTS``) with that answer but not
        found by it, and IDLE does not announce it again: without this look, it waited for the end of
        the next IDLE cycle (``idle_timeout``).  imaplib keeps untagged answers no command asked for.
        """
        assert self.client is not None
        return self.client._imap.untagged_responses.pop("EXISTS", None) is not None

    def _buffered_news(self) -> bool:
        """Read the lines imaplib already holds in its buffer, where polling the socket cannot see them.

        Dovecot sends ``* n EXISTS`` for mail that came since the last command right behind ``+ idling``,
        often in the same packet: ``idle()`` reads the first line and leaves the other buffered, and
        ``idle_check`` (which polls the socket first) would not see it before the cycle ends.  Read as
        imapclient's ``idle_check`` reads, without the poll.  True when a line announces new mail.
        """
        assert self.client is not None
        sock = self.client.socket()
        sock.setblocking(False)
        news = False
        try:
            while True:
                try:
                    line = self.client._imap._get_line()
                except (OSError, imaplib.IMAP4.abort):  # nothing more for now (imaplib calls it EOF)
                    break
                news = news or line.endswith((b"EXISTS", b"RECENT"))
        finally:
            sock.setblocking(True)
            self.client._set_read_timeout()
        return news


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
        try:
            client.shutdown()
        except Exception as exc:  # noqa: BLE001
            log.debug("closing the IMAP socket failed too: %s", exc)
