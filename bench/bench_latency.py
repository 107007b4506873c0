"""Mail → acknowledgement and staff reply → relayed answer latency of the running daemon with IMAP IDLE.

Starts a private Dovecot and an SMTP sink, runs ``feedbackd run`` against them (staff mail on),
delivers ``--count`` complaints one at a time by IMAP APPEND and measures how long each takes to
come back as an acknowledgement at the sink; then a staff member answers each case's notice
(To its signed reply address) and it measures how long the answer takes to reach the citizen.
Prints median, p90 and max of both.

    .venv/bin/python bench/bench_latency.py [--count 20]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from feedbackd.devstack import Dovecot, Received, SmtpSink, local_config, write_config  # noqa: E402
from mails import plain  # noqa: E402 - after the sys.path line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="feedbackd-latency-"))
    with Dovecot() as imap, SmtpSink() as sink:
        config = write_config(work / "feedbackd.toml", local_config(
            imap=imap, smtp=sink, db_url=f"sqlite:///{work / 'feedbackd.db'}", rules=ROOT / "rules",
            templates=ROOT / "templates", data=work / "data",
            more={"staff": {"secret": "bench-secret-0123456789abcdef"}}))
        daemon = subprocess.Popen([sys.executable, "-m", "feedbackd", "--config", str(config), "run"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")})
        try:
            time.sleep(2.0)  # start-up, first (empty) intake, IDLE
            client = imap.client()
            latencies, relays = [], []
            for i in range(args.count):
                citizen = f"citizen{i}@latency.example"
                started = time.monotonic()
                client.append("INBOX", plain(sender=citizen, subject=f"路灯不亮 {i}"))
                if not sink.wait_until(lambda got, c=citizen: any(m.rcpt_tos == [c] for m in got), timeout=30):
                    print(f"message {i}: no acknowledgement within 30 s")
                    return 1
                latencies.append(time.monotonic() - started)
                if not sink.wait_until(lambda got, c=citizen: _notice(got, c) is not None, timeout=30):
                    print(f"message {i}: no staff notice within 30 s")
                    return 1
                notice = _notice(sink.received, citizen)
                assert notice is not None
                started = time.monotonic()
                client.append("INBOX", plain(sender="desk@city.example", name="小王",
                                             to=notice["Reply-To"].addresses[0].addr_spec,
                                             subject=f"回复：{notice['Subject']}", body=f"已安排维修 {i}。",
                                             in_reply_to=notice["Message-ID"].strip("<>")))
                if not sink.wait_until(lambda got, c=citizen: sum(m.rcpt_tos == [c] for m in got) >= 2, timeout=30):
                    print(f"message {i}: no relayed answer within 30 s")
                    return 1
                relays.append(time.monotonic() - started)
            client.logout()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    for what, values in (("mail → acknowledgement", latencies), ("staff reply → answer at the citizen", relays)):
        values.sort()
        p90 = values[max(0, int(len(values) * 0.9) - 1)]
        print(f"{what} with IDLE, {len(values)} mails: median {statistics.median(values):.3f} s, "
              f"p90 {p90:.3f} s, max {values[-1]:.3f} s (target: under 1 s)")
    return 0


def _notice(received: list[Received], citizen: str) -> EmailMessage | None:
    """The staff notice of the case this citizen opened: the one carrying the acknowledgement's case token."""
    ack = next((m for m in received if m.rcpt_tos == [citizen]), None)
    token = re.search(r"\[[A-Z]+-\d+\]", str(_parsed(ack)["Subject"])) if ack else None
    for mail in received:
        if token and mail.rcpt_tos == ["desk@city.example"] and token[0] in str(_parsed(mail)["Subject"]):
            return _parsed(mail)
    return None


def _parsed(mail: Received) -> EmailMessage:
    msg = message_from_bytes(mail.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


if __name__ == "__main__":
    raise SystemExit(main())
