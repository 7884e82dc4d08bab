"""Password hashes: salted scrypt at OWASP's cost, in a self-describing text form that names its cost."""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's work factors: CPU and memory ``n`` (a power of two), block size ``r``, parallelism ``p``."""

    n: int
    r: int
    p: int

    @property
    def maxmem(self) -> int:
        """The memory OpenSSL must be allowed for these factors (its default, 32 MiB, is too little for OWASP's)."""
        return 128 * self.r * (self.n + self.p + 2) + 2**20

    def encoded(self) -> str:
        """The factors as the hash names them: ``ln=17,r=8,p=1``."""
        return f"ln={self.n.bit_length() - 1},r={self.r},p={self.p}"

    @classmethod
    def decoded(cls, text: str) -> ScryptCost:
        """The factors ``encoded`` wrote; ValueError for anything else."""
        fields = dict(part.split("=", 1) for part in text.split(","))
        cost = cls(n=2 ** int(fields["ln"]), r=int(fields["r"]), p=int(fields["p"]))
        if not (1 <= cost.n <= 2**20 and 1 <= cost.r <= 32 and 1 <= cost.p <= 16):
            raise ValueError(f"scrypt cost out of range: {text}")
        return cost


OWASP = ScryptCost(n=2**17, r=8, p=1)
"""OWASP's recommendation for scrypt (Password Storage Cheat Sheet): 128 MiB and about 0.3 s a hash."""
LEGACY = ScryptCost(n=2**14, r=8, p=1)
"""The cost of hashes written before it was named in the hash (``scrypt$salt$digest``)."""

COST = OWASP
"""The cost new hashes get, and that older hashes are rehashed to at the next successful login.

The one place a cheaper cost may be set: the test suite lowers it (tests/conftest.py), since
every account it creates would otherwise cost a third of a second.
"""

# Each hash at OWASP's cost holds 128 MiB while it runs: at most this many run at once, so a
# burst of logins costs waiting time rather than memory.
_RUNNING = threading.BoundedSemaphore(2)


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    with _RUNNING:
        return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=cost.n, r=cost.r, p=cost.p,
                              maxmem=cost.maxmem, dklen=32)


def hash_password(password: str, cost: ScryptCost | None = None) -> str:
    """A salted scrypt hash of ``password`` at ``cost`` (default: ``COST``), naming its cost."""
    cost = cost or COST
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, cost)
    return f"scrypt${cost.encoded()}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _parts(stored: str) -> tuple[ScryptCost, bytes, bytes]:
    """Cost, salt and digest of a stored hash; ValueError when it is no scrypt hash."""
    parts = stored.split("$")
    if parts[0] != "scrypt" or len(parts) not in (3, 4):
        raise ValueError("not an scrypt hash")
    cost = LEGACY if len(parts) == 3 else ScryptCost.decoded(parts[1])
    return cost, base64.b64decode(parts[-2]), base64.b64decode(parts[-1])


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash made by hash_password, at whatever cost it names (constant time)."""
    try:
        cost, salt, digest = _parts(stored)
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(_scrypt(password, salt, cost), digest)


def needs_rehash(stored: str) -> bool:
    """Whether a hash was made at another cost than ``COST`` (it is replaced at the next successful login)."""
    try:
        return _parts(stored)[0] != COST
    except (ValueError, KeyError):
        return True


def spend_as_verifying(password: str) -> None:
    """Do the work of verifying ``password`` against a hash at ``COST`` and throw the answer away: a login
    under an unknown name then takes as long as one under a known name."""
    verify_password(password, _dummy_hash(COST))


@functools.cache
def _dummy_hash(cost: ScryptCost) -> str:
    return hash_password(secrets.token_urlsafe(16), cost)
