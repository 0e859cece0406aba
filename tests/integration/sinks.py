"""Real servers that receive what notify sends: an SMTP server (aiosmtpd) and an HTTP server (SMS gateway,
agency webhooks), both on 127.0.0.1, recording everything and answering as each test scripts them."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from lienthong_tools.infra.ports import free_port


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str
    message_id: str


class SmtpSink:
    """aiosmtpd on a free port. `refuse[address] = "550 ..."` answers that address with an error."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refuse: dict[str, str] = {}
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201, N802
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append(Mail(list(envelope.rcpt_tos), str(msg["Subject"]), msg.get_content(),
                               str(msg["Message-ID"])))
        return "250 Message accepted"

    def start(self) -> int:
        self.controller.start()
        return self.controller.port

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 200

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpSink:
    """A threaded HTTP server. `script[path]` is a queue of (status, headers) answers, then 200 for ever;
    `always[path]` answers every request to that path the same way."""

    requests: list[Request] = field(default_factory=list)
    script: dict[str, deque[tuple[int, dict[str, str]]]] = field(default_factory=lambda: defaultdict(deque))
    always: dict[str, int] = field(default_factory=dict)

    def start(self) -> str:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                queue = sink.script[self.path]
                status, headers = queue.popleft() if queue else (sink.always.get(self.path, 200), {})
                sink.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                             time.monotonic(), status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


async def eventually(check, timeout: float = 60.0, interval: float = 0.2):  # noqa: ANN001, ANN201
    """Poll `check()` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
