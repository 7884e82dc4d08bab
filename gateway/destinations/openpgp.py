"""OpenPGP encryption of a file destination's files to its consumer's public key.

GnuPG does the cryptography (Debian's ``gnupg``, driven by python-gnupg); each use works in a
throw-away keyring, so no key outlives the call and the gateway's own keyring (if any) is
never touched.
"""
from __future__ import annotations

import base64
import binascii
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg

ARMOR_HEADER = "-----BEGIN PGP "


class KeyRefused(ValueError):
    """A public key that files cannot be encrypted to: unreadable, expired, revoked or unable to encrypt."""


@dataclass(frozen=True)
class PublicKey:
    """A checked public key: as armored text, and its fingerprint."""

    armored: str
    fingerprint: str


@contextmanager
def _keyring() -> Iterator[gnupg.GPG]:
    with tempfile.TemporaryDirectory(prefix="eventgw-gpg-") as home:
        try:
            gpg = gnupg.GPG(gnupghome=home)
        except OSError as exc:  # python-gnupg runs gpg at once to learn its version
            raise KeyRefused(f"cannot be used: GnuPG (gpg) does not run on the gateway ({exc})") from None
        yield gpg


def _key_data(key: str) -> bytes:
    """The key's bytes: armored text as it is, else base64 of the binary key."""
    if ARMOR_HEADER in key:
        return key.encode("ascii", "replace")
    try:
        return base64.b64decode("".join(key.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyRefused("is neither an armored OpenPGP public key nor base64 of a binary one") from None


def _usable(listed: dict[str, Any], now: float) -> str | None:
    """Why the listed key cannot receive files (None: it can)."""
    if listed.get("trust") == "r":
        return "is revoked"
    expires = listed.get("expires")
    if listed.get("trust") == "e" or (expires and float(expires) <= now):
        return "has expired"
    if "E" not in listed.get("cap", ""):
        return "has no subkey that can encrypt (expired, revoked or signing only)"
    return None


def check_public_key(key: str) -> PublicKey:
    """The one public key ``key`` holds (armored, or base64 of the binary form); KeyRefused saying why
    files cannot be encrypted to it."""
    with _keyring() as gpg:
        imported = gpg.import_keys(_key_data(key))
        fingerprints = list(dict.fromkeys(imported.fingerprints))
        if not fingerprints:
            raise KeyRefused("holds no OpenPGP public key")
        if len(fingerprints) > 1:
            raise KeyRefused(f"holds {len(fingerprints)} keys; give the consumer's one key")
        if gpg.list_keys(True):
            raise KeyRefused("holds a private key; give the public key only")
        listed = gpg.list_keys()[0]
        reason = _usable(listed, time.time())
        if reason:
            raise KeyRefused(f"{reason} (key {fingerprints[0]})")
        return PublicKey(str(gpg.export_keys(fingerprints[0])), str(fingerprints[0]))


def encrypt_file(source: Path, target: Path, key: str) -> None:
    """Encrypt ``source`` into ``target`` (binary OpenPGP) to the checked public ``key``; KeyRefused when
    the key cannot be used (any more: it expired since it was checked, say)."""
    with _keyring() as gpg:
        recipient = gpg.import_keys(_key_data(key)).fingerprints[0]
        with open(source, "rb") as plain:
            result = gpg.encrypt_file(plain, [recipient], armor=False, always_trust=True, output=str(target))
    if not result.ok:
        raise KeyRefused(f"was refused by GnuPG: {result.status or result.stderr.strip()[-300:]}")
