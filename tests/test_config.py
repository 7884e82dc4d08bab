"""Configuration as an operator meets it (gateway/config.py): defaults, EVENTGW_* variables, the TOML file, errors."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings, load_settings
from gateway.errors import ConfigError

DOCS = Path(__file__).parents[1] / "docs" / "configuration.md"
GATEWAY = Path(sys.executable).with_name("gateway")


def documented_settings() -> set[str]:
    """The setting names in the first column of the table in docs/configuration.md."""
    names: set[str] = set()
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            first_cell = re.sub(r"\([^)]*\)", "", line.split("|")[1])  # drop "(`none`/`starttls`/`tls`)"
            names.update(re.findall(r"`([a-z_]+)`", first_cell))
    return names


def other_value(name: str, default: Any) -> tuple[str, Any]:
    """A value of the setting other than its default: as an environment variable, and as the setting holds it."""
    if name == "smtp_security":
        return "starttls", "starttls"
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, int):
        return str(default // 2 or 3), default // 2 or 3
    if isinstance(default, float):
        return str(default / 2), default / 2
    if isinstance(default, tuple):
        return "1, 2.5", (1.0, 2.5)
    return "elsewhere", "elsewhere"


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    """Write a configuration file; the environment that names it."""
    path = tmp_path / "eventgw.toml"
    path.write_text(text, encoding="utf-8")
    return {"EVENTGW_CONFIG": str(path)}


def config_error(environ: dict[str, str], **overrides: Any) -> str:
    """The message that stops the gateway with this configuration."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ, **overrides)
    return str(caught.value)


# --- defaults


def test_without_configuration_the_documented_defaults_apply() -> None:
    settings = load_settings(environ={})

    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.effective_database_url == f"sqlite:///{Path('var') / 'eventgw.db'}"
    assert settings.effective_public_url == "http://127.0.0.1:8080"
    assert (settings.max_batch, settings.max_body_bytes) == (10_000, 32 * 1024 * 1024)
    assert (settings.pull_lease_seconds, settings.recovery_days, settings.retention_days) == (300, 5, 5)
    assert (settings.login_failure_limit, settings.login_lockout_seconds) == (5, 300)
    assert list(settings.retry_schedule) == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert (settings.deactivate_after_seconds, settings.deactivate_after_failures) == (86_400, 0)
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == ("127.0.0.1", 25, "none")
    assert settings.smtp_verify_tls is True


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    assert documented_settings() == {field.name for field in fields(Settings)}


def test_the_data_directory_holds_the_default_store() -> None:
    settings = load_settings(environ={"EVENTGW_DATA_DIR": "/srv/eventgw"})

    assert settings.effective_database_url == "sqlite:////srv/eventgw/eventgw.db"
    url = "postgresql+psycopg://gw@db.example/eventgw"
    assert load_settings(environ={"EVENTGW_DATA_DIR": "/srv/eventgw", "EVENTGW_DATABASE_URL": url}
                         ).effective_database_url == url


def test_the_public_url_follows_the_listening_address() -> None:
    assert load_settings(environ={"EVENTGW_PORT": "9000"}).effective_public_url == "http://127.0.0.1:9000"
    assert load_settings(environ={"EVENTGW_HOST": "::1"}).effective_public_url == "http://[::1]:8080"
    # Listening on every address, the WSDLs name the machine, not 0.0.0.0.
    assert load_settings(environ={"EVENTGW_HOST": "0.0.0.0"}).effective_public_url == \
        f"http://{socket.getfqdn()}:8080"
    given = load_settings(environ={"EVENTGW_PUBLIC_URL": "https://events.example.com/gw/"})
    assert given.effective_public_url == "https://events.example.com/gw"


# --- environment variables


@pytest.mark.parametrize("name", [field.name for field in fields(Settings)])
def test_every_setting_can_be_set_by_its_environment_variable(name: str) -> None:
    text, expected = other_value(name, getattr(Settings(), name))

    settings = load_settings(environ={f"EVENTGW_{name.upper()}": text})

    assert getattr(settings, name) == expected != getattr(Settings(), name)


def test_the_documented_example() -> None:
    settings = load_settings(environ={"EVENTGW_PORT": "9000", "EVENTGW_RETENTION_DAYS": "7"})

    assert (settings.port, settings.retention_days) == (9000, 7.0)


@pytest.mark.parametrize(("text", "expected"), [
    ("1", True), ("true", True), ("Yes", True), (" on ", True), ("0", False), ("false", False), ("NO", False),
    ("off", False),
])
def test_switches_take_the_usual_spellings(text: str, expected: bool) -> None:
    assert load_settings(environ={"EVENTGW_SMTP_VERIFY_TLS": text}).smtp_verify_tls is expected


def test_other_variables_are_left_alone() -> None:
    assert load_settings(environ={"EVENTGW_TEST_PG_BIN": "/opt/pg", "PORT": "1", "HOME": "/root"}) == Settings()


# --- the configuration file


def test_the_file_named_by_eventgw_config_is_read(tmp_path: Path) -> None:
    environ = write_config(tmp_path, """\
port = 9100
public_url = "https://events.example.com"
retry_schedule = [1, 2.5, 60]
smtp_verify_tls = false
retention_days = 7
""")

    settings = load_settings(environ=environ)

    assert settings.port == 9100
    assert settings.effective_public_url == "https://events.example.com"
    assert settings.retry_schedule == (1.0, 2.5, 60.0)
    assert settings.smtp_verify_tls is False
    assert settings.retention_days == 7.0
    assert settings.host == "127.0.0.1"


def test_variables_win_over_the_file_and_options_over_both(tmp_path: Path) -> None:
    environ = write_config(tmp_path, "port = 9100\nhost = \"10.0.0.1\"\n")

    assert load_settings(environ=environ).port == 9100
    assert load_settings(environ={**environ, "EVENTGW_PORT": "9200"}).port == 9200
    assert load_settings(environ={**environ, "EVENTGW_PORT": "9200"}, port=9300).port == 9300
    # An option that was not given changes nothing.
    assert load_settings(environ={**environ, "EVENTGW_PORT": "9200"}, port=None, host=None).port == 9200
    assert load_settings(environ=environ, host=None).host == "10.0.0.1"


# --- invalid values stop the gateway with a message naming the setting


@pytest.mark.parametrize(("variable", "value"), [
    ("EVENTGW_PORT", "eighty"),
    ("EVENTGW_PORT", "80.5"),
    ("EVENTGW_RETENTION_DAYS", "a week"),
    ("EVENTGW_SMTP_VERIFY_TLS", "maybe"),
    ("EVENTGW_RETRY_SCHEDULE", "5,later"),
])
def test_a_variable_that_is_not_of_its_type_is_named(variable: str, value: str) -> None:
    message = config_error({variable: value})

    assert message.startswith(f"setting {variable}: {value!r} is not a valid ")


def test_a_file_value_that_is_not_of_its_type_is_named(tmp_path: Path) -> None:
    assert config_error(write_config(tmp_path, 'port = "eighty"\n')) == "setting port: 'eighty' is not a valid int"


def test_an_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    environ = write_config(tmp_path, "port = 9100\ncolour = \"blue\"\n")

    assert config_error(environ) == f"{environ['EVENTGW_CONFIG']}: unknown setting 'colour'"


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.toml")
    assert config_error({"EVENTGW_CONFIG": missing}).startswith(f"cannot read configuration file {missing}: ")
    broken = write_config(tmp_path, "port = \n")
    assert config_error(broken).startswith(f"cannot read configuration file {broken['EVENTGW_CONFIG']}: ")


@pytest.mark.parametrize(("environ", "message"), [
    ({"EVENTGW_MAX_BATCH": "0"}, "max_batch must be between 1 and 10000"),
    ({"EVENTGW_MAX_BATCH": "10001"}, "max_batch must be between 1 and 10000"),
    ({"EVENTGW_SMTP_SECURITY": "ssl"}, "smtp_security must be none, starttls or tls"),
    ({"EVENTGW_DISPATCH_LEASE_SECONDS": "10"}, "dispatch_lease_seconds must be longer than http_timeout_seconds"),
    ({"EVENTGW_HTTP_TIMEOUT_SECONDS": "120"}, "dispatch_lease_seconds must be longer than http_timeout_seconds"),
])
def test_values_out_of_range_are_refused(environ: dict[str, str], message: str) -> None:
    assert config_error(environ) == message


def test_an_empty_retry_schedule_is_refused(tmp_path: Path) -> None:
    assert config_error(write_config(tmp_path, "retry_schedule = []\n")) == "retry_schedule needs at least one delay"


def test_the_limits_themselves_are_accepted() -> None:
    assert load_settings(environ={"EVENTGW_MAX_BATCH": "1"}).max_batch == 1
    assert load_settings(environ={"EVENTGW_MAX_BATCH": "10000"}).max_batch == 10_000
    assert load_settings(environ={"EVENTGW_DISPATCH_LEASE_SECONDS": "11"}).dispatch_lease_seconds == 11


@pytest.mark.parametrize("setting", ["variable", "file"])
def test_the_gateway_command_stops_with_the_message_and_no_traceback(tmp_path: Path, setting: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")}
    if setting == "variable":
        environ["EVENTGW_SMTP_SECURITY"] = "ssl"
        expected = "Error: smtp_security must be none, starttls or tls\n"
    else:
        environ.update(write_config(tmp_path, "colour = \"blue\"\n"))
        expected = f"Error: {tmp_path / 'eventgw.toml'}: unknown setting 'colour'\n"

    done = subprocess.run([str(GATEWAY), "db", "upgrade"], env=environ, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)

    assert (done.returncode, done.stderr) == (1, expected)
    assert not (tmp_path / "var").exists()
