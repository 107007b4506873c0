"""The README's first command: the demo runs end to end and shows cases and acknowledgements."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_the_demo_shows_routed_cases_and_their_acknowledgements() -> None:
    result = subprocess.run([sys.executable, "-m", "feedbackd", "demo"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "processed 6: {'new-case': 6}" in out
    assert "{'joined': 1, 'recorded': 1}" in out
    assert "the SMTP sink received 6 acknowledgement(s)" in out
    assert "[FB-000001] 我们已收到您的反馈：紧急：小区燃气管道有泄漏气味" in out
    assert "We have received your feedback: Suggestion" in out
    assert "safety" in out and "payments" in out  # the shipped rules routed them
