"""Ingest benchmark: feedbackd ``run --once`` against a filled local Dovecot, beside the raw limit.

For each size (default 2,000 and 10,000): start a private Dovecot and an SMTP sink
(``feedbackd.devstack``), fill INBOX with the seeded corpus of ``bench/corpus.py``, then

* the raw limit, in a child process: imapclient UID SEARCH ALL, UID FETCH BODY.PEEK[] in batches of
  500, stdlib ``email`` (policy.default) parse, subject and best text body; no storage, no sending;
* feedbackd: ``feedbackd --config FILE run --once`` in a child process, then ``cases list --json``,
  and the acknowledgements the sink received, checked against the corpus' expected counts.

Throughput is messages / wall time of the child (start-up included, for both).  Peak RSS is the child's
maximum resident set (GNU time's %M when /usr/bin/time exists, else /proc/<pid>/status VmHWM polled):
``getrusage`` of a child from this process is useless, since Linux charges the parent's RSS at exec.

    .venv/bin/python bench/bench_ingest.py                     # 2,000 and 10,000
    .venv/bin/python bench/bench_ingest.py --sizes 2000 --raw-only

Results: a table on stdout and JSON in bench/out/ingest-<date>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
TIME_BIN = "/usr/bin/time"

RAW_CHILD = r"""
import sys, time, json
t_start = time.perf_counter()
from email import message_from_bytes, policy
from imapclient import IMAPClient

host, port, user, password, batch, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    int(sys.argv[5]), sys.argv[6]
client = IMAPClient(host, port=port, ssl=False, timeout=60)
client.login(user, password)
client.select_folder("INBOX", readonly=True)
uids = client.search("ALL")
count = nbytes = chars = failures = 0
t_fetch = time.perf_counter()
for i in range(0, len(uids), batch):
    chunk = uids[i:i + batch]
    response = client.fetch(chunk, ["BODY.PEEK[]"])
    for uid in chunk:
        raw = response[uid][b"BODY[]"]
        count += 1
        nbytes += len(raw)
        if mode == "fetch":
            continue
        try:
            msg = message_from_bytes(raw, policy=policy.default)
            subject = str(msg.get("subject", ""))
            part = msg.get_body(("plain", "html"))
            try:
                text = part.get_content() if part is not None else ""
            except Exception:
                payload = part.get_payload(decode=True) or b""
                text = payload.decode("utf-8", "replace")
            chars += len(subject) + len(text)
        except Exception:
            failures += 1
    del response
client.logout()
t_end = time.perf_counter()
hwm = 0
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
print(json.dumps({"messages": count, "bytes": nbytes, "chars": chars, "failures": failures,
                  "seconds_total": t_end - t_start, "seconds_fetch_parse": t_end - t_fetch,
                  "vmhwm_kb": hwm}))
"""


# ------------------------------------------------------------------------------------- measuring

def measure(argv: list[str], workdir: Path, name: str, timeout: float,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run argv alone; return exit code, wall seconds, peak RSS (KB), and its stdout/stderr files."""
    stdout_path, stderr_path = workdir / f"{name}.out", workdir / f"{name}.err"
    time_path = workdir / f"{name}.time"
    use_time = os.access(TIME_BIN, os.X_OK)
    full = [TIME_BIN, "-o", str(time_path), "-f", "%M %U %S %e"] + argv if use_time else argv
    peak = 0
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                cwd=workdir)
        timed_out = False

        def poll() -> None:  # fallback without GNU time: VmHWM is monotonic, read it until exit
            nonlocal peak
            while proc.poll() is None:
                peak = max(peak, _vmhwm(proc.pid))
                time.sleep(0.02)

        poller = None
        if not use_time:
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            rc = proc.wait()
        wall = time.perf_counter() - started
        if poller is not None:
            poller.join()
    if use_time:
        lines = [ln for ln in time_path.read_text().splitlines() if ln.strip()]
        # GNU time prints "Command exited with non-zero status N" before the format line.
        fields = lines[-1].split() if lines else []
        peak = int(fields[0]) if fields and fields[0].isdigit() else 0
        cpu = float(fields[1]) + float(fields[2]) if len(fields) >= 3 else None
    else:
        cpu = None
    return {"rc": rc, "wall": wall, "peak_rss_kb": peak, "cpu_seconds": cpu, "timed_out": timed_out,
            "stdout": stdout_path, "stderr": stderr_path,
            "rss_method": "GNU time %M" if use_time else "VmHWM polled"}


def _vmhwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


# --------------------------------------------------------------------------------------- filling

def fill(dovecot: Any, n: int, seed: int) -> dict[str, Any]:
    """APPEND the corpus to INBOX over one connection (MULTIAPPEND in chunks when offered)."""
    from bench.corpus import generate

    started = time.perf_counter()
    client = dovecot.client()
    total = 0
    try:
        multi = b"MULTIAPPEND" in client.capabilities()
        chunk: list[bytes] = []
        chunk_bytes = 0
        for raw in generate(n, seed):
            total += len(raw)
            if not multi:
                client.append("INBOX", raw)
                continue
            chunk.append(raw)
            chunk_bytes += len(raw)
            if len(chunk) >= 200 or chunk_bytes >= 4_000_000:
                client.multiappend("INBOX", chunk)
                chunk, chunk_bytes = [], 0
        if chunk:
            client.multiappend("INBOX", chunk)
        info = client.select_folder("INBOX", readonly=True)
        exists = int(info[b"EXISTS"])
    finally:
        client.logout()
    return {"seconds": time.perf_counter() - started, "bytes": total, "exists": exists,
            "method": "MULTIAPPEND" if multi else "APPEND"}


# ------------------------------------------------------------------------------------- one size



def feedbackd_command() -> list[str]:
    script = Path(sys.executable).parent / "feedbackd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "feedbackd"]


def run_raw(dovecot: Any, workdir: Path, batch: int, mode: str, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, "-c", RAW_CHILD, dovecot.host, str(dovecot.port), "feedback",
            dovecot.users["feedback"], str(batch), mode]
    result = measure(argv, workdir, f"raw-{mode}", timeout)
    out: dict[str, Any] = {"rc": result["rc"], "wall": result["wall"],
                           "peak_rss_kb": result["peak_rss_kb"], "rss_method": result["rss_method"]}
    if result["rc"] != 0:
        out["error"] = tail(result["stderr"])
        return out
    out.update(json.loads(result["stdout"].read_text().strip().splitlines()[-1]))
    out["msgs_per_s"] = out["messages"] / result["wall"]
    return out


def run_feedbackd(dovecot: Any, sink: Any, workdir: Path, exp: Any, timeout: float) -> dict[str, Any]:
    from feedbackd.devstack import local_config, write_config

    data = workdir / "data"
    data.mkdir(exist_ok=True)
    config = workdir / "feedbackd.toml"
    write_config(config, local_config(imap=dovecot, smtp=sink, db_url=f"sqlite:///{workdir / 'feedbackd.db'}",
                                      rules=REPO / "rules", templates=REPO / "templates", data=data,
                                      # A backlog of thousands of new complaints, each to be acknowledged
                                      # once: the hourly global budget (default 1,000) would cut it.
                                      more={"acknowledgement": {"global_rate_limit": 0}}))
    cmd = feedbackd_command()
    sink.clear()
    result = measure(cmd + ["--config", str(config), "run", "--once"], workdir, "feedbackd-run", timeout)
    out: dict[str, Any] = {"command": " ".join(cmd + ["--config", str(config), "run", "--once"]),
                           "rc": result["rc"], "wall": result["wall"], "timed_out": result["timed_out"],
                           "peak_rss_kb": result["peak_rss_kb"], "rss_method": result["rss_method"],
                           "msgs_per_s": exp.n / result["wall"]}
    if result["rc"] != 0:
        out["error"] = tail(result["stderr"])
    # What feedbackd says it did (informational: e.g. "processed 2000 message(s): 640 joined, …").
    out["summary_line"] = next((ln for ln in reversed(tail(result["stdout"]).splitlines()) if ln.strip()), "")
    # The outbox is sent before --once exits; wait a little anyway, then let stragglers arrive.
    sink.wait_for(exp.new, timeout=10 if result["rc"] == 0 else 1)
    time.sleep(0.5)
    received = list(sink.received)
    out["acks_sent"] = len(received)

    listing = subprocess.run(cmd + ["--config", str(config), "cases", "list", "--json"], cwd=workdir,
                             capture_output=True, timeout=300, check=False)
    cases: list[Any] | None = None
    if listing.returncode != 0:
        out["cases_error"] = (listing.stderr.decode(errors="replace")[-3000:]
                              or f"exit {listing.returncode}")
    else:
        try:
            parsed = json.loads(listing.stdout)
            cases = parsed.get("cases", parsed.get("items")) if isinstance(parsed, dict) else parsed
            if not isinstance(cases, list):
                raise TypeError(f"unexpected JSON shape: {type(parsed).__name__}")
        except (ValueError, TypeError) as exc:
            out["cases_error"] = f"cases list --json: {exc}: {listing.stdout[:500]!r}"
            cases = None
    out["cases"] = len(cases) if cases is not None else None
    out["checks"] = check(exp, received, cases, result["rc"])
    out["ok"] = all(c["pass"] for c in out["checks"].values())
    return out


def _strings(value: Any) -> set[str]:
    """Every string inside a JSON value, lower-cased (to find addresses whatever the field names)."""
    if isinstance(value, str):
        return {value.strip().lower()}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def check(exp: Any, received: list[Any], cases: list[Any] | None, rc: int) -> dict[str, dict[str, Any]]:
    per_rcpt: Counter[str] = Counter(r.lower() for mail in received for r in mail.rcpt_tos)
    complainants = set(exp.complaint_senders)
    automatic = set(exp.automatic_senders)
    not_once = [a for a in exp.complaint_senders if per_rcpt[a] != 1]
    to_auto = sorted(a for a in per_rcpt if a in automatic)
    to_other = sorted(a for a in per_rcpt if a not in complainants and a not in automatic)
    checks: dict[str, dict[str, Any]] = {
        "exit 0": {"pass": rc == 0, "detail": f"exit {rc}"},
        "every complaint acknowledged exactly once": {
            "pass": not not_once,
            "detail": f"{len(not_once)} of {exp.new} complainants got != 1 mail"
                      + (f", e.g. {not_once[0]}: {per_rcpt[not_once[0]]}" if not_once else "")},
        "no mail to automatic senders": {"pass": not to_auto,
                                         "detail": f"{len(to_auto)} addresses, e.g. {to_auto[:3]}"},
        "no mail to anyone else": {"pass": not to_other,
                                   "detail": f"{len(to_other)} addresses, e.g. {to_other[:3]}"},
        "acknowledgements == new complaints": {"pass": len(received) == exp.new,
                                               "detail": f"{len(received)} sent, {exp.new} expected"},
    }
    if cases is None:
        checks["cases == new complaints"] = {"pass": False, "detail": "no case listing"}
        checks["no case for automatic mail"] = {"pass": False, "detail": "no case listing"}
    else:
        strings = [_strings(case) for case in cases]
        auto_cases = sum(1 for s in strings if s & automatic)
        covered = set().union(*strings) & complainants if strings else set()
        checks["cases == new complaints"] = {"pass": len(cases) == exp.new,
                                             "detail": f"{len(cases)} cases, {exp.new} expected"}
        checks["no case for automatic mail"] = {"pass": auto_cases == 0,
                                                "detail": f"{auto_cases} cases name an automatic sender"}
        checks["a case per complainant"] = {"pass": len(covered) == exp.new,
                                            "detail": f"{len(covered)} of {exp.new} complainants found"}
    return checks


def bench_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    from bench.corpus import expected
    from feedbackd.devstack import Dovecot, SmtpSink

    exp = expected(n, args.seed)
    workdir = Path(tempfile.mkdtemp(prefix=f"feedbackd-bench-{n}-"))
    os.chmod(workdir, 0o755)
    result: dict[str, Any] = {"size": n, "seed": args.seed, "workdir": str(workdir),
                              "expected": {"new": exp.new, "replies": exp.replies,
                                           "automatic": exp.automatic, "auto_kinds": dict(exp.auto_kinds)}}
    keep = args.keep
    with Dovecot() as dovecot, SmtpSink() as sink:
        log(f"[{n}] filling INBOX …")
        result["fill"] = fill(dovecot, n, args.seed)
        log(f"[{n}] filled {result['fill']['exists']} messages, {result['fill']['bytes'] / 1e6:.1f} MB "
            f"in {result['fill']['seconds']:.1f} s ({result['fill']['method']})")
        if result["fill"]["exists"] != n:
            raise RuntimeError(f"INBOX holds {result['fill']['exists']} messages, not {n}")
        if args.fetch_only:
            result["raw_fetch"] = run_raw(dovecot, workdir, args.batch, "fetch", args.timeout)
            log(f"[{n}] raw fetch only: {fmt_rate(result['raw_fetch'])}")
        result["raw"] = run_raw(dovecot, workdir, args.batch, "parse", args.timeout)
        log(f"[{n}] raw fetch+parse: {fmt_rate(result['raw'])}")
        if not args.raw_only:
            log(f"[{n}] feedbackd run --once …")
            result["feedbackd"] = fb = run_feedbackd(dovecot, sink, workdir, exp, args.timeout)
            log(f"[{n}] feedbackd: {fmt_rate(fb)}, exit {fb['rc']}, {fb['acks_sent']} acks, "
                f"{fb['cases']} cases, checks {'pass' if fb['ok'] else 'FAIL'}")
            if fb.get("summary_line"):
                log(f"[{n}] feedbackd says: {fb['summary_line']}")
                steady = re.search(r"; ([0-9.]+) s after start-up", fb["summary_line"])
                if steady:
                    fb["steady_msgs_per_s"] = rate = n / float(steady[1])
                    log(f"[{n}] feedbackd without its start-up ({fb['wall'] - float(steady[1]):.2f} s): "
                        f"{rate:.0f} msgs/s, {rate / result['raw']['msgs_per_s']:.2f} x raw")
            if fb.get("error"):
                log(f"[{n}] feedbackd stderr (tail):\n{fb['error']}")
            if fb.get("cases_error"):
                log(f"[{n}] cases list: {fb['cases_error']}")
            keep = keep or not fb["ok"]
        if result["raw"]["rc"] != 0:
            keep = True
            log(f"[{n}] raw child failed:\n{result['raw'].get('error')}")
    if keep:
        log(f"[{n}] kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# -------------------------------------------------------------------------------------- reporting

def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fmt_rate(r: dict[str, Any]) -> str:
    if r.get("rc") != 0 and "msgs_per_s" not in r:
        return f"FAILED (exit {r.get('rc')})"
    cpu = f", CPU {r['cpu_seconds']:.2f} s" if r.get("cpu_seconds") is not None else ""
    return f"{r['msgs_per_s']:.0f} msgs/s, {r['wall']:.2f} s{cpu}, peak RSS {r['peak_rss_kb'] / 1024:.1f} MB"


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    by_size = {r["size"]: r for r in results}
    summary: dict[str, Any] = {}
    small, large = min(by_size), max(by_size)
    for key in ("raw", "feedbackd"):
        if small != large and key in by_size[small] and key in by_size[large]:
            a, b = by_size[small][key]["peak_rss_kb"], by_size[large][key]["peak_rss_kb"]
            if a:
                summary[f"{key}_rss_ratio_{large}_vs_{small}"] = b / a
    for r in results:
        fb, raw = r.get("feedbackd"), r.get("raw")
        if fb and raw and raw.get("msgs_per_s") and fb.get("rc") == 0:
            r["throughput_ratio"] = fb["msgs_per_s"] / raw["msgs_per_s"]
    targets: dict[str, Any] = {}
    for r in results:
        if "throughput_ratio" in r:
            targets[f"{r['size']}: feedbackd >= 0.5 x raw"] = r["throughput_ratio"] >= 0.5
        if r.get("feedbackd"):
            targets[f"{r['size']}: correctness"] = r["feedbackd"]["ok"]
    ratio = summary.get(f"feedbackd_rss_ratio_{large}_vs_{small}")
    if ratio is not None:
        targets[f"feedbackd peak RSS {large} <= 1.2 x {small}"] = ratio <= 1.2
    summary["targets"] = targets
    return summary


def table(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = ["size", "raw msg/s", "raw RSS MB", "fbd msg/s", "fbd RSS MB", "fbd/raw", "RSS large/small",
            "acks", "cases", "checks"]
    rows = [head]
    sizes = sorted(r["size"] for r in results)
    for r in sorted(results, key=lambda r: r["size"]):
        raw, fb = r["raw"], r.get("feedbackd")
        rss_ratio = ""
        if r["size"] == sizes[-1] and len(sizes) > 1:
            parts = []
            for key, label in (("raw", "raw"), ("feedbackd", "fbd")):
                v = summary.get(f"{key}_rss_ratio_{sizes[-1]}_vs_{sizes[0]}")
                if v is not None:
                    parts.append(f"{label} {v:.2f}")
            rss_ratio = ", ".join(parts)
        raw_rate = f"{raw['msgs_per_s']:.0f}" if "msgs_per_s" in raw else "FAIL"
        row = [str(r["size"]), raw_rate, f"{raw['peak_rss_kb'] / 1024:.1f}"]
        if fb:
            checks = "pass" if fb["ok"] else "FAIL: " + "; ".join(
                k for k, v in fb["checks"].items() if not v["pass"])
            row += [f"{fb['msgs_per_s']:.0f}" + ("" if fb["rc"] == 0 else f" (exit {fb['rc']})"),
                    f"{fb['peak_rss_kb'] / 1024:.1f}",
                    f"{r['throughput_ratio']:.2f}" if "throughput_ratio" in r else "-",
                    rss_ratio, str(fb["acks_sent"]), str(fb["cases"]), checks]
        else:
            row += ["-", "-", "-", rss_ratio, "-", "-", "-"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.rjust(w) for cell, w in zip(row[:-1], widths, strict=True))
                     + "  " + row[-1])
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    def run(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "dovecot": run(["dovecot", "--version"]), "git": run(["git", "rev-parse", "--short", "HEAD"]),
            "feedbackd_command": " ".join(feedbackd_command())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated corpus sizes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500, help="raw client: messages per UID FETCH")
    parser.add_argument("--raw-only", action="store_true", help="measure the raw limit only")
    parser.add_argument("--no-fetch-only", dest="fetch_only", action="store_false",
                        help="skip the fetch-without-parse measurement")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (db, logs)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measured child")
    parser.add_argument("--out", type=Path, default=OUT, help="directory for the JSON results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    sys.path.insert(0, str(REPO))  # bench.corpus
    sys.path.insert(1, str(REPO / "daemon"))  # feedbackd.devstack, also without an install

    started = datetime.now()
    results = [bench_size(n, args) for n in sizes]
    summary = summarize(results)
    print(table(results, summary))
    for name, ok in summary["targets"].items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    for r in results:
        if "raw_fetch" in r and "msgs_per_s" in r["raw_fetch"]:
            print(f"[{r['size']}] raw fetch only (no parse): {fmt_rate(r['raw_fetch'])}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ingest-{started:%Y%m%d-%H%M%S}.json"
    report = {"started": started.isoformat(timespec="seconds"), "environment": environment(),
              "results": results, "summary": summary}
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    print(f"results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    failed = any(r.get("feedbackd") and not r["feedbackd"]["ok"] for r in results)
    failed = failed or any(r["raw"].get("rc") != 0 for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
