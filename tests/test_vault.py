"""Secrets at rest (gateway/vault.py): the key file, destination secrets sealed in the store on SQLite and
PostgreSQL, key rotation with `gateway secrets rotate`, and a wrong key refused plainly."""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import paramiko
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import JSON, Boolean, Integer, String, column, insert, table, text
from sqlalchemy.engine import make_url

from gateway.accounts import create_account
from gateway.cli import main
from gateway.config import load_settings
from gateway.destinations import management, webhooks
from gateway.destinations.kinds import kind_named, settings_of
from gateway.errors import ConfigError
from gateway.runtime import Runtime
from gateway.store.db import alembic_config, make_engine, upgrade
from gateway.store.models import Destination, UTCDateTime, utcnow
from gateway.vault import KEY_FILE, SECRET_SETTINGS, Vault, load_vault, new_key
from tests.support.runtime import PASSWORD, make_runtime

LOOPBACK = {"outbound_allow_networks": "127.0.0.0/8"}


def ssh_key_pair() -> tuple[str, str]:
    """A private key's text, encrypted with the passphrase 'key-passphrase', and a known_hosts line for port 2222."""
    client, host = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    buffer = io.StringIO()
    client.write_private_key(buffer, password="key-passphrase")
    return buffer.getvalue(), f"[127.0.0.1]:2222 {host.get_name()} {host.get_base64()}"


SECRETS = ("whsec_" + base64.b64encode(b"hook-signing-secret-0123456789").decode(), "basic-auth-password",
           "ftp-password", "sftp-password", "key-passphrase")


def store_secrets(runtime: Runtime, account_id: int) -> tuple[str, dict[str, int]]:
    """A webhook (signing secret, Basic auth), an FTP and an SFTP destination (password, private key and its
    passphrase), every secret of which is in SECRETS or is the returned private key; their ids by kind."""
    private_key, known_hosts = ssh_key_pair()
    with runtime.sessions.begin() as session:
        hook = webhooks.create(session, account_id, {
            "url": "http://127.0.0.1:9/hook", "events": ["OPEN"], "secret": SECRETS[0],
            "basic_auth": {"username": "hook-user", "password": SECRETS[1]}})
        ftp = management.create(session, account_id, {
            "kind": "ftp", "events": ["CLICK"], "host": "127.0.0.1", "username": "u", "password": SECRETS[2]})
        sftp = management.create(session, account_id, {
            "kind": "sftp", "events": ["BOUNCE"], "host": "127.0.0.1", "port": 2222, "username": "u",
            "password": SECRETS[3], "private_key": private_key, "private_key_passphrase": SECRETS[4],
            "known_hosts": known_hosts})
        return private_key, {"http": hook.id, "ftp": ftp.id, "sftp": sftp.id}


def raw_settings(runtime: Runtime) -> str:
    """Every destination's settings as the database holds them, as text."""
    with runtime.engine.connect() as connection:
        rows = connection.execute(text("SELECT settings FROM destinations ORDER BY id")).scalars().all()
    return "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows)


def secret_markers(private_key: str) -> list[str]:
    """What no stored byte may contain: each secret, and a line of the private key."""
    return [*SECRETS, private_key.splitlines()[2]]


def readable(runtime: Runtime, ids: dict[str, int], private_key: str) -> None:
    """The destinations' secrets read back in clear through the store."""
    with runtime.read_sessions() as session:
        hook = settings_of(session.get_one(Destination, ids["http"]))
        ftp = settings_of(session.get_one(Destination, ids["ftp"]))
        sftp = settings_of(session.get_one(Destination, ids["sftp"]))
    assert hook.stored()["secrets"] == [SECRETS[0]]
    assert hook.stored()["basic_auth"] == ["hook-user", SECRETS[1]]
    assert ftp.stored()["password"] == SECRETS[2]
    assert sftp.stored()["private_key"] == private_key
    assert (sftp.stored()["password"], sftp.stored()["private_key_passphrase"]) == (SECRETS[3], SECRETS[4])


@pytest.fixture
def sealed_runtime(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(store_url, tmp_path, **LOOPBACK)
    yield rt
    rt.close()


def test_secrets_are_unreadable_in_the_store(sealed_runtime: Runtime, store_url: str) -> None:
    with sealed_runtime.sessions.begin() as session:
        account = create_account(session, "acme", PASSWORD)
    private_key, ids = store_secrets(sealed_runtime, account.id)

    stored = raw_settings(sealed_runtime)
    for secret in secret_markers(private_key):
        assert secret not in stored
    assert "127.0.0.1" in stored and '"fernet"' in stored  # the rest stays plain JSON
    readable(sealed_runtime, ids, private_key)
    with sealed_runtime.read_sessions() as session:
        shown = str(management.view(session, session.get_one(Destination, ids["sftp"])))
        shown += str(webhooks.view(session, session.get_one(Destination, ids["http"])))
    for secret in secret_markers(private_key):
        assert secret not in shown
    if make_url(store_url).get_backend_name() == "sqlite":
        sealed_runtime.close()
        database = Path(str(make_url(store_url).database))
        data = b"".join(path.read_bytes() for path in database.parent.glob(database.name + "*"))
        assert b"127.0.0.1" in data
        for secret in secret_markers(private_key):
            assert secret.encode() not in data


def test_rotation_keeps_secrets_readable_and_a_wrong_key_is_refused(store_url: str, tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    with closing(make_runtime(store_url, tmp_path, secret_key=old, **LOOPBACK)) as rt:
        with rt.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        private_key, ids = store_secrets(rt, account.id)
        sealed_by_old = raw_settings(rt)

    # The new key first, the old one after it: both open, the new one seals.
    with closing(make_runtime(store_url, tmp_path, secret_key=f"{new},{old}", **LOOPBACK)) as rt:
        readable(rt, ids, private_key)
    result = CliRunner().invoke(main, ["--database-url", store_url, "secrets", "rotate"],
                                env={"EVENTGW_SECRET_KEY": f"{new},{old}", "EVENTGW_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("6 secrets of 3 destinations sealed under the newest key of secret_key "
                                    "(from EVENTGW_SECRET_KEY)")

    with closing(make_runtime(store_url, tmp_path, secret_key=new, **LOOPBACK)) as rt:  # the old key removed
        readable(rt, ids, private_key)
        resealed = raw_settings(rt)
    assert resealed != sealed_by_old
    for secret in secret_markers(private_key):
        assert secret not in resealed
    with pytest.raises(ConfigError, match=r"opens with no key of secret_key \(from --secret-key\)"):
        make_runtime(store_url, tmp_path, secret_key=old)
    wrong = CliRunner().invoke(main, ["--database-url", store_url, "account", "list"],
                               env={"EVENTGW_SECRET_KEY": new_key(), "EVENTGW_HOME": str(tmp_path)})
    assert wrong.exit_code == 1 and "a stored secret opens with no key of secret_key" in wrong.output
    assert "Traceback" not in wrong.output


def test_the_key_file_is_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    settings = load_settings(environ={}, home=str(tmp_path / "home"))
    vaults: list[Vault] = []
    threads = [threading.Thread(target=lambda: vaults.append(load_vault(settings))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    path = tmp_path / "home" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]
    sealed = vaults[0].seal({"password": "x"})
    assert all(vault.open(sealed) == {"password": "x"} for vault in vaults)  # one key, whoever wrote it
    assert load_vault(settings).open(sealed) == {"password": "x"}


@pytest.mark.parametrize("secret_key, content, message", [
    ("not-a-key", None, r"secret_key \(from --secret-key\): key 1 is not a Fernet key"),
    (f"{new_key()},short", None, r"secret_key \(from --secret-key\): key 2 is not a Fernet key"),
    ("", "garbage\n", r"the secret key file .*secret.key: key 1 is not a Fernet key"),
    ("", "", r"the secret key file .*secret.key: no key given"),
    ("", b"\xff\xfe", r"cannot read the secret key file .*secret.key"),
])
def test_an_invalid_or_unreadable_key_is_a_config_error(tmp_path: Path, secret_key: str, content: Any,
                                                        message: str) -> None:
    if content is not None:
        (tmp_path / KEY_FILE).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=message):
        load_vault(load_settings(environ={}, home=str(tmp_path), secret_key=secret_key or None))


def test_a_key_file_that_cannot_be_read_is_a_config_error(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / KEY_FILE).mkdir()
    with pytest.raises(ConfigError, match=r"cannot read the secret key file .*secret.key: .*or set secret_key"):
        make_runtime(sqlite_url, tmp_path)


def test_migration_seals_existing_secrets(store_url: str, tmp_path: Path) -> None:
    """From 0004 with real rows: secrets in clear and a SOAP session."""
    engine = make_engine(store_url)
    upgrade(engine, "0004")
    private_key, _ = ssh_key_pair()
    clear = {"host": "127.0.0.1", "username": "u", "password": SECRETS[2], "private_key": private_key,
             "private_key_passphrase": SECRETS[4], "known_hosts": "x"}
    now = utcnow()
    destinations = table("destinations", *(column(name, kind) for name, kind in (
        ("id", Integer), ("account_id", Integer), ("kind", String), ("name", String), ("settings", JSON),
        ("active", Boolean), ("consecutive_failures", Integer), ("created_at", UTCDateTime),
        ("updated_at", UTCDateTime))))
    with engine.begin() as connection:
        connection.execute(insert(table("accounts", column("id"), column("name"), column("password_hash"),
                                        column("created_at", UTCDateTime))),
                           {"id": 1, "name": "acme", "password_hash": "scrypt$x$y", "created_at": now})
        common = {"account_id": 1, "active": True, "consecutive_failures": 0, "created_at": now, "updated_at": now}
        connection.execute(insert(destinations), [
            {**common, "id": 1, "kind": "pull", "name": "pull queue", "settings": {}},
            {**common, "id": 2, "kind": "sftp", "name": "s", "settings": clear},
            {**common, "id": 3, "kind": "http", "name": "h", "settings": {
                "url": "http://127.0.0.1:9/", "secrets": [SECRETS[0]], "basic_auth": ["u", SECRETS[1]]}},
        ])
        connection.execute(text("INSERT INTO legacy_sessions (id, account_id, created_at, last_seen_at) "
                                "VALUES ('X-clear', 1, :now, :now)"), {"now": str(now)})
    engine.dispose()

    with closing(make_runtime(store_url, tmp_path)) as rt:  # migrates with its key (secret.key in its data directory)
        stored = raw_settings(rt)
        with rt.read_sessions() as session:
            assert settings_of(session.get_one(Destination, 2)).stored() == clear
            assert settings_of(session.get_one(Destination, 3)).stored()["basic_auth"] == ["u", SECRETS[1]]
        with rt.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM legacy_sessions")).scalar() == 0
        command.downgrade(alembic_config(rt.engine), "0004")
        restored = raw_settings(rt)
    assert (tmp_path / KEY_FILE).is_file()
    for secret in [marker for marker in secret_markers(private_key) if marker != SECRETS[3]]:
        assert secret not in stored
        assert secret in restored  # and downgrading opens them again


def test_every_secret_setting_of_every_kind_is_sealed() -> None:
    """A new setting named like a secret, in any kind, must be in SECRET_SETTINGS to be stored sealed."""
    secret_like = re.compile(r"password|secret|private|passphrase|auth|token")
    named = {field.name for kind in ("pull", "http", "email", "ftp", "sftp")
             for field in dataclasses.fields(kind_named(kind))  # type: ignore[arg-type]
             if secret_like.search(field.name)}
    assert named == SECRET_SETTINGS
