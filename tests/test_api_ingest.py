"""POST /api/v1/events, GET /api/v1/stats and /healthz, over real HTTP on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from gateway.accounts import NewAccount, create_account
from gateway.runtime import Runtime
from gateway.server import ServerThread
from gateway.store.models import Event, QueueItem
from tests.support.events import raw_event
from tests.support.runtime import PASSWORD, make_runtime

TIMEOUT = 30


def rows(runtime: Runtime) -> tuple[int, int]:
    """How many events and queue rows the whole store holds."""
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(Event)), session.scalar(
            select(func.count()).select_from(QueueItem))


def credentials(auth: Any) -> dict[str, Any]:
    """requests arguments for ``auth``: an (account, password) pair for Basic, a string for Bearer, or None."""
    if isinstance(auth, str):
        return {"auth": None, "headers": {"Authorization": f"Bearer {auth}"}}
    return {"auth": auth, "headers": {}}


def post(server: ServerThread, body: Any, auth: Any = ("acme", PASSWORD),
         headers: dict[str, str] | None = None) -> requests.Response:
    args = credentials(auth)
    args["headers"].update(headers or {})
    args["data" if isinstance(body, (bytes, str)) else "json"] = body
    return requests.post(f"{server.url}/api/v1/events", timeout=TIMEOUT, **args)


def get_stats(server: ServerThread, auth: Any = ("acme", PASSWORD)) -> requests.Response:
    return requests.get(f"{server.url}/api/v1/stats", timeout=TIMEOUT, **credentials(auth))


def stats(server: ServerThread, auth: Any = ("acme", PASSWORD)) -> dict[str, Any]:
    response = get_stats(server, auth)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def assert_json_error(response: requests.Response, status: int) -> dict[str, Any]:
    """The response is a JSON error with ``status``, and no stack trace."""
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert "Traceback" not in response.text
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    return body  # type: ignore[no-any-return]


def test_post_with_basic_auth(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    response = post(live_server, [raw_event("e1"), raw_event("e2", "click"), raw_event("e3", "hard")])
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0}
    assert rows(runtime) == (3, 3)


def test_post_with_an_api_key(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    response = post(live_server, [raw_event("e1")], auth=account.api_key)
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert rows(runtime) == (1, 1)


def test_post_ndjson(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    body = "\n".join(json.dumps(raw_event(f"e{i}")) for i in range(5)) + "\n"
    response = post(live_server, body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "duplicates": 0}
    assert rows(runtime) == (5, 5)


def test_resent_events_are_duplicates(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    assert post(live_server, [raw_event("e1"), raw_event("e2")]).json() == {"accepted": 2, "duplicates": 0}
    assert post(live_server, [raw_event("e2"), raw_event("e3"), raw_event("e3")], auth=account.api_key).json() == {
        "accepted": 1, "duplicates": 2}
    assert rows(runtime) == (3, 3)


def test_wrong_credentials_get_401_and_store_nothing(
    live_server: ServerThread, runtime: Runtime, account: NewAccount
) -> None:
    for auth in (None, ("acme", "wrong-password"), ("nobody", PASSWORD), ("", ""), "egw_not-a-key"):
        response = post(live_server, [raw_event("e1")], auth=auth)
        assert assert_json_error(response, 401)["error"] == "unauthorized", auth
        assert "Basic" in response.headers["WWW-Authenticate"]
        assert_json_error(get_stats(live_server, auth), 401)
    assert rows(runtime) == (0, 0)


def test_unsupported_authorization_scheme(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    response = post(live_server, [raw_event("e1")], auth=None, headers={"Authorization": f"Token {account.api_key}"})
    assert_json_error(response, 401)
    assert rows(runtime) == (0, 0)


def test_repeated_wrong_passwords_make_the_address_wait(
    live_server: ServerThread, runtime: Runtime, account: NewAccount
) -> None:
    for _ in range(runtime.settings.login_failure_limit):
        assert post(live_server, [raw_event("e1")], auth=("acme", "wrong-password")).status_code == 401
    response = post(live_server, [raw_event("e1")], auth=("acme", PASSWORD))
    assert "too many failed logins" in assert_json_error(response, 429)["message"]
    assert response.headers["Retry-After"] == "1"
    # The API key still works: the wait protects the password only.
    assert post(live_server, [raw_event("e1")], auth=account.api_key).status_code == 200


def test_invalid_events_get_400_naming_record_and_field(
    live_server: ServerThread, runtime: Runtime, account: NewAccount
) -> None:
    response = post(live_server, [raw_event("e0"), raw_event("e1", "nope"), raw_event("e2", "CLICK", url="ftp://x/y"),
                                  raw_event("e3", occurred_at="2026-11-24 10:15"), raw_event("e4", data="x")])
    body = assert_json_error(response, 400)
    assert body["error"] == "invalid"
    assert [(p["record"], p["field"]) for p in body["problems"]] == [
        (1, "type"), (2, "url"), (3, "occurred_at"), (4, "data")]
    assert all(p["message"] for p in body["problems"])
    assert rows(runtime) == (0, 0)


DEPTHS = (250, 254, 255, 256, 300, 512, 1000, 1023, 1024, 1025, 1100)


def test_deeply_nested_data_gets_400_naming_the_field_at_every_depth(
    live_server: ServerThread, runtime: Runtime, account: NewAccount
) -> None:
    for depth in DEPTHS:
        nested = "[" * (depth - 1) + "1" + "]" * (depth - 1)
        base = f'{{"id": "e{depth}", "type": "OPEN", "occurred_at": "2026-11-24T10:15:00Z", "email": "a@example.com"'
        for body, content_type in ((f'[{base}, "data": {{"x": {nested}}}}}]', "application/json"),
                                   (f'{base}, "extra": {nested}}}', "application/x-ndjson")):
            response = post(live_server, body, headers={"Content-Type": content_type})
            problem = assert_json_error(response, 400)["problems"][0]
            # Deeper than the parser reads, the body (or the JSON line) is refused; else the data.
            assert problem["field"] in ("data", "body") or problem["record"] == "line 1", (depth, problem)
            assert "deep" in problem["message"] or "depth" in problem["message"], (depth, problem)
    assert rows(runtime) == (0, 0)


def test_more_than_10000_events_get_413(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    events = [raw_event(f"e{i}") for i in range(10_001)]
    response = post(live_server, events)
    body = assert_json_error(response, 413)
    assert body["error"] == "too_large" and "10000" in body["message"]
    response = post(live_server, "\n".join(json.dumps(e) for e in events),
                    headers={"Content-Type": "application/x-ndjson"})
    assert_json_error(response, 413)
    assert rows(runtime) == (0, 0)


def test_10000_events_are_accepted(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    response = post(live_server, [raw_event(f"e{i}") for i in range(10_000)], auth=account.api_key)
    assert response.json() == {"accepted": 10_000, "duplicates": 0}
    assert rows(runtime) == (10_000, 10_000)


@pytest.mark.settings(max_body_bytes=2000)
def test_a_body_over_the_size_limit_gets_413(runtime: Runtime, account: NewAccount, live_server: ServerThread) -> None:
    server = live_server
    events = [raw_event(f"e{i}") for i in range(30)]
    assert len(json.dumps(events)) > 2000
    assert_json_error(post(server, events), 413)
    assert rows(runtime) == (0, 0)
    assert post(server, events[:5]).json() == {"accepted": 5, "duplicates": 0}


def test_stats_shape(live_server: ServerThread, account: NewAccount) -> None:
    post(live_server, [raw_event("e1"), raw_event("e2"), raw_event("e3", "CLICK"), raw_event("e4", "unsubscribe")])
    figures = stats(live_server)
    assert figures["events"] == {"CLICK": 1, "OPEN": 2, "OPTOUT": 1}
    assert figures["total"] == 4
    pull = figures["pending"][str(account.pull_destination_id)]
    assert (pull["kind"], pull["pending"], pull["active"]) == ("pull", 4, True)
    assert pull["oldest_age_seconds"] >= 0
    by_key = stats(live_server, account.api_key)
    assert (by_key["events"], by_key["total"]) == (figures["events"], 4)
    assert by_key["pending"][str(account.pull_destination_id)]["pending"] == 4


def test_stats_of_an_empty_account(live_server: ServerThread, account: NewAccount) -> None:
    figures = stats(live_server)
    assert figures["events"] == {} and figures["total"] == 0
    assert figures["pending"][str(account.pull_destination_id)]["pending"] == 0
    assert figures["pending"][str(account.pull_destination_id)]["oldest_age_seconds"] is None


def test_an_account_never_sees_another_accounts_events(
    live_server: ServerThread, account: NewAccount, other_account: NewAccount
) -> None:
    assert post(live_server, [raw_event("e1"), raw_event("e2", "CLICK")]).json() == {"accepted": 2, "duplicates": 0}
    other = stats(live_server, ("globex", PASSWORD))
    assert other["events"] == {} and other["total"] == 0
    assert list(other["pending"]) == [str(other_account.pull_destination_id)]
    assert other["pending"][str(other_account.pull_destination_id)]["pending"] == 0
    # The same producer ids are new for the other account, and acme's figures do not move.
    assert post(live_server, [raw_event("e1")], auth=other_account.api_key).json() == {"accepted": 1, "duplicates": 0}
    assert stats(live_server, other_account.api_key)["events"] == {"OPEN": 1}
    assert stats(live_server, account.api_key)["events"] == {"CLICK": 1, "OPEN": 1}


GARBAGE = [
    b"\xff\xfe\x00\x01garbage", b"not json at all", b"[1, 2", b'{"id": ', b"42", b'"text"', b"null",
    b'{"events": []}', b"[[]]", b"\x00\x00\x00", b"[" * 5000, b"", b" \n ",
    b'[{"id": "e1", "type": "OPEN", "occurred_at": 1e400, "email": "a@example.com"}]',
    b'[{"id": "e1", "type": "OPEN", "occurred_at": "9999-12-31T23:59:59-01:00", "email": "a@example.com"}]',
    b'[{"id": "e1\\u0000", "type": "OPEN", "occurred_at": 1795515300, "email": "a@example.com"}]',
    b'[{"id": "e1", "type": "OPEN", "occurred_at": 1795515300, "email": "a@example.com", "x": NaN}]',
]


def test_garbage_gets_a_400_json_answer(live_server: ServerThread, runtime: Runtime, account: NewAccount) -> None:
    for body in GARBAGE:
        response = post(live_server, body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body[:80], response.text[:300])
        assert assert_json_error(response, 400)["problems"]
    assert rows(runtime) == (0, 0)


def test_unknown_paths_and_methods_answer_json(live_server: ServerThread) -> None:
    assert assert_json_error(requests.get(f"{live_server.url}/nowhere", timeout=TIMEOUT), 404)["error"] == "not_found"
    response = requests.get(f"{live_server.url}/api/v1/events", timeout=TIMEOUT)
    assert_json_error(response, 405)


def test_healthz(live_server: ServerThread) -> None:
    response = requests.get(f"{live_server.url}/healthz", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_two_servers_never_mix_up_accounts(
    live_server: ServerThread, other_account: NewAccount, tmp_path: Path
) -> None:
    # Here globex is the first account; on the second server it is the second, after acme.
    assert post(live_server, [raw_event("e1")], auth=("globex", PASSWORD)).json() == {"accepted": 1, "duplicates": 0}
    second_runtime = make_runtime(f"sqlite:///{tmp_path / 'second.db'}", tmp_path)
    with second_runtime.sessions.begin() as session:
        create_account(session, "acme", PASSWORD)
        create_account(session, "globex", PASSWORD)
    second = ServerThread(second_runtime)
    try:
        assert post(second, [raw_event("e1")], auth=("globex", PASSWORD)).json() == {"accepted": 1, "duplicates": 0}
        assert stats(second, ("globex", PASSWORD))["events"] == {"OPEN": 1}
        assert stats(second, ("acme", PASSWORD))["events"] == {}
    finally:
        second.close()
        second_runtime.close()
