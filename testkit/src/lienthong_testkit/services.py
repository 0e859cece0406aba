"""Liên Thông's services as processes of their own on free ports, against a session's servers, each with its own
Kafka principal and trusting the session's token issuer and portal key, as in production."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lienthong.auth import LocalIssuer
from lienthong_testkit.servers import Servers, ServersUnavailable, free_ports

SERVICES = ("intake", "routing", "notify", "stats")


@dataclass(frozen=True)
class Services:
    """The running services' base URLs by name, and the session's issuers: `tokens` issues bearer tokens the
    services accept, `portal` signs citizens' assertions as the national portal would."""

    urls: dict[str, str]
    tokens: LocalIssuer
    portal: LocalIssuer
    logs: dict[str, Path] = field(default_factory=dict)

    def token(self, client: str, scopes: list[str], units: list[str] | None = None) -> str:
        return self.tokens.issue(client, scopes, units or ["*"])


@contextmanager
def start_services(servers: Servers, state: Path, names: tuple[str, ...] = ("intake", "routing"),
                   *, ready_timeout_s: float = 90.0) -> Iterator[Services]:
    unknown = set(names) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose among {SERVICES}")
    tokens = LocalIssuer(state / "auth")
    portal = LocalIssuer.portal(state / "auth" / "portal")
    common = {**tokens.env(), **portal.env("CITIZEN_ASSERTION_"), "MONGODB_URI": servers.mongo.uri,
              "MONGODB_DATABASE": servers.mongo.database, "NOTIFY_SMS_GATEWAY_URL": "http://127.0.0.1:9/sms"}
    with ExitStack() as stack:
        urls, logs = {}, {}
        for name in names:
            port = free_ports(1)
            logs[name] = state / f"{name}.log"
            env = {**os.environ, **common, **servers.client(name).as_env(), f"{name.upper()}_HTTP_PORT": str(port),
                   f"{name.upper()}_LOG_LEVEL": os.environ.get("LIENTHONG_KIT_LOG_LEVEL", "WARNING")}
            stack.enter_context(service_process(name, env, logs[name]))
            urls[name] = f"http://127.0.0.1:{port}"
        for name, url in urls.items():
            wait_ready(name, url, logs[name], ready_timeout_s)
        yield Services(urls, tokens, portal, logs)


@contextmanager
def service_process(name: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """`python -m <name>.main` with `env` (its port in `<NAME>_HTTP_PORT`), output to `log`; stopped on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", f"{name}.main"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()  # graceful: in-flight work finishes or goes back to the broker
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(name: str, url: str, log: Path, timeout_s: float = 90.0) -> None:
    """Until the service's `/readyz` answers 200; else raise with the end of its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise ServersUnavailable(f"{name} at {url} was not ready within {timeout_s:.0f}s; the end of {log}:\n{tail}")


__all__ = ["SERVICES", "Services", "service_process", "start_services", "wait_ready"]
