"""Live reload: valid edits swap in, invalid ones keep the old rules and are logged once."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from feedbackd.routing import RulesError, RulesWatcher, load_ruleset
from feedbackd.routing import watcher as watcher_mod
from test_rules import BASE, parsed, write_rules

V1 = "rules:\n  - {name: 配送, when: {text: {contains: 快递}}, then: {department: logistics}}\n"
V2 = "rules:\n  - {name: 配送, when: {text: {contains: 快递}}, then: {department: quality, priority: high}}\n"
BROKEN = "rules:\n  - {name: 配送, when: {text: {contains: 快递}}, then: {department: logistcs}}\n"
HALF = V2[: V2.index("department:") + 8]  # cut in the middle of a flow mapping, as a slow writer leaves it
LOG = "test.rules.watcher"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.5) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    write_rules(tmp_path / "rules", V1)
    for path in (tmp_path / "rules").iterdir():  # saved a while ago
        os.utime(path, (time.time() - 60, time.time() - 60))
    return tmp_path / "rules"


def make_watcher(rules_dir: Path, clock: Clock, settle: float = 0.0) -> RulesWatcher:
    return RulesWatcher(rules_dir, logging.getLogger(LOG), interval=1.0, settle=settle, clock=clock)


def edit(rules_dir: Path, text: str, name: str = "rules.yaml", age: float = 0.0) -> None:
    """Write a file as an editor would; ``age`` back-dates it, as if saved that many seconds ago."""
    path = rules_dir / name
    path.write_text(text, encoding="utf-8")
    stamp = time.time() - age
    previous = getattr(edit, "last", 0.0)
    stamp = max(stamp, previous + 0.001) if not age else stamp  # never two saves with one mtime
    edit.last = stamp  # type: ignore[attr-defined]
    os.utime(path, (stamp, stamp))


def department(w: RulesWatcher) -> str | None:
    return w.current().evaluate(parsed("快递没到", "快递一周没到")).department


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno >= logging.ERROR]


def test_valid_edit_is_picked_up_after_the_interval(rules_dir: Path, clock: Clock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG)
    w = make_watcher(rules_dir, clock)
    first = w.current()
    assert department(w) == "logistics"
    edit(rules_dir, V2)
    clock.tick(0.5)
    assert w.current() is first  # not looked at more than once per interval
    clock.tick(1.0)
    assert department(w) == "quality"
    assert w.current().version != first.version
    assert any("rules reloaded" in r.getMessage() for r in caplog.records)


def test_invalid_edit_keeps_the_old_rules_and_logs_one_error(rules_dir: Path, clock: Clock,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    w = make_watcher(rules_dir, clock)
    old = w.current()
    edit(rules_dir, BROKEN)
    for _ in range(5):
        clock.tick()
        assert w.current() is old
        assert department(w) == "logistics"
    assert w.reload() is False
    (message,) = errors(caplog)
    column = BROKEN.splitlines()[1].index("logistcs") + 1
    assert f"{rules_dir}/rules.yaml:2:{column}: unknown department 'logistcs' (did you mean 'logistics'?)" in message
    assert f"still using version {old.version}" in message
    # fixed: swapped in, and a later bad version is logged again, once
    edit(rules_dir, V2)
    clock.tick()
    assert department(w) == "quality"
    edit(rules_dir, BROKEN + "  - oops\n")
    clock.tick()
    w.current()
    clock.tick()
    w.current()
    assert len(errors(caplog)) == 2


def test_half_written_file_fails_validation_and_is_retried(rules_dir: Path, clock: Clock,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    w = make_watcher(rules_dir, clock)
    edit(rules_dir, HALF)
    clock.tick()
    assert department(w) == "logistics"
    assert len(errors(caplog)) == 1
    edit(rules_dir, V2)  # the writer finishes
    clock.tick()
    assert department(w) == "quality"


def test_a_file_still_being_written_is_not_read_until_it_settles(rules_dir: Path, clock: Clock,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A file cut at a line boundary can be valid YAML: wait until it has been quiet for `settle`."""
    w = make_watcher(rules_dir, clock, settle=2.0)
    truncated = "rules: []\n"  # all rules gone: valid, but only half of what is being written
    edit(rules_dir, truncated)
    clock.tick()
    assert department(w) == "logistics"
    assert errors(caplog) == []
    edit(rules_dir, V2, age=5.0)  # the save completed a while ago
    clock.tick()
    assert department(w) == "quality"


def test_reload_does_not_wait(rules_dir: Path, clock: Clock) -> None:
    w = make_watcher(rules_dir, clock, settle=60.0)
    edit(rules_dir, V2)
    assert w.reload() is True
    assert department(w) == "quality"
    assert w.reload() is False  # nothing new


def test_files_changing_while_read_are_not_used(rules_dir: Path, clock: Clock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_watcher(rules_dir, clock)
    real = watcher_mod.load_ruleset

    def racing(directory: Path):  # type: ignore[no-untyped-def]
        loaded = real(directory)
        edit(rules_dir, V1 + "  - {name: x, then: {tags: [x]}}\n")  # another save lands meanwhile
        return loaded

    edit(rules_dir, V2)
    monkeypatch.setattr(watcher_mod, "load_ruleset", racing)
    assert w.reload() is False
    monkeypatch.setattr(watcher_mod, "load_ruleset", real)
    assert w.reload() is True
    assert [r.name for r in w.current().rules] == ["配送", "x"]


def test_new_and_removed_files_count_as_changes(rules_dir: Path, clock: Clock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    w = make_watcher(rules_dir, clock)
    edit(rules_dir, "rules:\n  - {name: extra, then: {tags: [额外]}}\n", name="zz-extra.yaml")
    assert w.reload() is True
    assert [r.name for r in w.current().rules] == ["配送", "extra"]
    (rules_dir / "base.yaml").unlink()
    assert w.reload() is False
    assert "no 'priorities' section" in errors(caplog)[0]
    assert [r.name for r in w.current().rules] == ["配送", "extra"]


def test_current_never_raises_even_without_a_directory(rules_dir: Path, clock: Clock,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    w = make_watcher(rules_dir, clock)
    for path in rules_dir.iterdir():
        path.unlink()
    rules_dir.rmdir()
    clock.tick()
    assert department(w) == "logistics"
    assert "no rule files" in errors(caplog)[0]


def test_invalid_rules_at_start_raise(tmp_path: Path, clock: Clock) -> None:
    write_rules(tmp_path / "rules", BROKEN)
    with pytest.raises(RulesError) as caught:
        make_watcher(tmp_path / "rules", clock)
    assert "unknown department 'logistcs'" in str(caught.value)


def test_concurrent_readers_see_whole_rule_sets_only(rules_dir: Path) -> None:
    """Threads routing while an admin saves: every decision comes from one complete, valid version."""
    w = RulesWatcher(rules_dir, logging.getLogger(LOG), interval=0.005, settle=0.0)
    versions = {w.current().version}
    seen: set[str] = set()
    stop = threading.Event()
    msg = parsed("快递没到", "快递一周没到")

    def route() -> None:
        while not stop.is_set():
            ruleset = w.current()
            decision = ruleset.evaluate(msg)
            assert decision.department in ("logistics", "quality")
            seen.add(decision.ruleset_version)
            time.sleep(0.0005)

    threads = [threading.Thread(target=route) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            text = V2 if i % 2 else V1
            edit(rules_dir, HALF)
            edit(rules_dir, text + f"# save {i}\n")
            w.reload()
            versions.add(w.current().version)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen <= versions
    assert load_ruleset(rules_dir).version == w.current().version
    assert BASE  # the base file was never touched
