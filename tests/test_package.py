"""The distributions: what the sdist and wheel carry, and the wheel installed and run outside the checkout.

The sdist, and from it the wheel, are built once per session (``python -m build``). The
smoke test installs the wheel into a fresh virtualenv in a temporary directory (not
editable; pip's cache makes that quick after the first run) and runs the installed
``gateway`` from another directory, on 127.0.0.1 only: serve on a free port, the three
WSDLs, a legacy login and getBatch, a pull through the typed service, the migrations
applied, and one webhook delivery to a local receiver.

It runs once per interpreter listed in ``$EVENTGW_TEST_PYTHONS`` (paths separated by
``os.pathsep``; scripts/test lists every supported Python it finds on the machine), and
by default on the Python running the tests.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from alembic.script import ScriptDirectory
from lxml import etree
from werkzeug.test import Client as WsgiClient

from gateway.app import create_app
from gateway.soap import typed
from gateway.soap.legacy import WSDL_PLACEHOLDER
from gateway.store.db import MIGRATIONS
from tests.support.envelopes import DOCUMENTED_GET_BATCH, DOCUMENTED_LOGIN, php_value, response_result
from tests.support.events import raw_event, raw_events
from tests.support.http_receiver import Receiver
from tests.support.net import free_port
from tests.support.runtime import LOOPBACK_NETWORKS, PASSWORD, make_runtime

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "wsdl"
LEGACY_WSDLS = ("ctrlPaint.wsdl", "ctrlPaintLiteral.wsdl")
PACKAGES = ("gateway", "sinks")
SOAP_ADDRESS = "{http://schemas.xmlsoap.org/wsdl/soap/}address"


def interpreters() -> list[Any]:
    """The Pythons to smoke-test the wheel on, each with its version as the test id."""
    listed = [path for path in os.environ.get("EVENTGW_TEST_PYTHONS", "").split(os.pathsep) if path]
    return [pytest.param(path, id=_version(path)) for path in listed or [sys.executable]]


def _version(python: str) -> str:
    try:
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return python
    return f"python{done.stdout.strip()}" if done.returncode == 0 else python


def published_wsdl(name: str, base_url: str) -> str:
    """A published legacy WSDL as a gateway reached at ``base_url`` serves it."""
    return (PUBLISHED / name).read_text(encoding="utf-8").replace(WSDL_PLACEHOLDER, base_url + "/paint")


def typed_wsdl_addresses(document: bytes) -> set[str]:
    """The endpoint addresses the typed WSDL names (one per service)."""
    return {address.get("location", "") for address in etree.fromstring(document).iter(SOAP_ADDRESS)}


def canonical_typed_wsdl(document: bytes) -> bytes:
    """The typed WSDL without its addresses and indentation, canonicalised (C14N), for comparison."""
    root = etree.fromstring(document, etree.XMLParser(remove_blank_text=True))
    for address in root.iter(SOAP_ADDRESS):
        address.set("location", "ADDRESS")
    return bytes(etree.tostring(root, method="c14n"))


def package_files() -> set[str]:
    """Every file of the checkout's packages, as a path relative to the checkout."""
    return {path.relative_to(ROOT).as_posix() for package in PACKAGES for path in (ROOT / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}


# -- the distributions --------------------------------------------------------------------


@dataclass(frozen=True)
class Dists:
    """The built sdist and wheel, and what the build printed."""

    sdist: Path
    wheel: Path
    output: str


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist, and the wheel built from it, as `python -m build` makes them (once per session)."""
    out = tmp_path_factory.mktemp("dist")
    # Without byte-code writing, setuptools says so in a warning, which is not the project's.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(sdist, wheel, output)


def test_the_build_prints_no_warnings(dists: Dists) -> None:
    assert "warning" not in dists.output.lower(), dists.output


def test_the_wheel_carries_every_file_of_the_packages_and_nothing_else(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
    metadata = {name for name in names if name.split("/")[0].endswith(".dist-info")}
    assert names - metadata == package_files()


def test_the_sdist_carries_the_packages_and_the_published_wsdls(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = package_files() | {f"wsdl/{path.name}" for path in PUBLISHED.glob("*.wsdl")}
    assert expected <= names
    assert not {name for name in names if "__pycache__" in name or name.endswith(".pyc")}


@pytest.mark.parametrize("name", LEGACY_WSDLS)
def test_the_served_legacy_wsdls_are_the_published_ones(sqlite_url: str, tmp_path: Path, name: str) -> None:
    runtime = make_runtime(sqlite_url, tmp_path, public_url="https://events.example.com/gw")
    try:
        served = WsgiClient(create_app(runtime)).get(f"/paint/{name}")
        assert served.status_code == 200
        assert served.get_data(as_text=True) == published_wsdl(name, "https://events.example.com/gw")
    finally:
        runtime.close()


# -- the wheel, installed and run from elsewhere ----------------------------------------


@dataclass
class Installed:
    """The wheel installed in a fresh virtualenv; commands run from a directory outside the checkout."""

    venv: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a program of the virtualenv to success; its output."""
        done = subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]], cwd=self.cwd, env=env or self.env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done.stdout

    @contextlib.contextmanager
    def serving(self, log: Path) -> Iterator[str]:
        """`gateway serve` on a free port of 127.0.0.1 until the block ends; its URL. No traceback may be logged."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("w") as out:
            process = subprocess.Popen([str(self.venv / "bin" / "gateway"), "serve", "--host", "127.0.0.1",
                                        "--port", str(port)], cwd=self.cwd, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not answer /healthz"
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
        text = log.read_text()
        assert f"listening on {url}" in text
        assert "Traceback" not in text, text


def legacy_call(url: str, envelope: str) -> dict[str, Any]:
    """POST a handleRequest envelope to the legacy endpoint as raw-XML clients do; its Result, as PHP reads it."""
    response = requests.post(f"{url}/paint", data=envelope.encode(), timeout=30,
                             headers={"Content-Type": "text/xml; charset=utf-8"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = php_value(response_result(response.content))
    return result


@pytest.fixture
def installed(dists: Dists, tmp_path: Path, request: pytest.FixtureRequest) -> Installed:
    """The wheel in a fresh virtualenv of the Python under test, on an SQLite store in the temporary directory."""
    python: str = request.param
    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("EVENTGW_", "PYTHON")) and key != "VIRTUAL_ENV"}
    env["EVENTGW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'eventgw.db'}"
    env["EVENTGW_OUTBOUND_ALLOW_NETWORKS"] = LOOPBACK_NETWORKS  # the test's receiver listens on loopback
    subprocess.run([python, "-m", "venv", str(venv)], cwd=elsewhere, env=env, capture_output=True, timeout=300,
                   check=True)
    installed = Installed(venv, elsewhere, env)
    installed.run("python", "-m", "pip", "install", "--quiet", str(dists.wheel))
    return installed


@pytest.mark.parametrize("installed", interpreters(), indirect=True)
def test_the_installed_wheel_serves_pulls_and_delivers(installed: Installed, tmp_path: Path,
                                                       http_receiver: Receiver) -> None:
    # The gateway that runs is the installed one, not the checkout.
    location = Path(installed.run("python", "-c", "import gateway; print(gateway.__file__)").strip())
    assert location.is_relative_to(installed.venv)
    installed.run("gateway", "account", "create", "acme", "--password", PASSWORD)

    with installed.serving(tmp_path / "serve.log") as url:
        with contextlib.closing(sqlite3.connect(tmp_path / "eventgw.db")) as store:
            (version,) = store.execute("SELECT version_num FROM alembic_version").fetchone()
        assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()

        for name in LEGACY_WSDLS:
            response = requests.get(f"{url}/paint/{name}", timeout=10)
            assert response.status_code == 200
            assert response.text == published_wsdl(name, url)
        response = requests.get(f"{url}{typed.PATH}?wsdl", timeout=10)
        assert response.status_code == 200
        assert typed_wsdl_addresses(response.content) == {url + typed.PATH}
        published = (PUBLISHED / "events.wsdl").read_bytes()
        assert canonical_typed_wsdl(response.content) == canonical_typed_wsdl(published)

        auth = ("acme", PASSWORD)
        hook = requests.post(f"{url}/api/v1/webhooks", auth=auth, timeout=10,
                             json={"url": http_receiver.url, "events": ["BOUNCE"], "format": "json"})
        assert hook.status_code == 201, hook.text
        pulled = raw_events(5, ("OPEN", "CLICK"), prefix="p")
        stored = requests.post(f"{url}/api/v1/events", json=[*pulled, raw_event("b-1", "BOUNCE")], auth=auth,
                               timeout=10)
        assert stored.json() == {"accepted": 6, "duplicates": 0}

        (delivery,) = http_receiver.wait_for(1, timeout=30)
        assert [event["id"] for event in json.loads(delivery.body)] == ["b-1"]
        assert delivery.headers["webhook-signature"].startswith("v1,")

        login = legacy_call(url, DOCUMENTED_LOGIN.format(user="acme", password=PASSWORD))
        assert login["result"] == "success", login
        context_id = login["resultData"]["bus_entity_context"]["beanId"]
        result = legacy_call(url, DOCUMENTED_GET_BATCH.format(context=context_id))
        assert result["result"] == "success", result
        batch = result["resultData"]["bus_entity_eventNotificationBatch"]
        rows = list(csv.reader(io.StringIO(base64.b64decode(batch["eventData"]).decode("utf-8"))))
        assert sorted(row[0] for row in rows) == ["CLICK", "CLICK", "OPEN", "OPEN", "OPEN"]

        installed.run("gateway", "pull", "--url", url, "--account", "acme", "--types", "OPEN,CLICK",
                      "--out", "pulled.csv", env={**installed.env, "EVENTGW_PASSWORD": PASSWORD})
        with (installed.cwd / "pulled.csv").open(encoding="utf-8", newline="") as pulled_csv:
            assert sorted(row["id"] for row in csv.DictReader(pulled_csv)) == sorted(e["id"] for e in pulled)
