"""No 5xx for any input: short echoes of bad values, JSON 413 for oversize bodies, gzip within bounds, 415 for
other encodings, 404 for out-of-range ids, and a budget of large bodies in flight; on SQLite and PostgreSQL."""
from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.accounts import NewAccount, create_account
from gateway.api.body import BodyBudget
from gateway.errors import ECHO_CHARS, Problem, ValidationError, shorten
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.events import raw_event
from tests.support.runtime import PASSWORD, make_runtime

TIMEOUT = 60
ACME = ("acme", PASSWORD)
MiB = 2**20


def events_count(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM events").scalar_one())


def json_error(response: requests.Response, status: int) -> dict[str, Any]:
    """The response is a JSON error with ``status``; its body."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == "application/json", response.text[:500]
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    return body  # type: ignore[no-any-return]


def post(server: ServerThread, body: bytes | Iterable[bytes], path: str = "/api/v1/events",
         **headers: str) -> requests.Response:
    return requests.post(server.url + path, data=body, auth=ACME, timeout=TIMEOUT,
                         headers={"Content-Type": "application/json", **headers})


# -- echoed values --------------------------------------------------------------------------------

def test_shorten_cuts_quoted_values_and_keeps_the_explanation() -> None:
    value = "a" * 1_000_000
    cut = shorten(f"unknown event type {value!r}; expected one of OPEN, CLICK")
    assert cut == f"unknown event type '{'a' * ECHO_CHARS}...'; expected one of OPEN, CLICK"
    assert shorten(f"{'it' + chr(39) + 's' + 'b' * 100!r} is bad").endswith('..." is bad')
    assert shorten("'short' is kept") == "'short' is kept"
    assert len(shorten("x" * 100_000)) <= 1000
    problem = Problem("line 1", "k" * 10_000, f"{value!r} is bad")
    assert len(str(problem)) < 300 and problem.message.endswith("...' is bad")


def test_thirty_bad_values_of_a_megabyte_give_a_small_answer_naming_each_field(
    live_server: ServerThread, account: NewAccount, runtime: Runtime
) -> None:
    big = "x" * 1_000_000
    fields = ["type", "occurred_at", "email", "delivered_at", "phone"]
    events = [raw_event(f"e{i}", **{fields[i % len(fields)]: big}) for i in range(29)]
    events.append({**raw_event("e29"), big: 1})  # an unknown key as long
    response = post(live_server, json.dumps(events).encode())
    body = json_error(response, 400)
    assert len(response.content) < 40_000
    named = [(p["record"], p["field"]) for p in body["problems"]]
    assert named == [(i, fields[i % len(fields)]) for i in range(29)] + [(29, "data")]
    assert all(len(p["message"]) < 300 for p in body["problems"])
    assert any("'xxxxxxxx" in p["message"] and "...'" in p["message"] for p in body["problems"])
    assert events_count(runtime) == 0


def test_a_long_unknown_batch_id_is_echoed_short(live_server: ServerThread, account: NewAccount) -> None:
    response = requests.get(f"{live_server.url}/api/v1/batches/{'b' * 100_000}", auth=ACME, timeout=TIMEOUT)
    assert response.status_code in (400, 404) and len(response.content) < 1000


# -- oversize bodies ------------------------------------------------------------------------------

@pytest.mark.settings(max_body_bytes=MiB)
def test_an_oversize_body_gets_a_json_413_naming_the_limit(
    runtime: Runtime, account: NewAccount, live_server: ServerThread
) -> None:
    server = live_server
    body = json.dumps([raw_event(f"e{i}", data={"pad": "p" * 200}) for i in range(6000)]).encode()
    assert len(body) > MiB
    for response in (post(server, body), post(server, iter([body[:MiB // 2], body[MiB // 2:]]))):  # length, chunked
        problem = json_error(response, 413)
        assert problem["error"] == "too_large" and problem["problems"][0]["field"] == "body"
        assert str(MiB) in problem["message"] and "max_body_bytes" in problem["message"]
    assert json_error(post(server, body, "/api/v1/webhooks"), 413)["error"] == "too_large"
    for path in ("/soap/events", "/paint", "/_bus/request.soap"):  # the SOAP endpoints answer a SOAP Fault
        fault = post(server, body, path, **{"Content-Type": "text/xml"})
        assert (fault.status_code, fault.headers["Content-Type"]) == (500, "text/xml; charset=utf-8")
        assert b"SOAP-ENV:Client" in fault.content and b"max_body_bytes" in fault.content
    assert events_count(runtime) == 0
    assert post(server, json.dumps([raw_event("small")]).encode()).json() == {"accepted": 1, "duplicates": 0}


def raw_exchange(server: ServerThread, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` as is over a socket; the answer's status line, headers and body."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}, body


@pytest.mark.settings(max_body_bytes=MiB)
def test_requests_the_server_refuses_itself_get_json(
    runtime: Runtime, account: NewAccount, live_server: ServerThread
) -> None:
    server = live_server
    for request in (b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                    b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"):
        status, headers, body = raw_exchange(server, request)
        assert status.split()[1] in ("400", "413"), status
        assert headers["content-type"] == "application/json"
        assert isinstance(json.loads(body)["message"], str)


# -- content encodings ----------------------------------------------------------------------------

@pytest.mark.settings(max_body_bytes=MiB)
def test_gzip_bodies_are_taken_within_the_limit(
    runtime: Runtime, account: NewAccount, live_server: ServerThread
) -> None:
    server = live_server
    events = [raw_event(f"e{i}") for i in range(100)]
    body = gzip.compress(json.dumps(events).encode())
    response = post(server, body, **{"Content-Encoding": "gzip"})
    assert (response.status_code, response.json()) == (200, {"accepted": 100, "duplicates": 0})
    two_members = gzip.compress(b"[" + json.dumps(raw_event("m1")).encode() + b",") + gzip.compress(
        json.dumps(raw_event("m2")).encode() + b"]")
    assert post(server, two_members, **{"Content-Encoding": "GZIP"}).json() == {"accepted": 2, "duplicates": 0}

    # A zip bomb: 200 KB that would inflate to 200 MB is refused once past the limit.
    bomb = gzip.compress(b"[" + b" " * (200 * 10**6) + b"]", compresslevel=9)
    assert len(bomb) < 300_000
    problem = json_error(post(server, bomb, **{"Content-Encoding": "gzip"}), 413)
    assert problem["error"] == "too_large" and str(MiB) in problem["message"]

    truncated = json_error(post(server, body[:-20], **{"Content-Encoding": "gzip"}), 400)
    assert truncated["problems"][0]["field"] == "body" and "gzip" in truncated["message"]
    assert json_error(post(server, b"plain text", **{"Content-Encoding": "gzip"}), 400)["problems"][0][
        "field"] == "body"
    assert events_count(runtime) == 102


@pytest.mark.settings(max_body_bytes=MiB)
def test_other_encodings_get_a_415_naming_the_supported_ones(
    runtime: Runtime, account: NewAccount, live_server: ServerThread
) -> None:
    server = live_server
    for encoding in ("br", "deflate", "zstd", "gzip, br"):
        problem = json_error(post(server, b"[]", **{"Content-Encoding": encoding}), 415)
        assert problem["error"] == "unsupported_media_type"
        assert problem["problems"][0]["field"] == "Content-Encoding" and "gzip" in problem["message"]
    assert events_count(runtime) == 0


@pytest.mark.settings(max_body_bytes=MiB)
def test_a_gzip_body_without_its_header_gets_a_hint(
    runtime: Runtime, account: NewAccount, live_server: ServerThread
) -> None:
    server = live_server
    problem = json_error(post(server, gzip.compress(json.dumps([raw_event("e1")]).encode())), 400)
    assert "not UTF-8" in problem["message"] and "Content-Encoding: gzip" in problem["message"]


@pytest.mark.settings(max_body_bytes=MiB)
def test_management_bodies_may_be_gzip_too(runtime: Runtime, account: NewAccount, live_server: ServerThread) -> None:
    server = live_server
    body = gzip.compress(json.dumps({"email": "ops@example.com"}).encode())
    response = requests.put(server.url + "/api/v1/notifications/email", data=body, auth=ACME, timeout=TIMEOUT,
                            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert (response.status_code, response.json()) == (200, {"email": "ops@example.com"})


# -- ids in paths ---------------------------------------------------------------------------------

OUT_OF_RANGE = ["2147483648", "9223372036854775808", "1" + "0" * 40, "9" * 5000, "-1", "0", "-2147483649", "00"]


def test_out_of_range_ids_are_not_found(live_server: ServerThread, account: NewAccount) -> None:
    for kind in ("webhooks", "destinations"):
        for ident in OUT_OF_RANGE:
            base = f"{live_server.url}/api/v1/{kind}/{ident}"
            for method, url in [("GET", base), ("PUT", base), ("DELETE", base), ("POST", base + "/activate"),
                                ("GET", base + "/attempts"), ("POST", base + ("/verify" if kind == "webhooks"
                                                                            else "/test"))]:
                response = requests.request(method, url, auth=ACME, json={}, timeout=TIMEOUT)
                assert json_error(response, 404)["error"] == "not_found", (method, url)
    assert json_error(requests.get(f"{live_server.url}/api/v1/webhooks/2147483647", auth=ACME, timeout=TIMEOUT),
                      404)["error"] == "not_found"


# -- no 5xx for any input -------------------------------------------------------------------------

def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": [value]}
    return value


BAD_BODIES: list[bytes] = [
    b"", b" ", b"null", b"[]", b"{}", b"[[]]", b"[null]", b"42", b'"text"', b"{", b"\xff\xfe", b"\x00" * 10,
    json.dumps({"url": 10**30, "events": 10**30}).encode(), json.dumps({"url": 1.5e308, "events": [1e400]}).encode(),
    json.dumps({"url": ["x"], "events": {"OPEN": True}, "format": 7, "app": [], "secret": 3}).encode(),
    json.dumps({"destinations": [10**30, -1, 2**31, "x", None, 1.5]}).encode(),
    json.dumps({"destinations": [deep(30)]}).encode(), json.dumps({"url": deep(100)}).encode(),
    b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"kind": "ftp", "settings": {"host": deep(50), "port": 10**30}}).encode(),
    json.dumps({"kind": "sftp", "name": "x" * 10_000, "settings": []}).encode(),
    json.dumps({"email": ["x"], "password": 10**30, "current_password": None, "new_password": {}}).encode(),
    json.dumps({"url": "https://example.com/h", "events": ["OPEN"], "timeout_seconds": 1e308,
                "interval_seconds": -1e308, "batch_max_events": 10**30, "batch_max_bytes": -(10**30),
                "batch_max_wait_seconds": 1e308,
                "rate_limit": 1e308, "headers": {"X": 10**30}, "secret": "x" * 100_000}).encode(),
    json.dumps({"kind": "email", "name": "n", "settings": {"to": ["a@example.com"] * 10_000,
                "batch_max_events": 1e308, "interval_seconds": 10**30}, "events": ["OPEN"] * 10_000}).encode(),
    json.dumps({"kind": "sftp", "name": "n", "settings": {"host": "example.com", "port": 1e308, "path": "/" * 10_000,
                "username": "u", "password": "p", "period_seconds": 10**30}}).encode(),
    json.dumps({"destinations": [1e308, 0.5, True, [], {}]}).encode(),
    json.dumps({"url": "https://example.com/\u0000", "events": ["OPEN\u0000"], "app": "\u0000", "name": "\u0000",
                "secret": "\u0000", "email": "a\u0000@example.com", "kind": "ftp\u0000",
                "settings": {"host": "\u0000", "\u0000": 1}, "destinations": ["\u0000"]}).encode(),
    json.dumps([raw_event("n1", data={"k": "\u0000", "\u0000": "v"}), raw_event("n2", extra="\u0000"),
                raw_event("n3\u0000"), raw_event("n4", message_name="\u0000")]).encode(),
    json.dumps([raw_event("e1", occurred_at=10**30), raw_event("e2", occurred_at=-10**30),
                raw_event("e3", occurred_at=1e400), raw_event("e4", id=10**30), raw_event("e5", data=deep(40))]
               ).encode(),
]
BAD_QUERIES = [
    "limit=99999999999999999999999", "limit=-1", "limit=%C2%B2", "limit=1e3", "max=99999999999999999999",
    "max=-5", "max=%00", "types=" + "X" * 10_000, "types=OPEN,,", "mode=%00", "since=99999999999999999999",
    "since=-99999999999999999999&until=99999999999999999999", "since=0000-00-00&until=9999-99-99",
    "app=%00", "event=%00", "%00=1", "app=" + "A" * 10_000, "event=" + "E" * 10_000, "verify=maybe", "replay=%FF",
]


def test_no_input_gets_a_5xx(live_server: ServerThread, account: NewAccount) -> None:
    hook = requests.post(live_server.url + "/api/v1/webhooks", auth=ACME, timeout=TIMEOUT,
                         json={"url": "https://example.com/hook", "events": ["OPEN"]})
    assert hook.status_code == 201, hook.text
    base = f"/api/v1/webhooks/{hook.json()['id']}"
    dest = f"/api/v1/destinations/{account.pull_destination_id}"
    writes = [("POST", "/api/v1/events"), ("POST", "/api/v1/webhooks"), ("PUT", base), ("POST", base + "/replay"),
              ("POST", base + "/activate"), ("POST", "/api/v1/destinations"), ("PUT", dest),
              ("PUT", "/api/v1/routes/OPEN"), ("PUT", "/api/v1/routes/NOT_A_TYPE"),
              ("PUT", "/api/v1/notifications/email"),
              ("PUT", "/api/v1/account/password"), ("POST", "/api/v1/batches/nothing/ack"),
              ("POST", "/api/v1/batches/%00/ack"), ("PUT", "/api/v1/routes/%00"), ("POST", "/api/v1/batches/%FF/ack")]
    reads = ["/api/v1/batches", "/api/v1/batches/%00", "/api/v1/batches/" + "b" * 5000, "/api/v1/webhooks",
             base + "/attempts", dest + "/attempts", "/api/v1/stats",
             "/api/v1/routes", "/api/v1/notifications", base + "/replay"]
    failures: dict[tuple[str, str, int], str] = {}
    with requests.Session() as http:
        http.auth = ACME
        for method, path in writes:
            for body in BAD_BODIES:
                for content_type in ("application/json", "application/x-ndjson"):
                    response = http.request(method, live_server.url + path, data=body, timeout=TIMEOUT,
                                            headers={"Content-Type": content_type})
                    if response.status_code >= 500 or "Traceback" in response.text:
                        failures[(method, path, response.status_code)] = repr(body[:60])
        for path in reads:
            for query in BAD_QUERIES:
                for method in ("GET", "POST"):
                    response = http.request(method, f"{live_server.url}{path}?{query}", timeout=TIMEOUT)
                    if response.status_code >= 500 or "Traceback" in response.text:
                        failures[(method, path, response.status_code)] = query[:60]
    assert not failures, "\n".join(f"{where}: {what}" for where, what in failures.items())


# -- memory: large bodies in flight ---------------------------------------------------------------

class Holding:
    """A WSGI application that holds each request until released, counting those inside it at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.release.wait(10)
        with self.lock:
            self.inside -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def call_budget(budget: BodyBudget, size: int, statuses: list[str], encoding: str = "") -> None:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status if status[:3] != "503" else f"503 retry {dict(headers)['Retry-After']}")
    budget({"CONTENT_LENGTH": str(size), "HTTP_CONTENT_ENCODING": encoding}, start_response)


def test_large_bodies_wait_for_room_in_the_budget() -> None:
    app = Holding()
    budget = BodyBudget(app, budget=5 * MiB, limit=8 * MiB, wait=10)
    statuses: list[str] = []
    threads = [threading.Thread(target=call_budget, args=(budget, size, statuses))
               for size in (2 * MiB, 2 * MiB, 2 * MiB, 1000, 1000)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    assert app.inside == 4  # two large ones and the two small ones; the third large one waits
    app.release.set()
    for thread in threads:
        thread.join()
    assert statuses == ["200 OK"] * 5 and budget.in_flight == 0

    app = Holding()
    budget = BodyBudget(app, budget=5 * MiB, limit=8 * MiB, wait=0.3)
    statuses = []
    alone = threading.Thread(target=call_budget, args=(budget, 30 * MiB, statuses))  # larger than the budget
    alone.start()
    time.sleep(0.2)
    assert app.inside == 1
    call_budget(budget, 2 * MiB, statuses)
    call_budget(budget, 300_000, statuses, encoding="gzip")  # counts as the 3 MB it may inflate to
    assert statuses == ["503 retry 5", "503 retry 5"]
    app.release.set()
    alone.join()
    assert statuses[-1] == "200 OK" and budget.in_flight == 0


def test_concurrent_large_ingests_all_succeed_within_the_budget(store_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(store_url, tmp_path, body_budget_bytes=3 * MiB)
    with runtime.sessions.begin() as session:
        create_account(session, "acme", PASSWORD)
    server = ServerThread(runtime)
    try:
        bodies = [json.dumps([raw_event(f"r{n}-{i}", data={"pad": "p" * 1000}) for i in range(2000)]).encode()
                  for n in range(4)]
        assert all(2 * MiB < len(body) < 3 * MiB for body in bodies)
        answers: list[Any] = []
        threads = [threading.Thread(target=lambda b=body: answers.append(post(server, b).json())) for body in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [{"accepted": 2000, "duplicates": 0}] * 4
        assert events_count(runtime) == 8000
    finally:
        server.close()
        runtime.close()


def test_validation_error_messages_stay_short() -> None:
    error = ValidationError([Problem(i, "type", f"{'v' * 100_000!r} is bad") for i in range(100)])
    assert len(str(error)) < 1000
