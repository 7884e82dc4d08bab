"""The client snippets of docs/pull.md, run as the doc has them against a running gateway, one per client stack.

Each snippet logs in, drains OPEN and CLICK with markAsReadInd=Y, prints the CSV rows and logs
out. A stack whose tool is missing is skipped, saying which, except with CI=true, where it fails
(scripts/test installs them all).
"""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.eventgen import generate
from gateway.accounts import create_account
from gateway.events import formats, model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.server import ServerThread
from gateway.store.models import LegacySession
from tests.support.legacy_client import LegacyClient
from tests.support.runtime import PASSWORD, make_runtime

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "pull.md"
NODE_MODULES = ROOT / "tests" / "clients" / "node" / "node_modules"
AXIS_JARS = [Path("/usr/share/java") / f"{name}.jar"
             for name in ("axis", "jaxrpc", "saaj", "wsdl4j", "commons-discovery", "commons-logging")]
# A snippet to run: an HTML comment naming its tool and file, then its fenced block.
SNIPPET = re.compile(r"^<!-- run: (\S+) (\S+) -->\n```\w*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SNIPPETS = {name: (tool, code) for tool, name, code in SNIPPET.findall(DOC.read_text(encoding="utf-8"))}


def _missing_tools(*tools: str) -> str | None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def _php_problem() -> str | None:
    if (problem := _missing_tools("php")) is not None:
        return problem + " (scripts/test installs php-cli and php-soap)"
    modules = subprocess.run(["php", "-m"], capture_output=True, text=True, check=False).stdout.split()
    return None if "soap" in modules else "PHP's soap extension is not installed (scripts/test installs php-soap)"


def _perl_problem() -> str | None:
    if (problem := _missing_tools("perl")) is not None:
        return problem
    found = subprocess.run(["perl", "-MSOAP::Lite", "-e", "1"], capture_output=True, check=False).returncode == 0
    return None if found else "Perl's SOAP::Lite is not installed (scripts/test installs libsoap-lite-perl)"


def _java_problem() -> str | None:
    if (problem := _missing_tools("java", "javac")) is not None:
        return problem + " (scripts/test installs default-jdk-headless)"
    missing = [jar.name for jar in AXIS_JARS if not jar.is_file()]
    return f"Apache Axis 1.4 is not installed (missing {', '.join(missing)}; scripts/test installs libaxis-java)" \
        if missing else None


def _node_problem() -> str | None:
    if (problem := _missing_tools("node")) is not None:
        return problem + " (scripts/test installs nodejs and npm)"
    installed = (NODE_MODULES / "soap" / "package.json").is_file()
    return None if installed else "node-soap is not installed (scripts/test runs npm install in tests/clients/node)"


def _python_problem() -> str | None:
    missing = [name for name in ("suds", "zeep") if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed (pip install -e '.[test]')" if missing else None


@dataclass(frozen=True)
class Stack:
    """How to check for a client stack and run a snippet of it (the last command prints the rows)."""

    problem: Callable[[], str | None]
    commands: Callable[[Path, str], Iterable[list[str]]]


def _java_commands(source: Path, gateway: str) -> Iterator[list[str]]:
    """The stubs from WSDL2Java, then compiling them with the snippet (once they exist), then the snippet."""
    classpath = ":".join(map(str, AXIS_JARS))
    generated, classes = source.parent / "gen", source.parent / "classes"
    yield ["java", "-cp", classpath, "org.apache.axis.wsdl.WSDL2Java", "-o", str(generated),
           gateway + "/paint/ctrlPaint.wsdl"]
    yield ["javac", "-nowarn", "-cp", classpath, "-d", str(classes), str(source),
           *map(str, sorted(generated.rglob("*.java")))]
    yield ["java", "-cp", f"{classes}:{classpath}", source.stem]


STACKS = {
    "php": Stack(_php_problem, lambda source, _: [["php", "-d", "soap.wsdl_cache_enabled=0", str(source)]]),
    "perl": Stack(_perl_problem, lambda source, _: [["perl", str(source)]]),
    "java": Stack(_java_problem, _java_commands),
    "python": Stack(_python_problem, lambda source, _: [[sys.executable, str(source)]]),
    "node": Stack(_node_problem, lambda source, _: [["node", str(source)]]),
}


def require(problem: str | None) -> None:
    """Skip when a stack's tool is missing; on CI, fail."""
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem}; every client stack is required when CI=true", pytrace=False)
    pytest.skip(problem)


@dataclass
class Gateway:
    runtime: Runtime
    server: ServerThread
    account_id: int


@pytest.fixture
def gateway(sqlite_url: str, tmp_path: Path) -> Iterator[Gateway]:
    """A running gateway on SQLite with the account acme, its WSDLs naming its own address."""
    runtime = make_runtime(sqlite_url, tmp_path)
    with runtime.sessions.begin() as session:
        account = create_account(session, "acme", PASSWORD)
    server = ServerThread(runtime)
    runtime.settings = runtime.settings.replace(public_url=server.url)
    yield Gateway(runtime, server, account.id)
    server.close()
    runtime.close()


def test_the_doc_has_a_snippet_for_every_stack_available_here() -> None:
    assert sorted(SNIPPETS) == ["Pull.java", "pull.js", "pull.php", "pull.pl", "pull_suds.py", "pull_zeep.py"]
    assert {tool for tool, _ in SNIPPETS.values()} == set(STACKS)


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_the_snippet_drains_the_queue(gateway: Gateway, tmp_path: Path, name: str) -> None:
    tool, code = SNIPPETS[name]
    stack = STACKS[tool]
    require(stack.problem())
    raws = list(generate(150, seed=5))
    assert ingest_request(gateway.runtime.sessions, gateway.account_id, raws).accepted == 150
    events = model.validate_all(raws)
    source = tmp_path / "client" / name
    source.parent.mkdir()
    source.write_text(code, encoding="utf-8")
    env = {**os.environ, "GATEWAY": gateway.server.url, "PAINT_USER": "acme", "PAINT_PASSWORD": PASSWORD,
           "NODE_PATH": str(NODE_MODULES)}

    for command in stack.commands(source, gateway.server.url):
        done = subprocess.run(command, cwd=source.parent, env=env, capture_output=True, text=True, timeout=180,
                              check=False)
        assert done.returncode == 0, f"{command[0]}: {done.stdout[-2000:]}{done.stderr[-2000:]}"

    printed = list(csv.reader(io.StringIO(done.stdout)))
    rows = [formats.to_legacy_row(event) for event in events]
    assert printed == [row for row in rows if row[0] in ("OPEN", "CLICK")]
    with gateway.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LegacySession)) == 0  # it logged out
    check = LegacyClient(gateway.server.url, "acme", PASSWORD)
    try:
        assert check.get_batch("OPEN,CLICK") == []
        assert check.get_batch() == [row for row in rows if row[0] not in ("OPEN", "CLICK")]
    finally:
        check.close()
