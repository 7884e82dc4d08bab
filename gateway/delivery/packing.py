"""What a period's file becomes on its way to the server: zipped or encrypted as its destination's plan says,
with its size and SHA-256, and the trigger file that tells consumers it is complete.

The lines themselves (and gzip, which wraps them as they are written) are ``export``'s; this
module works on the finished file. The same rows give the same bytes (no clock in the zip),
encryption aside, which is randomised by design.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.destinations import openpgp
from gateway.destinations.files import FilePlan, Period
from gateway.errors import DeliveryError
from gateway.events import formats

DIGEST_CHUNK = 1 << 20


@dataclass(frozen=True)
class Packed:
    """The file to upload, as the consumer will see it."""

    path: Path
    size: int
    sha256: str


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(DIGEST_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def inner_name(name: str) -> str:
    """The name of the file inside a zip: the period's name without ``.zip`` and ``.gpg``."""
    for suffix in (".gpg", ".zip"):
        name = name.removesuffix(suffix)
    return name


def pack(lines: Path, name: str, plan: FilePlan, period: Period) -> Packed:
    """The period's file from its written ``lines``: zipped (one file, named for the period) and
    encrypted to the consumer's key when the plan says so; DeliveryError (for good) when the key
    cannot be used."""
    current = lines
    if plan.zip:
        zipped = lines.with_name("packed.zip")
        entry = zipfile.ZipInfo(inner_name(name), date_time=period.start.timetuple()[:6])
        entry.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(zipped, "w") as archive, archive.open(entry, "w") as out, open(current, "rb") as src:
            while chunk := src.read(DIGEST_CHUNK):
                out.write(chunk)
        current = zipped
    if plan.pgp_public_key:
        encrypted = lines.with_name("packed.gpg")
        try:
            openpgp.encrypt_file(current, encrypted, plan.pgp_public_key)
        except openpgp.KeyRefused as exc:  # the key expired or was revoked since: only a new key helps
            raise DeliveryError(f"the file could not be encrypted: the destination's OpenPGP key {exc}",
                                retryable=False) from exc
        current = encrypted
    return Packed(current, current.stat().st_size, _digest(current))


def trigger(directory: Path, name: str, packed: Packed, count: int, period: Period, sequence: int,
            plan: FilePlan) -> tuple[Path, str] | None:
    """The trigger file to upload after the data file, and its name (None: the plan wants none).

    ``done_file``: an empty ``<name>.done``. ``manifest``: ``<name>.manifest.json`` with the file's
    name, its rows (events), size and SHA-256, and the period.
    """
    if plan.trigger is None:
        return None
    if plan.trigger != "manifest":
        path, remote = directory / "trigger", f"{name}.done"
        path.write_bytes(b"")
        return path, remote
    path, remote = directory / "trigger.json", f"{name}.manifest.json"
    path.write_bytes(orjson.dumps({
        "file": name, "rows": count, "bytes": packed.size, "sha256": packed.sha256,
        "period_start": formats.iso(period.start), "period_end": formats.iso(period.end), "sequence": sequence,
    }, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    return path, remote
