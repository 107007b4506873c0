"""Quality gates from pyproject.toml, run with the suite so CI enforces them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import REPO


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
    if not shutil.which(ruff):
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run([ruff, "check", "daemon", "tests", "bench"], cwd=REPO, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_imports_without_the_test_tools() -> None:
    code = "import feedbackd.cli, feedbackd.service, feedbackd.pipeline"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_mypy_finds_nothing() -> None:
    mypy = shutil.which("mypy") or str(REPO / ".venv" / "bin" / "mypy")
    if not shutil.which(mypy):
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    result = subprocess.run([mypy], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
