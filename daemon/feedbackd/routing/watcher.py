"""Live reload: the daemon asks ``RulesWatcher.current()`` for the rule set before each message.

The watcher looks at the rule files' names, sizes and modification times at most once per
``interval``.  When they change it loads and validates the whole directory into a new
``RuleSet`` and swaps it in with one assignment, so a message is routed either entirely by the
old set or entirely by the new one.  An invalid version keeps the previous set working and is
logged once, as one line with every location.

Half-written files: a version is only loaded once its newest file has been left alone for
``settle`` seconds, and it is discarded if the files change while they are being read.  A file
caught mid-write therefore either fails validation (and is retried on the next change) or is not
read at all until the editor is done.  ``reload()`` skips both waits: it is for a person or a
test saying "the files are ready now".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from feedbackd.routing.loader import RulesError, load_ruleset, rule_files
from feedbackd.routing.ruleset import RuleSet

Signature = tuple[tuple[str, int, int], ...]
MAX_LOGGED_PROBLEMS = 10


def signature(directory: Path) -> Signature:
    """Names, sizes and modification times of the rule files: cheap, and changes with every save."""
    found = []
    for path in rule_files(directory):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed between listing and stat
            continue
        found.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(found)


class RulesWatcher:
    """Holds the current ``RuleSet`` of a directory and replaces it when the files change."""

    def __init__(
        self,
        directory: Path,
        logger: logging.Logger,
        *,
        interval: float = 1.0,
        settle: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load the rules now; an invalid directory raises ``RulesError`` (the daemon must not start)."""
        self.directory = directory
        self.log = logger
        self.interval = interval
        self.settle = settle
        self._clock = clock
        self._lock = threading.Lock()
        self._rejected: Signature | None = None
        self._checked = clock()
        self._signature, self._ruleset = self._first_load()

    def current(self) -> RuleSet:
        """The rule set to use for the next message; checks the files at most once per interval."""
        if self._clock() - self._checked >= self.interval and self._lock.acquire(blocking=False):
            try:
                self._check(force=False)
            finally:
                self._lock.release()
        return self._ruleset

    def reload(self) -> bool:
        """Check the files now, without waiting; True when a new rule set was swapped in."""
        with self._lock:
            return self._check(force=True)

    def _check(self, force: bool) -> bool:
        self._checked = self._clock()
        seen = signature(self.directory)
        if seen == self._signature or seen == self._rejected:
            return False
        if not force and self._still_being_written(seen):
            return False
        try:
            loaded, ruleset = self._load(seen)
        except RulesError as exc:
            self._rejected = seen
            self.log.error("%s", self._rejection(exc))
            return False
        except _Changed:
            return False  # changed while reading: look again next time
        previous = self._ruleset.version
        self._signature, self._ruleset, self._rejected = loaded, ruleset, None
        self.log.info(
            "rules reloaded from %s: version %s (was %s), %d rules, %d departments",
            self.directory, ruleset.version, previous, len(ruleset.rules), len(ruleset.departments),
        )
        return True

    def _first_load(self, attempts: int = 5) -> tuple[Signature, RuleSet]:
        for _ in range(attempts - 1):
            try:
                return self._load(signature(self.directory))
            except _Changed:
                time.sleep(0.1)
        return signature(self.directory), load_ruleset(self.directory)

    def _still_being_written(self, seen: Signature) -> bool:
        newest = max((mtime for _, _, mtime in seen), default=0) / 1e9
        return 0 <= time.time() - newest < self.settle

    def _load(self, before: Signature) -> tuple[Signature, RuleSet]:
        ruleset = load_ruleset(self.directory)
        if signature(self.directory) != before:
            raise _Changed
        return before, ruleset

    def _rejection(self, exc: RulesError) -> str:
        shown = "; ".join(str(p) for p in exc.problems[:MAX_LOGGED_PROBLEMS])
        more = len(exc.problems) - MAX_LOGGED_PROBLEMS
        if more > 0:
            shown += f"; and {more} more (run: feedbackd rules check {self.directory})"
        return (
            f"rules in {self.directory} not reloaded, still using version {self._ruleset.version}: "
            f"{len(exc.problems)} problem(s): {shown}"
        )


class _Changed(Exception):
    """The files changed while they were being read."""
