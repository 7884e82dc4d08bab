"""A zeep client of the typed SOAP service, and reading the faults it answers with."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions
from zeep.transports import Transport

from gateway.server import ServerThread
from gateway.soap import typed, typed_webhooks


class Ports:
    """The operations of both ports of the one service (pull and webhooks), as one zeep proxy."""

    def __init__(self, *proxies: Any) -> None:
        self._proxies = proxies

    def __getattr__(self, operation: str) -> Any:
        for proxy in self._proxies:
            try:
                return getattr(proxy, operation)
            except AttributeError:
                continue
        raise AttributeError(operation)


def service_of(url: str, http: requests.Session) -> Any:
    """zeep proxies of both ports built from the served WSDL, talking to ``url`` (not the WSDL's configured address)."""
    client = zeep.Client(url + typed.PATH + "?wsdl", transport=Transport(session=http))
    return Ports(*(client.create_service(f"{{{typed.TNS}}}{port}", url + typed.PATH)
                   for port in (typed.PORT, typed_webhooks.PORT)))


def finish(server: ServerThread, http: requests.Session) -> None:
    """Close the client's keep-alive connections and let the server finish its requests, so it can stop at once."""
    http.close()
    server.server.task_dispatcher.shutdown()


def fault_of(call: Callable[..., Any], **arguments: Any) -> tuple[str, str]:
    """The code and message of the fault ``call`` is answered with.

    Only these are kept: the exception's traceback would keep the HTTP connection open.
    """
    try:
        call(**arguments)
    except zeep.exceptions.Fault as fault:
        code, message = str(fault.code), str(fault.message)
    else:
        pytest.fail("no fault")
    assert "Traceback" not in message
    return code, message
