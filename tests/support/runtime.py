"""A gateway runtime over a given store, and the password of the accounts the tests create."""
from __future__ import annotations

from pathlib import Path

from gateway.config import load_settings
from gateway.runtime import Runtime, open_runtime

PASSWORD = "S3cret-pass"
# Every server the tests start listens on loopback, which the outbound policy refuses by default.
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"


def make_runtime(url: str, tmp_path: Path, **settings: object) -> Runtime:
    """An opened, migrated Runtime on ``url`` with some settings changed; it may reach loopback targets."""
    settings = {"outbound_allow_networks": LOOPBACK_NETWORKS, **settings}
    return open_runtime(load_settings(environ={}, database_url=url, home=str(tmp_path), **settings))
