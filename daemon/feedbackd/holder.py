"""Who holds an outbox claim, and whether that process still lives.

A claim names its holder: host name, PID namespace, process id, process start time and a random
token (``host ns pid start token``, stored in ``outbox.claim``).  A sender on the same host can then
tell at once that a holder is gone: no such process, a zombie, or a process id reused by a process
that started at another time.  A holder on another host cannot be checked from here, so its rows
wait for their lease to end.  Claims written by older versions (a bare token) parse to None and
are treated like a holder on another host.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

UNKNOWN = "-"


@dataclass(frozen=True)
class Holder:
    host: str
    ns: str  # PID namespace: the same host name in two containers is not the same process table
    pid: int
    start: str  # clock ticks since boot at which the process started; UNKNOWN without /proc
    token: str

    @classmethod
    def current(cls) -> Holder:
        """This process, with a fresh token (one per claim)."""
        pid = os.getpid()
        return cls(socket.gethostname() or UNKNOWN, _pid_namespace(), pid, _start_time(pid) or UNKNOWN,
                   secrets.token_hex(8))

    @classmethod
    def parse(cls, claim: str | None) -> Holder | None:
        parts = (claim or "").split(" ")
        if len(parts) != 5 or not parts[2].isdigit() or int(parts[2]) <= 0:
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3], parts[4])

    def __str__(self) -> str:
        return f"{self.host} {self.ns} {self.pid} {self.start} {self.token}"

    def here(self) -> bool:
        """True if the holder runs on this host (and in this PID namespace), so it can be checked."""
        return self.host == (socket.gethostname() or UNKNOWN) and self.ns == _pid_namespace()

    def gone(self) -> bool:
        """True only when the holder certainly no longer runs: it ran here and its process is gone."""
        return self.here() and not _alive(self.pid, self.start)


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        return UNKNOWN


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and brackets)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22 of proc(5): starttime


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = _stat(pid)
    if fields is None:
        return True  # no /proc to look closer: the process id is taken, assume it is the holder
    if fields[0] in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    return start == UNKNOWN or fields[19] == start
