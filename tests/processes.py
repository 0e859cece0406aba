"""A service as a process of its own that a fault test can SIGKILL and start again, output kept under
test-artifacts/ (CI keeps that directory when a test fails)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lienthong_testkit.servers import free_ports

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


class Instance:
    """`python -m <service>.main` with `env`, on a free port of its own (`url`)."""

    def __init__(self, service: str, name: str, env: dict[str, str]) -> None:
        self.service, self.name, self.env, self.port = service, name, env, free_ports(1)
        self.proc: subprocess.Popen | None = None
        ARTIFACTS.mkdir(exist_ok=True)
        self.log = (ARTIFACTS / f"{name}.log").open("a")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", f"{self.service}.main"], stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env, f"{self.service.upper()}_HTTP_PORT": str(self.port)})

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited by itself ({self.proc.returncode}): see {self.log.name}")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died_by_failpoint(self) -> bool:
        return self.proc is not None and self.proc.poll() == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
