"""Secrets at rest: the store's Fernet keys, and the secret settings of destinations sealed under them.

The keys come from ``secret_key`` (comma-separated, newest first: the newest seals, every one
opens), else from ``secret.key`` in the data directory, generated there on first start. The
store's engine carries its keys (``attach``), so the settings column seals and opens its secret
settings itself (``gateway.store.models``): the rest of the gateway only ever sees them in clear.
"""
from __future__ import annotations

import os
import secrets
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import JSON, Connection, Engine, Integer, String, column, select, table, update
from sqlalchemy.engine import Dialect

from gateway.config import Settings
from gateway.errors import ConfigError

KEY_FILE = "secret.key"
"""The generated key's file in the data directory (owner-only)."""
SECRET_SETTINGS = frozenset({"password", "private_key", "private_key_passphrase", "secrets", "basic_auth"})
"""The destination settings, of any kind, that are secrets: FTP and SFTP passwords, SFTP private keys and their
passphrases, webhook signing secrets and Basic-auth credentials. Each is stored sealed."""
SEALED = "fernet"
"""The key of the object a sealed setting is stored as: ``{"fernet": token}``."""


def new_key() -> str:
    """A new random Fernet key, as ``secret_key`` takes it."""
    return Fernet.generate_key().decode()


class Vault:
    """Seals values under the newest key and opens them under any key."""

    def __init__(self, keys: list[str], source: str) -> None:
        if not keys:
            raise ConfigError(f"{source}: no key given")
        fernets = []
        for number, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except ValueError:
                raise ConfigError(f"{source}: key {number} is not a Fernet key (32 url-safe base64-encoded bytes; "
                                  f"'gateway secrets new-key' makes one)") from None
        self._keys = MultiFernet(fernets)
        self._secrets = [key.strip().encode() for key in keys]
        self.source = source

    def derive(self, purpose: str) -> list[bytes]:
        """A 32-byte key for ``purpose`` (signing the console's session cookies, say) from each key, newest
        first: the same in every process of one store, and telling nothing about the keys themselves."""
        return [HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret)
                for secret in self._secrets]

    def seal(self, value: Any) -> dict[str, str]:
        """``value`` (any JSON value) encrypted and authenticated under the newest key."""
        return {SEALED: self._keys.encrypt(orjson.dumps(value)).decode()}

    def open(self, sealed: Mapping[str, str]) -> Any:
        """The value ``seal`` sealed; ConfigError when no key opens it (not garbage)."""
        try:
            return orjson.loads(self._keys.decrypt(sealed[SEALED].encode()))
        except InvalidToken:
            raise ConfigError(f"a stored secret opens with no key of {self.source}: it was sealed under a key "
                              "that is not configured (after a rotation, keep the old key after the new one until "
                              "'gateway secrets rotate' has run)") from None

    def reseal(self, sealed: Mapping[str, str]) -> dict[str, str]:
        """``sealed`` sealed again under the newest key (ConfigError as ``open``)."""
        self.open(sealed)
        return {SEALED: self._keys.rotate(sealed[SEALED].encode()).decode()}

    def seal_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings with each secret in clear sealed (sealed ones stay as they are)."""
        return {key: self.seal(value) if key in SECRET_SETTINGS and value is not None and not is_sealed(value)
                else value for key, value in settings.items()}

    def open_settings(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Settings with each sealed secret opened."""
        return {key: self.open(value) if is_sealed(value) else value for key, value in stored.items()}

    def reseal_settings(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Settings with every secret sealed under the newest key, whether in clear or sealed under another."""
        resealed = self.seal_settings(stored)
        return {key: self.reseal(value) if is_sealed(value) else value for key, value in resealed.items()}


def is_sealed(value: Any) -> bool:
    """Whether a stored setting is a sealed secret."""
    return isinstance(value, dict) and set(value) == {SEALED} and isinstance(value[SEALED], str)


def has_secrets(settings: Mapping[str, Any]) -> bool:
    """Whether settings hold a secret, sealed or in clear."""
    return any(value is not None for key, value in settings.items() if key in SECRET_SETTINGS or is_sealed(value))


def load_vault(settings: Settings) -> Vault:
    """The keys the settings name: ``secret_key``, else the data directory's key file, generated on first start.
    ConfigError naming the setting or the file when a key is invalid or the file unreadable."""
    if settings.secret_key.strip():
        return Vault([key for key in settings.secret_key.split(",") if key.strip()],
                     f"secret_key (from {settings.origin('secret_key')})")
    path = settings.data_home / KEY_FILE
    try:
        text = path.read_text() if path.exists() else _generate(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the secret key file {path}: {exc} (or set secret_key)") from None
    return Vault(text.split(), f"the secret key file {path}")


def _generate(path: Path) -> str:
    """Write a new key to ``path``, owner-only, and return the key there: another process's, if it won the race
    (the file appears whole or not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spare = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(new_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(spare, path)
        except FileExistsError:
            pass
    finally:
        spare.unlink()
    return path.read_text()


_VAULTS: weakref.WeakKeyDictionary[Dialect, Vault] = weakref.WeakKeyDictionary()


def attach(engine: Engine, vault: Vault) -> None:
    """Give the store behind ``engine`` its keys."""
    _VAULTS[engine.dialect] = vault


def vault_of(dialect: Dialect) -> Vault:
    """The keys attached to the engine of ``dialect``; ConfigError when it has none."""
    vault = _VAULTS.get(dialect)
    if vault is None:
        raise ConfigError("this store was opened without its secret key (open it with gateway.runtime.open_runtime)")
    return vault


def seal_stored(dialect: Dialect, settings: dict[str, Any]) -> dict[str, Any]:
    """A destination's settings as the store keeps them: its secrets sealed (no key needed when it has none)."""
    return vault_of(dialect).seal_settings(settings) if has_secrets(settings) else settings


def open_stored(dialect: Dialect, stored: dict[str, Any]) -> dict[str, Any]:
    """A destination's settings as the store kept them, its secrets opened."""
    return vault_of(dialect).open_settings(stored) if has_secrets(stored) else stored


# The settings as the table holds them, past the sealing column type of gateway.store.models.
_DESTINATIONS = table("destinations", column("id", Integer), column("kind", String), column("settings", JSON))


@dataclass(frozen=True)
class Resealed:
    """What ``reseal_destinations`` changed: destinations and the secrets among their settings."""

    destinations: int
    secrets: int


def reseal_destinations(connection: Connection, change: Callable[[Mapping[str, Any]], dict[str, Any]]) -> Resealed:
    """Rewrite the stored settings of every destination that holds a secret through ``change`` (a Vault's
    ``reseal_settings``, say), in the connection's transaction."""
    rows = connection.execute(select(_DESTINATIONS.c.id, _DESTINATIONS.c.settings)
                              .where(_DESTINATIONS.c.kind != "pull").order_by(_DESTINATIONS.c.id)).all()
    destinations = count = 0
    for row in rows:
        if not has_secrets(row.settings):
            continue
        connection.execute(update(_DESTINATIONS).where(_DESTINATIONS.c.id == row.id)
                           .values(settings=change(row.settings)))
        destinations += 1
        count += sum(1 for key, value in row.settings.items() if value is not None
                     and (key in SECRET_SETTINGS or is_sealed(value)))
    return Resealed(destinations, count)


def check_opens(engine: Engine, vault: Vault) -> None:
    """ConfigError at start-up, rather than at the first delivery, when the store's newest sealed secret does not
    open with ``vault``."""
    with engine.connect() as connection:
        rows = connection.execute(select(_DESTINATIONS.c.settings).where(_DESTINATIONS.c.kind != "pull")
                                  .order_by(_DESTINATIONS.c.id.desc()).limit(50))
        for settings, in rows:
            sealed = [value for value in settings.values() if is_sealed(value)]
            if sealed:
                vault.open(sealed[0])
                return
