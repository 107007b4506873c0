"""Mail → acknowledgement latency of the running daemon with IMAP IDLE.

Starts a private Dovecot and an SMTP sink, runs ``feedbackd run`` against them, delivers
``--count`` complaints one at a time by IMAP APPEND and measures how long each takes to come
back as an acknowledgement at the sink.  Prints median, p90 and max.

    .venv/bin/python bench/bench_latency.py [--count 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from feedbackd.devstack import Dovecot, SmtpSink, local_config, write_config  # noqa: E402
from mails import plain  # noqa: E402 - after the sys.path line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="feedbackd-latency-"))
    with Dovecot() as imap, SmtpSink() as sink:
        config = write_config(work / "feedbackd.toml", local_config(
            imap=imap, smtp=sink, db_url=f"sqlite:///{work / 'feedbackd.db'}", rules=ROOT / "rules",
            templates=ROOT / "templates", data=work / "data"))
        daemon = subprocess.Popen([sys.executable, "-m", "feedbackd", "--config", str(config), "run"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")})
        try:
            time.sleep(2.0)  # start-up, first (empty) intake, IDLE
            client = imap.client()
            latencies = []
            for i in range(args.count):
                started = time.monotonic()
                client.append("INBOX", plain(sender=f"citizen{i}@latency.example", subject=f"路灯不亮 {i}"))
                got = sink.wait_for(i + 1, timeout=30)
                if len(got) <= i:
                    print(f"message {i}: no acknowledgement within 30 s")
                    return 1
                latencies.append(time.monotonic() - started)
                time.sleep(0.2)
            client.logout()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    latencies.sort()
    p90 = latencies[max(0, int(len(latencies) * 0.9) - 1)]
    print(f"mail → acknowledgement with IDLE, {len(latencies)} mails: median {statistics.median(latencies):.3f} s, "
          f"p90 {p90:.3f} s, max {latencies[-1]:.3f} s (target: under 1 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
