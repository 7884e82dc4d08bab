"""Configuration as an operator meets it (gateway/config.py): defaults, EVENTGW_* variables, the TOML file, errors."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config import SETTINGS, Settings, load_settings
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
    if name == "database_url":
        return "sqlite:////elsewhere/eventgw.db", "sqlite:////elsewhere/eventgw.db"
    if name == "outbound_allow_networks":
        return "10.20.0.0/16,fd00::/8", "10.20.0.0/16,fd00::/8"
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


def test_without_configuration_the_documented_defaults_apply(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(environ={})

    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/.local/share/eventgw/eventgw.db"
    assert settings.effective_public_url == "http://127.0.0.1:8080"
    assert (settings.max_batch, settings.max_body_bytes) == (10_000, 32 * 1024 * 1024)
    assert (settings.pull_lease_seconds, settings.recovery_days, settings.retention_days) == (300, 5, 5)
    assert (settings.login_failure_limit, settings.login_backoff_max_seconds) == (5, 300)
    assert list(settings.retry_schedule) == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert (settings.deactivate_after_seconds, settings.deactivate_after_failures) == (86_400, 0)
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == ("127.0.0.1", 25, "none")
    assert settings.smtp_verify_tls is True


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    assert documented_settings() == {field.name for field in SETTINGS}


def test_the_data_directory_holds_the_default_store() -> None:
    settings = load_settings(environ={"EVENTGW_HOME": "/srv/eventgw"})

    assert settings.effective_database_url == "sqlite:////srv/eventgw/eventgw.db"
    url = "postgresql+psycopg://gw@db.example/eventgw"
    assert load_settings(environ={"EVENTGW_HOME": "/srv/eventgw", "EVENTGW_DATABASE_URL": url}
                         ).effective_database_url == url


# --- where the store is: the same from any directory


def test_the_default_store_is_in_the_users_data_directory_whatever_the_current_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    urls = set()
    for directory in (tmp_path, tmp_path / "xdg"):
        directory.mkdir(exist_ok=True)
        monkeypatch.chdir(directory)
        urls.add(load_settings(environ={}).effective_database_url)

    assert urls == {f"sqlite:///{tmp_path}/xdg/eventgw/eventgw.db"}
    assert load_settings(environ={}).store == \
        f"sqlite:///{tmp_path}/xdg/eventgw/eventgw.db (in the default data directory)"


def test_a_relative_data_directory_is_taken_from_the_current_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    assert load_settings(environ={"EVENTGW_HOME": "data"}).effective_database_url == \
        f"sqlite:///{tmp_path}/data/eventgw.db"


def test_the_store_is_looked_up_option_variable_file_home_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    environ = {**write_config(tmp_path, 'database_url = "sqlite:////from/file.db"\n'),
               "EVENTGW_DATABASE_URL": "sqlite:////from/variable.db", "EVENTGW_HOME": "/from/home"}

    assert load_settings(environ=environ, database_url="sqlite:////from/option.db").store == \
        "sqlite:////from/option.db (from --database-url)"
    assert load_settings(environ=environ).store == "sqlite:////from/variable.db (from EVENTGW_DATABASE_URL)"
    del environ["EVENTGW_DATABASE_URL"]
    assert load_settings(environ=environ).store == \
        f"sqlite:////from/file.db (from database_url in {tmp_path / 'eventgw.toml'})"
    del environ["EVENTGW_CONFIG"]
    assert load_settings(environ=environ).store == \
        "sqlite:////from/home/eventgw.db (in the data directory from EVENTGW_HOME)"
    assert load_settings(environ={}).store == \
        f"sqlite:///{tmp_path}/xdg/eventgw/eventgw.db (in the default data directory)"


def test_the_stores_password_is_never_shown() -> None:
    settings = load_settings(environ={"EVENTGW_DATABASE_URL": "postgresql+psycopg://gw:s3cret@127.0.0.1/eventgw"})

    assert settings.store == "postgresql+psycopg://gw:***@127.0.0.1/eventgw (from EVENTGW_DATABASE_URL)"


def test_the_public_url_follows_the_listening_address() -> None:
    assert load_settings(environ={"EVENTGW_PORT": "9000"}).effective_public_url == "http://127.0.0.1:9000"
    assert load_settings(environ={"EVENTGW_HOST": "::1"}).effective_public_url == "http://[::1]:8080"
    # Listening on every address, the WSDLs name the machine, not 0.0.0.0.
    assert load_settings(environ={"EVENTGW_HOST": "0.0.0.0"}).effective_public_url == \
        f"http://{socket.getfqdn()}:8080"
    given = load_settings(environ={"EVENTGW_PUBLIC_URL": "https://events.example.com/gw/"})
    assert given.effective_public_url == "https://events.example.com/gw"


# --- environment variables


@pytest.mark.parametrize("name", [field.name for field in SETTINGS])
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
    assert load_settings(environ={"EVENTGW_TEST_PG_BIN": "/opt/pg", "EVENTGW_ORIGINS": "x", "PORT": "1",
                                  "HOME": "/root"}) == Settings()


def test_messages_name_where_each_setting_came_from(tmp_path: Path) -> None:
    environ = {**write_config(tmp_path, "port = 9100\nsmtp_port = 2525\n"), "EVENTGW_SMTP_PORT": "25"}

    settings = load_settings(environ=environ, host="::1")

    assert settings.origin("port") == f"port in {tmp_path / 'eventgw.toml'}"
    assert settings.origin("smtp_port") == "EVENTGW_SMTP_PORT"
    assert settings.origin("host") == "--host"
    assert settings.origin("smtp_host") == "the default"


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
    assert config_error(broken).endswith("(named by EVENTGW_CONFIG: fix the file, or unset the variable)")
    (tmp_path / "latin1.toml").write_bytes('smtp_sender = "caf\u00e9@example.com"\n'.encode("latin-1"))
    assert config_error({"EVENTGW_CONFIG": str(tmp_path / "latin1.toml")}).startswith(
        "cannot read configuration file ")

TIMEOUT_RANGE = "http_timeout_seconds must be positive and at most delivery_deadline_seconds"


@pytest.mark.parametrize(("environ", "message"), [
    ({"EVENTGW_MAX_BATCH": "0"}, "max_batch must be between 1 and 10000"),
    ({"EVENTGW_MAX_BATCH": "10001"}, "max_batch must be between 1 and 10000"),
    ({"EVENTGW_SMTP_SECURITY": "ssl"}, "smtp_security must be none, starttls or tls"),
    ({"EVENTGW_DISPATCH_LEASE_SECONDS": "30"}, "dispatch_lease_seconds must be longer than delivery_deadline_seconds"),
    ({"EVENTGW_HTTP_TIMEOUT_SECONDS": "31"}, TIMEOUT_RANGE),
    ({"EVENTGW_HTTP_TIMEOUT_SECONDS": "0"}, TIMEOUT_RANGE),
    ({"EVENTGW_ACCOUNT_CONCURRENCY": "0"},
     "account_concurrency must be at least 1 (it is 0, from EVENTGW_ACCOUNT_CONCURRENCY)"),
])
def test_values_out_of_range_are_refused(environ: dict[str, str], message: str) -> None:
    assert config_error(environ) == message


@pytest.mark.parametrize(("environ", "overrides", "message"), [
    ({"EVENTGW_PORT": "0"}, {}, "port must be between 1 and 65535 (it is 0, from EVENTGW_PORT)"),
    ({}, {"port": 80999}, "port must be between 1 and 65535 (it is 80999, from --port)"),
    ({"EVENTGW_SMTP_PORT": "65536"}, {}, "smtp_port must be between 1 and 65535 (it is 65536, from EVENTGW_SMTP_PORT)"),
])
def test_ports_out_of_range_are_refused(environ: dict[str, str], overrides: dict[str, Any], message: str) -> None:
    assert config_error(environ, **overrides) == message


@pytest.mark.parametrize(("url", "message"), [
    ("foo://", "database_url 'foo://' (from --database-url): unknown database 'foo' (the gateway runs on sqlite "
               "or postgresql); give sqlite:////PATH/eventgw.db or postgresql+psycopg://USER@HOST/DATABASE"),
    ("127.0.0.1:5432", "database_url '127.0.0.1:5432' (from --database-url) is not a database URL; "
                       "give sqlite:////PATH/eventgw.db or postgresql+psycopg://USER@HOST/DATABASE"),
])
def test_a_database_url_the_gateway_cannot_use_is_refused(url: str, message: str) -> None:
    assert config_error({}, database_url=url) == message


def test_an_empty_retry_schedule_is_refused(tmp_path: Path) -> None:
    assert config_error(write_config(tmp_path, "retry_schedule = []\n")) == "retry_schedule needs at least one delay"


def test_the_limits_themselves_are_accepted() -> None:
    assert load_settings(environ={"EVENTGW_MAX_BATCH": "1"}).max_batch == 1
    assert load_settings(environ={"EVENTGW_MAX_BATCH": "10000"}).max_batch == 10_000
    assert load_settings(environ={"EVENTGW_DISPATCH_LEASE_SECONDS": "31"}).dispatch_lease_seconds == 31


@pytest.mark.parametrize("setting", ["variable", "file"])
def test_the_gateway_command_stops_with_the_message_and_no_traceback(tmp_path: Path, setting: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")}
    environ["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    if setting == "variable":
        environ["EVENTGW_SMTP_SECURITY"] = "ssl"
        expected = "Error: smtp_security must be none, starttls or tls\n"
    else:
        environ.update(write_config(tmp_path, "colour = \"blue\"\n"))
        expected = f"Error: {tmp_path / 'eventgw.toml'}: unknown setting 'colour'\n"

    done = subprocess.run([str(GATEWAY), "db", "upgrade"], env=environ, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)

    assert (done.returncode, done.stderr) == (1, expected)
    assert not (tmp_path / "xdg").exists()


def test_a_renamed_setting_is_refused_with_its_new_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EVENTGW_DATA_DIR was renamed EVENTGW_HOME"):
        load_settings(environ={"EVENTGW_DATA_DIR": str(tmp_path)})
    config = tmp_path / "eventgw.toml"
    config.write_text('data_dir = "var"\n')
    with pytest.raises(ConfigError, match="'data_dir' was renamed 'home'"):
        load_settings(environ={"EVENTGW_CONFIG": str(config)})
