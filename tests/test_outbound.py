"""The outbound address policy (sinks/outbound.py): the addresses it refuses, the allow-list, connecting to
exactly the checked address, and its refusals at create, verify/test and delivery time on both databases.

Host names are resolved by a stub of ``socket.getaddrinfo`` installed by each test that needs one; the
suite's network guard fails any test that would connect beyond loopback.
"""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.accounts import NewAccount, create_account
from gateway.config import load_settings
from gateway.delivery.engine import Dispatcher
from gateway.destinations import management as admin
from gateway.destinations import webhooks
from gateway.errors import ConfigError
from gateway.events import model
from gateway.runtime import Runtime
from gateway.server import ServerThread
from sinks.ftp import FileTarget, uploader_for
from sinks.http import HttpSink
from sinks.outbound import AddressNotAllowed, OutboundPolicy
from tests.support.events import raw_event
from tests.support.http_receiver import Receiver
from tests.support.runtime import LOOPBACK_NETWORKS, PASSWORD, make_runtime

REFUSAL = "address not allowed by outbound policy"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
STRICT = OutboundPolicy()
LOOPBACK = OutboundPolicy.parse(LOOPBACK_NETWORKS)
# Every spelling of an address the issue names, and what a stubbed host name resolves to.
HOSTILE_URLS = [
    "http://127.0.0.1:{port}/hook", "http://127.1:{port}/hook", "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook", "http://10.0.0.1:{port}/hook", "http://169.254.169.254:{port}/latest",
    "http://loopback.test:{port}/hook", "http://metadata.test:{port}/hook",
]
STUB_NAMES = {"loopback.test": ["127.0.0.1"], "metadata.test": ["203.0.113.50", "169.254.169.254"],
              "public.test": ["93.184.215.14"], "v6private.test": ["fd00::1"]}

_real_getaddrinfo = socket.getaddrinfo


def _stub_getaddrinfo(names: dict[str, list[str]]) -> Callable[..., Any]:
    """A getaddrinfo that answers ``names`` from the table and everything else as the system does."""
    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        if host not in names:
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        answers = []
        for address in names[host]:
            if ":" in address:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0))))
        return answers
    return getaddrinfo


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A stub resolver: the names in the returned table (STUB_NAMES to begin with) resolve as it says."""
    names = {name: list(addresses) for name, addresses in STUB_NAMES.items()}
    monkeypatch.setattr(socket, "getaddrinfo", _stub_getaddrinfo(names))
    return names


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "::1", "::ffff:127.0.0.1", "::127.0.0.1",
    "0.0.0.0", "::", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "fe80::1",
    "fc00::1", "fd12:3456::1", "224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "2001:db8::1", "64:ff9b::a00:1", "2002:a00:1::1", "::ffff:10.0.0.1", "100::1",
])
def test_loopback_private_link_local_and_reserved_addresses_are_refused(host: str) -> None:
    with pytest.raises(AddressNotAllowed, match=REFUSAL):
        STRICT.check(host, 80)


@pytest.mark.parametrize("host", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                  "64:ff9b::808:808", "public.test", "unresolvable.invalid"])
def test_public_addresses_and_unresolvable_names_pass_the_check(host: str, resolver: dict[str, list[str]]) -> None:
    STRICT.check(host, 443)


def test_a_name_is_refused_if_any_address_it_resolves_to_is(resolver: dict[str, list[str]]) -> None:
    for name in ("loopback.test", "metadata.test", "v6private.test"):
        with pytest.raises(AddressNotAllowed, match=f"{REFUSAL}: {name}$"):
            STRICT.check(name, 80)


def test_the_allow_list_opens_its_networks_and_no_others() -> None:
    policy = OutboundPolicy.parse(" 10.0.0.0/8, 127.0.0.1/32 ,fd00::/8,")
    for host in ("10.1.2.3", "127.0.0.1", "::ffff:127.0.0.1", "fd00::5", "8.8.8.8"):
        policy.check(host, 80)
    for host in ("127.0.0.2", "192.168.1.1", "169.254.169.254", "::1"):
        with pytest.raises(AddressNotAllowed):
            policy.check(host, 80)


@pytest.mark.parametrize("value", ["10.0.0.0/33", "nonsense", "10.0.0.0/8 192.168.0.0/16", "fe80::/129"])
def test_a_bad_allow_list_entry_is_a_config_error_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match="outbound_allow_networks: .* is not a network in CIDR notation "
                                          r".*\(from EVENTGW_OUTBOUND_ALLOW_NETWORKS\)"):
        load_settings(environ={"EVENTGW_OUTBOUND_ALLOW_NETWORKS": value})
    assert load_settings(environ={"EVENTGW_OUTBOUND_ALLOW_NETWORKS": "10.0.0.0/8,fd00::/8"})


def test_the_sink_connects_to_exactly_the_address_it_checked(http_receiver: Receiver,
                                                             resolver: dict[str, list[str]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the name resolves to the receiver once, then to a private address. A second
    # lookup by the connection would reach 10.0.0.1, which the network guard would fail.
    lookups: list[str] = []
    stub = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        answer = stub(host, *args, **kwargs)
        if host == "rebind.test":
            lookups.append(host)
            resolver["rebind.test"] = ["10.0.0.1"]
        return answer

    resolver["rebind.test"] = ["127.0.0.1"]
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = http_receiver.url.split(":")[2].split("/")[0]
    sink = HttpSink(f"http://rebind.test:{port}/hook", policy=LOOPBACK)
    assert sink.deliver("msg-1", model.validate_all([raw_event("e1")])).status == 200
    assert lookups == ["rebind.test"]
    assert http_receiver.requests[0].headers["Host"] == f"rebind.test:{port}"
    sink.close()
    # The next connection resolves again, and is refused without connecting.
    fresh = HttpSink(f"http://rebind.test:{port}/hook", policy=LOOPBACK)
    with pytest.raises(AddressNotAllowed, match=f"{REFUSAL}: rebind.test"):
        fresh.deliver("msg-2", model.validate_all([raw_event("e2")]))
    assert len(http_receiver.requests) == 1


@pytest.mark.parametrize("protocol", ["ftp", "ftps", "sftp"])
def test_file_uploads_refuse_private_hosts_without_connecting(protocol: str, tmp_path: Path,
                                                             resolver: dict[str, list[str]]) -> None:
    data = tmp_path / "events.csv"
    data.write_text("x\n")
    for host in ("127.0.0.1", "10.0.0.1", "metadata.test"):
        target = FileTarget(protocol=protocol, host=host, username="u", password="p")
        with pytest.raises(AddressNotAllowed, match=f"{REFUSAL}: {host}"):
            uploader_for(target).upload(data, "events.csv")


# Over the API, with a gateway whose policy is the default one (loopback refused).

@pytest.fixture
def strict_runtime(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(store_url, tmp_path, outbound_allow_networks="")
    yield rt
    rt.close()


@pytest.fixture
def strict_server(strict_runtime: Runtime) -> Iterator[ServerThread]:
    server = ServerThread(strict_runtime)
    yield server
    server.close()


@pytest.fixture
def strict_account(strict_runtime: Runtime) -> NewAccount:
    with strict_runtime.sessions.begin() as session:
        return create_account(session, "acme", PASSWORD)


def _call(server: ServerThread, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + path, auth=("acme", PASSWORD), timeout=30, **kwargs)


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_creating_a_webhook_to_a_refused_address_is_a_400_naming_the_url(
        url: str, strict_server: ServerThread, strict_account: NewAccount, http_receiver: Receiver,
        resolver: dict[str, list[str]]) -> None:
    port = http_receiver.url.split(":")[2].split("/")[0]
    for verify in (False, True):
        answer = _call(strict_server, "POST", "/api/v1/webhooks",
                       json={"url": url.format(port=port), "events": ["OPEN"], "verify": verify})
        assert answer.status_code == 400, answer.text
        (problem,) = answer.json()["problems"]
        assert problem["field"] == "url" and REFUSAL in problem["message"]
    assert _call(strict_server, "GET", "/api/v1/webhooks").json()["webhooks"] == []
    assert http_receiver.requests == []


@pytest.mark.parametrize(("kind", "host"), [("ftp", "127.0.0.1"), ("ftp", "10.0.0.1"), ("sftp", "169.254.169.254"),
                                            ("sftp", "loopback.test")])
def test_creating_a_file_destination_on_a_refused_host_is_a_400_naming_the_host(
        kind: str, host: str, strict_server: ServerThread, strict_account: NewAccount,
        resolver: dict[str, list[str]]) -> None:
    payload: dict[str, Any] = {"kind": kind, "host": host, "username": "u", "password": "p", "events": ["OPEN"]}
    if kind == "sftp":
        payload["known_hosts"] = f"{host} {HOST_KEY}"
    answer = _call(strict_server, "POST", "/api/v1/destinations", json=payload)
    assert answer.status_code == 400, answer.text
    (problem,) = answer.json()["problems"]
    assert problem["field"] == "host" and REFUSAL in problem["message"]


def test_verify_and_delivery_refuse_a_stored_webhook_without_connecting(
        strict_runtime: Runtime, strict_server: ServerThread, strict_account: NewAccount, http_receiver: Receiver,
        resolver: dict[str, list[str]]) -> None:
    # Stored before the policy could see it (as a webhook made before an upgrade, or a name that resolved
    # elsewhere then): the policy still holds at verify and at each delivery.
    port = http_receiver.url.split(":")[2].split("/")[0]
    with strict_runtime.sessions.begin() as session:
        hooks = [webhooks.create(session, strict_account.id, {"url": url, "events": ["OPEN"]}).id
                 for url in (http_receiver.url, f"http://loopback.test:{port}/hook")]
    for hook in hooks:
        verified = _call(strict_server, "POST", f"/api/v1/webhooks/{hook}/verify").json()
        assert verified["ok"] is False and verified["error"].startswith(REFUSAL)

    assert _call(strict_server, "POST", "/api/v1/events", json=[raw_event("e1")]).status_code == 200
    dispatcher = Dispatcher(strict_runtime)
    try:
        dispatcher.run_once()
    finally:
        dispatcher.stop()
    for hook in hooks:
        # A refusal is not retried: the webhook is deactivated at once, its events kept.
        log = _call(strict_server, "GET", f"/api/v1/webhooks/{hook}/attempts").json()["attempts"]
        assert [a["outcome"] for a in log] == ["deactivated", "failed"]
        assert log[1]["detail"].startswith(REFUSAL)
    assert http_receiver.requests == []


def test_changing_a_webhook_to_a_refused_address_is_a_400_and_changes_nothing(
        strict_runtime: Runtime, strict_server: ServerThread, strict_account: NewAccount,
        resolver: dict[str, list[str]]) -> None:
    created = _call(strict_server, "POST", "/api/v1/webhooks", json={"url": "http://public.test/hook",
                                                                     "events": ["OPEN"]})
    assert created.status_code == 201, created.text
    hook = created.json()["id"]
    for url in ("http://10.0.0.1/hook", "http://loopback.test/hook", "http://[::ffff:169.254.169.254]/"):
        answer = _call(strict_server, "PUT", f"/api/v1/webhooks/{hook}", json={"url": url})
        assert answer.status_code == 400, answer.text
        assert answer.json()["problems"][0]["field"] == "url" and REFUSAL in answer.json()["message"]
    assert _call(strict_server, "GET", f"/api/v1/webhooks/{hook}").json()["url"] == "http://public.test/hook"


def test_a_stored_file_destination_on_a_refused_host_fails_its_test_and_its_upload(
        strict_runtime: Runtime, strict_server: ServerThread, strict_account: NewAccount,
        resolver: dict[str, list[str]]) -> None:
    with strict_runtime.sessions.begin() as session:
        ids = [admin.create(session, strict_account.id, {"kind": "ftp", "host": "10.0.0.1", "username": "u",
                                                        "password": "p", "events": ["OPEN"]}).id,
               admin.create(session, strict_account.id, {"kind": "sftp", "host": "loopback.test", "username": "u",
                                                        "password": "p", "known_hosts": f"loopback.test {HOST_KEY}",
                                                        "events": ["OPEN"]}).id]
    for destination in ids:
        tested = _call(strict_server, "POST", f"/api/v1/destinations/{destination}/test").json()
        assert tested["ok"] is False and tested["error"].startswith(REFUSAL), tested

    assert _call(strict_server, "POST", "/api/v1/events", json=[raw_event("e1")]).status_code == 200
    for destination in ids:
        flushed = _call(strict_server, "POST", f"/api/v1/destinations/{destination}/flush")
        assert flushed.status_code == 502 and REFUSAL in flushed.text, flushed.text
        log = _call(strict_server, "GET", f"/api/v1/destinations/{destination}/attempts").json()["attempts"]
        assert any(a["outcome"] == "failed" and a["detail"].startswith(REFUSAL) for a in log), log
