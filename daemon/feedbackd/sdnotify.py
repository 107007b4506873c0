"""sd_notify(3) without a dependency: one AF_UNIX datagram per message to ``$NOTIFY_SOCKET``.

Under ``Type=notify`` systemd waits for ``READY=1`` before it counts the service as started, shows the
latest ``STATUS=`` line in ``systemctl status``, kills and restarts the service when ``WATCHDOG=1``
stops arriving for ``WatchdogSec=``, and reads ``STOPPING=1`` as the start of a clean shutdown.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.  A socket name starting with ``@``
is in the abstract namespace (its first byte becomes NUL).  The watchdog counts only when
``$WATCHDOG_USEC`` is set and ``$WATCHDOG_PID``, if set, is this process; ``watchdog()`` is cheap
and rate-limited to half the interval, so a loop may call it as often as it likes.  Sending never
raises: a notification that cannot be delivered is logged at DEBUG and forgotten.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.interval = _watchdog_interval(env) if self.address else None
        self._clock = clock
        self._last_pet: float | None = None
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True when it was delivered."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self.address)
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> None:
        self._last_status = status
        self.send("READY=1", *([f"STATUS={status}"] if status else []))
        self._last_pet = self._clock()

    def status(self, text: str) -> None:
        """``STATUS=text``, sent only when it differs from the last one."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> None:
        """``WATCHDOG=1`` when half the watchdog interval has passed since the last one."""
        if self.interval is None:
            return
        now = self._clock()
        if self._last_pet is None or now - self._last_pet >= self.interval:
            self._last_pet = now
            self.send("WATCHDOG=1")


def _address(name: str) -> str | None:
    if not name or name[0] not in "/@":
        return None  # unset, or a kind of address (vsock) this module does not speak
    return "\0" + name[1:] if name[0] == "@" else name


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (how often to pet), or None when the watchdog is off here."""
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
