"""Real `gateway` processes for the tests: the console script, its environment, and servers and workers
started in the background, each logging to its own file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.support.net import free_port


def gateway_script() -> str:
    """The path of the installed `gateway` console script."""
    beside = Path(sys.executable).parent / "gateway"
    found = str(beside) if beside.is_file() else shutil.which("gateway")
    assert found, "the gateway console script is not installed"
    return found


def gateway_env(database_url: str, home: Path, **settings: object) -> dict[str, str]:
    """The environment of a gateway process on ``database_url``: no inherited EVENTGW_* variables,
    ``settings`` as EVENTGW_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")}
    env.update(EVENTGW_DATABASE_URL=database_url, EVENTGW_HOME=str(home))
    env.update({f"EVENTGW_{name.upper()}": str(value) for name, value in settings.items()})
    return env


class Processes:
    """Background `gateway` processes over one store; each logs to a file under ``directory``."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``gateway ARGS...`` in the background."""
        with open(self.directory / f"gateway{len(self.started)}.log", "wb") as log:
            self.started.append(subprocess.Popen([gateway_script(), *args], env=self.env, stdout=log,
                                                 stderr=subprocess.STDOUT))
        return self.started[-1]

    def serve(self, *args: str, timeout: float = 60.0) -> str:
        """Start ``gateway serve`` on a free loopback port and return its URL once /healthz answers."""
        port = free_port()
        process = self.start("serve", "--port", str(port), *args)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gateway serve did not come up; logs:\n{self.logs()}")
            time.sleep(0.1)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``condition()`` holds; fail after ``timeout`` seconds naming ``what``, with the logs."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen in {timeout} s; logs:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        """Every process's output so far."""
        return "\n".join(f"--- {path.name}\n" + path.read_text(errors="replace")
                         for path in sorted(self.directory.glob("gateway*.log")))

    def stop_all(self) -> None:
        """Terminate whatever still runs, killing what does not stop within 10 s."""
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
