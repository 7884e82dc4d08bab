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
from gateway.soap import typed


def service_of(url: str, http: requests.Session) -> Any:
    """A zeep service proxy built from the served WSDL, talking to ``url`` (not the WSDL's configured address)."""
    client = zeep.Client(url + typed.PATH + "?wsdl", transport=Transport(session=http))
    return client.create_service(f"{{{typed.TNS}}}Events", url + typed.PATH)


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
