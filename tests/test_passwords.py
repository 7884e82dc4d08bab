"""Password hashes (gateway/passwords.py): scrypt at OWASP's cost by default, older costs still verified."""
from __future__ import annotations

import subprocess
import sys

import pytest

from gateway import passwords
from gateway.passwords import LEGACY, OWASP, ScryptCost, hash_password, needs_rehash, verify_password


def test_new_hashes_get_owasps_cost_outside_the_tests() -> None:
    assert OWASP == ScryptCost(n=2**17, r=8, p=1)
    # The suite lowers COST for speed (tests/conftest.py); a fresh interpreter shows the real default.
    shown = subprocess.run([sys.executable, "-c", "from gateway import passwords as p; print(p.COST == p.OWASP)"],
                           capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "True"


def test_a_hash_at_owasps_cost_fits_its_memory_limit() -> None:
    stored = hash_password("S3cret-pass", OWASP)  # 128 MiB: more than hashlib's default maxmem of 32 MiB

    assert stored.startswith("scrypt$ln=17,r=8,p=1$")
    assert verify_password("S3cret-pass", stored) and not verify_password("S3cret-pasS", stored)


def test_hashes_name_their_cost_and_old_ones_still_verify() -> None:
    current = hash_password("pw-123456")
    legacy = hash_password("pw-123456", LEGACY).replace(f"${LEGACY.encoded()}", "")  # before costs were named

    assert current.startswith(f"scrypt${passwords.COST.encoded()}$") and current != hash_password("pw-123456")
    assert verify_password("pw-123456", legacy) and not verify_password("pw-1234567", legacy)
    assert needs_rehash(legacy) and not needs_rehash(current)


@pytest.mark.parametrize("stored", ["", "plain", "md5$a$b", "scrypt$x", "scrypt$ln=99,r=8,p=1$AA==$AA==",
                                    "scrypt$ln=abc$AA==$AA==", "scrypt$AA==$!!"])
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not verify_password("anything", stored)
    assert needs_rehash(stored)
