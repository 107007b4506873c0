"""Tests only: the ``feedbackd`` command with counting jobs in place of the registry.

Run as ``python tests/jobs_probe.py COUNT_FILE [--wait] FEEDBACKD-ARGS...``.  Each counting job
appends one line ``job occurrence pid`` to COUNT_FILE (O_APPEND: whole lines, even from two
processes).  ``--wait``: print "ready" and wait for a line on standard input before running,
so a test can start two processes at the same moment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from feedbackd import cli
from feedbackd.jobs import runner
from feedbackd.jobs.base import JobContext, JobSpec
from feedbackd.jobs.clock import Schedule

SCHEDULES: tuple[Schedule, ...] = ("pass", "daily", "weekly")


def counter(path: str, name: str) -> Callable[[JobContext], dict[str, int]]:
    def run(ctx: JobContext) -> dict[str, int]:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name} {ctx.occurrence} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        return {"counted": 1}
    return run


def specs(path: str) -> list[JobSpec]:
    return [JobSpec(f"count-{schedule}-{i}", counter(path, f"count-{schedule}-{i}"), schedule)
            for schedule in SCHEDULES for i in (1, 2)]


def main(argv: list[str]) -> int:
    path, rest = argv[0], argv[1:]
    runner.registry()[:] = specs(path)
    if rest and rest[0] == "--wait":
        rest = rest[1:]
        print("ready", flush=True)
        sys.stdin.readline()
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
