"""/healthz: readiness (the store answers) and the role of the process, on the web edge and a worker's listener."""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest
import requests

from gateway.health import HealthServer, check
from gateway.runtime import Role, Runtime
from gateway.server import ServerThread
from gateway.store.db import make_engine
from gateway.vault import attach, vault_of
from tests.support.net import free_port


@pytest.fixture
def unreachable(runtime: Runtime) -> Iterator[Runtime]:
    """The runtime with its engine pointed at a PostgreSQL port nothing listens on."""
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/eventgw?connect_timeout=2")
    attach(engine, vault_of(runtime.engine.dialect))
    yield dataclasses.replace(runtime, engine=engine)
    engine.dispose()


def test_a_web_process_that_reaches_its_store_is_ready(live_server: ServerThread, runtime: Runtime) -> None:
    answer = requests.get(f"{live_server.url}/healthz", timeout=10)

    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "role": "web", "database": runtime.engine.dialect.name}


def test_a_process_that_cannot_reach_its_store_is_not_ready(unreachable: Runtime) -> None:
    server = ServerThread(unreachable)
    try:
        answer = requests.get(f"{server.url}/healthz", timeout=10)
    finally:
        server.close()

    assert answer.status_code == 503
    body = answer.json()
    assert (body["status"], body["role"], body["database"]) == ("unavailable", "web", "postgresql")
    assert "refused" in body["error"] or "connect" in body["error"], body


def test_a_stopping_process_is_not_ready(runtime: Runtime) -> None:
    stopping = dataclasses.replace(runtime, role=Role.WORKER, stopping=threading.Event())
    stopping.stopping.set()

    answer = check(stopping)

    assert (answer.status, answer.body["status"], answer.body["role"]) == (503, "stopping", "worker")


def test_a_worker_answers_on_its_health_listener(runtime: Runtime) -> None:
    worker = dataclasses.replace(runtime, role=Role.WORKER)
    listener = HealthServer(worker, "127.0.0.1", 0)
    try:
        ready = requests.get(f"http://127.0.0.1:{listener.port}/healthz", timeout=10)
        elsewhere = requests.get(f"http://127.0.0.1:{listener.port}/metrics", timeout=10)
    finally:
        listener.close()

    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "role": "worker",
                                                       "database": runtime.engine.dialect.name})
    assert elsewhere.status_code == 404
