"""The service as its own OS process (uvicorn on 127.0.0.1), for tests that kill it,
and the argv of a `ciphervec` command run the same way.

A small launcher runs uvicorn (or the command) with a watchdog thread that
exits the process as soon as its parent (the test process) is gone, so a
server never outlives the tests that started it, even if they crash. (PR_SET_PDEATHSIG would be the
usual tool, but this sandbox's kernel does not deliver it.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.run import wait_healthy
from tests.support.server import free_port

_WATCHDOG = """
import os, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)
threading.Thread(target=watch, daemon=True).start()
"""
_LAUNCHER = _WATCHDOG + """
import runpy, sys
sys.argv = ["uvicorn", *sys.argv[1:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""
_CLI_LAUNCHER = _WATCHDOG + """
from app.cli import main
main()
"""


def ciphervec_command(*args: str) -> list[str]:
    """The argv of `ciphervec ARGS` run by this venv's Python, with the watchdog."""
    return [sys.executable, "-c", _CLI_LAUNCHER, *args]


@dataclass
class ServiceProcess:
    """A running service process and the base URL (with /v1) it answers on."""

    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight requests die mid-way."""
        self.process.kill()
        self.process.wait(timeout=10)


def start_service(database_url: str, **settings: str) -> ServiceProcess:
    """Start a service process on a free loopback port and wait until it is healthy."""
    port = free_port()
    env = {
        **os.environ,
        "CIPHERVEC_DATABASE_URL": database_url,
        **{f"CIPHERVEC_{name.upper()}": value for name, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process, timeout=60)
    except RuntimeError:
        process.kill()
        raise
    return ServiceProcess(process, f"{base}/v1")


@contextmanager
def running_service(database_url: str, **settings: str) -> Iterator[ServiceProcess]:
    """A service process for the duration of a with-block; killed at the end if alive."""
    service = start_service(database_url, **settings)
    try:
        yield service
    finally:
        if service.process.poll() is None:
            service.process.terminate()
            try:
                service.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.kill()
