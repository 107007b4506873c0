"""Configuration: the contract's keys, one clear line for every mistake, secrets from the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from feedbackd import config
from feedbackd.cli import main

BASE = """\
[mailbox]
address = "Feedback@City.example"
name = "市民反馈中心"
language = "zh-CN"
[imap]
host = "127.0.0.1"
port = 143
security = "none"
username = "feedback"
password = "from-file"
folder = "INBOX"
[smtp]
host = "127.0.0.1"
port = 25
security = "none"
username = ""
password = ""
[database]
url = "sqlite:///feedbackd.db"
[paths]
rules = "rules"
templates = "templates"
data = "data"
"""


def write(tmp: Path, text: str) -> Path:
    path = tmp / "feedbackd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_file_loads(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, BASE))
    assert settings.mailbox.address == "feedback@city.example"
    assert settings.imap.password == "from-file"
    assert settings.paths.data == tmp_path / "data"  # relative to the file
    assert settings.database.url == f"sqlite:///{tmp_path / 'feedbackd.db'}"
    assert settings.imap.poll_interval == timedelta(seconds=60)


def test_the_environment_names_the_file_and_supplies_secrets(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, BASE)
    monkeypatch.setenv("FEEDBACKD_CONFIG", str(path))
    monkeypatch.setenv("FEEDBACKD_IMAP_PASSWORD", "from-env")
    monkeypatch.setenv("FEEDBACKD_SMTP_PASSWORD", "smtp-env")
    settings = config.load()
    assert settings.imap.password == "from-env" and settings.smtp.password == "smtp-env"


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace('host = "127.0.0.1"\nport = 143\n', "port = 143\n"), ["imap.host", "missing"]),
    (lambda t: t + '[imap2]\nx = 1\n', ["imap2", "unknown"]),
    (lambda t: t.replace('folder = "INBOX"', 'folder = "INBOX"\ncolour = "red"'), ["imap.colour", "unknown"]),
    (lambda t: t.replace('security = "none"', 'security = "tls"', 1), ["imap.security"]),
    (lambda t: t.replace("port = 25", "port = 99999"), ["smtp.port"]),
    (lambda t: t.replace('address = "Feedback@City.example"', 'address = "not-an-address"'),
     ["mailbox.address", "not an e-mail address"]),
    (lambda t: t.replace('language = "zh-CN"', 'language = "fr"'), ["mailbox.language"]),
    (lambda t: t + '[imap.poll]\n', ["imap.poll"]),
    (lambda t: t.replace("[paths]", "[intake]\nattachment_max_size = \"lots\"\n[paths]"),
     ["intake.attachment_max_size", "size"]),
    (lambda t: t + "this is not toml", ["not valid TOML"]),
])
def test_a_wrong_setting_stops_with_one_line_naming_key_and_file(tmp_path: Path, capsys, edit, words) -> None:
    path = write(tmp_path, edit(BASE))
    assert main(["--config", str(path), "cases", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err
    for word in words:
        assert word in err


def test_a_missing_file_is_named(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "cases", "list"]) == 2
    assert "nope.toml: configuration file not found" in capsys.readouterr().err


def test_no_file_at_all_says_how_to_give_one(capsys, monkeypatch) -> None:
    monkeypatch.delenv("FEEDBACKD_CONFIG", raising=False)
    assert main(["cases", "list"]) == 2
    assert "FEEDBACKD_CONFIG" in capsys.readouterr().err


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("4h", 14400), ("3d", 259200), (45, 45)])
def test_durations(text, seconds) -> None:
    assert config.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text, size", [("10MB", 10 * 1024**2), ("512k", 512 * 1024), (1000, 1000)])
def test_sizes(text, size) -> None:
    assert config.parse_size(text) == size
