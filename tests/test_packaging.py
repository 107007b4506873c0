"""The layout newcomers and operators rely on: package, console script, unit file, CI entry."""

from __future__ import annotations

import configparser
import os
import tomllib

from conftest import REPO


def test_pyproject_declares_the_package_and_the_command() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"]["feedbackd"] == "feedbackd.cli:main"
    assert (REPO / "daemon" / "feedbackd" / "__init__.py").exists()


def test_the_systemd_unit_runs_the_daemon_with_its_configuration() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "feedbackd.service")
    service = unit["Service"]
    assert service["ExecStart"].endswith("feedbackd -v run")
    assert "FEEDBACKD_CONFIG=" in service["Environment"]
    assert service["KillSignal"] == "SIGTERM"  # feedbackd finishes the current message and exits 0
    assert service["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    command = "scripts/bootstrap && .venv/bin/python -m pytest -q"
    assert command in readme and command in (REPO / ".ci" / "run").read_text()
    assert "scripts/bootstrap && .venv/bin/feedbackd demo" in readme
    for script in (".ci/run", "scripts/bootstrap"):
        assert os.access(REPO / script, os.X_OK), script
