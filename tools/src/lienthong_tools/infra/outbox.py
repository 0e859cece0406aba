"""`lienthong run`'s own mail catcher and SMS gateway, so that a newcomer's notifications are delivered (not retried
into the dead-letter topic) and can be read: an SMTP server (aiosmtpd) and an HTTP SMS gateway on loopback, which
keep the last messages in memory only — they are simulated citizens', and nothing of them is written to disk — and
list them at `http://127.0.0.1:<port>/` (`/messages` as JSON). docker-compose has mailpit for the same purpose.
Production points NOTIFY_SMTP_* and NOTIFY_SMS_GATEWAY_* at the province's relay and gateway instead."""

from __future__ import annotations

import email
import email.policy
import html
import json
import secrets
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lienthong_tools.infra.ports import free_port

KEPT = 200


class Outbox:
    """Start with `start()`; `env()` is what notify needs to deliver here; `stop()` at the end."""

    def __init__(self, page_port: int = 8025, smtp_port: int | None = None) -> None:
        self.messages: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.lock = threading.Lock()
        self.token = secrets.token_urlsafe(16)  # notify's SMS gateway token: only it may post here
        self.page_port = page_port
        # Chosen now, bound in start(): a caller who has picked ports for other servers names this one too, or
        # ours may be one of theirs (seen: the SMTP server took the port stats was about to bind).
        self.smtp_port = smtp_port or free_port()
        self._smtp: Any = None
        self._http: ThreadingHTTPServer | None = None

    def keep(self, channel: str, to: str, subject: str, body: str) -> None:
        with self.lock:
            self.messages.appendleft({"at": datetime.now(UTC).isoformat(timespec="seconds"), "channel": channel,
                                      "to": to, "subject": subject, "body": body})

    def start(self) -> str:
        from aiosmtpd.controller import Controller

        self._smtp = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        try:
            self._http = ThreadingHTTPServer(("127.0.0.1", self.page_port), _handler(self))
        except OSError:  # the usual port is taken (another run, a mail catcher of one's own): any free one
            self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._http.serve_forever, name="outbox-http", daemon=True).start()
        return f"http://127.0.0.1:{self._http.server_address[1]}/"

    def env(self) -> dict[str, str]:
        assert self._http is not None, "start() first"
        return {"NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(self.smtp_port),
                "NOTIFY_SMS_GATEWAY_URL": f"http://127.0.0.1:{self._http.server_address[1]}/v1/sms",
                "NOTIFY_SMS_GATEWAY_TOKEN": self.token}

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._smtp is not None:
            self._smtp.stop()


class _SmtpHandler:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802 - aiosmtpd's hook
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = mail.get_body(("plain", "html"))
        self.outbox.keep("email", ", ".join(envelope.rcpt_tos), str(mail["Subject"] or ""),
                         body.get_content() if body is not None else "")
        return "250 Message accepted"


def _handler(outbox: Outbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # the page is polled; its requests are not news
            pass

        def do_POST(self) -> None:  # noqa: N802 - the SMS gateway notify speaks to: {to, text, reference}
            if self.path != "/v1/sms" or self.headers.get("Authorization") != f"Bearer {outbox.token}":
                self._answer(404 if self.path != "/v1/sms" else 401, "text/plain", b"")
                return
            try:
                sms = json.loads(self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 65536)))
                outbox.keep("sms", str(sms["to"]), "", str(sms["text"]))
            except (ValueError, KeyError, TypeError):
                self._answer(400, "text/plain", b"to and text are required")
                return
            self._answer(202, "application/json", b'{"status": "queued"}')

        def do_GET(self) -> None:  # noqa: N802
            with outbox.lock:
                messages = list(outbox.messages)
            if self.path == "/messages":
                self._answer(200, "application/json", json.dumps(messages, ensure_ascii=False).encode())
            elif self.path == "/":
                self._answer(200, "text/html; charset=utf-8", _page(messages).encode())
            else:
                self._answer(404, "text/plain", b"")

        def _answer(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _page(messages: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m['at'])}</td><td>{'Thư điện tử' if m['channel'] == 'email' else 'SMS'}</td>"
        f"<td>{html.escape(m['to'])}</td><td>{html.escape(m['subject'])}</td>"
        f"<td><details><summary>xem</summary><pre>{html.escape(m['body'])}</pre></details></td></tr>"
        for m in messages)
    return ("<!doctype html><html lang='vi'><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
            "<title>Hộp thư thử nghiệm — Liên Thông</title><body style='font-family:sans-serif'>"
            "<h1>Hộp thư thử nghiệm (make run)</h1><p>Thư và tin nhắn notify đã gửi, mới nhất trước; chỉ giữ trong bộ "
            f"nhớ, {KEPT} tin gần nhất.</p><table border='1' cellpadding='4' style='border-collapse:collapse'>"
            "<tr><th>Lúc (UTC)</th><th>Kênh</th><th>Đến</th><th>Tiêu đề</th><th>Nội dung</th></tr>"
            f"{rows}</table></body></html>")
