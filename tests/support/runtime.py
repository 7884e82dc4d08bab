"""A gateway runtime over a given store, and the password of the accounts the tests create."""
from __future__ import annotations

from pathlib import Path

from gateway.config import load_settings
from gateway.runtime import Runtime, open_runtime

PASSWORD = "S3cret-pass"


def make_runtime(url: str, tmp_path: Path, **settings: object) -> Runtime:
    """An opened, migrated Runtime on ``url`` with some settings changed."""
    return open_runtime(load_settings(environ={}, database_url=url, home=str(tmp_path), **settings))
