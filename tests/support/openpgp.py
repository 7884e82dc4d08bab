"""A consumer's OpenPGP key pair, made with GnuPG in a keyring of its own, for tests and benchmarks that decrypt."""
from __future__ import annotations

from pathlib import Path

import gnupg


def key_pair(home: Path, expire: str | int = 0) -> tuple[gnupg.GPG, str]:
    """A new key pair in the keyring at ``home`` (Ed25519, with a Curve25519 subkey that encrypts, made in
    milliseconds), expiring after ``expire`` (GnuPG's form, e.g. ``seconds=1``; 0: never); its fingerprint."""
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    made = gpg.gen_key(gpg.gen_key_input(key_type="EDDSA", key_curve="ed25519", subkey_type="ECDH",
                                         subkey_curve="cv25519", name_email="files@consumer.example",
                                         no_protection=True, expire_date=expire))
    assert made.fingerprint, made.stderr
    return gpg, str(made.fingerprint)
