"""Turns at SQLite's one write lock between the daemon's two writers.

SQLite lets one writer in at a time and is not fair: a waiting writer sleeps in its busy handler
(up to 100 ms at a time) while intake, committing group after group, takes the lock again within
a millisecond of letting it go.  During a flood the outbox sender could then wait for the whole
flood before it claimed a single acknowledgement.  The sender says when it waits for the lock;
intake, before it begins its next group, lets it go first (bounded, so a stuck sender never
stops intake).  Intake never holds the lock while it waits, so the two cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_YIELD = 1.0  # seconds intake waits for the sender at most


class WriteTurns:
    def __init__(self) -> None:
        self._waiting = 0
        self._cond = threading.Condition()

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Around a short write transaction of the sender: intake lets it in before its next group."""
        with self._cond:
            self._waiting += 1
        try:
            yield
        finally:
            with self._cond:
                self._waiting -= 1
                self._cond.notify_all()

    def let_others_first(self, timeout: float = MAX_YIELD) -> None:
        """Before intake's next transaction: wait while the sender waits for (or holds) the lock."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting == 0, timeout)
