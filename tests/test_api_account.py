"""The calling account over REST (gateway/api/account.py): who it is, its password, its API key; real HTTP,
SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

import requests

from gateway.accounts import NewAccount
from gateway.server import ServerThread
from tests.support.runtime import PASSWORD

TIMEOUT = 30
NEW_PASSWORD = "n3w-Secret"


def call(server: ServerThread, method: str, path: str, auth: tuple[str, str] | str | None = ("acme", PASSWORD),
         body: Any = None) -> requests.Response:
    """A request to /api/v1/account...; ``auth`` is (name, password) for Basic, an API key for Bearer, or None."""
    headers = {"Authorization": f"Bearer {auth}"} if isinstance(auth, str) else {}
    return requests.request(method, f"{server.url}/api/v1/account{path}", json=body, timeout=TIMEOUT,
                            auth=auth if isinstance(auth, tuple) else None, headers=headers)


def error(response: requests.Response, status: int) -> dict[str, Any]:
    """The response is a JSON error with ``status``, as the rest of the API answers them; its body."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "message"} and "Traceback" not in response.text
    return body


def problems(response: requests.Response) -> list[tuple[str, str]]:
    """The fields and messages of a 400 answer."""
    return [(p["field"], p["message"]) for p in error(response, 400)["problems"]]


def test_the_account_shows_itself(live_server: ServerThread, account: NewAccount, other_account: NewAccount) -> None:
    for auth in (("acme", PASSWORD), account.api_key):
        shown = call(live_server, "GET", "", auth)
        assert shown.status_code == 200
        assert shown.json() == {"id": account.id, "name": "acme", "created_at": shown.json()["created_at"],
                                "api_keys": [{"prefix": account.api_key[:10],
                                              "created_at": shown.json()["api_keys"][0]["created_at"]}]}
    assert error(call(live_server, "GET", "", None), 401)["error"] == "unauthorized"
    assert call(live_server, "GET", "", other_account.api_key).json()["name"] == "globex"


def test_changing_the_password(live_server: ServerThread, account: NewAccount) -> None:
    assert call(live_server, "GET", "").status_code == 200  # the password is now remembered by the server

    changed = call(live_server, "PUT", "/password", body={"current_password": PASSWORD, "password": NEW_PASSWORD})

    assert changed.status_code == 200 and changed.json()["name"] == "acme"
    assert error(call(live_server, "GET", ""), 401)["message"] == "wrong account name or password"
    assert call(live_server, "GET", "", ("acme", NEW_PASSWORD)).status_code == 200
    assert call(live_server, "GET", "", account.api_key).status_code == 200  # the key is not the password


def test_a_password_change_is_checked(live_server: ServerThread, account: NewAccount) -> None:
    def change(body: Any) -> requests.Response:
        return call(live_server, "PUT", "/password", body=body)

    assert problems(change({"password": NEW_PASSWORD})) == [("current_password", "is required, as a string")]
    assert problems(change({"current_password": PASSWORD, "password": 123456})) == [
        ("password", "is required, as a string")]
    assert problems(change({"current_password": PASSWORD, "password": "short"})) == [
        ("password", "must be at least 6 characters")]
    assert problems(change(["not", "an", "object"])) == [("body", "must be a JSON object")]
    wrong = {"current_password": "wrong", "password": NEW_PASSWORD}
    assert problems(call(live_server, "PUT", "/password", account.api_key, wrong)) == [
        ("current_password", "is not the account's password")]
    # Guessing the current password with a stolen API key makes the address wait, as guessing logins does.
    for _ in range(4):
        call(live_server, "PUT", "/password", account.api_key, wrong)
    waits = call(live_server, "PUT", "/password", account.api_key, {"current_password": PASSWORD,
                                                                   "password": NEW_PASSWORD})
    assert error(waits, 429) == {"error": "too_many_attempts", "retry_after": 1,
                                 "message": "too many failed logins from this address; try again in 1 s"}
    assert waits.headers["Retry-After"] == "1"
    assert error(call(live_server, "PUT", "/password", None, wrong), 401)["error"] == "unauthorized"
    assert error(call(live_server, "GET", "/password"), 405)["error"] == "method_not_allowed"


def test_rotating_the_api_key(live_server: ServerThread, account: NewAccount, other_account: NewAccount) -> None:
    rotated = call(live_server, "POST", "/api-key", account.api_key)

    assert rotated.status_code == 201
    new_key = rotated.json()["api_key"]
    assert new_key.startswith("egw_") and new_key != account.api_key
    assert rotated.json()["api_keys"] == [{"prefix": new_key[:10], "created_at": rotated.json()["api_keys"][0]
                                           ["created_at"]}]
    assert error(call(live_server, "GET", "", account.api_key), 401)["message"] == "unknown API key"
    assert call(live_server, "GET", "", new_key).json()["name"] == "acme"
    assert call(live_server, "GET", "", other_account.api_key).status_code == 200
    assert call(live_server, "POST", "/api-key").status_code == 201  # with the password, too
    assert error(call(live_server, "POST", "/api-key", None), 401)["error"] == "unauthorized"
