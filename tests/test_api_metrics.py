"""GET /metrics: served only with the metrics_token, to its bearer; what it shows, on SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gateway.accounts import NewAccount, create_account
from gateway.api.metrics import token_matches
from gateway.delivery.engine import Dispatcher
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.events import raw_event
from tests.support.http_receiver import Receiver
from tests.support.runtime import PASSWORD, make_runtime

TIMEOUT = 30
TOKEN = "metrics-token-of-the-tests-0123456789"
ACME = ("acme", PASSWORD)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def scraped(store_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, ServerThread, NewAccount]]:
    """A gateway whose /metrics needs TOKEN, with the account acme."""
    runtime = make_runtime(store_url, tmp_path, metrics_token=TOKEN, outbound_allow_networks="127.0.0.0/8")
    with runtime.sessions.begin() as session:
        account = create_account(session, "acme", PASSWORD)
    server = ServerThread(runtime)
    yield runtime, server, account
    server.close()
    runtime.close()


def scrape(server: ServerThread, headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None
           ) -> requests.Response:
    with requests.get(server.url + "/metrics", headers=headers or {}, auth=auth, timeout=TIMEOUT) as response:
        return response


def samples(server: ServerThread) -> Samples:
    """GET /metrics with the token, parsed: (sample name, labels) to value."""
    response = scrape(server, {"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_metrics_show_queue_depth_attempts_and_latency(
    scraped: tuple[Runtime, ServerThread, NewAccount], http_receiver: Receiver
) -> None:
    runtime, server, _ = scraped
    created = requests.post(server.url + "/api/v1/webhooks", auth=ACME, timeout=TIMEOUT,
                            json={"url": http_receiver.url, "events": ["OPEN"]})
    assert created.status_code == 201, created.text
    posted = requests.post(server.url + "/api/v1/events", auth=ACME, timeout=TIMEOUT,
                           json=[raw_event("o1"), raw_event("o2"), raw_event("b1", "BOUNCE")])
    assert posted.json() == {"accepted": 3, "duplicates": 0}

    before = samples(server)
    assert before[("eventgw_queue_depth", (("kind", "http"),))] == 2
    assert before[("eventgw_queue_depth", (("kind", "pull"),))] == 1
    assert ("eventgw_queue_oldest_age_seconds", (("kind", "http"),)) in before
    dispatcher = Dispatcher(runtime)
    try:
        dispatcher.drain()
    finally:
        dispatcher.stop()
    after = samples(server)

    delivered = ("eventgw_delivery_attempts_total", (("outcome", "delivered"),))
    assert after[delivered] == before.get(delivered, 0) + 1
    count = ("eventgw_delivery_seconds_count", ())
    assert after[count] == before.get(count, 0) + 1
    assert ("eventgw_delivery_seconds_bucket", (("le", "0.1"),)) in after
    assert ("eventgw_queue_depth", (("kind", "http"),)) not in after


def test_metrics_need_the_token(scraped: tuple[Runtime, ServerThread, NewAccount]) -> None:
    _, server, account = scraped
    refusals = [
        scrape(server),
        scrape(server, {"Authorization": "Bearer wrong-token"}),
        scrape(server, {"Authorization": f"Bearer {TOKEN}x"}),
        scrape(server, {"Authorization": f"Bearer {TOKEN[:-1]}"}),
        scrape(server, {"Authorization": f"Basic {TOKEN}"}),
        scrape(server, {"Authorization": f"Bearer {account.api_key}"}),
        scrape(server, auth=ACME),
    ]
    for response in refusals:
        assert response.status_code == 401 and response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "unauthorized" and "eventgw_" not in response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert scrape(server, {"Authorization": f"bearer  {TOKEN} "}).status_code == 200


def test_without_a_token_metrics_are_not_served(live_server: ServerThread, account: NewAccount) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        response = scrape(live_server, headers)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
        assert "metrics_token" in response.json()["message"]


@pytest.mark.parametrize(("header", "matches"), [
    (f"Bearer {TOKEN}", True), (f"BEARER {TOKEN}", True), (f"  Bearer   {TOKEN}  ", True),
    ("", False), ("Bearer", False), ("Bearer ", False), (TOKEN, False), (f"Token {TOKEN}", False),
    (f"Bearer {TOKEN.upper()}", False), (f"Bearer {TOKEN} {TOKEN}", False),
])
def test_token_matches(header: str, matches: bool) -> None:
    assert token_matches(header, TOKEN) is matches
